//! Registration with nsqlookupd (protocol V1): one task per lookupd connects,
//! IDENTIFYs, registers every topic and channel, forwards changes as they
//! happen, PINGs every 15 s, and after any failure reconnects with backoff and
//! registers everything again. A lookupd that is down only delays discovery:
//! nothing on the publish or delivery path waits for it.

use crate::node::Node;
use bytes::BytesMut;
use nsq::api::{ChannelsResponse, ACCEPT_V1};
use nsq_daemon::lookup_protocol::{
    decode_response, LookupCommand, LookupdIdentity, PeerIdentity, MAGIC_V1,
};
use nsq_daemon::VERSION;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Dial, read and write deadlines of a lookupd round trip, as upstream's.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
const PING_INTERVAL: Duration = Duration::from_secs(15);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

struct Peer {
    stop: CancellationToken,
    /// lookupd's HTTP address, learned from its IDENTIFY answer.
    http: Arc<Mutex<Option<String>>>,
}

/// The set of lookupds this nsqd registers with.
pub struct Lookup {
    changes: broadcast::Sender<LookupCommand>,
    peers: Mutex<BTreeMap<String, Peer>>,
}

impl Default for Lookup {
    fn default() -> Self {
        Lookup {
            changes: broadcast::channel(4096).0,
            peers: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Lookup {
    /// Tells every connected lookupd about a REGISTER or UNREGISTER; the others
    /// learn it when they reconnect.
    pub fn notify(&self, change: LookupCommand) {
        let _ = self.changes.send(change);
    }

    pub fn addresses(&self) -> Vec<String> {
        self.peers.lock().keys().cloned().collect()
    }

    pub fn is_configured(&self) -> bool {
        !self.peers.lock().is_empty()
    }

    /// HTTP addresses of the lookupds that have answered IDENTIFY.
    pub fn http_addresses(&self) -> Vec<String> {
        self.peers
            .lock()
            .values()
            .filter_map(|p| p.http.lock().clone())
            .collect()
    }

    /// Connects to the lookupds in `addresses` and drops the others
    /// (`--lookupd-tcp-address`, `PUT /config/nsqlookupd_tcp_addresses`).
    pub fn set_addresses(node: &Arc<Node>, addresses: Vec<String>) {
        let mut peers = node.lookup.peers.lock();
        peers.retain(|addr, peer| {
            let keep = addresses.contains(addr);
            if !keep {
                tracing::info!(lookupd = %addr, "no longer registering with lookupd");
                peer.stop.cancel();
            }
            keep
        });
        for addr in addresses {
            if peers.contains_key(&addr) {
                continue;
            }
            let peer = Peer {
                stop: node.shutdown.child_token(),
                http: Arc::new(Mutex::new(None)),
            };
            tokio::spawn(run_peer(
                node.clone(),
                addr.clone(),
                peer.stop.clone(),
                peer.http.clone(),
            ));
            peers.insert(addr, peer);
        }
    }
}

/// Keeps one lookupd informed until stopped.
async fn run_peer(
    node: Arc<Node>,
    addr: String,
    stop: CancellationToken,
    http: Arc<Mutex<Option<String>>>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut registered = false;
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            result = session(&node, &addr, &stop, &http, &mut registered) => result,
        };
        if registered {
            backoff = Duration::from_millis(250);
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(lookupd = %addr, error = %e, retry_in = ?backoff, "lookupd connection failed")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn session(
    node: &Arc<Node>,
    addr: &str,
    stop: &CancellationToken,
    http: &Mutex<Option<String>>,
    registered: &mut bool,
) -> io::Result<()> {
    let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Io> = match &node.lookupd_tls {
        None => Box::new(tcp),
        Some(tls) => {
            let name = tls
                .options
                .server_name_for(addr)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let handshake = tls.connector.connect(name, tcp);
            Box::new(
                tokio::time::timeout(IO_TIMEOUT, handshake)
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })??,
            )
        }
    };
    let mut conn = Conn {
        stream,
        buf: BytesMut::new(),
    };
    conn.write(MAGIC_V1).await?;
    let answer = conn
        .request(&LookupCommand::Identify(node.peer_identity()))
        .await?;
    if let Ok(identity) = serde_json::from_slice::<LookupdIdentity>(&answer) {
        *http.lock() = Some(format!(
            "{}:{}",
            identity.broadcast_address, identity.http_port
        ));
    }
    // Subscribe before taking the snapshot so that no change falls between.
    let mut changes = node.lookup.changes.subscribe();
    register_everything(node, &mut conn).await?;
    *registered = true;
    tracing::info!(lookupd = %addr, "registered with lookupd");
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = ping.tick() => {
                conn.request(&LookupCommand::Ping).await?;
            }
            // lookupd only ever answers, so anything readable now is its close.
            closed = conn.closed() => return closed,
            change = changes.recv() => match change {
                Ok(change) => {
                    conn.request(&change).await?;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => register_everything(node, &mut conn).await?,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// REGISTER for every channel, and for every topic without channels.
async fn register_everything(node: &Node, conn: &mut Conn) -> io::Result<()> {
    for topic in node.topics() {
        let channels = topic.channels();
        if channels.is_empty() {
            conn.request(&LookupCommand::Register {
                topic: topic.name.clone(),
                channel: None,
            })
            .await?;
        }
        for channel in channels {
            let register = LookupCommand::Register {
                topic: topic.name.clone(),
                channel: Some(channel.name.clone()),
            };
            conn.request(&register).await?;
        }
    }
    Ok(())
}

/// A lookupd connection: plain TCP, or TLS with `--lookupd-tls` (ours).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    stream: Box<dyn Io>,
    buf: BytesMut,
}

impl Conn {
    /// Completes when lookupd closes the connection (or sends what it never
    /// should). Cancel-safe: a read either completes or takes nothing.
    async fn closed(&mut self) -> io::Result<()> {
        match self.stream.read_buf(&mut self.buf).await? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "lookupd closed the connection",
            )),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected data from lookupd",
            )),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let write = async {
            self.stream.write_all(bytes).await?;
            // TLS holds records until flushed.
            self.stream.flush().await
        };
        tokio::time::timeout(IO_TIMEOUT, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
    }

    /// Sends a command and reads its answer; an `E_...` answer is an error.
    async fn request(&mut self, command: &LookupCommand) -> io::Result<bytes::Bytes> {
        self.write(&command.to_bytes()).await?;
        let answer = loop {
            match decode_response(&mut self.buf, 1 << 20) {
                Ok(Some(answer)) => break answer,
                Ok(None) => {}
                Err(size) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("answer of {size} bytes"),
                    ))
                }
            }
            let read = tokio::time::timeout(IO_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))??;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "lookupd closed the connection",
                ));
            }
        };
        if answer.starts_with(b"E_") {
            return Err(io::Error::other(
                String::from_utf8_lossy(&answer).into_owned(),
            ));
        }
        Ok(answer)
    }
}

/// The channels the lookupds know for `topic`, so that a topic created here
/// gets them before its first message flows (none of them misses it).
pub async fn channels_known_to_lookupds(node: &Node, topic: &str) -> Vec<String> {
    let client = &node.http_client;
    let mut channels = Vec::new();
    for addr in node.lookup.http_addresses() {
        let Ok(url) = nsq::http_client::api_url(&addr, "/channels", &[("topic", topic)]) else {
            tracing::warn!(lookupd = %addr, "not an HTTP address; not asking it for channels");
            continue;
        };
        let answer = client.get(url).header("Accept", ACCEPT_V1).send().await;
        match answer {
            Ok(response) if response.status().is_success() => {
                if let Ok(list) = response.json::<ChannelsResponse>().await {
                    channels.extend(list.channels);
                }
            }
            Ok(response) => {
                tracing::debug!(lookupd = %addr, status = %response.status(), "no channels from lookupd")
            }
            Err(e) => {
                tracing::warn!(lookupd = %addr, error = %e, "failed to ask lookupd for channels")
            }
        }
    }
    channels.sort();
    channels.dedup();
    channels.retain(|c| !nsq::protocol::is_ephemeral(c));
    channels
}

/// What nsqd says about itself in IDENTIFY.
pub fn identity(node: &Node) -> PeerIdentity {
    let opts = &node.opts;
    let port = |configured: u16, real: Option<u16>| {
        if configured != 0 {
            configured
        } else {
            real.unwrap_or(0)
        }
    };
    PeerIdentity {
        broadcast_address: opts.broadcast_address.clone(),
        hostname: crate::options::hostname(),
        tcp_port: port(opts.broadcast_tcp_port, Some(node.tcp_addr.port())),
        http_port: port(opts.broadcast_http_port, node.http_addr.map(|a| a.port())),
        version: VERSION.to_string(),
    }
}
