//! Every nsqadmin setting in one place, with upstream's defaults beside it.

pub use nsq_daemon::logging::LogLevel;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    pub log_level: LogLevel,
    pub log_prefix: String,
    /// `host:port` of the web UI and its `/api`.
    pub http_address: String,
    /// URL prefix of every page, asset and API route (`/` = none).
    pub base_path: String,
    /// nsqlookupd HTTP addresses to discover the cluster from (lookupd mode).
    pub lookupd_http_addresses: Vec<String>,
    /// nsqd HTTP addresses to watch directly (nsqd mode).
    pub nsqd_http_addresses: Vec<String>,
    /// Graphite's base URL; empty turns graphite off.
    pub graphite_url: String,
    /// Serve `/render` as a proxy to graphite.
    pub proxy_graphite: bool,
    pub statsd_prefix: String,
    pub statsd_counter_format: String,
    pub statsd_gauge_format: String,
    pub statsd_interval: Duration,
    /// Where each admin action is POSTed as JSON; empty turns it off.
    pub notification_http_endpoint: String,
    pub http_client_connect_timeout: Duration,
    pub http_client_request_timeout: Duration,
    /// Accept any certificate from `https://` nsqd and nsqlookupd.
    pub http_client_tls_insecure_skip_verify: bool,
    /// CA file for `https://` nsqd and nsqlookupd (else the system's roots).
    pub http_client_tls_root_ca_file: Option<std::path::PathBuf>,
    /// Client certificate and key, for servers that require one (both or neither).
    pub http_client_tls_cert: Option<std::path::PathBuf>,
    pub http_client_tls_key: Option<std::path::PathBuf>,
    /// Who may `PUT /config/...`, as an IPv4 or IPv6 CIDR.
    pub allow_config_from_cidr: String,
    /// The request header that names the user (set by an auth proxy).
    pub acl_http_header: String,
    /// Users allowed to act; empty means everyone is.
    pub admin_users: Vec<String>,
    /// How often the stats history is sampled (ours).
    pub history_interval: Duration,
    /// How far back the history reaches (ours).
    pub history_retention: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            log_level: LogLevel::Info,
            log_prefix: "[nsqadmin] ".into(),
            http_address: "0.0.0.0:4171".into(),
            base_path: "/".into(),
            lookupd_http_addresses: Vec::new(),
            nsqd_http_addresses: Vec::new(),
            graphite_url: String::new(),
            proxy_graphite: false,
            statsd_prefix: "nsq.%s".into(),
            statsd_counter_format: "stats.counters.%s.count".into(),
            statsd_gauge_format: "stats.gauges.%s".into(),
            statsd_interval: Duration::from_secs(60),
            notification_http_endpoint: String::new(),
            http_client_connect_timeout: Duration::from_secs(2),
            http_client_request_timeout: Duration::from_secs(5),
            http_client_tls_insecure_skip_verify: false,
            http_client_tls_root_ca_file: None,
            http_client_tls_cert: None,
            http_client_tls_key: None,
            allow_config_from_cidr: "127.0.0.1/8".into(),
            acl_http_header: "X-Forwarded-User".into(),
            admin_users: Vec::new(),
            history_interval: Duration::from_secs(5),
            history_retention: Duration::from_secs(3600),
        }
    }
}

impl Options {
    /// Upstream's start-up checks: exactly one kind of address, a usable base
    /// path, a valid CIDR.
    pub fn validate(&self) -> Result<(), String> {
        match (
            self.lookupd_http_addresses.is_empty(),
            self.nsqd_http_addresses.is_empty(),
        ) {
            (true, true) => {
                return Err("--nsqd-http-address or --lookupd-http-address required".into())
            }
            (false, false) => {
                return Err("use --nsqd-http-address or --lookupd-http-address not both".into())
            }
            _ => {}
        }
        if !self.base_path.starts_with('/') {
            return Err(format!(
                "--base-path {:?} must start with /",
                self.base_path
            ));
        }
        if !self.allow_config_from_cidr.is_empty()
            && crate::cidr::Cidr::parse(&self.allow_config_from_cidr).is_none()
        {
            return Err(format!(
                "--allow-config-from-cidr {:?} is not a CIDR",
                self.allow_config_from_cidr
            ));
        }
        if self.proxy_graphite && self.graphite_url.is_empty() {
            return Err("--proxy-graphite needs --graphite-url".into());
        }
        if self.http_client_tls_cert.is_some() != self.http_client_tls_key.is_some() {
            return Err(
                "--http-client-tls-cert and --http-client-tls-key must be given together".into(),
            );
        }
        if self.history_interval.is_zero() {
            return Err("--history-interval must be positive".into());
        }
        Ok(())
    }

    /// The pool of HTTP connections to the cluster, with TLS settings when any
    /// `--http-client-tls-*` flag is given.
    pub fn http_pool(&self) -> Result<nsq::HttpPool, String> {
        let (connect, request) = (
            self.http_client_connect_timeout,
            self.http_client_request_timeout,
        );
        let tls = nsq::tls::TlsClientOptions {
            root_ca_file: self.http_client_tls_root_ca_file.clone(),
            cert: self.http_client_tls_cert.clone(),
            key: self.http_client_tls_key.clone(),
            insecure_skip_verify: self.http_client_tls_insecure_skip_verify,
            ..nsq::tls::TlsClientOptions::default()
        };
        if tls == nsq::tls::TlsClientOptions::default() {
            return Ok(nsq::HttpPool::new(connect, request));
        }
        nsq::HttpPool::with_tls(connect, request, &tls).map_err(|e| e.0)
    }

    /// The base path without its trailing slash: `""` for `/`.
    pub fn prefix(&self) -> &str {
        self.base_path.trim_end_matches('/')
    }

    /// Whether the request's user (from the ACL header) may act.
    pub fn is_admin(&self, user: Option<&str>) -> bool {
        self.admin_users.is_empty() || user.is_some_and(|u| self.admin_users.iter().any(|a| a == u))
    }
}
