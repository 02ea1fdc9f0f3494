use serde::{Deserialize, Serialize};

/// `GET /stats?format=json` on nsqd.
///
/// ```
/// let stats: nsq::api::Stats = serde_json::from_str(
///     r#"{"version":"1.3.0","health":"OK","start_time":1700000000,
///         "topics":[{"topic_name":"events","depth":3,"message_count":10,
///                    "channels":[{"channel_name":"archive","depth":3,"in_flight_count":1}]}]}"#,
/// )?;
/// let topics = stats.topics.unwrap_or_default();
/// assert_eq!((topics[0].topic_name.as_str(), topics[0].channels[0].depth), ("events", 3));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub version: String,
    /// `"OK"` or `"NOK - <reason>"`.
    pub health: String,
    /// Unix seconds.
    pub start_time: i64,
    /// Sorted by name; `null` when a `topic` filter names no existing topic.
    pub topics: Option<Vec<TopicStats>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemStats>,
    /// TCP connections that have published; `null` when there are none or
    /// clients were not asked for.
    pub producers: Option<Vec<ClientStats>>,
    /// Ours: this nsqd's replication links, one per `--replicate-to` peer.
    /// Absent on an nsqd that replicates to none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerStats>>,
    /// Ours: the replicas this nsqd keeps for other nsqds, by origin. Absent
    /// on an nsqd that keeps none, so that it answers upstream's document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<ReplicaStats>>,
}

/// One replication link of an origin nsqd to a peer, in [`Stats`] (ours).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerStats {
    /// The peer's TCP address, as `--replicate-to` names it.
    pub address: String,
    /// `connecting`, `catching_up`, `synced` (publishes wait for it), `down`
    /// (publishes go on without it; `--replication-required` refuses them),
    /// `refused` (the peer said no; see `last_error`) or `fenced` (the peer
    /// promoted its replicas of this node; `/replication/retire` ends it).
    pub state: String,
    /// Whether a link session is up.
    pub connected: bool,
    /// Milliseconds in this state.
    pub since_ms: u64,
    pub last_error: String,
    /// Messages the peer has not stored yet, over every topic.
    pub backlog_messages: u64,
    /// Age in milliseconds of the oldest progress batch (FINs, requeues,
    /// deferrals) the peer has not applied; 0 when it is up to date.
    pub progress_lag_ms: u64,
    pub topics: Vec<PeerTopicStats>,
}

/// One topic of a [`PeerStats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerTopicStats {
    pub topic_name: String,
    /// The seq the topic's next message gets here.
    pub end_seq: u64,
    /// Seqs below this are stored on the peer.
    pub stored_seq: u64,
    /// Whether publishes to the topic wait for the peer.
    pub synced: bool,
}

/// The replicas an nsqd keeps for one origin nsqd, in [`Stats`] (ours).
/// They are invisible until promoted: not delivered, not registered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicaStats {
    /// The origin's TCP address, as it last reported it.
    pub origin: String,
    /// The uid of the origin's data directory.
    pub origin_id: String,
    pub hostname: String,
    /// Whether its replication link is up.
    pub connected: bool,
    /// Unix seconds: the link's start while connected, its end otherwise.
    pub last_seen: i64,
    /// Messages held for it and not finished, over every topic.
    pub depth: u64,
    /// How far behind the origin the replicas may be, in milliseconds:
    /// since the last progress applied while connected, since the
    /// disconnect otherwise (or since this nsqd started, when the origin
    /// has not connected since).
    pub lag_ms: Option<u64>,
    /// Unix ms of the promotion that made these replicas this node's own
    /// topics; the origin's links are refused since (`E_REPL_PROMOTED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<u64>,
    pub topics: Vec<ReplicaTopicStats>,
}

/// One topic of a [`ReplicaStats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicaTopicStats {
    pub topic_name: String,
    /// Seqs below this are stored (or were never sent: finished).
    pub stored_seq: u64,
    /// Messages the topic holds for no channel yet.
    pub backlog: u64,
    /// `backlog` plus every channel's depth.
    pub depth: u64,
    pub channels: Vec<ReplicaChannelStats>,
}

/// One channel of a [`ReplicaTopicStats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicaChannelStats {
    pub channel_name: String,
    /// Messages not known to be finished.
    pub depth: u64,
    pub paused: bool,
}

/// A topic in [`Stats`], with its channels.
///
/// ```
/// # fn report(stats: nsq::api::Stats) {
/// for topic in stats.topics.iter().flatten() {
///     let waiting: i64 = topic.channels.iter().map(|c| c.depth).sum();
///     println!("{}: {} published, {waiting} waiting", topic.topic_name, topic.message_count);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicStats {
    pub topic_name: String,
    /// Sorted by name.
    pub channels: Vec<ChannelStats>,
    /// Messages waiting in the topic itself (memory and disk), not yet copied to channels.
    pub depth: i64,
    pub backend_depth: i64,
    pub message_count: u64,
    pub message_bytes: u64,
    pub paused: bool,
    pub e2e_processing_latency: E2eProcessingLatency,
    /// Bytes of the disk queue skipped as corrupt since start (ours; absent when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub backend_corrupt_bytes: u64,
    /// Bytes waiting in the disk queue (ours; absent when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub backend_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u16(n: &u16) -> bool {
    *n == 0
}

/// A channel in [`TopicStats`], with its consumers when asked for.
///
/// ```
/// # fn report(topic: &nsq::api::TopicStats) {
/// for channel in &topic.channels {
///     let busy = channel.in_flight_count + channel.deferred_count;
///     println!("{}: {} waiting, {busy} busy", channel.channel_name, channel.depth);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelStats {
    pub channel_name: String,
    pub depth: i64,
    pub backend_depth: i64,
    pub in_flight_count: i64,
    pub deferred_count: i64,
    pub message_count: u64,
    pub requeue_count: u64,
    pub timeout_count: u64,
    pub client_count: i64,
    /// `null` when clients were not asked for.
    pub clients: Option<Vec<ClientStats>>,
    pub paused: bool,
    pub e2e_processing_latency: E2eProcessingLatency,
    /// Bytes of the disk queue skipped as corrupt since start (ours; absent when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub backend_corrupt_bytes: u64,
    /// Bytes waiting in the disk queue (ours; absent when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub backend_bytes: u64,
    // Ours, each absent when 0, so that a node that does not use dead
    // letters answers exactly upstream's document.
    /// Messages kept as dead letters: see `/channel/dead`.
    #[serde(skip_serializing_if = "is_zero")]
    pub dead_count: u64,
    /// Messages that expired past the channel's TTL since start.
    #[serde(skip_serializing_if = "is_zero")]
    pub expired_count: u64,
    /// Deliveries before a message becomes a dead letter; 0: no limit.
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub max_attempts: u16,
    /// The channel's message TTL in milliseconds; 0: none.
    #[serde(skip_serializing_if = "is_zero")]
    pub msg_ttl_ms: u64,
}

/// A connection in [`Stats`]: a consumer of a [`ChannelStats`], or a producer.
///
/// ```no_run
/// # async fn run(nsqd: nsq::NsqdHttp) -> Result<(), nsq::Error> {
/// let stats = nsqd.stats(Some("events"), Some("archive"), true).await?;
/// for topic in stats.topics.unwrap_or_default() {
///     for channel in topic.channels {
///         for client in channel.clients.unwrap_or_default() {
///             println!("{} ({}): RDY {}", client.client_id, client.remote_address, client.ready_count);
///         }
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientStats {
    pub client_id: String,
    pub hostname: String,
    /// Always `"V2"`.
    pub version: String,
    pub remote_address: String,
    /// 0 init, 3 subscribed, 4 closing.
    pub state: i32,
    pub ready_count: i64,
    pub in_flight_count: i64,
    pub message_count: u64,
    pub finish_count: u64,
    pub requeue_count: u64,
    /// Unix seconds.
    pub connect_ts: i64,
    pub sample_rate: i32,
    pub deflate: bool,
    pub snappy: bool,
    pub user_agent: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub authed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity_url: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pub_counts: Vec<PubCount>,
    pub tls: bool,
    pub tls_cipher_suite: String,
    pub tls_version: String,
    pub tls_negotiated_protocol: String,
    pub tls_negotiated_protocol_is_mutual: bool,
    /// Subject common name of the client's certificate (ours; absent without one).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_client_cert_common_name: String,
}

/// Messages a producer published to one topic, in [`ClientStats::pub_counts`].
///
/// ```
/// let count: nsq::api::PubCount = serde_json::from_str(r#"{"topic":"events","count":12}"#)?;
/// assert_eq!(count.count, 12);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PubCount {
    pub topic: String,
    pub count: u64,
}

/// Time from publish to FIN. `percentiles` is `null` when none are configured.
///
/// ```
/// # fn report(channel: &nsq::api::ChannelStats) {
/// for p in channel.e2e_processing_latency.percentiles.iter().flatten() {
///     println!("p{}: {:.1} ms", p.quantile * 100.0, p.value / 1e6);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct E2eProcessingLatency {
    pub count: u64,
    pub percentiles: Option<Vec<Percentile>>,
}

/// One quantile of an [`E2eProcessingLatency`].
///
/// ```
/// let p: nsq::api::Percentile = serde_json::from_str(r#"{"quantile":0.99,"value":2500000}"#)?;
/// assert_eq!(p.value / 1e6, 2.5, "milliseconds");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Percentile {
    pub quantile: f64,
    /// Nanoseconds.
    pub value: f64,
}

/// Upstream reports Go runtime figures here; ours fills the process's resident
/// memory into `heap_in_use_bytes` and leaves the garbage-collector figures at 0.
///
/// ```
/// # fn report(stats: &nsq::api::Stats) {
/// if let Some(memory) = &stats.memory {
///     println!("resident: {} bytes", memory.heap_in_use_bytes);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemStats {
    pub heap_objects: u64,
    pub heap_idle_bytes: u64,
    pub heap_in_use_bytes: u64,
    pub heap_released_bytes: u64,
    pub gc_pause_usec_100: u64,
    pub gc_pause_usec_99: u64,
    pub gc_pause_usec_95: u64,
    pub next_gc_bytes: u64,
    pub gc_total_runs: u32,
}
