use nsqlookupd::cli::Args;
use nsqlookupd::{LogLevel, Lookupd, VERSION};
use std::io::{IsTerminal, Write};
use tracing_subscriber::{filter::LevelFilter, prelude::*};

fn main() {
    let (args, ignored_keys) =
        Args::parse_from_os(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if args.version {
        println!("nsqlookupd v{VERSION} (rust)");
        return;
    }
    let opts = args.into_options();
    let prefix = opts.log_prefix.clone();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(move || Prefixed {
            prefix: prefix.clone(),
        })
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(level_filter(opts.log_level))
        .with(fmt)
        .init();
    for key in ignored_keys {
        tracing::warn!(key, "config file key not recognised; ignored");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(async move {
        let lookupd = match Lookupd::start(opts).await {
            Ok(lookupd) => lookupd,
            Err(e) => {
                tracing::error!(error = %e, "failed to start");
                return 1;
            }
        };
        wait_for_signal().await;
        lookupd.shutdown().await;
        0
    });
    std::process::exit(code);
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error | LogLevel::Fatal => LevelFilter::ERROR,
    }
}

async fn wait_for_signal() {
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
