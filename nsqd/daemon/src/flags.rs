//! Command lines as NSQ's Go programs accept them, on top of `clap`.
//!
//! Go's `flag` package takes `-name=value` as readily as `--name=value`,
//! `--flag`, `--flag=false` but never `--flag false` for a boolean, and
//! writes durations as `500ms` or `1m30s`. Upstream reads a TOML `--config`
//! file whose keys are its options' config names; flags given on the
//! command line win over the file.
//!
//! A program declares each option once, as a field of a clap-derived struct:
//! its doc comment is the help, `long` the flag, `default_value` the
//! default, the field's type (or `value_parser`) the parser, and the field's
//! name (its clap id) the config-file key. A `bool` field is a Go boolean
//! flag, and a `Duration` field takes a bare integer in the file as
//! milliseconds, as upstream's config files have it.

use crate::logging::{LogFormat, LogLevel, Logging};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use std::any::TypeId;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use nsq::config::{parse_bool, parse_duration};

/// Writes a duration the way Go prints one (`1m0s`, `250ms`, `1h0m0s`).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return match ns {
            n if n < 1_000 => format!("{n}ns"),
            n if n < 1_000_000 => format!("{}µs", trim_float(n as f64 / 1e3)),
            n => format!("{}ms", trim_float(n as f64 / 1e6)),
        };
    }
    let secs = d.as_secs_f64();
    let h = (secs / 3600.0).floor();
    let m = ((secs - h * 3600.0) / 60.0).floor();
    let s = secs - h * 3600.0 - m * 60.0;
    match (h as u64, m as u64) {
        (0, 0) => format!("{}s", trim_float(s)),
        (0, m) => format!("{m}m{}s", trim_float(s)),
        (h, m) => format!("{h}h{m}m{}s", trim_float(s)),
    }
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The machine's hostname, the default `--broadcast-address`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Rewrites `-long-name[=v]` to `--long-name[=v]`; single letters (`-n`),
/// negative numbers and a lone `-` stay as they are. Everything after `--` is
/// left alone.
pub fn normalize_dashes<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut literal = false;
    for (i, arg) in args.into_iter().enumerate() {
        let Some(s) = arg.to_str().filter(|_| i > 0 && !literal) else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            literal = true;
            out.push(arg);
            continue;
        }
        let name = s
            .strip_prefix('-')
            .filter(|r| !r.starts_with('-'))
            .map(|r| r.split('=').next().unwrap_or(""));
        match name {
            Some(n) if n.len() > 1 && n.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                out.push(format!("-{s}").into())
            }
            _ => out.push(arg),
        }
    }
    out
}

/// The flags every daemon has besides its options.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonFlags {
    /// Path to a TOML config file; flags given on the command line win.
    #[arg(long, default_value = "")]
    pub config: String,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Log line format: text (upstream's) or json (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl DaemonFlags {
    /// What a daemon's `main` does once its command line is parsed: for
    /// `--version`, print `version_line` and exit; else start logging, and
    /// say which keys of the config file were ignored.
    pub fn begin(
        &self,
        version_line: &str,
        level: LogLevel,
        prefix: &str,
        parsed: Parsed,
    ) -> Logging {
        if self.version {
            println!("{version_line}");
            std::process::exit(0);
        }
        let logging = Logging::init(level, prefix, self.log_format);
        for key in parsed.ignored_config_keys {
            tracing::warn!(key, "config file key not recognised; ignored");
        }
        logging
    }
}

/// A path flag that may be empty, as Go's string flags may (clap's own
/// parser of paths refuses an empty one).
pub fn parse_path(text: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(text))
}

/// A duration as `/config` shows it: nanoseconds, as Go marshals a
/// `time.Duration`. For `#[serde(serialize_with = "as_nanos")]`.
pub fn as_nanos<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_nanos() as u64)
}

/// What [`try_parse`] produced besides the options.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Keys of the config file that match no flag; upstream ignores them too.
    pub ignored_config_keys: Vec<String>,
}

/// Parses a command line as [`try_parse`] does, exiting with clap's message
/// on bad input, as a command-line program should. For programs without
/// `--config` (the tools).
pub fn parse<T: CommandFactory + FromArgMatches>(args: impl IntoIterator<Item = OsString>) -> T {
    match try_parse(args) {
        Ok((value, _)) => value,
        Err(e) => e.exit(),
    }
}

/// Parses the command line (both dash styles) and, when a `--config` flag
/// names a file, the TOML in it for every flag not given on the command line.
pub fn try_parse<T: CommandFactory + FromArgMatches>(
    args: impl IntoIterator<Item = OsString>,
) -> Result<(T, Parsed), clap::Error> {
    let args = normalize_dashes(args);
    let cmd = go_style(T::command());
    let matches = match cmd.clone().try_get_matches_from(&args) {
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            return Err(help(T::command(), &args[0]).unwrap_or(e))
        }
        matches => matches?,
    };
    let mut parsed = Parsed::default();
    let config_path = matches
        .try_get_one::<String>("config")
        .ok()
        .flatten()
        .filter(|p| !p.is_empty());
    let matches = match config_path {
        None => matches,
        Some(path) => {
            let from_file = config_args(&cmd, &matches, path, &mut parsed)?;
            let mut merged = vec![args[0].clone()];
            merged.extend(from_file);
            merged.extend(args.into_iter().skip(1));
            cmd.try_get_matches_from(merged)?
        }
    };
    let value = T::from_arg_matches(&matches)?;
    Ok((value, parsed))
}

/// The options `T` declares as their defaults: what an empty command line gives.
pub fn defaults<T: clap::Args + FromArgMatches>() -> T {
    let cmd = go_style(T::augment_args(Command::new("defaults")));
    let matches = cmd
        .try_get_matches_from(["defaults"])
        .expect("declared defaults parse");
    T::from_arg_matches(&matches).expect("declared defaults parse")
}

/// The `--help` of `cmd` as declared: boolean flags shown bare (`--verbose`,
/// not `--verbose[=<VERBOSE>] [default: false]`, which is how the Go-style
/// parser sees them) and no `[default: ""]`.
fn help(cmd: Command, program: &OsString) -> Option<clap::Error> {
    quiet_empty_defaults(cmd)
        .try_get_matches_from([program.clone(), "--help".into()])
        .err()
        .filter(|e| e.kind() == clap::error::ErrorKind::DisplayHelp)
}

/// Help says nothing of a default that is the empty string.
fn quiet_empty_defaults(cmd: Command) -> Command {
    cmd.mut_args(|arg| {
        let defaults = arg.get_default_values();
        if !defaults.is_empty() && defaults.iter().all(|d| d.is_empty()) {
            arg.hide_default_value(true)
        } else {
            arg
        }
    })
}

/// `cmd` with Go's syntax for its boolean flags (clap's `SetTrue` ones):
/// `--flag` or `--flag=<bool>` in any of Go's spellings, false unless a
/// default is declared.
fn go_style(cmd: Command) -> Command {
    cmd.mut_args(|arg| {
        if !matches!(arg.get_action(), ArgAction::SetTrue) {
            return arg;
        }
        let declared_default = !arg.get_default_values().is_empty();
        let arg = arg
            .action(ArgAction::Set)
            .value_parser(parse_bool)
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true");
        if declared_default {
            arg
        } else {
            arg.default_value("false")
        }
    })
}

/// The flag a config-file key sets: the option of that name (its clap id),
/// or else the flag spelled as the key with `-` for `_`.
fn arg_for_key<'a>(cmd: &'a Command, key: &str) -> Option<&'a Arg> {
    let flag = key.replace('_', "-");
    let long = |a: &&Arg| a.get_long().is_some();
    cmd.get_arguments()
        .filter(long)
        .find(|a| a.get_id() == key)
        .or_else(|| {
            cmd.get_arguments()
                .find(|a| a.get_long() == Some(flag.as_str()))
        })
}

fn config_args(
    cmd: &Command,
    matches: &ArgMatches,
    path: &str,
    parsed: &mut Parsed,
) -> Result<Vec<OsString>, clap::Error> {
    let io_err = |msg: String| clap::Error::raw(clap::error::ErrorKind::Io, format!("{msg}\n"));
    let text = std::fs::read_to_string(path)
        .map_err(|e| io_err(format!("failed to read config file {path}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| io_err(format!("failed to parse config file {path}: {e}")))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let Some(arg) = arg_for_key(cmd, &key) else {
            parsed.ignored_config_keys.push(key);
            continue;
        };
        if matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = arg.get_long().expect("found by a long name");
        let is_duration = arg.get_value_parser().type_id() == TypeId::of::<Duration>();
        let values = match value {
            toml::Value::Array(items) => items,
            single => vec![single],
        };
        for item in values {
            let text = match item {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) if is_duration => format!("{n}ms"),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(io_err(format!(
                        "config key {key}: unsupported value {other}"
                    )))
                }
            };
            out.push(format!("--{flag}={text}").into());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(format_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn single_dash_long_flags() {
        let args = [
            "nsqd",
            "-tcp-address=1:2",
            "-n",
            "5",
            "--x",
            "-1",
            "-",
            "--",
            "-keep",
        ];
        let out = normalize_dashes(args.iter().map(OsString::from));
        let out: Vec<_> = out.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            out,
            [
                "nsqd",
                "--tcp-address=1:2",
                "-n",
                "5",
                "--x",
                "-1",
                "-",
                "--",
                "-keep"
            ]
        );
    }

    #[derive(Debug, PartialEq, clap::Parser)]
    struct Demo {
        #[arg(long, default_value = "")]
        config: String,
        #[arg(long)]
        verbose: bool,
        #[arg(long, default_value_t = true)]
        snappy: bool,
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        msg_timeout: Duration,
        #[arg(long = "lookupd-tcp-address")]
        nsqlookupd_tcp_addresses: Vec<String>,
        #[arg(long, default_value_t = 1)]
        count: u32,
    }

    fn demo(args: &[&str]) -> Result<(Demo, Parsed), clap::Error> {
        try_parse(["demo"].iter().chain(args).map(OsString::from))
    }

    #[test]
    fn booleans_as_go_writes_them() {
        let defaults = defaults::<Demo>();
        assert!(!defaults.verbose && defaults.snappy);
        assert_eq!(demo(&[]).unwrap().0, defaults);
        let (d, _) = demo(&["--verbose", "-snappy=false"]).unwrap();
        assert!(d.verbose && !d.snappy);
        let (d, _) = demo(&["-verbose=T", "--snappy=0"]).unwrap();
        assert!(d.verbose && !d.snappy);
        assert!(
            demo(&["--verbose", "false"]).is_err(),
            "Go takes no separate value"
        );
        assert!(demo(&["--verbose=maybe"]).is_err());
    }

    #[test]
    fn help_shows_flags_without_parser_noise() {
        let err = demo(&["--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = err.to_string();
        assert!(help.contains("--verbose"), "{help}");
        assert!(help.contains("[default: 1s]"), "{help}");
        for noise in ["[default: \"\"]", "[=<", "[default: false]"] {
            assert!(!help.contains(noise), "{noise} in:\n{help}");
        }
    }

    #[test]
    fn config_keys_are_option_names_or_flags_and_the_command_line_wins() {
        let path = std::env::temp_dir().join(format!("flags-demo-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "nsqlookupd_tcp_addresses = [\"a:1\", \"b:2\"]\nmsg_timeout = 1500\nsnappy = false\n\
             count = 7\nverbose = true\nno_such_key = 1\n",
        )
        .unwrap();
        let config = format!("--config={}", path.display());
        let (d, parsed) = demo(&[&config, "--count=5"]).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(d.nsqlookupd_tcp_addresses, ["a:1", "b:2"]);
        assert_eq!(
            d.msg_timeout,
            Duration::from_millis(1500),
            "bare integers are ms"
        );
        assert!(!d.snappy && d.verbose);
        assert_eq!(d.count, 5);
        assert_eq!(parsed.ignored_config_keys, ["no_such_key"]);
    }
}
