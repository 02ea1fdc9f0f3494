//! A channel's journal: its acknowledgement state in memory, and the file of
//! records (a snapshot, then deltas) that rebuilds it after a crash.
//!
//! FINs are not fsynced on their own: a FIN lost in a crash costs one
//! duplicate delivery, never a message. A requeue with a due time is urgent
//! in durable mode (fsynced in the writer's next round), since losing it
//! means delivering early.

use super::acks::{Acks, Disposition, RangeSet};
use super::record::{
    decode_journal, encode_delta, frame, Delta, Frame, JournalRecord, FRAME_HEADER,
};
use super::topic_log::TopicLog;
use super::valid_name;
use super::writer::{LogWriter, PausePoint, Shared, Unsynced};
use bytes::BytesMut;
use parking_lot::Mutex;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A journal is compacted once it passes this, or 4 fresh snapshots.
const COMPACT_MIN: u64 = 64 * 1024;
/// After a failed write the deltas stay in memory this long before a retry.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The acknowledgement state plus the deltas not yet taken by the writer.
/// Pure (no files), so that a property test can drive it.
pub(super) struct Ledger {
    pub(super) acks: Acks,
    /// Encoded Requeue and Empty records, in order.
    pub(super) pending: BytesMut,
    /// FINs since the last take, merged: consumers finishing interleaved
    /// runs of seqs cost a record per run per round, not one per FIN. They
    /// are written after `pending`, which is safe because a seq is only
    /// requeued while unfinished, and FINs commute with each other and Empty.
    fins: RangeSet,
    urgent: bool,
}

impl Ledger {
    pub(super) fn new(acks: Acks) -> Ledger {
        Ledger {
            acks,
            pending: BytesMut::new(),
            fins: RangeSet::default(),
            urgent: false,
        }
    }

    /// Each returns whether it recorded something.
    pub(super) fn fin(&mut self, seq: u64) -> bool {
        self.acks.fin(seq) && self.fins.insert(seq, seq + 1) > 0
    }

    pub(super) fn fin_range(&mut self, start: u64, end: u64) -> bool {
        let start = start.max(self.acks.floor());
        self.acks.fin_range(start, end) && self.fins.insert(start, end) > 0
    }

    pub(super) fn requeue(&mut self, seq: u64, attempts: u16, due: Option<i64>) -> bool {
        let due_ns = due.unwrap_or(0);
        if !self.acks.requeue(seq, attempts, due_ns) {
            return false;
        }
        self.urgent |= due.is_some();
        encode_delta(
            &mut self.pending,
            &Delta::Requeue {
                seq,
                attempts,
                due: due_ns,
            },
        );
        true
    }

    pub(super) fn empty(&mut self, upto: u64) -> bool {
        if !self.acks.fin_range(0, upto) {
            return false;
        }
        encode_delta(&mut self.pending, &Delta::Empty { upto });
        true
    }

    #[cfg(test)]
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.fins.len() > 0
    }

    /// Moves the pending deltas into `into` (empty); returns their urgency.
    pub(super) fn take(&mut self, into: &mut BytesMut) -> bool {
        for (start, end) in self.fins.iter() {
            encode_delta(&mut self.pending, &Delta::Fin { start, end });
        }
        self.fins.clear();
        std::mem::swap(&mut self.pending, into);
        std::mem::take(&mut self.urgent)
    }

    /// Drops the pending deltas: the journal was deleted.
    fn discard(&mut self) {
        self.take(&mut BytesMut::new());
    }

    /// Puts deltas that could not be written back in front of newer ones.
    fn restore(&mut self, deltas: &[u8], urgent: bool) {
        let mut joined = BytesMut::with_capacity(deltas.len() + self.pending.len());
        joined.extend_from_slice(deltas);
        joined.extend_from_slice(&self.pending);
        self.pending = joined;
        self.urgent |= urgent;
    }
}

/// Why replay stopped before the end of the data.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Cut {
    /// A record runs past the end: the crash happened while writing it.
    Torn,
    /// A record failed its checksum or made no sense; the rest is dropped.
    Corrupt,
}

/// Rebuilds the state from a journal's bytes: `None` when it does not start
/// with an intact snapshot. Also returns how many bytes are good.
pub(super) fn replay(data: &[u8]) -> (Option<Acks>, usize, Option<Cut>) {
    let (mut acks, mut pos) = (None, 0);
    while pos < data.len() {
        // No length bound beyond the data: a snapshot may be large, and a
        // length past the end reads as a torn record.
        let payload = match frame(&data[pos..], u32::MAX as usize) {
            Frame::Complete(payload) => payload,
            Frame::Incomplete => return (acks, pos, Some(Cut::Torn)),
            Frame::Corrupt => return (acks, pos, Some(Cut::Corrupt)),
        };
        match (decode_journal(payload), acks.as_mut()) {
            (Some(JournalRecord::Snapshot(body)), None) => match Acks::decode_snapshot(body) {
                Some(snapshot) => acks = Some(snapshot),
                None => return (None, pos, Some(Cut::Corrupt)),
            },
            (Some(JournalRecord::Delta(delta)), Some(state)) => apply(state, delta),
            _ => return (acks, pos, Some(Cut::Corrupt)),
        }
        pos += FRAME_HEADER + payload.len();
    }
    (acks, pos, None)
}

fn apply(acks: &mut Acks, delta: Delta) {
    match delta {
        Delta::Fin { start, end } => acks.fin_range(start, end),
        Delta::Requeue { seq, attempts, due } => acks.requeue(seq, attempts, due),
        Delta::Empty { upto } => acks.fin_range(0, upto),
    };
}

/// The writer thread's side of the file.
struct JournalFile {
    file: File,
    len: u64,
    spare: BytesMut,
    unsynced: Unsynced,
    /// Urgent deltas are written but not synced.
    urgent: bool,
    failed_at: Option<Instant>,
}

/// One channel's journal. `fin`, `requeue` and `empty` only touch memory
/// under a short lock; the writer thread writes the records.
pub struct Journal {
    me: Weak<Journal>,
    topic: String,
    channel: String,
    path: PathBuf,
    dir: PathBuf,
    writer: Arc<Shared>,
    ledger: Mutex<Ledger>,
    side: Mutex<Option<JournalFile>>,
    scheduled: AtomicBool,
}

impl Journal {
    /// Opens the channel's journal and rebuilds its state, or creates it with
    /// everything below `start` finished (a new channel starts at the end of
    /// the log). Raises the log's end past every seq the journal mentions.
    /// Blocking.
    pub fn open(
        writer: &LogWriter,
        log: &TopicLog,
        channel: &str,
        start: u64,
    ) -> io::Result<Arc<Journal>> {
        if !valid_name(channel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid channel name {channel:?}"),
            ));
        }
        let shared = writer.shared.clone();
        let dir = log.dir().to_path_buf();
        let path = dir.join(format!("{channel}.journal"));
        let topic = log.topic();
        let tmp = tmp_path(&path);
        if fs::remove_file(&tmp).is_ok() {
            tracing::info!(topic, channel, "removed an unfinished journal compaction");
        }
        let acks = match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let acks = Acks::new(start);
                write_snapshot(&shared, &path, &dir, &snapshot_of(&acks), false)?;
                acks
            }
            Err(e) => return Err(e),
            Ok(data) => match replay(&data) {
                (Some(acks), good, cut) => {
                    if let Some(cut) = cut {
                        let dropped = data.len() - good;
                        match cut {
                            Cut::Torn => tracing::warn!(topic, channel, bytes = dropped, "cut a torn tail off the journal"),
                            Cut::Corrupt => tracing::warn!(topic, channel, bytes = dropped, "corrupt journal record; dropped it and the rest (finished messages may be delivered again, deferred ones early)"),
                        }
                        let file = OpenOptions::new().write(true).open(&path)?;
                        file.set_len(good as u64)?;
                        shared.io.sync_file(&file)?;
                    }
                    acks
                }
                (None, _, _) => {
                    let acks = Acks::new(log.first_seq());
                    tracing::error!(
                        topic,
                        channel,
                        floor = acks.floor(),
                        "journal has no intact snapshot; redelivering everything the log holds"
                    );
                    write_snapshot(&shared, &path, &dir, &snapshot_of(&acks), false)?;
                    acks
                }
            },
        };
        log.ensure_end_at_least(acks.high_water());
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(Arc::new_cyclic(|me| Journal {
            me: me.clone(),
            topic: topic.to_string(),
            channel: channel.to_string(),
            path,
            dir,
            writer: shared,
            ledger: Mutex::new(Ledger::new(acks)),
            side: Mutex::new(Some(JournalFile {
                file,
                len,
                spare: BytesMut::new(),
                unsynced: Unsynced::default(),
                urgent: false,
                failed_at: None,
            })),
            scheduled: AtomicBool::new(false),
        }))
    }

    /// `seq` is finished. Already finished (or below the floor): no record.
    /// Stops the calling thread for good at `point` when the tests asked for
    /// it (`NSQD_TEST_PAUSE_AT`): for moments outside the writer that
    /// lead up to this journal's records.
    pub fn pause(&self, point: PausePoint) {
        self.writer.pause(point);
    }

    pub fn fin(&self, seq: u64) {
        let recorded = self.ledger.lock().fin(seq);
        self.schedule_if(recorded);
    }

    /// Seqs `[start, end)` are finished; also how a channel passes seqs its
    /// reader skipped (see the module doc).
    pub fn fin_range(&self, start: u64, end: u64) {
        let recorded = self.ledger.lock().fin_range(start, end);
        self.schedule_if(recorded);
    }

    /// `seq` went back in line with `attempts`, due at `due` (Unix ns) or now.
    pub fn requeue(&self, seq: u64, attempts: u16, due: Option<i64>) {
        let recorded = self.ledger.lock().requeue(seq, attempts, due);
        self.schedule_if(recorded);
    }

    /// Everything below `upto` is finished: the channel was emptied.
    pub fn empty(&self, upto: u64) {
        let recorded = self.ledger.lock().empty(upto);
        self.schedule_if(recorded);
    }

    /// The lowest seq not known to be finished: replay starts here.
    pub fn floor(&self) -> u64 {
        self.ledger.lock().acks.floor()
    }

    pub fn classify(&self, seq: u64) -> Disposition {
        self.ledger.lock().acks.classify(seq)
    }

    /// Finished seqs at or above `seq`: a channel's depth is
    /// `end_seq - floor - finished_at_or_above(floor)`.
    pub fn finished_at_or_above(&self, seq: u64) -> u64 {
        self.ledger.lock().acks.finished_at_or_above(seq)
    }

    /// The channel is deleted: stops writing and removes the file. Blocking.
    pub fn delete(&self) -> io::Result<()> {
        self.side.lock().take();
        let _ = fs::remove_file(tmp_path(&self.path));
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn schedule_if(&self, recorded: bool) {
        if recorded
            && !self.scheduled.load(Ordering::Acquire)
            && !self.scheduled.swap(true, Ordering::AcqRel)
        {
            if let Some(me) = self.me.upgrade() {
                self.writer.schedule_journal(me);
            }
        }
    }

    // The writer thread's side.

    /// Writes the pending deltas; true when it wrote any.
    pub(super) fn write_pending(&self, now: Instant) -> bool {
        self.scheduled.store(false, Ordering::Release);
        let mut guard = self.side.lock();
        let Some(side) = guard.as_mut() else {
            self.ledger.lock().discard();
            return false;
        };
        if side.failed_at.is_some_and(|at| now < at + RETRY_AFTER) {
            return false;
        }
        let urgent = self.ledger.lock().take(&mut side.spare);
        if side.spare.is_empty() {
            return false;
        }
        let io = &self.writer.io;
        let written = match io
            .before_write()
            .and_then(|()| side.file.write_all_at(&side.spare, side.len))
        {
            Ok(()) => {
                side.len += side.spare.len() as u64;
                side.urgent |= urgent;
                side.failed_at = None;
                side.unsynced.since.get_or_insert(now);
                true
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, channel = %self.channel, error = %e, "journal write failed; retrying");
                let _ = side.file.set_len(side.len);
                self.ledger.lock().restore(&side.spare, urgent);
                side.failed_at = Some(now);
                side.unsynced.since = Some(now);
                false
            }
        };
        side.spare.clear();
        written
    }

    pub(super) fn sync_if_due(&self, now: Instant, flush: bool) {
        let mut guard = self.side.lock();
        let Some(side) = guard.as_mut() else { return };
        let Some(since) = side.unsynced.since else {
            return;
        };
        let policy = self.writer.policy;
        let due =
            flush || (side.urgent && policy.is_durable()) || now >= since + policy.sync_timeout;
        if !due || side.failed_at.is_some() {
            return;
        }
        match self.writer.io.sync_file(&side.file) {
            Ok(()) => {
                side.unsynced.since = None;
                side.urgent = false;
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, channel = %self.channel, error = %e, "journal fsync failed; retrying after sync_timeout");
                side.unsynced.since = Some(now);
            }
        }
    }

    /// Replaces a journal grown past its bound with a snapshot of the state.
    /// The state and the deltas not yet written are taken under one lock:
    /// the snapshot holds them, and later deltas go after it.
    pub(super) fn compact_if_large(&self) {
        let mut guard = self.side.lock();
        let Some(side) = guard.as_mut() else { return };
        let mut snapshot = BytesMut::new();
        let (taken, urgent) = {
            let mut ledger = self.ledger.lock();
            let bound = COMPACT_MIN.max(4 * ledger.acks.snapshot_len() as u64);
            if side.len <= bound || side.failed_at.is_some() {
                return;
            }
            ledger.acks.encode_snapshot(&mut snapshot);
            let mut taken = BytesMut::new();
            let urgent = ledger.take(&mut taken);
            (taken, urgent)
        };
        match write_snapshot(&self.writer, &self.path, &self.dir, &snapshot, true) {
            Ok(file) => {
                tracing::debug!(topic = %self.topic, channel = %self.channel, from = side.len, to = snapshot.len(), "compacted the journal");
                side.len = snapshot.len() as u64;
                side.file = file;
                side.unsynced.since = None;
                side.urgent = false;
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, channel = %self.channel, error = %e, "journal compaction failed; keeping the journal");
                self.ledger.lock().restore(&taken, urgent);
                drop(guard);
                self.schedule_if(true);
            }
        }
    }

    pub(super) fn sync_deadline(&self) -> Option<Instant> {
        let guard = self.side.lock();
        let side = guard.as_ref()?;
        let at = side.unsynced.since? + self.writer.policy.sync_timeout;
        Some(
            side.failed_at
                .map_or(at, |failed| at.max(failed + RETRY_AFTER)),
        )
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

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn snapshot_of(acks: &Acks) -> BytesMut {
    let mut buf = BytesMut::with_capacity(acks.snapshot_len());
    acks.encode_snapshot(&mut buf);
    buf
}

/// Writes a journal holding only `snapshot` in place of `path`: temp file,
/// fsync, rename, fsync of the directory. A crash leaves the old journal or
/// the new one, both complete; the next open removes a stale temp file.
fn write_snapshot(
    shared: &Shared,
    path: &Path,
    dir: &Path,
    snapshot: &[u8],
    in_writer: bool,
) -> io::Result<File> {
    let tmp = tmp_path(path);
    let written = (|| {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        shared.io.before_write()?;
        file.write_all_at(snapshot, 0)?;
        shared.io.sync_file(&file)?;
        Ok(file)
    })();
    let file = match written {
        Ok(file) => file,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if in_writer {
        shared.pause(PausePoint::CompactionWritten);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if in_writer {
        shared.pause(PausePoint::CompactionRenamed);
    }
    if let Err(e) = shared.io.sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not sync the directory after replacing a journal");
    }
    Ok(file)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
