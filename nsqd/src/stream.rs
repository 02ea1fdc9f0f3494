//! A client connection's halves as nsqd holds them: plain TCP, or TLS once
//! IDENTIFY has upgraded it ([`nsq::transport`]'s halves over a server-side
//! TLS stream), and the server side of that upgrade.

use nsq_daemon::tls::{SessionInfo, TlsAcceptor};
use std::io;
use std::time::Duration;
use tokio::net::TcpStream;

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;
pub type ReadHalf = nsq::transport::ReadHalf<TlsStream>;
pub type WriteHalf = nsq::transport::WriteHalf<TlsStream>;

/// How long a client has to complete the TLS handshake, as upstream's.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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
    let stream = nsq::transport::reunite(read, write).map_err(|error| UpgradeFailed {
        error,
        halves: None,
    })?;
    let handshake = acceptor.accept(stream).into_fallible();
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err((error, stream))) => {
            return Err(UpgradeFailed {
                error,
                halves: Some(nsq::transport::split(stream)),
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
    let (read, write) = nsq::transport::split_tls(tls);
    Ok((read, write, info))
}
