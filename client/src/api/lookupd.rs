use serde::{Deserialize, Serialize};

/// An nsqd as nsqlookupd reports it among the `producers` of `/lookup`
/// (upstream's `PeerInfo`).
///
/// ```
/// let p: nsq::api::PeerInfo = serde_json::from_str(
///     r#"{"broadcast_address":"nsqd-1","tcp_port":4150,"http_port":4151,"version":"1.3.0"}"#,
/// )?;
/// assert_eq!(p.tcp_address(), "nsqd-1:4150");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerInfo {
    pub remote_address: String,
    pub hostname: String,
    /// Consumers connect to `broadcast_address:tcp_port`.
    pub broadcast_address: String,
    pub tcp_port: u16,
    pub http_port: u16,
    pub version: String,
}

impl PeerInfo {
    /// Where consumers connect: `broadcast_address:tcp_port`.
    pub fn tcp_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.tcp_port)
    }

    /// Where its HTTP API answers: `broadcast_address:http_port`.
    pub fn http_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.http_port)
    }
}

/// `host:port`, with an IPv6 host in brackets, as Go's `net.JoinHostPort`.
///
/// ```
/// assert_eq!(nsq::api::join_host_port("::1", 4150), "[::1]:4150");
/// assert_eq!(nsq::api::join_host_port("nsqd-1", 4150), "nsqd-1:4150");
/// ```
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `GET /lookup?topic=`.
///
/// ```
/// let answer: nsq::api::LookupResponse = serde_json::from_str(
///     r#"{"channels":["archive"],"producers":[{"broadcast_address":"nsqd-1","tcp_port":4150}]}"#,
/// )?;
/// assert_eq!(answer.producers[0].tcp_port, 4150);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LookupResponse {
    pub channels: Vec<String>,
    pub producers: Vec<PeerInfo>,
}

/// `GET /topics`.
///
/// ```
/// let answer: nsq::api::TopicsResponse = serde_json::from_str(r#"{"topics":["events"]}"#)?;
/// assert_eq!(answer.topics, ["events"]);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicsResponse {
    pub topics: Vec<String>,
}

/// `GET /channels?topic=`.
///
/// ```
/// let answer: nsq::api::ChannelsResponse = serde_json::from_str(r#"{"channels":["a","b"]}"#)?;
/// assert_eq!(answer.channels.len(), 2);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelsResponse {
    pub channels: Vec<String>,
}

/// An nsqd in `GET /nodes`: its registrations and, per topic, whether it is tombstoned.
///
/// ```no_run
/// # async fn run(lookupd: nsq::LookupdHttp) -> Result<(), nsq::Error> {
/// for node in lookupd.nodes().await?.producers {
///     let live = node.topics.iter().zip(&node.tombstones).filter(|(_, dead)| !**dead);
///     println!("{}: {:?}", node.hostname, live.map(|(t, _)| t).collect::<Vec<_>>());
/// }
/// # Ok(())
/// # }
/// ```
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
///
/// ```
/// let answer: nsq::api::NodesResponse =
///     serde_json::from_str(r#"{"producers":[{"hostname":"h","topics":["t"],"tombstones":[false]}]}"#)?;
/// assert_eq!(answer.producers[0].topics, ["t"]);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodesResponse {
    pub producers: Vec<Node>,
}

/// `GET /info` on nsqlookupd.
///
/// ```no_run
/// # async fn run() -> Result<(), nsq::Error> {
/// let info: nsq::api::LookupdInfo = nsq::LookupdHttp::new("127.0.0.1:4161").info().await?;
/// println!("nsqlookupd {}", info.version);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LookupdInfo {
    pub version: String,
}

/// One registration of one nsqd in `GET /debug` (timestamps in Unix ns).
///
/// ```no_run
/// # async fn run(lookupd: nsq::LookupdHttp) -> Result<(), nsq::Error> {
/// for (key, peers) in lookupd.debug().await? {
///     for peer in peers.iter().filter(|p| p.tombstoned) {
///         println!("{key}: {} tombstoned", peer.id);
///     }
/// }
/// # Ok(())
/// # }
/// ```
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
