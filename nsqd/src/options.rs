//! Every nsqd setting in one place, with upstream's defaults beside it.

pub use nsq::tls::TlsVersion;
pub use nsq_daemon::flags::hostname;
pub use nsq_daemon::logging::LogLevel;
pub use nsq_daemon::tls::ClientAuthPolicy;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    /// Feeds the message-ID generator; 0..1024.
    pub node_id: u16,
    pub log_level: LogLevel,
    pub log_prefix: String,

    /// `host:port` of the TCP (protocol V2) listener.
    pub tcp_address: String,
    /// `host:port` of the HTTP listener; empty disables HTTP.
    pub http_address: String,
    /// Address announced to lookupd and consumers; defaults to the hostname.
    pub broadcast_address: String,
    /// Port announced for TCP; 0 means the real one.
    pub broadcast_tcp_port: u16,
    pub broadcast_http_port: u16,
    pub lookupd_tcp_addresses: Vec<String>,
    /// `host:port` of the HTTPS listener; it listens only when a certificate is given.
    pub https_address: String,

    /// Auth servers (`host:port`, or a URL) asked about every AUTH; empty disables auth.
    pub auth_http_addresses: Vec<String>,
    /// Time allowed to connect to an auth server (and a lookupd's HTTP API).
    pub http_client_connect_timeout: Duration,
    /// Time allowed for a whole request to an auth server (and a lookupd's HTTP API).
    pub http_client_request_timeout: Duration,

    /// PEM certificate and key of the TLS side of the TCP and HTTPS listeners;
    /// empty (both) disables TLS.
    pub tls_cert: String,
    pub tls_key: String,
    /// `""`, `require` or `require-verify`: whether clients must present a certificate.
    pub tls_client_auth_policy: String,
    /// CA certificates that verify client certificates and the auth servers' ones.
    pub tls_root_ca_file: String,
    pub tls_required: TlsRequired,
    pub tls_min_version: TlsVersion,

    /// Ours (upstream has no TLS to lookupd): connect to every lookupd with TLS,
    /// to the `--tcp-tls-address` of an nsqlookupd of ours.
    pub lookupd_tls: bool,
    /// CA certificates that verify the lookupds' certificates; empty trusts the system's.
    pub lookupd_tls_root_ca_file: String,
    /// Client certificate and key shown to lookupds that ask for one.
    pub lookupd_tls_cert: String,
    pub lookupd_tls_key: String,

    /// Where disk queues and `nsqd.dat` live.
    pub data_path: PathBuf,
    /// Messages kept in memory per topic and per channel before spilling to disk.
    pub mem_queue_size: i64,
    pub max_bytes_per_file: i64,
    pub sync_every: i64,
    pub sync_timeout: Duration,

    pub msg_timeout: Duration,
    pub max_msg_timeout: Duration,
    pub max_msg_size: i64,
    pub max_req_timeout: Duration,
    pub max_body_size: i64,
    pub max_heartbeat_interval: Duration,
    pub max_rdy_count: i64,
    pub max_output_buffer_size: i64,
    pub max_output_buffer_timeout: Duration,
    pub min_output_buffer_timeout: Duration,
    pub output_buffer_timeout: Duration,
    /// 0 means unlimited.
    pub max_channel_consumers: i64,
    /// Open TCP connections beyond which new ones are closed at once; 0
    /// means unlimited (as upstream, which has no such limit).
    pub max_tcp_connections: usize,

    /// Quantiles in (0, 1] to report; empty disables the measurement.
    pub e2e_processing_latency_percentiles: Vec<f64>,
    pub e2e_processing_latency_window_time: Duration,

    /// UDP `host:port` of a statsd daemon; empty disables the push.
    pub statsd_address: String,
    /// Prefix of every statsd key; `%s` becomes the broadcast address and
    /// HTTP port. Expanded (with a trailing `.`) when the node starts.
    pub statsd_prefix: String,
    pub statsd_interval: Duration,
    /// Also push memory figures (`mem.*`).
    pub statsd_mem_stats: bool,
    /// Largest UDP datagram; lines are never split across two.
    pub statsd_udp_packet_size: i64,
    /// Leave `#ephemeral` topics and channels out of the push.
    pub statsd_exclude_ephemeral: bool,

    pub deflate: bool,
    pub max_deflate_level: i64,
    pub snappy: bool,
}

/// `--tls-required`: whether clients must upgrade to TLS before anything but IDENTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsRequired {
    #[default]
    No = 0,
    /// `tcp-https`: TCP clients must upgrade; plain HTTP stays open.
    ExceptHttp = 1,
    /// `true`: TCP clients must upgrade and plain HTTP answers 403.
    Yes = 2,
}

impl TlsRequired {
    /// Upstream's values: a Go boolean or `tcp-https`.
    pub fn parse(text: &str) -> Result<TlsRequired, String> {
        if text.eq_ignore_ascii_case("tcp-https") {
            return Ok(TlsRequired::ExceptHttp);
        }
        match nsq_daemon::flags::parse_bool(&text.to_ascii_lowercase())? {
            true => Ok(TlsRequired::Yes),
            false => Ok(TlsRequired::No),
        }
    }
}

/// Heartbeats default to half of upstream's fixed 60 s client timeout.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// A connection must send the protocol magic within this time.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Output buffer of a client that did not negotiate one.
pub const DEFAULT_OUTPUT_BUFFER_SIZE: i64 = 16 * 1024;

impl Default for Options {
    fn default() -> Self {
        Options {
            node_id: default_node_id(),
            log_level: LogLevel::Info,
            log_prefix: "[nsqd] ".into(),
            tcp_address: "0.0.0.0:4150".into(),
            http_address: "0.0.0.0:4151".into(),
            broadcast_address: hostname(),
            broadcast_tcp_port: 0,
            broadcast_http_port: 0,
            lookupd_tcp_addresses: Vec::new(),
            https_address: "0.0.0.0:4152".into(),
            auth_http_addresses: Vec::new(),
            http_client_connect_timeout: Duration::from_secs(2),
            http_client_request_timeout: Duration::from_secs(5),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_auth_policy: String::new(),
            tls_root_ca_file: String::new(),
            tls_required: TlsRequired::No,
            tls_min_version: TlsVersion::Tls10,
            lookupd_tls: false,
            lookupd_tls_root_ca_file: String::new(),
            lookupd_tls_cert: String::new(),
            lookupd_tls_key: String::new(),
            data_path: PathBuf::new(),
            mem_queue_size: 10_000,
            max_bytes_per_file: 100 * 1024 * 1024,
            sync_every: 2500,
            sync_timeout: Duration::from_secs(2),
            msg_timeout: Duration::from_secs(60),
            max_msg_timeout: Duration::from_secs(15 * 60),
            max_msg_size: 1024 * 1024,
            max_req_timeout: Duration::from_secs(3600),
            max_body_size: 5 * 1024 * 1024,
            max_heartbeat_interval: Duration::from_secs(60),
            max_rdy_count: 2500,
            max_output_buffer_size: 64 * 1024,
            max_output_buffer_timeout: Duration::from_secs(30),
            min_output_buffer_timeout: Duration::from_millis(25),
            output_buffer_timeout: Duration::from_millis(250),
            max_channel_consumers: 0,
            max_tcp_connections: 0,
            e2e_processing_latency_percentiles: Vec::new(),
            e2e_processing_latency_window_time: Duration::from_secs(600),
            statsd_address: String::new(),
            statsd_prefix: "nsq.%s".into(),
            statsd_interval: Duration::from_secs(60),
            statsd_mem_stats: true,
            statsd_udp_packet_size: 508,
            statsd_exclude_ephemeral: false,
            deflate: true,
            max_deflate_level: 6,
            snappy: true,
        }
    }
}

impl Options {
    /// Checks what flags alone cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id >= 1024 {
            return Err(format!(
                "--node-id must be in [0,1024), got {}",
                self.node_id
            ));
        }
        if !(1..=9).contains(&self.max_deflate_level) {
            return Err(format!(
                "--max-deflate-level must be in [1,9], got {}",
                self.max_deflate_level
            ));
        }
        if let Some(p) = self
            .e2e_processing_latency_percentiles
            .iter()
            .find(|p| !(**p > 0.0 && **p <= 1.0))
        {
            return Err(format!(
                "--e2e-processing-latency-percentile {p} must be in (0,1]"
            ));
        }
        if self.mem_queue_size < 0
            || self.max_msg_size <= 0
            || self.max_body_size <= 0
            || self.max_rdy_count < 0
        {
            return Err("sizes and counts must not be negative".into());
        }
        if self.statsd_interval.is_zero() || self.statsd_udp_packet_size <= 0 {
            return Err("--statsd-interval and --statsd-udp-packet-size must be positive".into());
        }
        ClientAuthPolicy::parse(&self.tls_client_auth_policy).map_err(|e| e.to_string())?;
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err("--tls-cert and --tls-key must be given together".into());
        }
        if self.tls_cert.is_empty()
            && (self.tls_required != TlsRequired::No || !self.tls_client_auth_policy.is_empty())
        {
            return Err("cannot require TLS client connections without TLS key and cert".into());
        }
        if self.lookupd_tls_cert.is_empty() != self.lookupd_tls_key.is_empty() {
            return Err("--lookupd-tls-cert and --lookupd-tls-key must be given together".into());
        }
        Ok(())
    }

    /// The options by upstream's config names, with durations in nanoseconds,
    /// as `GET /config/:opt` answers them.
    pub fn to_cfg_map(&self) -> Map<String, Value> {
        let ns = |d: Duration| json!(d.as_nanos() as u64);
        let pairs = [
            ("id", json!(self.node_id)),
            ("log_level", json!(self.log_level as i32)),
            ("log_prefix", json!(self.log_prefix)),
            ("tcp_address", json!(self.tcp_address)),
            ("http_address", json!(self.http_address)),
            ("broadcast_address", json!(self.broadcast_address)),
            ("broadcast_tcp_port", json!(self.broadcast_tcp_port)),
            ("broadcast_http_port", json!(self.broadcast_http_port)),
            (
                "nsqlookupd_tcp_addresses",
                json!(self.lookupd_tcp_addresses),
            ),
            ("data_path", json!(self.data_path.to_string_lossy())),
            ("mem_queue_size", json!(self.mem_queue_size)),
            ("max_bytes_per_file", json!(self.max_bytes_per_file)),
            ("sync_every", json!(self.sync_every)),
            ("sync_timeout", ns(self.sync_timeout)),
            ("msg_timeout", ns(self.msg_timeout)),
            ("max_msg_timeout", ns(self.max_msg_timeout)),
            ("max_msg_size", json!(self.max_msg_size)),
            ("max_req_timeout", ns(self.max_req_timeout)),
            ("max_body_size", json!(self.max_body_size)),
            ("max_heartbeat_interval", ns(self.max_heartbeat_interval)),
            ("max_rdy_count", json!(self.max_rdy_count)),
            ("max_output_buffer_size", json!(self.max_output_buffer_size)),
            (
                "max_output_buffer_timeout",
                ns(self.max_output_buffer_timeout),
            ),
            (
                "min_output_buffer_timeout",
                ns(self.min_output_buffer_timeout),
            ),
            ("output_buffer_timeout", ns(self.output_buffer_timeout)),
            ("max_channel_consumers", json!(self.max_channel_consumers)),
            (
                "e2e_processing_latency_percentiles",
                // Go marshals an unset list as null.
                match self.e2e_processing_latency_percentiles.as_slice() {
                    [] => Value::Null,
                    list => json!(list),
                },
            ),
            (
                "e2e_processing_latency_window_time",
                ns(self.e2e_processing_latency_window_time),
            ),
            ("statsd_address", json!(self.statsd_address)),
            ("statsd_prefix", json!(self.statsd_prefix)),
            ("statsd_interval", ns(self.statsd_interval)),
            ("statsd_mem_stats", json!(self.statsd_mem_stats)),
            ("statsd_udp_packet_size", json!(self.statsd_udp_packet_size)),
            (
                "statsd_exclude_ephemeral",
                json!(self.statsd_exclude_ephemeral),
            ),
            ("https_address", json!(self.https_address)),
            ("auth_http_addresses", json!(self.auth_http_addresses)),
            (
                "http_client_connect_timeout",
                ns(self.http_client_connect_timeout),
            ),
            (
                "http_client_request_timeout",
                ns(self.http_client_request_timeout),
            ),
            ("tls_cert", json!(self.tls_cert)),
            ("tls_key", json!(self.tls_key)),
            ("tls_client_auth_policy", json!(self.tls_client_auth_policy)),
            ("tls_root_ca_file", json!(self.tls_root_ca_file)),
            ("tls_required", json!(self.tls_required as i32)),
            ("tls_min_version", json!(self.tls_min_version.go_number())),
            ("lookupd_tls", json!(self.lookupd_tls)),
            (
                "lookupd_tls_root_ca_file",
                json!(self.lookupd_tls_root_ca_file),
            ),
            ("lookupd_tls_cert", json!(self.lookupd_tls_cert)),
            ("lookupd_tls_key", json!(self.lookupd_tls_key)),
            ("deflate", json!(self.deflate)),
            ("max_deflate_level", json!(self.max_deflate_level)),
            ("snappy", json!(self.snappy)),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// Upstream derives the default node ID from the hostname; any stable hash will do.
fn default_node_id() -> u16 {
    let h = hostname().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (h % 1024) as u16
}
