//! Registration with nsqlookupd (protocol V1): one task per lookupd connects,
//! IDENTIFYs, registers every topic and channel, forwards changes as they
//! happen, PINGs every 15 s, and after any failure reconnects with backoff and
//! registers everything again. A lookupd that is down only delays discovery:
//! nothing on the publish or delivery path waits for it.
//!
//! It knows nothing of the node: the node hands it, at start, who it is and a
//! way to list what it has ([`Registrations`]), then tells it of changes.

use crate::tls::LookupdTls;
use bytes::BytesMut;
use nsq::{HttpPool, LookupdHttp};
use nsq_daemon::lookup_protocol::{
    decode_response, LookupCommand, LookupdIdentity, PeerIdentity, MAGIC_V1,
};
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

/// Every REGISTER that describes the node now: sent to a lookupd on each
/// (re)connection.
pub type Registrations = Box<dyn Fn() -> Vec<LookupCommand> + Send + Sync>;

/// The set of lookupds this nsqd registers with. Cloning shares it.
#[derive(Clone)]
pub struct Lookup(Arc<Shared>);

struct Shared {
    /// What IDENTIFY says about this nsqd.
    identity: PeerIdentity,
    /// `--lookupd-tls`: how lookupds are dialled.
    tls: Option<LookupdTls>,
    /// For lookupds' HTTP APIs.
    http: HttpPool,
    registrations: Registrations,
    changes: broadcast::Sender<LookupCommand>,
    peers: Mutex<BTreeMap<String, Peer>>,
    /// Cancelled when nsqd stops: every lookupd connection ends.
    stop: CancellationToken,
}

impl Lookup {
    pub fn new(
        identity: PeerIdentity,
        tls: Option<LookupdTls>,
        http: HttpPool,
        registrations: Registrations,
        stop: CancellationToken,
    ) -> Lookup {
        Lookup(Arc::new(Shared {
            identity,
            tls,
            http,
            registrations,
            changes: broadcast::channel(4096).0,
            peers: Mutex::new(BTreeMap::new()),
            stop,
        }))
    }

    /// What this nsqd tells lookupds about itself.
    pub fn identity(&self) -> &PeerIdentity {
        &self.0.identity
    }

    /// Tells every connected lookupd about a REGISTER or UNREGISTER; the others
    /// learn it when they reconnect.
    pub fn notify(&self, change: LookupCommand) {
        let _ = self.0.changes.send(change);
    }

    pub fn addresses(&self) -> Vec<String> {
        self.0.peers.lock().keys().cloned().collect()
    }

    pub fn is_configured(&self) -> bool {
        !self.0.peers.lock().is_empty()
    }

    /// HTTP addresses of the lookupds that have answered IDENTIFY.
    fn http_addresses(&self) -> Vec<String> {
        self.0
            .peers
            .lock()
            .values()
            .filter_map(|p| p.http.lock().clone())
            .collect()
    }

    /// Connects to the lookupds in `addresses` and drops the others
    /// (`--lookupd-tcp-address`, `PUT /config/nsqlookupd_tcp_addresses`).
    pub fn set_addresses(&self, addresses: Vec<String>) {
        let mut peers = self.0.peers.lock();
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
                stop: self.0.stop.child_token(),
                http: Arc::new(Mutex::new(None)),
            };
            tokio::spawn(run_peer(
                self.clone(),
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
    lookup: Lookup,
    addr: String,
    stop: CancellationToken,
    http: Arc<Mutex<Option<String>>>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut registered = false;
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            result = session(&lookup, &addr, &stop, &http, &mut registered) => result,
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
    lookup: &Lookup,
    addr: &str,
    stop: &CancellationToken,
    http: &Mutex<Option<String>>,
    registered: &mut bool,
) -> io::Result<()> {
    let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Io> = match &lookup.0.tls {
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
        .request(&LookupCommand::Identify(lookup.0.identity.clone()))
        .await?;
    if let Ok(identity) = serde_json::from_slice::<LookupdIdentity>(&answer) {
        *http.lock() = Some(format!(
            "{}:{}",
            identity.broadcast_address, identity.http_port
        ));
    }
    // Subscribe before taking the snapshot so that no change falls between.
    let mut changes = lookup.0.changes.subscribe();
    register_everything(lookup, &mut conn).await?;
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
                Err(broadcast::error::RecvError::Lagged(_)) => register_everything(lookup, &mut conn).await?,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

async fn register_everything(lookup: &Lookup, conn: &mut Conn) -> io::Result<()> {
    for register in (lookup.0.registrations)() {
        conn.request(&register).await?;
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

impl Lookup {
    /// The channels the lookupds know for `topic`, so that a topic created
    /// here gets them before its first message flows (none of them misses it).
    pub async fn channels_of(&self, topic: &str) -> Vec<String> {
        let mut channels = Vec::new();
        for addr in self.http_addresses() {
            let lookupd = LookupdHttp::with_pool(&addr, &self.0.http);
            match lookupd.channels(topic).await {
                Ok(list) => channels.extend(list),
                Err(
                    e @ nsq::Error::Http {
                        status: Some(_), ..
                    },
                ) => {
                    tracing::debug!(lookupd = %addr, error = %e, "no channels from lookupd")
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
}
