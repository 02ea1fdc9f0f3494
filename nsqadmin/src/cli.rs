//! nsqadmin's command line: upstream's flag names and defaults, Go syntax
//! (`-flag=value`, `--flag`, durations like `1m30s`) and a TOML `--config`.

use crate::options::{LogLevel, Options};
use clap::Parser;
use nsq_daemon::flags::{parse_bool, parse_duration, ConfigKeys};
use nsq_daemon::logging::parse_log_level;
use std::ffi::OsString;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "nsqadmin",
    about = "nsqadmin: the web UI to watch and act on an NSQ cluster",
    disable_version_flag = true
)]
pub struct Args {
    /// Path to a TOML config file; flags given on the command line win.
    #[arg(long, default_value = "")]
    pub config: String,
    /// Print the version and exit.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub version: bool,
    /// Log level: debug, info, warn, error or fatal.
    #[arg(long, default_value = "info", value_parser = parse_log_level)]
    pub log_level: LogLevel,
    /// Prefix of every log line.
    #[arg(long, default_value = "[nsqadmin] ")]
    pub log_prefix: String,
    /// Log line format: text (upstream's) or json (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: nsq_daemon::logging::LogFormat,

    /// <addr>:<port> to listen on for HTTP clients.
    #[arg(long, default_value = "0.0.0.0:4171")]
    pub http_address: String,
    /// URL prefix nsqadmin is served under (behind a reverse proxy).
    #[arg(long, default_value = "/")]
    pub base_path: String,
    /// nsqlookupd HTTP address; repeatable.
    #[arg(long = "lookupd-http-address")]
    pub lookupd_http_addresses: Vec<String>,
    /// nsqd HTTP address; repeatable (instead of --lookupd-http-address).
    #[arg(long = "nsqd-http-address")]
    pub nsqd_http_addresses: Vec<String>,

    /// Graphite HTTP address, for the /api/graphite rates.
    #[arg(long, default_value = "")]
    pub graphite_url: String,
    /// Proxy HTTP requests to graphite as /render.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
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
    pub statsd_interval: Duration,

    /// HTTP endpoint to which each admin action is POSTed as JSON.
    #[arg(long, default_value = "")]
    pub notification_http_endpoint: String,
    /// Timeout for establishing HTTP connections to nsqd and nsqlookupd.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub http_client_connect_timeout: Duration,
    /// Timeout for a whole HTTP request to nsqd and nsqlookupd.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub http_client_request_timeout: Duration,
    /// Accept any certificate from HTTPS nsqd and nsqlookupd.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub http_client_tls_insecure_skip_verify: bool,
    /// CA file for HTTPS nsqd and nsqlookupd.
    #[arg(long)]
    pub http_client_tls_root_ca_file: Option<std::path::PathBuf>,
    /// Client certificate for HTTPS nsqd and nsqlookupd (with --http-client-tls-key).
    #[arg(long)]
    pub http_client_tls_cert: Option<std::path::PathBuf>,
    /// Client key for HTTPS nsqd and nsqlookupd (with --http-client-tls-cert).
    #[arg(long)]
    pub http_client_tls_key: Option<std::path::PathBuf>,

    /// CIDR from which /config may be read and changed.
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
    pub history_interval: Duration,
    /// How much chart history to keep (ours).
    #[arg(long, default_value = "1h0m0s", value_parser = parse_duration)]
    pub history_retention: Duration,
}

/// Upstream's config keys; the repeatable flags have plural names there.
pub const CONFIG_KEYS: ConfigKeys<'static> = ConfigKeys {
    aliases: &[
        ("nsqlookupd_http_addresses", "lookupd-http-address"),
        ("nsqd_http_addresses", "nsqd-http-address"),
        ("admin_users", "admin-user"),
    ],
    durations: &[
        "statsd-interval",
        "http-client-connect-timeout",
        "http-client-request-timeout",
        "history-interval",
        "history-retention",
    ],
};

impl Args {
    /// Parses a command line (with the program name first). Also returns the
    /// config-file keys that match no flag.
    pub fn parse_from_os(
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<(Args, Vec<String>), clap::Error> {
        let (args, parsed) = nsq_daemon::flags::try_parse::<Args>(args, &CONFIG_KEYS)?;
        Ok((args, parsed.ignored_config_keys))
    }

    pub fn into_options(self) -> Options {
        Options {
            log_level: self.log_level,
            log_prefix: self.log_prefix,
            http_address: self.http_address,
            base_path: self.base_path,
            lookupd_http_addresses: self.lookupd_http_addresses,
            nsqd_http_addresses: self.nsqd_http_addresses,
            graphite_url: self.graphite_url,
            proxy_graphite: self.proxy_graphite,
            statsd_prefix: self.statsd_prefix,
            statsd_counter_format: self.statsd_counter_format,
            statsd_gauge_format: self.statsd_gauge_format,
            statsd_interval: self.statsd_interval,
            notification_http_endpoint: self.notification_http_endpoint,
            http_client_connect_timeout: self.http_client_connect_timeout,
            http_client_request_timeout: self.http_client_request_timeout,
            http_client_tls_insecure_skip_verify: self.http_client_tls_insecure_skip_verify,
            http_client_tls_root_ca_file: self.http_client_tls_root_ca_file,
            http_client_tls_cert: self.http_client_tls_cert,
            http_client_tls_key: self.http_client_tls_key,
            allow_config_from_cidr: self.allow_config_from_cidr,
            acl_http_header: self.acl_http_header,
            admin_users: self.admin_users,
            history_interval: self.history_interval,
            history_retention: self.history_retention,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        let mut argv = vec![OsString::from("nsqadmin")];
        argv.extend(args.iter().map(OsString::from));
        Args::parse_from_os(argv)
            .expect("valid command line")
            .0
            .into_options()
    }

    #[test]
    fn defaults_match_upstream() {
        let opts = parse(&[]);
        assert_eq!(opts.http_address, "0.0.0.0:4171");
        assert_eq!(opts.base_path, "/");
        assert_eq!(opts.statsd_prefix, "nsq.%s");
        assert_eq!(opts.statsd_interval, Duration::from_secs(60));
        assert_eq!(opts.http_client_connect_timeout, Duration::from_secs(2));
        assert_eq!(opts.http_client_request_timeout, Duration::from_secs(5));
        assert_eq!(opts.allow_config_from_cidr, "127.0.0.1/8");
        assert_eq!(opts.acl_http_header, "X-Forwarded-User");
        assert_eq!(opts.log_prefix, "[nsqadmin] ");
        assert!(opts.validate().is_err(), "an address kind is required");
    }

    #[test]
    fn repeatable_flags_both_dash_styles() {
        let opts = parse(&[
            "-lookupd-http-address=127.0.0.1:4161",
            "--lookupd-http-address",
            "127.0.0.1:4261",
            "--admin-user=alice",
            "-admin-user=bob",
            "--base-path=/admin/",
            "-http-client-request-timeout=1m30s",
        ]);
        assert_eq!(
            opts.lookupd_http_addresses,
            vec!["127.0.0.1:4161", "127.0.0.1:4261"]
        );
        assert_eq!(opts.admin_users, vec!["alice", "bob"]);
        assert_eq!(opts.prefix(), "/admin");
        assert_eq!(opts.http_client_request_timeout, Duration::from_secs(90));
        assert!(opts.validate().is_ok());
        assert!(opts.is_admin(Some("bob")));
        assert!(!opts.is_admin(Some("mallory")));
        assert!(!opts.is_admin(None));
    }

    #[test]
    fn one_kind_of_address() {
        let both = parse(&[
            "--lookupd-http-address=127.0.0.1:4161",
            "--nsqd-http-address=127.0.0.1:4151",
        ]);
        assert!(both.validate().unwrap_err().contains("not both"));
        let bad_cidr = parse(&[
            "--nsqd-http-address=127.0.0.1:4151",
            "--allow-config-from-cidr=nope",
        ]);
        assert!(bad_cidr.validate().is_err());
    }

    #[test]
    fn config_file_under_flags() {
        let dir = std::env::temp_dir().join(format!("nsqadmin-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nsqadmin.cfg");
        std::fs::write(
            &path,
            "nsqlookupd_http_addresses = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nadmin_users = [\"root\"]\nstatsd_interval = \"10s\"\nhttp_address = \"127.0.0.1:9\"\n",
        )
        .unwrap();
        let argv = [
            "nsqadmin",
            &format!("--config={}", path.display()),
            "-http-address=127.0.0.1:3",
        ];
        let (args, ignored) = Args::parse_from_os(argv.iter().map(OsString::from)).unwrap();
        let opts = args.into_options();
        assert_eq!(
            opts.lookupd_http_addresses,
            vec!["127.0.0.1:1", "127.0.0.1:2"]
        );
        assert_eq!(opts.admin_users, vec!["root"]);
        assert_eq!(opts.statsd_interval, Duration::from_secs(10));
        assert_eq!(opts.http_address, "127.0.0.1:3");
        assert!(ignored.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
