//! TCP listeners as both daemons need them: a deep accept queue, and an
//! accept loop that bounds open connections and waits for them at shutdown.
//! nsqd may listen on a unix socket instead (upstream v1.3), through the
//! same loop.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Connections the kernel may queue for `accept`; Linux caps it at
/// `net.core.somaxconn`, as Go's listeners use.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener that could not bind, named as the daemon's log lines name it
/// (`TCP`, `HTTP`, `HTTPS`, ...), since "address already in use" alone does
/// not say which of a daemon's ports is taken.
#[derive(Debug, thiserror::Error)]
#[error("{listener}: failed to listen on {addr}: {source}")]
pub struct ListenError {
    pub listener: &'static str,
    pub addr: String,
    #[source]
    pub source: std::io::Error,
}

/// Binds the daemon's `listener` (its name in logs and errors) on `addr`
/// (`host:port`) with a deep accept queue. Rust's standard library asks for
/// 128: a burst of connects past that, say from a crowd of hostile clients,
/// has SYNs dropped and the good clients behind them retried a second or
/// more later.
pub async fn listen(
    listener: &'static str,
    addr: &str,
) -> Result<tokio::net::TcpListener, ListenError> {
    bind_deep(addr).await.map_err(|source| ListenError {
        listener,
        addr: addr.to_string(),
        source,
    })
}

/// Where a listener is bound: a TCP address, or a unix socket's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl LocalAddr {
    /// The TCP port; `None` for a unix socket.
    pub fn port(&self) -> Option<u16> {
        match self {
            LocalAddr::Tcp(addr) => Some(addr.port()),
            LocalAddr::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalAddr::Tcp(addr) => addr.fmt(f),
            LocalAddr::Unix(path) => path.display().fmt(f),
        }
    }
}

/// A bound listener: TCP, or a unix socket when the address was a path.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(UnixSocket),
}

impl Listener {
    pub fn local_addr(&self) -> LocalAddr {
        match self {
            Listener::Tcp(l) => {
                LocalAddr::Tcp(l.local_addr().expect("bound socket has an address"))
            }
            Listener::Unix(l) => LocalAddr::Unix(l.path.clone()),
        }
    }
}

/// Binds `listener` on `addr` as upstream nsqd does: a unix socket when
/// `addr` is not `host:port` ([`nsq::transport::is_unix_socket_path`]),
/// else TCP as [`listen`] does.
pub async fn listen_tcp_or_unix(
    listener: &'static str,
    addr: &str,
) -> Result<Listener, ListenError> {
    if !nsq::transport::is_unix_socket_path(addr) {
        return listen(listener, addr).await.map(Listener::Tcp);
    }
    let path = PathBuf::from(addr);
    let error = |source| ListenError {
        listener,
        addr: addr.to_string(),
        source,
    };
    // As Go's: an existing file, even a stale socket, is "address in use";
    // it is not ours to remove.
    let socket = tokio::net::UnixListener::bind(&path).map_err(error)?;
    Ok(Listener::Unix(UnixSocket { socket, path }))
}

/// A unix socket listener that removes its socket file when dropped, as
/// Go's does when closed.
pub struct UnixSocket {
    socket: tokio::net::UnixListener,
    path: PathBuf,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "failed to remove the unix socket");
        }
    }
}

impl axum::serve::Listener for UnixSocket {
    type Io = tokio::net::UnixStream;
    type Addr = UnixPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match Accept::accept(self).await {
                Ok(accepted) => return accepted,
                // Usually out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(UnixPeer)
    }
}

/// The peer of a unix socket connection: unnamed, shown as Go shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixPeer;

impl std::fmt::Display for UnixPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("@")
    }
}

/// What [`serve_tcp`] accepts from: a TCP listener or a unix socket.
pub trait Accept: Send {
    type Stream: Send + 'static;
    type Peer: std::fmt::Display + Send + 'static;
    fn accept(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, Self::Peer)>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    type Peer = SocketAddr;

    /// Accepts with Nagle off.
    async fn accept(&self) -> std::io::Result<(Self::Stream, Self::Peer)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }
}

impl Accept for UnixSocket {
    type Stream = tokio::net::UnixStream;
    type Peer = UnixPeer;

    async fn accept(&self) -> std::io::Result<(Self::Stream, Self::Peer)> {
        let (stream, _) = self.socket.accept().await?;
        Ok((stream, UnixPeer))
    }
}

async fn bind_deep(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std does on Unix: a restarted daemon can bind at once.
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "address resolved to nothing",
        )
    }))
}

/// Accepts connections until `shutdown`, running `handle` on each (TCP
/// with Nagle off), then waits for the connections still open to finish.
///
/// With `max_connections` above 0, a connection that would exceed that many
/// open ones is closed as soon as it is accepted, before a byte is read, so
/// a flood of idle or hostile peers cannot exhaust file descriptors or memory.
/// One warning says so, then at most one per [`WARN_INTERVAL`] while refusals go on.
pub async fn serve_tcp<L, F, Fut>(
    listener: L,
    shutdown: tokio_util::sync::CancellationToken,
    max_connections: usize,
    handle: F,
) where
    L: Accept,
    F: Fn(L::Stream, L::Peer) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = (max_connections > 0)
        .then(|| std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections)));
    let mut refusals = Throttle::default();
    let mut failures = Throttle::default();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let slot = slots.as_ref().map(|s| s.clone().try_acquire_owned().ok());
                    if let Some(None) = slot {
                        drop(stream);
                        if let Some(refused) = refusals.tick() {
                            tracing::warn!(
                                max_connections,
                                refused,
                                client = %peer,
                                "TCP: connection limit reached (--max-tcp-connections); closing new connections until open ones close"
                            );
                        }
                    } else {
                        let connection = handle(stream, peer);
                        connections.spawn(async move {
                            connection.await;
                            drop(slot);
                        });
                    }
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    if let Some(failed) = failures.tick() {
                        tracing::warn!(error = %e, failed, "TCP: accept failed");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// The shortest time between two warnings about the same recurring event.
pub const WARN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Counts a recurring event and says when it deserves a log line again.
#[derive(Default)]
struct Throttle {
    last: Option<std::time::Instant>,
    count: u64,
}

impl Throttle {
    /// Records one event; returns how many happened since the last line
    /// (this one included) when a new line is due.
    fn tick(&mut self) -> Option<u64> {
        self.count += 1;
        if self.last.is_some_and(|last| last.elapsed() < WARN_INTERVAL) {
            return None;
        }
        self.last = Some(std::time::Instant::now());
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// An echo server limited to two connections.
    async fn limited_echo() -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(serve_tcp(
            listener,
            shutdown.clone(),
            2,
            |mut s, _| async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    let _ = s.write_all(&buf[..n]).await;
                }
            },
        ));
        (addr, shutdown)
    }

    async fn echoes(conn: &mut TcpStream) -> bool {
        if conn.write_all(b"x").await.is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        matches!(conn.read(&mut byte).await, Ok(1))
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_until_one_leaves() {
        let (addr, shutdown) = limited_echo().await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(echoes(&mut first).await && echoes(&mut second).await);
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(!echoes(&mut third).await, "a third connection is closed");
        drop(first);
        // The slot frees once the server has seen the close.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let mut again = TcpStream::connect(addr).await.unwrap();
            if echoes(&mut again).await {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "slot never freed");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(echoes(&mut second).await);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_taken_port_is_named_by_its_listener() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = listen("HTTPS", &addr).await.unwrap_err();
        assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("HTTPS: failed to listen on {addr}: ")),
            "{text}"
        );
    }

    #[test]
    fn throttle_reports_once_per_interval_with_the_count() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.tick(), Some(1));
        assert_eq!(throttle.tick(), None);
        assert_eq!(throttle.tick(), None);
        throttle.last = Some(std::time::Instant::now() - WARN_INTERVAL);
        assert_eq!(throttle.tick(), Some(3));
    }
}
