//! A channel's dead letters: messages that used up `max_attempts` or
//! outlived the TTL, kept on disk apart from the channel's queue, shown by
//! `/channel/dead` and requeued or dropped by the operator.
//!
//! A requeued dead letter stays in this store, *live*, until a consumer
//! finishes it: the channel delivers it ahead of its queue under a seq with
//! [`REVIVED`] set, and its requeues, deferrals and finish are recorded here,
//! not in the queue or the journal. So it is as safe as any message of the
//! channel's mode, and its attempts survive a restart.
//!
//! The file is a sequence of checksummed records: a message entering the
//! store, a change of one entry's state, and three bulk changes (requeue
//! all, empty, drop the live ones). The hot path only queues records in
//! memory; a blocking task writes and fsyncs them, and only then finishes the
//! message in the topic log's journal (log mode), so that a crash between
//! the two can repeat a dead letter but never lose one. The file is cut to
//! nothing once no entry is left, and rewritten once mostly garbage.

use crate::diskqueue::read_full;
use crate::log::{Journal, PausePoint};
use crate::message::Message;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Set in the seq of a requeued dead letter: the rest is its entry id here.
pub(crate) const REVIVED: u64 = 1 << 63;

/// An ephemeral channel keeps at most this many dead letters, in memory.
const EPHEMERAL_LIMIT: usize = 10_000;
/// A file is rewritten past this size when live records are under half of it.
const COMPACT_MIN: u64 = 1 << 20;
/// `kind`, entry id.
const BODY_HEADER: usize = 1 + 8;
const FRAME_HEADER: usize = 8;

const KIND_DEAD: u8 = b'D';
const KIND_STATE: u8 = b'S';
const KIND_GONE: u8 = b'G';
const KIND_REVIVE_ALL: u8 = b'R';
const KIND_EMPTY_DEAD: u8 = b'E';
const KIND_DROP_LIVE: u8 = b'L';

/// A change to the store, queued by the channel and applied by the writer.
#[derive(Debug, Clone)]
enum Op {
    /// A message becomes a dead letter (a new entry).
    Dead {
        eid: u64,
        msg: Message,
    },
    /// A revived entry was requeued (`dead` false, `due` 0 or Unix ns) or
    /// used up its attempts again (`dead` true).
    State {
        eid: u64,
        dead: bool,
        attempts: u16,
        due: i64,
    },
    /// A revived entry was finished.
    Gone {
        eid: u64,
    },
    ReviveAll,
    EmptyDead,
    /// The channel was emptied: revived entries go with it.
    DropLive,
}

/// One entry: where its message is (or the message, without a file), and
/// its state.
#[derive(Debug, Clone)]
struct Slot {
    /// The message's ID.
    id: u64,
    offset: u64,
    len: u64,
    msg: Option<Message>,
    dead: bool,
    attempts: u16,
    due: i64,
}

/// The file and the index of its entries; taken only off the async workers.
struct Store {
    /// Opened (created) at the first write.
    file: Option<File>,
    path: Option<PathBuf>,
    len: u64,
    /// Bytes of the records of entries still held.
    held: u64,
    index: BTreeMap<u64, Slot>,
    /// Entry ids by message ID: a message that comes back after a crash
    /// (its finish in the journal was lost) is not kept twice.
    ids: HashMap<u64, u64>,
    /// The channel was deleted or stopped: changes are dropped.
    stopped: bool,
}

#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    /// (journal, seq) to finish once the ops are on disk.
    finish: Vec<(Arc<Journal>, u64)>,
}

/// A revived entry, handed back to the channel at start or by a requeue.
pub(crate) struct Revived {
    /// The channel's seq for it: [`REVIVED`] | entry id.
    pub(crate) seq: u64,
    pub(crate) msg: Message,
    /// Unix ns when it is due, 0 when ready.
    pub(crate) due: i64,
}

pub(crate) struct DeadLetters {
    me: Weak<DeadLetters>,
    topic: String,
    channel: String,
    /// `None`: an ephemeral channel, kept in memory.
    path: Option<PathBuf>,
    max_payload: usize,
    /// Dead entries, queued or written.
    count: AtomicU64,
    next_eid: AtomicU64,
    pending: Mutex<Pending>,
    /// `DropLive`s queued so far (see [`DeadLetters::revive_all`]).
    drop_lives: AtomicU64,
    scheduled: AtomicBool,
    store: Mutex<Store>,
}

impl DeadLetters {
    /// Opens the channel's store (none for an ephemeral channel) and returns
    /// its revived entries, which the channel delivers again. Blocking.
    pub(crate) fn open(
        topic: &str,
        channel: &str,
        dir: Option<&Path>,
        max_msg_size: u64,
    ) -> io::Result<(Arc<DeadLetters>, Vec<Revived>)> {
        let path = dir.map(|dir| dir.join(format!("{topic}:{channel}.dead")));
        let max_payload = BODY_HEADER + 2 + 8 + 16 + max_msg_size as usize;
        let mut store = Store {
            file: None,
            path: path.clone(),
            len: 0,
            held: 0,
            index: BTreeMap::new(),
            ids: HashMap::new(),
            stopped: false,
        };
        if let Some(path) = &path {
            match OpenOptions::new().read(true).append(true).open(path) {
                Ok(file) => store.open(file, max_payload, topic, channel)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let revived = store.revived()?;
        let dead = store.index.values().filter(|s| s.dead).count() as u64;
        let next_eid = store.index.keys().next_back().map_or(1, |eid| eid + 1);
        let letters = Arc::new_cyclic(|me| DeadLetters {
            me: me.clone(),
            topic: topic.to_string(),
            channel: channel.to_string(),
            path,
            max_payload,
            count: AtomicU64::new(dead),
            next_eid: AtomicU64::new(next_eid),
            pending: Mutex::new(Pending::default()),
            drop_lives: AtomicU64::new(0),
            scheduled: AtomicBool::new(false),
            store: Mutex::new(store),
        });
        Ok((letters, revived))
    }

    /// Dead letters held, including those not written yet.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// `msg` becomes a dead letter. `finish`: the topic log's journal and the
    /// message's seq there, finished once the dead letter is on disk.
    pub(crate) fn kill(&self, msg: Message, finish: Option<(Arc<Journal>, u64)>) {
        let eid = self.next_eid.fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut pending = self.pending.lock();
        pending.ops.push(Op::Dead { eid, msg });
        pending.finish.extend(finish);
        drop(pending);
        self.schedule();
    }

    /// A revived entry (`seq` with [`REVIVED`]) used up its attempts again.
    pub(crate) fn kill_revived(&self, seq: u64, attempts: u16) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.push(Op::State {
            eid: seq & !REVIVED,
            dead: true,
            attempts,
            due: 0,
        });
    }

    /// A revived entry went back in line with `attempts`, due at `due`
    /// (Unix ns) or now.
    pub(crate) fn requeue_revived(&self, seq: u64, attempts: u16, due: Option<i64>) {
        self.push(Op::State {
            eid: seq & !REVIVED,
            dead: false,
            attempts,
            due: due.unwrap_or(0),
        });
    }

    /// A revived entry was finished.
    pub(crate) fn finish_revived(&self, seq: u64) {
        self.push(Op::Gone {
            eid: seq & !REVIVED,
        });
    }

    /// The channel was emptied: its revived entries are dropped too.
    pub(crate) fn drop_live(&self) {
        let mut pending = self.pending.lock();
        pending.ops.push(Op::DropLive);
        self.drop_lives.fetch_add(1, Ordering::AcqRel);
        drop(pending);
        self.schedule();
    }

    /// `DropLive`s queued so far: more than a [`DeadLetters::revive_all`]'s
    /// stamp means one came after its revival and drops what it revived.
    pub(crate) fn drop_lives(&self) -> u64 {
        self.drop_lives.load(Ordering::Acquire)
    }

    fn push(&self, op: Op) {
        self.pending.lock().ops.push(op);
        self.schedule();
    }

    /// Starts a blocking write of what is pending, unless one is due.
    fn schedule(&self) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(move || {
                    me.scheduled.store(false, Ordering::Release);
                    if let Err(e) = me.flush() {
                        tracing::error!(topic = %me.topic, channel = %me.channel, error = %e, "writing dead letters failed; retrying in a second");
                        me.retry_later();
                    }
                });
            }
            Err(_) => {
                self.scheduled.store(false, Ordering::Release);
                if let Err(e) = self.flush() {
                    tracing::error!(topic = %self.topic, channel = %self.channel, error = %e, "writing dead letters failed");
                }
            }
        }
    }

    fn retry_later(&self) {
        let (Some(me), Ok(handle)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        handle.spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            me.schedule();
        });
    }

    /// Writes and fsyncs what is pending, then finishes the journal seqs
    /// that waited for it. Blocking.
    pub(crate) fn flush(&self) -> io::Result<()> {
        let mut store = self.store.lock();
        self.flush_locked(&mut store)
    }

    fn flush_locked(&self, store: &mut Store) -> io::Result<()> {
        let Pending { mut ops, finish } = std::mem::take(&mut *self.pending.lock());
        if ops.is_empty() && finish.is_empty() {
            return Ok(());
        }
        if store.stopped {
            // Not written (a burial after the channel stopped): its seq must
            // stay unfinished in the journal, so that the message comes back.
            return Ok(());
        }
        let before = ops.len();
        ops.retain(|op| !matches!(op, Op::Dead { msg, .. } if store.ids.contains_key(&msg.id)));
        let repeated = (before - ops.len()) as u64;
        if repeated > 0 {
            self.count.fetch_sub(repeated, Ordering::Relaxed);
        }
        if let Err(e) = store.write(&ops, self.path.is_some()) {
            // Back in front of anything newer, for the retry.
            let mut pending = self.pending.lock();
            ops.append(&mut pending.ops);
            pending.ops = ops;
            let mut finish = finish;
            finish.append(&mut pending.finish);
            pending.finish = finish;
            return Err(e);
        }
        if let Some((journal, _)) = finish.first() {
            journal.pause(PausePoint::DeadLettersSynced);
        }
        for (journal, seq) in finish {
            journal.fin(seq);
        }
        if self.path.is_none() {
            self.trim_ephemeral(store);
        }
        if let Err(e) = self.compact_if_due(store) {
            tracing::warn!(topic = %self.topic, channel = %self.channel, error = %e, "compacting dead letters failed");
        }
        Ok(())
    }

    /// An ephemeral channel keeps the newest [`EPHEMERAL_LIMIT`] dead letters.
    fn trim_ephemeral(&self, store: &mut Store) {
        let dead = store.index.values().filter(|s| s.dead).count();
        let mut excess = dead.saturating_sub(EPHEMERAL_LIMIT);
        if excess == 0 {
            return;
        }
        let oldest: Vec<u64> = store
            .index
            .iter()
            .filter(|(_, s)| s.dead)
            .take(excess)
            .map(|(eid, _)| *eid)
            .collect();
        for eid in oldest {
            store.index.remove(&eid);
            excess -= 1;
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        debug_assert_eq!(excess, 0);
    }

    /// The oldest `n` dead letters (attempts as they were when they died)
    /// and how many there are. Blocking.
    pub(crate) fn list(&self, n: usize) -> io::Result<(Vec<Message>, u64)> {
        let mut store = self.store.lock();
        self.flush_locked(&mut store)?;
        let slots: Vec<Slot> = store
            .index
            .values()
            .filter(|s| s.dead)
            .take(n)
            .cloned()
            .collect();
        let total = store.index.values().filter(|s| s.dead).count() as u64;
        let messages = slots
            .iter()
            .map(|slot| {
                let mut msg = store.message(slot, self.max_payload)?;
                msg.attempts = slot.attempts;
                Ok(msg)
            })
            .collect::<io::Result<_>>()?;
        Ok((messages, total))
    }

    /// Every dead letter becomes live with its attempts reset; returns them
    /// for the channel to deliver, and a stamp: the `DropLive`s that came
    /// before the revival (see [`DeadLetters::drop_lives`]). Blocking.
    pub(crate) fn revive_all(&self) -> io::Result<(Vec<Revived>, u64)> {
        let mut store = self.store.lock();
        self.flush_locked(&mut store)?;
        let mut revived = Vec::new();
        for (eid, slot) in store.index.iter().filter(|(_, s)| s.dead) {
            let mut msg = store.message(slot, self.max_payload)?;
            msg.attempts = 0;
            revived.push(Revived {
                seq: REVIVED | eid,
                msg,
                due: 0,
            });
        }
        if revived.is_empty() {
            return Ok((revived, self.drop_lives()));
        }
        store.write(&[Op::ReviveAll], self.path.is_some())?;
        self.count
            .fetch_sub(revived.len() as u64, Ordering::Relaxed);
        // A DropLive queued since the flush above is written after the
        // revival, and so drops what it revived.
        let pending = self.pending.lock();
        let later = pending
            .ops
            .iter()
            .filter(|op| matches!(op, Op::DropLive))
            .count();
        let stamp = self.drop_lives() - later as u64;
        drop(pending);
        Ok((revived, stamp))
    }

    /// Drops every dead letter; returns how many. Blocking.
    pub(crate) fn empty(&self) -> io::Result<u64> {
        let mut store = self.store.lock();
        self.flush_locked(&mut store)?;
        let dead = store.index.values().filter(|s| s.dead).count() as u64;
        if dead > 0 {
            store.write(&[Op::EmptyDead], self.path.is_some())?;
            self.count.fetch_sub(dead, Ordering::Relaxed);
            self.compact_if_due(&mut store)?;
        }
        Ok(dead)
    }

    /// Cuts the file to nothing when nothing is held, or rewrites it when
    /// mostly garbage.
    fn compact_if_due(&self, store: &mut Store) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if store.stopped {
            return Ok(());
        }
        if store.index.is_empty() && store.len > 0 {
            let file = store.file.as_ref().expect("a store that wrote has a file");
            file.set_len(0)?;
            file.sync_data()?;
            store.len = 0;
            store.held = 0;
            return Ok(());
        }
        if store.len < COMPACT_MIN || store.held * 2 > store.len {
            return Ok(());
        }
        store.rewrite(path, self.max_payload)
    }

    /// The channel stopped (nsqd's shutdown): writes what is pending, then
    /// drops every later change, which a store opened later on the same
    /// file would not know of. Blocking.
    pub(crate) fn close(&self) -> io::Result<()> {
        let mut store = self.store.lock();
        let flushed = self.flush_locked(&mut store);
        store.stopped = true;
        flushed
    }

    /// The channel was deleted: removes the file. Blocking.
    pub(crate) fn delete(&self) -> io::Result<()> {
        let mut store = self.store.lock();
        store.file = None;
        store.stopped = true;
        *self.pending.lock() = Pending::default();
        match &self.path {
            Some(path) => match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl Store {
    /// Reads the file, rebuilding the index; cuts a torn or corrupt tail.
    fn open(
        &mut self,
        file: File,
        max_payload: usize,
        topic: &str,
        channel: &str,
    ) -> io::Result<()> {
        let size = file.metadata()?.len();
        let mut reader = BufReader::with_capacity(64 * 1024, &file);
        let mut pos = 0u64;
        let mut frame = Vec::new();
        loop {
            let mut header = [0u8; FRAME_HEADER];
            if read_full(&mut reader, &mut header)? < FRAME_HEADER {
                break;
            }
            let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
            if !(BODY_HEADER..=max_payload).contains(&len) {
                break;
            }
            frame.resize(len, 0);
            if read_full(&mut reader, &mut frame)? < len || crc32c::crc32c(&frame) != crc {
                break;
            }
            let Some(op) = decode_op(&frame) else { break };
            let record_len = (FRAME_HEADER + len) as u64;
            self.apply(op, pos, record_len, false);
            pos += record_len;
        }
        if pos < size {
            tracing::warn!(
                topic,
                channel,
                bytes = size - pos,
                "cut a torn or corrupt tail off the dead letters"
            );
            file.set_len(pos)?;
            file.sync_data()?;
        }
        self.len = pos;
        self.file = Some(file);
        Ok(())
    }

    /// The live entries, read back for the channel.
    fn revived(&self) -> io::Result<Vec<Revived>> {
        self.index
            .iter()
            .filter(|(_, s)| !s.dead)
            .map(|(eid, slot)| {
                let mut msg = self.message(slot, usize::MAX)?;
                msg.attempts = slot.attempts;
                Ok(Revived {
                    seq: REVIVED | eid,
                    msg,
                    due: slot.due,
                })
            })
            .collect()
    }

    /// Applies `op` to the index; a `Dead` record sits at `offset`.
    fn apply(&mut self, op: Op, offset: u64, record_len: u64, keep_msg: bool) {
        match op {
            Op::Dead { eid, msg } => {
                self.held += record_len;
                self.ids.insert(msg.id, eid);
                self.index.insert(
                    eid,
                    Slot {
                        id: msg.id,
                        offset,
                        len: record_len,
                        dead: true,
                        attempts: msg.attempts,
                        due: 0,
                        msg: keep_msg.then_some(msg),
                    },
                );
            }
            Op::State {
                eid,
                dead,
                attempts,
                due,
            } => {
                if let Some(slot) = self.index.get_mut(&eid) {
                    slot.dead = dead;
                    slot.attempts = attempts;
                    slot.due = due;
                }
            }
            Op::Gone { eid } => self.remove(eid),
            Op::ReviveAll => {
                for slot in self.index.values_mut().filter(|s| s.dead) {
                    slot.dead = false;
                    slot.attempts = 0;
                    slot.due = 0;
                }
            }
            Op::EmptyDead => self.remove_where(|s| s.dead),
            Op::DropLive => self.remove_where(|s| !s.dead),
        }
    }

    fn remove(&mut self, eid: u64) {
        if let Some(slot) = self.index.remove(&eid) {
            self.held -= slot.len;
            self.ids.remove(&slot.id);
        }
    }

    fn remove_where(&mut self, pred: impl Fn(&Slot) -> bool) {
        let gone: Vec<u64> = self
            .index
            .iter()
            .filter(|(_, s)| pred(s))
            .map(|(eid, _)| *eid)
            .collect();
        for eid in gone {
            self.remove(eid);
        }
    }

    /// Appends `ops` and fsyncs (or, without a file, only applies them).
    fn write(&mut self, ops: &[Op], on_disk: bool) -> io::Result<()> {
        if self.stopped {
            return Ok(());
        }
        if !on_disk {
            for op in ops {
                self.apply(op.clone(), 0, 0, true);
            }
            return Ok(());
        }
        let mut buf = BytesMut::new();
        let mut offsets = Vec::with_capacity(ops.len());
        for op in ops {
            let start = buf.len();
            encode_op(&mut buf, op);
            offsets.push((self.len + start as u64, (buf.len() - start) as u64));
        }
        if self.file.is_none() {
            let path = self.path.as_ref().expect("a store on disk has a path");
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        if let Err(e) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            let _ = file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        for (op, (offset, len)) in ops.iter().zip(offsets) {
            self.apply(op.clone(), offset, len, false);
        }
        Ok(())
    }

    /// The message of an entry, from memory or the file.
    fn message(&self, slot: &Slot, max_payload: usize) -> io::Result<Message> {
        if let Some(msg) = &slot.msg {
            return Ok(msg.clone());
        }
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the channel was deleted"))?;
        let mut record = vec![0u8; slot.len as usize];
        file.read_exact_at(&mut record, slot.offset)?;
        let corrupt = || io::Error::new(io::ErrorKind::InvalidData, "corrupt dead-letter record");
        if record.len() < FRAME_HEADER || record.len() - FRAME_HEADER > max_payload {
            return Err(corrupt());
        }
        match decode_op(&record[FRAME_HEADER..]) {
            Some(Op::Dead { msg, .. }) => Ok(msg),
            _ => Err(corrupt()),
        }
    }

    /// Writes the entries held to a new file and puts it in place.
    fn rewrite(&mut self, path: &Path, max_payload: usize) -> io::Result<()> {
        let tmp = path.with_extension("dead.tmp");
        let mut buf = BytesMut::new();
        let mut index = BTreeMap::new();
        for (&eid, slot) in &self.index {
            let msg = self.message(slot, max_payload)?;
            let start = buf.len() as u64;
            let died_with = msg.attempts;
            encode_op(&mut buf, &Op::Dead { eid, msg });
            let len = buf.len() as u64 - start;
            if !slot.dead || slot.attempts != died_with || slot.due != 0 {
                encode_op(
                    &mut buf,
                    &Op::State {
                        eid,
                        dead: slot.dead,
                        attempts: slot.attempts,
                        due: slot.due,
                    },
                );
            }
            index.insert(
                eid,
                Slot {
                    offset: start,
                    len,
                    ..slot.clone()
                },
            );
        }
        let mut file = File::create(&tmp)?;
        file.write_all(&buf)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = Some(OpenOptions::new().read(true).append(true).open(path)?);
        self.len = buf.len() as u64;
        self.held = index.values().map(|s| s.len).sum();
        self.ids = index.iter().map(|(&eid, slot)| (slot.id, eid)).collect();
        self.index = index;
        Ok(())
    }
}

fn encode_op(buf: &mut BytesMut, op: &Op) {
    let start = buf.len();
    buf.put_bytes(0, FRAME_HEADER);
    let (kind, eid) = match op {
        Op::Dead { eid, .. } => (KIND_DEAD, *eid),
        Op::State { eid, .. } => (KIND_STATE, *eid),
        Op::Gone { eid } => (KIND_GONE, *eid),
        Op::ReviveAll => (KIND_REVIVE_ALL, 0),
        Op::EmptyDead => (KIND_EMPTY_DEAD, 0),
        Op::DropLive => (KIND_DROP_LIVE, 0),
    };
    buf.put_u8(kind);
    buf.put_u64(eid);
    match op {
        Op::Dead { msg, .. } => {
            buf.put_u16(msg.attempts);
            buf.put_i64(msg.timestamp);
            buf.put_u64(msg.id);
            buf.put_slice(&msg.body);
        }
        Op::State {
            dead,
            attempts,
            due,
            ..
        } => {
            buf.put_u8(u8::from(*dead));
            buf.put_u16(*attempts);
            buf.put_i64(*due);
        }
        _ => {}
    }
    let payload_len = buf.len() - start - FRAME_HEADER;
    let crc = crc32c::crc32c(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&(payload_len as u32).to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

fn decode_op(mut data: &[u8]) -> Option<Op> {
    if data.len() < BODY_HEADER {
        return None;
    }
    let kind = data.get_u8();
    let eid = data.get_u64();
    Some(match kind {
        KIND_DEAD if data.len() >= 2 + 8 + 8 => {
            let attempts = data.get_u16();
            let timestamp = data.get_i64();
            let id = data.get_u64();
            Op::Dead {
                eid,
                msg: Message {
                    id,
                    timestamp,
                    attempts,
                    body: Bytes::copy_from_slice(data),
                },
            }
        }
        KIND_STATE if data.len() == 1 + 2 + 8 => Op::State {
            eid,
            dead: data.get_u8() != 0,
            attempts: data.get_u16(),
            due: data.get_i64(),
        },
        KIND_GONE => Op::Gone { eid },
        KIND_REVIVE_ALL => Op::ReviveAll,
        KIND_EMPTY_DEAD => Op::EmptyDead,
        KIND_DROP_LIVE => Op::DropLive,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, attempts: u16) -> Message {
        Message {
            id,
            timestamp: 1_700_000_000_000_000_000 + id as i64,
            attempts,
            body: Bytes::from(format!("body {id}")),
        }
    }

    fn open(dir: &Path) -> (Arc<DeadLetters>, Vec<Revived>) {
        DeadLetters::open("t", "c", Some(dir), 1024).unwrap()
    }

    #[test]
    fn dead_letters_survive_reopening_with_their_states() {
        let dir = tempfile::tempdir().unwrap();
        let (dead, revived) = open(dir.path());
        assert!(revived.is_empty());
        for id in 1..=4 {
            dead.kill(msg(id, 3), None);
        }
        assert_eq!(dead.count(), 4);
        let (listed, total) = dead.list(2).unwrap();
        assert_eq!(total, 4);
        assert_eq!(listed, vec![msg(1, 3), msg(2, 3)]);

        let (back, _) = dead.revive_all().unwrap();
        assert_eq!(back.len(), 4);
        assert!(back
            .iter()
            .all(|r| r.msg.attempts == 0 && r.seq & REVIVED != 0));
        assert_eq!(dead.count(), 0);
        // One finished, one requeued with a due time, one dead again.
        dead.finish_revived(back[0].seq);
        dead.requeue_revived(back[1].seq, 1, Some(42));
        dead.kill_revived(back[2].seq, 5);
        dead.flush().unwrap();
        drop(dead);

        let (dead, revived) = open(dir.path());
        assert_eq!(dead.count(), 1);
        let (listed, _) = dead.list(10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].id, listed[0].attempts), (3, 5));
        let live: Vec<(u64, u16, i64)> = revived
            .iter()
            .map(|r| (r.msg.id, r.msg.attempts, r.due))
            .collect();
        assert_eq!(live, vec![(2, 1, 42), (4, 0, 0)]);
        // New entries do not reuse ids.
        dead.kill(msg(9, 3), None);
        dead.flush().unwrap();
        let (dead, _) = {
            drop(dead);
            open(dir.path())
        };
        assert_eq!(dead.count(), 2);
    }

    #[test]
    fn a_closed_store_writes_what_it_had_and_nothing_later() {
        let dir = tempfile::tempdir().unwrap();
        let (old, _) = open(dir.path());
        old.kill(msg(1, 3), None);
        old.close().unwrap();
        // The channel comes back (an in-process restart) on the same file.
        let (new, _) = open(dir.path());
        assert_eq!(new.count(), 1, "what came before the close was written");
        new.kill(msg(2, 3), None);
        new.flush().unwrap();
        // A late burial by the stopped channel stays out of the file.
        old.kill(msg(3, 3), None);
        old.flush().unwrap();
        let (listed, total) = new.list(10).unwrap();
        assert_eq!((listed, total), (vec![msg(1, 3), msg(2, 3)], 2));
        drop((old, new));
        let (reopened, _) = open(dir.path());
        assert_eq!(reopened.list(10).unwrap().0, vec![msg(1, 3), msg(2, 3)]);
    }

    /// A burial that comes after the close (the channel's timer, late) is
    /// neither written nor finished in the journal: the message stays in
    /// the log, delivered again after the restart.
    #[test]
    fn a_burial_after_the_close_leaves_its_seq_unfinished() {
        use crate::log::{Disposition, LogConfig, LogWriter, SyncPolicy, TopicLog};
        let dir = tempfile::tempdir().unwrap();
        let policy = SyncPolicy {
            sync_every: 1,
            sync_timeout: Duration::from_secs(60),
        };
        let reopen = |writer: &LogWriter| {
            let log =
                TopicLog::open(writer, dir.path(), "t", LogConfig::new(1 << 20, 1024)).unwrap();
            Journal::open(writer, &log, "c", 0).unwrap()
        };
        let writer = LogWriter::start(policy).unwrap();
        let journal = reopen(&writer);
        let (dead, _) = open(dir.path());
        // Channel::shutdown: the dead letters close, a late burial, then
        // the journal closes.
        dead.close().unwrap();
        dead.kill(msg(7, 3), Some((journal.clone(), 5)));
        dead.flush().unwrap();
        journal.close();
        writer.shutdown();
        drop((dead, journal, writer));

        let writer = LogWriter::start(policy).unwrap();
        let journal = reopen(&writer);
        let (reopened, _) = open(dir.path());
        let finished = journal.classify(5) == Disposition::Finished;
        writer.shutdown();
        assert_eq!(reopened.count(), 0, "not written after the close");
        assert!(!finished, "message 7 lost: no dead letter, yet finished");
    }

    #[test]
    fn a_message_buried_twice_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let (dead, _) = open(dir.path());
        dead.kill(msg(1, 3), None);
        dead.flush().unwrap();
        drop(dead);
        // After a crash that lost the journal's finish, it dies again.
        let (dead, _) = open(dir.path());
        dead.kill(msg(1, 3), None);
        dead.kill(msg(2, 3), None);
        assert_eq!(dead.list(10).unwrap().1, 2);
        assert_eq!(dead.count(), 2);
    }

    #[test]
    fn empty_and_drop_live_cut_the_file_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (dead, _) = open(dir.path());
        dead.kill(msg(1, 3), None);
        dead.kill(msg(2, 3), None);
        let (back, _) = dead.revive_all().unwrap();
        dead.kill(msg(3, 3), None);
        assert_eq!(dead.empty().unwrap(), 1);
        assert_eq!(dead.count(), 0);
        dead.finish_revived(back[0].seq);
        dead.drop_live();
        dead.flush().unwrap();
        let path = dir.path().join("t:c.dead");
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        drop(dead);
        let (dead, revived) = open(dir.path());
        assert_eq!((dead.count(), revived.len()), (0, 0));
    }

    #[test]
    fn a_torn_tail_keeps_every_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let (dead, _) = open(dir.path());
        dead.kill(msg(1, 3), None);
        dead.kill(msg(2, 3), None);
        dead.flush().unwrap();
        drop(dead);
        let path = dir.path().join("t:c.dead");
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (dead, _) = open(dir.path());
        assert_eq!(dead.list(10).unwrap().0, vec![msg(1, 3)]);
        dead.kill(msg(5, 3), None);
        assert_eq!(dead.list(10).unwrap().1, 2);
    }

    #[test]
    fn a_mostly_garbage_file_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let (dead, _) = DeadLetters::open("t", "c", Some(dir.path()), 64 * 1024).unwrap();
        let big = |id| Message {
            body: Bytes::from(vec![b'x'; 60_000]),
            ..msg(id, 3)
        };
        for id in 1..=40 {
            dead.kill(big(id), None);
        }
        dead.flush().unwrap();
        let (back, _) = dead.revive_all().unwrap();
        for r in &back[..35] {
            dead.finish_revived(r.seq);
        }
        dead.flush().unwrap();
        let path = dir.path().join("t:c.dead");
        // Rewritten (more than once) until under COMPACT_MIN.
        assert!(fs::metadata(&path).unwrap().len() < COMPACT_MIN);
        drop(dead);
        let (_, revived) = DeadLetters::open("t", "c", Some(dir.path()), 64 * 1024).unwrap();
        let ids: Vec<u64> = revived.iter().map(|r| r.msg.id).collect();
        assert_eq!(ids, (36..=40).collect::<Vec<_>>());
    }

    #[test]
    fn an_ephemeral_channel_keeps_them_in_memory() {
        let (dead, _) = DeadLetters::open("t", "c#ephemeral", None, 1024).unwrap();
        dead.kill(msg(1, 2), None);
        assert_eq!(dead.list(5).unwrap(), (vec![msg(1, 2)], 1));
        let (back, _) = dead.revive_all().unwrap();
        assert_eq!(back[0].msg.attempts, 0);
        dead.finish_revived(back[0].seq);
        assert_eq!(dead.list(5).unwrap().1, 0);
    }
}
