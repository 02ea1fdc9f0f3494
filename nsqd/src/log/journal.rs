//! A channel's journal: its acknowledgement state in memory, and the file of
//! records (a snapshot, then deltas) that rebuilds it after a crash.
//!
//! FINs are not fsynced on their own: a FIN lost in a crash costs one
//! duplicate delivery, never a message. A requeue with a due time is urgent
//! in durable mode (fsynced in the writer's next round), since losing it
//! means delivering early.

use super::acks::{Acks, Disposition, RangeSet};
use super::record::{
    decode_journal, encode_delta, frame, Delta, Frame, JournalRecord, DELTA_MAX_PAYLOAD,
    FRAME_HEADER,
};
use super::topic_log::TopicLog;
use super::valid_name;
use super::writer::{LogWriter, PausePoint, Shared, Unsynced};
use bytes::{Bytes, BytesMut};
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
/// A replication tap that grows past either bound gives up its deltas: the
/// next take sends a snapshot instead.
const TAP_MAX_BYTES: usize = 1 << 20;
const TAP_MAX_RANGES: usize = 65_536;

/// What a channel's replication tap saw since it was last taken: the same
/// deltas its journal records, for the channel's replica on a peer.
#[derive(Default)]
struct Tap {
    fins: RangeSet,
    pending: BytesMut,
    overflow: bool,
}

impl Tap {
    fn fins(&mut self, start: u64, end: u64) {
        if !self.overflow {
            self.fins.insert(start, end);
            self.bound();
        }
    }

    fn delta(&mut self, delta: &Delta) {
        if !self.overflow {
            encode_delta(&mut self.pending, delta);
            self.bound();
        }
    }

    fn bound(&mut self) {
        if self.pending.len() > TAP_MAX_BYTES || self.fins.len() > TAP_MAX_RANGES {
            *self = Tap {
                overflow: true,
                ..Tap::default()
            };
        }
    }
}

/// What [`Journal::take_tap`] hands to replication.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TapTaken {
    /// Journal delta records since the last take, for
    /// [`Journal::apply_records`] on the replica.
    pub deltas: Bytes,
    /// The whole state as one snapshot record, for [`Journal::replace`]:
    /// when it was asked for, at the first take, or after an overflow.
    /// Later deltas follow it; none before it are needed.
    pub snapshot: Option<Bytes>,
}

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
    /// On while the channel is replicated.
    tap: Option<Tap>,
    /// The channel stopped: nothing changes any more (see [`Journal::close`]).
    closed: bool,
}

impl Ledger {
    pub(super) fn new(acks: Acks) -> Ledger {
        Ledger {
            acks,
            pending: BytesMut::new(),
            fins: RangeSet::default(),
            urgent: false,
            tap: None,
            closed: false,
        }
    }

    /// Each returns whether it recorded something.
    pub(super) fn fin(&mut self, seq: u64) -> bool {
        if self.closed || !self.acks.fin(seq) {
            return false;
        }
        if let Some(tap) = &mut self.tap {
            tap.fins(seq, seq + 1);
        }
        self.fins.insert(seq, seq + 1) > 0
    }

    pub(super) fn fin_range(&mut self, start: u64, end: u64) -> bool {
        let start = start.max(self.acks.floor());
        if self.closed || !self.acks.fin_range(start, end) {
            return false;
        }
        if let Some(tap) = &mut self.tap {
            tap.fins(start, end);
        }
        self.fins.insert(start, end) > 0
    }

    pub(super) fn requeue(&mut self, seq: u64, attempts: u16, due: Option<i64>) -> bool {
        let due_ns = due.unwrap_or(0);
        if self.closed || !self.acks.requeue(seq, attempts, due_ns) {
            return false;
        }
        self.urgent |= due.is_some();
        self.record(Delta::Requeue {
            seq,
            attempts,
            due: due_ns,
        });
        true
    }

    pub(super) fn empty(&mut self, upto: u64) -> bool {
        if self.closed || !self.acks.fin_range(0, upto) {
            return false;
        }
        self.record(Delta::Empty { upto });
        true
    }

    fn record(&mut self, delta: Delta) {
        encode_delta(&mut self.pending, &delta);
        if let Some(tap) = &mut self.tap {
            tap.delta(&delta);
        }
    }

    /// Applies delta records received from a replicated channel, recording
    /// them as local ones; whether anything changed. Nothing is applied
    /// unless every record is an intact delta.
    pub(super) fn apply_records(&mut self, data: &[u8]) -> Result<bool, String> {
        let mut deltas = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let payload = match frame(&data[pos..], DELTA_MAX_PAYLOAD) {
                Frame::Complete(payload) => payload,
                Frame::Incomplete => return Err(format!("the delta at byte {pos} is cut short")),
                Frame::Corrupt => return Err(format!("the delta at byte {pos} is corrupt")),
            };
            match decode_journal(payload) {
                Some(JournalRecord::Delta(delta)) => deltas.push(delta),
                _ => return Err(format!("the record at byte {pos} is not a delta")),
            }
            pos += FRAME_HEADER + payload.len();
        }
        let mut changed = false;
        for delta in deltas {
            changed |= match delta {
                Delta::Fin { start, end } => self.fin_range(start, end),
                Delta::Requeue { seq, attempts, due } => {
                    self.requeue(seq, attempts, (due != 0).then_some(due))
                }
                Delta::Empty { upto } => self.empty(upto),
            };
        }
        Ok(changed)
    }

    /// Takes what the tap saw, turning it on at the first call.
    pub(super) fn take_tap(&mut self, snapshot: bool) -> TapTaken {
        let first = self.tap.is_none();
        let tap = std::mem::take(self.tap.get_or_insert_with(Tap::default));
        if snapshot || first || tap.overflow {
            return TapTaken {
                deltas: Bytes::new(),
                snapshot: Some(snapshot_of(&self.acks).freeze()),
            };
        }
        let mut deltas = tap.pending;
        for (start, end) in tap.fins.iter() {
            encode_delta(&mut deltas, &Delta::Fin { start, end });
        }
        TapTaken {
            deltas: deltas.freeze(),
            snapshot: None,
        }
    }

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
    /// The state was replaced: compact at the next round, whatever the size.
    force_compact: AtomicBool,
}

/// Where a journal lives, checked, before it is loaded.
struct Place {
    shared: Arc<Shared>,
    topic: String,
    channel: String,
    path: PathBuf,
    dir: PathBuf,
    /// The log's first seq: where a journal without a snapshot restarts.
    first_seq: u64,
}

impl Place {
    fn new(writer: &LogWriter, log: &TopicLog, channel: &str) -> io::Result<Place> {
        if !valid_name(channel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid channel name {channel:?}"),
            ));
        }
        let dir = log.dir().to_path_buf();
        let path = dir.join(format!("{channel}.journal"));
        let tmp = tmp_path(&path);
        if fs::remove_file(&tmp).is_ok() {
            tracing::info!(
                topic = log.topic(),
                channel,
                "removed an unfinished journal compaction"
            );
        }
        Ok(Place {
            shared: writer.shared.clone(),
            topic: log.topic().to_string(),
            channel: channel.to_string(),
            path,
            dir,
            first_seq: log.first_seq(),
        })
    }

    /// Rebuilds the state from the file, or creates the file with
    /// everything below `start` finished.
    fn load(&self, start: u64) -> io::Result<Acks> {
        let (topic, channel, path) = (&self.topic, &self.channel, &self.path);
        match fs::read(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let acks = Acks::new(start);
                write_snapshot(&self.shared, path, &self.dir, &snapshot_of(&acks), false)?;
                Ok(acks)
            }
            Err(e) => Err(e),
            Ok(data) => match replay(&data) {
                (Some(acks), good, cut) => {
                    if let Some(cut) = cut {
                        let dropped = data.len() - good;
                        match cut {
                            Cut::Torn => tracing::warn!(topic, channel, bytes = dropped, "cut a torn tail off the journal"),
                            Cut::Corrupt => tracing::warn!(topic, channel, bytes = dropped, "corrupt journal record; dropped it and the rest (finished messages may be delivered again, deferred ones early)"),
                        }
                        let file = OpenOptions::new().write(true).open(path)?;
                        file.set_len(good as u64)?;
                        self.shared.io.sync_file(&file)?;
                    }
                    Ok(acks)
                }
                (None, _, _) => {
                    let acks = Acks::new(self.first_seq);
                    tracing::error!(
                        topic,
                        channel,
                        floor = acks.floor(),
                        "journal has no intact snapshot; redelivering everything the log holds"
                    );
                    write_snapshot(&self.shared, path, &self.dir, &snapshot_of(&acks), false)?;
                    Ok(acks)
                }
            },
        }
    }

    fn assemble(self, acks: Acks) -> io::Result<Arc<Journal>> {
        let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        let len = file.metadata()?.len();
        Ok(Arc::new_cyclic(|me| Journal {
            me: me.clone(),
            topic: self.topic,
            channel: self.channel,
            path: self.path,
            dir: self.dir,
            writer: self.shared,
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
            force_compact: AtomicBool::new(false),
        }))
    }
}

/// The state in a snapshot record, which must be exactly one intact record.
fn decode_snapshot_record(data: &[u8]) -> io::Result<Acks> {
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "not one intact journal snapshot",
        )
    };
    let Frame::Complete(payload) = frame(data, u32::MAX as usize) else {
        return Err(invalid());
    };
    match decode_journal(payload) {
        Some(JournalRecord::Snapshot(body)) if FRAME_HEADER + payload.len() == data.len() => {
            Acks::decode_snapshot(body).ok_or_else(invalid)
        }
        _ => Err(invalid()),
    }
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
        let at = Place::new(writer, log, channel)?;
        let acks = at.load(start)?;
        log.ensure_end_at_least(acks.high_water());
        at.assemble(acks)
    }

    /// Opens the journal of a channel's replica: with `snapshot` (a record
    /// from [`Journal::take_tap`]) it is written as the whole journal,
    /// without it the file is replayed as [`Journal::open`] does. The log's
    /// end is left alone: a replica's acknowledgements may run ahead of
    /// the messages it has received. Blocking.
    pub fn open_replica(
        writer: &LogWriter,
        log: &TopicLog,
        channel: &str,
        snapshot: Option<&[u8]>,
    ) -> io::Result<Arc<Journal>> {
        let at = Place::new(writer, log, channel)?;
        let acks = match snapshot {
            Some(snapshot) => {
                let acks = decode_snapshot_record(snapshot)?;
                write_snapshot(&at.shared, &at.path, &at.dir, snapshot, false)?;
                acks
            }
            None => at.load(at.first_seq)?,
        };
        at.assemble(acks)
    }

    /// Replaces the state with a snapshot record from [`Journal::take_tap`]
    /// (a replica catching up); deltas not yet written are dropped. The
    /// writer's next round compacts the journal to the new state; a crash
    /// before it leaves the older state, which finished less.
    pub fn replace(&self, snapshot: &[u8]) -> io::Result<()> {
        let acks = decode_snapshot_record(snapshot)?;
        {
            let mut ledger = self.ledger.lock();
            if ledger.closed || ledger.acks == acks {
                return Ok(());
            }
            ledger.acks = acks;
            ledger.discard();
        }
        self.force_compact.store(true, Ordering::Release);
        self.schedule_if(true);
        Ok(())
    }

    /// Applies delta records from [`Journal::take_tap`] (a replica following
    /// its origin's channel). Nothing is applied when any record is bad.
    pub fn apply_records(&self, deltas: &[u8]) -> io::Result<()> {
        let changed = self
            .ledger
            .lock()
            .apply_records(deltas)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.schedule_if(changed);
        Ok(())
    }

    /// The whole state as one snapshot record, leaving the tap alone: what a
    /// new replication link starts a channel's replica from.
    pub fn snapshot(&self) -> Bytes {
        snapshot_of(&self.ledger.lock().acks).freeze()
    }

    /// What changed since the last call, for the channel's replicas: the
    /// deltas, or a snapshot when `snapshot` asks for one, at the first
    /// call (which turns the tap on), and after the tap overflowed. Both
    /// come from one lock hold, so they never overlap or miss a change.
    pub fn take_tap(&self, snapshot: bool) -> TapTaken {
        self.ledger.lock().take_tap(snapshot)
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

    /// The records not yet written are fsynced in the writer's next round
    /// (durable mode), before any log of that round: a promotion's states
    /// for the messages it adopts.
    pub fn urgent(&self) {
        let mut ledger = self.ledger.lock();
        ledger.urgent = true;
        let pending = ledger.has_pending();
        drop(ledger);
        self.schedule_if(pending);
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

    /// The channel stopped (nsqd's shutdown): what was recorded so far is
    /// still written and fsynced by the writer, nothing later. A change that
    /// comes after the stop (a timeout firing meanwhile) is ignored: written,
    /// it would land where a journal opened later on the same file appends
    /// its own records, and overwrite them.
    pub fn close(&self) {
        self.ledger.lock().closed = true;
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
        let forced;
        let (taken, urgent) = {
            let mut ledger = self.ledger.lock();
            let bound = COMPACT_MIN.max(4 * ledger.acks.snapshot_len() as u64);
            // A closed journal's file may be another journal's by now.
            if side.failed_at.is_some() || ledger.closed {
                return;
            }
            forced = self.force_compact.swap(false, Ordering::AcqRel);
            if side.len <= bound && !forced {
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
                self.force_compact.fetch_or(forced, Ordering::AcqRel);
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
