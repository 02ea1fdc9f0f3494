//! nsqd's command line: its [`Options`] with upstream's flag names and
//! defaults, in Go's syntax (`-flag=value`, `--flag`, durations like
//! `1m30s`) and from a TOML `--config`, plus the flags only `main` reads.

use crate::options::{LogLevel, Options};
use clap::Parser;
use nsq_daemon::flags::DaemonFlags;

#[derive(Debug, Parser)]
#[command(
    name = "nsqd",
    about = "nsqd: receives, queues and delivers messages",
    disable_version_flag = true
)]
pub struct CommandLine {
    #[command(flatten)]
    pub daemon: DaemonFlags,
    /// Deprecated; use --log-level=debug.
    #[arg(long)]
    pub verbose: bool,
    /// Accepted for compatibility; nsqd fires timeouts exactly instead of scanning.
    #[arg(long, default_value_t = 4)]
    pub queue_scan_worker_pool_max: i64,
    /// Accepted for compatibility; nsqd fires timeouts exactly instead of scanning.
    #[arg(long, default_value_t = 20)]
    pub queue_scan_selection_count: i64,
    #[command(flatten)]
    pub options: Options,
}

impl CommandLine {
    /// The options, with `--verbose` applied as upstream does.
    pub fn into_options(self) -> Options {
        let mut options = self.options;
        if self.verbose {
            options.log_level = LogLevel::Debug;
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{ClientAuthPolicy, TlsRequired, TlsVersion};
    use nsq_daemon::flags::try_parse;
    use std::ffi::OsString;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Options {
        let mut argv = vec![OsString::from("nsqd")];
        argv.extend(args.iter().map(OsString::from));
        try_parse::<CommandLine>(argv)
            .expect("valid command line")
            .0
            .into_options()
    }

    #[test]
    fn the_parsed_defaults_are_the_default_options() {
        let defaults = parse(&[]);
        assert_eq!(defaults, Options::default());
        // Upstream's, as its documentation gives them.
        assert_eq!(defaults.tcp_address, "0.0.0.0:4150");
        assert_eq!(defaults.http_address, "0.0.0.0:4151");
        assert_eq!(defaults.mem_queue_size, 10_000);
        assert_eq!(defaults.msg_timeout, Duration::from_secs(60));
        assert_eq!(defaults.max_req_timeout, Duration::from_secs(3600));
        assert_eq!(defaults.output_buffer_timeout, Duration::from_millis(250));
        assert_eq!(defaults.broadcast_address, crate::options::hostname());
        assert_eq!(defaults.log_level, LogLevel::Info);
        assert!(defaults.snappy && defaults.deflate && defaults.statsd_mem_stats);
        assert!(!defaults.lookupd_tls && !defaults.statsd_exclude_ephemeral);
        assert!(defaults.id < 1024);
    }

    #[test]
    fn config_names_as_upstream_gives_them() {
        let map = Options::default().to_cfg_map();
        for key in [
            "id",
            "nsqlookupd_tcp_addresses",
            "e2e_processing_latency_percentiles",
        ] {
            assert!(map.contains_key(key), "{key}");
        }
        assert_eq!(map["msg_timeout"], 60_000_000_000u64);
        assert_eq!(map["log_level"], 2);
        assert_eq!(map["tls_min_version"], 769);
        assert_eq!(map["tls_required"], 0);
        assert_eq!(map["tls_client_auth_policy"], "");
        assert_eq!(
            map["e2e_processing_latency_percentiles"],
            serde_json::Value::Null
        );
        assert!(
            !map.contains_key("max_tcp_connections"),
            "ours, not upstream's"
        );
    }

    #[test]
    fn both_dash_styles_and_go_durations() {
        let opts = parse(&[
            "-tcp-address=127.0.0.1:5150",
            "--msg-timeout=1m30s",
            "-snappy=false",
            "--deflate",
        ]);
        assert_eq!(opts.tcp_address, "127.0.0.1:5150");
        assert_eq!(opts.msg_timeout, Duration::from_secs(90));
        assert!(!opts.snappy);
        assert!(opts.deflate);
        let opts = parse(&[
            "-e2e-processing-latency-percentile=0.99,0.95",
            "--e2e-processing-latency-percentile",
            "0.5",
        ]);
        assert_eq!(
            opts.e2e_processing_latency_percentiles,
            vec![0.99, 0.95, 0.5]
        );
    }

    #[test]
    fn config_file_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nsqd.cfg");
        std::fs::write(
            &path,
            "mem_queue_size = 5\nmsg_timeout = \"2s\"\nmax_req_timeout = 1500\ntcp_address = \"127.0.0.1:1\"\nid = 9\ne2e_processing_latency_percentiles = [0.5, 0.9]\nstatsd_prefix = \"x\"\nstatsd_interval = \"5s\"\ntls_cert = \"c.pem\"\ntls_required = \"tcp-https\"\ntls_min_version = \"tls1.2\"\nauth_http_addresses = [\"a:1\", \"b:2\"]\nno_such_key = 1\n",
        )
        .unwrap();
        let argv = [
            "nsqd",
            &format!("--config={}", path.display()),
            "-tcp-address=127.0.0.1:2",
        ];
        let (line, parsed) = try_parse::<CommandLine>(argv.iter().map(OsString::from)).unwrap();
        let ignored = parsed.ignored_config_keys;
        let opts = line.into_options();
        assert_eq!(opts.mem_queue_size, 5);
        assert_eq!(opts.msg_timeout, Duration::from_secs(2));
        assert_eq!(opts.max_req_timeout, Duration::from_millis(1500));
        assert_eq!(opts.tcp_address, "127.0.0.1:2");
        assert_eq!(opts.id, 9);
        assert_eq!(opts.e2e_processing_latency_percentiles, vec![0.5, 0.9]);
        assert_eq!(opts.statsd_prefix, "x");
        assert_eq!(opts.statsd_interval, Duration::from_secs(5));
        assert_eq!(opts.tls_cert, "c.pem");
        assert_eq!(opts.tls_required, TlsRequired::ExceptHttp);
        assert_eq!(opts.tls_min_version, TlsVersion::Tls12);
        assert_eq!(opts.auth_http_addresses, ["a:1", "b:2"]);
        assert_eq!(ignored, vec!["no_such_key".to_string()]);
    }

    #[test]
    fn tls_and_auth_flags_as_upstream_spells_them() {
        let opts = parse(&[
            "--tls-required",
            "--tls-min-version=TLS1.3",
            "-auth-http-address=127.0.0.1:4181",
            "--auth-http-address=https://auth.internal/auth",
            "--http-client-request-timeout=3s",
        ]);
        assert_eq!(opts.tls_required, TlsRequired::Yes);
        assert_eq!(opts.tls_min_version, TlsVersion::Tls13);
        assert_eq!(
            opts.auth_http_addresses,
            ["127.0.0.1:4181", "https://auth.internal/auth"]
        );
        assert_eq!(opts.http_client_request_timeout, Duration::from_secs(3));
        assert_eq!(
            parse(&["-tls-required=tcp-https"]).tls_required,
            TlsRequired::ExceptHttp
        );
        assert_eq!(parse(&["--tls-required=0"]).tls_required, TlsRequired::No);
        let defaults = parse(&[]);
        assert_eq!(defaults.tls_min_version.go_number(), 769);
        assert_eq!(defaults.https_address, "0.0.0.0:4152");
        let refused =
            |arg: &str| try_parse::<CommandLine>(["nsqd", arg].iter().map(OsString::from)).is_err();
        assert!(refused("--tls-min-version=tls2.0"));
        assert!(refused("--tls-required=sometimes"));
        assert_eq!(
            parse(&["--tls-client-auth-policy=require-verify"]).tls_client_auth_policy,
            ClientAuthPolicy::RequireVerify
        );
        assert!(refused("--tls-client-auth-policy=sometimes"));
    }
}
