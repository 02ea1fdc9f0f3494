//! JSON documents of nsqd's and nsqlookupd's HTTP APIs, with upstream's field names and order.
//!
//! Every struct deserializes leniently (missing fields take defaults), so the
//! same types read the answers of upstream NSQ and of ours.

mod dead;
mod failover;
mod info;
mod lookupd;
mod stats;

pub use dead::{ChannelSettings, Requeued, ShownMessage, ShownMessages};
pub use failover::{PromoteAnswer, Promoted, Retired};
pub use info::NsqdInfo;
pub use lookupd::{
    join_host_port, ChannelsResponse, DebugPeer, LookupResponse, LookupdInfo, Node, NodesResponse,
    PeerInfo, TopicsResponse,
};
pub use stats::{
    ChannelStats, ClientStats, E2eProcessingLatency, MemStats, PeerStats, PeerTopicStats,
    Percentile, PubCount, ReplicaChannelStats, ReplicaStats, ReplicaTopicStats, Stats, TopicStats,
};

/// The header every V1 response of nsqd and nsqlookupd carries. Clients that do
/// not see it assume the pre-1.0 `{"status_code","data"}` envelope.
pub const CONTENT_TYPE_HEADER: &str = "X-NSQ-Content-Type";
pub const CONTENT_TYPE_VALUE: &str = "nsq; version=1.0";

/// The `Accept` header with which clients ask nsqd and nsqlookupd for V1 answers.
pub const ACCEPT_V1: &str = "application/vnd.nsq; version=1.0";
