//! Every nsqd setting in one place: each field is one option, with its help
//! (the doc comment), flag, default and parser (clap), and its name in the
//! config file and `/config` (the field's name, as upstream's `cfg` tag).

pub use nsq::tls::TlsVersion;
pub use nsq_daemon::flags::hostname;
use nsq_daemon::flags::{as_nanos, parse_duration, parse_path};
pub use nsq_daemon::logging::LogLevel;
pub use nsq_daemon::tls::ClientAuthPolicy;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
pub struct Options {
    /// Unique part of message IDs, in [0,1024); by default a hash of the hostname.
    #[arg(long = "node-id", default_value_t = default_node_id())]
    pub id: u16,
    /// Log level: debug, info, warn, error or fatal.
    #[arg(long, default_value = "info")]
    pub log_level: LogLevel,
    /// Prefix of every log line.
    #[arg(long, default_value = "[nsqd] ")]
    pub log_prefix: String,

    /// <addr>:<port> to listen on for TCP clients (protocol V2).
    #[arg(long, default_value = "0.0.0.0:4150")]
    pub tcp_address: String,
    /// <addr>:<port> to listen on for HTTP clients; empty disables HTTP.
    #[arg(long, default_value = "0.0.0.0:4151")]
    pub http_address: String,
    /// Address announced to lookupd and consumers; by default the hostname.
    #[arg(long, default_value_t = hostname())]
    pub broadcast_address: String,
    /// TCP port announced (default: the listener's).
    #[arg(long, default_value_t = 0)]
    pub broadcast_tcp_port: u16,
    /// HTTP port announced (default: the listener's).
    #[arg(long, default_value_t = 0)]
    pub broadcast_http_port: u16,
    /// nsqlookupd TCP address to register with; repeatable.
    #[arg(long = "lookupd-tcp-address")]
    pub nsqlookupd_tcp_addresses: Vec<String>,
    /// <addr>:<port> to listen on for HTTPS clients (only with --tls-cert).
    #[arg(long, default_value = "0.0.0.0:4152")]
    pub https_address: String,

    /// Auth server to ask about AUTH secrets: <addr>:<port> or a full URL; repeatable.
    /// Without one, AUTH is disabled.
    #[arg(long = "auth-http-address")]
    pub auth_http_addresses: Vec<String>,
    /// Timeout for connecting to auth servers and lookupds' HTTP APIs.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub http_client_connect_timeout: Duration,
    /// Timeout for a whole request to auth servers and lookupds' HTTP APIs.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub http_client_request_timeout: Duration,

    /// Path to the PEM certificate of the TLS side of TCP and HTTPS; without
    /// it (and --tls-key), no TLS.
    #[arg(long, default_value = "")]
    pub tls_cert: String,
    /// Path to the PEM private key of --tls-cert.
    #[arg(long, default_value = "")]
    pub tls_key: String,
    /// Client certificate policy: require or require-verify (implies --tls-required).
    #[arg(long, default_value = "")]
    pub tls_client_auth_policy: ClientAuthPolicy,
    /// Path to PEM CA certificates that verify client certificates and auth servers.
    #[arg(long, default_value = "")]
    pub tls_root_ca_file: String,
    /// Require TLS of TCP clients (true), of TCP clients only (tcp-https), or not (false).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub tls_required: TlsRequired,
    /// Lowest TLS version: tls1.0, tls1.1, tls1.2 or tls1.3 (below tls1.2 means tls1.2).
    #[arg(long, default_value = "tls1.0")]
    #[serde(serialize_with = "go_tls_version")]
    pub tls_min_version: TlsVersion,

    /// Connect to every lookupd with TLS (ours, as upstream has no TLS to
    /// lookupd; nsqlookupd's --tcp-tls-address).
    #[arg(long)]
    pub lookupd_tls: bool,
    /// Path to PEM CA certificates that verify lookupds (default: the system's).
    #[arg(long, default_value = "")]
    pub lookupd_tls_root_ca_file: String,
    /// Path to a PEM client certificate shown to lookupds that require one.
    #[arg(long, default_value = "")]
    pub lookupd_tls_cert: String,
    /// Path to the PEM private key of --lookupd-tls-cert.
    #[arg(long, default_value = "")]
    pub lookupd_tls_key: String,

    /// Directory for disk queues and metadata (default: the working directory).
    #[arg(long, default_value = "", value_parser = parse_path)]
    #[serde(serialize_with = "lossy_path")]
    pub data_path: PathBuf,
    /// Messages kept in memory per topic and channel before spilling to disk.
    #[arg(long, default_value_t = 10_000)]
    pub mem_queue_size: i64,
    /// Size at which a disk queue starts a new file.
    #[arg(long, default_value_t = 104_857_600)]
    pub max_bytes_per_file: i64,
    /// Disk-queue operations between fsyncs.
    #[arg(long, default_value_t = 2500)]
    pub sync_every: i64,
    /// Longest time between fsyncs of an active disk queue.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub sync_timeout: Duration,

    /// Default time a message may stay in flight before it is requeued.
    #[arg(long, default_value = "1m0s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub msg_timeout: Duration,
    /// Largest msg_timeout a client may ask for.
    #[arg(long, default_value = "15m0s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub max_msg_timeout: Duration,
    /// Largest message body, in bytes.
    #[arg(long, default_value_t = 1_048_576)]
    pub max_msg_size: i64,
    /// Largest REQ delay and DPUB defer.
    #[arg(long, default_value = "1h0m0s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub max_req_timeout: Duration,
    /// Deliveries after which a message becomes a dead letter instead of
    /// being delivered again (0: no limit); a channel may set its own.
    #[arg(long, default_value_t = 0)]
    pub max_attempts: u16,
    /// Age past which a message is not delivered but becomes a dead letter
    /// (0: none); a channel may set its own.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub msg_ttl: Duration,
    /// Largest command body (MPUB, IDENTIFY), in bytes.
    #[arg(long, default_value_t = 5_242_880)]
    pub max_body_size: i64,
    /// Largest heartbeat interval a client may ask for.
    #[arg(long, default_value = "1m0s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub max_heartbeat_interval: Duration,
    /// Largest RDY count a client may send.
    #[arg(long, default_value_t = 2500)]
    pub max_rdy_count: i64,
    /// Largest output buffer a client may ask for, in bytes.
    #[arg(long, default_value_t = 65_536)]
    pub max_output_buffer_size: i64,
    /// Largest output buffer timeout a client may ask for.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub max_output_buffer_timeout: Duration,
    /// Smallest output buffer timeout a client may ask for.
    #[arg(long, default_value = "25ms", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub min_output_buffer_timeout: Duration,
    /// Default output buffer timeout.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub output_buffer_timeout: Duration,
    /// Most consumers per channel; 0 means no limit.
    #[arg(long, default_value_t = 0)]
    pub max_channel_consumers: i64,
    /// Most open TCP connections; more are closed at once. 0 means no limit
    /// (ours; upstream has no such limit, nor a config name for it).
    #[arg(long, default_value_t = 0)]
    #[serde(skip)]
    pub max_tcp_connections: usize,
    #[command(flatten)]
    #[serde(skip)]
    pub http_timeouts: nsq_daemon::http_server::HttpTimeouts,

    /// Latency quantile to report, in (0,1]; repeatable or comma-separated.
    /// Without one, latency is not measured.
    #[arg(long = "e2e-processing-latency-percentile", value_delimiter = ',')]
    #[serde(serialize_with = "null_if_empty")]
    pub e2e_processing_latency_percentiles: Vec<f64>,
    /// Window over which latency quantiles are computed.
    #[arg(long, default_value = "10m0s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub e2e_processing_latency_window_time: Duration,

    /// UDP <addr>:<port> of a statsd daemon to push stats to; empty disables.
    #[arg(long, default_value = "")]
    pub statsd_address: String,
    /// Prefix of statsd keys; %s becomes the broadcast address and HTTP port
    /// (expanded, with a trailing `.`, when the node starts).
    #[arg(long, default_value = "nsq.%s")]
    pub statsd_prefix: String,
    /// Time between pushes to statsd.
    #[arg(long, default_value = "1m0s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub statsd_interval: Duration,
    /// Push memory statistics (mem.*) to statsd.
    #[arg(long, default_value_t = true)]
    pub statsd_mem_stats: bool,
    /// Size in bytes of statsd UDP packets; lines are never split across two.
    #[arg(long, default_value_t = 508)]
    pub statsd_udp_packet_size: i64,
    /// Leave ephemeral topics and channels out of statsd.
    #[arg(long)]
    pub statsd_exclude_ephemeral: bool,

    /// Allow clients to negotiate deflate compression.
    #[arg(long, default_value_t = true)]
    pub deflate: bool,
    /// Highest deflate level a client may ask for (1-9).
    #[arg(long, default_value_t = 6)]
    pub max_deflate_level: i64,
    /// Allow clients to negotiate snappy compression.
    #[arg(long, default_value_t = true)]
    pub snappy: bool,

    /// TCP address of a peer nsqd that keeps a replica of every log-mode
    /// topic; repeatable (ours). Needs --mem-queue-size=0.
    #[arg(long = "replicate-to")]
    pub replicate_to: Vec<String>,
    /// Refuse publishes (E_PUB_FAILED, HTTP 503) while a peer is not in
    /// sync, instead of going on alone (ours).
    #[arg(long)]
    pub replication_required: bool,
    /// How long a publish waits for a peer, and how long a silent peer is
    /// given, before its link counts as down (ours).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub replication_timeout: Duration,
    /// Longest delay before FINs, requeues and deferrals reach peers (ours).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub replication_max_lag: Duration,
    /// Promote the replicas of an origin by itself once the origin has been
    /// away this long; 0 promotes only on POST /replica/promote (ours).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub replica_promote_after: Duration,
    /// AUTH secret given to peers that have AUTH enabled (ours).
    #[arg(long, default_value = "")]
    #[serde(skip_serializing)]
    pub replicate_auth_secret: String,
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

impl std::str::FromStr for TlsRequired {
    type Err = String;

    /// Upstream's values: a Go boolean or `tcp-https`.
    fn from_str(text: &str) -> Result<TlsRequired, String> {
        if text.eq_ignore_ascii_case("tcp-https") {
            return Ok(TlsRequired::ExceptHttp);
        }
        match nsq_daemon::flags::parse_bool(&text.to_ascii_lowercase())? {
            true => Ok(TlsRequired::Yes),
            false => Ok(TlsRequired::No),
        }
    }
}

/// As upstream's `/config/tls_required` shows it: the number.
impl Serialize for TlsRequired {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(*self as i32)
    }
}

/// `/config/tls_min_version` shows Go's number of the version.
fn go_tls_version<S: serde::Serializer>(v: &TlsVersion, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(v.go_number())
}

fn lossy_path<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// Go marshals an unset list as null.
fn null_if_empty<S: serde::Serializer>(list: &[f64], s: S) -> Result<S::Ok, S::Error> {
    if list.is_empty() {
        s.serialize_none()
    } else {
        s.collect_seq(list)
    }
}

/// Heartbeats default to half of upstream's fixed 60 s client timeout.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// A connection must send the protocol magic within this time.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Output buffer of a client that did not negotiate one.
pub const DEFAULT_OUTPUT_BUFFER_SIZE: i64 = 16 * 1024;

impl Default for Options {
    /// The defaults the flags declare.
    fn default() -> Self {
        nsq_daemon::flags::defaults()
    }
}

impl Options {
    /// Checks what flags alone cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.id >= 1024 {
            return Err(format!("--node-id must be in [0,1024), got {}", self.id));
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
        if !self.replicate_to.is_empty() && self.mem_queue_size != 0 {
            return Err("--replicate-to needs the log (--mem-queue-size=0)".into());
        }
        if self.replication_timeout.is_zero() || self.replication_max_lag.is_zero() {
            return Err("--replication-timeout and --replication-max-lag must be positive".into());
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err("--tls-cert and --tls-key must be given together".into());
        }
        if self.tls_cert.is_empty()
            && (self.tls_required != TlsRequired::No
                || self.tls_client_auth_policy != ClientAuthPolicy::None)
        {
            return Err("cannot require TLS client connections without TLS key and cert".into());
        }
        if self.lookupd_tls_cert.is_empty() != self.lookupd_tls_key.is_empty() {
            return Err("--lookupd-tls-cert and --lookupd-tls-key must be given together".into());
        }
        Ok(())
    }

    /// The options by their config names, as `GET /config/:opt` answers them
    /// (durations in nanoseconds, as Go marshals them).
    pub fn to_cfg_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // Every field serializes (paths lossily), into an object.
            _ => Map::new(),
        }
    }
}

/// Upstream derives the default node ID from the hostname; any stable hash will do.
fn default_node_id() -> u16 {
    let h = hostname().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (h % 1024) as u16
}
