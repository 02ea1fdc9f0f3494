//! nsqlookupd's command line: its [`Options`] with upstream's flag names
//! and defaults, in Go's syntax (`-flag=value`, `--flag`, durations like
//! `1m30s`) and from a TOML `--config`, plus the flags only `main` reads.

use crate::options::Options;
use clap::Parser;
use nsq_daemon::flags::DaemonFlags;

#[derive(Debug, Parser)]
#[command(
    name = "nsqlookupd",
    about = "nsqlookupd: the directory that tells consumers which nsqd has a topic",
    disable_version_flag = true
)]
pub struct CommandLine {
    #[command(flatten)]
    pub daemon: DaemonFlags,
    /// Deprecated and without effect, as upstream; use --log-level.
    #[arg(long)]
    pub verbose: bool,
    #[command(flatten)]
    pub options: Options,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{LogLevel, TlsVersion};
    use nsq_daemon::flags::try_parse;
    use std::ffi::OsString;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Options {
        let mut argv = vec![OsString::from("nsqlookupd")];
        argv.extend(args.iter().map(OsString::from));
        try_parse::<CommandLine>(argv)
            .expect("valid command line")
            .0
            .options
    }

    #[test]
    fn the_parsed_defaults_are_the_default_options_and_upstreams() {
        let opts = parse(&[]);
        assert_eq!(opts, Options::default());
        assert_eq!(opts.tcp_address, "0.0.0.0:4160");
        assert_eq!(opts.http_address, "0.0.0.0:4161");
        assert_eq!(opts.broadcast_address, crate::options::hostname());
        assert_eq!(opts.client_timeout, Duration::from_secs(60));
        assert_eq!(opts.inactive_producer_timeout, Duration::from_secs(300));
        assert_eq!(opts.tombstone_lifetime, Duration::from_secs(45));
        assert_eq!(opts.log_prefix, "[nsqlookupd] ");
        assert_eq!(opts.log_level, LogLevel::Info);
    }

    #[test]
    fn both_dash_styles_and_go_durations() {
        let opts = parse(&[
            "-tcp-address=127.0.0.1:5160",
            "--http-address",
            "127.0.0.1:5161",
            "-inactive-producer-timeout=1m30s",
            "--tombstone-lifetime=500ms",
            "-broadcast-address=lookupd.example",
            "--log-level=WARN",
            "--verbose",
        ]);
        assert_eq!(opts.tcp_address, "127.0.0.1:5160");
        assert_eq!(opts.http_address, "127.0.0.1:5161");
        assert_eq!(opts.inactive_producer_timeout, Duration::from_secs(90));
        assert_eq!(opts.tombstone_lifetime, Duration::from_millis(500));
        assert_eq!(opts.broadcast_address, "lookupd.example");
        assert_eq!(opts.log_level, LogLevel::Warn);
        let argv = ["nsqlookupd", "--log-level=loud"].map(OsString::from);
        assert!(try_parse::<CommandLine>(argv).is_err());
    }

    #[test]
    fn config_file_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nsqlookupd.cfg");
        std::fs::write(
            &path,
            "tcp_address = \"127.0.0.1:1\"\nhttp_address = \"127.0.0.1:2\"\ninactive_producer_timeout = \"10s\"\ntombstone_lifetime = 1500\nlog_prefix = \"[x] \"\nstatsd_prefix = \"y\"\n",
        )
        .unwrap();
        let argv = [
            "nsqlookupd",
            &format!("--config={}", path.display()),
            "-http-address=127.0.0.1:3",
        ];
        let (line, parsed) = try_parse::<CommandLine>(argv.iter().map(OsString::from)).unwrap();
        let ignored = parsed.ignored_config_keys;
        let opts = line.options;
        assert_eq!(opts.tcp_address, "127.0.0.1:1");
        assert_eq!(opts.http_address, "127.0.0.1:3");
        assert_eq!(opts.inactive_producer_timeout, Duration::from_secs(10));
        assert_eq!(opts.tombstone_lifetime, Duration::from_millis(1500));
        assert_eq!(opts.log_prefix, "[x] ");
        assert_eq!(ignored, vec!["statsd_prefix".to_string()]);
    }

    #[test]
    fn tls_listeners_are_off_unless_asked_for() {
        let opts = parse(&[]);
        assert_eq!(
            (opts.tcp_tls_address.as_str(), opts.https_address.as_str()),
            ("", "")
        );
        assert_eq!(opts.server_tls(), Ok(None));
        let opts = parse(&["--tcp-tls-address=127.0.0.1:4163"]);
        assert!(opts.server_tls().unwrap_err().contains("--tls-cert"));
        let opts = parse(&[
            "-https-address=127.0.0.1:4162",
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-client-auth-policy=require-verify",
            "--tls-min-version=tls1.3",
        ]);
        let tls = opts.server_tls().unwrap().unwrap();
        assert_eq!(
            tls.client_auth,
            crate::options::ClientAuthPolicy::RequireVerify
        );
        assert_eq!(tls.min_version, TlsVersion::Tls13);
    }
}
