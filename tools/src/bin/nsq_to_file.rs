//! Archives topics to files, as upstream's `nsq_to_file`: one consumer and
//! one file per topic, each body followed by a newline, messages finished only
//! once fsynced. Topics are the `--topic`s given, or every topic lookupd
//! knows that matches `--topic-pattern`, looked up again every
//! `--topic-refresh`. SIGHUP closes the files (the next message opens new
//! ones); SIGINT/SIGTERM syncs, finishes and closes everything, then exits.

use clap::Parser;
use nsq_daemon::flags::parse_duration;
use nsq_daemon::logging::LogLevel;
use nsq_daemon::logging::{LogFormat, Logging};
use nsq_daemon::version_line;
use nsq_tools::archive::{filename_template, host_identifier, ArchiveOptions, FileLogger};
use nsq_tools::consume::{connect, consumer_config, lookupd_topics};
use nsq_tools::{check_sources, fatal, Progress};
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const PROGRAM: &str = "nsq_to_file";

#[derive(Debug, Parser)]
#[command(name = "nsq_to_file", about = "Archives NSQ topics to files")]
struct Opts {
    /// nsq topic (may be given multiple times)
    #[arg(long)]
    topic: Vec<String>,
    /// only log topics matching the following pattern
    #[arg(long, default_value = "")]
    topic_pattern: String,
    /// how frequently the topic list should be refreshed
    #[arg(long = "topic-refresh", default_value = "1m", value_parser = parse_duration)]
    topic_refresh: Duration,
    /// nsq channel
    #[arg(long, default_value = "nsq_to_file")]
    channel: String,
    /// max number of messages to allow in flight
    #[arg(long, default_value_t = 200)]
    max_in_flight: u32,
    /// nsqd TCP address (may be given multiple times)
    #[arg(long)]
    nsqd_tcp_address: Vec<String>,
    /// lookupd HTTP address (may be given multiple times)
    #[arg(long)]
    lookupd_http_address: Vec<String>,
    /// option to passthrough to the consumer as name,value, by go-nsq's names (may be given multiple times)
    #[arg(long)]
    consumer_opt: Vec<String>,
    /// timeout for HTTP connect
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    http_client_connect_timeout: Duration,
    /// timeout for HTTP request
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    http_client_request_timeout: Duration,
    /// directory to write output files to
    #[arg(long, default_value = "/tmp")]
    output_dir: PathBuf,
    /// directory for in-progress files before moving to output-dir
    #[arg(long, default_value = "")]
    work_dir: String,
    /// strftime compatible format for <DATETIME> in filename format
    #[arg(long, default_value = "%Y-%m-%d_%H")]
    datetime_format: String,
    /// output filename format (<TOPIC>, <HOST>, <PID>, <DATETIME>, <REV>, <SUFFIX> are replaced. <REV> is increased when file already exists)
    #[arg(long, default_value = "<TOPIC>.<HOST><REV>.<DATETIME>.log")]
    filename_format: String,
    /// value to output in log filename in place of hostname. <SHORT_HOST> and <HOSTNAME> are valid replacement tokens
    #[arg(long, default_value = "")]
    host_identifier: String,
    /// gzip compression level (1-9, 1=BestSpeed, 9=BestCompression)
    #[arg(long, default_value_t = 6)]
    gzip_level: i64,
    /// gzip output files.
    #[arg(long)]
    gzip: bool,
    /// skip writing empty files
    #[arg(long)]
    skip_empty_files: bool,
    /// rotate the file when it grows bigger than `rotate-size` bytes
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    rotate_size: i64,
    /// rotate the file every duration
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    rotate_interval: Duration,
    /// sync file to disk every duration
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    sync_interval: Duration,
    /// set log verbosity: debug, info, warn, error, or fatal
    #[arg(long, default_value = "info")]
    log_level: LogLevel,
    /// log message prefix
    #[arg(long, default_value = "[nsq_to_file] ")]
    log_prefix: String,
    /// print version string
    #[arg(long)]
    version: bool,
}

/// Checks the flags as upstream does, in its order.
fn validate(opts: &mut Opts) -> Result<(), String> {
    if opts.channel.is_empty() {
        return Err("--channel is required".into());
    }
    if opts.http_client_connect_timeout.is_zero() {
        return Err("--http-client-connect-timeout should be positive".into());
    }
    if opts.http_client_request_timeout.is_zero() {
        return Err("--http-client-request-timeout should be positive".into());
    }
    check_sources(
        "--nsqd-tcp-address",
        &opts.nsqd_tcp_address,
        &opts.lookupd_http_address,
    )?;
    if !(1..=9).contains(&opts.gzip_level) {
        return Err(format!(
            "invalid --gzip-level value ({}), should be 1-9",
            opts.gzip_level
        ));
    }
    if opts.topic.is_empty() && opts.topic_pattern.is_empty() {
        return Err("--topic or --topic-pattern required".into());
    }
    if opts.topic.is_empty() && opts.lookupd_http_address.is_empty() {
        return Err("--lookupd-http-address must be specified when no --topic specified".into());
    }
    if opts.topic.is_empty() && opts.topic_refresh.is_zero() {
        return Err("--topic-refresh should be positive".into());
    }
    if opts.sync_interval.is_zero() {
        return Err("--sync-interval should be positive".into());
    }
    if opts.max_in_flight == 0 {
        return Err("--max-in-flight should be positive".into());
    }
    if opts.work_dir.is_empty() {
        opts.work_dir = opts.output_dir.to_string_lossy().into_owned();
    }
    Ok(())
}

/// What the discoverer tells a topic's archiver.
#[derive(Debug, Clone, Copy)]
enum Control {
    /// SIGHUP: sync and close the file.
    Reopen,
    /// SIGINT/SIGTERM: stop consuming, sync, finish, close.
    Stop,
}

/// Everything a topic's archiver needs besides its topic.
struct Setup {
    opts: Opts,
    archive: ArchiveOptions,
    host: String,
    pattern: Option<Regex>,
    config: nsq::Config,
    archived: Arc<AtomicU64>,
}

/// A running archiver: how to reach it and how to wait for it.
struct Archiver {
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
}

#[tokio::main]
async fn main() {
    let mut opts = nsq_daemon::flags::parse::<Opts>(std::env::args_os());
    if opts.version {
        println!("{}", version_line(PROGRAM));
        return;
    }
    let prefix = format!("[{PROGRAM}] ");
    if let Err(e) = validate(&mut opts) {
        fatal(&prefix, e);
    }
    let pattern = match opts.topic_pattern.as_str() {
        "" => None,
        p => {
            Some(Regex::new(p).unwrap_or_else(|e| fatal(&prefix, format!("--topic-pattern: {e}"))))
        }
    };
    let archive = ArchiveOptions {
        output_dir: opts.output_dir.clone(),
        work_dir: PathBuf::from(&opts.work_dir),
        datetime_format: opts.datetime_format.clone(),
        gzip: opts.gzip.then_some(opts.gzip_level as u32),
        rotate_size: opts.rotate_size.max(0) as u64,
        rotate_interval: opts.rotate_interval,
    };
    // The name pattern is the same for every topic but <TOPIC>: check it once.
    if let Err(e) = filename_template(&opts.filename_format, &archive, "t", "h", 0) {
        fatal(&prefix, e);
    }
    let config = consumer_config(PROGRAM, &opts.consumer_opt, opts.max_in_flight)
        .unwrap_or_else(|e| fatal(&prefix, e));
    let lookupds = nsq::HttpPool::new(
        opts.http_client_connect_timeout,
        opts.http_client_request_timeout,
    );
    let _logging = Logging::init(opts.log_level, &opts.log_prefix, LogFormat::Text);

    let archived = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("[nsq_to_file] ", archived.clone());
    let setup = Setup {
        host: host_identifier(&opts.host_identifier, &nsq_daemon::flags::hostname()),
        opts,
        archive,
        pattern,
        config,
        archived,
    };
    let mut archivers = Archivers {
        setup,
        running: HashMap::new(),
        skipped: HashSet::new(),
    };
    let (mut term, mut int, mut hup) = (
        signal(SignalKind::terminate()).expect("SIGTERM handler"),
        signal(SignalKind::interrupt()).expect("SIGINT handler"),
        signal(SignalKind::hangup()).expect("SIGHUP handler"),
    );

    // Fixed topics must all start; discovered ones are retried next refresh.
    let opts = &archivers.setup.opts;
    let discover = opts.topic.is_empty();
    let mut refresh = tokio::time::interval(opts.topic_refresh.max(Duration::from_millis(1)));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if !discover {
        for topic in opts.topic.clone() {
            if let Err(e) = archivers.add(&topic).await {
                fatal(&prefix, e);
            }
        }
    }
    loop {
        tokio::select! {
            _ = refresh.tick(), if discover => archivers.discover(&lookupds).await,
            _ = hup.recv() => archivers.send(Control::Reopen),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    archivers.send(Control::Stop);
    for (_, archiver) in archivers.running {
        let _ = archiver.task.await;
    }
    progress.finish();
}

/// The topics being archived.
struct Archivers {
    setup: Setup,
    running: HashMap<String, Archiver>,
    /// Topics seen that do not match `--topic-pattern`.
    skipped: HashSet<String>,
}

impl Archivers {
    fn send(&self, command: Control) {
        for archiver in self.running.values() {
            let _ = archiver.control.send(command);
        }
    }

    /// Starts archiving the topics lookupd has that are new.
    async fn discover(&mut self, lookupds: &nsq::HttpPool) {
        match lookupd_topics(lookupds, &self.setup.opts.lookupd_http_address).await {
            Ok(topics) => {
                for topic in topics {
                    if let Err(e) = self.add(&topic).await {
                        tracing::error!(topic = %topic, error = %e, "couldn't archive new topic");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "could not retrieve topic list"),
        }
    }

    /// Starts archiving `topic` unless it already is or the pattern rules it out.
    async fn add(&mut self, topic: &str) -> Result<(), String> {
        if self.running.contains_key(topic) || self.skipped.contains(topic) {
            return Ok(());
        }
        let setup = &self.setup;
        if let Some(pattern) = &setup.pattern {
            if !pattern.is_match(topic) {
                tracing::warn!(topic, pattern = %pattern, "skipping topic (doesn't match pattern)");
                self.skipped.insert(topic.to_string());
                return Ok(());
            }
        }
        let opts = &setup.opts;
        let template = filename_template(
            &opts.filename_format,
            &setup.archive,
            topic,
            &setup.host,
            std::process::id(),
        )?;
        let consumer = nsq::Consumer::new(topic, &opts.channel, setup.config.clone())
            .map_err(|e| e.to_string())?;
        let (messages, inbox) = mpsc::unbounded_channel();
        consumer
            .add_handler(move |msg: nsq::Message| {
                // The router finishes it once it is on disk; if the router
                // is gone, dropping it requeues it.
                msg.disable_auto_response();
                let _ = messages.send(msg);
                async { Ok::<_, std::convert::Infallible>(()) }
            })
            .map_err(|e| e.to_string())?;
        let consumer = Arc::new(consumer);
        let (control, control_rx) = mpsc::unbounded_channel();
        let router = Router {
            topic: topic.to_string(),
            channel: opts.channel.clone(),
            consumer: consumer.clone(),
            logger: FileLogger::new(setup.archive.clone(), template),
            skip_empty_files: opts.skip_empty_files,
            sync_interval: opts.sync_interval,
            max_batch: opts.max_in_flight as usize,
            archived: setup.archived.clone(),
        };
        let task = tokio::spawn(router.run(inbox, control_rx));
        tracing::info!(topic, channel = %opts.channel, "archiving topic");
        if let Err(e) = connect(
            &consumer,
            &opts.nsqd_tcp_address,
            &opts.lookupd_http_address,
        )
        .await
        {
            let _ = control.send(Control::Stop);
            let _ = task.await;
            return Err(e.to_string());
        }
        self.running
            .insert(topic.to_string(), Archiver { control, task });
        Ok(())
    }
}

/// Moves one topic's messages to its file and finishes them once synced.
struct Router {
    topic: String,
    channel: String,
    consumer: Arc<nsq::Consumer>,
    logger: FileLogger,
    skip_empty_files: bool,
    sync_interval: Duration,
    /// Sync at the latest when this many messages wait (`--max-in-flight`).
    max_batch: usize,
    archived: Arc<AtomicU64>,
}

impl Router {
    async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<nsq::Message>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let mut pending: Vec<nsq::Message> = Vec::with_capacity(self.max_batch);
        let start = tokio::time::Instant::now() + self.sync_interval;
        let mut ticker = tokio::time::interval_at(start, self.sync_interval);
        let mut stopping: Option<JoinHandle<()>> = None;
        loop {
            let (mut sync, mut close, mut exit) = (false, false, false);
            tokio::select! {
                _ = async { stopping.as_mut().expect("guarded").await }, if stopping.is_some() => {
                    (sync, close, exit) = (true, true, true);
                }
                command = control.recv(), if stopping.is_none() => match command {
                    Some(Control::Reopen) => (sync, close) = (true, true),
                    // Stop consuming; messages still on their way keep
                    // arriving and are synced and finished meanwhile.
                    Some(Control::Stop) | None => {
                        let consumer = self.consumer.clone();
                        stopping = Some(tokio::spawn(async move { consumer.stop().await }));
                        sync = true;
                    }
                },
                _ = ticker.tick(), if stopping.is_none() => {
                    if self.logger.needs_rotation() {
                        if self.skip_empty_files {
                            close = true;
                        } else {
                            self.io("rotating", |l| l.rotate());
                        }
                    }
                    sync = true;
                }
                Some(msg) = inbox.recv() => {
                    if self.logger.needs_rotation() {
                        self.io("rotating", |l| l.rotate());
                        sync = true;
                    }
                    self.io("writing message to disk", |l| l.write_message(msg.body()));
                    pending.push(msg);
                    // Upstream syncs when its consumer is starved; here, when
                    // nothing else is waiting (or a full batch is).
                    sync |= pending.len() >= self.max_batch || inbox.is_empty();
                }
            }
            if sync && !pending.is_empty() {
                tracing::debug!(topic = %self.topic, records = pending.len(), "syncing records to disk");
                self.io("syncing messages", |l| l.sync());
                for msg in pending.drain(..) {
                    msg.finish();
                    self.archived.fetch_add(1, Ordering::Relaxed);
                }
            }
            if close {
                self.io("closing file", |l| l.close());
            }
            if exit {
                return;
            }
        }
    }

    /// Runs a file operation off the async workers; a failure is fatal, as
    /// upstream's: unfinished messages go back to nsqd when we exit.
    fn io(&mut self, what: &str, op: impl FnOnce(&mut FileLogger) -> std::io::Result<()>) {
        let logger = &mut self.logger;
        if let Err(e) = tokio::task::block_in_place(|| op(logger)) {
            tracing::error!(topic = %self.topic, channel = %self.channel, error = %e, "{what} failed");
            std::process::exit(1);
        }
    }
}
