use serde::{Deserialize, Serialize};

/// `GET /info` on nsqd. Durations are nanoseconds, as upstream writes them.
///
/// ```no_run
/// # async fn run() -> Result<(), nsq::Error> {
/// let info: nsq::api::NsqdInfo = nsq::NsqdHttp::new("127.0.0.1:4151").info().await?;
/// println!("nsqd {} on {}:{}", info.version, info.broadcast_address, info.tcp_port);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NsqdInfo {
    pub version: String,
    pub broadcast_address: String,
    pub hostname: String,
    /// -1 when the listener is a unix socket.
    pub http_port: i32,
    pub tcp_port: i32,
    /// Unix seconds.
    pub start_time: i64,
    pub max_heartbeat_interval: i64,
    pub max_output_buffer_size: i64,
    pub max_output_buffer_timeout: i64,
    pub max_deflate_level: i64,
}
