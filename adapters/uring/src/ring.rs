//! One thread's io_uring, and every line of unsafe code in this crate.
//!
//! The kernel reads and writes memory named in a submission long after the
//! call that submitted it returned, so what a submission points at must stay
//! put until its last completion. This module makes that hold by owning it:
//!
//! - every operation in flight has an entry in [`Ring`]'s table, holding the
//!   bytes it sends (or the 8 bytes it reads) and a reference to its file
//!   descriptor, so neither the memory nor the descriptor number goes away
//!   (or is reused by another socket) before the kernel is done with it; the
//!   entry is dropped at the operation's final completion (one without
//!   `IORING_CQE_F_MORE`);
//! - received bytes land in a provided-buffer ring ([`BufRing`],
//!   `IORING_REGISTER_PBUF_RING`) owned here: a buffer the kernel filled is
//!   read through [`Ring::received`] and handed back with [`Ring::recycle`];
//! - dropping the ring cancels what is in flight and waits (bounded) for the
//!   completions; memory whose operation did not complete is leaked rather
//!   than freed under the kernel.
//!
//! The rest of the crate sees safe calls: [`Ring::recv_multi`],
//! [`Ring::send`], [`Ring::accept_multi`], [`Ring::poll_multi`],
//! [`Ring::read`], [`Ring::cancel_fd`], [`Ring::wait`] and
//! [`Ring::completions`].
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use slab::Slab;
use std::alloc::Layout;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// Submission queue entries: a loop's sends are pushed here before the one
/// `io_uring_enter`; a fuller queue is submitted early.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries: room for a loop's receives and sends at the
/// call counts one thread serves (the kernel keeps overflow, never drops).
const CQ_ENTRIES: u32 = 8192;
/// The one buffer group of provided receive buffers.
const BGID: u16 = 0;
/// Provided receive buffers: a media message is under 400 bytes, a request
/// header a few KiB (it arrives in as many buffers as it needs).
const BUF_SIZE: usize = 2048;
/// How many by default (a power of two, at most 32768): 4 MiB a thread.
/// When every buffer is out, a multishot receive ends with `ENOBUFS` and is
/// armed again after the loop gives buffers back.
pub(crate) const BUF_COUNT: u16 = 2048;
/// The most the kernel takes.
pub(crate) const MAX_BUF_COUNT: u16 = 32768;
/// Dropping the ring waits this long at most for cancelled operations.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// Keeps a file descriptor open while an operation on it is in flight.
pub(crate) type Keep = Rc<dyn AsFd>;

/// What an operation was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Multishot accept: each completion is a new connection.
    Accept,
    /// Multishot readiness of a listener.
    Poll,
    /// Multishot receive into provided buffers.
    Recv,
    /// One send of bytes the ring holds.
    Send,
    /// One read of 8 bytes (an eventfd).
    Read,
    /// A cancellation request.
    Cancel,
}

/// One completion, owning what its operation held.
pub(crate) struct Completion {
    /// The token the operation was submitted with.
    pub(crate) token: u64,
    pub(crate) op: Op,
    /// The kernel's result: bytes moved, a new descriptor, or `-errno`.
    pub(crate) result: i32,
    /// More completions will come from the same operation (multishot).
    pub(crate) more: bool,
    /// A provided buffer holding `result` received bytes: read it with
    /// [`Ring::received`], then [`Ring::recycle`] it.
    pub(crate) buffer: Option<u16>,
    /// A send's bytes (and where it started), or the read's 8 bytes, back.
    pub(crate) bytes: Option<(Vec<u8>, usize)>,
    /// An accepted connection.
    pub(crate) accepted: Option<OwnedFd>,
}

struct InFlight {
    token: u64,
    op: Op,
    bytes: Option<(Vec<u8>, usize)>,
    _keep: Option<Keep>,
}

/// A thread's ring: its submission and completion queues, the table of
/// operations in flight, and its provided receive buffers.
pub(crate) struct Ring {
    ring: IoUring,
    inflight: Slab<InFlight>,
    bufs: BufRing,
    cqes: Vec<cqueue::Entry>,
}

impl Ring {
    /// A ring for the calling thread. Tries `DEFER_TASKRUN` (completions
    /// are worked only when this thread enters the kernel to wait for them:
    /// no interruption while it runs a frame, and a thread stuck in a
    /// handler takes no new connection), else a plain ring.
    /// `buffers` provided receive buffers: a power of two up to
    /// [`MAX_BUF_COUNT`].
    pub(crate) fn new(buffers: u16) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)
            })?;
        let bufs = BufRing::new(&ring, buffers)?;
        Ok(Ring {
            ring,
            inflight: Slab::new(),
            bufs,
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
        })
    }

    /// Whether the kernel can wait for a batch with a minimum wait
    /// (`min_wait_usec`, Linux 6.12).
    pub(crate) fn has_min_wait(&self) -> bool {
        self.ring.params().is_feature_min_timeout()
    }

    /// Arms a multishot accept on a listener.
    pub(crate) fn accept_multi(&mut self, fd: Keep, token: u64) -> io::Result<()> {
        let raw = types::Fd(fd.as_fd().as_raw_fd());
        let entry = opcode::AcceptMulti::new(raw)
            .flags(libc::SOCK_CLOEXEC)
            .build();
        self.push(entry, token, Op::Accept, None, Some(fd))
    }

    /// Arms a multishot readiness poll (readable) on a descriptor.
    pub(crate) fn poll_multi(&mut self, fd: Keep, token: u64) -> io::Result<()> {
        let raw = types::Fd(fd.as_fd().as_raw_fd());
        let entry = opcode::PollAdd::new(raw, libc::POLLIN as u32)
            .multi(true)
            .build();
        self.push(entry, token, Op::Poll, None, Some(fd))
    }

    /// Arms a multishot receive into the provided buffers.
    pub(crate) fn recv_multi(&mut self, fd: Keep, token: u64) -> io::Result<()> {
        let raw = types::Fd(fd.as_fd().as_raw_fd());
        let entry = opcode::RecvMulti::new(raw, BGID).build();
        self.push(entry, token, Op::Recv, None, Some(fd))
    }

    /// Sends `bytes[from..]`; the ring holds them until the completion gives
    /// them back.
    pub(crate) fn send(
        &mut self,
        fd: Keep,
        token: u64,
        bytes: Vec<u8>,
        from: usize,
    ) -> io::Result<()> {
        let raw = types::Fd(fd.as_fd().as_raw_fd());
        let rest = bytes.get(from..).unwrap_or_default();
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        // The pointer stays valid after `bytes` moves into the table: moving
        // a Vec does not move its heap buffer.
        let entry = opcode::Send::new(raw, rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        self.push(entry, token, Op::Send, Some((bytes, from)), Some(fd))
    }

    /// Reads 8 bytes (an eventfd's counter).
    pub(crate) fn read(&mut self, fd: Keep, token: u64) -> io::Result<()> {
        let raw = types::Fd(fd.as_fd().as_raw_fd());
        let mut bytes = vec![0u8; 8];
        let entry = opcode::Read::new(raw, bytes.as_mut_ptr(), 8).build();
        self.push(entry, token, Op::Read, Some((bytes, 0)), Some(fd))
    }

    /// Cancels every operation on a descriptor; each ends with a completion
    /// (`-ECANCELED` when it was still waiting).
    pub(crate) fn cancel_fd(&mut self, fd: Keep) -> io::Result<()> {
        let raw = types::Fd(fd.as_fd().as_raw_fd());
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(raw).all()).build();
        self.push(entry, 0, Op::Cancel, None, Some(fd))
    }

    fn push(
        &mut self,
        entry: squeue::Entry,
        token: u64,
        op: Op,
        bytes: Option<(Vec<u8>, usize)>,
        keep: Option<Keep>,
    ) -> io::Result<()> {
        let slot = self.inflight.vacant_entry();
        let entry = entry.user_data(slot.key() as u64);
        // SAFETY: what the entry points at lives in the table entry inserted
        // just below (the send's or read's heap buffer, the descriptor it
        // keeps open) or in `self.bufs` (provided buffers, freed only by
        // `Drop` after the operations completed), and a table entry is
        // dropped only at its operation's final completion. The entry's
        // other fields were built by the crate's safe opcode builders.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            // The queue is full: hand it to the kernel and push again.
            self.ring.submit()?;
            // SAFETY: as above.
            unsafe { self.ring.submission().push(&entry) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        slot.insert(InFlight {
            token,
            op,
            bytes,
            _keep: keep,
        });
        Ok(())
    }

    /// Submits what was pushed and waits, in one `io_uring_enter`, for a
    /// completion, at most `timeout` (`None`: no limit). With `batch`, waits
    /// that long for completions to gather before returning with what came
    /// (the kernel's `min_wait_usec`; [`Ring::has_min_wait`]), still
    /// returning at once if the completion queue is half full.
    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        batch: Option<Duration>,
    ) -> io::Result<()> {
        let ts = timeout.map(types::Timespec::from);
        let min_wait = batch
            .filter(|_| self.has_min_wait())
            .map(|b| u32::try_from(b.as_micros()).unwrap_or(u32::MAX));
        let want = if min_wait.is_some() {
            CQ_ENTRIES as usize / 2
        } else {
            1
        };
        let mut args = types::SubmitArgs::new();
        if let Some(us) = min_wait {
            args = args.min_wait_usec(us);
        }
        let result = match &ts {
            Some(ts) => self
                .ring
                .submitter()
                .submit_with_args(want, &args.timespec(ts)),
            None if min_wait.is_some() => self.ring.submitter().submit_with_args(want, &args),
            None => self.ring.submitter().submit_and_wait(1),
        };
        match result {
            Ok(_) => Ok(()),
            // The timeout passed; a signal; the completion queue overflowed
            // (the loop empties it and comes back).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Takes every completion that has arrived, in order, into `out`.
    pub(crate) fn completions(&mut self, out: &mut Vec<Completion>) {
        self.cqes.clear();
        self.cqes.extend(self.ring.completion());
        for cqe in self.cqes.drain(..) {
            let key = cqe.user_data() as usize;
            let more = cqueue::more(cqe.flags());
            let Some(op) = self.inflight.get(key) else {
                continue;
            };
            let (token, kind) = (op.token, op.op);
            let buffer = cqueue::buffer_select(cqe.flags());
            let accepted = match kind {
                Op::Accept if cqe.result() >= 0 => {
                    // SAFETY: an accept's non-negative result is a descriptor
                    // the kernel just installed in this process for us; no
                    // one else owns it.
                    Some(unsafe { OwnedFd::from_raw_fd(cqe.result()) })
                }
                _ => None,
            };
            let bytes = if more {
                None
            } else {
                self.inflight.try_remove(key).and_then(|op| op.bytes)
            };
            out.push(Completion {
                token,
                op: kind,
                result: cqe.result(),
                more,
                buffer,
                bytes,
                accepted,
            });
        }
    }

    /// The `len` bytes the kernel received into provided buffer `id`.
    pub(crate) fn received(&self, id: u16, len: usize) -> &[u8] {
        self.bufs.get(id, len)
    }

    /// Gives provided buffer `id` back to the kernel (seen by it after the
    /// next [`Ring::publish`]).
    pub(crate) fn recycle(&mut self, id: u16) {
        self.bufs.recycle(id);
    }

    /// Publishes the buffers recycled since the last call.
    pub(crate) fn publish(&mut self) {
        self.bufs.publish();
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if !self.inflight.is_empty() {
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
            let _ = self.push(cancel, 0, Op::Cancel, None, None);
            let until = std::time::Instant::now() + DRAIN_LIMIT;
            let mut out = Vec::new();
            while !self.inflight.is_empty() {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() || self.wait(Some(left), None).is_err() {
                    break;
                }
                self.completions(&mut out);
                out.clear();
            }
        }
        if self.inflight.is_empty() {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        } else {
            // The kernel may still write into these: never free them.
            tracing::warn!(
                operations = self.inflight.len(),
                "io_uring operations outlived the ring; their memory is leaked"
            );
            for op in self.inflight.drain() {
                std::mem::forget(op);
            }
            self.bufs.leak = true;
        }
    }
}

/// One entry of a provided-buffer ring, as the kernel lays it out
/// (`struct io_uring_buf`); entry 0's `resv` is the ring's tail.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// Receive buffers the kernel picks from (`IORING_REGISTER_PBUF_RING`): the
/// ring of entries and the buffers themselves, both allocated here and
/// never moved.
struct BufRing {
    entries: NonNull<RawBuf>,
    entries_layout: Layout,
    data: NonNull<u8>,
    data_layout: Layout,
    /// How many buffers (a power of two).
    count: u16,
    /// The tail as published and as it will be.
    tail: u16,
    /// The buffers may still be the kernel's: never free them.
    leak: bool,
}

impl BufRing {
    fn new(ring: &IoUring, count: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > MAX_BUF_COUNT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "provided buffers: a power of two up to 32768",
            ));
        }
        let n = usize::from(count);
        // The kernel requires the entries to start on a page.
        let entries_layout =
            Layout::from_size_align(n * size_of::<RawBuf>(), 4096).map_err(io::Error::other)?;
        let data_layout = Layout::from_size_align(n * BUF_SIZE, 64).map_err(io::Error::other)?;
        // SAFETY: both layouts have a nonzero size.
        let (entries, data) = unsafe {
            (
                std::alloc::alloc_zeroed(entries_layout),
                std::alloc::alloc_zeroed(data_layout),
            )
        };
        let (Some(entries), Some(data)) =
            (NonNull::new(entries.cast::<RawBuf>()), NonNull::new(data))
        else {
            std::alloc::handle_alloc_error(entries_layout)
        };
        let mut bufs = BufRing {
            entries,
            entries_layout,
            data,
            data_layout,
            count,
            tail: 0,
            leak: false,
        };
        for id in 0..count {
            bufs.recycle(id);
        }
        bufs.publish();
        // SAFETY: the entries are page-aligned, `count` long, and live
        // until `Drop`, which unregisters them first (or leaks them).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                BGID,
                0,
            )?;
        }
        Ok(bufs)
    }

    fn get(&self, id: u16, len: usize) -> &[u8] {
        if id >= self.count {
            return &[];
        }
        let len = len.min(BUF_SIZE);
        // SAFETY: buffer `id` lies inside `data` (id < count, len <=
        // BUF_SIZE), and the kernel handed it to us with this completion: it
        // writes it again only after `recycle` returns it, which needs
        // `&mut self` while this borrow lives.
        unsafe {
            std::slice::from_raw_parts(self.data.as_ptr().add(usize::from(id) * BUF_SIZE), len)
        }
    }

    fn recycle(&mut self, id: u16) {
        if id >= self.count {
            return;
        }
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot` < count, inside the entries; the kernel reads
        // entries only up to the published tail, which this one is past.
        // Fields are written one by one: entry 0's `resv` is the tail.
        unsafe {
            let entry = self.entries.as_ptr().add(slot);
            let addr = self.data.as_ptr().add(usize::from(id) * BUF_SIZE);
            std::ptr::addr_of_mut!((*entry).addr).write(addr as u64);
            std::ptr::addr_of_mut!((*entry).len).write(BUF_SIZE as u32);
            std::ptr::addr_of_mut!((*entry).bid).write(id);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&mut self) {
        // SAFETY: the tail is entry 0's `resv`, a u16 in memory we own, read
        // by the kernel concurrently: written atomically, with release
        // ordering so the entries written before it are seen first.
        let tail =
            unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*self.entries.as_ptr()).resv)) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: allocated in `new` with these layouts; the ring was
        // unregistered and no operation that could fill a buffer remains.
        unsafe {
            std::alloc::dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            std::alloc::dealloc(self.data.as_ptr(), self.data_layout);
        }
    }
}
