//! Logging as upstream's daemons do it: every line behind `--log-prefix`,
//! the level changeable at run time, optionally as JSON lines.

use std::io::{IsTerminal, Write};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::reload;

/// Log verbosity as NSQ's daemons name it, numbered as upstream reports it
/// through `/config/log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Fatal = 5,
}

impl LogLevel {
    /// As upstream: case-insensitive, nothing else tolerated.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            "fatal" => Some(LogLevel::Fatal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Fatal => "fatal",
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(text: &str) -> Result<LogLevel, String> {
        LogLevel::parse(text).ok_or_else(|| format!("invalid log level {text:?}"))
    }
}

/// As upstream's `/config/log_level` shows it: the number.
impl serde::Serialize for LogLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(*self as i32)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Called when `PUT /config/log_level` changes the level (nsqd, nsqadmin).
pub type LogLevelHook = Box<dyn Fn(LogLevel) + Send + Sync>;

/// The installed logger; its level can change while running.
pub struct Logging {
    level: reload::Handle<LevelFilter, tracing_subscriber::Registry>,
}

impl Logging {
    /// Installs the global logger on stderr. Text lines start with `prefix`
    /// (JSON lines carry it as a field) and are coloured only on a terminal.
    pub fn init(level: LogLevel, prefix: &str, format: LogFormat) -> Logging {
        let (filter, handle) = reload::Layer::new(level_filter(level));
        let registry = tracing_subscriber::registry().with(filter);
        match format {
            LogFormat::Text => {
                let prefix = prefix.to_string();
                let layer = tracing_subscriber::fmt::layer()
                    .with_writer(move || Prefixed {
                        prefix: prefix.clone(),
                    })
                    .with_target(false)
                    .with_timer(GoTime)
                    .with_ansi(std::io::stderr().is_terminal());
                registry.with(layer).init();
            }
            LogFormat::Json => {
                let layer = tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_current_span(false);
                registry.with(layer).init();
                tracing::debug!(prefix, "logging as JSON");
            }
        }
        Logging { level: handle }
    }

    pub fn set_level(&self, level: LogLevel) {
        let _ = self.level.modify(|filter| *filter = level_filter(level));
    }
}

/// Now, as Go's logger writes it with microseconds (`2006/01/02
/// 15:04:05.000000`, UTC): every text log line of every program, and the
/// tools' own lines, carry this one format.
pub fn timestamp() -> impl std::fmt::Display {
    chrono::Utc::now().format("%Y/%m/%d %H:%M:%S%.6f")
}

/// Stamps text log lines with [`timestamp`].
struct GoTime;

impl tracing_subscriber::fmt::time::FormatTime for GoTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", timestamp())
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error | LogLevel::Fatal => LevelFilter::ERROR,
    }
}

/// Writes each log line to stderr behind `--log-prefix`, as upstream does.
struct Prefixed {
    prefix: String,
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut line = Vec::with_capacity(self.prefix.len() + buf.len());
        line.extend_from_slice(self.prefix.as_bytes());
        line.extend_from_slice(buf);
        std::io::stderr().write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
