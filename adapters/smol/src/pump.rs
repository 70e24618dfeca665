//! The pump: a listener, one task per connection, executor threads.
//!
//! Each connection task is a byte pump and a timer around the server layer's
//! [`Driver`]: read into it, write what it gives, sleep until its deadline
//! (an absolute `Instant`, through `async_io::Timer::set_at`). Everything the
//! protocol decides is decided in the core, everything the operator sees in
//! `callstream-server`.
use callstream_server::listen::{ACCEPT_BACKOFF, accept_error_is_transient};
use callstream_server::observer::Drained;
use callstream_server::wake::RemoteWake;
use callstream_server::{Admission, Driver, Pump, Server, close};
use smol::channel::{Receiver, Sender};
use smol::{Async, Executor};
use std::future::{Future, poll_fn};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

/// Stops a running server gracefully: no new connections, calls drain, then close.
#[derive(Clone)]
pub struct ShutdownHandle {
    tx: Sender<()>,
}

impl ShutdownHandle {
    /// Begins the graceful shutdown. Calling it again does nothing more.
    pub fn shutdown(&self) {
        self.tx.close();
    }
}

/// A bound server on smol, ready to run.
pub struct SmolServer {
    listener: Async<TcpListener>,
    server: Arc<Server>,
    /// Closed when shutdown begins: every `recv` then returns at once.
    shutdown: Receiver<()>,
    shutdown_tx: Sender<()>,
}

impl SmolServer {
    /// Binds the listening socket now, so that the address (an ephemeral port
    /// included) is known before [`SmolServer::run`].
    pub fn bind(server: Arc<Server>) -> io::Result<SmolServer> {
        let listener = Async::new(callstream_server::bind_listener(
            server.options().bind,
            "PORT",
        )?)?;
        let (shutdown_tx, shutdown) = smol::channel::bounded(1);
        Ok(SmolServer {
            listener,
            server,
            shutdown,
            shutdown_tx,
        })
    }

    /// A handle that starts the graceful shutdown from anywhere.
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            tx: self.shutdown_tx.clone(),
        }
    }

    async fn accept_loop(self, ex: Arc<Executor<'static>>) -> io::Result<()> {
        // Each connection's task, with the handle that wakes it. The shutdown
        // reaches the connections through these and `stopping`, not through
        // the channel: a channel's receiver polled on every wake-up of every
        // connection locks the channel's one list of listeners each time,
        // a lock all executor threads would share on the frame path.
        let mut tasks: Vec<(smol::Task<()>, Arc<RemoteWake>)> = Vec::new();
        let stopping = Arc::new(AtomicBool::new(false));
        // The shutdown comes first wherever it races: a listener that is
        // always ready (a flood of callers, or accept failing at once on
        // EMFILE) must not keep the connections from hearing of it.
        let shutdown = || async {
            let _ = self.shutdown.recv().await;
            None
        };
        loop {
            let accepted =
                smol::future::or(shutdown(), async { Some(self.listener.accept().await) }).await;
            let Some(accepted) = accepted else { break };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) if accept_error_is_transient(&e) => continue,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    self.server.accept_failed(&e, Instant::now());
                    let pause = async {
                        smol::Timer::after(ACCEPT_BACKOFF).await;
                        None
                    };
                    smol::future::or(shutdown(), pause).await;
                    continue;
                }
            };
            let _ = stream.get_ref().set_nodelay(true);
            let Some(admission) = self.server.admit(peer) else {
                ex.spawn(refuse(stream)).detach();
                continue;
            };
            let remote = Arc::new(RemoteWake::default());
            let (r, stop) = (remote.clone(), stopping.clone());
            let task = ex.spawn(async move {
                serve_connection(stream, peer, &admission, r, &stop).await;
                drop(admission);
            });
            tasks.retain(|(t, _)| !t.is_finished());
            tasks.push((task, remote));
        }
        drop(self.listener);
        // Every connection sees `stopping` at its next wake-up: wake them all
        // now (a wake-up is harmless to the engine).
        stopping.store(true, Ordering::Release);
        for (_, remote) in &tasks {
            remote.wake();
        }
        let give_up_at = self.server.options().give_up_at(Instant::now());
        tracing::info!(
            open_connections = self.server.open_connections(),
            drain_s = self.server.options().drain.as_secs_f64(),
            "shutting down: no new connections, draining"
        );
        // Each connection saw the shutdown and the engine drains it; wait for
        // them, but the process must be gone within the drain period (Cloud
        // Run: SIGKILL about 10 s after SIGTERM).
        let all = async {
            for (t, _) in tasks {
                t.await;
            }
        };
        let cap = async {
            smol::Timer::at(give_up_at).await;
        };
        smol::future::or(all, cap).await;
        self.server.finish(Some(give_up_at));
        Ok(())
    }
}

impl Pump for SmolServer {
    fn runtime(&self) -> callstream_server::config::Runtime {
        callstream_server::config::Runtime::Smol
    }

    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    fn shutdown_fn(&self) -> impl FnOnce() + Send + 'static {
        let handle = self.shutdown_handle();
        move || handle.shutdown()
    }

    /// Runs until a shutdown is requested and every connection has closed,
    /// or the drain period is over.
    fn run(self) -> io::Result<()> {
        let ex = Arc::new(Executor::new());
        let (stop_tx, stop_rx) = smol::channel::unbounded::<()>();
        let threads = self.server.options().threads.max(1);
        let workers: Vec<_> = (1..threads)
            .map(|i| {
                let ex = ex.clone();
                let stop = stop_rx.clone();
                std::thread::Builder::new()
                    .name(format!("callstream-{i}"))
                    .spawn(move || smol::block_on(ex.run(stop.recv())))
            })
            .collect::<io::Result<_>>()?;
        // The accept loop is a task like any other, so any executor thread can
        // run it: a handler that blocks one thread must not stop accepting.
        let accept = ex.spawn(self.accept_loop(ex.clone()));
        let result = smol::block_on(ex.run(accept));
        drop(stop_tx);
        for w in workers {
            let _ = w.join();
        }
        result
    }
}

/// Answers a connection over the limit with the core's canned 503.
async fn refuse(stream: Async<TcpStream>) {
    let answer = callstream_core::http::overloaded_response();
    let write = async { drop(smol::io::AsyncWriteExt::write_all(&mut &stream, answer).await) };
    smol::future::or(write, async {
        smol::Timer::after(Duration::from_secs(1)).await;
    })
    .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
}

enum Wake {
    Read(io::Result<usize>),
    Writable,
    Timer,
    Woken,
    Shutdown,
}

/// Serves one connection until it closes. `remote` wakes its task from other
/// threads (a handler's remote control, the shutdown); `stopping` is set once
/// the server shuts down.
async fn serve_connection(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    admission: &Admission,
    remote: Arc<RemoteWake>,
    stopping: &AtomicBool,
) {
    let r = remote.clone();
    let mut driver = admission.driver(peer, Instant::now(), Some(Arc::new(move || r.wake())));
    // 8 KiB per read: a media message is under 400 bytes; bounded memory per connection.
    let mut buf = vec![0u8; 8192];
    let mut deadline = Deadline::default();
    let mut maybe_readable = true;
    let mut shutting_down = false;
    let mut eof = false;
    loop {
        let close = match driver.poll_output() {
            Drained::Timeout(t) => {
                deadline.arm(t);
                false
            }
            Drained::Close => true,
        };
        // Write what the socket takes now; never wait on the write alone, so
        // a peer that stops reading cannot freeze reads, timers or shutdown
        // (the engine bounds what waits and closes past its limit).
        if let Err(e) = driver.write_now(stream.get_ref()) {
            tracing::debug!(%peer, error = %e, "write failed");
            driver.handle_eof(Instant::now());
            let _ = driver.poll_output();
            break;
        }
        if close {
            finish_close(&stream, &mut driver).await;
            break;
        }
        let blocked = !driver.transmit().is_empty();
        let ev = poll_fn(|cx| {
            if blocked && stream.poll_writable(cx).is_ready() {
                return Poll::Ready(Wake::Writable);
            }
            if !eof {
                if !maybe_readable && stream.poll_readable(cx).is_ready() {
                    // Readable (or an error to find out by reading): read at
                    // once, and keep reading on later polls.
                    maybe_readable = true;
                }
                if maybe_readable
                    && let Poll::Ready(r) = smol::io::AsyncRead::poll_read(
                        std::pin::Pin::new(&mut &stream),
                        cx,
                        &mut buf,
                    )
                {
                    return Poll::Ready(Wake::Read(r));
                }
            }
            // Read-mostly and written once: costs no cross-thread traffic.
            if !shutting_down && stopping.load(Ordering::Acquire) {
                return Poll::Ready(Wake::Shutdown);
            }
            if remote.poll(cx).is_ready() {
                return Poll::Ready(Wake::Woken);
            }
            if deadline.poll(cx).is_ready() {
                return Poll::Ready(Wake::Timer);
            }
            Poll::Pending
        })
        .await;
        let now = Instant::now();
        match ev {
            Wake::Read(Ok(0) | Err(_)) => {
                eof = true;
                driver.handle_eof(now);
            }
            Wake::Read(Ok(n)) => {
                // A short read almost always emptied the socket: wait for
                // readiness next instead of paying a read that finds nothing
                // (and async-io's re-registration after it) on every frame.
                maybe_readable = n == buf.len();
                // The call's state, asked for at once (`Driver::prefetch`):
                // its misses overlap instead of following one another. Not
                // before the read: the driver is not `Sync`, so the readiness
                // poll cannot borrow it (the borrow would live across the
                // await, and the task must stay `Send`).
                driver.prefetch();
                driver.handle_receive(now, &buf[..n]);
            }
            Wake::Writable => {}
            Wake::Timer | Wake::Woken => driver.handle_timeout(now),
            Wake::Shutdown => {
                shutting_down = true;
                driver.shutdown(now);
            }
        }
    }
    driver.finish();
}

/// The connection's one timer, re-armed only when the engine's deadline moves
/// earlier. A later deadline leaves the earlier one armed: the engine treats
/// an early wake-up as harmless (it names its deadline again), while moving an
/// async-io timer costs a trip through the reactor on every media frame.
#[derive(Default)]
struct Deadline {
    timer: Option<async_io::Timer>,
    armed: Option<Instant>,
}

impl Deadline {
    fn arm(&mut self, at: Instant) {
        if self.armed.is_some_and(|a| a <= at) {
            return;
        }
        self.armed = Some(at);
        match &mut self.timer {
            Some(t) => t.set_at(at),
            None => self.timer = Some(async_io::Timer::at(at)),
        }
    }

    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let (Some(t), Some(_)) = (&mut self.timer, self.armed) else {
            return Poll::Pending;
        };
        let ready = std::pin::Pin::new(t).poll(cx).map(drop);
        if ready.is_ready() {
            self.armed = None;
        }
        ready
    }
}

/// Writes the last bytes, half-closes, then lingers ([`callstream_server::close`]).
async fn finish_close(stream: &Async<TcpStream>, conn: &mut Driver) {
    let wrote = smol::future::or(
        async {
            while !conn.transmit().is_empty() {
                if conn.write_now(stream.get_ref()).is_err() || stream.writable().await.is_err() {
                    return false;
                }
            }
            true
        },
        async {
            smol::Timer::after(close::WRITE_LIMIT).await;
            false
        },
    )
    .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    if !wrote {
        return;
    }
    let discard = async {
        let (mut sink, mut total) = ([0u8; 4096], 0);
        while let Ok(n) = smol::io::AsyncReadExt::read(&mut &*stream, &mut sink).await {
            total += n;
            if n == 0 || total >= close::LINGER_BYTES {
                break;
            }
        }
    };
    smol::future::or(discard, async {
        smol::Timer::after(close::LINGER).await;
    })
    .await;
}
