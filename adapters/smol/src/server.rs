//! The server: a listener, one task per connection, and executor threads.
//!
//! Each connection task is a byte pump and a timer around the core's
//! [`Connection`]: read into it, write what it gives, sleep until its
//! deadline (on an absolute `Instant`, through `async_io::Timer::set_at`).
//! Everything the protocol decides is decided in the core.
use crate::observer::{Drained, Observer};
use callstream_core::connection::{self, Connection};
use callstream_core::metrics::Metrics;
use smol::channel::{Receiver, Sender};
use smol::{Async, Executor};
use std::future::{Future, poll_fn};
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

/// What the server needs beyond the engine's own configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to bind.
    pub bind: SocketAddr,
    /// Connections past this are answered 503 and closed.
    pub max_connections: usize,
    /// After a shutdown request, calls may go on this long before they are
    /// closed with 1001.
    pub drain: Duration,
    /// Executor threads.
    pub threads: usize,
    /// Where call recordings go, if anywhere.
    pub recordings_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: 10_000,
            drain: Duration::from_secs(10),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            recordings_dir: None,
        }
    }
}

impl Options {
    /// How long calls run after a shutdown request before they are closed with
    /// 1001: the drain period less the time the close handshake may take, so
    /// that everything is done within the drain period.
    #[must_use]
    pub fn calls_close_after(&self, engine: &connection::Config) -> Duration {
        self.drain.saturating_sub(engine.close_timeout)
    }
}

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

struct Shared {
    engine: Arc<connection::Config>,
    metrics: Arc<Metrics>,
    opts: Options,
    open: AtomicUsize,
    /// Closed when shutdown begins: every `recv` then returns at once.
    shutdown: Receiver<()>,
}

/// A bound server, ready to run.
pub struct Server {
    listener: Async<TcpListener>,
    shared: Arc<Shared>,
    shutdown_tx: Sender<()>,
}

impl Server {
    /// Binds the listening socket now, so that the address (an ephemeral port
    /// included) is known before [`Server::run`].
    pub fn bind(
        opts: Options,
        mut engine: connection::Config,
        metrics: Arc<Metrics>,
    ) -> io::Result<Server> {
        let listener = Async::<TcpListener>::bind(opts.bind)?;
        crate::observer::serve_metrics(&mut engine, &metrics);
        let (shutdown_tx, shutdown) = smol::channel::bounded(1);
        let shared = Arc::new(Shared {
            engine: Arc::new(engine),
            metrics,
            opts,
            open: AtomicUsize::new(0),
            shutdown,
        });
        Ok(Server {
            listener,
            shared,
            shutdown_tx,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// A handle that starts the graceful shutdown from anywhere.
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            tx: self.shutdown_tx.clone(),
        }
    }

    /// Runs until a shutdown is requested and every connection has drained
    /// (or the drain period has passed and the rest were closed).
    pub fn run(self) -> io::Result<()> {
        let ex = Arc::new(Executor::new());
        let (stop_tx, stop_rx) = smol::channel::unbounded::<()>();
        let threads = self.shared.opts.threads.max(1);
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

    async fn accept_loop(self, ex: Arc<Executor<'static>>) -> io::Result<()> {
        let shared = self.shared.clone();
        let mut tasks = Vec::new();
        loop {
            let accepted = smol::future::or(async { Some(self.listener.accept().await) }, async {
                let _ = shared.shutdown.recv().await;
                None
            })
            .await;
            let Some(accepted) = accepted else { break };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    smol::Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.get_ref().set_nodelay(true);
            if shared.open.load(Ordering::Relaxed) >= shared.opts.max_connections {
                shared.metrics.connection_refused();
                tracing::warn!(%peer, limit = shared.opts.max_connections, "connection limit reached, answering 503");
                ex.spawn(refuse(stream)).detach();
                continue;
            }
            shared.open.fetch_add(1, Ordering::Relaxed);
            shared.metrics.connection_opened();
            let s = shared.clone();
            tasks.push(ex.spawn(async move {
                serve_connection(stream, peer, &s).await;
                s.open.fetch_sub(1, Ordering::Relaxed);
                s.metrics.connection_closed();
            }));
            tasks.retain(|t| !t.is_finished());
        }
        drop(self.listener);
        let open = shared.open.load(Ordering::Relaxed);
        tracing::info!(
            open_connections = open,
            drain_s = shared.opts.drain.as_secs_f64(),
            "shutting down: no new connections, draining"
        );
        // Each connection saw the shutdown and began its own drain; wait for
        // them, but never past the drain period plus a little: the platform
        // (Cloud Run: about 10 s after SIGTERM) kills the process anyway.
        let all = async {
            for t in tasks {
                t.await;
            }
            true
        };
        let cap = async {
            smol::Timer::after(shared.opts.drain + Duration::from_secs(1)).await;
            false
        };
        if !smol::future::or(all, cap).await {
            tracing::warn!(
                open_connections = shared.open.load(Ordering::Relaxed),
                "connections still open after the drain period; exiting anyway"
            );
            return Ok(());
        }
        tracing::info!("all connections closed");
        Ok(())
    }
}

/// Answers a connection over the limit with the core's canned 503.
async fn refuse(stream: Async<TcpStream>) {
    let _ = smol::future::or(
        async {
            let _ = smol::io::AsyncWriteExt::write_all(
                &mut &stream,
                callstream_core::http::overloaded_response(),
            )
            .await;
        },
        async {
            smol::Timer::after(Duration::from_secs(1)).await;
        },
    )
    .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
}

enum Wake {
    Read(io::Result<usize>),
    Writable,
    Timer,
    Woken,
    Shutdown,
    DrainOver,
}

async fn serve_connection(stream: Async<TcpStream>, peer: SocketAddr, shared: &Shared) {
    let mut conn = Connection::new(shared.engine.clone(), Instant::now());
    let remote = Arc::new(RemoteWake::default());
    let r = remote.clone();
    conn.set_waker(Arc::new(move || r.wake()));
    let mut local = Observer::new(
        peer,
        shared.metrics.clone(),
        shared.opts.recordings_dir.clone(),
    );
    // 8 KiB per read: a media message is under 400 bytes; bounded memory per connection.
    let mut buf = vec![0u8; 8192];
    let mut deadline = Deadline::default();
    let mut maybe_readable = true;
    let mut shutdown = pin!(shared.shutdown.recv());
    let mut shutting_down = false;
    let mut drain_timer = async_io::Timer::never();
    let mut eof = false;
    loop {
        let close = drain(&mut conn, &mut local, &mut deadline);
        // Write what the socket takes now; never wait on the write alone, so
        // a peer that stops reading cannot freeze reads, timers or shutdown
        // (the engine bounds what waits and closes past its limit).
        if let Err(e) = write_now(&stream, &mut conn) {
            tracing::debug!(%peer, error = %e, "write failed");
            conn.handle_eof(Instant::now());
            let _ = drain(&mut conn, &mut local, &mut deadline);
            break;
        }
        if close {
            finish_close(&stream, &mut conn).await;
            break;
        }
        let blocked = !conn.transmit().is_empty();
        let ev = poll_fn(|cx| {
            if blocked && stream.poll_writable(cx).is_ready() {
                return Poll::Ready(Wake::Writable);
            }
            if !eof {
                if maybe_readable {
                    if let Poll::Ready(r) = smol::io::AsyncRead::poll_read(
                        std::pin::Pin::new(&mut &stream),
                        cx,
                        &mut buf,
                    ) {
                        return Poll::Ready(Wake::Read(r));
                    }
                } else if stream.poll_readable(cx).is_ready() {
                    // Readable (or an error to find out by reading): read at
                    // once, and keep reading on later polls.
                    maybe_readable = true;
                    if let Poll::Ready(r) = smol::io::AsyncRead::poll_read(
                        std::pin::Pin::new(&mut &stream),
                        cx,
                        &mut buf,
                    ) {
                        return Poll::Ready(Wake::Read(r));
                    }
                }
            }
            if !shutting_down && shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Shutdown);
            }
            if shutting_down && std::pin::Pin::new(&mut drain_timer).poll(cx).is_ready() {
                return Poll::Ready(Wake::DrainOver);
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
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => {
                eof = true;
                conn.handle_eof(now);
            }
            Wake::Read(Ok(n)) => {
                // A short read almost always emptied the socket: wait for
                // readiness next instead of paying a read that finds nothing
                // (and async-io's re-registration after it) on every frame.
                maybe_readable = n == buf.len();
                conn.handle_receive(now, &buf[..n]);
            }
            Wake::Writable => {}
            Wake::Timer => conn.handle_timeout(now),
            Wake::Woken => {
                conn.handle_timeout(now);
            }
            Wake::Shutdown => {
                shutting_down = true;
                if local.in_call() {
                    // Calls get the drain period to finish on their own.
                    drain_timer.set_at(now + shared.opts.calls_close_after(&shared.engine));
                } else {
                    conn.shutdown(now);
                }
            }
            Wake::DrainOver => {
                drain_timer = async_io::Timer::never();
                conn.shutdown(now);
            }
        }
    }
    local.finish();
}

/// Drains the engine's outputs until it names a deadline or asks to close;
/// returns true for close.
fn drain(conn: &mut Connection, local: &mut Observer, deadline: &mut Deadline) -> bool {
    match crate::observer::drain(conn, local) {
        Drained::Wait(t) => {
            deadline.arm(t);
            false
        }
        Drained::Close => true,
    }
}

/// A handler's remote control (another thread) asking this connection's task
/// to run: a flag plus the task's waker. Cheaper to poll on every loop than a
/// channel, which registers a listener each time.
#[derive(Default)]
struct RemoteWake {
    woken: std::sync::atomic::AtomicBool,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

impl RemoteWake {
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        let w = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = w {
            w.wake();
        }
    }

    fn poll(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
        drop(slot);
        // A wake between the swap and storing the waker must not be lost.
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
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
            Some(t) => {
                t.set_at(at);
            }
            None => self.timer = Some(async_io::Timer::at(at)),
        }
    }

    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        match &mut self.timer {
            Some(t) if self.armed.is_some() => match std::pin::Pin::new(t).poll(cx) {
                Poll::Ready(_) => {
                    self.armed = None;
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            },
            _ => Poll::Pending,
        }
    }
}

/// Writes as much of the engine's output as the socket takes without waiting.
fn write_now(stream: &Async<TcpStream>, conn: &mut Connection) -> io::Result<()> {
    while !conn.transmit().is_empty() {
        match stream.get_ref().write(conn.transmit()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.consume_transmit(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How long a closing connection may take to write its last answer, and then
/// to let the peer's unread bytes drain before the socket is dropped.
const CLOSE_WRITE: Duration = Duration::from_secs(5);
const CLOSE_LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Writes the last bytes (bounded in time), half-closes, then reads and
/// discards briefly: dropping a socket with unread input makes the kernel send
/// a reset, which can destroy a 400/408/413 before the client reads it.
async fn finish_close(stream: &Async<TcpStream>, conn: &mut Connection) {
    let wrote = smol::future::or(
        async {
            while !conn.transmit().is_empty() {
                if write_now(stream, conn).is_err() || stream.writable().await.is_err() {
                    return false;
                }
            }
            true
        },
        async {
            smol::Timer::after(CLOSE_WRITE).await;
            false
        },
    )
    .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    if !wrote {
        return;
    }
    smol::future::or(
        async {
            let mut sink = [0u8; 4096];
            let mut total = 0;
            while let Ok(n) = smol::io::AsyncReadExt::read(&mut &*stream, &mut sink).await {
                total += n;
                if n == 0 || total >= LINGER_BYTES {
                    break;
                }
            }
        },
        async {
            smol::Timer::after(CLOSE_LINGER).await;
        },
    )
    .await;
}
