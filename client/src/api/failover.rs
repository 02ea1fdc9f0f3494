//! The answers of the replication failover endpoints (ours): nsqd's
//! `/replica/promote` on a peer and `/replication/retire` on an origin.

use serde::{Deserialize, Serialize};

/// One origin whose replicas `/replica/promote` made the node's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Promoted {
    /// The origin's TCP address, as it last reported it.
    pub origin: String,
    pub origin_id: String,
    pub topics: Vec<String>,
    /// Messages taken over: those some channel had not finished.
    pub messages: u64,
}

/// The answer of `/replica/promote`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromoteAnswer {
    pub promoted: Vec<Promoted>,
}

/// The answer of `/replication/retire`: what this node let go because the
/// peer had promoted its copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Retired {
    pub peer: String,
    /// Unix ms of the peer's promotion.
    pub promoted_at: u64,
    pub topics: Vec<String>,
    /// Seqs passed, over every topic.
    pub messages: u64,
}
