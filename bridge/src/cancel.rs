//! Pipe ends that stop waiting when told to: a program's stdin, stdout and
//! stderr, whose threads must end once the program is reaped even when a
//! process it detached still holds the other end (and would hold a plain
//! read or write forever).
//!
//! Each read or write waits in `poll` on its pipe and on a [`Cancel`]'s own
//! pipe; dropping the [`Canceller`] makes that pipe hang up, which wakes
//! every waiter. After that a reader takes what the pipe holds already (at
//! most [`DRAIN_AFTER_CANCEL`]: the program's last lines are not lost) and
//! then reads end of input; a writer fails with a broken pipe. The
//! program's own ends stay real pipes: `/dev/stdout` and `/dev/stdin` work
//! in it as everywhere.
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The most a reader still takes after the cancel (what the program wrote
/// before it exited; a process that writes on is cut off here).
pub const DRAIN_AFTER_CANCEL: usize = 1024 * 1024;

/// What the waiters watch.
#[derive(Clone)]
pub struct Cancel(Arc<io::PipeReader>);

/// Dropping it cancels every waiter of its [`Cancel`].
pub struct Canceller(#[allow(dead_code)] io::PipeWriter);

/// A cancel and its trigger.
pub fn cancel() -> io::Result<(Cancel, Canceller)> {
    let (r, w) = io::pipe()?;
    Ok((Cancel(Arc::new(r)), Canceller(w)))
}

impl Cancel {
    /// Waits until `fd` is ready for `events`, or the cancel; true when
    /// `fd` is ready (a hang-up or error on it counts: the next read or
    /// write says which).
    fn wait(&self, fd: BorrowedFd<'_>, events: PollFlags, block: bool) -> io::Result<bool> {
        loop {
            let mut fds = [
                PollFd::new(fd, events),
                PollFd::new(self.0.as_fd(), PollFlags::POLLIN),
            ];
            let timeout = if block {
                PollTimeout::NONE
            } else {
                PollTimeout::ZERO
            };
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
            if ready(&fds[0]) {
                return Ok(true);
            }
            if ready(&fds[1]) || !block {
                return Ok(false);
            }
        }
    }

    fn is_cancelled(&self) -> bool {
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }
}

/// The read end of a program's stdout or stderr.
pub struct Reader<R> {
    pipe: R,
    cancel: Cancel,
    /// Bytes taken since the cancel.
    drained: usize,
}

impl<R: Read + AsFd> Reader<R> {
    /// Reads `pipe` until its end or `cancel`.
    pub fn new(pipe: R, cancel: Cancel) -> Reader<R> {
        Reader {
            pipe,
            cancel,
            drained: 0,
        }
    }
}

impl<R: Read + AsFd> Read for Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.pipe.as_fd();
        let mut cancelled = self.cancel.is_cancelled();
        if cancelled && self.drained >= DRAIN_AFTER_CANCEL {
            return Ok(0);
        }
        // Before the cancel, wait for data (a wait that ends without it
        // was the cancel); after it, take only what is there now.
        let mut ready = self.cancel.wait(fd, PollFlags::POLLIN, !cancelled)?;
        if !ready && !cancelled {
            cancelled = true;
            ready = self.cancel.wait(fd, PollFlags::POLLIN, false)?;
        }
        if !ready {
            return Ok(0);
        }
        let n = self.pipe.read(buf)?;
        if cancelled {
            self.drained += n;
        }
        Ok(n)
    }
}

/// The write end of a program's stdin, made nonblocking so that a write
/// never waits anywhere but in the poll.
pub struct Writer<W> {
    pipe: W,
    cancel: Cancel,
}

impl<W: Write + AsFd> Writer<W> {
    /// Writes to `pipe` until `cancel`.
    ///
    /// # Errors
    ///
    /// The pipe cannot be made nonblocking.
    pub fn new(pipe: W, cancel: Cancel) -> io::Result<Writer<W>> {
        let flags = fcntl(pipe.as_fd(), FcntlArg::F_GETFL)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(pipe.as_fd(), FcntlArg::F_SETFL(flags))?;
        Ok(Writer { pipe, cancel })
    }
}

impl<W: Write + AsFd> Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            match self.pipe.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self
                        .cancel
                        .wait(self.pipe.as_fd(), PollFlags::POLLOUT, true)?
                    {
                        return Err(io::ErrorKind::BrokenPipe.into());
                    }
                }
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pipe.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_cancel_ends_a_blocked_read_after_what_was_written() {
        let (r, mut w) = io::pipe().unwrap();
        let (cancel, canceller) = cancel().unwrap();
        // The other end stays open (as a detached process would hold it).
        w.write_all(b"last line\n").unwrap();
        let reader = std::thread::spawn(move || {
            let mut r = Reader::new(r, cancel);
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(canceller);
        assert_eq!(reader.join().unwrap(), b"last line\n");
        drop(w);
    }

    #[test]
    fn a_cancel_ends_a_write_to_a_full_pipe() {
        let (r, w) = io::pipe().unwrap();
        let (cancel, canceller) = cancel().unwrap();
        let writer = std::thread::spawn(move || {
            let mut w = Writer::new(w, cancel).unwrap();
            // Far more than a pipe holds, and nobody reads.
            w.write_all(&vec![b'x'; 4 * 1024 * 1024])
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(canceller);
        let err = writer.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        drop(r);
    }

    #[test]
    fn without_a_cancel_reads_and_writes_go_through() {
        let (r, w) = io::pipe().unwrap();
        let (cancel, _canceller) = cancel().unwrap();
        let mut w = Writer::new(w, cancel.clone()).unwrap();
        w.write_all(b"hello").unwrap();
        drop(w);
        let mut got = String::new();
        Reader::new(r, cancel).read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello");
    }
}
