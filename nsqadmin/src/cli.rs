//! nsqadmin's command line: its [`Options`] with upstream's flag names and
//! defaults, in Go's syntax (`-flag=value`, `--flag`, durations like
//! `1m30s`) and from a TOML `--config`, plus the flags only `main` reads.

use crate::options::Options;
use clap::Parser;
use nsq_daemon::flags::DaemonFlags;

#[derive(Debug, Parser)]
#[command(
    name = "nsqadmin",
    about = "nsqadmin: the web UI to watch and act on an NSQ cluster",
    disable_version_flag = true
)]
pub struct CommandLine {
    #[command(flatten)]
    pub daemon: DaemonFlags,
    #[command(flatten)]
    pub options: Options,
}

#[cfg(test)]
mod tests {
    use super::*;
    use nsq_daemon::flags::try_parse;
    use std::ffi::OsString;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Options {
        let mut argv = vec![OsString::from("nsqadmin")];
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
            opts.nsqlookupd_http_addresses,
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nsqadmin.cfg");
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
        let (line, parsed) = try_parse::<CommandLine>(argv.iter().map(OsString::from)).unwrap();
        let ignored = parsed.ignored_config_keys;
        let opts = line.options;
        assert_eq!(
            opts.nsqlookupd_http_addresses,
            vec!["127.0.0.1:1", "127.0.0.1:2"]
        );
        assert_eq!(opts.admin_users, vec!["root"]);
        assert_eq!(opts.statsd_interval, Duration::from_secs(10));
        assert_eq!(opts.http_address, "127.0.0.1:3");
        assert!(ignored.is_empty());
    }
}
