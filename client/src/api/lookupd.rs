use serde::{Deserialize, Serialize};

/// An nsqd as nsqlookupd reports it in `/lookup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Producer {
    pub remote_address: String,
    pub hostname: String,
    /// Consumers connect to `broadcast_address:tcp_port`.
    pub broadcast_address: String,
    pub tcp_port: u16,
    pub http_port: u16,
    pub version: String,
}

/// `GET /lookup?topic=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LookupResponse {
    pub channels: Vec<String>,
    pub producers: Vec<Producer>,
}

/// `GET /topics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicsResponse {
    pub topics: Vec<String>,
}

/// `GET /channels?topic=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelsResponse {
    pub channels: Vec<String>,
}

/// An nsqd in `GET /nodes`: its registrations and, per topic, whether it is tombstoned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    pub remote_address: String,
    pub hostname: String,
    pub broadcast_address: String,
    pub tcp_port: u16,
    pub http_port: u16,
    pub version: String,
    /// Parallel to `topics`.
    pub tombstones: Vec<bool>,
    pub topics: Vec<String>,
}

/// `GET /nodes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodesResponse {
    pub producers: Vec<Node>,
}

/// `GET /info` on nsqlookupd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LookupdInfo {
    pub version: String,
}

/// One registration of one nsqd in `GET /debug` (timestamps in Unix ns).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DebugPeer {
    pub broadcast_address: String,
    pub hostname: String,
    pub http_port: u16,
    pub id: String,
    pub last_update: i64,
    pub tcp_port: u16,
    pub tombstoned: bool,
    pub tombstoned_at: i64,
    pub version: String,
}
