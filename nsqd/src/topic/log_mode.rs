//! A topic in log mode: appends, the release point, `topic.meta`, retention,
//! and the move of earlier disk queues into a new log.

use super::{fan_out, offer, PutError, State, Topic};
use crate::channel::{ChannelConfig, LogSource};
use crate::diskqueue;
use crate::log::{Disposition, LogWriter, TopicLog, TopicMeta};
use crate::message::Message;
use crate::queue::{instant_to_unix, Item};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A message taken over from a promoted replica (see [`Topic::adopt`]).
pub struct Adopted {
    pub msg: Message,
    /// Unix ns before which it must not be delivered (a DPUB).
    pub deliver_at: Option<i64>,
    /// Each of the replica's channels' state for it; `None` when it was in
    /// the topic's backlog, not yet any channel's.
    pub channels: Option<BTreeMap<String, Disposition>>,
}

/// How often a log-mode topic lets go of segments every channel has passed.
const RETAIN_INTERVAL: Duration = Duration::from_secs(1);
/// An idle topic's passes come half as often each time they find its
/// channels where they were, down to one in this long: ten thousand idle
/// topics would otherwise wake nsqd ten thousand times a second.
const RETAIN_IDLE_INTERVAL: Duration = Duration::from_secs(32);
/// The passes of all topics due within the same second run together.
const RETAIN_GRID: Duration = Duration::from_secs(1);

impl Topic {
    /// Log mode: appends to the log, releases to the channels when they
    /// take messages now, and copies to the channels that are not cursors
    /// (ephemeral ones).
    pub(super) fn append(
        &self,
        source: &LogSource,
        item: Item,
        body_bytes: usize,
    ) -> Result<u64, PutError> {
        let count = item.len() as u64;
        let mut msgs: Vec<(Message, Option<i64>)> = Vec::with_capacity(item.len());
        match &item {
            Item::Run(run) => {
                let mut run = run.clone();
                while let Some(msg) = run.next_message() {
                    msgs.push((msg, None));
                }
            }
            Item::One(msg) => msgs.push((msg.clone(), None)),
            Item::Deferred(msg, due) => msgs.push((msg.clone(), Some(instant_to_unix(*due)))),
        }
        let st = self.state.lock();
        if st.exiting {
            return Err(PutError::Exiting);
        }
        let range = source.log.append(msgs.iter().map(|(m, at)| (m, *at)));
        let mut to_offer = Vec::new();
        let copied = match st.releasing() {
            true => {
                self.release(&st, source, range.end, false);
                // Cursors read the log; only the other channels (ephemeral
                // ones) take copies.
                fan_out(
                    st.channels.values().filter(|c| !c.is_cursor()),
                    item,
                    &mut to_offer,
                )
            }
            false => Ok(()),
        };
        drop(st);
        offer(to_offer);
        copied?;
        self.message_count.fetch_add(count, Ordering::Relaxed);
        self.message_bytes
            .fetch_add(body_bytes as u64, Ordering::Relaxed);
        Ok(range.end)
    }

    /// Log mode: appends messages taken over from a promoted replica, each
    /// with what each of the replica's channels still had to do with it,
    /// and gives every local channel that state before any can read them:
    /// a channel that finished a message (or that the replica did not
    /// have) passes it; one that requeued or deferred it gets it back
    /// with those attempts and that due time. `None` as the state: the
    /// message was in the topic's own backlog there, so it is every
    /// channel's here. Channels that are not cursors (ephemeral ones) get
    /// none of them. Returns the end of the seqs appended.
    pub fn adopt(&self, batch: &[Adopted]) -> Result<u64, PutError> {
        let Some(source) = &self.log else {
            return Err(PutError::Backend(io::Error::other("not a log-mode topic")));
        };
        let st = self.state.lock();
        if st.exiting {
            return Err(PutError::Exiting);
        }
        // Log-mode appends happen only under this lock: the seqs are exact.
        let start = source.log.end_seq();
        for channel in st.channels.values() {
            let Some(journal) = channel.journal() else {
                continue;
            };
            for (seq, adopted) in (start..).zip(batch) {
                let Some(states) = &adopted.channels else {
                    continue;
                };
                match states.get(&channel.name) {
                    None | Some(Disposition::Finished) => journal.fin(seq),
                    Some(Disposition::Deliver { attempts, due }) => {
                        if attempts.is_some() || due.is_some() {
                            let attempts = attempts.unwrap_or(adopted.msg.attempts);
                            journal.requeue(seq, attempts, *due);
                        }
                    }
                }
            }
            journal.urgent();
        }
        let range = source
            .log
            .append(batch.iter().map(|a| (&a.msg, a.deliver_at)));
        debug_assert_eq!(range.start, start);
        if st.releasing() {
            self.release(&st, source, range.end, false);
        }
        drop(st);
        self.message_count
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let bytes: usize = batch.iter().map(|a| a.msg.body.len()).sum();
        self.message_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(range.end)
    }

    /// Waits until the log has committed the seqs below `end` (see [`Topic::put`]).
    pub async fn committed(&self, end: u64) -> io::Result<()> {
        match &self.log {
            Some(source) => source.log.committed(end).await,
            None => Ok(()),
        }
    }

    /// Log mode: hands the seqs below `to` to the channels. `wake`: their
    /// consumers may read now (otherwise the log's watcher wakes them once
    /// the seqs are visible).
    pub(super) fn release(&self, st: &State, source: &LogSource, to: u64, wake: bool) {
        let from = source.released.fetch_max(to, Ordering::AcqRel);
        if to <= from {
            return;
        }
        for channel in st.channels.values() {
            channel.released(to - from, wake);
        }
    }

    /// Log mode: releases everything appended so far if the channels take
    /// messages now.
    pub(super) fn release_all(&self, st: &State) {
        if let Some(source) = &self.log {
            if st.releasing() {
                self.release(st, source, source.log.end_seq(), true);
            }
        }
    }

    /// Log mode: records the release point in `topic.meta`, from a blocking
    /// task, so that a restart knows what the topic itself still holds.
    pub(super) fn save_meta_later(&self) {
        if self.log.is_some() {
            if let Some(me) = self.me.upgrade() {
                tokio::task::spawn_blocking(move || me.save_meta());
            }
        }
    }

    /// As [`Topic::save_meta_later`], now. Blocking.
    pub(super) fn save_meta(&self) {
        let Some(source) = &self.log else { return };
        let _turn = self.meta_lock.lock();
        let paused = self.state.lock().paused;
        let released = source.released.load(Ordering::Acquire);
        let meta = TopicMeta {
            backlog_floor: released,
            released_end: paused.then_some(released),
        };
        if let Err(e) = source.log.write_meta(&meta) {
            tracing::error!(topic = %self.name, error = %e, "failed to write topic.meta");
        }
    }

    /// Log mode: lets the log drop what every channel has finished, and its
    /// cache what every channel has read. Returns the release point and the
    /// floor and read point it kept to, or `None` when it did nothing.
    pub(super) fn retain(&self, log: &TopicLog) -> Option<(u64, u64, u64)> {
        let source = self.log.as_ref()?;
        if !self.state.lock().started {
            // Opened, but its channels are not all back yet (nsqd's start
            // opens a topic before its channels): without them the release
            // point would pass for everyone's floor, and unread segments go.
            return None;
        }
        let released = source.released.load(Ordering::Acquire);
        let (mut floor, mut read) = (released, released);
        for channel in self.channels() {
            if let Some((f, r)) = channel.log_positions() {
                floor = floor.min(f);
                read = read.min(r);
            }
        }
        log.retain_from(floor);
        log.trim_cache_below(read);
        Some((released, floor, read))
    }
}

/// Log mode: wakes the channels' consumers each time the writer makes more
/// of the log visible, and lets go of what every channel is done with:
/// every second while the topic or its channels move, less and less often
/// (down to [`RETAIN_IDLE_INTERVAL`]) while they stay put, and every second
/// again from the next publish.
pub(super) async fn watch_log(topic: Weak<Topic>, log: Arc<TopicLog>) {
    let mut seen = log.visible_end();
    let mut every = RETAIN_INTERVAL;
    let mut kept = None;
    let retain_at = tokio::time::sleep_until(crate::coalesce::on_grid(every, RETAIN_GRID));
    tokio::pin!(retain_at);
    loop {
        tokio::select! {
            visible = log.wait_visible(seen) => {
                let Ok(visible) = visible else { return };
                let count = usize::try_from(visible.saturating_sub(seen)).unwrap_or(usize::MAX);
                seen = visible;
                let Some(topic) = topic.upgrade() else { return };
                // Cursors read the log; the other channels (ephemeral ones)
                // were offered their copies by the publish itself.
                for channel in topic.channels().iter().filter(|c| c.is_cursor()) {
                    channel.offer(count);
                }
                if every > RETAIN_INTERVAL {
                    every = RETAIN_INTERVAL;
                    let sooner = crate::coalesce::on_grid(every, RETAIN_GRID);
                    if sooner < retain_at.deadline() {
                        retain_at.as_mut().reset(sooner);
                    }
                }
            }
            _ = &mut retain_at => {
                let Some(topic) = topic.upgrade() else { return };
                let now_kept = topic.retain(&log);
                every = match now_kept {
                    Some(_) if now_kept == kept => (every * 2).min(RETAIN_IDLE_INTERVAL),
                    _ => RETAIN_INTERVAL,
                };
                kept = now_kept;
                retain_at.as_mut().reset(crate::coalesce::on_grid(every, RETAIN_GRID));
            }
        }
    }
}

/// A topic that had disk queues (an earlier run without log mode, or an
/// imported upstream data directory) gets a log: what its own queue held
/// is appended first (its backlog, for every channel), then what each
/// channel's queue held, each channel's run noted so that the others skip
/// it. The queues are removed once the log has them on disk. Blocking.
pub(super) fn import_disk_queues(
    topic: &str,
    config: &ChannelConfig,
    log: &TopicLog,
    writer: &LogWriter,
) -> io::Result<BTreeMap<String, std::ops::Range<u64>>> {
    let dir = &config.disk.dir;
    let mut channels: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| {
            let (queue, _) = f.split_once(".queue.")?;
            let (t, c) = queue.split_once(':')?;
            (t == topic).then(|| c.to_string())
        })
        .collect();
    channels.sort();
    channels.dedup();
    let has_topic_queue = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .any(|f| f.starts_with(&format!("{topic}.queue.")));
    if channels.is_empty() && !has_topic_queue {
        return Ok(BTreeMap::new());
    }
    let mut drained = Vec::new();
    let mut drain = |queue_name: &str| -> io::Result<std::ops::Range<u64>> {
        let start = log.end_seq();
        let mut stored = diskqueue::take_front(dir, queue_name, config.disk.max_msg_size)?;
        let mut queue = diskqueue::DiskQueue::open(queue_name, config.disk.clone())?;
        while let Some(s) = queue.pop()? {
            stored.push(s);
        }
        for batch in stored.chunks(1024) {
            log.append(batch.iter().map(|s| (&s.msg, s.deliver_at)));
        }
        drained.push(queue);
        Ok(start..log.end_seq())
    };
    drain(topic)?;
    let mut runs = BTreeMap::new();
    for channel in channels {
        let run = drain(&format!("{topic}:{channel}"))?;
        runs.insert(channel, run);
    }
    writer.flush();
    for queue in drained {
        queue.delete()?;
    }
    tracing::info!(
        topic,
        messages = log.end_seq(),
        "moved the topic's disk queues into its log"
    );
    Ok(runs)
}
