//! `GET /metrics`: the registration DB in the OpenMetrics text format, for
//! Prometheus (not in upstream). Each scrape encodes one snapshot of the
//! counts through a collector, so nothing is kept per topic or channel.

use crate::registry::{Counts, Registry as Db};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt::Error;

/// The content type of what [`render`] writes (the same as nsqd's).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition for the registration DB as it is now.
pub fn render(db: &Db) -> String {
    let snapshot = Snapshot {
        counts: db.counts(),
        resident_bytes: resident_bytes(),
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64),
    };
    let size = 1024 + snapshot.counts.channels.len() * 128 + snapshot.counts.topics.len() * 96;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::with_capacity(size);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "failed to encode /metrics");
    }
    out
}

/// The process's resident set, from `/proc/self/statm`; 0 where there is none.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[derive(Debug)]
struct Snapshot {
    counts: Counts,
    resident_bytes: u64,
    open_fds: u64,
}

fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        single(
            &mut encoder,
            "nsqlookupd_peers",
            "nsqd nodes connected and active (as /nodes lists them)",
            self.counts.peers as u64,
        )?;
        single(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            self.resident_bytes,
        )?;
        single(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors",
            self.open_fds,
        )?;
        let mut topics = encoder.encode_descriptor(
            "nsqlookupd_topic_producers",
            "nsqd nodes that /lookup returns for the topic (active, not tombstoned)",
            None,
            MetricType::Gauge,
        )?;
        for (topic, n) in &self.counts.topics {
            topics
                .encode_family(&[("topic", topic.as_str())])?
                .encode_gauge(&(*n as u64))?;
        }
        let mut channels = encoder.encode_descriptor(
            "nsqlookupd_channel_producers",
            "Active nsqd nodes that registered the channel",
            None,
            MetricType::Gauge,
        )?;
        for (topic, channel, n) in &self.counts.channels {
            channels
                .encode_family(&[("topic", topic.as_str()), ("channel", channel.as_str())])?
                .encode_gauge(&(*n as u64))?;
        }
        Ok(())
    }
}
