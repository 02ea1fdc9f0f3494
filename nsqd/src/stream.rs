//! A client connection's two halves: plain TCP, or TLS once IDENTIFY has
//! upgraded it. An enum rather than a boxed trait object keeps the plain path
//! as direct as it was: one predictable branch per read or write.

use bytes::BytesMut;
use nsq_daemon::tls::{SessionInfo, TlsAcceptor};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// How long a client has to complete the TLS handshake, as upstream's.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream>),
    /// Lent to a TLS upgrade in progress.
    Detached,
}

pub enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream>),
    Detached,
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection is being upgraded")
}

impl ReadHalf {
    /// Whether [`ReadHalf::try_read_buf`] can make progress without waiting:
    /// only a plain socket can be polled that way.
    pub fn can_poll(&self) -> bool {
        matches!(self, ReadHalf::Plain(_))
    }

    /// Reads what has already arrived; `WouldBlock` when nothing has.
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            ReadHalf::Plain(r) => r.try_read_buf(buf),
            _ => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Waits for and reads more bytes; 0 at EOF. Cancel-safe.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            ReadHalf::Plain(r) => r.read_buf(buf).await,
            ReadHalf::Tls(r) => r.read_buf(buf).await,
            ReadHalf::Detached => Err(detached()),
        }
    }
}

impl WriteHalf {
    /// Writes all of `bytes` onto the wire.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            WriteHalf::Plain(w) => w.write_all(bytes).await,
            // rustls may hold records back until flushed.
            WriteHalf::Tls(w) => {
                w.write_all(bytes).await?;
                w.flush().await
            }
            WriteHalf::Detached => Err(detached()),
        }
    }

    /// Ends our sending side (with TLS, after a close_notify).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(w) => w.shutdown().await,
            WriteHalf::Tls(w) => w.shutdown().await,
            WriteHalf::Detached => Ok(()),
        }
    }
}

/// Why an upgrade failed, and the plain halves when the connection survived it.
pub struct UpgradeFailed {
    pub error: io::Error,
    pub halves: Option<(ReadHalf, WriteHalf)>,
}

/// Runs the server side of a TLS handshake on a plain connection.
pub async fn upgrade(
    read: ReadHalf,
    write: WriteHalf,
    acceptor: &TlsAcceptor,
) -> Result<(ReadHalf, WriteHalf, SessionInfo), UpgradeFailed> {
    let (ReadHalf::Plain(read), WriteHalf::Plain(write)) = (read, write) else {
        return Err(UpgradeFailed {
            error: io::Error::new(io::ErrorKind::InvalidInput, "connection is already TLS"),
            halves: None,
        });
    };
    let stream = read.reunite(write).map_err(|e| UpgradeFailed {
        error: io::Error::other(e.to_string()),
        halves: None,
    })?;
    let handshake = acceptor.accept(stream).into_fallible();
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err((error, stream))) => {
            let (read, write) = stream.into_split();
            return Err(UpgradeFailed {
                error,
                halves: Some((ReadHalf::Plain(read), WriteHalf::Plain(write))),
            });
        }
        Err(_) => {
            return Err(UpgradeFailed {
                error: io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"),
                halves: None,
            })
        }
    };
    let info = SessionInfo::of(tls.get_ref().1);
    let (read, write) = tokio::io::split(tls);
    Ok((ReadHalf::Tls(read), WriteHalf::Tls(write), info))
}
