//! A topic: takes publishes and copies each message into every channel.
//!
//! The copy happens inline on the publishing connection, under the topic's
//! lock, so a publish is acknowledged only once every channel holds it and
//! channels see messages in publish order. Every copy shares the body buffer.
//! With no channel, or while paused, messages wait in the topic itself (memory,
//! then disk); a pump task streams that backlog to the channels once there are
//! some, and new publishes queue behind it so that order holds.
//!
//! In log mode (`--mem-queue-size=0`, a topic that is not ephemeral) a
//! publish is appended once to the topic's log instead, and its channels
//! read the log as cursors. The topic keeps a release point: seqs below it
//! belong to the channels, seqs above it wait in the topic (no channel yet,
//! paused, or not started). A publish is acknowledged once the log writer
//! has committed it: fsynced, in durable mode (`--sync-every=1`), where
//! concurrent publishes share each fsync.

use crate::channel::{open_backend, Channel, ChannelConfig, LogSource};
use crate::diskqueue;
use crate::e2e::Samples;
use crate::log::{LogConfig, TopicLog};
use crate::queue::{BoundedQueue, Item};

mod log_mode;

pub use log_mode::Adopted;
use log_mode::{import_disk_queues, watch_log};
use nsq::api::TopicStats;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("exiting")]
    Exiting,
    #[error("{0}")]
    Backend(#[from] io::Error),
    /// `--replication-required` and a peer is not in sync (ours).
    #[error("{0}")]
    Unreplicated(String),
}

/// Messages moved from the topic's backlog per lock.
const PUMP_BATCH: usize = 512;

struct State {
    channels: BTreeMap<String, Arc<Channel>>,
    queue: BoundedQueue,
    paused: bool,
    exiting: bool,
    pumping: bool,
    /// Messages flow to channels only once the topic has its channels: those
    /// in `nsqd.dat` at start, or those lookupd knows for a new topic.
    started: bool,
}

impl State {
    /// Whether publishes go to the channels at once (log mode: whether the
    /// release point follows the log's end).
    fn releasing(&self) -> bool {
        self.started && !self.paused && !self.exiting && !self.channels.is_empty()
    }

    /// True when the backlog should be moving to channels now.
    fn backlog_can_flow(&self) -> bool {
        self.releasing() && !self.queue.is_empty()
    }
}

/// Gives each channel its copy of `item`; the last one gets `item` itself.
/// Channels that were empty go into `to_offer`, with how many messages came:
/// once the topic's lock is released, [`offer`] hands them to their consumers.
fn fan_out<'a>(
    channels: impl Iterator<Item = &'a Arc<Channel>>,
    item: Item,
    to_offer: &mut Vec<(Arc<Channel>, usize)>,
) -> io::Result<()> {
    let mut result = Ok(());
    let count = item.len();
    let mut put = |channel: &Arc<Channel>, item| match channel.put(item) {
        Ok(true) => to_offer.push((channel.clone(), count)),
        Ok(false) => {}
        Err(e) => result = Err(e),
    };
    let mut held: Option<&Arc<Channel>> = None;
    for channel in channels {
        if let Some(previous) = held.replace(channel) {
            put(previous, item.clone());
        }
    }
    if let Some(last) = held {
        put(last, item);
    }
    result
}

/// Delivers what [`fan_out`] queued (without the topic's lock: the writes to
/// consumers must not hold up other publishers).
fn offer(channels: Vec<(Arc<Channel>, usize)>) {
    for (channel, count) in channels {
        channel.offer(count);
    }
}

pub struct Topic {
    pub name: String,
    pub ephemeral: bool,
    me: Weak<Topic>,
    channel_config: ChannelConfig,
    /// The log and release point, in log mode.
    log: Option<LogSource>,
    /// Writers of `topic.meta` take turns, so that the last state wins.
    meta_lock: Mutex<()>,
    state: Mutex<State>,
    paused: AtomicBool,
    message_count: AtomicU64,
    message_bytes: AtomicU64,
}

impl Topic {
    /// Opens the topic, with whatever it had on disk. Blocking.
    pub fn new(name: &str, channel_config: ChannelConfig) -> io::Result<Arc<Self>> {
        let (queue, log) = match &channel_config.log_writer {
            Some(writer) if channel_config.log_mode(name) => {
                let disk = &channel_config.disk;
                let cfg = LogConfig::new(disk.max_bytes_per_file, disk.max_msg_size);
                let new_log = !disk.dir.join(format!("{name}.log")).exists();
                let log = TopicLog::open(writer, &disk.dir, name, cfg)?;
                let mut skipped = None;
                if channel_config.replicated && !new_log {
                    // Seqs shipped to peers before a crash, beyond what was
                    // fsynced here, must not be handed out again.
                    let end = log.end_seq();
                    log.skip_to(end + crate::replication::SHIP_WINDOW);
                    skipped = Some(end..log.end_seq());
                }
                let imported = match new_log {
                    true => import_disk_queues(name, &channel_config, &log, writer)?,
                    false => BTreeMap::new(),
                };
                let meta = log.read_meta().unwrap_or_else(|e| {
                    tracing::warn!(topic = name, error = %e, "topic.meta unreadable; its whole log is its backlog");
                    None
                });
                let meta = meta.unwrap_or_default();
                let mut released = meta.released_end.unwrap_or(meta.backlog_floor);
                if let Some(skipped) = skipped.as_ref().filter(|s| released >= s.start) {
                    // Nothing was held back: the skipped seqs are nobody's.
                    released = skipped.end;
                }
                let queue = BoundedQueue::new(0, crate::queue::Backend::Discard { dropped: 0 });
                let source = LogSource {
                    log,
                    released: Arc::new(AtomicU64::new(released)),
                    imported,
                    skipped,
                };
                (queue, Some(source))
            }
            _ => {
                let (mut queue, front) = open_backend(name, &channel_config)?;
                for stored in front.into_iter().rev() {
                    queue.push_front(Item::from_stored(stored));
                }
                (queue, None)
            }
        };
        let watch = log.as_ref().map(|source| source.log.clone());
        let topic = Arc::new_cyclic(|me| Topic {
            name: name.to_string(),
            ephemeral: nsq::protocol::is_ephemeral(name),
            me: me.clone(),
            log,
            meta_lock: Mutex::new(()),
            state: Mutex::new(State {
                channels: BTreeMap::new(),
                queue,
                paused: false,
                exiting: false,
                pumping: false,
                started: false,
            }),
            channel_config,
            paused: AtomicBool::new(false),
            message_count: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
        });
        if let Some(log) = watch {
            tokio::spawn(watch_log(Arc::downgrade(&topic), log));
        }
        Ok(topic)
    }

    /// Log mode: the topic's log and its release point (seqs below it went
    /// to the channels), for replication.
    pub fn log_source(&self) -> Option<(Arc<TopicLog>, u64)> {
        let source = self.log.as_ref()?;
        Some((source.log.clone(), source.released.load(Ordering::Acquire)))
    }

    /// Accepts published messages; `body_bytes` feeds `message_bytes`. In
    /// log mode, the end of the seqs they got: the publish is acknowledged
    /// once [`Topic::committed`] says so.
    pub fn put(&self, item: Item, body_bytes: usize) -> Result<Option<u64>, PutError> {
        if let Some(source) = &self.log {
            return self.append(source, item, body_bytes).map(Some);
        }
        let mut st = self.state.lock();
        if st.exiting {
            return Err(PutError::Exiting);
        }
        let count = item.len() as u64;
        if !st.started || st.paused || st.channels.is_empty() || !st.queue.is_empty() {
            st.queue.push(item)?;
            self.kick(&mut st);
        } else {
            let mut to_offer = Vec::new();
            let result = fan_out(st.channels.values(), item, &mut to_offer);
            drop(st);
            offer(to_offer);
            result?;
        }
        self.message_count.fetch_add(count, Ordering::Relaxed);
        self.message_bytes
            .fetch_add(body_bytes as u64, Ordering::Relaxed);
        Ok(None)
    }

    /// Starts the backlog pump if the backlog can flow and none runs (log
    /// mode: releases the backlog).
    fn kick(&self, st: &mut State) {
        if self.log.is_some() {
            self.release_all(st);
            return;
        }
        if st.pumping || !st.backlog_can_flow() {
            return;
        }
        if let Some(me) = self.me.upgrade() {
            st.pumping = true;
            tokio::spawn(me.pump());
        }
    }

    async fn pump(self: Arc<Self>) {
        loop {
            let mut to_offer = Vec::new();
            let flowing = {
                let mut st = self.state.lock();
                let mut flowing = true;
                for _ in 0..PUMP_BATCH {
                    if !st.backlog_can_flow() {
                        st.pumping = false;
                        flowing = false;
                        break;
                    }
                    let Some(item) = st.queue.pop() else { break };
                    if let Err(e) = fan_out(st.channels.values(), item, &mut to_offer) {
                        tracing::error!(topic = %self.name, error = %e, "moving backlog to channels failed");
                    }
                }
                flowing
            };
            offer(to_offer);
            if !flowing {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// The named channel, created if needed; `true` when it was created.
    pub fn get_or_create_channel(&self, name: &str) -> Result<(Arc<Channel>, bool), PutError> {
        let mut st = self.state.lock();
        if st.exiting {
            return Err(PutError::Exiting);
        }
        if let Some(channel) = st.channels.get(name) {
            return Ok((channel.clone(), false));
        }
        let channel = Channel::new(
            &self.name,
            name,
            self.channel_config.clone(),
            self.log.as_ref(),
        )?;
        st.channels.insert(name.to_string(), channel.clone());
        self.kick(&mut st);
        Ok((channel, true))
    }

    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.state.lock().channels.get(name).cloned()
    }

    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.state.lock().channels.values().cloned().collect()
    }

    /// Removes a channel and its messages.
    pub fn delete_channel(&self, name: &str) -> Option<Arc<Channel>> {
        let (channel, last) = {
            let mut st = self.state.lock();
            let channel = st.channels.remove(name)?;
            (channel, st.channels.is_empty())
        };
        channel.delete(&self.channel_config.disk);
        if last {
            // What is published from now on waits in the topic.
            self.save_meta_later();
        }
        Some(channel)
    }

    /// Removes an ephemeral channel that has lost its last consumer; a SUB that
    /// raced in first keeps it alive.
    pub fn retire_channel_if_unused(&self, name: &str) -> bool {
        let mut st = self.state.lock();
        let Some(channel) = st.channels.get(name) else {
            return false;
        };
        if !channel.retire_if_unused() {
            return false;
        }
        let channel = st.channels.remove(name).expect("present");
        drop(st);
        channel.delete(&self.channel_config.disk);
        true
    }

    /// Marks the topic as going away if it has no channel left.
    pub fn retire_if_unused(&self) -> bool {
        let mut st = self.state.lock();
        if st.channels.is_empty() && !st.exiting {
            st.exiting = true;
            true
        } else {
            false
        }
    }

    /// Lets messages flow to channels (see `State::started`).
    pub fn start(&self) {
        let mut st = self.state.lock();
        st.started = true;
        self.kick(&mut st);
    }

    pub fn pause(&self) {
        self.state.lock().paused = true;
        self.paused.store(true, Ordering::Release);
        self.save_meta_later();
    }

    pub fn unpause(&self) {
        let mut st = self.state.lock();
        st.paused = false;
        self.paused.store(false, Ordering::Release);
        self.kick(&mut st);
        drop(st);
        self.save_meta_later();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Drops the messages waiting in the topic itself; channels keep theirs.
    pub fn empty(&self) -> io::Result<()> {
        let Some(source) = &self.log else {
            return self.state.lock().queue.clear();
        };
        {
            let st = self.state.lock();
            let end = source.log.end_seq();
            let from = source.released.load(Ordering::Acquire);
            if end > from {
                // The channels must pass these seqs without delivering them.
                for channel in st.channels.values() {
                    channel.skip_log_range(from, end);
                }
                source.released.fetch_max(end, Ordering::AcqRel);
            }
        }
        self.save_meta_later();
        Ok(())
    }

    /// Log mode: the seqs below `end` are another node's now (a peer
    /// promoted its replica of this topic): every channel passes them, and
    /// those still in the topic's backlog go. Returns how many of them the
    /// log still had. Blocking (writes `topic.meta`).
    pub fn retire_below(&self, end: u64) -> u64 {
        let Some(source) = &self.log else { return 0 };
        let retired = {
            let st = self.state.lock();
            let end = end.min(source.log.end_seq());
            let first = source.log.first_seq();
            for channel in st.channels.values() {
                channel.skip_log_range(first, end);
            }
            source.released.fetch_max(end, Ordering::AcqRel);
            end.saturating_sub(first)
        };
        self.save_meta();
        retired
    }

    fn stop(&self) -> BTreeMap<String, Arc<Channel>> {
        let mut st = self.state.lock();
        st.exiting = true;
        std::mem::take(&mut st.channels)
    }

    /// The topic was deleted: its channels and messages go, files included.
    /// Blocking.
    pub fn delete(&self) {
        for channel in self.stop().values() {
            channel.delete(&self.channel_config.disk);
        }
        if let Some(source) = &self.log {
            if let Err(e) = source.log.delete() {
                tracing::warn!(topic = %self.name, error = %e, "failed to remove the topic's log");
            }
            return;
        }
        let mut st = self.state.lock();
        let queue = std::mem::replace(
            &mut st.queue,
            BoundedQueue::new(0, crate::queue::Backend::Discard { dropped: 0 }),
        );
        if let crate::queue::Backend::Disk(q) = queue.into_backend() {
            if let Err(e) = q.delete() {
                tracing::warn!(topic = %self.name, error = %e, "failed to remove the topic's files");
            }
        }
        diskqueue::remove_front(&self.channel_config.disk.dir, &self.name);
    }

    /// nsqd is stopping: every channel saves its state, then the topic saves
    /// what waits in its memory and syncs its disk queue.
    pub fn shutdown(&self) -> io::Result<()> {
        let disk = &self.channel_config.disk;
        let mut result = Ok(());
        for channel in self.stop().values() {
            if let Err(e) = channel.shutdown(disk) {
                tracing::error!(topic = %self.name, channel = %channel.name, error = %e, "failed to save channel state");
                result = Err(e);
            }
        }
        if self.ephemeral {
            return result;
        }
        if self.log.is_some() {
            self.save_meta();
            return result;
        }
        let mut st = self.state.lock();
        let mut saved = Vec::new();
        for item in st.queue.drain_memory() {
            item.for_each_message(|m, at| {
                saved.push((m.clone(), at));
                Ok(())
            })?;
        }
        diskqueue::save_front(&disk.dir, &self.name, &saved)?;
        st.queue.backend().sync()?;
        result
    }

    /// Has the disk queues of the topic and its channels made durable, on
    /// the sync thread (the log writer syncs logs by itself).
    pub fn sync(&self) -> io::Result<()> {
        let channels = self.channels();
        if self.log.is_some() {
            return channels.iter().try_for_each(|c| c.sync());
        }
        self.state.lock().queue.backend().sync_soon()?;
        channels.iter().try_for_each(|c| c.sync())
    }

    pub fn stats(
        &self,
        channel_filter: &str,
        include_clients: bool,
        topic_filter: &str,
    ) -> Option<TopicStats> {
        let (depth, backend_depth, corrupt, disk_bytes, channels) = {
            let st = self.state.lock();
            let channels: Vec<Arc<Channel>> = if channel_filter.is_empty() {
                st.channels.values().cloned().collect()
            } else {
                st.channels
                    .get(channel_filter)
                    .cloned()
                    .into_iter()
                    .collect()
            };
            match &self.log {
                Some(source) => {
                    let held = source
                        .log
                        .end_seq()
                        .saturating_sub(source.released.load(Ordering::Acquire))
                        as usize;
                    (
                        held,
                        held,
                        source.log.corrupt_bytes(),
                        source.log.disk_bytes(),
                        channels,
                    )
                }
                None => (
                    st.queue.depth(),
                    st.queue.backend_depth(),
                    st.queue.corrupt_bytes(),
                    st.queue.backend_bytes(),
                    channels,
                ),
            }
        };
        if !channel_filter.is_empty() && channels.is_empty() {
            return None;
        }
        let mut samples = Samples::default();
        for channel in &channels {
            channel.collect_e2e(&mut samples);
        }
        // A topic without channels has no latency stream at all.
        let quantiles: &[f64] = if channels.is_empty() {
            &[]
        } else {
            &self.channel_config.e2e_percentiles
        };
        Some(TopicStats {
            topic_name: self.name.clone(),
            channels: channels
                .iter()
                .map(|c| c.stats(include_clients, topic_filter))
                .collect(),
            depth: depth as i64,
            backend_depth: backend_depth as i64,
            message_count: self.message_count.load(Ordering::Relaxed),
            message_bytes: self.message_bytes.load(Ordering::Relaxed),
            paused: self.is_paused(),
            e2e_processing_latency: samples.report(quantiles),
            backend_corrupt_bytes: corrupt,
            backend_bytes: disk_bytes,
        })
    }
}
