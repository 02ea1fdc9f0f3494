//! nsqlookupd's command line: upstream's flag names and defaults, Go syntax
//! (`-flag=value`, `--flag`, durations like `1m30s`) and a TOML `--config`.

use crate::options::{LogLevel, Options, TlsVersion};
use clap::Parser;
use nsq_daemon::flags::{parse_bool, parse_duration, ConfigKeys};
use nsq_daemon::logging::parse_log_level;
use std::ffi::OsString;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "nsqlookupd",
    about = "nsqlookupd: the directory that tells consumers which nsqd has a topic",
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
    #[arg(long, default_value = "[nsqlookupd] ")]
    pub log_prefix: String,
    /// Log line format: text (upstream's) or json (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: nsq_daemon::logging::LogFormat,
    /// Deprecated and without effect, as upstream; use --log-level.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub verbose: bool,

    /// <addr>:<port> to listen on for TCP clients (nsqd).
    #[arg(long, default_value = "0.0.0.0:4160")]
    pub tcp_address: String,
    /// <addr>:<port> to listen on for HTTP clients.
    #[arg(long, default_value = "0.0.0.0:4161")]
    pub http_address: String,
    /// <addr>:<port> to listen on for nsqd over TLS (ours; nsqd's --lookupd-tls).
    #[arg(long, default_value = "")]
    pub tcp_tls_address: String,
    /// <addr>:<port> to listen on for HTTPS clients (ours).
    #[arg(long, default_value = "")]
    pub https_address: String,
    /// Path to the PEM certificate of --tcp-tls-address and --https-address.
    #[arg(long, default_value = "")]
    pub tls_cert: String,
    /// Path to the PEM private key of --tls-cert.
    #[arg(long, default_value = "")]
    pub tls_key: String,
    /// Client certificate policy: require or require-verify.
    #[arg(long, default_value = "")]
    pub tls_client_auth_policy: String,
    /// Path to PEM CA certificates that verify client certificates.
    #[arg(long, default_value = "")]
    pub tls_root_ca_file: String,
    /// Lowest TLS version: tls1.2 or tls1.3 (lower values mean tls1.2).
    #[arg(long, default_value = "tls1.2", value_parser = parse_tls_version)]
    pub tls_min_version: TlsVersion,
    /// Address of this lookupd, told to nsqd (default: the hostname).
    #[arg(long)]
    pub broadcast_address: Option<String>,

    /// How long a producer stays in the active list after its last ping.
    #[arg(long, default_value = "5m0s", value_parser = parse_duration)]
    pub inactive_producer_timeout: Duration,
    /// How long a tombstone hides a producer that is still registered.
    #[arg(long, default_value = "45s", value_parser = parse_duration)]
    pub tombstone_lifetime: Duration,
    /// Most open TCP connections; more are closed at once. 0 means no limit.
    #[arg(long, default_value_t = 0)]
    pub max_tcp_connections: usize,
}

/// Upstream's config keys are the flag names with `_`; only durations need telling.
pub const CONFIG_KEYS: ConfigKeys<'static> = ConfigKeys {
    aliases: &[],
    durations: &["inactive-producer-timeout", "tombstone-lifetime"],
};

fn parse_tls_version(text: &str) -> Result<TlsVersion, String> {
    TlsVersion::parse(text).map_err(|e| e.to_string())
}

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
        let defaults = Options::default();
        Options {
            log_level: self.log_level,
            log_prefix: self.log_prefix,
            tcp_address: self.tcp_address,
            http_address: self.http_address,
            tcp_tls_address: self.tcp_tls_address,
            https_address: self.https_address,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            tls_client_auth_policy: self.tls_client_auth_policy,
            tls_root_ca_file: self.tls_root_ca_file,
            tls_min_version: self.tls_min_version,
            broadcast_address: self.broadcast_address.unwrap_or(defaults.broadcast_address),
            inactive_producer_timeout: self.inactive_producer_timeout,
            tombstone_lifetime: self.tombstone_lifetime,
            max_tcp_connections: self.max_tcp_connections,
            client_timeout: defaults.client_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        let mut argv = vec![OsString::from("nsqlookupd")];
        argv.extend(args.iter().map(OsString::from));
        Args::parse_from_os(argv)
            .expect("valid command line")
            .0
            .into_options()
    }

    #[test]
    fn defaults_match_upstream() {
        let opts = parse(&[]);
        let defaults = Options::default();
        assert_eq!(opts.tcp_address, "0.0.0.0:4160");
        assert_eq!(opts.http_address, "0.0.0.0:4161");
        assert_eq!(opts.broadcast_address, defaults.broadcast_address);
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
        assert!(Args::parse_from_os(argv).is_err());
    }

    #[test]
    fn config_file_under_flags() {
        let dir = std::env::temp_dir().join(format!("nsqlookupd-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nsqlookupd.cfg");
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
        let (args, ignored) = Args::parse_from_os(argv.iter().map(OsString::from)).unwrap();
        let opts = args.into_options();
        assert_eq!(opts.tcp_address, "127.0.0.1:1");
        assert_eq!(opts.http_address, "127.0.0.1:3");
        assert_eq!(opts.inactive_producer_timeout, Duration::from_secs(10));
        assert_eq!(opts.tombstone_lifetime, Duration::from_millis(1500));
        assert_eq!(opts.log_prefix, "[x] ");
        assert_eq!(ignored, vec!["statsd_prefix".to_string()]);
        std::fs::remove_dir_all(dir).unwrap();
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
            nsq_daemon::tls::ClientAuthPolicy::RequireVerify
        );
        assert_eq!(tls.min_version, TlsVersion::Tls13);
    }
}
