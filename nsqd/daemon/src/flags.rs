//! Command lines as NSQ's Go programs accept them, on top of `clap`.
//!
//! Go's `flag` package takes `-name=value` as readily as `--name=value`, writes
//! durations as `500ms` or `1m30s`, and upstream reads a TOML `--config` file
//! whose keys are the flag names with `_` for `-`; flags given on the command
//! line win over the file.

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use std::ffi::OsString;
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

/// How a program's options map onto upstream's config-file keys.
#[derive(Default)]
pub struct ConfigKeys<'a> {
    /// Config keys that differ from the flag name with `_` for `-`: (key, flag).
    pub aliases: &'a [(&'a str, &'a str)],
    /// Flags that take durations: a bare integer in the file means milliseconds.
    pub durations: &'a [&'a str],
}

/// What [`parse`] produced besides the options.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Keys of the config file that match no flag; upstream ignores them too.
    pub ignored_config_keys: Vec<String>,
}

/// Parses the command line (both dash styles) and, when `--config` names a
/// file, the TOML in it for every flag not given on the command line.
/// Exits with clap's message on bad input, as a command-line program should.
pub fn parse<T: CommandFactory + FromArgMatches>(
    args: impl IntoIterator<Item = OsString>,
    keys: &ConfigKeys,
) -> (T, Parsed) {
    match try_parse(args, keys) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    }
}

pub fn try_parse<T: CommandFactory + FromArgMatches>(
    args: impl IntoIterator<Item = OsString>,
    keys: &ConfigKeys,
) -> Result<(T, Parsed), clap::Error> {
    let args = normalize_dashes(args);
    let cmd = T::command();
    let matches = cmd.clone().try_get_matches_from(&args)?;
    let mut parsed = Parsed::default();
    let config_path = matches
        .try_get_one::<String>("config")
        .ok()
        .flatten()
        .filter(|p| !p.is_empty());
    let matches = match config_path {
        None => matches,
        Some(path) => {
            let from_file = config_args(&cmd, &matches, path, keys, &mut parsed)?;
            let mut merged = vec![args[0].clone()];
            merged.extend(from_file);
            merged.extend(args.into_iter().skip(1));
            cmd.try_get_matches_from(merged)?
        }
    };
    let value = T::from_arg_matches(&matches)?;
    Ok((value, parsed))
}

fn config_args(
    cmd: &clap::Command,
    matches: &ArgMatches,
    path: &str,
    keys: &ConfigKeys,
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
        let flag = keys
            .aliases
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, f)| f.to_string())
            .unwrap_or_else(|| key.replace('_', "-"));
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
        else {
            parsed.ignored_config_keys.push(key);
            continue;
        };
        if matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let is_duration = keys.durations.contains(&flag.as_str());
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
}
