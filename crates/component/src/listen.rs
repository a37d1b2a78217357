//! How the hub's servers (gRPC and the agencies' webhooks) take connections, bounded so
//! that no client can stop them from outside:
//! - at most `limits.max_connections` open at once: past it the accept loop waits for
//!   one to close (the kernel's backlog holds the rest) instead of running the process
//!   out of file descriptors;
//! - an accept that fails for lack of descriptors or memory (`EMFILE`, `ENFILE`,
//!   `ENOBUFS`, `ENOMEM`) is retried after a pause and logged, never the end of the
//!   listener (tonic's own listener stopped for good on the first `EMFILE`);
//! - a TLS handshake has `limits.handshake_timeout_ms` to finish, each in its own task so
//!   a slow one delays nobody;
//! - a connection on which nothing moves for `limits.idle_timeout_ms` is closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;
use himaya_settings::ServerLimits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A connection that closes itself when idle and gives its place back when dropped.
pub struct Guarded<T> {
    io: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Held for the connection's life: one of `max_connections` places.
    _place: OwnedSemaphorePermit,
}

impl<T> Guarded<T> {
    fn new(io: T, idle: Duration, place: OwnedSemaphorePermit) -> Self {
        Guarded {
            io,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _place: place,
        }
    }

    fn moved(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Pending I/O: still pending, unless the connection has been idle too long.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for longer than limits.idle_timeout_ms",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Guarded<TcpStream> {
    /// Moves the connection to the runtime `to`: a socket is driven by the runtime it
    /// was registered with, which must not be a busy one for a connection served on
    /// another (the urgent one: `himaya_bus::urgent`). The socket is duplicated and the
    /// copy registered with `to`, then the original closed; what the kernel holds for it
    /// stays. Its idle deadline is set again on `to`'s timer.
    pub fn move_to(&mut self, to: &tokio::runtime::Handle) -> io::Result<()> {
        use std::os::fd::AsFd;
        let copy = std::net::TcpStream::from(self.io.as_fd().try_clone_to_owned()?);
        copy.set_nonblocking(true)?;
        let _on = to.enter();
        self.io = TcpStream::from_std(copy)?;
        self.deadline = Box::pin(tokio::time::sleep(self.idle));
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, b) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // A client that does not read what it asked for holds the connection too.
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Connected for Guarded<TcpStream> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

/// Something that accepts connections: the real listener, or a test's scripted one.
pub trait Accept: Send + 'static {
    fn accept(&mut self) -> impl std::future::Future<Output = io::Result<TcpStream>> + Send;
}

impl Accept for TcpListener {
    async fn accept(&mut self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

/// Accepts on `listener` until `shutdown`, bounded by `limits`; each connection is
/// passed through `wrap` (a TLS handshake, or nothing) within the handshake timeout.
/// The stream never ends with an error: it ends only at shutdown.
pub fn incoming<A, W, F, IO>(
    listener: A,
    limits: &ServerLimits,
    server: &'static str,
    wrap: W,
    shutdown: CancellationToken,
) -> impl Stream<Item = io::Result<IO>> + Send + 'static
where
    A: Accept,
    W: Fn(Guarded<TcpStream>) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = io::Result<IO>> + Send + 'static,
    IO: Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<IO>(64);
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let (idle, handshake) = (limits.idle_timeout(), limits.handshake_timeout());
    let wrap = Arc::new(wrap);
    tokio::spawn(async move {
        let mut listener = listener;
        let mut trouble = Trouble::new(server);
        loop {
            let place = tokio::select! {
                p = places.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = shutdown.cancelled() => return,
            };
            let stream = tokio::select! {
                s = listener.accept() => s,
                _ = shutdown.cancelled() => return,
            };
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    drop(place);
                    trouble.accept_failed(&e).await;
                    continue;
                }
            };
            trouble.accepted();
            let _ = stream.set_nodelay(true);
            let (tx, wrap) = (tx.clone(), wrap.clone());
            tokio::spawn(async move {
                let guarded = Guarded::new(stream, idle, place);
                match tokio::time::timeout(handshake, wrap(guarded)).await {
                    Ok(Ok(io)) => {
                        let _ = tx.send(io).await;
                    }
                    Ok(Err(e)) => tracing::debug!(server, error = %e, "handshake failed"),
                    Err(_) => tracing::debug!(server, "handshake timed out"),
                }
            });
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok)))
}

/// Failed accepts: paused on and logged at most every 10 s (a flood of them must not
/// become a flood of log lines).
struct Trouble {
    server: &'static str,
    pause: Duration,
    failures: u64,
    last_log: Option<Instant>,
}

impl Trouble {
    fn new(server: &'static str) -> Self {
        Trouble {
            server,
            pause: Duration::from_millis(10),
            failures: 0,
            last_log: None,
        }
    }

    async fn accept_failed(&mut self, e: &io::Error) {
        self.failures += 1;
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.last_log = Some(Instant::now());
            if exhausted {
                tracing::error!(server = self.server, failures = self.failures, error = %e,
                    "cannot accept connections: out of file descriptors or memory; retrying (raise LimitNOFILE or lower limits.max_connections)");
            } else {
                tracing::warn!(server = self.server, failures = self.failures, error = %e, "accepting a connection failed; retrying");
            }
        }
        if exhausted {
            // Descriptors come back only as connections close: wait, a little longer
            // each time, instead of spinning on the same error.
            tokio::time::sleep(self.pause).await;
            self.pause = (self.pause * 2).min(Duration::from_secs(1));
        }
    }

    fn accepted(&mut self) {
        if self.failures > 0 && self.last_log.is_some() {
            tracing::info!(
                server = self.server,
                failures = self.failures,
                "accepting connections again"
            );
        }
        self.failures = 0;
        self.last_log = None;
        self.pause = Duration::from_millis(10);
    }
}

/// Serves HTTP/1.1 (the webhooks, the web front) on connections from [`incoming`]:
/// request line and headers within `limits.header_read_timeout_ms`, then each handler's
/// own body deadline; at shutdown, connections finish their request and close.
pub async fn serve_http(
    router: axum::Router,
    listener: TcpListener,
    limits: ServerLimits,
    server: &'static str,
    shutdown: CancellationToken,
) {
    use futures_util::StreamExt;
    use hyper_util::rt::{TokioIo, TokioTimer};
    let plain = |c| async { Ok(c) };
    let mut incoming = std::pin::pin!(incoming(listener, &limits, server, plain, shutdown.clone()));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout())
        .max_buf_size(64 * 1024);
    let http = Arc::new(http);
    while let Some(Ok(conn)) = incoming.next().await {
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let (http, stop) = (http.clone(), shutdown.clone());
        tokio::spawn(async move {
            let conn = http.serve_connection(TokioIo::new(conn), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Raises this process's soft limit of open files to its hard limit: a systemd service
/// starts at 1024, which a few hundred idle clients would exhaust. Returns the limit now
/// in force.
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open files limit");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::collections::VecDeque;

    /// A listener that fails with the given errors first, then accepts for real.
    struct Scripted {
        errors: VecDeque<i32>,
        real: TcpListener,
    }

    impl Accept for Scripted {
        async fn accept(&mut self) -> io::Result<TcpStream> {
            if let Some(code) = self.errors.pop_front() {
                return Err(io::Error::from_raw_os_error(code));
            }
            self.real.accept().await.map(|(s, _)| s)
        }
    }

    #[tokio::test]
    async fn running_out_of_descriptors_does_not_end_the_listener() {
        let real = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = real.local_addr().unwrap();
        let listener = Scripted {
            errors: [
                libc::EMFILE,
                libc::EMFILE,
                libc::ENFILE,
                libc::ENOBUFS,
                libc::ENOMEM,
                libc::ECONNABORTED,
            ]
            .into(),
            real,
        };
        let stop = CancellationToken::new();
        let limits = ServerLimits::default();
        let mut conns = Box::pin(incoming(
            listener,
            &limits,
            "test",
            |g| async { Ok(g) },
            stop.clone(),
        ));
        let _client = TcpStream::connect(addr).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), conns.next()).await;
        assert!(
            matches!(first, Ok(Some(Ok(_)))),
            "a connection after six failed accepts"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn connections_are_capped_and_idle_ones_closed() {
        use tokio::io::AsyncReadExt;
        let real = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = real.local_addr().unwrap();
        let limits = ServerLimits {
            max_connections: 2,
            idle_timeout_ms: 300,
            ..ServerLimits::default()
        };
        let stop = CancellationToken::new();
        let mut conns = Box::pin(incoming(
            real,
            &limits,
            "test",
            |g| async { Ok(g) },
            stop.clone(),
        ));
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(conns.next().await.unwrap().unwrap());
        }
        // The third waits while two are open.
        let third = tokio::time::timeout(Duration::from_millis(150), conns.next()).await;
        assert!(
            third.is_err(),
            "a third connection past max_connections = 2"
        );
        // An idle connection fails its next read once the idle timeout passes.
        let mut one = held.remove(0);
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), one.read(&mut buf)).await;
        let err = read.expect("the idle timeout ends the read").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(one);
        // Its place is free again: the third is accepted.
        let third = tokio::time::timeout(Duration::from_secs(5), conns.next()).await;
        assert!(matches!(third, Ok(Some(Ok(_)))));
        stop.cancel();
    }
}
