//! `GET /metrics`: the registration DB for Prometheus (not in upstream), in
//! the format the scraper asks for ([`Format`]). Each scrape writes one
//! snapshot of the counts, so nothing is kept per topic or channel.

use crate::registry::Registry;
use nsq_daemon::metrics::{process_families, Exposition, Format, Kind};

/// The exposition for the registration DB as it is now.
pub fn render(db: &Registry, format: Format) -> String {
    let counts = db.counts();
    let size = 1024 + counts.channels.len() * 128 + counts.topics.len() * 96;
    let mut out = Exposition::new(format, size);
    out.family(
        "nsqlookupd_peers",
        "nsqd nodes connected and active (as /nodes lists them)",
        Kind::Gauge,
    )
    .sample(&[], counts.peers as u64);
    process_families(&mut out, &[]);
    out.family(
        "nsqlookupd_topic_producers",
        "nsqd nodes that /lookup returns for the topic (active, not tombstoned)",
        Kind::Gauge,
    );
    for (topic, n) in &counts.topics {
        out.sample(&[("topic", topic)], *n as u64);
    }
    out.family(
        "nsqlookupd_channel_producers",
        "Active nsqd nodes that registered the channel",
        Kind::Gauge,
    );
    for (topic, channel, n) in &counts.channels {
        out.sample(&[("topic", topic), ("channel", channel)], *n as u64);
    }
    out.finish()
}
