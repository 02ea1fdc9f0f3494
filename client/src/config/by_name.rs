//! [`Config::set`]: options by go-nsq's names, from text, as the tools'
//! `--consumer-opt` and `--producer-opt` give them, with Go's spellings of
//! durations and booleans.

use super::{Config, ConfigError};
use std::time::Duration;

/// The options [`Config::set`] knows, by go-nsq's names.
const OPTION_NAMES: &[&str] = &[
    "dial_timeout",
    "read_timeout",
    "write_timeout",
    "heartbeat_interval",
    "output_buffer_size",
    "output_buffer_timeout",
    "msg_timeout",
    "sample_rate",
    "user_agent",
    "client_id",
    "hostname",
    "snappy",
    "deflate",
    "deflate_level",
    "max_msg_size",
    "tls_v1",
    "tls_root_ca_file",
    "tls_cert",
    "tls_key",
    "tls_insecure_skip_verify",
    "tls_min_version",
    "tls_server_name",
    "auth_secret",
    "max_in_flight",
    "max_attempts",
    "default_requeue_delay",
    "max_requeue_delay",
    "backoff_multiplier",
    "max_backoff_duration",
    "backoff_strategy",
    "lookupd_poll_interval",
    "lookupd_poll_jitter",
    "lookupd_poll_timeout",
    "rdy_redistribute_interval",
    "low_rdy_idle_timeout",
    "low_rdy_timeout",
];

impl Config {
    /// Sets an option by go-nsq's name from text, as the tools'
    /// `--consumer-opt=name,value` and `--producer-opt=name,value` do.
    /// Durations are Go durations (`500ms`, `1m`); `-1` turns off the options
    /// that can be off (heartbeat, output buffering, msg_timeout).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        fn bad(field: &'static str, e: impl std::fmt::Display) -> ConfigError {
            ConfigError {
                field,
                problem: e.to_string(),
            }
        }
        let field: &'static str = OPTION_NAMES
            .iter()
            .find(|option| **option == name)
            .ok_or_else(|| ConfigError {
                field: "option",
                problem: format!("{name:?} is not an option"),
            })?;
        let duration = || parse_duration(value).map_err(|e| bad(field, e));
        let optional = || {
            if value == "-1" {
                Ok(None)
            } else {
                duration().map(Some)
            }
        };
        let number = |v: &str| v.parse::<u64>().map_err(|e| bad(field, e));
        match field {
            "dial_timeout" => self.dial_timeout = duration()?,
            "read_timeout" => self.read_timeout = duration()?,
            "write_timeout" => self.write_timeout = duration()?,
            "heartbeat_interval" => self.heartbeat_interval = optional()?,
            "output_buffer_timeout" => self.output_buffer_timeout = optional()?,
            "msg_timeout" => self.msg_timeout = optional()?,
            "output_buffer_size" => {
                self.output_buffer_size = if value == "-1" {
                    None
                } else {
                    Some(u32::try_from(number(value)?).map_err(|e| bad(field, e))?)
                }
            }
            "sample_rate" => {
                self.sample_rate = u8::try_from(number(value)?).map_err(|e| bad(field, e))?
            }
            "user_agent" => self.user_agent = value.to_string(),
            "client_id" => self.client_id = value.to_string(),
            "hostname" => self.hostname = value.to_string(),
            "snappy" => self.snappy = parse_bool(value).map_err(|e| bad(field, e))?,
            "deflate" => self.deflate = parse_bool(value).map_err(|e| bad(field, e))?,
            "deflate_level" => {
                self.deflate_level = u8::try_from(number(value)?).map_err(|e| bad(field, e))?
            }
            "max_msg_size" => {
                self.max_msg_size = u32::try_from(number(value)?).map_err(|e| bad(field, e))?
            }
            "tls_v1" => self.tls_v1 = parse_bool(value).map_err(|e| bad(field, e))?,
            "tls_root_ca_file" => self.tls.root_ca_file = Some(value.into()),
            "tls_cert" => self.tls.cert = Some(value.into()),
            "tls_key" => self.tls.key = Some(value.into()),
            "tls_insecure_skip_verify" => {
                self.tls.insecure_skip_verify = parse_bool(value).map_err(|e| bad(field, e))?
            }
            "tls_min_version" => {
                self.tls.min_version =
                    crate::tls::TlsVersion::parse(value).map_err(|e| bad(field, e))?
            }
            "tls_server_name" => self.tls.server_name = Some(value.to_string()),
            "auth_secret" => self.auth_secret = Some(value.into()),
            "max_in_flight" => {
                self.max_in_flight = u32::try_from(number(value)?).map_err(|e| bad(field, e))?
            }
            "max_attempts" => {
                self.max_attempts = u16::try_from(number(value)?).map_err(|e| bad(field, e))?
            }
            "default_requeue_delay" => self.default_requeue_delay = duration()?,
            "max_requeue_delay" => self.max_requeue_delay = duration()?,
            "backoff_multiplier" => self.backoff_multiplier = duration()?,
            "max_backoff_duration" => self.max_backoff_duration = duration()?,
            "backoff_strategy" => self.backoff_strategy = value.parse()?,
            "lookupd_poll_interval" => self.lookupd_poll_interval = duration()?,
            "lookupd_poll_jitter" => {
                self.lookupd_poll_jitter = value.parse().map_err(|e| bad(field, e))?
            }
            "lookupd_poll_timeout" => self.lookupd_poll_timeout = duration()?,
            "rdy_redistribute_interval" => self.rdy_redistribute_interval = duration()?,
            "low_rdy_idle_timeout" => self.low_rdy_idle_timeout = duration()?,
            _ => self.low_rdy_timeout = duration()?,
        }
        Ok(())
    }

    /// Applies `name,value` pairs (the tools' repeatable `--consumer-opt`).
    pub fn apply_options<'a>(
        &mut self,
        pairs: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        for pair in pairs {
            let (name, value) = pair.split_once(',').ok_or_else(|| ConfigError {
                field: "option",
                problem: format!("{pair:?} is not name,value"),
            })?;
            self.set(name, value)?;
        }
        self.validate()
    }
}

/// Parses a Go duration: `300ms`, `1.5h`, `2h45m`, `0`. Units: ns, us, µs, ms, s, m, h.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
    }
    if total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Parses a Go boolean, as `strconv.ParseBool`: `1`, `t`, `true`, `0`, `f`, `false`...
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackoffStrategy, Secret};

    #[test]
    fn go_durations_and_booleans() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        for bad in ["", "5", "1x", "-1s", "s", "1..5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!((parse_bool("T"), parse_bool("0")), (Ok(true), Ok(false)));
        assert!(parse_bool("yes").is_err());
    }

    #[test]
    fn go_nsq_option_strings() {
        let mut c = Config::default();
        c.apply_options([
            "max_in_flight,50",
            "lookupd_poll_interval,15s",
            "heartbeat_interval,-1",
            "snappy,true",
            "backoff_strategy,full_jitter",
        ])
        .unwrap();
        assert_eq!(
            (c.max_in_flight, c.lookupd_poll_interval),
            (50, Duration::from_secs(15))
        );
        assert_eq!((c.heartbeat_interval, c.snappy), (None, true));
        assert_eq!(c.backoff_strategy, BackoffStrategy::FullJitter);
        c.set("backoff_strategy", "exponential").unwrap();
        assert_eq!(c.backoff_strategy, BackoffStrategy::Exponential);
        let err = c.set("backoff_strategy", "linear").unwrap_err();
        assert_eq!(err.field, "backoff_strategy");
        assert!(c.apply_options(["no_such_option,1"]).is_err());
        let mut c = Config::default();
        c.apply_options([
            "tls_v1,true",
            "tls_insecure_skip_verify,true",
            "tls_min_version,tls1.3",
            "auth_secret,hunter2",
        ])
        .unwrap();
        assert!(c.tls_v1 && c.tls.insecure_skip_verify && c.identify().tls_v1);
        assert_eq!(c.tls.min_version, crate::tls::TlsVersion::Tls13);
        assert_eq!(c.auth_secret, Some(Secret("hunter2".into())));
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "secrets stay out of logs"
        );
        assert!(c.apply_options(["tls_min_version,tls9"]).is_err());
        let err = c
            .apply_options([
                "tls_root_ca_file,/nonexistent/ca.pem",
                "tls_insecure_skip_verify,false",
            ])
            .unwrap_err();
        assert_eq!(err.field, "tls");
        assert!(c.apply_options(["max_in_flight"]).is_err());
        assert!(c.apply_options(["max_in_flight,lots"]).is_err());
    }
}
