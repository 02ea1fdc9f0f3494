//! Every nsqlookupd setting in one place: each field is one option, with its
//! help (the doc comment), flag, default and parser (clap), and its name in
//! the config file (the field's name).

pub use nsq::tls::TlsVersion;
pub use nsq_daemon::flags::hostname;
use nsq_daemon::flags::parse_duration;
pub use nsq_daemon::logging::LogLevel;
pub use nsq_daemon::tls::ClientAuthPolicy;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Options {
    /// Log level: debug, info, warn, error or fatal.
    #[arg(long, default_value = "info")]
    pub log_level: LogLevel,
    /// Prefix of every log line.
    #[arg(long, default_value = "[nsqlookupd] ")]
    pub log_prefix: String,
    /// <addr>:<port> to listen on for TCP clients: the nsqds that register (protocol V1).
    #[arg(long, default_value = "0.0.0.0:4160")]
    pub tcp_address: String,
    /// <addr>:<port> to listen on for HTTP clients: consumers and nsqadmin.
    #[arg(long, default_value = "0.0.0.0:4161")]
    pub http_address: String,
    /// <addr>:<port> to listen on for nsqd over TLS from the first byte (ours,
    /// as upstream has no TLS; nsqd's --lookupd-tls); empty disables it.
    #[arg(long, default_value = "")]
    pub tcp_tls_address: String,
    /// <addr>:<port> to listen on for HTTPS clients, with the same API (ours);
    /// empty disables it.
    #[arg(long, default_value = "")]
    pub https_address: String,
    /// Path to the PEM certificate of --tcp-tls-address and --https-address.
    #[arg(long, default_value = "")]
    pub tls_cert: String,
    /// Path to the PEM private key of --tls-cert.
    #[arg(long, default_value = "")]
    pub tls_key: String,
    /// Client certificate policy (whether nsqds must show one): require or require-verify.
    #[arg(long, default_value = "")]
    pub tls_client_auth_policy: ClientAuthPolicy,
    /// Path to PEM CA certificates that verify client certificates.
    #[arg(long, default_value = "")]
    pub tls_root_ca_file: String,
    /// Lowest TLS version: tls1.2 or tls1.3 (lower values mean tls1.2).
    #[arg(long, default_value = "tls1.2")]
    pub tls_min_version: TlsVersion,
    /// Address of this lookupd, told to nsqds in the IDENTIFY answer for their
    /// /channels queries; by default the hostname.
    #[arg(long, default_value_t = hostname())]
    pub broadcast_address: String,
    /// How long a producer stays in /lookup and /nodes after its last ping
    /// (or IDENTIFY); it stays registered.
    #[arg(long, default_value = "5m0s", value_parser = parse_duration)]
    pub inactive_producer_timeout: Duration,
    /// How long /topic/tombstone hides a producer of a topic from /lookup.
    #[arg(long, default_value = "45s", value_parser = parse_duration)]
    pub tombstone_lifetime: Duration,
    /// Most open TCP connections; more are closed at once. 0 means no limit
    /// (ours; upstream has no such limit).
    #[arg(long, default_value_t = 0)]
    pub max_tcp_connections: usize,
    #[command(flatten)]
    pub http_timeouts: nsq_daemon::http_server::HttpTimeouts,
    /// A TCP peer must send the magic, and each command, within this time
    /// (not a flag: upstream waits forever, and nsqd PINGs every 15 s).
    #[arg(skip = Duration::from_secs(60))]
    pub client_timeout: Duration,
}

impl Default for Options {
    /// The defaults the flags declare.
    fn default() -> Self {
        nsq_daemon::flags::defaults()
    }
}

impl Options {
    /// The TLS side of both listeners; `None` when neither is asked for.
    pub fn server_tls(&self) -> Result<Option<nsq_daemon::tls::ServerTlsOptions>, String> {
        if self.tcp_tls_address.is_empty() && self.https_address.is_empty() {
            return Ok(None);
        }
        if self.tls_cert.is_empty() || self.tls_key.is_empty() {
            return Err(
                "--tcp-tls-address and --https-address need --tls-cert and --tls-key".into(),
            );
        }
        let path = |p: &str| (!p.is_empty()).then(|| std::path::PathBuf::from(p));
        Ok(Some(nsq_daemon::tls::ServerTlsOptions {
            cert: self.tls_cert.clone().into(),
            key: self.tls_key.clone().into(),
            root_ca_file: path(&self.tls_root_ca_file),
            client_auth: self.tls_client_auth_policy,
            min_version: self.tls_min_version,
        }))
    }
}
