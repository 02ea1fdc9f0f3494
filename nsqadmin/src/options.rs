//! Every nsqadmin setting in one place: each field is one option, with its
//! help (the doc comment), flag, default and parser (clap), and its name in
//! the config file and `/config` (the field's name, as upstream's `cfg` tag).

use nsq_daemon::flags::{as_nanos, parse_duration};
pub use nsq_daemon::logging::LogLevel;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
pub struct Options {
    /// Log level: debug, info, warn, error or fatal.
    #[arg(long, default_value = "info")]
    pub log_level: LogLevel,
    /// Prefix of every log line.
    #[arg(long, default_value = "[nsqadmin] ")]
    pub log_prefix: String,

    /// <addr>:<port> to listen on for HTTP clients: the web UI and its /api.
    #[arg(long, default_value = "0.0.0.0:4171")]
    pub http_address: String,
    /// URL prefix of every page, asset and API route, behind a reverse proxy (/ = none).
    #[arg(long, default_value = "/")]
    pub base_path: String,
    /// nsqlookupd HTTP address to discover the cluster from; repeatable.
    #[arg(long = "lookupd-http-address")]
    pub nsqlookupd_http_addresses: Vec<String>,
    /// nsqd HTTP address to watch directly; repeatable (instead of --lookupd-http-address).
    #[arg(long = "nsqd-http-address")]
    pub nsqd_http_addresses: Vec<String>,

    /// Graphite HTTP address, for the /api/graphite rates; empty turns graphite off.
    #[arg(long, default_value = "")]
    pub graphite_url: String,
    /// Proxy HTTP requests to graphite as /render.
    #[arg(long)]
    pub proxy_graphite: bool,
    /// Prefix used for keys sent to statsd (%s for host replacement; must match nsqd).
    #[arg(long, default_value = "nsq.%s")]
    pub statsd_prefix: String,
    /// The counter stats key formatting applied by the implementation of statsd.
    #[arg(long, default_value = "stats.counters.%s.count")]
    pub statsd_counter_format: String,
    /// The gauge stats key formatting applied by the implementation of statsd.
    #[arg(long, default_value = "stats.gauges.%s")]
    pub statsd_gauge_format: String,
    /// Time interval nsqd is configured to push to statsd (must match nsqd).
    #[arg(long, default_value = "1m0s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub statsd_interval: Duration,

    /// HTTP endpoint to which each admin action is POSTed as JSON; empty turns it off.
    #[arg(long, default_value = "")]
    pub notification_http_endpoint: String,
    /// Timeout for establishing HTTP connections to nsqd and nsqlookupd.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub http_client_connect_timeout: Duration,
    /// Timeout for a whole HTTP request to nsqd and nsqlookupd.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_nanos")]
    pub http_client_request_timeout: Duration,
    /// Accept any certificate from HTTPS nsqd and nsqlookupd.
    #[arg(long)]
    #[serde(skip)]
    pub http_client_tls_insecure_skip_verify: bool,
    /// CA file for HTTPS nsqd and nsqlookupd (default: the system's roots).
    #[arg(long)]
    #[serde(skip)]
    pub http_client_tls_root_ca_file: Option<PathBuf>,
    /// Client certificate for HTTPS nsqd and nsqlookupd (with --http-client-tls-key).
    #[arg(long)]
    #[serde(skip)]
    pub http_client_tls_cert: Option<PathBuf>,
    /// Client key for HTTPS nsqd and nsqlookupd (with --http-client-tls-cert).
    #[arg(long)]
    #[serde(skip)]
    pub http_client_tls_key: Option<PathBuf>,

    /// CIDR (IPv4 or IPv6) from which /config may be read and changed.
    #[arg(long, default_value = "127.0.0.1/8")]
    pub allow_config_from_cidr: String,
    /// HTTP header that carries the user name, as set by an auth proxy.
    #[arg(long, default_value = "X-Forwarded-User")]
    pub acl_http_header: String,
    /// A user allowed to act on the cluster; repeatable (none: everyone may).
    #[arg(long = "admin-user")]
    pub admin_users: Vec<String>,

    /// How often to sample the cluster for the charts (ours).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(skip)]
    pub history_interval: Duration,
    /// How much chart history to keep (ours).
    #[arg(long, default_value = "1h0m0s", value_parser = parse_duration)]
    #[serde(skip)]
    pub history_retention: Duration,
    #[command(flatten)]
    #[serde(skip)]
    pub http_timeouts: nsq_daemon::http_server::HttpTimeouts,
}

impl Default for Options {
    /// The defaults the flags declare.
    fn default() -> Self {
        nsq_daemon::flags::defaults()
    }
}

impl Options {
    /// Upstream's start-up checks: exactly one kind of address, a usable base
    /// path, a valid CIDR.
    pub fn validate(&self) -> Result<(), String> {
        match (
            self.nsqlookupd_http_addresses.is_empty(),
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

    /// The options by their config names, as `GET /config/:opt` answers them
    /// (durations in nanoseconds, as Go marshals them).
    pub fn to_cfg_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            // Every field serializes, into an object.
            _ => serde_json::Map::new(),
        }
    }

    /// Whether the request's user (from the ACL header) may act.
    pub fn is_admin(&self, user: Option<&str>) -> bool {
        self.admin_users.is_empty() || user.is_some_and(|u| self.admin_users.iter().any(|a| a == u))
    }
}
