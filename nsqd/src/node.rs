//! The node: every topic, every connection and what they share (options,
//! IDs, health, metadata, the lookupds). Listeners and the node's start and
//! stop live in `server.rs`, which uses this module and is not used by it.

use crate::channel::{Channel, ChannelConfig};
use crate::client_conn::ClientConn;
use crate::diskqueue::DiskConfig;
use crate::guid::IdGenerator;
use crate::log::LogWriter;
use crate::lookup::Lookup;
use crate::metadata::{self, ChannelMeta, Metadata, TopicMeta};
use crate::options::{LogLevel, Options};
use crate::queue::Item;
use crate::topic::{PutError, Topic};
use nsq::api::Stats;
use nsq_daemon::logging::LogLevelHook;
use nsq_daemon::lookup_protocol::{LookupCommand, PeerIdentity};
use nsq_daemon::tcp::LocalAddr;
use nsq_daemon::VERSION;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod promote;

pub use promote::{PromoteError, RetireError};

/// What `server.rs` prepared for the node: its options (final), where
/// its listeners are bound, and the parts built from the options.
pub struct NodeSetup {
    pub opts: Options,
    pub tcp_addr: LocalAddr,
    pub http_addr: Option<LocalAddr>,
    pub https_addr: Option<SocketAddr>,
    pub tls: Option<nsq_daemon::tls::TlsAcceptor>,
    pub lookupd_tls: Option<crate::tls::LookupdTls>,
    pub lookupd_http: nsq::HttpPool,
    pub auth_http: reqwest::Client,
    /// The data directory and how its disk queues are written.
    pub disk: DiskConfig,
    /// The log writer, in log mode (`--mem-queue-size=0`).
    pub log_writer: Option<Arc<LogWriter>>,
    /// Held for the node's life: one nsqd per data directory.
    pub dir_lock: File,
    pub log_level_hook: Option<LogLevelHook>,
    /// Names the data directory (`nsqd.uid`) to replication peers.
    pub uid: String,
    /// The replicas kept for other nsqds, in log mode.
    pub replicas: Option<Arc<crate::replica::Replicas>>,
}

/// The state every connection, the HTTP API and the background tasks
/// share. Settings fixed at start are plain fields; everything that changes
/// is behind a method.
pub struct Node {
    pub opts: Options,
    pub ids: IdGenerator,
    /// Unix seconds.
    pub start_time: i64,
    started_at: Instant,
    pub tcp_addr: LocalAddr,
    pub http_addr: Option<LocalAddr>,
    pub https_addr: Option<SocketAddr>,
    /// Upgrades connections that ask for TLS; `None` without `--tls-cert`.
    pub tls: Option<nsq_daemon::tls::TlsAcceptor>,
    /// The auth servers; `None` when AUTH is disabled.
    pub auth: Option<crate::auth::Authorizer>,
    /// The lookupds this nsqd registers with.
    pub lookup: Lookup,
    /// Names the data directory to replication peers.
    pub uid: String,
    /// The replicas kept for other nsqds; `None` outside log mode.
    pub replicas: Option<Arc<crate::replica::Replicas>>,
    /// Promotions of replicas take turns.
    promoting: Mutex<()>,
    /// The links to `--replicate-to` peers, once started.
    replication: std::sync::OnceLock<Arc<crate::replication::Replication>>,
    data_dir: PathBuf,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Taken while a topic's files are opened or removed, so that one topic
    /// never has two logs open, nor one opened while it is being removed.
    topic_files: Mutex<()>,
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
    me: std::sync::Weak<Node>,
    shutdown: CancellationToken,
    _dir_lock: File,
}

impl Node {
    pub fn new(setup: NodeSetup) -> Arc<Node> {
        let opts = setup.opts;
        // As upstream: a unix socket has no port to announce, so lookupd
        // hears 0 unless --broadcast-*-port says otherwise.
        let port = |configured: u16, bound: Option<&LocalAddr>| match configured {
            0 => bound.and_then(LocalAddr::port).unwrap_or(0),
            port => port,
        };
        let identity = PeerIdentity {
            broadcast_address: opts.broadcast_address.clone(),
            hostname: crate::options::hostname(),
            tcp_port: port(opts.broadcast_tcp_port, Some(&setup.tcp_addr)),
            http_port: port(opts.broadcast_http_port, setup.http_addr.as_ref()),
            version: VERSION.to_string(),
        };
        let data_dir = setup.disk.dir.clone();
        let channel_config = ChannelConfig {
            mem_queue_size: opts.mem_queue_size as usize,
            max_msg_timeout: opts.max_msg_timeout,
            max_channel_consumers: opts.max_channel_consumers as usize,
            e2e_percentiles: opts.e2e_processing_latency_percentiles.clone().into(),
            e2e_window: opts.e2e_processing_latency_window_time,
            disk: setup.disk,
            log_writer: setup.log_writer,
            max_attempts: opts.max_attempts,
            msg_ttl: opts.msg_ttl,
            replicated: !opts.replicate_to.is_empty(),
        };
        let shutdown = CancellationToken::new();
        Arc::new_cyclic(|me: &std::sync::Weak<Node>| {
            let node = me.clone();
            let registrations = Box::new(move || {
                node.upgrade()
                    .map_or_else(Vec::new, |node| node.registrations())
            });
            Node {
                me: me.clone(),
                lookup: Lookup::new(
                    identity,
                    setup.lookupd_tls,
                    setup.lookupd_http,
                    registrations,
                    shutdown.clone(),
                ),
                ids: IdGenerator::new(opts.id),
                start_time: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0),
                started_at: Instant::now(),
                tcp_addr: setup.tcp_addr,
                http_addr: setup.http_addr,
                https_addr: setup.https_addr,
                auth: (!opts.auth_http_addresses.is_empty()).then(|| {
                    crate::auth::Authorizer::new(opts.auth_http_addresses.clone(), setup.auth_http)
                }),
                tls: setup.tls,
                topics: RwLock::new(BTreeMap::new()),
                topic_files: Mutex::new(()),
                clients: Mutex::new(FxHashMap::default()),
                next_client_id: AtomicU64::new(0),
                log_level: Mutex::new(opts.log_level),
                log_level_hook: setup.log_level_hook,
                channel_config,
                backend_error: Mutex::new(None),
                unhealthy: std::sync::atomic::AtomicBool::new(false),
                metadata_changed: Notify::new(),
                shutdown,
                data_dir,
                uid: setup.uid,
                replicas: setup.replicas,
                replication: std::sync::OnceLock::new(),
                promoting: Mutex::new(()),
                _dir_lock: setup.dir_lock,
                opts,
            }
        })
    }

    /// A token cancelled when nsqd starts shutting down (cancelling it does
    /// not stop nsqd).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.child_token()
    }

    /// Completes once nsqd has started shutting down.
    pub fn stopping(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    /// Stops accepting work: listeners, lookupd connections and every
    /// client connection end.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
        let clients: Vec<Arc<ClientConn>> = self.clients.lock().values().cloned().collect();
        for client in clients {
            client.close();
        }
    }

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
        // Opening a topic may read its files: outside the topics' lock, so
        // that publishes to other topics go on meanwhile.
        let _turn = self.topic_files.lock();
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        let topic = blocking(|| Topic::new(name, self.channel_config.clone()))?;
        self.topics.write().insert(name.to_string(), topic.clone());
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
            for channel in node.lookup.channels_of(&topic.name).await {
                if let Err(e) = node.get_or_create_channel(&topic, &channel) {
                    tracing::warn!(topic = %topic.name, channel, error = %e, "failed to pre-create channel");
                }
            }
            topic.start();
        });
    }

    /// What this nsqd tells lookupd about itself.
    pub fn peer_identity(&self) -> &PeerIdentity {
        self.lookup.identity()
    }

    /// REGISTER for every channel, and for every topic without channels:
    /// what a lookupd is told on each (re)connection.
    fn registrations(&self) -> Vec<LookupCommand> {
        let mut all = Vec::new();
        for topic in self.topics() {
            let channels = topic.channels();
            if channels.is_empty() {
                all.push(LookupCommand::Register {
                    topic: topic.name.clone(),
                    channel: None,
                });
            }
            all.extend(channels.iter().map(|channel| LookupCommand::Register {
                topic: topic.name.clone(),
                channel: Some(channel.name.clone()),
            }));
        }
        all
    }

    /// The named channel of a topic, created if needed.
    pub fn get_or_create_channel(
        &self,
        topic: &Topic,
        name: &str,
    ) -> Result<Arc<Channel>, PutError> {
        let (channel, created) = blocking(|| topic.get_or_create_channel(name))?;
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

    /// Publishes to a topic, creating it if needed; returns once the
    /// publish may be acknowledged (in log mode, once the log committed it).
    pub async fn publish(
        &self,
        topic: &str,
        item: Item,
        body_bytes: usize,
    ) -> Result<(), PutError> {
        let replication = self
            .replication
            .get()
            .filter(|_| self.channel_config.log_mode(topic));
        if let Some(replication) = replication {
            replication.admit()?;
        }
        let put = self
            .get_or_create_topic(topic)
            .and_then(|t| Ok((t.put(item, body_bytes)?, t)));
        let result = match (put, replication) {
            (Ok((Some(end), t)), Some(replication)) => {
                let log = t.log_source().map(|(log, _)| log);
                let local = t.committed(end);
                let remote = async {
                    match &log {
                        Some(log) => replication.stored(topic, log, end).await,
                        None => Ok(()),
                    }
                };
                // The local fsync and the peers' run at the same time.
                match tokio::join!(local, remote) {
                    (Err(e), _) => Err(PutError::Backend(e)),
                    (Ok(()), remote) => remote,
                }
            }
            (Ok((Some(end), topic)), None) => topic.committed(end).await.map_err(PutError::Backend),
            (Ok((None, _)), _) => Ok(()),
            (Err(e), _) => Err(e),
        };
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

    /// Starts the links to `--replicate-to` peers (after the restore, so
    /// that they describe every topic at once).
    pub fn start_replication(&self) {
        if self.opts.replicate_to.is_empty() {
            return;
        }
        // Options::validate makes --replicate-to need log mode.
        let Some(writer) = self.channel_config.log_writer.clone() else {
            return;
        };
        let identity = self.peer_identity();
        let opts = &self.opts;
        let path = |p: &str| (!p.is_empty()).then(|| std::path::PathBuf::from(p));
        let client = nsq::Config {
            tls_v1: !opts.tls_root_ca_file.is_empty() || !opts.tls_cert.is_empty(),
            tls: nsq::tls::TlsClientOptions {
                root_ca_file: path(&opts.tls_root_ca_file),
                cert: path(&opts.tls_cert),
                key: path(&opts.tls_key),
                ..Default::default()
            },
            auth_secret: (!opts.replicate_auth_secret.is_empty())
                .then(|| nsq::config::Secret(opts.replicate_auth_secret.clone())),
            max_msg_size: nsq::protocol::repl::max_frame(opts.max_msg_size as u64) as u32,
            ..Default::default()
        };
        let settings = crate::replication::Settings {
            identity: crate::replication::Identity {
                uid: self.uid.clone(),
                address: format!("{}:{}", identity.broadcast_address, identity.tcp_port),
                hostname: identity.hostname.clone(),
                version: VERSION.to_string(),
            },
            peers: opts.replicate_to.clone(),
            required: opts.replication_required,
            timeout: opts.replication_timeout,
            max_lag: opts.replication_max_lag,
            max_msg_size: opts.max_msg_size as u64,
            client,
            writer,
        };
        let me = self.me.clone();
        let topics = Box::new(move || {
            me.upgrade()
                .map_or_else(Vec::new, |node| node.replicated_topics())
        });
        let replication =
            crate::replication::Replication::start(settings, topics, self.shutdown_token());
        let _ = self.replication.set(replication);
    }

    /// The log-mode topics and their cursor channels, as replication sees them.
    fn replicated_topics(&self) -> Vec<crate::replication::TopicView> {
        self.topics()
            .into_iter()
            .filter_map(|t| {
                let (log, released) = t.log_source()?;
                let channels = t
                    .channels()
                    .into_iter()
                    .filter_map(|c| {
                        let journal = c.journal()?;
                        let overrides = c.overrides();
                        Some(crate::replication::ChannelView {
                            name: c.name.clone(),
                            journal,
                            settings: crate::replica::ChannelSettings {
                                paused: c.is_paused(),
                                max_attempts: overrides.max_attempts,
                                msg_ttl_ms: overrides.msg_ttl.map(|ttl| ttl.as_millis() as u64),
                            },
                        })
                    })
                    .collect();
                Some(crate::replication::TopicView {
                    name: t.name.clone(),
                    log,
                    released,
                    paused: t.is_paused(),
                    channels,
                })
            })
            .collect()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub fn delete_topic(&self, name: &str) -> bool {
        let _turn = self.topic_files.lock();
        let Some(topic) = self.topics.write().remove(name) else {
            return false;
        };
        blocking(|| topic.delete());
        tracing::info!(topic = name, "topic deleted");
        self.note_metadata_change(name);
        self.lookup.notify(LookupCommand::Unregister {
            topic: name.to_string(),
            channel: None,
        });
        true
    }

    pub fn delete_channel(&self, topic: &Topic, channel: &str) -> bool {
        let deleted = blocking(|| topic.delete_channel(channel)).is_some();
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
            blocking(|| topic.delete());
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
                    .map(|c| {
                        let overrides = c.overrides();
                        ChannelMeta {
                            name: c.name.clone(),
                            paused: c.is_paused(),
                            max_attempts: overrides.max_attempts,
                            msg_ttl_ms: overrides.msg_ttl.map(|ttl| ttl.as_millis() as u64),
                        }
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

    /// Writes `nsqd.dat` after changes and fsyncs disk queues every
    /// `--sync-timeout`, until nsqd stops.
    pub async fn housekeeping(self: Arc<Self>) {
        let mut sync_tick =
            tokio::time::interval(self.opts.sync_timeout.max(Duration::from_millis(10)));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.metadata_changed.notified() => {
                    // Changes that come in a burst (10,000 topics created)
                    // share one rewrite of the file.
                    tokio::time::sleep(METADATA_SETTLE).await;
                    let node = self.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || node.persist_metadata()).await {
                        tracing::error!(error = %e, "failed to write nsqd.dat");
                    }
                }
                _ = sync_tick.tick() => {
                    let node = self.clone();
                    let _ = tokio::task::spawn_blocking(move || node.sync_all()).await;
                }
            }
        }
    }

    /// nsqd is stopping: writes `nsqd.dat`, then every topic saves what it
    /// holds in memory. Blocking.
    pub fn save_state(&self) -> std::io::Result<()> {
        // Metadata first: shutting topics down releases their channels.
        let metadata = self.persist_metadata();
        for topic in self.topics() {
            if let Err(e) = topic.shutdown() {
                tracing::error!(topic = %topic.name, error = %e, "failed to save topic state");
            }
        }
        // Last: it writes and fsyncs what the logs and journals still hold.
        if let Some(writer) = &self.channel_config.log_writer {
            writer.shutdown();
        }
        metadata
    }

    /// Fsyncs every disk queue with unsynced writes (`--sync-timeout`):
    /// none when no queue has read or written since the last round.
    fn sync_all(&self) {
        let flag = &self.channel_config.disk.unsynced;
        if !flag.take() {
            return;
        }
        for topic in self.topics() {
            if let Err(e) = topic.sync() {
                tracing::error!(topic = %topic.name, error = %e, "disk queue sync failed");
                flag.raise();
            }
        }
    }

    /// fsyncs the log writer made since start; `None` outside log mode.
    pub fn log_fsyncs(&self) -> Option<u64> {
        self.channel_config.log_writer.as_ref().map(|w| w.fsyncs())
    }

    pub fn started_at(&self) -> Instant {
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
            peers: self.replication.get().map(|r| r.stats()),
            replicas: self.replicas.as_ref().and_then(|r| r.stats()),
        }
    }

    /// Recreates the topics and channels of `nsqd.dat`, and any whose queue
    /// files, logs or journals exist without an entry there (created just
    /// before a crash).
    pub async fn restore(&self) -> std::io::Result<()> {
        let mut wanted: BTreeMap<String, (bool, BTreeMap<String, ChannelMeta>)> = BTreeMap::new();
        let found = |name: &str| ChannelMeta {
            name: name.to_string(),
            ..ChannelMeta::default()
        };
        if let Some(meta) = metadata::load(&self.data_dir)? {
            for t in meta.topics {
                let entry = wanted.entry(t.name).or_default();
                entry.0 = t.paused;
                for c in t.channels.unwrap_or_default() {
                    entry.1.insert(c.name.clone(), c);
                }
            }
        }
        for file in std::fs::read_dir(&self.data_dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
        {
            if let Some(topic) = file.strip_suffix(".log") {
                // A topic log, with a journal per channel.
                let entry = wanted.entry(topic.to_string()).or_default();
                for journal in std::fs::read_dir(self.data_dir.join(&file))?
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                {
                    if let Some(channel) = journal.strip_suffix(".journal") {
                        entry
                            .1
                            .entry(channel.to_string())
                            .or_insert_with(|| found(channel));
                    }
                }
                continue;
            }
            let dead_letters = file.strip_suffix(".dead");
            let Some(name) = dead_letters.or_else(|| Some(file.split_once(".queue.")?.0)) else {
                continue;
            };
            match name.split_once(':') {
                Some((t, c)) => {
                    wanted
                        .entry(t.to_string())
                        .or_default()
                        .1
                        .entry(c.to_string())
                        .or_insert_with(|| found(c));
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
            for (channel_name, meta) in channels {
                if !nsq::protocol::is_valid_channel_name(&channel_name)
                    || nsq::protocol::is_ephemeral(&channel_name)
                {
                    tracing::warn!(topic = %name, channel = %channel_name, "skipping invalid channel in the data directory");
                    continue;
                }
                let channel = self
                    .get_or_create_channel(&topic, &channel_name)
                    .map_err(std::io::Error::other)?;
                channel.set_overrides(meta.overrides());
                if meta.paused {
                    channel.pause();
                }
            }
            topic.start();
        }
        Ok(())
    }
}

/// How long `nsqd.dat` waits after a change for more before it is written
/// (pause states and channel settings are written at once, by their handlers).
const METADATA_SETTLE: Duration = Duration::from_millis(50);

/// Runs file work (opening or removing a topic's log or a channel's
/// journal) from an async context: on a multi-threaded runtime the worker
/// hands its other tasks to the rest first, so that a slow disk stalls only
/// the caller.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    match multi_thread {
        true => tokio::task::block_in_place(f),
        false => f(),
    }
}
