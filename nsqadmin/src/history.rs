//! A rolling history of what nsqadmin polls, so that pages can chart depth
//! and message rates without graphite. Every `--history-interval` the whole
//! cluster's stats are read once; each topic and channel keeps one small
//! point per sample for `--history-retention` (12 bytes a point: at the
//! defaults, 5 s for an hour, about 8.6 KB per topic or channel).

use crate::cluster::Cluster;
use crate::model::TopicStats;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a series is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Topic(String),
    Channel(String, String),
}

/// One sample. For a topic: its own depth, the depth of all its channels,
/// and messages published since the previous sample. For a channel: its
/// depth, its in-flight count, and messages it received since the previous
/// sample. `None` where the thing was not seen.
pub type Point = Option<[u32; 3]>;

const GAP: [u32; 3] = [u32::MAX; 3];

#[derive(Debug, Default)]
struct Series {
    points: VecDeque<[u32; 3]>,
    /// The message count at the last sample, for the next delta.
    last_count: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Unix seconds of each sample, oldest first.
    times: VecDeque<i64>,
    series: HashMap<Key, Series>,
}

/// The history, shared by the poller and the pages.
pub struct History {
    pub interval: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

/// A series ready to draw: sample times and points, aligned.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub times: Vec<i64>,
    pub points: Vec<Point>,
    pub interval: Duration,
}

fn clamp(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX - 1)) as u32
}

impl History {
    pub fn new(interval: Duration, retention: Duration) -> History {
        let capacity = (retention.as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
        History {
            interval,
            capacity: capacity.max(2),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Adds one sample of the whole cluster (per-node topic stats).
    pub fn record(&self, at: i64, per_node: &[TopicStats]) {
        let mut now: HashMap<Key, ([i64; 2], u64)> = HashMap::new();
        for t in per_node {
            let channels = t.channels.iter().flatten();
            let backlog: i64 = channels.clone().map(|c| c.depth).sum();
            let e = now.entry(Key::Topic(t.topic_name.clone())).or_default();
            e.0[0] += t.depth;
            e.0[1] += backlog;
            e.1 += t.message_count;
            for c in channels {
                let key = Key::Channel(t.topic_name.clone(), c.channel_name.clone());
                let e = now.entry(key).or_default();
                e.0[0] += c.depth;
                e.0[1] += c.in_flight_count;
                e.1 += c.message_count;
            }
        }
        let mut inner = self.inner.lock();
        inner.times.push_back(at);
        if inner.times.len() > self.capacity {
            inner.times.pop_front();
        }
        let keep = inner.times.len();
        for (key, (depths, count)) in &now {
            let series = inner.series.entry(key.clone()).or_default();
            let delta = match series.last_count {
                // A lower count means the node restarted: no rate this time.
                Some(last) if *count >= last => clamp((*count - last) as i64),
                _ => 0,
            };
            series.last_count = Some(*count);
            series
                .points
                .push_back([clamp(depths[0]), clamp(depths[1]), delta]);
        }
        inner.series.retain(|key, series| {
            if !now.contains_key(key) {
                series.points.push_back(GAP);
                series.last_count = None;
            }
            while series.points.len() > keep {
                series.points.pop_front();
            }
            series.points.iter().any(|p| *p != GAP)
        });
    }

    pub fn chart(&self, key: &Key) -> Chart {
        let inner = self.inner.lock();
        let Some(series) = inner.series.get(key) else {
            return Chart::default();
        };
        let skip = inner.times.len() - series.points.len();
        Chart {
            times: inner.times.iter().skip(skip).copied().collect(),
            points: series
                .points
                .iter()
                .map(|p| (*p != GAP).then_some(*p))
                .collect(),
            interval: self.interval,
        }
    }

    /// Messages per second over the last sample, if known.
    pub fn rate(&self, key: &Key) -> Option<f64> {
        let inner = self.inner.lock();
        let series = inner.series.get(key)?;
        if series.points.len() < 2 {
            return None;
        }
        let last = series.points.back().filter(|p| **p != GAP)?;
        Some(f64::from(last[2]) / self.interval.as_secs_f64())
    }

    #[cfg(test)]
    fn series_count(&self) -> usize {
        self.inner.lock().series.len()
    }
}

/// Samples the cluster every interval until `stop`.
pub async fn poll(cluster: Arc<Cluster>, history: Arc<History>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(history.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let sample = async {
            let (producers, _) = cluster.producers().await?;
            let (stats, failed) = cluster.node_stats(&producers, None, None, false).await?;
            Ok::<_, String>((stats, failed))
        };
        match sample.await {
            Ok((stats, failed)) => {
                for f in failed {
                    tracing::debug!(error = %f, "history: a node did not answer");
                }
                history.record(crate::cluster::unix_now(), &stats);
            }
            Err(e) => tracing::debug!(error = %e, "history: no sample"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChannelStats;

    fn topic(name: &str, depth: i64, count: u64, channel_depth: i64) -> TopicStats {
        TopicStats {
            topic_name: name.into(),
            depth,
            message_count: count,
            channels: Some(vec![ChannelStats {
                topic_name: name.into(),
                channel_name: "c".into(),
                depth: channel_depth,
                message_count: count,
                ..ChannelStats::default()
            }]),
            ..TopicStats::default()
        }
    }

    #[test]
    fn rates_gaps_and_retention() {
        let h = History::new(Duration::from_secs(5), Duration::from_secs(15));
        let t = Key::Topic("a".into());
        h.record(0, &[topic("a", 1, 100, 7)]);
        h.record(5, &[topic("a", 2, 150, 8), topic("b", 0, 0, 0)]);
        assert_eq!(h.rate(&t), Some(10.0));
        let chart = h.chart(&t);
        assert_eq!(chart.times, vec![0, 5]);
        assert_eq!(chart.points, vec![Some([1, 7, 0]), Some([2, 8, 50])]);
        // "a" vanishes for one sample: a gap, and no rate across it.
        h.record(10, &[topic("b", 0, 0, 0)]);
        h.record(15, &[topic("a", 0, 160, 0), topic("b", 0, 0, 0)]);
        let chart = h.chart(&t);
        assert_eq!(chart.times, vec![5, 10, 15], "three samples retained");
        assert_eq!(chart.points, vec![Some([2, 8, 50]), None, Some([0, 0, 0])]);
        // Gone for the whole window: forgotten.
        for at in [20, 25, 30] {
            h.record(at, &[topic("b", 0, 0, 0)]);
        }
        assert!(h.chart(&t).points.is_empty());
        assert_eq!(h.series_count(), 2, "b and b's channel");
    }
}
