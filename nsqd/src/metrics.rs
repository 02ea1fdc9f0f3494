//! `GET /metrics`: the figures of `/stats` in the OpenMetrics text format,
//! for Prometheus. Not in upstream (its users run exporters that poll
//! `/stats`); the names follow Prometheus conventions, not statsd's keys.
//!
//! Each scrape encodes one [`Node::stats`] snapshot through a collector: no
//! metric objects are kept per topic or channel, so deleted ones vanish and
//! `/metrics` always agrees with `/stats`.

use crate::node::Node;
use nsq::api::{ChannelStats, E2eProcessingLatency, Stats, TopicStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt::Error;

/// The content type of what [`render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition for the node as it is now.
pub fn render(node: &Node) -> String {
    let me = node.peer_identity();
    let snapshot = Snapshot {
        stats: node.stats("", "", false),
        node: format!("{}:{}", me.broadcast_address, me.http_port),
        resident_bytes: crate::stats::resident_bytes(),
        open_fds: crate::stats::open_fds(),
    };
    let channels: usize = snapshot
        .stats
        .topics
        .iter()
        .flatten()
        .map(|t| t.channels.len() + 1)
        .sum();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::with_capacity(4096 + channels * 2048);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "failed to encode /metrics");
    }
    out
}

#[derive(Debug)]
struct Snapshot {
    stats: Stats,
    /// `broadcast_address:http_port`, the `node` label.
    node: String,
    resident_bytes: u64,
    open_fds: u64,
}

#[derive(Clone, Copy)]
enum Sample {
    Counter(u64),
    Gauge(i64),
}

impl Sample {
    fn kind(self) -> MetricType {
        match self {
            Sample::Counter(_) => MetricType::Counter,
            Sample::Gauge(_) => MetricType::Gauge,
        }
    }
}

/// One metric family: a descriptor, then one sample per label set.
fn family<'a, L: EncodeLabelSet + 'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl Iterator<Item = (L, Sample)>,
) -> Result<(), Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, sample) in samples {
        let mut sample_encoder = metric.encode_family(&labels)?;
        match sample {
            Sample::Counter(v) => {
                sample_encoder.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
            }
            Sample::Gauge(v) => sample_encoder.encode_gauge(&v)?,
        }
    }
    Ok(())
}

type TopicMetric = (&'static str, &'static str, fn(&TopicStats) -> Sample);
type ChannelMetric = (&'static str, &'static str, fn(&ChannelStats) -> Sample);

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
];

/// The quantiles of one latency, labelled like the series they belong to.
fn quantiles<'a, const N: usize>(
    labels: [(&'static str, &'a str); N],
    latency: &'a E2eProcessingLatency,
) -> impl Iterator<Item = (Vec<(&'static str, String)>, f64)> + 'a {
    latency.percentiles.iter().flatten().map(move |p| {
        let mut set: Vec<(&'static str, String)> =
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        set.push(("quantile", p.quantile.to_string()));
        (set, p.value / 1e9)
    })
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let node = self.node.as_str();
        let topics = self.stats.topics.as_deref().unwrap_or_default();
        let channels = || {
            topics
                .iter()
                .flat_map(|t| t.channels.iter().map(move |c| (t.topic_name.as_str(), c)))
        };
        let healthy = i64::from(self.stats.health == "OK");
        let node_only = || [("node", node)];
        family(
            &mut encoder,
            "nsqd_healthy",
            "1 while nsqd can write to disk (/ping answers OK)",
            MetricType::Gauge,
            std::iter::once((node_only(), Sample::Gauge(healthy))),
        )?;
        family(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            MetricType::Gauge,
            std::iter::once((node_only(), Sample::Gauge(self.resident_bytes as i64))),
        )?;
        family(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors",
            MetricType::Gauge,
            std::iter::once((node_only(), Sample::Gauge(self.open_fds as i64))),
        )?;
        family(
            &mut encoder,
            "nsqd_topics",
            "Topics on this nsqd",
            MetricType::Gauge,
            std::iter::once((node_only(), Sample::Gauge(topics.len() as i64))),
        )?;
        for (name, help, value) in TOPIC_METRICS {
            let kind = value(&TopicStats::default()).kind();
            let samples = topics
                .iter()
                .map(|t| ([("topic", t.topic_name.as_str()), ("node", node)], value(t)));
            family(&mut encoder, name, help, kind, samples)?;
        }
        for (name, help, value) in CHANNEL_METRICS {
            let kind = value(&ChannelStats::default()).kind();
            let samples = channels().map(|(topic, c)| {
                (
                    [
                        ("topic", topic),
                        ("channel", c.channel_name.as_str()),
                        ("node", node),
                    ],
                    value(c),
                )
            });
            family(&mut encoder, name, help, kind, samples)?;
        }
        let latency = |encoder: &mut DescriptorEncoder,
                       name: &str,
                       samples: &mut dyn Iterator<Item = (Vec<(&'static str, String)>, f64)>|
         -> Result<(), Error> {
            let mut metric = encoder.encode_descriptor(name, "Time from publish to FIN in seconds, by quantile (--e2e-processing-latency-percentile)", None, MetricType::Gauge)?;
            for (labels, value) in samples {
                metric.encode_family(&labels)?.encode_gauge(&value)?;
            }
            Ok(())
        };
        latency(
            &mut encoder,
            "nsqd_topic_e2e_processing_latency_seconds",
            &mut topics.iter().flat_map(|t| {
                quantiles(
                    [("topic", t.topic_name.as_str()), ("node", node)],
                    &t.e2e_processing_latency,
                )
            }),
        )?;
        latency(
            &mut encoder,
            "nsqd_channel_e2e_processing_latency_seconds",
            &mut channels().flat_map(|(topic, c)| {
                quantiles(
                    [
                        ("topic", topic),
                        ("channel", c.channel_name.as_str()),
                        ("node", node),
                    ],
                    &c.e2e_processing_latency,
                )
            }),
        )?;
        Ok(())
    }
}
