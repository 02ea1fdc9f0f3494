//! nsqd's command line: upstream's flag names and defaults, Go syntax
//! (`-flag=value`, `--flag`, durations like `1m30s`) and a TOML `--config`.

use crate::options::{LogLevel, Options, TlsRequired, TlsVersion};
use clap::Parser;
use nsq_daemon::flags::{parse_bool, parse_duration, ConfigKeys};
use nsq_daemon::logging::parse_log_level;
use std::ffi::OsString;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "nsqd",
    about = "nsqd: receives, queues and delivers messages",
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
    #[arg(long, default_value = "[nsqd] ")]
    pub log_prefix: String,
    /// Log line format: text (upstream's) or json (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: nsq_daemon::logging::LogFormat,
    /// Deprecated; use --log-level=debug.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub verbose: bool,
    /// Unique part of message IDs, in [0,1024); defaults to a hash of the hostname.
    #[arg(long)]
    pub node_id: Option<u16>,

    /// <addr>:<port> to listen on for TCP clients.
    #[arg(long, default_value = "0.0.0.0:4150")]
    pub tcp_address: String,
    /// <addr>:<port> to listen on for HTTP clients; empty disables HTTP.
    #[arg(long, default_value = "0.0.0.0:4151")]
    pub http_address: String,
    /// Address announced to lookupd and consumers (default: the hostname).
    #[arg(long)]
    pub broadcast_address: Option<String>,
    /// TCP port announced (default: the listener's).
    #[arg(long, default_value_t = 0)]
    pub broadcast_tcp_port: u16,
    /// HTTP port announced (default: the listener's).
    #[arg(long, default_value_t = 0)]
    pub broadcast_http_port: u16,
    /// nsqlookupd TCP address to register with; repeatable.
    #[arg(long = "lookupd-tcp-address")]
    pub lookupd_tcp_addresses: Vec<String>,
    /// <addr>:<port> to listen on for HTTPS clients (only with --tls-cert).
    #[arg(long, default_value = "0.0.0.0:4152")]
    pub https_address: String,

    /// Auth server to ask about AUTH secrets: <addr>:<port> or a full URL; repeatable.
    #[arg(long = "auth-http-address")]
    pub auth_http_addresses: Vec<String>,
    /// Timeout for connecting to auth servers and lookupds' HTTP APIs.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub http_client_connect_timeout: Duration,
    /// Timeout for a whole request to auth servers and lookupds' HTTP APIs.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub http_client_request_timeout: Duration,

    /// Path to the PEM certificate of the TLS side of TCP and HTTPS.
    #[arg(long, default_value = "")]
    pub tls_cert: String,
    /// Path to the PEM private key of --tls-cert.
    #[arg(long, default_value = "")]
    pub tls_key: String,
    /// Client certificate policy: require or require-verify (implies --tls-required).
    #[arg(long, default_value = "")]
    pub tls_client_auth_policy: String,
    /// Path to PEM CA certificates that verify client certificates and auth servers.
    #[arg(long, default_value = "")]
    pub tls_root_ca_file: String,
    /// Require TLS of TCP clients (true), of TCP clients only (tcp-https), or not (false).
    #[arg(long, value_parser = TlsRequired::parse, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub tls_required: TlsRequired,
    /// Lowest TLS version: tls1.0, tls1.1, tls1.2 or tls1.3 (below tls1.2 means tls1.2).
    #[arg(long, default_value = "tls1.0", value_parser = parse_tls_version)]
    pub tls_min_version: TlsVersion,

    /// Connect to every lookupd with TLS (ours; nsqlookupd's --tcp-tls-address).
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
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
    #[arg(long, default_value = "")]
    pub data_path: String,
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
    pub sync_timeout: Duration,
    /// Accepted for compatibility; nsqd fires timeouts exactly instead of scanning.
    #[arg(long, default_value_t = 4)]
    pub queue_scan_worker_pool_max: i64,
    /// Accepted for compatibility; nsqd fires timeouts exactly instead of scanning.
    #[arg(long, default_value_t = 20)]
    pub queue_scan_selection_count: i64,

    /// Default time a message may stay in flight before it is requeued.
    #[arg(long, default_value = "1m0s", value_parser = parse_duration)]
    pub msg_timeout: Duration,
    /// Largest msg_timeout a client may ask for.
    #[arg(long, default_value = "15m0s", value_parser = parse_duration)]
    pub max_msg_timeout: Duration,
    /// Largest message body, in bytes.
    #[arg(long, default_value_t = 1_048_576)]
    pub max_msg_size: i64,
    /// Largest REQ delay and DPUB defer.
    #[arg(long, default_value = "1h0m0s", value_parser = parse_duration)]
    pub max_req_timeout: Duration,
    /// Largest command body (MPUB, IDENTIFY), in bytes.
    #[arg(long, default_value_t = 5_242_880)]
    pub max_body_size: i64,
    /// Largest heartbeat interval a client may ask for.
    #[arg(long, default_value = "1m0s", value_parser = parse_duration)]
    pub max_heartbeat_interval: Duration,
    /// Largest RDY count a client may send.
    #[arg(long, default_value_t = 2500)]
    pub max_rdy_count: i64,
    /// Largest output buffer a client may ask for, in bytes.
    #[arg(long, default_value_t = 65_536)]
    pub max_output_buffer_size: i64,
    /// Largest output buffer timeout a client may ask for.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub max_output_buffer_timeout: Duration,
    /// Smallest output buffer timeout a client may ask for.
    #[arg(long, default_value = "25ms", value_parser = parse_duration)]
    pub min_output_buffer_timeout: Duration,
    /// Default output buffer timeout.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub output_buffer_timeout: Duration,
    /// Most consumers per channel; 0 means no limit.
    #[arg(long, default_value_t = 0)]
    pub max_channel_consumers: i64,
    /// Most open TCP connections; more are closed at once. 0 means no limit.
    #[arg(long, default_value_t = 0)]
    pub max_tcp_connections: usize,

    /// Latency quantile to report, in (0,1]; repeatable or comma-separated.
    #[arg(long = "e2e-processing-latency-percentile", value_delimiter = ',')]
    pub e2e_processing_latency_percentiles: Vec<f64>,
    /// Window over which latency quantiles are computed.
    #[arg(long, default_value = "10m0s", value_parser = parse_duration)]
    pub e2e_processing_latency_window_time: Duration,

    /// UDP <addr>:<port> of a statsd daemon to push stats to; empty disables.
    #[arg(long, default_value = "")]
    pub statsd_address: String,
    /// Prefix of statsd keys (%s for host replacement).
    #[arg(long, default_value = "nsq.%s")]
    pub statsd_prefix: String,
    /// Time between pushes to statsd.
    #[arg(long, default_value = "1m0s", value_parser = parse_duration)]
    pub statsd_interval: Duration,
    /// Push memory statistics to statsd.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub statsd_mem_stats: bool,
    /// Size in bytes of statsd UDP packets.
    #[arg(long, default_value_t = 508)]
    pub statsd_udp_packet_size: i64,
    /// Leave ephemeral topics and channels out of statsd.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub statsd_exclude_ephemeral: bool,

    /// Allow clients to negotiate deflate compression.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub deflate: bool,
    /// Highest deflate level a client may ask for (1-9).
    #[arg(long, default_value_t = 6)]
    pub max_deflate_level: i64,
    /// Allow clients to negotiate snappy compression.
    #[arg(long, value_parser = parse_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub snappy: bool,
}

/// Config keys that are not simply flag names with `_`.
pub const CONFIG_KEYS: ConfigKeys<'static> = ConfigKeys {
    aliases: &[
        ("id", "node-id"),
        (
            "e2e_processing_latency_percentiles",
            "e2e-processing-latency-percentile",
        ),
        ("nsqlookupd_tcp_addresses", "lookupd-tcp-address"),
        ("auth_http_addresses", "auth-http-address"),
    ],
    durations: &[
        "sync-timeout",
        "msg-timeout",
        "max-msg-timeout",
        "max-req-timeout",
        "max-heartbeat-interval",
        "max-output-buffer-timeout",
        "min-output-buffer-timeout",
        "output-buffer-timeout",
        "e2e-processing-latency-window-time",
        "statsd-interval",
        "http-client-connect-timeout",
        "http-client-request-timeout",
    ],
};

fn parse_tls_version(text: &str) -> Result<TlsVersion, String> {
    TlsVersion::parse(text).map_err(|e| e.to_string())
}

impl Args {
    /// Parses a command line (with the program name first).
    pub fn parse_from_os(
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<(Args, Vec<String>), clap::Error> {
        let (args, parsed) = nsq_daemon::flags::try_parse::<Args>(args, &CONFIG_KEYS)?;
        Ok((args, parsed.ignored_config_keys))
    }

    pub fn into_options(self) -> Options {
        let defaults = Options::default();
        Options {
            node_id: self.node_id.unwrap_or(defaults.node_id),
            log_level: if self.verbose {
                LogLevel::Debug
            } else {
                self.log_level
            },
            log_prefix: self.log_prefix,
            tcp_address: self.tcp_address,
            http_address: self.http_address,
            broadcast_address: self.broadcast_address.unwrap_or(defaults.broadcast_address),
            broadcast_tcp_port: self.broadcast_tcp_port,
            broadcast_http_port: self.broadcast_http_port,
            lookupd_tcp_addresses: self.lookupd_tcp_addresses,
            https_address: self.https_address,
            auth_http_addresses: self.auth_http_addresses,
            http_client_connect_timeout: self.http_client_connect_timeout,
            http_client_request_timeout: self.http_client_request_timeout,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            tls_client_auth_policy: self.tls_client_auth_policy,
            tls_root_ca_file: self.tls_root_ca_file,
            tls_required: self.tls_required,
            tls_min_version: self.tls_min_version,
            lookupd_tls: self.lookupd_tls,
            lookupd_tls_root_ca_file: self.lookupd_tls_root_ca_file,
            lookupd_tls_cert: self.lookupd_tls_cert,
            lookupd_tls_key: self.lookupd_tls_key,
            data_path: self.data_path.into(),
            mem_queue_size: self.mem_queue_size,
            max_bytes_per_file: self.max_bytes_per_file,
            sync_every: self.sync_every,
            sync_timeout: self.sync_timeout,
            msg_timeout: self.msg_timeout,
            max_msg_timeout: self.max_msg_timeout,
            max_msg_size: self.max_msg_size,
            max_req_timeout: self.max_req_timeout,
            max_body_size: self.max_body_size,
            max_heartbeat_interval: self.max_heartbeat_interval,
            max_rdy_count: self.max_rdy_count,
            max_output_buffer_size: self.max_output_buffer_size,
            max_output_buffer_timeout: self.max_output_buffer_timeout,
            min_output_buffer_timeout: self.min_output_buffer_timeout,
            output_buffer_timeout: self.output_buffer_timeout,
            max_channel_consumers: self.max_channel_consumers,
            max_tcp_connections: self.max_tcp_connections,
            e2e_processing_latency_percentiles: self.e2e_processing_latency_percentiles,
            e2e_processing_latency_window_time: self.e2e_processing_latency_window_time,
            statsd_address: self.statsd_address,
            statsd_prefix: self.statsd_prefix,
            statsd_interval: self.statsd_interval,
            statsd_mem_stats: self.statsd_mem_stats,
            statsd_udp_packet_size: self.statsd_udp_packet_size,
            statsd_exclude_ephemeral: self.statsd_exclude_ephemeral,
            deflate: self.deflate,
            max_deflate_level: self.max_deflate_level,
            snappy: self.snappy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        let mut argv = vec![OsString::from("nsqd")];
        argv.extend(args.iter().map(OsString::from));
        Args::parse_from_os(argv)
            .expect("valid command line")
            .0
            .into_options()
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
        let dir = std::env::temp_dir().join(format!("nsqd-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nsqd.cfg");
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
        let (args, ignored) = Args::parse_from_os(argv.iter().map(OsString::from)).unwrap();
        let opts = args.into_options();
        assert_eq!(opts.mem_queue_size, 5);
        assert_eq!(opts.msg_timeout, Duration::from_secs(2));
        assert_eq!(opts.max_req_timeout, Duration::from_millis(1500));
        assert_eq!(opts.tcp_address, "127.0.0.1:2");
        assert_eq!(opts.node_id, 9);
        assert_eq!(opts.e2e_processing_latency_percentiles, vec![0.5, 0.9]);
        assert_eq!(opts.statsd_prefix, "x");
        assert_eq!(opts.statsd_interval, Duration::from_secs(5));
        assert_eq!(opts.tls_cert, "c.pem");
        assert_eq!(opts.tls_required, TlsRequired::ExceptHttp);
        assert_eq!(opts.tls_min_version, TlsVersion::Tls12);
        assert_eq!(opts.auth_http_addresses, ["a:1", "b:2"]);
        assert_eq!(ignored, vec!["no_such_key".to_string()]);
        std::fs::remove_dir_all(dir).unwrap();
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
            |arg: &str| Args::parse_from_os(["nsqd", arg].iter().map(OsString::from)).is_err();
        assert!(refused("--tls-min-version=tls2.0"));
        assert!(refused("--tls-required=sometimes"));
    }
}
