//! The TCP listener and protocol V1, spoken by nsqd: magic `"  V1"`, then
//! command lines. Every answer, errors included, is `[size: u32 BE][data]`
//! with no frame type. Every error closes the connection; when it closes, the
//! peer leaves all of its registrations.

use crate::registry::{Category, Peer, Registration};
use crate::state::State;
use bytes::BytesMut;
use nsq::protocol::{is_valid_channel_name, is_valid_topic_name};
use nsq_daemon::lookup_protocol::{encode_response, LookupdIdentity, PeerIdentity, MAGIC_V1};
use nsq_daemon::VERSION;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Longer than any valid command line (two names of at most 64 bytes).
const MAX_LINE: usize = 4096;
/// Upstream reads any IDENTIFY size; an nsqd's identity is a few hundred bytes.
const MAX_IDENTIFY_BODY: i32 = 1024 * 1024;

pub async fn serve(state: Arc<State>, listener: TcpListener) {
    let shutdown = state.shutdown.clone();
    let max_connections = state.opts.max_tcp_connections;
    nsq_daemon::tcp::serve_tcp(listener, shutdown, max_connections, move |stream, addr| {
        handle(state.clone(), stream, addr)
    })
    .await
}

/// The same protocol inside TLS from the first byte (`--tcp-tls-address`,
/// ours: upstream has no TLS between nsqd and nsqlookupd).
pub async fn serve_tls(
    state: Arc<State>,
    listener: TcpListener,
    tls: nsq_daemon::tls::TlsAcceptor,
) {
    let shutdown = state.shutdown.clone();
    let max_connections = state.opts.max_tcp_connections;
    nsq_daemon::tcp::serve_tcp(listener, shutdown, max_connections, move |stream, addr| {
        let (state, tls) = (state.clone(), tls.clone());
        async move {
            let limit = state.opts.client_timeout;
            match tokio::time::timeout(limit, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let (reader, writer) = tokio::io::split(stream);
                    session(state, reader, writer, addr).await
                }
                Ok(Err(e)) => tracing::warn!(client = %addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::warn!(client = %addr, "TLS handshake timed out"),
            }
        }
    })
    .await
}

/// A protocol error: the answer sent before the connection closes.
#[derive(Debug, thiserror::Error)]
enum ProtocolError {
    #[error("E_INVALID {0}")]
    Invalid(String),
    #[error("E_BAD_BODY {0}")]
    BadBody(String),
    #[error("E_BAD_TOPIC {0}")]
    BadTopic(String),
    #[error("E_BAD_CHANNEL {0}")]
    BadChannel(String),
}

/// Why a session ended early.
enum Failure {
    /// The peer broke the protocol; it gets the error, then the connection closes.
    Protocol(ProtocolError),
    /// The socket failed; nothing more can be sent.
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

impl From<ProtocolError> for Failure {
    fn from(e: ProtocolError) -> Self {
        Failure::Protocol(e)
    }
}

/// A command line, split on single spaces as upstream does.
enum Command<'a> {
    Ping,
    Identify,
    Register(&'a [&'a str]),
    Unregister(&'a [&'a str]),
}

impl<'a> Command<'a> {
    fn parse(params: &'a [&'a str]) -> Result<Self, ProtocolError> {
        match params {
            ["PING", ..] => Ok(Command::Ping),
            ["IDENTIFY", ..] => Ok(Command::Identify),
            ["REGISTER", args @ ..] => Ok(Command::Register(args)),
            ["UNREGISTER", args @ ..] => Ok(Command::Unregister(args)),
            [name, ..] => Err(ProtocolError::Invalid(format!("invalid command {name}"))),
            [] => Err(ProtocolError::Invalid("invalid command ".into())),
        }
    }
}

async fn handle(state: Arc<State>, stream: TcpStream, addr: SocketAddr) {
    let (reader, writer) = stream.into_split();
    session(state, reader, writer, addr).await
}

async fn session<R, W>(state: Arc<State>, reader: R, writer: W, addr: SocketAddr)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tracing::info!(client = %addr, "TCP: new client");
    let mut session = Session {
        state: state.clone(),
        addr,
        reader: BufReader::new(reader),
        writer,
        peer: None,
    };
    tokio::select! {
        _ = state.shutdown.cancelled() => {}
        _ = session.run() => {}
    }
    if let Some(peer) = session.peer.take() {
        for registration in state.registry.remove_peer(&peer.id) {
            tracing::info!(client = %addr, %registration, "DB: UNREGISTER");
        }
    }
    tracing::info!(client = %addr, "client closing");
}

struct Session<R, W> {
    state: Arc<State>,
    addr: SocketAddr,
    reader: BufReader<R>,
    writer: W,
    /// Set by IDENTIFY; required by REGISTER and UNREGISTER.
    peer: Option<Arc<Peer>>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    async fn run(&mut self) {
        let mut magic = [0u8; 4];
        let limit = self.state.opts.client_timeout;
        if let Err(e) = timed(limit, self.reader.read_exact(&mut magic)).await {
            tracing::debug!(client = %self.addr, error = %e, "failed to read protocol version");
            return;
        }
        if &magic != MAGIC_V1 {
            tracing::warn!(client = %self.addr, magic = %String::from_utf8_lossy(&magic), "bad protocol magic");
            let _ = self.send(b"E_BAD_PROTOCOL").await;
            return;
        }
        match self.command_loop().await {
            Ok(()) => {}
            Err(Failure::Protocol(e)) => {
                tracing::warn!(client = %self.addr, error = %e, "protocol error; closing");
                if let Err(e) = self.send(e.to_string().as_bytes()).await {
                    tracing::debug!(client = %self.addr, error = %e, "failed to send error");
                }
            }
            Err(Failure::Io(e)) => {
                tracing::debug!(client = %self.addr, error = %e, "connection failed")
            }
        }
    }

    /// Answers commands until the peer hangs up (`Ok`) or fails.
    async fn command_loop(&mut self) -> Result<(), Failure> {
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            let mut limited = (&mut self.reader).take(MAX_LINE as u64);
            let read = limited.read_until(b'\n', &mut line);
            let n = timed(self.state.opts.client_timeout, read).await?;
            if line.last() != Some(&b'\n') {
                if n == MAX_LINE {
                    return Err(ProtocolError::Invalid("command line too long".into()).into());
                }
                // End of stream, possibly within a line: upstream drops it too.
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line);
            let params: Vec<&str> = text.trim().split(' ').collect();
            let answer = match Command::parse(&params)? {
                Command::Ping => self.ping(),
                Command::Identify => self.identify().await?,
                Command::Register(args) => self.register(args)?,
                Command::Unregister(args) => self.unregister(args)?,
            };
            self.send(&answer).await?;
        }
    }

    async fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut buf = BytesMut::with_capacity(4 + data.len());
        encode_response(&mut buf, data);
        self.writer.write_all(&buf).await?;
        // TLS holds records until flushed.
        self.writer.flush().await
    }

    /// Keeps an identified peer in `/lookup` and `/nodes`.
    fn ping(&self) -> Vec<u8> {
        if let Some(peer) = &self.peer {
            let since = peer.touch();
            tracing::debug!(client = %self.addr, last_ping = ?since, "pinged");
        }
        b"OK".to_vec()
    }

    /// `IDENTIFY\n[size: i32 BE][JSON]`: who the nsqd is. Answers with lookupd's own identity.
    async fn identify(&mut self) -> Result<Vec<u8>, Failure> {
        if self.peer.is_some() {
            return Err(ProtocolError::Invalid("cannot IDENTIFY again".into()).into());
        }
        let bad_body = |what: &str| ProtocolError::BadBody(format!("IDENTIFY {what}"));
        let size = timed(self.state.opts.client_timeout, self.reader.read_i32())
            .await
            .map_err(|_| bad_body("failed to read body size"))?;
        if !(0..=MAX_IDENTIFY_BODY).contains(&size) {
            return Err(bad_body(&format!("invalid body size {size}")).into());
        }
        // Filled as bytes arrive: a claimed size costs nothing until sent.
        let mut body = Vec::new();
        let mut limited = (&mut self.reader).take(size as u64);
        let read = limited.read_to_end(&mut body);
        match timed(self.state.opts.client_timeout, read).await {
            Ok(n) if n == size as usize => {}
            _ => return Err(bad_body("failed to read body").into()),
        }
        let identity: PeerIdentity =
            serde_json::from_slice(&body).map_err(|_| bad_body("failed to decode JSON body"))?;
        if identity.broadcast_address.is_empty()
            || identity.tcp_port == 0
            || identity.http_port == 0
            || identity.version.is_empty()
        {
            return Err(bad_body("missing fields").into());
        }
        tracing::info!(
            client = %self.addr,
            broadcast_address = %identity.broadcast_address,
            tcp_port = identity.tcp_port,
            http_port = identity.http_port,
            version = %identity.version,
            "IDENTIFY"
        );
        let peer = Arc::new(Peer::new(self.addr.to_string(), identity));
        if self
            .state
            .registry
            .add_producer(Registration::client(), &peer)
        {
            tracing::info!(client = %self.addr, registration = %Registration::client(), "DB: REGISTER");
        }
        self.peer = Some(peer);
        let opts = &self.state.opts;
        let answer = LookupdIdentity {
            tcp_port: self.state.tcp_addr.port(),
            http_port: self.state.http_addr.port(),
            version: VERSION.into(),
            broadcast_address: opts.broadcast_address.clone(),
            hostname: crate::options::hostname(),
        };
        Ok(serde_json::to_vec(&answer).expect("plain struct"))
    }

    /// `REGISTER <topic> [<channel>]`: adds the peer to the channel (if
    /// given) and to the topic.
    fn register(&self, args: &[&str]) -> Result<Vec<u8>, ProtocolError> {
        let peer = self.identified()?;
        let (topic, channel) = topic_and_channel("REGISTER", args)?;
        for registration in self.state.registry.register(peer, topic, channel) {
            tracing::info!(client = %self.addr, %registration, "DB: REGISTER");
        }
        Ok(b"OK".to_vec())
    }

    /// `UNREGISTER <topic> [<channel>]`: the reverse; without a channel the
    /// peer also leaves every channel of the topic, which nsqd is expected
    /// to have unregistered first.
    fn unregister(&self, args: &[&str]) -> Result<Vec<u8>, ProtocolError> {
        let peer = self.identified()?;
        let (topic, channel) = topic_and_channel("UNREGISTER", args)?;
        for registration in self.state.registry.unregister(&peer.id, topic, channel) {
            if channel.is_none() && registration.category == Category::Channel {
                tracing::warn!(client = %self.addr, %registration, "unexpected UNREGISTER of a channel with its topic");
            } else {
                tracing::info!(client = %self.addr, %registration, "DB: UNREGISTER");
            }
        }
        Ok(b"OK".to_vec())
    }

    fn identified(&self) -> Result<&Arc<Peer>, ProtocolError> {
        self.peer
            .as_ref()
            .ok_or_else(|| ProtocolError::Invalid("client must IDENTIFY".into()))
    }
}

/// `read`, cut off after `limit` ([`Options::client_timeout`]): nsqd PINGs
/// every 15 s, so only a stalled or hostile peer is dropped.
///
/// [`Options::client_timeout`]: crate::options::Options::client_timeout
async fn timed<T>(
    limit: std::time::Duration,
    read: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// The topic and optional channel of REGISTER and UNREGISTER; an empty
/// channel counts as none.
fn topic_and_channel<'a>(
    command: &str,
    args: &[&'a str],
) -> Result<(&'a str, Option<&'a str>), ProtocolError> {
    let Some(&topic) = args.first() else {
        return Err(ProtocolError::Invalid(format!(
            "{command} insufficient number of params"
        )));
    };
    let channel = args.get(1).copied().filter(|c| !c.is_empty());
    if !is_valid_topic_name(topic) {
        return Err(ProtocolError::BadTopic(format!(
            "{command} topic name '{topic}' is not valid"
        )));
    }
    if let Some(channel) = channel {
        if !is_valid_channel_name(channel) {
            return Err(ProtocolError::BadChannel(format!(
                "{command} channel name '{channel}' is not valid"
            )));
        }
    }
    Ok((topic, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_upstream() {
        assert!(matches!(Command::parse(&["PING", "x"]), Ok(Command::Ping)));
        assert!(matches!(
            Command::parse(&["REGISTER"]),
            Ok(Command::Register([]))
        ));
        let err = |p: &[&str]| Command::parse(p).err().unwrap().to_string();
        assert_eq!(err(&["ping"]), "E_INVALID invalid command ping");
        assert_eq!(err(&[""]), "E_INVALID invalid command ");
        fn tc<'a>(args: &[&'a str]) -> Result<(&'a str, Option<&'a str>), String> {
            topic_and_channel("REGISTER", args).map_err(|e| e.to_string())
        }
        assert_eq!(tc(&["t", "c"]), Ok(("t", Some("c"))));
        assert_eq!(tc(&["t", ""]), Ok(("t", None)));
        assert_eq!(
            tc(&[]),
            Err("E_INVALID REGISTER insufficient number of params".into())
        );
        assert_eq!(
            tc(&["a b!"]),
            Err("E_BAD_TOPIC REGISTER topic name 'a b!' is not valid".into())
        );
        assert_eq!(
            tc(&["t", "c!"]),
            Err("E_BAD_CHANNEL REGISTER channel name 'c!' is not valid".into())
        );
    }
}
