//! Publishes stdin to a topic, one message per delimited piece, as upstream's
//! `to_nsq`. Every piece goes to every nsqd given (a copy each, not a
//! balance), in order, each publish waiting for its OK.

use bytes::Bytes;
use clap::Parser;
use nsq_daemon::logging::LogLevel;
use nsq_daemon::logging::{LogFormat, Logging};
use nsq_daemon::signals::wait_for_signal;
use nsq_daemon::version_line;
use nsq_tools::throttle::Throttle;
use nsq_tools::{fatal, log, user_agent, Progress};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, BufReader};

const PREFIX: &str = "[to_nsq] ";

#[derive(Debug, Parser)]
#[command(name = "to_nsq", about = "Publishes stdin to an NSQ topic")]
struct Opts {
    /// NSQ topic to publish to
    #[arg(long, default_value = "")]
    topic: String,
    /// character to split input from stdin
    #[arg(long, default_value = "\n")]
    delimiter: String,
    /// destination nsqd TCP address (may be given multiple times)
    #[arg(long)]
    nsqd_tcp_address: Vec<String>,
    /// Throttle messages to n/second. 0 to disable
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// option to pass to the producer as name,value, by go-nsq's names (may be given multiple times)
    #[arg(long)]
    producer_opt: Vec<String>,
    /// print version string
    #[arg(long)]
    version: bool,
}

#[tokio::main]
async fn main() {
    let opts = nsq_daemon::flags::parse::<Opts>(std::env::args_os());
    if opts.version {
        println!("{}", version_line("to_nsq"));
        return;
    }
    if opts.topic.is_empty() {
        fatal(PREFIX, "--topic required");
    }
    let &[delimiter] = opts.delimiter.as_bytes() else {
        fatal(PREFIX, "--delimiter must be a single byte");
    };
    if opts.nsqd_tcp_address.is_empty() {
        fatal(PREFIX, "--nsqd-tcp-address required");
    }
    let _logging = Logging::init(LogLevel::Info, PREFIX, LogFormat::Text);
    let mut config = nsq::Config {
        user_agent: user_agent("to_nsq"),
        ..nsq::Config::default()
    };
    if let Err(e) = config.apply_options(opts.producer_opt.iter().map(String::as_str)) {
        fatal(PREFIX, format_args!("failed to parse --producer-opt - {e}"));
    }
    let producers: Vec<nsq::Producer> = opts
        .nsqd_tcp_address
        .iter()
        .map(|addr| {
            nsq::Producer::new(addr.as_str(), config.clone()).unwrap_or_else(|e| {
                fatal(PREFIX, format_args!("failed to create nsq.Producer - {e}"))
            })
        })
        .collect();
    let throttle = Throttle::new(opts.rate, Instant::now());
    if throttle.is_some() {
        log(
            PREFIX,
            format_args!("Throttling messages rate to max:{}/second", opts.rate),
        );
    }

    let published = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(PREFIX, published.clone());
    let result = tokio::select! {
        result = publish_stdin(&opts.topic, delimiter, &producers, throttle, &published) => result,
        _ = wait_for_signal() => Ok(()),
    };
    progress.finish();
    for producer in &producers {
        producer.stop().await;
    }
    if let Err(e) = result {
        fatal(PREFIX, e);
    }
}

/// Reads stdin to its end, publishing each non-empty piece without its
/// delimiter (the last piece needs none).
async fn publish_stdin(
    topic: &str,
    delimiter: u8,
    producers: &[nsq::Producer],
    mut throttle: Option<Throttle>,
    published: &AtomicU64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut stdin = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
    let mut piece = Vec::new();
    loop {
        piece.clear();
        if stdin.read_until(delimiter, &mut piece).await? == 0 {
            return Ok(());
        }
        if piece.last() == Some(&delimiter) {
            piece.pop();
        }
        if piece.is_empty() {
            continue;
        }
        if let Some(throttle) = throttle.as_mut() {
            throttle.wait().await;
        }
        let body = Bytes::copy_from_slice(&piece);
        for producer in producers {
            producer.publish(topic, body.clone()).await?;
        }
        published.fetch_add(1, Ordering::Relaxed);
    }
}
