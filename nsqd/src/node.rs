//! The node: every topic, every connection, and the handle that starts and
//! stops an nsqd inside a process (the binary and the tests use the same).

use crate::channel::{Channel, ChannelConfig};
use crate::client::Client;
use crate::guid::IdGenerator;
use crate::options::{LogLevel, Options};
use crate::topic::Topic;
use nsq::api::Stats;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// nsqd's version, as reported to clients and in `/stats`.
pub const VERSION: &str = "1.3.0";

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
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    clients: Mutex<FxHashMap<u64, Arc<Client>>>,
    next_client_id: AtomicU64,
    log_level: Mutex<LogLevel>,
    log_level_hook: Option<LogLevelHook>,
    channel_config: ChannelConfig,
    pub shutdown: CancellationToken,
}

impl Node {
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// The named topic, created if needed.
    pub fn get_or_create_topic(&self, name: &str) -> Arc<Topic> {
        if let Some(topic) = self.topic(name) {
            return topic;
        }
        let mut topics = self.topics.write();
        topics
            .entry(name.to_string())
            .or_insert_with(|| {
                tracing::info!(topic = name, "topic created");
                Arc::new(Topic::new(name, self.channel_config.clone()))
            })
            .clone()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub fn delete_topic(&self, name: &str) -> bool {
        let Some(topic) = self.topics.write().remove(name) else {
            return false;
        };
        topic.close();
        tracing::info!(topic = name, "topic deleted");
        true
    }

    pub fn delete_channel(&self, topic: &Topic, channel: &str) -> bool {
        let deleted = topic.delete_channel(channel).is_some();
        if deleted {
            tracing::info!(topic = %topic.name, channel, "channel deleted");
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
            topic.close();
            tracing::info!(topic = %topic.name, "ephemeral topic deleted");
        }
    }

    /// A consumer left its channel; an ephemeral channel goes with its last one.
    pub fn consumer_left(&self, channel: &Channel, client_id: u64) {
        channel.remove_client(client_id);
        if channel.ephemeral {
            if let Some(topic) = self.topic(&channel.topic_name) {
                if topic.retire_channel_if_unused(&channel.name) {
                    tracing::info!(topic = %topic.name, channel = %channel.name, "ephemeral channel deleted");
                    self.retire_topic_if_unused(&topic);
                }
            }
        }
    }

    pub fn started_at(&self) -> std::time::Instant {
        self.started_at
    }

    pub fn new_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn add_client(&self, client: Arc<Client>) {
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

    /// `"OK"`, or why the node is unhealthy.
    pub fn health(&self) -> String {
        "OK".into()
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
                let clients: Vec<Arc<Client>> = self.clients.lock().values().cloned().collect();
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
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

impl Nsqd {
    /// Binds the listeners and starts serving.
    pub async fn start(opts: Options) -> Result<Nsqd, StartError> {
        Self::start_with_log_hook(opts, None).await
    }

    pub async fn start_with_log_hook(
        opts: Options,
        log_level_hook: Option<LogLevelHook>,
    ) -> Result<Nsqd, StartError> {
        opts.validate().map_err(StartError::Options)?;
        let listen = |addr: String| async move {
            TcpListener::bind(&addr)
                .await
                .map_err(|source| StartError::Listen { addr, source })
        };
        let tcp = listen(opts.tcp_address.clone()).await?;
        let http = match opts.http_address.as_str() {
            "" => None,
            addr => Some(listen(addr.to_string()).await?),
        };
        let channel_config = ChannelConfig {
            mem_queue_size: opts.mem_queue_size as usize,
            max_msg_timeout: opts.max_msg_timeout,
            max_channel_consumers: opts.max_channel_consumers as usize,
            e2e_percentiles: opts.e2e_processing_latency_percentiles.clone().into(),
            e2e_window: opts.e2e_processing_latency_window_time,
        };
        let node = Arc::new(Node {
            ids: IdGenerator::new(opts.node_id),
            start_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            started_at: std::time::Instant::now(),
            tcp_addr: tcp.local_addr().expect("bound socket has an address"),
            http_addr: http
                .as_ref()
                .map(|l| l.local_addr().expect("bound socket has an address")),
            topics: RwLock::new(BTreeMap::new()),
            clients: Mutex::new(FxHashMap::default()),
            next_client_id: AtomicU64::new(0),
            log_level: Mutex::new(opts.log_level),
            log_level_hook,
            channel_config,
            shutdown: CancellationToken::new(),
            opts,
        });
        let mut tasks = JoinSet::new();
        tracing::info!(address = %node.tcp_addr, "TCP: listening");
        tasks.spawn(crate::tcp::serve(node.clone(), tcp));
        if let Some(http) = http {
            tracing::info!(address = %http.local_addr().expect("bound"), "HTTP: listening");
            tasks.spawn(crate::http::serve(node.clone(), http));
        }
        Ok(Nsqd { node, tasks })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.node.tcp_addr
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.node.http_addr
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Stops accepting, closes every connection and waits for the listeners.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down");
        self.node.shutdown.cancel();
        let clients: Vec<Arc<Client>> = self.node.clients.lock().values().cloned().collect();
        for client in clients {
            client.close.cancel();
        }
        while self.tasks.join_next().await.is_some() {}
        for topic in self.node.topics() {
            topic.close();
        }
    }
}
