//! Copies topics to other nsqd, as upstream's `nsq_to_nsq`: each message of
//! each `--topic` is published to one `--destination-nsqd-tcp-address`
//! (chosen by `--mode`) under `--destination-topic` or its own topic name,
//! and finished only once that nsqd has acknowledged it; a failed publish
//! requeues it with backoff. Publishes are pipelined: the handler hands the
//! message to a task and takes the next one.

use clap::Parser;
use nsq::protocol::{is_valid_channel_name, is_valid_topic_name};
use nsq_daemon::logging::LogLevel;
use nsq_daemon::logging::{LogFormat, Logging};
use nsq_daemon::signals::wait_for_signal;
use nsq_daemon::version_line;
use nsq_tools::consume::{connect, consumer_config, producer_config};
use nsq_tools::hostpool::{Balancer, Mode};
use nsq_tools::json_filter::{JsonFilter, Verdict};
use nsq_tools::timer_metrics::TimerMetrics;
use nsq_tools::{check_sources, fatal, Progress};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const PROGRAM: &str = "nsq_to_nsq";
const PREFIX: &str = "[nsq_to_nsq] ";

#[derive(Debug, Parser)]
#[command(name = "nsq_to_nsq", about = "Copies NSQ topics to other nsqd")]
struct Opts {
    /// nsq topic (may be given multiple times)
    #[arg(long)]
    topic: Vec<String>,
    /// nsq channel
    #[arg(long, default_value = "nsq_to_nsq")]
    channel: String,
    /// use this destination topic for all consumed topics (default is consumed topic name)
    #[arg(long, default_value = "")]
    destination_topic: String,
    /// max number of messages to allow in flight
    #[arg(long, default_value_t = 200)]
    max_in_flight: u32,
    /// the # of requests between logging status (per destination), 0 disables
    #[arg(long, default_value_t = 250)]
    status_every: usize,
    /// the upstream request mode options: round-robin, hostpool (default), epsilon-greedy
    #[arg(long, default_value = "hostpool")]
    mode: String,
    /// nsqd TCP address (may be given multiple times)
    #[arg(long)]
    nsqd_tcp_address: Vec<String>,
    /// lookupd HTTP address (may be given multiple times)
    #[arg(long)]
    lookupd_http_address: Vec<String>,
    /// destination nsqd TCP address (may be given multiple times)
    #[arg(long)]
    destination_nsqd_tcp_address: Vec<String>,
    /// for JSON messages: pass this field (may be given multiple times)
    #[arg(long = "whitelist-json-field", alias = "white-list-json-field")]
    whitelist_json_field: Vec<String>,
    /// for JSON messages: only pass messages that contain this field
    #[arg(long, default_value = "")]
    require_json_field: String,
    /// for JSON messages: only pass messages in which the required field has this value
    #[arg(long, default_value = "")]
    require_json_value: String,
    /// option to passthrough to the consumer as name,value, by go-nsq's names (may be given multiple times)
    #[arg(long)]
    consumer_opt: Vec<String>,
    /// option to passthrough to the producers as name,value, by go-nsq's names (may be given multiple times)
    #[arg(long)]
    producer_opt: Vec<String>,
    /// print version string
    #[arg(long)]
    version: bool,
}

/// Checks the flags in upstream's order.
fn validate(opts: &Opts) -> Result<Mode, String> {
    if opts.topic.is_empty() || opts.channel.is_empty() {
        return Err("--topic and --channel are required".into());
    }
    if !opts.topic.iter().all(|t| is_valid_topic_name(t)) {
        return Err("--topic is invalid".into());
    }
    if !opts.destination_topic.is_empty() && !is_valid_topic_name(&opts.destination_topic) {
        return Err("--destination-topic is invalid".into());
    }
    if !is_valid_channel_name(&opts.channel) {
        return Err("--channel is invalid".into());
    }
    check_sources(
        "--nsqd-tcp-address",
        &opts.nsqd_tcp_address,
        &opts.lookupd_http_address,
    )?;
    if opts.destination_nsqd_tcp_address.is_empty() {
        return Err("--destination-nsqd-tcp-address required".into());
    }
    if !opts.require_json_value.is_empty() && opts.require_json_field.is_empty() {
        return Err("--require-json-value needs --require-json-field".into());
    }
    Mode::parse(&opts.mode, false)
}

/// Publishes to the destinations; shared by every topic's consumer.
struct Relay {
    producers: Vec<nsq::Producer>,
    balancer: Balancer,
    filter: JsonFilter,
    per_address: Vec<TimerMetrics>,
    aggregate: TimerMetrics,
    relayed: Arc<AtomicU64>,
}

impl Relay {
    /// Filters the message, then publishes it in a task that finishes or
    /// requeues it by the destination's answer.
    fn handle(self: &Arc<Self>, msg: nsq::Message, topic: &Arc<str>) -> Result<(), &'static str> {
        let body = match self.filter.apply(msg.body()) {
            Verdict::Pass(body) => body,
            Verdict::Drop => return Ok(()),
            Verdict::Backoff => return Err("backoff"),
        };
        msg.disable_auto_response();
        let (relay, topic) = (self.clone(), topic.clone());
        let index = self.balancer.pick();
        let started = Instant::now();
        tokio::spawn(async move {
            let producer = &relay.producers[index];
            let result = producer.publish(&topic, body).await;
            relay.balancer.mark(index, started, result.is_ok());
            match result {
                Ok(()) => {
                    msg.finish();
                    relay.relayed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(destination = %producer.addr(), error = %e, "publish failed; requeueing");
                    msg.requeue(None);
                }
            }
            relay.per_address[index].status(started);
            relay.aggregate.status(started);
        });
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let opts = nsq_daemon::flags::parse::<Opts>(std::env::args_os());
    if opts.version {
        println!("{}", version_line(PROGRAM));
        return;
    }
    let mode = validate(&opts).unwrap_or_else(|e| fatal(PREFIX, e));
    let consumer_config = consumer_config(PROGRAM, &opts.consumer_opt, opts.max_in_flight)
        .unwrap_or_else(|e| fatal(PREFIX, e));
    let producer_config =
        producer_config(PROGRAM, &opts.producer_opt).unwrap_or_else(|e| fatal(PREFIX, e));
    let _logging = Logging::init(LogLevel::Info, PREFIX, LogFormat::Text);

    let destinations = &opts.destination_nsqd_tcp_address;
    let producers = destinations
        .iter()
        .map(|addr| {
            nsq::Producer::new(addr.as_str(), producer_config.clone())
                .unwrap_or_else(|e| fatal(PREFIX, format_args!("failed creating producer {e}")))
        })
        .collect();
    let per_address_every = if destinations.len() == 1 {
        0
    } else {
        opts.status_every
    };
    let relayed = Arc::new(AtomicU64::new(0));
    let relay = Arc::new(Relay {
        producers,
        balancer: Balancer::new(mode, destinations.len()),
        filter: JsonFilter::new(
            &opts.require_json_field,
            &opts.require_json_value,
            &opts.whitelist_json_field,
        ),
        per_address: destinations
            .iter()
            .map(|a| TimerMetrics::new(per_address_every, format!("[{a}]:")))
            .collect(),
        aggregate: TimerMetrics::new(opts.status_every, "[aggregate]:"),
        relayed: relayed.clone(),
    });

    let mut consumers = Vec::new();
    for topic in &opts.topic {
        let consumer = nsq::Consumer::new(topic, &opts.channel, consumer_config.clone())
            .unwrap_or_else(|e| fatal(PREFIX, e));
        let destination: Arc<str> = match opts.destination_topic.as_str() {
            "" => topic.as_str().into(),
            other => other.into(),
        };
        let relay = relay.clone();
        consumer
            .add_concurrent_handlers(
                move |msg: nsq::Message| {
                    let result = relay.handle(msg, &destination);
                    async move { result }
                },
                destinations.len(),
            )
            .unwrap_or_else(|e| fatal(PREFIX, e));
        consumers.push(consumer);
    }
    for consumer in &consumers {
        if let Err(e) = connect(consumer, &opts.nsqd_tcp_address, &opts.lookupd_http_address).await
        {
            fatal(PREFIX, e);
        }
    }
    let progress = Progress::start(PREFIX, relayed);
    wait_for_signal().await;
    // Stopping a consumer waits for its messages in flight, so for the
    // publishes that answer them; then the producers have nothing left.
    for consumer in &consumers {
        consumer.stop().await;
    }
    for producer in &relay.producers {
        producer.stop().await;
    }
    progress.finish();
}
