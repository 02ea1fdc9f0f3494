//! The HTTP server of all three daemons: Go's header limits, and two
//! timeouts that Go's server (and so upstream) leaves unset, so that a client
//! that trickles its headers or sits idle cannot pin a descriptor for good.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Go's `http.DefaultMaxHeaderBytes` (1 MiB) plus the 4 KiB it allows beyond.
pub const MAX_HEADER_BYTES: usize = (1 << 20) + 4096;
/// Header lines per request. Go counts only bytes; hyper needs a count as
/// well (and allocates room for it per request), 100 by default.
const MAX_HEADERS: usize = 2048;
/// How long shutdown waits for requests in progress (a client that stalls
/// mid-request would otherwise hold it up for good).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The timeouts of an HTTP listener (ours: upstream has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct HttpTimeouts {
    /// How long an HTTP client has to send a request's headers, from the
    /// first byte (ours; upstream has no limit).
    #[arg(long, default_value = "10s", value_parser = crate::flags::parse_duration)]
    pub http_header_timeout: Duration,
    /// How long an HTTP connection may wait for its next request before it
    /// is closed (ours; upstream has no limit).
    #[arg(long, default_value = "2m0s", value_parser = crate::flags::parse_duration)]
    pub http_idle_timeout: Duration,
}

impl Default for HttpTimeouts {
    /// The defaults the flags declare.
    fn default() -> Self {
        crate::flags::defaults()
    }
}

/// Serves `app` on `listener` until `shutdown`, then gives requests in
/// progress [`SHUTDOWN_GRACE`] to finish. Each request carries the peer's
/// address as [`ConnectInfo`]`<L::Addr>`.
pub async fn serve<L>(
    name: &'static str,
    mut listener: L,
    app: Router,
    timeouts: HttpTimeouts,
    shutdown: CancellationToken,
) where
    L: axum::serve::Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The watchdog below times headers; hyper's own header timer would
        // also run while a connection waits idle for its next request.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEADER_BYTES + 64 * 1024)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (io, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let activity = Arc::new(Activity::new());
        let app = app.clone();
        let watched = activity.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer.clone()));
            let app = app.clone();
            let activity = watched.clone();
            activity.request_started();
            async move {
                let response = tower_call(app, req).await;
                activity.response_ready();
                response
            }
        });
        let io = TokioIo::new(Watched {
            io,
            activity: activity.clone(),
        });
        let connection = builder.serve_connection(io, service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = activity.expired(timeouts) => {
                    tracing::debug!(listener = name, "closing a connection that timed out");
                }
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
                }
            }
        });
    }
    drop(listener);
    let open = connections.len();
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE * 2, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            open,
            "requests still open at shutdown; dropped"
        );
    }
}

async fn tower_call(
    app: Router,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<axum::response::Response, std::convert::Infallible> {
    use tower_service::Service;
    let mut app = app;
    app.call(req.map(axum::body::Body::new)).await
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's headers, since the given instant.
    Head,
    /// A handler is running: no timeout (upstream's handlers have none).
    Busy,
    /// Waiting for the next request, or writing the last response.
    Idle,
}

/// A connection's phase and when it began, shared by its socket, its
/// requests and its watchdog.
struct Activity {
    state: Mutex<(Phase, Instant)>,
    changed: Notify,
}

impl Activity {
    /// A new connection is reading its first request's headers.
    fn new() -> Self {
        Activity {
            state: Mutex::new((Phase::Head, Instant::now())),
            changed: Notify::new(),
        }
    }

    fn set(&self, phase: Phase) {
        *self.state.lock().expect("not poisoned") = (phase, Instant::now());
        self.changed.notify_one();
    }

    fn request_started(&self) {
        self.set(Phase::Busy);
    }

    fn response_ready(&self) {
        self.set(Phase::Idle);
    }

    /// Bytes moved: the first of a request starts its header clock; while
    /// idle, a response being written keeps the connection alive.
    fn moved(&self, read: bool) {
        let mut state = self.state.lock().expect("not poisoned");
        if state.0 == Phase::Idle {
            *state = (if read { Phase::Head } else { Phase::Idle }, Instant::now());
        }
    }

    /// Completes when the connection has overstayed its phase.
    async fn expired(&self, timeouts: HttpTimeouts) {
        loop {
            let (phase, since) = *self.state.lock().expect("not poisoned");
            let deadline = match phase {
                Phase::Head => since + timeouts.http_header_timeout,
                Phase::Idle => since + timeouts.http_idle_timeout,
                Phase::Busy => {
                    self.changed.notified().await;
                    continue;
                }
            };
            if Instant::now() >= deadline {
                return;
            }
            // Woken early by a change, or at the deadline: look again.
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.changed.notified() => {}
            }
        }
    }
}

/// A socket that reports its traffic to the connection's [`Activity`].
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.moved(true);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if let Poll::Ready(Ok(1..)) = polled {
            self.activity.moved(false);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(1..)) = polled {
            self.activity.moved(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
