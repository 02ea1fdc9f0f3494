//! Every nsqlookupd setting in one place, with upstream's defaults beside it.

pub use nsq::flags::{hostname, LogLevel};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    pub log_level: LogLevel,
    pub log_prefix: String,
    /// `host:port` of the TCP (protocol V1) listener that nsqds register with.
    pub tcp_address: String,
    /// `host:port` of the HTTP listener that consumers and nsqadmin query.
    pub http_address: String,
    /// Address of this lookupd, told to nsqds in the IDENTIFY answer; they use
    /// it for `/channels` queries. Defaults to the hostname.
    pub broadcast_address: String,
    /// A producer whose last PING (or IDENTIFY) is older than this is left out
    /// of `/lookup` and `/nodes`, though it stays registered.
    pub inactive_producer_timeout: Duration,
    /// How long `/topic/tombstone` hides a producer of a topic from `/lookup`.
    pub tombstone_lifetime: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            log_level: LogLevel::Info,
            log_prefix: "[nsqlookupd] ".into(),
            tcp_address: "0.0.0.0:4160".into(),
            http_address: "0.0.0.0:4161".into(),
            broadcast_address: hostname(),
            inactive_producer_timeout: Duration::from_secs(300),
            tombstone_lifetime: Duration::from_secs(45),
        }
    }
}
