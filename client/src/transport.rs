//! The two halves of a TCP connection that may turn to TLS midway, as NSQ's
//! connections do: they start plain and, when IDENTIFY asks for it, continue
//! encrypted. Generic over the TLS stream, because a client's and a server's
//! differ: this crate's connections and nsqd's use the same halves. A
//! connection may also run over a unix socket (nsqd v1.3 listens on one when
//! its address is a path), plain only.
//!
//! Enums, not boxed trait objects, keep the plain path as direct as a bare
//! socket: one predictable branch per read or write.

use bytes::BytesMut;
use std::io;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{unix, TcpStream, UnixStream};

/// How long a connection in a tight request/response loop polls for its
/// next bytes before it parks: waking a parked task costs more than that.
pub const SPIN_WINDOW: Duration = Duration::from_micros(50);

/// The read half of a connection; `S` is the TLS stream it may become.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use nsq::transport::{split, ReadHalf, WriteHalf, SPIN_WINDOW};
///
/// type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;
/// let tcp = tokio::net::TcpStream::connect("127.0.0.1:4150").await?;
/// let (mut read, mut write): (ReadHalf<Tls>, WriteHalf<Tls>) = split(tcp);
/// write.write_all(b"  V2NOP\n").await?;
/// let mut buf = bytes::BytesMut::new();
/// // nsqd answers nothing to NOP; this waits for its first heartbeat.
/// let n = read.read_buf_spinning(&mut buf, SPIN_WINDOW).await?;
/// # let _ = n;
/// # Ok(())
/// # }
/// ```
pub enum ReadHalf<S> {
    Plain(OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
    Tls(tokio::io::ReadHalf<S>),
    /// Lent to a TLS upgrade in progress: reads fail until it is put back.
    Detached,
}

/// The write half of a connection; `S` is the TLS stream it may become.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;
/// let tcp = tokio::net::TcpStream::connect("127.0.0.1:4150").await?;
/// let (_, mut write) = nsq::transport::split::<Tls>(tcp);
/// write.write_all(b"  V2").await?;
/// write.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub enum WriteHalf<S> {
    Plain(OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<S>),
    /// Lent to a TLS upgrade in progress: writes fail until it is put back.
    Detached,
}

/// The halves of a plain connection.
pub fn split<S>(tcp: TcpStream) -> (ReadHalf<S>, WriteHalf<S>) {
    let (read, write) = tcp.into_split();
    (ReadHalf::Plain(read), WriteHalf::Plain(write))
}

/// The halves of a unix socket connection.
pub fn split_unix<S>(stream: UnixStream) -> (ReadHalf<S>, WriteHalf<S>) {
    let (read, write) = stream.into_split();
    (ReadHalf::Unix(read), WriteHalf::Unix(write))
}

/// Whether `addr` names a unix socket rather than a TCP `host:port`, by
/// upstream's rule: whatever does not split as `host:port` is a path.
///
/// ```
/// use nsq::transport::is_unix_socket_path;
///
/// assert!(is_unix_socket_path("/run/nsqd.sock"));
/// assert!(!is_unix_socket_path("127.0.0.1:4150"));
/// assert!(!is_unix_socket_path("[::1]:4150"));
/// ```
pub fn is_unix_socket_path(addr: &str) -> bool {
    let host_port = match addr.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once("]:"),
        None => addr.split_once(':').filter(|(_, port)| !port.contains(':')),
    };
    match host_port {
        Some((host, _)) => host.contains(['[', ']']),
        None => true,
    }
}

/// The halves of a connection once its TLS handshake is done.
pub fn split_tls<S: AsyncRead + AsyncWrite>(tls: S) -> (ReadHalf<S>, WriteHalf<S>) {
    let (read, write) = tokio::io::split(tls);
    (ReadHalf::Tls(read), WriteHalf::Tls(write))
}

/// The plain socket again, to run a TLS handshake on; an error when the
/// halves are already TLS or were lent out.
pub fn reunite<S>(read: ReadHalf<S>, write: WriteHalf<S>) -> io::Result<TcpStream> {
    match (read, write) {
        (ReadHalf::Plain(read), WriteHalf::Plain(write)) => read
            .reunite(write)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
        (ReadHalf::Unix(_), _) | (_, WriteHalf::Unix(_)) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TLS over a unix socket is not supported",
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "connection is not plain TCP",
        )),
    }
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection is being upgraded")
}

impl<S: AsyncRead> ReadHalf<S> {
    /// Waits for and reads more bytes; 0 at EOF. Cancel-safe.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            ReadHalf::Plain(r) => r.read_buf(buf).await,
            ReadHalf::Unix(r) => r.read_buf(buf).await,
            ReadHalf::Tls(r) => r.read_buf(buf).await,
            ReadHalf::Detached => Err(detached()),
        }
    }

    /// The TCP socket of a plain TCP connection, for its options.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            ReadHalf::Plain(r) => Some(r.as_ref()),
            _ => None,
        }
    }

    /// As [`ReadHalf::read_buf`], but a plain socket (TCP or unix) is first polled for up
    /// to `window` before the task parks: in a request/response loop the
    /// answer usually comes sooner than a parked task wakes. TLS parks at
    /// once (its reads cannot be polled without waiting). Cancel-safe.
    pub async fn read_buf_spinning(
        &mut self,
        buf: &mut BytesMut,
        window: Duration,
    ) -> io::Result<usize> {
        if !window.is_zero() {
            let until = Instant::now() + window;
            loop {
                let attempt = match self {
                    ReadHalf::Plain(r) => r.try_read_buf(buf),
                    ReadHalf::Unix(r) => r.try_read_buf(buf),
                    _ => break,
                };
                match attempt {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if Instant::now() >= until {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    result => return result,
                }
            }
        }
        self.read_buf(buf).await
    }
}

impl<S: AsyncWrite> WriteHalf<S> {
    /// Writes all of `bytes` onto the wire.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            WriteHalf::Plain(w) => w.write_all(bytes).await,
            WriteHalf::Unix(w) => w.write_all(bytes).await,
            // rustls may hold records back until flushed.
            WriteHalf::Tls(w) => {
                w.write_all(bytes).await?;
                w.flush().await
            }
            WriteHalf::Detached => Err(detached()),
        }
    }

    /// Writes what the socket takes without waiting: a plain socket (TCP or
    /// unix) only; TLS and a lent-out half answer `WouldBlock`.
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Plain(w) => w.try_write(bytes),
            WriteHalf::Unix(w) => w.try_write(bytes),
            WriteHalf::Tls(_) | WriteHalf::Detached => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// The TCP socket of a plain TCP connection, for its options.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            WriteHalf::Plain(w) => Some(w.as_ref()),
            _ => None,
        }
    }

    /// Ends our sending side (with TLS, after a close_notify).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(w) => w.shutdown().await,
            WriteHalf::Unix(w) => w.shutdown().await,
            WriteHalf::Tls(w) => w.shutdown().await,
            WriteHalf::Detached => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Tls = tokio_rustls::client::TlsStream<TcpStream>;

    #[tokio::test]
    async fn reads_spin_then_park_and_halves_reunite() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut read, mut write) = split::<Tls>(client.unwrap());
        let (mut peer, _) = accepted.unwrap();
        write.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // Nothing arrives within the window: the read parks, then completes.
        let answer = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            peer.write_all(b"pong").await.unwrap();
            peer
        };
        let mut buf = BytesMut::new();
        let (n, _peer) = tokio::join!(read.read_buf_spinning(&mut buf, SPIN_WINDOW), answer);
        assert_eq!(n.unwrap(), 4);
        assert_eq!(&buf[..], b"pong");
        assert!(reunite(read, write).is_ok());
        assert!(reunite::<Tls>(ReadHalf::Detached, WriteHalf::Detached).is_err());
    }
}
