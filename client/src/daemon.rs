//! What the daemons' `main` functions share: logging as upstream's daemons
//! do it (every line behind `--log-prefix`, level changeable at run time),
//! optionally as JSON lines, and waiting for SIGINT or SIGTERM.

use crate::flags::LogLevel;
use std::io::{IsTerminal, Write};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::reload;

/// `--log-format`: upstream's plain lines, or one JSON object per line for
/// log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

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

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error | LogLevel::Fatal => LevelFilter::ERROR,
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
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

/// Accepts TCP connections until `shutdown`, running `handle` on each (with
/// Nagle off), then waits for the connections still open to finish.
pub async fn serve_tcp<F, Fut>(
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
    handle: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(handle(stream, peer));
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "TCP: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
