//! Prints the messages of one or more topics on stdout, each body followed by
//! a newline, as upstream's `nsq_tail`. By default it reads through its own
//! ephemeral channel, so it takes a copy of the stream without disturbing
//! other consumers and leaves nothing behind.

use clap::Parser;
use nsq_daemon::logging::LogLevel;
use nsq_daemon::logging::{LogFormat, Logging};
use nsq_daemon::signals::wait_for_signal;
use nsq_daemon::version_line;
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
    /// total messages to show (will wait if starved); 0 = forever
    #[arg(short = 'n', default_value_t = 0)]
    n: u64,
    /// print topic name where message was received
    #[arg(long)]
    print_topic: bool,
    /// nsqd TCP address (may be given multiple times)
    #[arg(long)]
    nsqd_tcp_address: Vec<String>,
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
        let mut out = std::io::stdout().lock();
        let written = (|| {
            if self.print_topic {
                out.write_all(topic.as_bytes())?;
                out.write_all(b" | ")?;
            }
            out.write_all(msg.body())?;
            out.write_all(b"\n")?;
            out.flush()
        })();
        if let Err(e) = written {
            fatal(
                PREFIX,
                format_args!("ERROR: failed to write to os.Stdout - {e}"),
            );
        }
        *shown += 1;
        if *shown == self.limit {
            self.done.notify_one();
        }
    }
}

#[tokio::main]
async fn main() {
    let mut opts = nsq_daemon::flags::parse::<Opts>(std::env::args_os());
    if opts.version {
        println!("{}", version_line("nsq_tail"));
        return;
    }
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
    if opts.n > 0 && opts.n < u64::from(opts.max_in_flight) {
        opts.max_in_flight = opts.n as u32;
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
        limit: opts.n,
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
