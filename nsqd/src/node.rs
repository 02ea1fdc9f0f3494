//! The node: every topic, every connection, and the handle that starts and
//! stops an nsqd inside a process (the binary and the tests use the same).

use crate::channel::{Channel, ChannelConfig};
use crate::client_conn::ClientConn;
use crate::diskqueue::DiskConfig;
use crate::guid::IdGenerator;
use crate::lookup::{self, Lookup};
use crate::metadata::{self, ChannelMeta, Metadata, TopicMeta};
use crate::options::{ClientAuthPolicy, LogLevel, Options, TlsRequired};
use crate::queue::Item;
use crate::topic::{PutError, Topic};
use nsq::api::Stats;
use nsq_daemon::lookup_protocol::LookupCommand;
use nsq_daemon::VERSION;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Called when `PUT /config/log_level` changes the level.
pub type LogLevelHook = Box<dyn Fn(LogLevel) + Send + Sync>;

pub struct Node {
    pub opts: Options,
    pub ids: IdGenerator,
    /// Unix seconds.
    pub start_time: i64,
    started_at: std::time::Instant,
    pub tcp_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    /// Upgrades connections that ask for TLS; `None` without `--tls-cert`.
    pub tls: Option<nsq_daemon::tls::TlsAcceptor>,
    /// The auth servers; `None` when AUTH is disabled.
    pub auth: Option<crate::auth::Authorizer>,
    /// For lookupds' HTTP APIs (and, inside `auth`, auth servers).
    pub http_client: reqwest::Client,
    /// `--lookupd-tls`: how lookupds are dialled.
    pub lookupd_tls: Option<crate::tls::LookupdTls>,
    pub data_dir: PathBuf,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    clients: Mutex<FxHashMap<u64, Arc<ClientConn>>>,
    next_client_id: AtomicU64,
    log_level: Mutex<LogLevel>,
    log_level_hook: Option<LogLevelHook>,
    channel_config: ChannelConfig,
    /// The last disk write error, until a write succeeds again.
    backend_error: Mutex<Option<String>>,
    /// Whether `backend_error` is set: publishes check this, not the lock.
    unhealthy: std::sync::atomic::AtomicBool,
    metadata_changed: Notify,
    /// The lookupds this nsqd registers with.
    pub lookup: Lookup,
    me: std::sync::Weak<Node>,
    pub shutdown: CancellationToken,
    /// Held for the node's life: one nsqd per data directory.
    _dir_lock: File,
}

impl Node {
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// The named topic, created if needed.
    pub fn get_or_create_topic(&self, name: &str) -> Result<Arc<Topic>, PutError> {
        self.topic_or_create(name, true)
    }

    /// As [`Node::get_or_create_topic`]; a new topic starts delivering at once
    /// only when `start`, after the channels lookupd knows have been created.
    fn topic_or_create(&self, name: &str, start: bool) -> Result<Arc<Topic>, PutError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        let mut topics = self.topics.write();
        if let Some(topic) = topics.get(name) {
            return Ok(topic.clone());
        }
        let topic = Topic::new(name, self.channel_config.clone())?;
        topics.insert(name.to_string(), topic.clone());
        drop(topics);
        tracing::info!(topic = name, "topic created");
        self.note_metadata_change(name);
        self.lookup.notify(LookupCommand::Register {
            topic: name.to_string(),
            channel: None,
        });
        if start {
            self.start_topic(&topic);
        }
        Ok(topic)
    }

    /// Starts a topic created at run time. With lookupds configured, upstream
    /// first creates the channels they know, so that none misses a message.
    fn start_topic(&self, topic: &Arc<Topic>) {
        let node = self.me.upgrade().filter(|_| self.lookup.is_configured());
        let Some(node) = node else {
            topic.start();
            return;
        };
        let topic = topic.clone();
        tokio::spawn(async move {
            for channel in lookup::channels_known_to_lookupds(&node, &topic.name).await {
                if let Err(e) = node.get_or_create_channel(&topic, &channel) {
                    tracing::warn!(topic = %topic.name, channel, error = %e, "failed to pre-create channel");
                }
            }
            topic.start();
        });
    }

    /// What this nsqd tells lookupd about itself.
    pub fn peer_identity(&self) -> nsq_daemon::lookup_protocol::PeerIdentity {
        lookup::identity(self)
    }

    /// The named channel of a topic, created if needed.
    pub fn get_or_create_channel(
        &self,
        topic: &Topic,
        name: &str,
    ) -> Result<Arc<Channel>, PutError> {
        let (channel, created) = topic.get_or_create_channel(name)?;
        if created {
            tracing::info!(topic = %topic.name, channel = name, "channel created");
            self.note_metadata_change(name);
            self.lookup.notify(LookupCommand::Register {
                topic: topic.name.clone(),
                channel: Some(name.to_string()),
            });
        }
        Ok(channel)
    }

    /// Publishes to a topic, creating it if needed.
    pub fn publish(&self, topic: &str, item: Item, body_bytes: usize) -> Result<(), PutError> {
        let result = self
            .get_or_create_topic(topic)
            .and_then(|t| t.put(item, body_bytes));
        match &result {
            Err(PutError::Backend(e)) => {
                tracing::error!(topic, error = %e, "publish failed: disk write error");
                *self.backend_error.lock() = Some(e.to_string());
                self.unhealthy.store(true, Ordering::Release);
            }
            // Healthy publishes stay off the node-wide lock.
            Ok(()) if self.unhealthy.load(Ordering::Acquire) => {
                *self.backend_error.lock() = None;
                self.unhealthy.store(false, Ordering::Release);
            }
            _ => {}
        }
        result
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub fn delete_topic(&self, name: &str) -> bool {
        let Some(topic) = self.topics.write().remove(name) else {
            return false;
        };
        topic.delete();
        tracing::info!(topic = name, "topic deleted");
        self.note_metadata_change(name);
        self.lookup.notify(LookupCommand::Unregister {
            topic: name.to_string(),
            channel: None,
        });
        true
    }

    pub fn delete_channel(&self, topic: &Topic, channel: &str) -> bool {
        let deleted = topic.delete_channel(channel).is_some();
        if deleted {
            tracing::info!(topic = %topic.name, channel, "channel deleted");
            self.note_metadata_change(channel);
            self.lookup.notify(LookupCommand::Unregister {
                topic: topic.name.clone(),
                channel: Some(channel.to_string()),
            });
            self.retire_topic_if_unused(topic);
        }
        deleted
    }

    /// An ephemeral topic goes away with its last channel.
    fn retire_topic_if_unused(&self, topic: &Topic) {
        if topic.ephemeral && topic.retire_if_unused() {
            let mut topics = self.topics.write();
            if topics
                .get(&topic.name)
                .is_some_and(|t| std::ptr::eq(Arc::as_ptr(t), topic))
            {
                topics.remove(&topic.name);
            }
            drop(topics);
            topic.delete();
            tracing::info!(topic = %topic.name, "ephemeral topic deleted");
            self.lookup.notify(LookupCommand::Unregister {
                topic: topic.name.clone(),
                channel: None,
            });
        }
    }

    /// A consumer left its channel; an ephemeral channel goes with its last one.
    pub fn consumer_left(&self, channel: &Channel, client_id: u64) {
        channel.remove_client(client_id);
        if channel.ephemeral {
            if let Some(topic) = self.topic(&channel.topic_name) {
                if topic.retire_channel_if_unused(&channel.name) {
                    tracing::info!(topic = %topic.name, channel = %channel.name, "ephemeral channel deleted");
                    self.lookup.notify(LookupCommand::Unregister {
                        topic: topic.name.clone(),
                        channel: Some(channel.name.clone()),
                    });
                    self.retire_topic_if_unused(&topic);
                }
            }
        }
    }

    /// Topics, channels or pause states changed: `nsqd.dat` is rewritten soon.
    /// Ephemeral names never reach the file.
    pub fn note_metadata_change(&self, name: &str) {
        if !nsq::protocol::is_ephemeral(name) {
            self.metadata_changed.notify_one();
        }
    }

    pub fn metadata(&self) -> Metadata {
        let topics = self
            .topics()
            .into_iter()
            .filter(|t| !t.ephemeral)
            .map(|t| {
                let channels: Vec<ChannelMeta> = t
                    .channels()
                    .into_iter()
                    .filter(|c| !c.ephemeral)
                    .map(|c| ChannelMeta {
                        name: c.name.clone(),
                        paused: c.is_paused(),
                    })
                    .collect();
                TopicMeta {
                    name: t.name.clone(),
                    paused: t.is_paused(),
                    channels: (!channels.is_empty()).then_some(channels),
                }
            })
            .collect();
        Metadata {
            topics,
            version: VERSION.into(),
        }
    }

    pub fn persist_metadata(&self) -> std::io::Result<()> {
        metadata::save(&self.data_dir, &self.metadata())
    }

    /// Fsyncs every disk queue with unsynced writes (`--sync-timeout`).
    fn sync_all(&self) {
        for topic in self.topics() {
            if let Err(e) = topic.sync() {
                tracing::error!(topic = %topic.name, error = %e, "disk queue sync failed");
            }
        }
    }

    pub fn started_at(&self) -> std::time::Instant {
        self.started_at
    }

    pub fn new_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn add_client(&self, client: Arc<ClientConn>) {
        self.clients.lock().insert(client.id, client);
    }

    pub fn remove_client(&self, id: u64) {
        self.clients.lock().remove(&id);
    }

    pub fn log_level(&self) -> LogLevel {
        *self.log_level.lock()
    }

    pub fn set_log_level(&self, level: LogLevel) {
        *self.log_level.lock() = level;
        if let Some(hook) = &self.log_level_hook {
            hook(level);
        }
    }

    /// `"OK"`, or `"NOK - <why>"` while disk writes fail.
    pub fn health(&self) -> String {
        match self.backend_error.lock().as_ref() {
            None => "OK".into(),
            Some(e) => format!("NOK - {e}"),
        }
    }

    pub fn stats(&self, topic_filter: &str, channel_filter: &str, include_clients: bool) -> Stats {
        let topics: Vec<Arc<Topic>> = if topic_filter.is_empty() {
            self.topics()
        } else {
            self.topic(topic_filter).into_iter().collect()
        };
        let missing_topic = !topic_filter.is_empty() && topics.is_empty();
        let producers = (include_clients && !missing_topic)
            .then(|| {
                let clients: Vec<Arc<ClientConn>> = self.clients.lock().values().cloned().collect();
                clients
                    .iter()
                    .filter(|c| c.has_published())
                    .map(|c| c.stats(topic_filter))
                    .collect::<Vec<_>>()
            })
            .filter(|p| !p.is_empty());
        Stats {
            version: VERSION.into(),
            health: self.health(),
            start_time: self.start_time,
            topics: (!missing_topic).then(|| {
                topics
                    .iter()
                    .filter_map(|t| t.stats(channel_filter, include_clients, topic_filter))
                    .collect()
            }),
            memory: None,
            producers,
        }
    }

    /// Recreates the topics and channels of `nsqd.dat`, and any whose queue
    /// files exist without an entry there (created just before a crash).
    async fn restore(&self) -> std::io::Result<()> {
        let mut wanted: BTreeMap<String, (bool, BTreeMap<String, bool>)> = BTreeMap::new();
        if let Some(meta) = metadata::load(&self.data_dir)? {
            for t in meta.topics {
                let entry = wanted.entry(t.name).or_default();
                entry.0 = t.paused;
                for c in t.channels.unwrap_or_default() {
                    entry.1.insert(c.name, c.paused);
                }
            }
        }
        for file in std::fs::read_dir(&self.data_dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
        {
            let Some((name, _)) = file.split_once(".queue.") else {
                continue;
            };
            match name.split_once(':') {
                Some((t, c)) => {
                    wanted
                        .entry(t.to_string())
                        .or_default()
                        .1
                        .entry(c.to_string())
                        .or_insert(false);
                }
                None => {
                    wanted.entry(name.to_string()).or_default();
                }
            }
        }
        for (name, (paused, channels)) in wanted {
            if !nsq::protocol::is_valid_topic_name(&name) || nsq::protocol::is_ephemeral(&name) {
                tracing::warn!(topic = %name, "skipping invalid topic in the data directory");
                continue;
            }
            let topic = self
                .topic_or_create(&name, false)
                .map_err(std::io::Error::other)?;
            if paused {
                topic.pause();
            }
            for (channel, paused) in channels {
                if !nsq::protocol::is_valid_channel_name(&channel)
                    || nsq::protocol::is_ephemeral(&channel)
                {
                    tracing::warn!(topic = %name, channel = %channel, "skipping invalid channel in the data directory");
                    continue;
                }
                let channel = self
                    .get_or_create_channel(&topic, &channel)
                    .map_err(std::io::Error::other)?;
                if paused {
                    channel.pause();
                }
            }
            topic.start();
        }
        Ok(())
    }
}

/// A running nsqd. Dropping it does not stop it; call [`Nsqd::shutdown`].
pub struct Nsqd {
    node: Arc<Node>,
    tasks: JoinSet<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error(transparent)]
    Listen(#[from] nsq_daemon::tcp::ListenError),
    #[error("data path {path}: {source}")]
    DataPath {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to build TLS config - {0}")]
    Tls(#[from] nsq::tls::TlsError),
}

impl Nsqd {
    /// Binds the listeners and starts serving.
    pub async fn start(opts: Options) -> Result<Nsqd, StartError> {
        Self::start_with_log_hook(opts, None).await
    }

    pub async fn start_with_log_hook(
        mut opts: Options,
        log_level_hook: Option<LogLevelHook>,
    ) -> Result<Nsqd, StartError> {
        opts.validate().map_err(StartError::Options)?;
        // As upstream: asking for client certificates makes TLS required.
        if opts.tls_client_auth_policy != ClientAuthPolicy::None
            && opts.tls_required == TlsRequired::No
        {
            opts.tls_required = TlsRequired::Yes;
        }
        let tls = crate::tls::acceptor(&opts)?;
        let lookupd_tls = crate::tls::lookupd(&opts)?;
        let http_client = crate::tls::http_client(&opts)?;
        let listen = nsq_daemon::tcp::listen;
        let tcp = listen("TCP", &opts.tcp_address).await?;
        let http = match opts.http_address.as_str() {
            "" => None,
            addr => Some(listen("HTTP", addr).await?),
        };
        let https = match (&tls, opts.https_address.as_str()) {
            (Some(_), addr) if !addr.is_empty() => Some(listen("HTTPS", addr).await?),
            _ => None,
        };
        // Upstream expands the statsd prefix once, and `/config` shows it so.
        let http_port = match (opts.broadcast_http_port, &http) {
            (0, Some(l)) => l.local_addr().map_or(0, |a| a.port()),
            (port, _) => port,
        };
        opts.statsd_prefix =
            crate::statsd::expand_prefix(&opts.statsd_prefix, &opts.broadcast_address, http_port);
        let data_dir = if opts.data_path.as_os_str().is_empty() {
            std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
        } else {
            opts.data_path.clone()
        };
        let data_err = |source| StartError::DataPath {
            path: data_dir.display().to_string(),
            source,
        };
        // As upstream, which fails reading `nsqd.dat` inside it: create_dir_all
        // alone would say "File exists".
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(data_err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        std::fs::create_dir_all(&data_dir).map_err(data_err)?;
        let dir_lock = File::create(data_dir.join("nsqd.lock")).map_err(data_err)?;
        dir_lock.try_lock().map_err(|e| {
            data_err(std::io::Error::other(format!(
                "locked by another nsqd? ({e})"
            )))
        })?;
        let disk = DiskConfig {
            dir: data_dir.clone(),
            max_bytes_per_file: opts.max_bytes_per_file.max(1) as u64,
            sync_every: opts.sync_every.max(1) as u64,
            max_msg_size: opts.max_msg_size as u64,
        };
        let imported = metadata::import_upstream_queues(&disk).map_err(data_err)?;
        if imported > 0 {
            tracing::info!(
                messages = imported,
                "imported the backlog of an upstream nsqd data directory"
            );
        }
        let channel_config = ChannelConfig {
            mem_queue_size: opts.mem_queue_size as usize,
            max_msg_timeout: opts.max_msg_timeout,
            max_channel_consumers: opts.max_channel_consumers as usize,
            e2e_percentiles: opts.e2e_processing_latency_percentiles.clone().into(),
            e2e_window: opts.e2e_processing_latency_window_time,
            disk,
        };
        let node = Arc::new_cyclic(|me| Node {
            me: me.clone(),
            lookup: Lookup::default(),
            ids: IdGenerator::new(opts.id),
            start_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            started_at: std::time::Instant::now(),
            tcp_addr: tcp.local_addr().expect("bound socket has an address"),
            http_addr: http
                .as_ref()
                .map(|l| l.local_addr().expect("bound socket has an address")),
            https_addr: https
                .as_ref()
                .map(|l| l.local_addr().expect("bound socket has an address")),
            auth: (!opts.auth_http_addresses.is_empty()).then(|| {
                crate::auth::Authorizer::new(opts.auth_http_addresses.clone(), http_client.clone())
            }),
            http_client,
            lookupd_tls,
            tls,
            topics: RwLock::new(BTreeMap::new()),
            clients: Mutex::new(FxHashMap::default()),
            next_client_id: AtomicU64::new(0),
            log_level: Mutex::new(opts.log_level),
            log_level_hook,
            channel_config,
            backend_error: Mutex::new(None),
            unhealthy: std::sync::atomic::AtomicBool::new(false),
            metadata_changed: Notify::new(),
            shutdown: CancellationToken::new(),
            data_dir: data_dir.clone(),
            _dir_lock: dir_lock,
            opts,
        });
        node.restore().await.map_err(data_err)?;
        node.persist_metadata().map_err(data_err)?;
        Lookup::set_addresses(&node, node.opts.nsqlookupd_tcp_addresses.clone());
        let mut tasks = JoinSet::new();
        tasks.spawn(background(node.clone()));
        if !node.opts.statsd_address.is_empty() {
            tracing::info!(address = %node.opts.statsd_address, "STATSD: pushing every {:?}", node.opts.statsd_interval);
            tasks.spawn(crate::statsd::run(node.clone()));
        }
        tracing::info!(address = %node.tcp_addr, "TCP: listening");
        tasks.spawn(crate::tcp::serve(node.clone(), tcp));
        if let Some(http) = http {
            tracing::info!(address = %http.local_addr().expect("bound"), "HTTP: listening");
            tasks.spawn(crate::http::serve(node.clone(), http));
        }
        if let (Some(https), Some(tls)) = (https, node.tls.clone()) {
            tracing::info!(address = %https.local_addr().expect("bound"), "HTTPS: listening");
            let listener = nsq_daemon::tls::HttpsListener::new(https, tls);
            tasks.spawn(crate::http::serve_https(node.clone(), listener));
        }
        Ok(Nsqd { node, tasks })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.node.tcp_addr
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.node.http_addr
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.node.https_addr
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Stops accepting, closes every connection and waits for the listeners.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down");
        self.node.shutdown.cancel();
        let clients: Vec<Arc<ClientConn>> = self.node.clients.lock().values().cloned().collect();
        for client in clients {
            client.close();
        }
        while self.tasks.join_next().await.is_some() {}
        let node = self.node.clone();
        let saved = tokio::task::spawn_blocking(move || {
            // Metadata first: shutting topics down releases their channels.
            let metadata = node.persist_metadata();
            for topic in node.topics() {
                if let Err(e) = topic.shutdown() {
                    tracing::error!(topic = %topic.name, error = %e, "failed to save topic state");
                }
            }
            metadata
        })
        .await;
        match saved {
            Ok(Ok(())) => tracing::info!("state saved"),
            Ok(Err(e)) => tracing::error!(error = %e, "failed to write nsqd.dat"),
            Err(e) => tracing::error!(error = %e, "saving state panicked"),
        }
    }
}

/// Writes `nsqd.dat` after changes and fsyncs disk queues every `--sync-timeout`.
async fn background(node: Arc<Node>) {
    let mut sync_tick = tokio::time::interval(
        node.opts
            .sync_timeout
            .max(std::time::Duration::from_millis(10)),
    );
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = node.metadata_changed.notified() => {
                let n = node.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || n.persist_metadata()).await {
                    tracing::error!(error = %e, "failed to write nsqd.dat");
                }
            }
            _ = sync_tick.tick() => {
                let n = node.clone();
                let _ = tokio::task::spawn_blocking(move || n.sync_all()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::TempDir;

    fn options(dir: &TempDir) -> Options {
        Options {
            tcp_address: "127.0.0.1:0".into(),
            http_address: "127.0.0.1:0".into(),
            https_address: "127.0.0.1:0".into(),
            broadcast_address: "127.0.0.1".into(),
            data_path: dir.path().to_path_buf(),
            ..Options::default()
        }
    }

    async fn refusal(opts: Options) -> String {
        match Nsqd::start(opts).await {
            Ok(nsqd) => {
                nsqd.shutdown().await;
                panic!("nsqd started");
            }
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn a_data_path_naming_a_file_is_not_a_directory() {
        let dir = TempDir::new("data-file");
        let file = dir.path().join("nsqd-data");
        std::fs::write(&file, b"").unwrap();
        let err = refusal(Options {
            data_path: file.clone(),
            ..options(&dir)
        })
        .await;
        assert_eq!(
            err,
            format!("data path {}: not a directory", file.display())
        );
    }

    #[tokio::test]
    async fn a_taken_port_is_named_by_its_listener() {
        let dir = TempDir::new("taken-port");
        let pem = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, pem.cert.pem()).unwrap();
        std::fs::write(&key, pem.key_pair.serialize_pem()).unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let tls = Options {
            tls_cert: cert.display().to_string(),
            tls_key: key.display().to_string(),
            ..options(&dir)
        };
        let cases = [
            (
                "TCP",
                Options {
                    tcp_address: addr.clone(),
                    ..options(&dir)
                },
            ),
            (
                "HTTP",
                Options {
                    http_address: addr.clone(),
                    ..options(&dir)
                },
            ),
            (
                "HTTPS",
                Options {
                    https_address: addr.clone(),
                    ..tls
                },
            ),
        ];
        for (listener, opts) in cases {
            let err = refusal(opts).await;
            let expected = format!("{listener}: failed to listen on {addr}: ");
            assert!(err.starts_with(&expected), "{err}");
        }
    }
}
