//! What `nsq_stat` prints: one channel's figures summed over every nsqd that
//! has it, and upstream's two header lines and row format.

use nsq::api::Stats;
use std::time::Duration;

/// A channel's figures added up across nsqds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelTotals {
    pub depth: i64,
    pub memory_depth: i64,
    pub backend_depth: i64,
    pub in_flight: i64,
    pub deferred: i64,
    pub requeued: i64,
    pub timed_out: i64,
    pub messages: i64,
    pub clients: i64,
}

impl ChannelTotals {
    /// Adds the channel's figures from one nsqd's `/stats`; false when that
    /// nsqd does not have the channel.
    pub fn add(&mut self, stats: &Stats, topic: &str, channel: &str) -> bool {
        let found = stats
            .topics
            .iter()
            .flatten()
            .filter(|t| t.topic_name == topic)
            .flat_map(|t| &t.channels)
            .find(|c| c.channel_name == channel);
        let Some(c) = found else {
            return false;
        };
        self.depth += c.depth;
        // Upstream derives the in-memory part the same way.
        self.memory_depth += c.depth - c.backend_depth;
        self.backend_depth += c.backend_depth;
        self.in_flight += c.in_flight_count;
        self.deferred += c.deferred_count;
        self.requeued += c.requeue_count as i64;
        self.timed_out += c.timeout_count as i64;
        self.messages += c.message_count as i64;
        self.clients += c.client_count;
        true
    }
}

/// Upstream prints the header before the first report and every 25th.
pub const HEADER_EVERY: u64 = 25;

pub fn header() -> String {
    format!(
        "{}+{}+{}\n{:>7} {:>7} | {:>7} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} {:>12} {:>7}",
        "------rate------",
        "----------------depth----------------",
        "--------------metadata---------------",
        "ingress",
        "egress",
        "total",
        "mem",
        "disk",
        "inflt",
        "def",
        "req",
        "t-o",
        "msgs",
        "clients"
    )
}

/// One report: rates since the previous poll (`interval` ago), then the totals.
/// Egress is what arrived minus what the depth grew by.
pub fn row(previous: &ChannelTotals, now: &ChannelTotals, interval: Duration) -> String {
    let secs = interval.as_secs_f64();
    let arrived = now.messages - previous.messages;
    let ingress = (arrived as f64 / secs) as i64;
    let egress = ((arrived - (now.depth - previous.depth)) as f64 / secs) as i64;
    format!(
        "{ingress:>7} {egress:>7} | {:>7} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} {:>12} {:>7}",
        now.depth,
        now.memory_depth,
        now.backend_depth,
        now.in_flight,
        now.deferred,
        now.requeued,
        now.timed_out,
        now.messages,
        now.clients
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nsq::api::{ChannelStats, TopicStats};

    fn stats(topic: &str, channel: &str, depth: i64, backend: i64, msgs: u64) -> Stats {
        Stats {
            topics: Some(vec![TopicStats {
                topic_name: topic.into(),
                channels: vec![ChannelStats {
                    channel_name: channel.into(),
                    depth,
                    backend_depth: backend,
                    in_flight_count: 2,
                    deferred_count: 1,
                    message_count: msgs,
                    requeue_count: 3,
                    timeout_count: 4,
                    client_count: 1,
                    ..ChannelStats::default()
                }],
                ..TopicStats::default()
            }]),
            ..Stats::default()
        }
    }

    #[test]
    fn sums_the_channel_across_nsqds() {
        let mut totals = ChannelTotals::default();
        assert!(totals.add(&stats("t", "c", 10, 4, 100), "t", "c"));
        assert!(totals.add(&stats("t", "c", 5, 0, 50), "t", "c"));
        assert!(!totals.add(&stats("t", "other", 7, 0, 7), "t", "c"));
        assert!(!totals.add(&Stats::default(), "t", "c"));
        let expected = ChannelTotals {
            depth: 15,
            memory_depth: 11,
            backend_depth: 4,
            in_flight: 4,
            deferred: 2,
            requeued: 6,
            timed_out: 8,
            messages: 150,
            clients: 2,
        };
        assert_eq!(totals, expected);
    }

    #[test]
    fn rows_and_header_line_up_as_upstream() {
        let header = header();
        let mut lines = header.lines();
        assert_eq!(
            lines.next().unwrap(),
            "------rate------+----------------depth----------------+--------------metadata---------------"
        );
        assert_eq!(
            lines.next().unwrap(),
            "ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients"
        );
        let before = ChannelTotals {
            messages: 100,
            depth: 10,
            ..ChannelTotals::default()
        };
        let after = ChannelTotals {
            messages: 140,
            depth: 30,
            memory_depth: 30,
            clients: 1,
            ..ChannelTotals::default()
        };
        assert_eq!(
            row(&before, &after, Duration::from_secs(2)),
            "     20      10 |      30      30       0     0     0 |       0       0          140       1"
        );
    }
}
