//! Every nsqlookupd setting in one place, with upstream's defaults beside it.

use std::time::Duration;

/// Log verbosity, as upstream's `--log-level` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    /// Case-insensitive, nothing else tolerated, as upstream.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            "fatal" => Some(LogLevel::Fatal),
            _ => None,
        }
    }
}

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

/// The OS hostname, as Go's `os.Hostname` reports it on Linux.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
