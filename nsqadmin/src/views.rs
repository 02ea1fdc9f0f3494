//! The data behind each page and `/api` route, gathered once and used by
//! both: the JSON routes serialize it, the pages render it.

use crate::cluster::{unix_now, Cluster};
use crate::messages::Listing;
use crate::model::{node_topics, ChannelStats, Producer, TopicStats};
use nsq::api::{PeerStats, ReplicaStats};
use serde::Serialize;
use std::collections::BTreeMap;

/// A view and the nodes that failed while gathering it.
pub struct Partial<T> {
    pub data: T,
    pub warnings: Vec<String>,
}

impl<T> Partial<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Partial<U> {
        Partial {
            data: f(self.data),
            warnings: self.warnings,
        }
    }
}

/// `Err` is an upstream error: no node answered.
pub type ViewResult<T> = Result<Partial<T>, String>;

/// Turns warnings into upstream's `message`: `""` or `"WARNING: ..."`.
pub fn warning_message(warnings: &[String]) -> String {
    if warnings.is_empty() {
        String::new()
    } else {
        format!("WARNING: {}", warnings.join("; "))
    }
}

/// The topic list with per-topic totals (used by the topics page; the
/// `/api/topics` route only needs names).
pub async fn topic_names(cluster: &Cluster) -> ViewResult<Vec<String>> {
    let (data, warnings) = cluster.topics().await?;
    Ok(Partial { data, warnings })
}

/// Every topic's total, from every node's `/stats` (no clients).
pub async fn all_topics(cluster: &Cluster) -> ViewResult<Vec<TopicStats>> {
    let (producers, mut warnings) = cluster.producers().await?;
    let (names, w) = cluster.topics().await.unwrap_or_default();
    warnings.extend(w);
    let (per_node, w) = if producers.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        cluster.node_stats(&producers, None, None, false).await?
    };
    warnings.extend(w);
    let mut by_topic: BTreeMap<String, Vec<TopicStats>> =
        names.into_iter().map(|n| (n, Vec::new())).collect();
    for t in per_node {
        by_topic.entry(t.topic_name.clone()).or_default().push(t);
    }
    let data = by_topic
        .into_iter()
        .map(|(name, nodes)| TopicStats::total(&name, nodes))
        .collect();
    Ok(Partial { data, warnings })
}

/// One topic over the nodes that have it.
pub async fn topic(cluster: &Cluster, topic: &str) -> ViewResult<TopicStats> {
    let (producers, mut warnings) = cluster.topic_producers(topic).await?;
    let (per_node, w) = if producers.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        cluster
            .node_stats(&producers, Some(topic), None, false)
            .await?
    };
    warnings.extend(w);
    Ok(Partial {
        data: TopicStats::total(topic, per_node),
        warnings,
    })
}

/// One channel over the nodes that have it, with its clients.
pub async fn channel(
    cluster: &Cluster,
    topic: &str,
    channel: &str,
) -> ViewResult<Option<ChannelStats>> {
    let (producers, mut warnings) = cluster.topic_producers(topic).await?;
    let (per_node, w) = if producers.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        cluster
            .node_stats(&producers, Some(topic), Some(channel), true)
            .await?
    };
    warnings.extend(w);
    let nodes: Vec<ChannelStats> = per_node
        .into_iter()
        .flat_map(|t| t.channels.unwrap_or_default())
        .filter(|c| c.channel_name == channel)
        .collect();
    let data = (!nodes.is_empty()).then(|| ChannelStats::total(topic, channel, nodes));
    Ok(Partial { data, warnings })
}

/// How many dead letters the channel page lists.
pub const DEAD_LETTERS_SHOWN: usize = 10;

/// The channel page: the channel over its nodes, and its oldest dead
/// letters, asked only of the nodes that hold some.
pub async fn channel_page(
    cluster: &Cluster,
    topic: &str,
    channel: &str,
) -> ViewResult<(Option<ChannelStats>, Listing)> {
    let Partial {
        data: stats,
        mut warnings,
    } = self::channel(cluster, topic, channel).await?;
    let holding: Vec<String> = stats
        .iter()
        .flat_map(|c| c.nodes.iter().flatten())
        .filter(|n| n.dead_count > 0)
        .map(|n| n.node.clone())
        .collect();
    let dead = if holding.is_empty() {
        Listing::default()
    } else {
        match dead_letters(cluster, &holding, topic, channel, DEAD_LETTERS_SHOWN).await {
            Ok(p) => {
                warnings.extend(p.warnings);
                p.data
            }
            Err(e) => {
                warnings.push(e);
                Listing::default()
            }
        }
    };
    Ok(Partial {
        data: (stats, dead),
        warnings,
    })
}

/// The oldest `n` dead letters of a channel over `nodes` (HTTP addresses).
pub async fn dead_letters(
    cluster: &Cluster,
    nodes: &[String],
    topic: &str,
    channel: &str,
    n: usize,
) -> ViewResult<Listing> {
    let (answers, warnings) = cluster
        .on_channel(nodes, "/channel/dead", |nsqd| async move {
            nsqd.dead_letters(topic, channel, n).await
        })
        .await?;
    Ok(Partial {
        data: Listing::oldest(answers, n),
        warnings,
    })
}

/// The next `n` messages of a channel on each nsqd that has the topic,
/// read without taking them.
pub async fn peek(cluster: &Cluster, topic: &str, channel: &str, n: usize) -> ViewResult<Listing> {
    let (producers, mut warnings) = cluster.topic_producers(topic).await?;
    let nodes: Vec<String> = producers.iter().map(Producer::http_address).collect();
    let (answers, w) = cluster
        .on_channel(&nodes, "/channel/peek", |nsqd| async move {
            nsqd.peek(topic, channel, n).await
        })
        .await?;
    warnings.extend(w);
    Ok(Partial {
        data: Listing::queued(answers),
        warnings,
    })
}

/// Every nsqd, with its replication links that are not in sync.
pub async fn nodes(cluster: &Cluster) -> ViewResult<Vec<Producer>> {
    let (mut data, mut warnings) = cluster.producers().await?;
    warnings.extend(cluster.mark_unsynced(&mut data).await);
    Ok(Partial { data, warnings })
}

/// One nsqd and everything on it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node: String,
    pub topics: Vec<TopicStats>,
    pub total_messages: u64,
    pub total_clients: usize,
    /// Ours: its links to `--replicate-to` peers, as nsqd reports them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerStats>,
    /// Ours: the replicas it keeps for other nsqds, as nsqd reports them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStats>,
    #[serde(skip)]
    pub producer: Producer,
}

/// `Ok(None)` when no nsqd has that name.
pub async fn node(cluster: &Cluster, node: &str) -> ViewResult<Option<NodeView>> {
    let (producers, warnings) = cluster.producers().await?;
    let Some(producer) = producers.into_iter().find(|p| p.http_address() == node) else {
        return Ok(Partial {
            data: None,
            warnings,
        });
    };
    let stats = cluster.stats(&producer).await?;
    let topics = node_topics(&producer.node(), &stats, None, unix_now());
    let total_clients = topics
        .iter()
        .flat_map(|t| t.channels.iter().flatten())
        .map(|c| c.clients.as_ref().map_or(0, Vec::len))
        .sum();
    let total_messages = topics.iter().map(|t| t.message_count).sum();
    Ok(Partial {
        data: Some(NodeView {
            node: node.into(),
            topics,
            total_messages,
            total_clients,
            peers: stats.peers.unwrap_or_default(),
            replicas: stats.replicas.unwrap_or_default(),
            producer,
        }),
        warnings,
    })
}

/// One channel's message count on one node, for the counter.
#[derive(Debug, Clone, Serialize)]
pub struct Counter {
    pub node: String,
    pub topic_name: String,
    pub channel_name: String,
    pub message_count: u64,
}

/// Messages per channel per node, keyed `topic:channel:node`.
pub async fn counter(cluster: &Cluster) -> ViewResult<BTreeMap<String, Counter>> {
    let (producers, mut warnings) = cluster.producers().await?;
    let (per_node, w) = if producers.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        cluster.node_stats(&producers, None, None, false).await?
    };
    warnings.extend(w);
    let mut data = BTreeMap::new();
    for t in per_node {
        for c in t.channels.into_iter().flatten() {
            let key = format!("{}:{}:{}", t.topic_name, c.channel_name, c.node);
            let entry = data.entry(key).or_insert_with(|| Counter {
                node: c.node.clone(),
                topic_name: t.topic_name.clone(),
                channel_name: c.channel_name.clone(),
                message_count: 0,
            });
            entry.message_count += c.message_count;
        }
    }
    Ok(Partial { data, warnings })
}

/// What lookupd knows: every topic with its channels, and whether any nsqd
/// produces it.
#[derive(Debug, Clone, Default)]
pub struct LookupTopic {
    pub topic: String,
    pub channels: Vec<String>,
    pub producers: usize,
}

pub async fn lookup(cluster: &Cluster) -> ViewResult<Vec<LookupTopic>> {
    let (names, mut warnings) = cluster.topics().await?;
    let (producers, w) = cluster.producers().await.unwrap_or_default();
    warnings.extend(w);
    let mut data = Vec::with_capacity(names.len());
    // A bounded number of `/channels` queries at a time.
    for chunk in names.chunks(32) {
        let answers =
            crate::cluster::join_all(chunk.iter().map(|t| cluster.lookupd_topic_channels(t))).await;
        for (topic, answer) in chunk.iter().zip(answers) {
            let (channels, w) = answer.unwrap_or_else(|e| (Vec::new(), vec![e]));
            warnings.extend(w);
            data.push(LookupTopic {
                topic: topic.clone(),
                channels,
                producers: producers
                    .iter()
                    .filter(|p| p.topics.iter().any(|pt| &pt.topic == topic))
                    .count(),
            });
        }
    }
    warnings.dedup();
    Ok(Partial { data, warnings })
}

/// Topics registered in lookupd that no nsqd produces, with their channels.
pub async fn inactive_topics(cluster: &Cluster) -> ViewResult<BTreeMap<String, Vec<String>>> {
    let Partial { data, warnings } = lookup(cluster).await?;
    let data = data
        .into_iter()
        .filter(|t| t.producers == 0)
        .map(|t| (t.topic, t.channels))
        .collect();
    Ok(Partial { data, warnings })
}

/// Seconds since `ts`, for "connected for" and "last ping" columns.
pub fn age(ts: i64) -> i64 {
    (unix_now() - ts).max(0)
}

/// Seconds → "2h03m", "4m05s", "12s".
pub fn ago(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_as_pages_show_them() {
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(65), "1m05s");
        assert_eq!(ago(7300), "2h01m");
    }
}
