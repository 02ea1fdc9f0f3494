//! Consuming a topic's channel from one or more nsqd.
//!
//! Each nsqd connection runs in its own task: it reads frames, answers
//! heartbeats and queues messages for a pool of handler workers (`queue`);
//! answers go back through the connection's outbox and writer task
//! (`link`). Flow control (RDY and backoff) is shared by all connections
//! and lives in `rdy`.

mod discovery;
mod handler;
mod link;
mod message;
mod queue;
mod rdy;

pub use handler::{BoxError, Handler};
pub use message::Message;

use crate::config::{Config, ConfigError};
use crate::conn::Connection;
use crate::error::{Error, ProtocolError, Result};
use crate::protocol::{self, Command, FrameType, CLOSE_WAIT, HEARTBEAT};
use handler::SpawnWorkers;
use link::Link;
use queue::{Batch, Queue};
use rdy::{FlowState, Signal};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// First delay before reconnecting to an nsqd; it doubles up to `lookupd_poll_interval`.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// How long a closing connection waits for its in-flight messages.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Receives the messages of one topic's channel.
///
/// Add a handler, then connect to nsqd directly ([`Consumer::connect_to_nsqd`])
/// or through nsqlookupd ([`Consumer::connect_to_lookupd`]). Connections are
/// remade when they fail. Call [`Consumer::stop`] to shut down without losing
/// work; dropping the consumer closes its connections in the background.
///
/// ```no_run
/// # async fn run() -> Result<(), nsq::Error> {
/// let consumer = nsq::Consumer::new("orders", "billing", nsq::Config::default())?;
/// consumer.add_handler(|msg: nsq::Message| async move {
///     println!("order {}", String::from_utf8_lossy(msg.body()));
///     Ok::<_, std::io::Error>(())
/// })?;
/// consumer.connect_to_nsqd("127.0.0.1:4150").await?;
/// // ... until the program should stop:
/// consumer.stop().await;
/// # Ok(())
/// # }
/// ```
pub struct Consumer {
    inner: Arc<Inner>,
}

/// Counters of a consumer, for monitoring and tests.
///
/// ```no_run
/// # fn report(consumer: &nsq::Consumer) {
/// let stats: nsq::ConsumerStats = consumer.stats();
/// println!(
///     "{} received, {} finished, {} requeued over {} connections",
///     stats.messages_received, stats.messages_finished, stats.messages_requeued, stats.connections
/// );
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    pub messages_received: u64,
    pub messages_finished: u64,
    pub messages_requeued: u64,
    /// Messages given to [`Handler::failed`] after `max_attempts`.
    pub messages_given_up: u64,
    pub connections: usize,
    pub backoff_level: u32,
}

pub(crate) struct Inner {
    me: Weak<Inner>,
    pub(crate) topic: String,
    pub(crate) channel: String,
    pub(crate) config: Config,
    handler: Mutex<Option<SpawnWorkers>>,
    queue: Queue,
    workers: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) flow: Mutex<FlowState>,
    targets: Mutex<HashMap<String, Target>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) shutdown: CancellationToken,
    started: AtomicBool,
    next_conn_id: AtomicU64,
    tally: Arc<Tally>,
    pub(crate) lookupds: Mutex<Vec<String>>,
    pub(crate) repoll: Notify,
}

/// An nsqd the consumer keeps a connection to.
struct Target {
    cancel: CancellationToken,
    from_lookupd: bool,
}

/// The counters, and the backoff level as answering a message needs it:
/// shared with every link so that the common answer takes no lock.
#[derive(Default)]
pub(crate) struct Tally {
    received: AtomicU64,
    finished: AtomicU64,
    requeued: AtomicU64,
    given_up: AtomicU64,
    /// Mirrors `FlowState::backoff_level`. While it is 0 a success or a
    /// requeue without backoff cannot change flow control.
    backoff_level: AtomicU32,
}

impl Consumer {
    /// A consumer of `channel` on `topic`. Nothing happens until a handler is
    /// added and a connection made.
    pub fn new(topic: &str, channel: &str, config: Config) -> Result<Consumer> {
        config.validate()?;
        if !protocol::is_valid_topic_name(topic) {
            return Err(ConfigError {
                field: "topic",
                problem: format!("{topic:?} is not a valid topic name"),
            }
            .into());
        }
        if !protocol::is_valid_channel_name(channel) {
            return Err(ConfigError {
                field: "channel",
                problem: format!("{channel:?} is not a valid channel name"),
            }
            .into());
        }
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            topic: topic.to_string(),
            channel: channel.to_string(),
            flow: Mutex::new(FlowState {
                max_in_flight: config.max_in_flight,
                ..FlowState::default()
            }),
            config,
            handler: Mutex::new(None),
            queue: Queue::new(),
            workers: Mutex::new(Vec::new()),
            targets: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            shutdown: CancellationToken::new(),
            started: AtomicBool::new(false),
            next_conn_id: AtomicU64::new(1),
            tally: Arc::default(),
            lookupds: Mutex::new(Vec::new()),
            repoll: Notify::new(),
        });
        Ok(Consumer { inner })
    }

    /// Sets the handler, run by one worker. Call before connecting.
    pub fn add_handler(&self, handler: impl Handler) -> Result<()> {
        self.add_concurrent_handlers(handler, 1)
    }

    /// Sets the handler, run by `concurrency` workers at once. Call before connecting.
    pub fn add_concurrent_handlers(&self, handler: impl Handler, concurrency: usize) -> Result<()> {
        if self.inner.started.load(Ordering::SeqCst) {
            return Err(Error::Usage("add handlers before connecting"));
        }
        *self.inner.handler.lock().expect("handler lock") =
            Some(handler::spawner(handler, concurrency.max(1)));
        Ok(())
    }

    /// Connects to the nsqd at `addr` (its TCP `host:port`) and subscribes.
    /// Fails if the first attempt fails; afterwards the connection is remade
    /// whenever it drops, with a growing delay.
    pub async fn connect_to_nsqd(&self, addr: &str) -> Result<()> {
        self.inner.start()?;
        if self
            .inner
            .targets
            .lock()
            .expect("targets lock")
            .contains_key(addr)
        {
            return Ok(());
        }
        let conn = self.inner.open(addr).await?;
        self.inner.add_target(addr, false, Some(conn));
        Ok(())
    }

    /// Connects to each of `addrs`.
    pub async fn connect_to_nsqds<I, S>(&self, addrs: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for addr in addrs {
            self.connect_to_nsqd(addr.as_ref()).await?;
        }
        Ok(())
    }

    /// Closes the connection to `addr` (after its in-flight messages) and stops
    /// reconnecting to it.
    pub fn disconnect_from_nsqd(&self, addr: &str) {
        self.inner.remove_target(addr);
    }

    /// Adds an nsqlookupd (HTTP `host:port` or URL) to discover the nsqd that
    /// have the topic. The first call queries it at once and starts polling
    /// every `lookupd_poll_interval`.
    pub async fn connect_to_lookupd(&self, http_addr: &str) -> Result<()> {
        self.inner.start()?;
        let first = {
            let mut lookupds = self.inner.lookupds.lock().expect("lookupds lock");
            if lookupds.iter().any(|l| l == http_addr) {
                return Ok(());
            }
            lookupds.push(http_addr.to_string());
            lookupds.len() == 1
        };
        if first {
            let pool = discovery::http_pool(&self.inner.config)?;
            self.inner.poll_lookupds(&pool).await;
            let task = tokio::spawn(discovery::poll_loop(self.inner.clone(), pool));
            self.inner.tasks.lock().expect("tasks lock").push(task);
        } else {
            self.inner.repoll.notify_one();
        }
        Ok(())
    }

    /// Changes `max_in_flight`; 0 pauses consumption.
    pub fn set_max_in_flight(&self, max_in_flight: u32) {
        let mut flow = self.inner.flow.lock().expect("flow lock");
        flow.max_in_flight = max_in_flight;
        flow.rebalance();
    }

    pub fn stats(&self) -> ConsumerStats {
        let tally = &self.inner.tally;
        let flow = self.inner.flow.lock().expect("flow lock");
        ConsumerStats {
            messages_received: tally.received.load(Ordering::Relaxed),
            messages_finished: tally.finished.load(Ordering::Relaxed),
            messages_requeued: tally.requeued.load(Ordering::Relaxed),
            messages_given_up: tally.given_up.load(Ordering::Relaxed),
            connections: flow.conns.len(),
            backoff_level: flow.backoff_level,
        }
    }

    /// Shuts down without losing work: sends CLS on every connection, lets
    /// the handlers answer every message in flight, then closes.
    pub async fn stop(&self) {
        let inner = &self.inner;
        inner.shutdown.cancel();
        loop {
            let tasks = std::mem::take(&mut *inner.tasks.lock().expect("tasks lock"));
            if tasks.is_empty() {
                break;
            }
            for task in tasks {
                let _ = task.await;
            }
        }
        inner.queue.close();
        let workers = std::mem::take(&mut *inner.workers.lock().expect("workers lock"));
        for worker in workers {
            let _ = worker.await;
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.inner.shutdown.cancel();
        self.inner.queue.close();
    }
}

impl Inner {
    /// Starts the workers and the RDY redistribution loop, once.
    fn start(&self) -> Result<()> {
        if self.shutdown.is_cancelled() {
            return Err(Error::Stopped);
        }
        let Some(spawn_workers) = self.handler.lock().expect("handler lock").clone() else {
            return Err(Error::Usage("add a handler before connecting"));
        };
        if self.started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let me = self.me.upgrade().expect("consumer alive");
        *self.workers.lock().expect("workers lock") = spawn_workers(&me);
        let task = tokio::spawn(redistribute_loop(me));
        self.tasks.lock().expect("tasks lock").push(task);
        Ok(())
    }

    /// Dials, identifies and subscribes.
    async fn open(&self, addr: &str) -> Result<Connection> {
        let mut conn = Connection::connect(addr, &self.config).await?;
        conn.subscribe(&self.topic, &self.channel, &self.config)
            .await?;
        tracing::info!(addr, topic = %self.topic, channel = %self.channel, "subscribed");
        Ok(conn)
    }

    fn add_target(&self, addr: &str, from_lookupd: bool, first: Option<Connection>) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let cancel = self.shutdown.child_token();
        {
            let mut targets = self.targets.lock().expect("targets lock");
            if self.shutdown.is_cancelled() || targets.contains_key(addr) {
                return;
            }
            targets.insert(
                addr.to_string(),
                Target {
                    cancel: cancel.clone(),
                    from_lookupd,
                },
            );
        }
        let task = tokio::spawn(keep_connected(
            me,
            addr.to_string(),
            cancel,
            first,
            from_lookupd,
        ));
        self.tasks.lock().expect("tasks lock").push(task);
    }

    fn remove_target(&self, addr: &str) {
        if let Some(target) = self.targets.lock().expect("targets lock").remove(addr) {
            target.cancel.cancel();
        }
    }

    /// Makes the lookupd-discovered targets exactly `addrs`; direct ones stay.
    pub(crate) fn set_lookupd_targets(&self, addrs: &[String]) {
        let vanished: Vec<String> = self
            .targets
            .lock()
            .expect("targets lock")
            .iter()
            .filter(|(addr, t)| t.from_lookupd && !addrs.contains(addr))
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in vanished {
            tracing::info!(addr = %addr, "nsqd no longer has the topic in lookupd; disconnecting");
            self.remove_target(&addr);
        }
        for addr in addrs {
            self.add_target(addr, true, None);
        }
    }

    /// Applies the backoff signal of an answered message.
    pub(crate) fn apply_signal(&self, signal: Signal) {
        let wait = self.flow.lock().expect("flow lock").signal(signal, self);
        if let Some(wait) = wait {
            self.start_backoff_timer(wait);
        }
    }

    /// After `wait`, lets one message through to test whether things work again.
    fn start_backoff_timer(&self, wait: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = self.me.clone();
        let shutdown = self.shutdown.clone();
        runtime.spawn(async move {
            let mut wait = wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return,
                }
                let Some(inner) = me.upgrade() else {
                    return;
                };
                if inner.flow.lock().expect("flow lock").test_the_waters() {
                    return;
                }
                tracing::warn!("no connection to resume on; backing off for 1s");
                wait = Duration::from_secs(1);
            }
        });
    }

    /// Runs one live connection until it fails or, once `cancel` fires, until
    /// it has been closed cleanly (CLS, CLOSE_WAIT, in-flight messages answered).
    async fn serve(&self, addr: &str, conn: Connection, cancel: &CancellationToken) -> Result<()> {
        let Some(queue) = self.queue.feeder() else {
            return Err(Error::Stopped);
        };
        let Connection {
            mut reader,
            writer,
            identity,
        } = conn;
        let link = Arc::new(Link::new(
            self.next_conn_id.fetch_add(1, Ordering::Relaxed),
            addr,
            self.tally.clone(),
            self.me.clone(),
        ));
        let dead = CancellationToken::new();
        let writer = tokio::spawn(link::write_loop(writer, link.clone(), dead.clone()));
        self.flow
            .lock()
            .expect("flow lock")
            .add(link.clone(), identity.max_rdy_count);

        let mut cls_sent = false;
        let mut close_wait = false;
        let close_by = tokio::time::sleep(Duration::MAX);
        tokio::pin!(close_by);
        // The messages of one read, handed to the workers together.
        let mut messages = VecDeque::new();
        let result = loop {
            tokio::select! {
                frame = reader.read_frame_within(self.config.read_timeout) => {
                    // Handle every frame already buffered before selecting
                    // again: re-arming the select per frame costs more than
                    // the frame itself at high rates.
                    let mut next = Some(frame);
                    let mut outcome = None;
                    while let Some(frame) = next.take() {
                        let frame = match frame {
                            Ok(frame) => frame,
                            Err(e) => {
                                outcome = Some(Err(e));
                                break;
                            }
                        };
                        match frame.frame_type {
                            FrameType::Response if frame.data == HEARTBEAT => {
                                link.send(&Command::Nop);
                            }
                            FrameType::Response if frame.data == CLOSE_WAIT => {
                                close_wait = true;
                                if link.in_flight.load(Ordering::SeqCst) == 0 && messages.is_empty() {
                                    outcome = Some(Ok(()));
                                    break;
                                }
                            }
                            FrameType::Response => {}
                            FrameType::Error => {
                                let e = ProtocolError::parse(&frame.data);
                                if e.is_fatal() {
                                    outcome = Some(Err(e.into()));
                                    break;
                                }
                                tracing::warn!(addr, error = %e, "nsqd refused a message answer");
                            }
                            FrameType::Message => {
                                let msg = match protocol::WireMessage::decode(frame.data) {
                                    Ok(msg) => msg,
                                    Err(e) => {
                                        outcome = Some(Err(Error::Unexpected { addr: addr.to_string(), what: e.to_string() }));
                                        break;
                                    }
                                };
                                messages.push_back(msg);
                            }
                        }
                        next = reader.buffered_frame().transpose();
                    }
                    if !messages.is_empty() {
                        link.delivered(messages.len());
                        let next = VecDeque::with_capacity(messages.len());
                        let messages = std::mem::replace(&mut messages, next);
                        queue.push(Batch { link: link.clone(), messages });
                    }
                    if let Some(result) = outcome {
                        break result;
                    }
                }
                _ = cancel.cancelled(), if !cls_sent => {
                    cls_sent = true;
                    link.send(&Command::Cls);
                    close_by.as_mut().reset(tokio::time::Instant::now() + CLOSE_TIMEOUT);
                }
                _ = link.drained.notified(), if close_wait => {
                    if link.in_flight.load(Ordering::SeqCst) == 0 {
                        break Ok(());
                    }
                }
                _ = &mut close_by => {
                    tracing::warn!(addr, "in-flight messages not answered in time; closing anyway");
                    break Ok(());
                }
                _ = dead.cancelled() => break Err(Error::Closed(addr.to_string())),
            }
        };
        self.flow.lock().expect("flow lock").remove(link.id);
        dead.cancel();
        let _ = writer.await;
        result
    }
}

/// Keeps one nsqd connected until its target is removed or the consumer stops.
async fn keep_connected(
    inner: Arc<Inner>,
    addr: String,
    cancel: CancellationToken,
    mut first: Option<Connection>,
    from_lookupd: bool,
) {
    let mut delay = RECONNECT_MIN;
    loop {
        let conn = match first.take() {
            Some(conn) => Ok(conn),
            None => inner.open(&addr).await,
        };
        match conn {
            Ok(conn) => {
                delay = RECONNECT_MIN;
                match inner.serve(&addr, conn, &cancel).await {
                    Ok(()) => tracing::info!(addr = %addr, "connection closed"),
                    Err(e) => tracing::warn!(addr = %addr, error = %e, "connection lost"),
                }
            }
            Err(e) => tracing::warn!(addr = %addr, error = %e, "could not connect"),
        }
        if cancel.is_cancelled() {
            break;
        }
        if from_lookupd {
            inner.repoll.notify_one();
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => break,
        }
        delay = (delay * 2).min(inner.config.lookupd_poll_interval.max(RECONNECT_MIN));
    }
    let mut targets = inner.targets.lock().expect("targets lock");
    if targets.get(&addr).is_some_and(|t| t.cancel.is_cancelled()) {
        targets.remove(&addr);
    }
}

/// Moves RDY between connections when they outnumber `max_in_flight`.
async fn redistribute_loop(inner: Arc<Inner>) {
    let config = inner.config.clone();
    let mut tick = tokio::time::interval(config.rdy_redistribute_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.shutdown.cancelled() => break,
        }
        inner
            .flow
            .lock()
            .expect("flow lock")
            .redistribute(config.low_rdy_idle_timeout, config.low_rdy_timeout);
    }
}
