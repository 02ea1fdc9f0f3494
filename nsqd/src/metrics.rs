//! `GET /metrics`: the figures of `/stats` for Prometheus, in the format the
//! scraper asks for ([`Format`]). Not in upstream (its users run exporters
//! that poll `/stats`); the names follow Prometheus conventions, not statsd's keys.
//!
//! Each scrape writes one [`Node::stats`] snapshot: no metric objects are
//! kept per topic or channel, so deleted ones vanish and `/metrics` always
//! agrees with `/stats`.

use crate::node::Node;
use nsq::api::{ChannelStats, E2eProcessingLatency, PeerStats, ReplicaStats, Stats, TopicStats};
use nsq_daemon::metrics::{process_families, Exposition, Format, Kind};

#[derive(Clone, Copy)]
enum Sample {
    Counter(u64),
    Gauge(i64),
}

impl Sample {
    fn kind(self) -> Kind {
        match self {
            Sample::Counter(_) => Kind::Counter,
            Sample::Gauge(_) => Kind::Gauge,
        }
    }
}

type TopicMetric = (&'static str, &'static str, fn(&TopicStats) -> Sample);
type ChannelMetric = (&'static str, &'static str, fn(&ChannelStats) -> Sample);
type PeerGauge = (&'static str, &'static str, fn(&PeerStats) -> f64);
type ReplicaGauge = (&'static str, &'static str, fn(&ReplicaStats) -> Option<f64>);

const TOPIC_METRICS: &[TopicMetric] = &[
    (
        "nsqd_topic_depth",
        "Messages waiting in the topic (memory and disk)",
        |t| Sample::Gauge(t.depth),
    ),
    (
        "nsqd_topic_backend_depth",
        "Messages waiting in the topic's disk queue",
        |t| Sample::Gauge(t.backend_depth),
    ),
    (
        "nsqd_topic_messages",
        "Messages published to the topic",
        |t| Sample::Counter(t.message_count),
    ),
    (
        "nsqd_topic_message_bytes",
        "Bytes of message bodies published to the topic",
        |t| Sample::Counter(t.message_bytes),
    ),
    (
        "nsqd_topic_backend_bytes",
        "Bytes waiting in the topic's disk queue",
        |t| Sample::Gauge(t.backend_bytes as i64),
    ),
    (
        "nsqd_topic_backend_corrupt_bytes",
        "Bytes of the topic's disk queue skipped as corrupt",
        |t| Sample::Counter(t.backend_corrupt_bytes),
    ),
    ("nsqd_topic_paused", "1 while the topic is paused", |t| {
        Sample::Gauge(t.paused.into())
    }),
];

const CHANNEL_METRICS: &[ChannelMetric] = &[
    (
        "nsqd_channel_depth",
        "Messages waiting in the channel (memory and disk)",
        |c| Sample::Gauge(c.depth),
    ),
    (
        "nsqd_channel_backend_depth",
        "Messages waiting in the channel's disk queue",
        |c| Sample::Gauge(c.backend_depth),
    ),
    (
        "nsqd_channel_in_flight",
        "Messages sent to consumers and not yet finished",
        |c| Sample::Gauge(c.in_flight_count),
    ),
    (
        "nsqd_channel_deferred",
        "Messages deferred by DPUB or REQ",
        |c| Sample::Gauge(c.deferred_count),
    ),
    (
        "nsqd_channel_messages",
        "Messages copied to the channel",
        |c| Sample::Counter(c.message_count),
    ),
    (
        "nsqd_channel_requeues",
        "Messages requeued by consumers",
        |c| Sample::Counter(c.requeue_count),
    ),
    (
        "nsqd_channel_timeouts",
        "Messages requeued after their timeout",
        |c| Sample::Counter(c.timeout_count),
    ),
    (
        "nsqd_channel_clients",
        "Consumers subscribed to the channel",
        |c| Sample::Gauge(c.client_count),
    ),
    (
        "nsqd_channel_backend_bytes",
        "Bytes waiting in the channel's disk queue",
        |c| Sample::Gauge(c.backend_bytes as i64),
    ),
    (
        "nsqd_channel_backend_corrupt_bytes",
        "Bytes of the channel's disk queue skipped as corrupt",
        |c| Sample::Counter(c.backend_corrupt_bytes),
    ),
    (
        "nsqd_channel_paused",
        "1 while the channel is paused",
        |c| Sample::Gauge(c.paused.into()),
    ),
    (
        "nsqd_channel_dead_letters",
        "Messages kept as dead letters (max attempts used up, or past the TTL)",
        |c| Sample::Gauge(c.dead_count as i64),
    ),
    (
        "nsqd_channel_expired",
        "Messages that outlived the channel's TTL and became dead letters",
        |c| Sample::Counter(c.expired_count),
    ),
];

const LATENCY_HELP: &str =
    "Time from publish to FIN in seconds, by quantile (--e2e-processing-latency-percentile)";

/// One latency's quantiles, labelled like the series they belong to.
fn quantiles(out: &mut Exposition, labels: &[(&str, &str)], latency: &E2eProcessingLatency) {
    for p in latency.percentiles.iter().flatten() {
        let quantile = p.quantile.to_string();
        let mut set = labels.to_vec();
        set.push(("quantile", &quantile));
        out.sample(&set, p.value / 1e9);
    }
}

/// Replication's links to peers (an origin) and the replicas kept for
/// origins (a peer); no family at all on a node with neither.
fn replication(out: &mut Exposition, stats: &Stats, node: &str) {
    if let Some(peers) = &stats.peers {
        let gauges: [PeerGauge; 4] = [
            (
                "nsqd_replication_peer_synced",
                "1 while publishes wait for this peer (its link is in sync)",
                |p| f64::from(u8::from(p.state == "synced")),
            ),
            (
                "nsqd_replication_peer_connected",
                "1 while a replication link to this peer is up",
                |p| f64::from(u8::from(p.connected)),
            ),
            (
                "nsqd_replication_peer_backlog_messages",
                "Messages this peer has not stored yet",
                |p| p.backlog_messages as f64,
            ),
            (
                "nsqd_replication_peer_progress_lag_seconds",
                "Age of the oldest FINs, requeues and deferrals not applied on this peer",
                |p| p.progress_lag_ms as f64 / 1e3,
            ),
        ];
        for (name, help, value) in gauges {
            out.family(name, help, Kind::Gauge);
            for p in peers {
                out.sample(&[("peer", p.address.as_str()), ("node", node)], value(p));
            }
        }
    }
    if let Some(replicas) = &stats.replicas {
        let gauges: [ReplicaGauge; 3] = [
            (
                "nsqd_replica_connected",
                "1 while this origin's replication link is up",
                |r| Some(f64::from(u8::from(r.connected))),
            ),
            (
                "nsqd_replica_depth",
                "Messages kept for this origin that its channels have not finished",
                |r| Some(r.depth as f64),
            ),
            (
                "nsqd_replica_lag_seconds",
                "How far behind its origin the replica may be",
                |r| r.lag_ms.map(|ms| ms as f64 / 1e3),
            ),
        ];
        for (name, help, value) in gauges {
            out.family(name, help, Kind::Gauge);
            for r in replicas {
                if let Some(v) = value(r) {
                    out.sample(&[("origin", r.origin.as_str()), ("node", node)], v);
                }
            }
        }
    }
}

/// The exposition for the node as it is now.
pub fn render(node: &Node, format: Format) -> String {
    let me = node.peer_identity();
    let stats = node.stats("", "", false);
    let log_fsyncs = node.log_fsyncs();
    let node = format!("{}:{}", me.broadcast_address, me.http_port);
    let node = node.as_str();
    let topics = stats.topics.as_deref().unwrap_or_default();
    let channels = || {
        topics
            .iter()
            .flat_map(|t| t.channels.iter().map(move |c| (t.topic_name.as_str(), c)))
    };
    let size = 4096 + topics.iter().map(|t| t.channels.len() + 1).sum::<usize>() * 2048;
    let mut out = Exposition::new(format, size);
    let node_only = [("node", node)];
    out.family(
        "nsqd_healthy",
        "1 while nsqd can write to disk (/ping answers OK)",
        Kind::Gauge,
    )
    .sample(&node_only, i64::from(stats.health == "OK"));
    process_families(&mut out, &node_only);
    out.family("nsqd_topics", "Topics on this nsqd", Kind::Gauge)
        .sample(&node_only, topics.len() as u64);
    if let Some(fsyncs) = log_fsyncs {
        out.family(
            "nsqd_log_fsyncs",
            "fsyncs of topic logs, journals and their directories (log mode)",
            Kind::Counter,
        )
        .sample(&node_only, fsyncs);
    }
    for (name, help, value) in TOPIC_METRICS {
        out.family(name, help, value(&TopicStats::default()).kind());
        for t in topics {
            let labels = [("topic", t.topic_name.as_str()), ("node", node)];
            match value(t) {
                Sample::Counter(v) => out.sample(&labels, v),
                Sample::Gauge(v) => out.sample(&labels, v),
            };
        }
    }
    for (name, help, value) in CHANNEL_METRICS {
        out.family(name, help, value(&ChannelStats::default()).kind());
        for (topic, c) in channels() {
            let labels = [
                ("topic", topic),
                ("channel", c.channel_name.as_str()),
                ("node", node),
            ];
            match value(c) {
                Sample::Counter(v) => out.sample(&labels, v),
                Sample::Gauge(v) => out.sample(&labels, v),
            };
        }
    }
    replication(&mut out, &stats, node);
    out.family(
        "nsqd_topic_e2e_processing_latency_seconds",
        LATENCY_HELP,
        Kind::Gauge,
    );
    for t in topics {
        let labels = [("topic", t.topic_name.as_str()), ("node", node)];
        quantiles(&mut out, &labels, &t.e2e_processing_latency);
    }
    out.family(
        "nsqd_channel_e2e_processing_latency_seconds",
        LATENCY_HELP,
        Kind::Gauge,
    );
    for (topic, c) in channels() {
        let labels = [
            ("topic", topic),
            ("channel", c.channel_name.as_str()),
            ("node", node),
        ];
        quantiles(&mut out, &labels, &c.e2e_processing_latency);
    }
    out.finish()
}
