//! Every nsqlookupd setting in one place, with upstream's defaults beside it.

pub use nsq::tls::TlsVersion;
pub use nsq_daemon::flags::hostname;
pub use nsq_daemon::logging::LogLevel;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    pub log_level: LogLevel,
    pub log_prefix: String,
    /// `host:port` of the TCP (protocol V1) listener that nsqds register with.
    pub tcp_address: String,
    /// `host:port` of the HTTP listener that consumers and nsqadmin query.
    pub http_address: String,
    /// Ours (upstream has no TLS): `host:port` of a TCP listener that speaks
    /// protocol V1 inside TLS from the first byte, for nsqd's `--lookupd-tls`;
    /// empty disables it.
    pub tcp_tls_address: String,
    /// Ours: `host:port` of an HTTPS listener with the same API; empty disables it.
    pub https_address: String,
    /// PEM certificate and key of both TLS listeners.
    pub tls_cert: String,
    pub tls_key: String,
    /// `""`, `require` or `require-verify`: whether nsqds must show a certificate.
    pub tls_client_auth_policy: String,
    /// CA certificates that verify client certificates.
    pub tls_root_ca_file: String,
    pub tls_min_version: TlsVersion,
    /// Address of this lookupd, told to nsqds in the IDENTIFY answer; they use
    /// it for `/channels` queries. Defaults to the hostname.
    pub broadcast_address: String,
    /// A producer whose last PING (or IDENTIFY) is older than this is left out
    /// of `/lookup` and `/nodes`, though it stays registered.
    pub inactive_producer_timeout: Duration,
    /// How long `/topic/tombstone` hides a producer of a topic from `/lookup`.
    pub tombstone_lifetime: Duration,
    /// Open TCP connections beyond which new ones are closed at once; 0
    /// means unlimited (as upstream, which has no such limit).
    pub max_tcp_connections: usize,
    /// A TCP peer must send the magic, and each command, within this time
    /// (not a flag: upstream waits forever, and nsqd PINGs every 15 s).
    pub client_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            log_level: LogLevel::Info,
            log_prefix: "[nsqlookupd] ".into(),
            tcp_address: "0.0.0.0:4160".into(),
            http_address: "0.0.0.0:4161".into(),
            tcp_tls_address: String::new(),
            https_address: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_auth_policy: String::new(),
            tls_root_ca_file: String::new(),
            tls_min_version: TlsVersion::Tls12,
            broadcast_address: hostname(),
            inactive_producer_timeout: Duration::from_secs(300),
            tombstone_lifetime: Duration::from_secs(45),
            max_tcp_connections: 0,
            client_timeout: Duration::from_secs(60),
        }
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
            client_auth: nsq_daemon::tls::ClientAuthPolicy::parse(&self.tls_client_auth_policy)
                .map_err(|e| e.to_string())?,
            min_version: self.tls_min_version,
        }))
    }
}
