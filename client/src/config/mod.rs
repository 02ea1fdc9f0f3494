//! Options shared by [`Producer`](crate::Producer) and [`Consumer`](crate::Consumer),
//! with go-nsq's names, defaults and ranges.

use crate::protocol::IdentifyRequest;
use crate::tls::TlsClientOptions;
use std::time::Duration;

mod by_name;
pub use by_name::{parse_bool, parse_duration};

/// How a producer or consumer talks to nsqd. Build one with `Config::default()`,
/// change the fields you need, and the constructors validate it.
///
/// ```
/// use std::time::Duration;
///
/// let mut config = nsq::Config {
///     max_in_flight: 100,
///     msg_timeout: Some(Duration::from_secs(120)),
///     snappy: true,
///     ..nsq::Config::default()
/// };
/// // Or by go-nsq's option names, as text (the tools' --consumer-opt):
/// config.set("max_attempts", "10")?;
/// config.set("lookupd_poll_interval", "30s")?;
/// config.validate()?;
/// assert_eq!(config.max_attempts, 10);
/// # Ok::<(), nsq::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Time to establish a TCP connection.
    pub dial_timeout: Duration,
    /// Longest silence accepted from nsqd; must exceed `heartbeat_interval`.
    pub read_timeout: Duration,
    /// Longest time a write may take.
    pub write_timeout: Duration,

    /// How often nsqd sends heartbeats; `None` disables them.
    pub heartbeat_interval: Option<Duration>,
    /// Bytes nsqd buffers before writing to this client; `None` disables buffering.
    pub output_buffer_size: Option<u32>,
    /// How long nsqd may hold buffered messages; `None` disables buffering.
    pub output_buffer_timeout: Option<Duration>,
    /// How long nsqd waits for FIN before redelivering; `None` = nsqd's default.
    pub msg_timeout: Option<Duration>,
    /// Percentage (0-99) of the channel's messages nsqd delivers to this
    /// consumer; 0 = all of them.
    pub sample_rate: u8,
    pub user_agent: String,
    pub client_id: String,
    pub hostname: String,
    /// Snappy-compress the connection (exclusive with `deflate`).
    pub snappy: bool,
    /// DEFLATE-compress the connection, at `deflate_level` (1-9).
    pub deflate: bool,
    pub deflate_level: u8,
    /// Largest frame accepted from nsqd in bytes; 0 = no client-side limit.
    pub max_msg_size: u32,
    /// Ask nsqd to upgrade the connection to TLS (`tls_v1`). nsqd decides:
    /// without a certificate it stays plain.
    pub tls_v1: bool,
    /// How nsqd's certificate is checked and which client certificate is
    /// shown (`tls_root_ca_file`, `tls_cert`, `tls_key`,
    /// `tls_insecure_skip_verify`, `tls_min_version`).
    pub tls: TlsClientOptions,
    /// Sent with AUTH when nsqd requires it (`auth_secret`).
    pub auth_secret: Option<Secret>,

    /// Messages a consumer has in flight at once, across all its connections.
    pub max_in_flight: u32,
    /// Deliveries after which a message is given to the failure hook and
    /// finished instead of handled; 0 = unlimited.
    pub max_attempts: u16,
    /// A failed message is requeued after `default_requeue_delay × attempts`...
    pub default_requeue_delay: Duration,
    /// ...capped at this.
    pub max_requeue_delay: Duration,
    /// Consumer backoff lasts `backoff_multiplier × 2^level`...
    pub backoff_multiplier: Duration,
    /// ...capped at this.
    pub max_backoff_duration: Duration,
    /// Whether backoff waits exactly that long or a random part of it.
    pub backoff_strategy: BackoffStrategy,
    /// How often lookupd is polled (and the slowest reconnect to an nsqd).
    pub lookupd_poll_interval: Duration,
    /// Fraction (0-1) of the poll interval used as random delay before the first poll.
    pub lookupd_poll_jitter: f64,
    /// Time allowed for one lookupd request.
    pub lookupd_poll_timeout: Duration,
    /// How often RDY is redistributed when connections outnumber `max_in_flight`.
    pub rdy_redistribute_interval: Duration,
    /// A connection with RDY but no message for this long gives its RDY back
    /// (during redistribution only).
    pub low_rdy_idle_timeout: Duration,
    /// A connection that has held RDY this long gives it back (during
    /// redistribution only).
    pub low_rdy_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let hostname = hostname();
        Config {
            dial_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(1),
            heartbeat_interval: Some(Duration::from_secs(30)),
            output_buffer_size: Some(16 * 1024),
            output_buffer_timeout: Some(Duration::from_millis(250)),
            msg_timeout: None,
            sample_rate: 0,
            user_agent: format!("nsq-rs/{}", env!("CARGO_PKG_VERSION")),
            client_id: hostname.split('.').next().unwrap_or_default().to_string(),
            hostname,
            snappy: false,
            deflate: false,
            deflate_level: 6,
            max_msg_size: 0,
            tls_v1: false,
            tls: TlsClientOptions::default(),
            auth_secret: None,
            max_in_flight: 1,
            max_attempts: 5,
            default_requeue_delay: Duration::from_secs(90),
            max_requeue_delay: Duration::from_secs(15 * 60),
            backoff_multiplier: Duration::from_secs(1),
            max_backoff_duration: Duration::from_secs(2 * 60),
            backoff_strategy: BackoffStrategy::Exponential,
            lookupd_poll_interval: Duration::from_secs(60),
            lookupd_poll_jitter: 0.3,
            lookupd_poll_timeout: Duration::from_secs(60),
            rdy_redistribute_interval: Duration::from_secs(5),
            low_rdy_idle_timeout: Duration::from_secs(10),
            low_rdy_timeout: Duration::from_secs(30),
        }
    }
}

/// How long a consumer backs off at each level (go-nsq's `backoff_strategy`).
///
/// ```
/// use nsq::config::BackoffStrategy;
///
/// let config = nsq::Config {
///     backoff_strategy: "full_jitter".parse()?,
///     ..nsq::Config::default()
/// };
/// assert_eq!(config.backoff_strategy, BackoffStrategy::FullJitter);
/// # Ok::<(), nsq::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackoffStrategy {
    /// `backoff_multiplier × 2^level` (`exponential`).
    #[default]
    Exponential,
    /// A random wait below `backoff_multiplier × 2^level` (`full_jitter`), so
    /// that consumers which failed together do not all retry together.
    FullJitter,
}

impl std::str::FromStr for BackoffStrategy {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "" | "exponential" => Ok(BackoffStrategy::Exponential),
            "full_jitter" => Ok(BackoffStrategy::FullJitter),
            other => Err(ConfigError {
                field: "backoff_strategy",
                problem: format!("{other:?} is not exponential or full_jitter"),
            }),
        }
    }
}

/// An AUTH secret; `Debug` never shows it, so configs can be logged.
///
/// ```
/// let config = nsq::Config {
///     auth_secret: Some("hunter2".into()),
///     ..nsq::Config::default()
/// };
/// assert!(!format!("{config:?}").contains("hunter2"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Secret {
        Secret(secret.to_string())
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Secret {
        Secret(secret)
    }
}

/// A [`Config`] field outside its allowed range.
///
/// ```
/// let config = nsq::Config {
///     sample_rate: 100,
///     ..nsq::Config::default()
/// };
/// let err: nsq::ConfigError = config.validate().unwrap_err();
/// assert_eq!(err.field, "sample_rate");
/// assert_eq!(err.to_string(), "invalid config: sample_rate must be 0..=99");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {field} {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: String,
}

fn check(ok: bool, field: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            problem: problem.into(),
        })
    }
}

fn within(
    value: Duration,
    min: Duration,
    max: Duration,
    field: &'static str,
) -> Result<(), ConfigError> {
    check(
        value >= min && value <= max,
        field,
        format!("{value:?} is outside {min:?}..={max:?}"),
    )
}

const MS: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_secs(60);

impl Config {
    /// Checks every field against go-nsq's ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(!self.dial_timeout.is_zero(), "dial_timeout", "must be > 0")?;
        within(self.read_timeout, 100 * MS, 5 * MINUTE, "read_timeout")?;
        within(self.write_timeout, 100 * MS, 5 * MINUTE, "write_timeout")?;
        if let Some(hb) = self.heartbeat_interval {
            check(hb >= MS, "heartbeat_interval", "must be at least 1ms")?;
            check(
                hb < self.read_timeout,
                "heartbeat_interval",
                format!("{hb:?} must be below read_timeout {:?}", self.read_timeout),
            )?;
        }
        check(self.sample_rate <= 99, "sample_rate", "must be 0..=99")?;
        check(
            !(self.snappy && self.deflate),
            "snappy",
            "and deflate cannot both be enabled",
        )?;
        check(
            (1..=9).contains(&self.deflate_level),
            "deflate_level",
            "must be 1..=9",
        )?;
        within(
            self.default_requeue_delay,
            Duration::ZERO,
            60 * MINUTE,
            "default_requeue_delay",
        )?;
        within(
            self.max_requeue_delay,
            Duration::ZERO,
            60 * MINUTE,
            "max_requeue_delay",
        )?;
        within(
            self.backoff_multiplier,
            Duration::ZERO,
            60 * MINUTE,
            "backoff_multiplier",
        )?;
        within(
            self.max_backoff_duration,
            Duration::ZERO,
            60 * MINUTE,
            "max_backoff_duration",
        )?;
        within(
            self.lookupd_poll_interval,
            10 * MS,
            5 * MINUTE,
            "lookupd_poll_interval",
        )?;
        check(
            (0.0..=1.0).contains(&self.lookupd_poll_jitter),
            "lookupd_poll_jitter",
            "must be 0..=1",
        )?;
        check(
            !self.lookupd_poll_timeout.is_zero(),
            "lookupd_poll_timeout",
            "must be > 0",
        )?;
        within(
            self.rdy_redistribute_interval,
            MS,
            Duration::from_secs(5),
            "rdy_redistribute_interval",
        )?;
        within(
            self.low_rdy_idle_timeout,
            MS,
            5 * MINUTE,
            "low_rdy_idle_timeout",
        )?;
        within(self.low_rdy_timeout, MS, 5 * MINUTE, "low_rdy_timeout")?;
        if self.tls_v1 {
            // Loads the files now, so that a bad path fails here, not at connect.
            self.tls.client_config().map_err(|e| ConfigError {
                field: "tls",
                problem: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The IDENTIFY body for this configuration.
    pub(crate) fn identify(&self) -> IdentifyRequest {
        let ms = |d: Option<Duration>| d.map_or(-1, |d| d.as_millis() as i64);
        IdentifyRequest {
            client_id: self.client_id.clone(),
            hostname: self.hostname.clone(),
            user_agent: self.user_agent.clone(),
            feature_negotiation: true,
            heartbeat_interval: ms(self.heartbeat_interval),
            output_buffer_size: self.output_buffer_size.map_or(-1, i64::from),
            output_buffer_timeout: ms(self.output_buffer_timeout),
            tls_v1: self.tls_v1,
            snappy: self.snappy,
            deflate: self.deflate,
            deflate_level: self.deflate_level.into(),
            sample_rate: self.sample_rate.into(),
            msg_timeout: self.msg_timeout.map_or(0, |d| d.as_millis() as i64),
        }
    }

    /// The delay of a requeue after a failed attempt: `default_requeue_delay ×
    /// attempts`, capped at `max_requeue_delay`.
    pub fn requeue_delay(&self, attempts: u16) -> Duration {
        self.default_requeue_delay
            .saturating_mul(attempts.max(1).into())
            .min(self.max_requeue_delay)
    }

    /// Backoff duration at `level` (≥ 1): `backoff_multiplier × 2^level`.
    pub(crate) fn backoff_duration(&self, level: u32) -> Duration {
        self.backoff_multiplier
            .saturating_mul(1u32.checked_shl(level).unwrap_or(u32::MAX))
    }

    /// How long to back off at `level`: the backoff duration capped at
    /// `max_backoff_duration`, or with `full_jitter` a random wait below that.
    pub(crate) fn backoff_wait(&self, level: u32) -> Duration {
        let ceiling = self.backoff_duration(level).min(self.max_backoff_duration);
        match self.backoff_strategy {
            BackoffStrategy::Exponential => ceiling,
            BackoffStrategy::FullJitter => {
                let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rand::random_range(0..nanos.max(1)))
            }
        }
    }
}

/// The machine's host name, as go-nsq's default `hostname` and `client_id`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_go_nsq() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.max_in_flight, 1);
        assert_eq!(c.max_attempts, 5);
        assert!(!c.client_id.contains('.'));
        let id = c.identify();
        assert!(id.feature_negotiation);
        assert_eq!(
            (id.heartbeat_interval, id.output_buffer_timeout),
            (30_000, 250)
        );
    }

    #[test]
    fn rejects_out_of_range_values() {
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(
            bad(|c| c.read_timeout = Duration::from_millis(5)).field,
            "read_timeout"
        );
        assert_eq!(
            bad(|c| c.heartbeat_interval = Some(Duration::from_secs(61))).field,
            "heartbeat_interval"
        );
        assert_eq!(
            bad(|c| {
                c.snappy = true;
                c.deflate = true
            })
            .field,
            "snappy"
        );
        assert_eq!(bad(|c| c.deflate_level = 0).field, "deflate_level");
        assert_eq!(bad(|c| c.sample_rate = 100).field, "sample_rate");
        assert_eq!(
            bad(|c| c.lookupd_poll_jitter = 1.5).field,
            "lookupd_poll_jitter"
        );
        let err = bad(|c| c.max_requeue_delay = Duration::from_secs(7200));
        assert!(err.to_string().contains("max_requeue_delay"), "{err}");
    }

    #[test]
    fn requeue_and_backoff_durations() {
        let c = Config::default();
        assert_eq!(c.requeue_delay(1), Duration::from_secs(90));
        assert_eq!(c.requeue_delay(2), Duration::from_secs(180));
        assert_eq!(c.requeue_delay(100), Duration::from_secs(900));
        assert_eq!(c.backoff_duration(1), Duration::from_secs(2));
        assert_eq!(c.backoff_duration(3), Duration::from_secs(8));
        assert_eq!(c.backoff_wait(3), Duration::from_secs(8));
        assert_eq!(c.backoff_wait(10), Duration::from_secs(120), "capped");
    }

    #[test]
    fn full_jitter_waits_a_random_part_of_the_backoff() {
        let c = Config {
            backoff_strategy: BackoffStrategy::FullJitter,
            ..Config::default()
        };
        for (level, ceiling) in [(1, 2), (3, 8), (10, 120)] {
            let ceiling = Duration::from_secs(ceiling);
            let waits: Vec<Duration> = (0..1000).map(|_| c.backoff_wait(level)).collect();
            assert!(waits.iter().all(|w| *w < ceiling), "level {level}");
            // Spread over the whole range, not stuck at one end.
            assert!(waits.iter().any(|w| *w < ceiling / 4), "level {level}");
            assert!(waits.iter().any(|w| *w > ceiling * 3 / 4), "level {level}");
        }
        let none = Config {
            backoff_multiplier: Duration::ZERO,
            ..c
        };
        assert_eq!(none.backoff_wait(2), Duration::ZERO);
    }
}
