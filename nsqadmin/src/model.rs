//! The cluster-wide view nsqadmin serves, in the JSON shapes of upstream's
//! `/api` (field for field, in the same order): per-node stats read from each
//! nsqd's `/stats`, and their totals across nodes.

use crate::replication::Unsynced;
use nsq::api;
use nsq::api::join_host_port;
use serde::Serialize;
use std::collections::BTreeMap;

/// End-to-end latency, per node or merged across nodes. Each percentile is
/// a map with `quantile`, `value`, `min`, `max`, `average` and `count`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct E2eLatency {
    pub count: u64,
    pub percentiles: Option<Vec<BTreeMap<&'static str, f64>>>,
    pub topic: String,
    pub channel: String,
    pub host: String,
}

impl E2eLatency {
    /// One node's figures as nsqd reports them.
    fn from_node(e2e: &api::E2eProcessingLatency) -> E2eLatency {
        let percentiles = e2e.percentiles.as_ref().map(|list| {
            list.iter()
                .map(|p| {
                    BTreeMap::from([
                        ("quantile", p.quantile),
                        ("value", p.value),
                        ("min", p.value),
                        ("max", p.value),
                        ("average", p.value),
                        ("count", e2e.count as f64),
                    ])
                })
                .collect()
        });
        E2eLatency {
            count: e2e.count,
            percentiles,
            ..E2eLatency::default()
        }
    }

    fn total(topic: &str, channel: &str) -> E2eLatency {
        E2eLatency {
            topic: topic.into(),
            channel: channel.into(),
            host: "*".into(),
            ..E2eLatency::default()
        }
    }

    /// Merges a node's figures: extremes kept, averages weighted by count.
    fn add(&mut self, node: &E2eLatency) {
        self.count += node.count;
        let Some(theirs) = &node.percentiles else {
            return;
        };
        let ours = self.percentiles.get_or_insert_with(Vec::new);
        for p in theirs {
            match ours.iter_mut().find(|o| o["quantile"] == p["quantile"]) {
                None => ours.push(p.clone()),
                Some(o) => {
                    let count = o["count"] + p["count"];
                    let average = if count > 0.0 {
                        (o["average"] * o["count"] + p["average"] * p["count"]) / count
                    } else {
                        o["average"]
                    };
                    o.insert("max", o["max"].max(p["max"]));
                    o.insert("min", o["min"].min(p["min"]));
                    o.insert("count", count);
                    o.insert("average", average);
                    o.insert("value", average);
                }
            }
        }
    }
}

/// A client of a channel, as nsqadmin shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientStats {
    pub node: String,
    pub remote_address: String,
    pub version: String,
    pub client_id: String,
    pub hostname: String,
    pub user_agent: String,
    pub connect_ts: i64,
    /// Nanoseconds since `connect_ts` (whole seconds).
    pub connected: i64,
    pub in_flight_count: i64,
    pub ready_count: i64,
    pub finish_count: u64,
    pub requeue_count: u64,
    pub message_count: u64,
    pub sample_rate: i32,
    pub deflate: bool,
    pub snappy: bool,
    pub authed: bool,
    pub auth_identity: String,
    pub auth_identity_url: String,
    pub tls: bool,
    pub tls_cipher_suite: String,
    pub tls_version: String,
    pub tls_negotiated_protocol: String,
    pub tls_negotiated_protocol_is_mutual: bool,
}

impl ClientStats {
    fn from_node(node: &str, c: &api::ClientStats, now: i64) -> ClientStats {
        ClientStats {
            node: node.into(),
            remote_address: c.remote_address.clone(),
            version: c.version.clone(),
            client_id: c.client_id.clone(),
            hostname: c.hostname.clone(),
            user_agent: c.user_agent.clone(),
            connect_ts: c.connect_ts,
            connected: (now - c.connect_ts).max(0) * 1_000_000_000,
            in_flight_count: c.in_flight_count,
            ready_count: c.ready_count,
            finish_count: c.finish_count,
            requeue_count: c.requeue_count,
            message_count: c.message_count,
            sample_rate: c.sample_rate,
            deflate: c.deflate,
            snappy: c.snappy,
            authed: c.authed,
            auth_identity: c.auth_identity.clone(),
            auth_identity_url: c.auth_identity_url.clone(),
            tls: c.tls,
            tls_cipher_suite: c.tls_cipher_suite.clone(),
            tls_version: c.tls_version.clone(),
            tls_negotiated_protocol: c.tls_negotiated_protocol.clone(),
            tls_negotiated_protocol_is_mutual: c.tls_negotiated_protocol_is_mutual,
        }
    }
}

/// A channel on one node (`nodes` is `null`), or its total over nodes
/// (`node` is `"*"`, `nodes` lists each node's figures).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelStats {
    pub node: String,
    pub hostname: String,
    pub topic_name: String,
    pub channel_name: String,
    pub depth: i64,
    pub memory_depth: i64,
    pub backend_depth: i64,
    pub in_flight_count: i64,
    pub deferred_count: i64,
    pub requeue_count: u64,
    pub timeout_count: u64,
    pub message_count: u64,
    pub client_count: i64,
    pub nodes: Option<Vec<ChannelStats>>,
    pub clients: Option<Vec<ClientStats>>,
    pub paused: bool,
    pub e2e_processing_latency: Option<E2eLatency>,
    /// Dead letters held (ours, absent when 0 so that upstream's shape holds).
    #[serde(skip_serializing_if = "is_zero")]
    pub dead_count: u64,
    /// Messages dead-lettered past their TTL since nsqd started (ours).
    #[serde(skip_serializing_if = "is_zero")]
    pub expired_count: u64,
    /// Deliveries before a message becomes a dead letter; 0: no limit (ours).
    /// In a total: the largest of the nodes'.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_attempts: u16,
    /// Age past which a message is not delivered, ms; 0: none (ours). In a
    /// total: the largest of the nodes'.
    #[serde(skip_serializing_if = "is_zero")]
    pub msg_ttl_ms: u64,
}

fn is_zero<N: Default + PartialEq>(n: &N) -> bool {
    *n == N::default()
}

impl ChannelStats {
    fn from_node(node: &Node, topic: &str, c: &api::ChannelStats, now: i64) -> ChannelStats {
        ChannelStats {
            node: node.address.clone(),
            hostname: node.hostname.clone(),
            topic_name: topic.into(),
            channel_name: c.channel_name.clone(),
            depth: c.depth,
            memory_depth: c.depth - c.backend_depth,
            backend_depth: c.backend_depth,
            in_flight_count: c.in_flight_count,
            deferred_count: c.deferred_count,
            requeue_count: c.requeue_count,
            timeout_count: c.timeout_count,
            message_count: c.message_count,
            client_count: c.client_count,
            nodes: None,
            clients: c.clients.as_ref().map(|clients| {
                clients
                    .iter()
                    .map(|client| ClientStats::from_node(&node.address, client, now))
                    .collect()
            }),
            paused: c.paused,
            e2e_processing_latency: Some(E2eLatency::from_node(&c.e2e_processing_latency)),
            dead_count: c.dead_count,
            expired_count: c.expired_count,
            max_attempts: c.max_attempts,
            msg_ttl_ms: c.msg_ttl_ms,
        }
    }

    /// The total of a channel over the nodes that have it.
    pub fn total(topic: &str, channel: &str, per_node: Vec<ChannelStats>) -> ChannelStats {
        let mut total = ChannelStats {
            node: "*".into(),
            topic_name: topic.into(),
            channel_name: channel.into(),
            e2e_processing_latency: Some(E2eLatency::total(topic, channel)),
            ..ChannelStats::default()
        };
        let mut clients = Vec::new();
        for n in &per_node {
            total.depth += n.depth;
            total.memory_depth += n.memory_depth;
            total.backend_depth += n.backend_depth;
            total.in_flight_count += n.in_flight_count;
            total.deferred_count += n.deferred_count;
            total.requeue_count += n.requeue_count;
            total.timeout_count += n.timeout_count;
            total.message_count += n.message_count;
            total.client_count += n.client_count;
            total.paused |= n.paused;
            total.dead_count += n.dead_count;
            total.expired_count += n.expired_count;
            total.max_attempts = total.max_attempts.max(n.max_attempts);
            total.msg_ttl_ms = total.msg_ttl_ms.max(n.msg_ttl_ms);
            if let (Some(t), Some(e)) =
                (&mut total.e2e_processing_latency, &n.e2e_processing_latency)
            {
                t.add(e);
            }
            if let Some(c) = &n.clients {
                clients.extend(c.iter().cloned());
            }
        }
        let any_clients = per_node.iter().any(|n| n.clients.is_some());
        clients.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        total.clients = any_clients.then_some(clients);
        total.nodes = Some(per_node);
        total
    }
}

/// A topic on one node (with its channels there), or its total over nodes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TopicStats {
    pub node: String,
    pub hostname: String,
    pub topic_name: String,
    pub depth: i64,
    pub memory_depth: i64,
    pub backend_depth: i64,
    pub message_count: u64,
    pub nodes: Option<Vec<TopicStats>>,
    pub channels: Option<Vec<ChannelStats>>,
    pub paused: bool,
    pub e2e_processing_latency: Option<E2eLatency>,
}

impl TopicStats {
    /// The total of a topic over nodes; each channel becomes its total over
    /// the nodes that have it, except that a channel on one node only is that
    /// node's figures, as upstream shows it.
    pub fn total(topic: &str, per_node: Vec<TopicStats>) -> TopicStats {
        let mut total = TopicStats {
            topic_name: topic.into(),
            ..TopicStats::default()
        };
        if per_node.is_empty() {
            return total;
        }
        total.node = "*".into();
        let mut e2e = E2eLatency::total(topic, "");
        let mut channels: BTreeMap<String, Vec<ChannelStats>> = BTreeMap::new();
        for n in &per_node {
            total.depth += n.depth;
            total.memory_depth += n.memory_depth;
            total.backend_depth += n.backend_depth;
            total.message_count += n.message_count;
            total.paused |= n.paused;
            if let Some(e) = &n.e2e_processing_latency {
                e2e.add(e);
            }
            for c in n.channels.iter().flatten() {
                channels
                    .entry(c.channel_name.clone())
                    .or_default()
                    .push(c.clone());
            }
        }
        total.e2e_processing_latency = Some(e2e);
        total.channels = Some(
            channels
                .into_iter()
                .map(|(name, mut nodes)| {
                    if nodes.len() == 1 {
                        nodes.pop().expect("one")
                    } else {
                        ChannelStats::total(topic, &name, nodes)
                    }
                })
                .collect(),
        );
        total.nodes = Some(per_node);
        total
    }

    /// Depth of the topic plus every channel: what is waiting anywhere.
    pub fn in_flight(&self) -> i64 {
        self.channels
            .iter()
            .flatten()
            .map(|c| c.in_flight_count)
            .sum()
    }
}

/// An nsqd as nsqadmin knows it: from lookupd's `/nodes` or nsqd's `/info`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Producer {
    /// `<lookupd>/<remote address>` for each lookupd that has it.
    pub remote_addresses: Option<Vec<String>>,
    pub remote_address: String,
    pub hostname: String,
    pub broadcast_address: String,
    pub tcp_port: u16,
    pub http_port: u16,
    pub version: String,
    pub topics: Vec<ProducerTopic>,
    pub out_of_date: bool,
    /// Ours: the node's replication links that are not in sync (the nodes
    /// list marks it degraded). Absent when there are none, so that
    /// upstream's shape holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsynced_peers: Vec<Unsynced>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProducerTopic {
    pub topic: String,
    pub tombstoned: bool,
}

impl Producer {
    /// `broadcast_address:http_port`: how nsqadmin names and reaches a node.
    pub fn http_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.http_port)
    }

    pub fn node(&self) -> Node {
        Node {
            address: self.http_address(),
            hostname: self.hostname.clone(),
        }
    }
}

/// Which node figures came from.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// `broadcast_address:http_port`.
    pub address: String,
    pub hostname: String,
}

/// One node's `/stats` turned into per-node topic stats (`topic` filters).
pub fn node_topics(
    node: &Node,
    stats: &api::Stats,
    topic: Option<&str>,
    now: i64,
) -> Vec<TopicStats> {
    stats
        .topics
        .iter()
        .flatten()
        .filter(|t| topic.is_none_or(|name| t.topic_name == name))
        .map(|t| TopicStats {
            node: node.address.clone(),
            hostname: node.hostname.clone(),
            topic_name: t.topic_name.clone(),
            depth: t.depth,
            memory_depth: t.depth - t.backend_depth,
            backend_depth: t.backend_depth,
            message_count: t.message_count,
            nodes: None,
            channels: Some(
                t.channels
                    .iter()
                    .map(|c| ChannelStats::from_node(node, &t.topic_name, c, now))
                    .collect(),
            ),
            paused: t.paused,
            e2e_processing_latency: Some(E2eLatency::from_node(&t.e2e_processing_latency)),
        })
        .collect()
}

/// Whether version `a` is older than `b` (dotted numbers, pre-release ignored).
pub fn older_version(a: &str, b: &str) -> bool {
    fn parts(v: &str) -> Vec<u64> {
        v.split(['-', '+'])
            .next()
            .unwrap_or("")
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    }
    parts(a) < parts(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(older_version("1.2.1", "1.3.0"));
        assert!(older_version("0.3.8", "0.10.0"));
        assert!(!older_version("1.3.0", "1.3.0"));
        assert!(!older_version("1.3.0-alpha", "1.3.0"));
        assert!(older_version("", "1.0.0"));
    }

    #[test]
    fn e2e_merge_weights_averages() {
        let node = |count: u64, value: f64| {
            E2eLatency::from_node(&api::E2eProcessingLatency {
                count,
                percentiles: Some(vec![api::Percentile {
                    quantile: 0.99,
                    value,
                }]),
            })
        };
        let mut total = E2eLatency::total("t", "");
        total.add(&node(1, 100.0));
        total.add(&node(3, 200.0));
        let p = &total.percentiles.as_ref().unwrap()[0];
        assert_eq!(total.count, 4);
        assert_eq!(p["max"], 200.0);
        assert_eq!(p["min"], 100.0);
        assert_eq!(p["average"], 175.0);
        assert_eq!(total.host, "*");
    }
}
