//! One topic's log: appends from publishers, the tail cache that serves
//! caught-up channels, and the writer thread's side of the files.

use super::meta::{self, TopicMeta};
use super::reader::LogReader;
use super::record::{
    encode_message, frame, message_seq, Frame, LogEntry, FRAME_HEADER, MESSAGE_HEADER,
};
use super::segment::{recover, SegmentFiles, SegmentIndex};
use super::writer::{LogWriter, Shared, Unsynced};
use super::{valid_name, NotCached};
use crate::message::Message;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::Notify;

/// Failed batches remembered for `committed`; a waiter older than all of
/// them gets an error rather than a guess.
const FAILURES_KEPT: usize = 1024;
/// Pending buffers are reused round after round: fresh memory costs a page
/// fault per 4 KiB, more than encoding into it. One past this size is let go
/// only after a run of rounds that used a quarter of it or less (a burst is
/// over), so that a steady heavy load keeps its buffers.
const SPARE_KEEP: usize = 4 << 20;
const SPARE_IDLE_ROUNDS: u32 = 64;

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub max_bytes_per_file: u64,
    /// Records are decoded only up to this body size: pass the largest
    /// `--max-msg-size` the log was ever written with.
    pub max_msg_size: u64,
    pub cache_max_bytes: usize,
    pub cache_max_msgs: usize,
}

impl LogConfig {
    pub fn new(max_bytes_per_file: u64, max_msg_size: u64) -> LogConfig {
        LogConfig {
            max_bytes_per_file,
            max_msg_size,
            cache_max_bytes: 4 << 20,
            cache_max_msgs: 16_384,
        }
    }
}

/// What appenders, cache readers and the writer's swap share, under one
/// short lock.
struct Tail {
    next_seq: u64,
    /// Encoded records of seqs `[pending_from, next_seq)`, not yet taken.
    pending: BytesMut,
    pending_from: u64,
    /// `append` calls in `pending`: the publishers that wait for it.
    pending_appends: u64,
    /// Every surviving record from `cache_from` on, appended or not yet visible.
    cache: VecDeque<LogEntry>,
    cache_from: u64,
    cache_bytes: usize,
}

impl Tail {
    fn cache_push(&mut self, entry: LogEntry, cfg: &LogConfig) {
        self.cache_bytes += entry.msg.body.len();
        self.cache.push_back(entry);
        while self.cache.len() > cfg.cache_max_msgs || self.cache_bytes > cfg.cache_max_bytes {
            let Some(old) = self.cache.pop_front() else {
                break;
            };
            self.cache_bytes -= old.msg.body.len();
            self.cache_from = old.seq + 1;
        }
    }

    fn cache_index(&self, seq: u64) -> usize {
        self.cache.partition_point(|e| e.seq < seq)
    }
}

/// The writer thread's side, never touched on a publisher's path.
struct WriterSide {
    files: SegmentFiles,
    /// The pending buffer being written; swapped with the tail's each round.
    spare: BytesMut,
    /// Rounds in a row that used little of a large `spare`.
    idle_rounds: u32,
    written_end: u64,
    synced_end: u64,
    unsynced_msgs: u64,
    unsynced: Unsynced,
}

/// A batch the writer took from a log in one round.
pub(super) struct Batch {
    first: u64,
    end: u64,
    /// The `append` calls it holds.
    pub(super) appends: u64,
    pub(super) failed: bool,
}

#[derive(Default)]
struct Failures {
    recent: VecDeque<(Range<u64>, io::ErrorKind, String)>,
    /// Seqs below this may have failed in a batch no longer remembered.
    forgotten_below: u64,
}

/// One topic's log. Share it as `Arc`; appends and cache reads only touch
/// memory, the files are the writer thread's (and `LogReader`'s).
pub struct TopicLog {
    me: Weak<TopicLog>,
    index: Arc<SegmentIndex>,
    cfg: LogConfig,
    writer: Arc<Shared>,
    tail: Mutex<Tail>,
    side: Mutex<Option<WriterSide>>,
    visible_end: AtomicU64,
    synced_end: AtomicU64,
    failures: Mutex<Failures>,
    changed: Notify,
    retain_from: AtomicU64,
    scheduled: AtomicBool,
    deleted: AtomicBool,
    meta_lock: Mutex<()>,
}

impl TopicLog {
    /// Opens or creates `dir/topic.log/`, recovering its last segment.
    /// Blocking.
    pub fn open(
        writer: &LogWriter,
        dir: &Path,
        topic: &str,
        cfg: LogConfig,
    ) -> io::Result<Arc<TopicLog>> {
        if !valid_name(topic) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid topic name {topic:?}"),
            ));
        }
        let shared = writer.shared.clone();
        let log_dir = dir.join(format!("{topic}.log"));
        if !log_dir.is_dir() {
            fs::create_dir_all(&log_dir)?;
            shared.io.sync_dir(dir)?;
        }
        meta::remove_stale_tmp(&log_dir);
        let max_payload = MESSAGE_HEADER + cfg.max_msg_size as usize;
        let recovered = recover(&log_dir, topic, max_payload, &shared.io)?;
        let end = recovered.end_seq;
        let index = SegmentIndex::new(topic, log_dir, max_payload, recovered.marks);
        index.corrupt_bytes.store(recovered.cut, Ordering::Relaxed);
        Ok(Arc::new_cyclic(|me| TopicLog {
            me: me.clone(),
            index: Arc::new(index),
            cfg,
            writer: shared,
            tail: Mutex::new(Tail {
                next_seq: end,
                pending: BytesMut::new(),
                pending_from: end,
                pending_appends: 0,
                cache: VecDeque::new(),
                cache_from: end,
                cache_bytes: 0,
            }),
            side: Mutex::new(Some(WriterSide {
                files: recovered.files,
                spare: BytesMut::new(),
                idle_rounds: 0,
                written_end: end,
                synced_end: end,
                unsynced_msgs: 0,
                unsynced: Unsynced::default(),
            })),
            visible_end: AtomicU64::new(end),
            synced_end: AtomicU64::new(end),
            failures: Mutex::default(),
            changed: Notify::new(),
            retain_from: AtomicU64::new(0),
            scheduled: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            meta_lock: Mutex::new(()),
        }))
    }

    pub fn topic(&self) -> &str {
        &self.index.topic
    }

    pub(super) fn dir(&self) -> &Path {
        &self.index.dir
    }

    /// Appends messages in one lock hold and returns the seqs they got. Only
    /// encodes into memory: never blocks on I/O. Bodies must be within
    /// `max_msg_size` (the protocol checks that before a message gets here).
    pub fn append<'a>(
        &self,
        msgs: impl IntoIterator<Item = (&'a Message, Option<i64>)>,
    ) -> Range<u64> {
        let mut tail = self.tail.lock();
        let start = tail.next_seq;
        for (msg, deliver_at) in msgs {
            debug_assert!(msg.body.len() as u64 <= self.cfg.max_msg_size);
            let seq = tail.next_seq;
            tail.next_seq += 1;
            encode_message(&mut tail.pending, seq, msg, deliver_at);
            let entry = LogEntry {
                seq,
                msg: msg.clone(),
                deliver_at,
            };
            tail.cache_push(entry, &self.cfg);
        }
        let end = tail.next_seq;
        if end > start {
            tail.pending_appends += 1;
        }
        drop(tail);
        if end > start {
            let arrivals = self.writer.count_arrival();
            if !self.schedule(arrivals) {
                self.writer.arrived(arrivals);
            }
        }
        start..end
    }

    /// Appends records encoded elsewhere (a replica receiving its origin's
    /// records, checksums included) as they are; returns the seqs from the
    /// first to one past the last. Each must be an intact message record
    /// within `max_msg_size`, and seqs must increase from `end_seq()` on;
    /// seqs in between are absent, as after a withdrawn batch. Nothing is
    /// appended when any record is bad. The records skip the tail cache:
    /// nothing reads a replica live, so channels of this log read from disk.
    pub fn append_encoded(&self, records: &[u8]) -> io::Result<Range<u64>> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let max_payload = MESSAGE_HEADER + self.cfg.max_msg_size as usize;
        let mut tail = self.tail.lock();
        let (mut next, mut first, mut pos) = (tail.next_seq, None, 0);
        while pos < records.len() {
            let payload = match frame(&records[pos..], max_payload) {
                Frame::Complete(payload) => payload,
                Frame::Incomplete => {
                    return Err(invalid(format!("a record at byte {pos} is cut short")))
                }
                Frame::Corrupt => {
                    return Err(invalid(format!(
                        "the record at byte {pos} is corrupt or too large"
                    )))
                }
            };
            let seq = message_seq(payload)
                .ok_or_else(|| invalid(format!("the record at byte {pos} is not a message")))?;
            if seq < next {
                return Err(invalid(format!(
                    "seq {seq} is below the log's next seq {next}"
                )));
            }
            first.get_or_insert(seq);
            next = seq + 1;
            pos += FRAME_HEADER + payload.len();
        }
        let Some(first) = first else {
            return Ok(tail.next_seq..tail.next_seq);
        };
        tail.pending.extend_from_slice(records);
        tail.next_seq = next;
        tail.pending_appends += 1;
        tail.cache.clear();
        tail.cache_bytes = 0;
        tail.cache_from = next;
        drop(tail);
        let arrivals = self.writer.count_arrival();
        if !self.schedule(arrivals) {
            self.writer.arrived(arrivals);
        }
        Ok(first..next)
    }

    /// Encodes the cached messages with seqs in `[from, limit)` into `out`,
    /// as the log stores them, until `out` has grown by `max_bytes` (at
    /// least one message goes); returns the seq it got to: every seq below
    /// it from `from` on is in `out` or absent. Pending messages count, so
    /// that they can be shipped while the writer is still syncing them.
    /// `Err(NotCached)` when `from` is older than the cache.
    pub fn encode_cached(
        &self,
        from: u64,
        limit: u64,
        max_bytes: usize,
        out: &mut BytesMut,
    ) -> Result<u64, NotCached> {
        let tail = self.tail.lock();
        if from < tail.cache_from {
            return Err(NotCached);
        }
        let limit = limit.min(tail.next_seq);
        let start = out.len();
        for entry in tail.cache.range(tail.cache_index(from)..) {
            if entry.seq >= limit {
                break;
            }
            if out.len() - start >= max_bytes {
                return Ok(entry.seq);
            }
            encode_message(out, entry.seq, &entry.msg, entry.deliver_at);
        }
        Ok(limit.max(from))
    }

    /// As [`TopicLog::encode_cached`], from the files, for seqs the cache no
    /// longer holds (a replica catching up); visible seqs only. Blocking.
    pub fn encode_stored(
        &self,
        from: u64,
        limit: u64,
        max_bytes: usize,
        out: &mut BytesMut,
    ) -> io::Result<u64> {
        let limit = limit.min(self.visible_end()).max(from);
        let mut reader = self.reader(from);
        let start = out.len();
        while out.len() - start < max_bytes {
            match reader.next(limit)? {
                Some(entry) => encode_message(out, entry.seq, &entry.msg, entry.deliver_at),
                None => return Ok(limit),
            }
        }
        Ok(reader.position())
    }

    /// Queues the log for the writer unless it is queued; false when it was.
    fn schedule(&self, arrivals: u64) -> bool {
        // A plain load first: appends while the log is already queued (most
        // of them, under load) then skip the read-modify-write. The tail
        // lock orders this against the writer clearing the flag.
        if !self.scheduled.load(Ordering::Acquire) && !self.scheduled.swap(true, Ordering::AcqRel) {
            if let Some(me) = self.me.upgrade() {
                self.writer.schedule_log(me, arrivals);
            }
            return true;
        }
        false
    }

    /// Resolves when every seq below `end` is written (and fsynced, when the
    /// policy is durable). `Err` when the batch holding `end - 1` failed: its
    /// seqs are withdrawn, the file is as it was before it. Pass the end of
    /// one `append`'s range: one append is always in one batch.
    pub async fn committed(&self, end: u64) -> io::Result<()> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome(end) {
                return outcome;
            }
            self.check_open()?;
            notified.await;
        }
    }

    fn outcome(&self, end: u64) -> Option<io::Result<()>> {
        if self.visible_end() < end {
            return None;
        }
        let Some(last) = end.checked_sub(1) else {
            return Some(Ok(()));
        };
        let failures = self.failures.lock();
        if let Some((_, kind, msg)) = failures.recent.iter().find(|(r, _, _)| r.contains(&last)) {
            return Some(Err(io::Error::new(*kind, msg.clone())));
        }
        if last < failures.forgotten_below {
            return Some(Err(io::Error::other("log append outcome no longer known")));
        }
        Some(Ok(()))
    }

    fn check_open(&self) -> io::Result<()> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(io::Error::other("topic log closed"));
        }
        if self.writer.stopped() {
            return Err(io::Error::other("log writer stopped"));
        }
        Ok(())
    }

    /// Seqs below this may be read by channels: written, and synced when the
    /// policy is durable (or withdrawn after a failure).
    pub fn visible_end(&self) -> u64 {
        self.visible_end.load(Ordering::Acquire)
    }

    /// Seqs below this are fsynced (or withdrawn).
    pub fn synced_end(&self) -> u64 {
        self.synced_end.load(Ordering::Acquire)
    }

    /// Waits until `visible_end()` is past `seen` and returns it. `Err` when
    /// the log is deleted or the writer stopped: nothing will come.
    pub async fn wait_visible(&self, seen: u64) -> io::Result<u64> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let end = self.visible_end();
            if end > seen {
                return Ok(end);
            }
            self.check_open()?;
            notified.await;
        }
    }

    pub(super) fn wake(&self) {
        self.changed.notify_waiters();
    }

    /// Appends up to `max` visible messages from `from` on to `out`, out of
    /// the in-memory tail; `Err(NotCached)` when `from` is older than the
    /// tail: read it with a [`LogReader`].
    pub fn read_cached(
        &self,
        from: u64,
        max: usize,
        out: &mut Vec<LogEntry>,
    ) -> Result<usize, NotCached> {
        let visible = self.visible_end();
        let tail = self.tail.lock();
        if from < tail.cache_from {
            return Err(NotCached);
        }
        let first = tail.cache_index(from);
        let before = out.len();
        out.extend(
            tail.cache
                .range(first..)
                .take(max)
                .take_while(|e| e.seq < visible)
                .cloned(),
        );
        Ok(out.len() - before)
    }

    /// Drops cached entries below `seq`: every channel has passed them.
    pub fn trim_cache_below(&self, seq: u64) {
        let mut tail = self.tail.lock();
        let upto = tail.cache_index(seq);
        let freed: usize = tail.cache.drain(..upto).map(|e| e.msg.body.len()).sum();
        tail.cache_bytes -= freed;
        tail.cache_from = tail.cache_from.max(seq.min(tail.next_seq));
    }

    /// A blocking sequential reader from `from`; run it in `spawn_blocking`.
    pub fn reader(&self, from: u64) -> LogReader {
        LogReader::new(self.index.clone(), from)
    }

    /// Lets the writer delete segments whose every seq is below `seq` (never
    /// the active one).
    pub fn retain_from(&self, seq: u64) {
        if self.retain_from.fetch_max(seq, Ordering::AcqRel) < seq {
            self.schedule(u64::MAX);
        }
    }

    /// The lowest seq the log may still hold.
    pub fn first_seq(&self) -> u64 {
        self.index.first_base()
    }

    /// The seq the next append gets.
    pub fn end_seq(&self) -> u64 {
        self.tail.lock().next_seq
    }

    pub fn disk_bytes(&self) -> u64 {
        self.index.bytes()
    }

    /// Bytes cut or skipped as corrupt since open.
    pub fn corrupt_bytes(&self) -> u64 {
        self.index.corrupt_bytes.load(Ordering::Relaxed)
    }

    /// Makes sure no seq below `seq` is handed out again. A journal that
    /// outlived the log's unsynced tail (a crash without `--sync-every=1`)
    /// knows seqs the log lost; new messages must not take them over.
    pub(super) fn ensure_end_at_least(&self, seq: u64) {
        if self.end_seq() < seq {
            tracing::warn!(topic = %self.index.topic, end = self.end_seq(), to = seq, "log ends below seqs a channel knows; skipping to them");
        }
        self.skip_to(seq);
    }

    /// Moves the next seq up to `seq` (when it is below): the seqs between
    /// are absent. A replica follows its origin's seqs past ones it was
    /// never sent.
    pub fn skip_to(&self, seq: u64) {
        let mut tail = self.tail.lock();
        if tail.next_seq >= seq {
            return;
        }
        tail.next_seq = seq;
        if self.resolve_skip(&mut tail) {
            drop(tail);
            self.wake();
        }
    }

    /// A skip with nothing pending and no batch in flight is visible at
    /// once; one with records pending goes with their batch, and one behind
    /// a batch in flight is resolved when that batch is published.
    fn resolve_skip(&self, tail: &mut Tail) -> bool {
        let end = tail.next_seq;
        if !tail.pending.is_empty()
            || tail.pending_from == end
            || self.visible_end() != tail.pending_from
        {
            return false;
        }
        tail.pending_from = end;
        tail.cache_from = tail.cache_from.max(end);
        self.synced_end.fetch_max(end, Ordering::AcqRel);
        self.visible_end.fetch_max(end, Ordering::AcqRel);
        true
    }

    /// Writes `meta` to `topic.meta` atomically. Blocking.
    pub fn write_meta(&self, meta: &TopicMeta) -> io::Result<()> {
        let _one_writer = self.meta_lock.lock();
        meta::write_atomically(&self.index.dir.join(meta::META_FILE), &meta.encode())
    }

    /// The last `topic.meta` written, `None` when there is none. A corrupt
    /// one is an `InvalidData` error. Blocking.
    pub fn read_meta(&self) -> io::Result<Option<TopicMeta>> {
        match fs::read(self.index.dir.join(meta::META_FILE)) {
            Ok(data) => TopicMeta::decode(&data)
                .map(Some)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "corrupt topic.meta")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stops writing, leaving the files as they are: appends not yet written
    /// fail, and waiters get errors. A log reopened afterwards ends where its
    /// files do. Blocking.
    pub fn close(&self) {
        self.deleted.store(true, Ordering::Release);
        // Waits for a round that is writing this log.
        self.side.lock().take();
        self.wake();
    }

    /// The topic is deleted: stops writing and removes the directory (with
    /// any journals still in it; delete those first). Blocking.
    pub fn delete(&self) -> io::Result<()> {
        self.close();
        match fs::remove_dir_all(&self.index.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    // The writer thread's side of a round: write, sync, publish, retire.

    /// Takes the pending records and writes them. A failed batch is undone
    /// and withdrawn at once.
    pub(super) fn write_pending(&self) -> Option<Batch> {
        self.scheduled.store(false, Ordering::Release);
        let mut guard = self.side.lock();
        let side = guard.as_mut()?;
        let (first, end, appends) = {
            let mut tail = self.tail.lock();
            if tail.pending.is_empty() {
                return None;
            }
            std::mem::swap(&mut tail.pending, &mut side.spare);
            let end = tail.next_seq;
            let appends = std::mem::take(&mut tail.pending_appends);
            (std::mem::replace(&mut tail.pending_from, end), end, appends)
        };
        let io = &self.writer.io;
        let result = side.files.write(
            &self.index.dir,
            &side.spare,
            self.cfg.max_bytes_per_file,
            io,
        );
        if side.spare.capacity() > SPARE_KEEP && side.spare.len() < side.spare.capacity() / 4 {
            side.idle_rounds += 1;
            if side.idle_rounds > SPARE_IDLE_ROUNDS {
                side.spare = BytesMut::new();
            }
        } else {
            side.idle_rounds = 0;
        }
        side.spare.clear();
        let mut batch = Batch {
            first,
            end,
            appends,
            failed: false,
        };
        match result {
            Ok(()) => {
                side.written_end = end;
                side.unsynced_msgs += end - first;
                side.unsynced.since.get_or_insert_with(Instant::now);
            }
            Err(e) => self.withdraw(&mut batch, &e),
        }
        Some(batch)
    }

    fn withdraw(&self, batch: &mut Batch, error: &io::Error) {
        tracing::error!(topic = %self.index.topic, first = batch.first, end = batch.end, %error, "log write failed; the batch is withdrawn");
        batch.failed = true;
        {
            let mut tail = self.tail.lock();
            let (a, b) = (tail.cache_index(batch.first), tail.cache_index(batch.end));
            let freed: usize = tail.cache.drain(a..b).map(|e| e.msg.body.len()).sum();
            tail.cache_bytes -= freed;
        }
        {
            let mut failures = self.failures.lock();
            if failures.recent.len() == FAILURES_KEPT {
                if let Some((range, _, _)) = failures.recent.pop_front() {
                    failures.forgotten_below = range.end;
                }
            }
            let message = format!("log write failed: {error}");
            failures
                .recent
                .push_back((batch.first..batch.end, error.kind(), message));
        }
        self.visible_end.fetch_max(batch.end, Ordering::AcqRel);
        self.wake();
    }

    /// fsyncs when the policy asks: every round when durable, else every
    /// `sync_every` messages or `sync_timeout`. In durable mode a failed
    /// fsync withdraws the round's batch like a failed write.
    pub(super) fn sync_if_due(&self, batch: Option<&mut Batch>, now: Instant, flush: bool) {
        let mut guard = self.side.lock();
        let Some(side) = guard.as_mut() else { return };
        let Some(since) = side.unsynced.since else {
            return;
        };
        let policy = self.writer.policy;
        let due = flush
            || policy.is_durable()
            || side.unsynced_msgs >= policy.sync_every
            || now >= since + policy.sync_timeout;
        if !due {
            return;
        }
        match side.files.sync(&self.writer.io) {
            Ok(()) => {
                side.synced_end = side.written_end;
                side.unsynced_msgs = 0;
                side.unsynced.since = None;
            }
            Err(e) => match batch {
                Some(batch) if policy.is_durable() && !batch.failed => {
                    side.files.undo(&self.index.dir, &self.writer.io);
                    side.unsynced_msgs = 0;
                    side.unsynced.since = None;
                    drop(guard);
                    self.withdraw(batch, &e);
                }
                _ => {
                    tracing::error!(topic = %self.index.topic, error = %e, "log fsync failed; retrying after sync_timeout");
                    side.unsynced.since = Some(now);
                }
            },
        }
    }

    /// Makes the round's batch visible and wakes its waiters; without a
    /// batch, publishes what an fsync covered.
    pub(super) fn publish(&self, batch: Option<&Batch>) {
        let mut guard = self.side.lock();
        let Some(side) = guard.as_mut() else { return };
        let mut changed = side.synced_end > self.synced_end();
        if let Some(batch) = batch.filter(|b| !b.failed) {
            side.files.publish(&self.index);
            let visible = if self.writer.policy.is_durable() {
                side.synced_end
            } else {
                batch.end
            };
            changed |= self.visible_end.fetch_max(visible, Ordering::AcqRel) < visible;
        }
        self.synced_end.fetch_max(side.synced_end, Ordering::AcqRel);
        drop(guard);
        changed |= self.resolve_skip(&mut self.tail.lock());
        if changed {
            self.wake();
        }
    }

    pub(super) fn retire(&self) {
        let seq = self.retain_from.load(Ordering::Acquire);
        if seq > self.index.first_base() {
            if let Some(side) = self.side.lock().as_ref() {
                side.files.retire(&self.index, seq, &self.writer.io);
            }
        }
    }

    pub(super) fn sync_deadline(&self) -> Option<Instant> {
        let since = self.side.lock().as_ref()?.unsynced.since?;
        Some(since + self.writer.policy.sync_timeout)
    }

    pub(super) fn list_if_unsynced(&self) -> bool {
        self.side
            .lock()
            .as_mut()
            .is_some_and(|side| side.unsynced.list())
    }

    pub(super) fn keep_listed(&self) -> bool {
        self.side
            .lock()
            .as_mut()
            .is_some_and(|side| side.unsynced.keep_listed())
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
