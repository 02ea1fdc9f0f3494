//! Prints the messages of one or more topics on stdout, each body followed by
//! a newline, as upstream's `nsq_tail`. By default it reads through its own
//! ephemeral channel, so it takes a copy of the stream without disturbing
//! other consumers and leaves nothing behind.
//!
//! Ours: `--peek` prints what a channel holds instead, its next messages on
//! each nsqd through nsqd's `/channel/peek`, without consuming them.

use clap::Parser;
use nsq_daemon::logging::LogLevel;
use nsq_daemon::logging::{LogFormat, Logging};
use nsq_daemon::signals::wait_for_signal;
use nsq_daemon::version_line;
use nsq_tools::consume::lookupd_producers;
use nsq_tools::{check_sources, fatal, log, user_agent};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const PREFIX: &str = "[nsq_tail] ";

#[derive(Debug, Parser)]
#[command(name = "nsq_tail", about = "Prints the messages of NSQ topics")]
struct Opts {
    /// NSQ topic (may be given multiple times)
    #[arg(long)]
    topic: Vec<String>,
    /// NSQ channel (default: tail<6 random digits>#ephemeral)
    #[arg(long, default_value = "")]
    channel: String,
    /// max number of messages to allow in flight
    #[arg(long, default_value_t = 200)]
    max_in_flight: u32,
    /// total messages to show (will wait if starved); 0 = forever. With --peek: messages per nsqd, 1 to 100 (default 10)
    #[arg(short = 'n', long = "n")]
    n: Option<u64>,
    /// print topic name where message was received
    #[arg(long)]
    print_topic: bool,
    /// nsqd TCP address (may be given multiple times)
    #[arg(long)]
    nsqd_tcp_address: Vec<String>,
    /// nsqd HTTP address, for --peek (may be given multiple times)
    #[arg(long)]
    nsqd_http_address: Vec<String>,
    /// print the channel's next messages on each nsqd without consuming them, then exit (needs --channel)
    #[arg(long)]
    peek: bool,
    /// lookupd HTTP address (may be given multiple times)
    #[arg(long)]
    lookupd_http_address: Vec<String>,
    /// option to pass to the consumer as name,value, by go-nsq's names (may be given multiple times)
    #[arg(long)]
    consumer_opt: Vec<String>,
    /// print version string
    #[arg(long)]
    version: bool,
}

/// Writes messages to stdout and counts them against `-n`, across all topics.
struct Printer {
    limit: u64,
    print_topic: bool,
    shown: Mutex<u64>,
    done: Notify,
}

impl Printer {
    fn handle(&self, topic: &str, msg: &nsq::Message) {
        let mut shown = self.shown.lock().expect("printer lock");
        if self.limit > 0 && *shown >= self.limit {
            // Shown enough: hand it back untouched for whoever reads next.
            msg.disable_auto_response();
            msg.requeue_without_backoff(Some(Duration::ZERO));
            return;
        }
        write_body(self.print_topic, topic, msg.body());
        *shown += 1;
        if *shown == self.limit {
            self.done.notify_one();
        }
    }
}

/// One body and a newline, after `topic | ` with `--print-topic`.
fn write_body(print_topic: bool, topic: &str, body: &[u8]) {
    let mut out = std::io::stdout().lock();
    let written = (|| {
        if print_topic {
            out.write_all(topic.as_bytes())?;
            out.write_all(b" | ")?;
        }
        out.write_all(body)?;
        out.write_all(b"\n")?;
        out.flush()
    })();
    if let Err(e) = written {
        fatal(
            PREFIX,
            format_args!("ERROR: failed to write to os.Stdout - {e}"),
        );
    }
}

#[tokio::main]
async fn main() {
    let mut opts = nsq_daemon::flags::parse::<Opts>(std::env::args_os());
    if opts.version {
        println!("{}", version_line("nsq_tail"));
        return;
    }
    if opts.peek {
        std::process::exit(peek(&opts).await);
    }
    if !opts.nsqd_http_address.is_empty() {
        fatal(PREFIX, "--nsqd-http-address is for --peek");
    }
    let limit = opts.n.unwrap_or(0);
    if opts.channel.is_empty() {
        opts.channel = format!("tail{:06}#ephemeral", rand::random::<u32>() % 999_999);
    }
    if let Err(e) = check_sources(
        "--nsqd-tcp-address",
        &opts.nsqd_tcp_address,
        &opts.lookupd_http_address,
    ) {
        fatal(PREFIX, e);
    }
    if opts.topic.is_empty() {
        fatal(PREFIX, "--topic required");
    }
    let _logging = Logging::init(LogLevel::Info, PREFIX, LogFormat::Text);

    // Don't ask for more messages than we want.
    if limit > 0 && limit < u64::from(opts.max_in_flight) {
        opts.max_in_flight = limit as u32;
    }
    let mut config = nsq::Config {
        max_in_flight: opts.max_in_flight,
        user_agent: user_agent("nsq_tail"),
        ..nsq::Config::default()
    };
    if let Err(e) = config.apply_options(opts.consumer_opt.iter().map(String::as_str)) {
        fatal(PREFIX, format_args!("failed to parse --consumer-opt - {e}"));
    }
    let printer = Arc::new(Printer {
        limit,
        print_topic: opts.print_topic,
        shown: Mutex::new(0),
        done: Notify::new(),
    });

    let mut consumers = Vec::new();
    for topic in &opts.topic {
        log(PREFIX, format_args!("Adding consumer for topic: {topic}"));
        let consumer = nsq::Consumer::new(topic, &opts.channel, config.clone())
            .unwrap_or_else(|e| fatal(PREFIX, e));
        let (printer, topic) = (printer.clone(), topic.clone());
        consumer
            .add_handler(move |msg: nsq::Message| {
                printer.handle(&topic, &msg);
                async { Ok::<_, std::convert::Infallible>(()) }
            })
            .unwrap_or_else(|e| fatal(PREFIX, e));
        if let Err(e) = consumer.connect_to_nsqds(&opts.nsqd_tcp_address).await {
            fatal(PREFIX, e);
        }
        for lookupd in &opts.lookupd_http_address {
            if let Err(e) = consumer.connect_to_lookupd(lookupd).await {
                fatal(PREFIX, e);
            }
        }
        consumers.push(consumer);
    }

    tokio::select! {
        _ = wait_for_signal() => {}
        _ = printer.done.notified() => {}
    }
    for consumer in &consumers {
        consumer.stop().await;
    }
}

/// `--peek`: each topic's channel on each nsqd, its next `-n` messages
/// printed as the tail prints them. Answers the exit status: 1 when an nsqd
/// could not be read.
async fn peek(opts: &Opts) -> i32 {
    if opts.channel.is_empty() {
        fatal(PREFIX, "--peek needs --channel");
    }
    if !opts.nsqd_tcp_address.is_empty() {
        fatal(
            PREFIX,
            "--peek reads nsqd's HTTP API: give --nsqd-http-address or --lookupd-http-address",
        );
    }
    if let Err(e) = check_sources(
        "--nsqd-http-address",
        &opts.nsqd_http_address,
        &opts.lookupd_http_address,
    ) {
        fatal(PREFIX, e);
    }
    if opts.topic.is_empty() {
        fatal(PREFIX, "--topic required");
    }
    let n = match opts.n.unwrap_or(10) {
        n @ 1..=100 => n as usize,
        _ => fatal(PREFIX, "with --peek, -n is 1 to 100"),
    };
    let pool = nsq::HttpPool::default();
    let mut failed = false;
    for topic in &opts.topic {
        let nsqds = if opts.lookupd_http_address.is_empty() {
            opts.nsqd_http_address.clone()
        } else {
            match lookupd_producers(&pool, &opts.lookupd_http_address, topic).await {
                Ok(nsqds) => nsqds,
                Err(e) => {
                    log(PREFIX, format_args!("ERROR: {e}"));
                    failed = true;
                    continue;
                }
            }
        };
        for addr in &nsqds {
            let nsqd = nsq::NsqdHttp::with_pool(addr, &pool);
            match nsqd.peek(topic, &opts.channel, n).await {
                Ok(answer) => {
                    log(
                        PREFIX,
                        format_args!(
                            "{addr}: {topic}/{}: the next {} of {} queued",
                            opts.channel,
                            answer.messages.len(),
                            answer.total
                        ),
                    );
                    for m in &answer.messages {
                        match m.body_bytes() {
                            Ok(body) => write_body(opts.print_topic, topic, &body),
                            Err(e) => {
                                log(PREFIX, format_args!("ERROR: {addr}: message {}: {e}", m.id));
                                failed = true;
                            }
                        }
                    }
                }
                Err(e) if e.is_missing_topic_or_channel() => log(
                    PREFIX,
                    format_args!("{addr}: no channel {topic}/{}", opts.channel),
                ),
                Err(e) if e.is_unknown_endpoint() => {
                    log(
                        PREFIX,
                        format_args!(
                            "ERROR: {addr} has no /channel/peek: it runs upstream's nsqd (or an older one of ours)"
                        ),
                    );
                    failed = true;
                }
                Err(e) => {
                    log(PREFIX, format_args!("ERROR: {e}"));
                    failed = true;
                }
            }
        }
    }
    i32::from(failed)
}
