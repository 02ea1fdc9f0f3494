//! A FIFO of messages on disk: the overflow behind a topic's or channel's
//! memory queue.
//!
//! One file, past 600 lines, because its corruption and recovery tests
//! read the private record layout they exercise.
//!
//! Files, for a queue named `NAME` (`topic` or `topic:channel`):
//! * `NAME.queue.NNNNNN.dat`: segments of records, rolled before a record
//!   would take one past `--max-bytes-per-file`, deleted once read.
//! * `NAME.queue.meta`: `depth\nread_file,read_pos\nwrite_file,write_pos\n`,
//!   replaced atomically (temp file, fsync, rename) at every sync.
//!
//! Writes reach the OS on the caller's thread, at the end of each publish
//! ([`DiskQueue::hand_to_os`]), so that a full disk fails the publish that
//! hit it and a killed process keeps what it acknowledged; fsyncs and
//! metadata writes go to the sync thread ([`crate::syncer`]), except for
//! [`DiskQueue::sync`], which waits.
//!
//! A record is `[len: u32 BE][crc32c(payload): u32 BE][payload]`, the payload
//! `[kind: u8][timestamp: i64][attempts: u16][id: u64][deliver_at: i64][body]`
//! (big-endian; `deliver_at` is Unix ns, 0 when the message is not deferred).
//!
//! Recovery: at open, every valid record after the recorded write position is
//! kept (it was written, only the metadata lagged) and a torn tail is cut off.
//! On read, a record that fails its checksum or length check is skipped by
//! searching forward for the next valid record; the bytes skipped are counted
//! and logged, never fatal.

use crate::message::Message;
use crate::syncer::SyncSlot;
use bytes::{BufMut, Bytes, BytesMut};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const RECORD_HEADER: usize = 8;
const PAYLOAD_HEADER: usize = 1 + 8 + 2 + 8 + 8;
const KIND_MESSAGE: u8 = 1;
/// Written records are handed to the OS once this many bytes are pending.
const WRITE_BUFFER: usize = 256 * 1024;

/// Settings shared by every disk queue of a node.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub dir: PathBuf,
    pub max_bytes_per_file: u64,
    pub sync_every: u64,
    pub max_msg_size: u64,
    /// Raised by any of the node's queues that has reads or writes not yet
    /// synced, so that the periodic sync can pass over idle topics.
    pub unsynced: UnsyncedFlag,
}

/// Whether some disk queue of a node may have reads or writes that were not
/// handed to the sync thread. A queue raises it when its count of unsynced
/// reads and writes leaves zero, under the lock of its topic or channel; the
/// periodic sync ([`UnsyncedFlag::take`]) then visits every topic. With ten
/// thousand idle topics that visit is most of nsqd's idle CPU.
#[derive(Debug, Clone, Default)]
pub struct UnsyncedFlag(Arc<AtomicBool>);

impl UnsyncedFlag {
    /// Raises it: a queue has something to sync, or a sync failed and must
    /// be retried.
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Lowers the flag and says whether it was raised. A queue that raises
    /// it after this call is synced at the next one.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

/// A message read back, with its deferral deadline (Unix ns) if it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub msg: Message,
    pub deliver_at: Option<i64>,
}

pub fn encode_record(buf: &mut BytesMut, msg: &Message, deliver_at: Option<i64>) {
    let len = PAYLOAD_HEADER + msg.body.len();
    buf.reserve(RECORD_HEADER + len);
    let start = buf.len();
    buf.put_u32(len as u32);
    buf.put_u32(0);
    buf.put_u8(KIND_MESSAGE);
    buf.put_i64(msg.timestamp);
    buf.put_u16(msg.attempts);
    buf.put_u64(msg.id);
    buf.put_i64(deliver_at.unwrap_or(0));
    buf.put_slice(&msg.body);
    let crc = crc32c::crc32c(&buf[start + RECORD_HEADER..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Decodes the record at the start of `data`: `Some((stored, record_len))`
/// when it is complete and intact.
pub fn decode_record(data: &[u8], max_payload: usize) -> Option<(Stored, usize)> {
    let header = data.get(..RECORD_HEADER)?;
    let len = u32::from_be_bytes(header[..4].try_into().ok()?) as usize;
    if !(PAYLOAD_HEADER..=max_payload).contains(&len) {
        return None;
    }
    let payload = data.get(RECORD_HEADER..RECORD_HEADER + len)?;
    let crc = u32::from_be_bytes(header[4..].try_into().ok()?);
    if crc32c::crc32c(payload) != crc || payload[0] != KIND_MESSAGE {
        return None;
    }
    let num = |at: usize, n: usize| &payload[at..at + n];
    let deliver_at = i64::from_be_bytes(num(19, 8).try_into().ok()?);
    let msg = Message {
        timestamp: i64::from_be_bytes(num(1, 8).try_into().ok()?),
        attempts: u16::from_be_bytes(num(9, 2).try_into().ok()?),
        id: u64::from_be_bytes(num(11, 8).try_into().ok()?),
        body: Bytes::copy_from_slice(&payload[PAYLOAD_HEADER..]),
    };
    Some((
        Stored {
            msg,
            deliver_at: (deliver_at != 0).then_some(deliver_at),
        },
        RECORD_HEADER + len,
    ))
}

/// A queue's write position and counts, taken before a batch of records.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    write_num: u64,
    write_pos: u64,
    depth: u64,
    unsynced: u64,
}

pub struct DiskQueue {
    name: String,
    config: DiskConfig,
    depth: u64,
    read_num: u64,
    read_pos: u64,
    write_num: u64,
    write_pos: u64,
    reader: Option<BufReader<File>>,
    writer: Option<File>,
    /// Records written but not yet handed to the OS; they end at `write_pos`.
    pending: BytesMut,
    /// Bytes of the write segment the OS has.
    flushed_pos: u64,
    /// Reads and writes since the last sync.
    unsynced: u64,
    /// Bytes skipped as corrupt, since start.
    corrupt_bytes: u64,
    scratch: BytesMut,
    /// Where fsyncs and metadata writes go, off the caller's thread.
    syncs: Arc<SyncSlot>,
}

impl DiskQueue {
    fn segment_path(dir: &Path, name: &str, num: u64) -> PathBuf {
        dir.join(format!("{name}.queue.{num:06}.dat"))
    }

    fn meta_path(&self) -> PathBuf {
        self.config.dir.join(format!("{}.queue.meta", self.name))
    }

    fn max_payload(&self) -> usize {
        PAYLOAD_HEADER + self.config.max_msg_size as usize
    }

    /// Opens (or creates) the queue and recovers what a crash left behind.
    pub fn open(name: &str, config: DiskConfig) -> io::Result<DiskQueue> {
        fs::create_dir_all(&config.dir)?;
        let mut q = DiskQueue {
            name: name.to_string(),
            config,
            depth: 0,
            read_num: 0,
            read_pos: 0,
            write_num: 0,
            write_pos: 0,
            reader: None,
            writer: None,
            pending: BytesMut::new(),
            flushed_pos: 0,
            unsynced: 0,
            corrupt_bytes: 0,
            scratch: BytesMut::new(),
            syncs: SyncSlot::new(name),
        };
        let meta = fs::read_to_string(q.meta_path())
            .ok()
            .and_then(|text| parse_meta(&text));
        if let Some((depth, read, write)) = meta {
            q.depth = depth;
            (q.read_num, q.read_pos) = read;
            (q.write_num, q.write_pos) = write;
        }
        let segments = q.segment_numbers();
        if meta.is_none() {
            // No metadata: everything on disk is unread.
            if let Some(&first) = segments.first() {
                (q.read_num, q.write_num) = (first, first);
            }
        }
        // Segments past the recorded write position were written after the
        // last metadata sync: keep their valid records.
        let start = q.write_num;
        for num in segments.into_iter().filter(|&n| n >= start) {
            if num > q.write_num {
                q.write_num = num;
                q.write_pos = 0;
            }
            q.recover_tail()?;
        }
        if q.is_empty() {
            q.depth = 0;
        } else if q.depth == 0 {
            q.depth = q.count_records()?;
        }
        // The write segment is opened at the first write: an idle queue
        // holds no file open (10,000 topics would need 20,000 descriptors).
        q.flushed_pos = q.write_pos;
        Ok(q)
    }

    /// The segments on disk from the read segment on. They are found by
    /// their names, not by listing the directory, which would cost as much
    /// as the whole data directory for every queue opened: numbers run on
    /// from the read segment to the write segment, and a few past it are
    /// probed for what was written after the metadata last was.
    fn segment_numbers(&self) -> Vec<u64> {
        const PROBED_PAST_WRITE: u64 = 4;
        let exists = |num| Self::segment_path(&self.config.dir, &self.name, num).exists();
        let mut nums: Vec<u64> = (self.read_num..=self.write_num)
            .filter(|&num| exists(num))
            .collect();
        let mut num = self.write_num + 1;
        let mut misses = 0;
        while misses < PROBED_PAST_WRITE {
            if exists(num) {
                nums.push(num);
                misses = 0;
            } else {
                misses += 1;
            }
            num += 1;
        }
        nums
    }

    /// Scans the write segment from `write_pos`, keeping valid records and
    /// cutting the file at the first torn or corrupt one.
    fn recover_tail(&mut self) -> io::Result<()> {
        let path = Self::segment_path(&self.config.dir, &self.name, self.write_num);
        let Ok(mut file) = OpenOptions::new().read(true).write(true).open(&path) else {
            return Ok(());
        };
        let len = file.metadata()?.len();
        if self.write_pos > len {
            tracing::warn!(queue = %self.name, file = %path.display(), "segment shorter than its metadata; continuing from its end");
            self.write_pos = len;
        }
        file.seek(SeekFrom::Start(self.write_pos))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let mut pos = 0;
        while let Some((_, n)) = decode_record(&tail[pos..], self.max_payload()) {
            pos += n;
            self.depth += 1;
        }
        self.write_pos += pos as u64;
        if pos < tail.len() {
            let dropped = (tail.len() - pos) as u64;
            self.corrupt_bytes += dropped;
            tracing::warn!(queue = %self.name, file = %path.display(), bytes = dropped, "cut a torn or corrupt tail");
            file.set_len(self.write_pos)?;
            file.sync_all()?;
        }
        Ok(())
    }

    /// Counts the records between the read and write positions.
    fn count_records(&mut self) -> io::Result<u64> {
        let mut count = 0;
        for num in self.read_num..=self.write_num {
            let Ok(data) = fs::read(Self::segment_path(&self.config.dir, &self.name, num)) else {
                continue;
            };
            let mut pos = if num == self.read_num {
                self.read_pos as usize
            } else {
                0
            };
            let end = if num == self.write_num {
                self.write_pos as usize
            } else {
                data.len()
            };
            while pos < end.min(data.len()) {
                match decode_record(&data[pos..], self.max_payload()) {
                    Some((_, n)) => {
                        pos += n;
                        count += 1;
                    }
                    None => break,
                }
            }
        }
        Ok(count)
    }

    pub fn depth(&self) -> u64 {
        self.depth
    }

    pub fn is_empty(&self) -> bool {
        self.read_num == self.write_num && self.read_pos >= self.write_pos
    }

    pub fn corrupt_bytes(&self) -> u64 {
        self.corrupt_bytes
    }

    /// Bytes of records not yet read. Only a backlog spanning segments needs
    /// to look at files, so this stays cheap for a scrape of many queues.
    pub fn bytes(&self) -> u64 {
        if self.read_num == self.write_num {
            return self.write_pos.saturating_sub(self.read_pos);
        }
        let size = |num| {
            fs::metadata(Self::segment_path(&self.config.dir, &self.name, num))
                .map_or(0, |m| m.len())
        };
        let middle: u64 = (self.read_num + 1..self.write_num).map(size).sum();
        size(self.read_num).saturating_sub(self.read_pos) + middle + self.write_pos
    }

    fn open_writer(&mut self) -> io::Result<()> {
        let path = Self::segment_path(&self.config.dir, &self.name, self.write_num);
        self.writer = Some(OpenOptions::new().create(true).append(true).open(path)?);
        Ok(())
    }

    /// Appends a message. It reaches the OS when enough is pending or at a
    /// sync, the disk at a sync (every `--sync-every` operations). A write the
    /// disk refuses is undone completely and reported, so a refused publish
    /// never reappears later.
    pub fn put(&mut self, msg: &Message, deliver_at: Option<i64>) -> io::Result<()> {
        self.scratch.clear();
        encode_record(&mut self.scratch, msg, deliver_at);
        let len = self.scratch.len() as u64;
        if self.write_pos > 0 && self.write_pos + len > self.config.max_bytes_per_file {
            self.roll()?;
        }
        let start = self.write_pos;
        self.pending.extend_from_slice(&self.scratch);
        self.write_pos += len;
        self.depth += 1;
        self.count_unsynced();
        let result = if self.unsynced >= self.config.sync_every {
            self.sync_soon()
        } else if self.pending.len() >= WRITE_BUFFER {
            self.flush_writer()
        } else {
            Ok(())
        };
        if let Err(e) = result {
            self.undo_write(start);
            return Err(e);
        }
        Ok(())
    }

    /// Forgets the record that started at `start` (the last one written).
    fn undo_write(&mut self, start: u64) {
        self.undo_to(Mark {
            write_num: self.write_num,
            write_pos: start,
            depth: self.depth.saturating_sub(1),
            unsynced: self.unsynced.saturating_sub(1),
        });
    }

    /// Where the next record goes: what [`DiskQueue::undo_batch`] returns to.
    pub fn mark(&self) -> Mark {
        Mark {
            write_num: self.write_num,
            write_pos: self.write_pos,
            depth: self.depth,
            unsynced: self.unsynced,
        }
    }

    /// Hands what was written to the OS now, as upstream's disk queue does
    /// with every message, so that a publish acknowledged after this
    /// survives a kill of the process (not a power loss: that waits for the
    /// fsync). The fsync stays with `--sync-every` and `--sync-timeout`.
    pub fn hand_to_os(&mut self) -> io::Result<()> {
        self.flush_writer()
    }

    /// Forgets every record written since `mark` (one publish the disk
    /// refused), so that none of them comes back later. Records that a
    /// segment roll in between already handed to the OS stay.
    pub fn undo_batch(&mut self, mark: Mark) {
        if mark.write_num == self.write_num && mark.write_pos <= self.write_pos {
            self.undo_to(mark);
        }
    }

    fn undo_to(&mut self, mark: Mark) {
        let start = mark.write_pos;
        if self.flushed_pos > start {
            if let Some(file) = self.writer.as_ref() {
                let _ = file.set_len(start);
            }
            self.flushed_pos = start;
            self.pending.clear();
        } else {
            self.pending.truncate((start - self.flushed_pos) as usize);
        }
        self.write_pos = start;
        self.depth = mark.depth;
        self.unsynced = mark.unsynced;
    }

    fn roll(&mut self) -> io::Result<()> {
        self.sync_soon()?;
        self.write_num += 1;
        self.write_pos = 0;
        self.flushed_pos = 0;
        self.writer = None;
        self.syncs.submit(None, self.meta());
        Ok(())
    }

    /// Hands pending records to the OS. On failure the file is cut back to
    /// what it held before, and the records stay pending.
    fn flush_writer(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() {
            self.open_writer()?;
        }
        let file = self.writer.as_mut().expect("opened above");
        if let Err(e) = file.write_all(&self.pending) {
            let _ = file.set_len(self.flushed_pos);
            return Err(e);
        }
        self.pending.clear();
        self.flushed_pos = self.write_pos;
        Ok(())
    }

    /// Takes the next message, skipping corrupt data. `Ok(None)` when empty.
    pub fn pop(&mut self) -> io::Result<Option<Stored>> {
        loop {
            if self.is_empty() {
                self.depth = 0;
                return Ok(None);
            }
            if self.read_num == self.write_num && self.read_pos >= self.flushed_pos {
                self.flush_writer()?;
            }
            let max_payload = self.max_payload();
            let reader = match self.reader.as_mut() {
                Some(r) => r,
                None => {
                    let path = Self::segment_path(&self.config.dir, &self.name, self.read_num);
                    match File::open(&path) {
                        Ok(mut file) => {
                            file.seek(SeekFrom::Start(self.read_pos))?;
                            self.reader
                                .insert(BufReader::with_capacity(256 * 1024, file))
                        }
                        Err(e)
                            if e.kind() == io::ErrorKind::NotFound
                                && self.read_num < self.write_num =>
                        {
                            tracing::warn!(queue = %self.name, file = %path.display(), "segment missing; skipping to the next");
                            self.corrupt_bytes += 1;
                            self.next_segment();
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            let segment_end = if self.read_num == self.write_num {
                Some(self.write_pos)
            } else {
                None
            };
            match read_one(reader, max_payload)? {
                ReadOutcome::Record(stored, n) => {
                    self.read_pos += n as u64;
                    self.depth = self.depth.saturating_sub(1);
                    // Reads count toward --sync-every too: the read position
                    // is what keeps consumed messages from coming back.
                    self.count_unsynced();
                    if self.unsynced >= self.config.sync_every {
                        if let Err(e) = self.sync_soon() {
                            tracing::warn!(queue = %self.name, error = %e, "sync after read failed; will retry");
                        }
                    }
                    return Ok(Some(stored));
                }
                ReadOutcome::End if segment_end.is_none() => self.next_segment(),
                ReadOutcome::End => {
                    // The writer's data is flushed, so this is the true end.
                    self.read_pos = self.write_pos;
                }
                ReadOutcome::Corrupt => self.resync()?,
            }
        }
    }

    /// What [`DiskPeek::read`] needs to read the unread messages without
    /// this queue, so that the caller can let go of its lock first; `None`
    /// when nothing is unread. Flushes buffered writes.
    pub fn peek_plan(&mut self) -> io::Result<Option<DiskPeek>> {
        if self.is_empty() {
            return Ok(None);
        }
        self.flush_writer()?;
        Ok(Some(DiskPeek {
            dir: self.config.dir.clone(),
            name: self.name.clone(),
            from: (self.read_num, self.read_pos),
            end: (self.write_num, self.write_pos),
            max_payload: self.max_payload(),
        }))
    }

    fn next_segment(&mut self) {
        let done = Self::segment_path(&self.config.dir, &self.name, self.read_num);
        self.reader = None;
        self.read_num += 1;
        self.read_pos = 0;
        if let Err(e) = fs::remove_file(&done) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(queue = %self.name, file = %done.display(), error = %e, "failed to delete a read segment");
            }
        }
    }

    /// Skips from a corrupt record to the next valid one in this segment, or
    /// to the next segment.
    fn resync(&mut self) -> io::Result<()> {
        let path = Self::segment_path(&self.config.dir, &self.name, self.read_num);
        let data = fs::read(&path)?;
        let end = if self.read_num == self.write_num {
            self.write_pos as usize
        } else {
            data.len()
        };
        let from = self.read_pos as usize;
        let next = (from + 1..end.min(data.len()))
            .find(|&p| decode_record(&data[p..], self.max_payload()).is_some());
        let skipped_to = next.unwrap_or(end.max(from));
        self.corrupt_bytes += (skipped_to - from) as u64;
        tracing::warn!(queue = %self.name, file = %path.display(), offset = from, bytes = skipped_to - from, "skipped corrupt data");
        self.reader = None;
        self.read_pos = skipped_to as u64;
        if next.is_none() && self.read_num < self.write_num {
            self.next_segment();
        }
        Ok(())
    }

    /// Makes everything written so far durable, and the positions with it,
    /// and waits for it. Blocking.
    pub fn sync(&mut self) -> io::Result<()> {
        let batch = self.submit_sync()?;
        self.syncs.wait(batch)
    }

    /// Waits for the fsyncs already handed to the sync thread. Blocking.
    pub fn wait_for_syncs(&self) -> io::Result<()> {
        self.syncs.wait_all()
    }

    /// Hands what was written so far to the OS now (a write error is the
    /// caller's), and to the disk soon, on the sync thread: the caller never
    /// waits for an fsync.
    pub fn sync_soon(&mut self) -> io::Result<()> {
        self.submit_sync().map(drop)
    }

    fn submit_sync(&mut self) -> io::Result<u64> {
        self.flush_writer()?;
        let file = match self.writer.as_ref() {
            Some(writer) => Some((self.write_num, writer.try_clone()?)),
            None => None,
        };
        self.unsynced = 0;
        Ok(self.syncs.submit(file, self.meta()))
    }

    /// One more read or write to sync; the first raises the node's flag.
    fn count_unsynced(&mut self) {
        if self.unsynced == 0 {
            self.config.unsynced.raise();
        }
        self.unsynced += 1;
    }

    pub fn needs_sync(&self) -> bool {
        self.unsynced > 0
    }

    /// The metadata file and what it should say now.
    fn meta(&self) -> (PathBuf, String) {
        let text = format!(
            "{}\n{},{}\n{},{}\n",
            self.depth, self.read_num, self.read_pos, self.write_num, self.write_pos
        );
        (self.meta_path(), text)
    }

    /// Drops every message: all files go, and writing starts on a new segment.
    pub fn empty(&mut self) -> io::Result<()> {
        self.reader = None;
        self.writer = None;
        self.pending.clear();
        self.remove_segments()?;
        self.write_num += 1;
        self.write_pos = 0;
        self.flushed_pos = 0;
        self.read_num = self.write_num;
        self.read_pos = 0;
        self.depth = 0;
        self.syncs.submit(None, self.meta());
        Ok(())
    }

    fn remove_segments(&self) -> io::Result<()> {
        for num in self.segment_numbers() {
            let _ = fs::remove_file(Self::segment_path(&self.config.dir, &self.name, num));
        }
        Ok(())
    }

    /// Removes the queue's files for good (its topic or channel was deleted).
    pub fn delete(mut self) -> io::Result<()> {
        self.syncs.retire();
        self.reader = None;
        self.writer = None;
        self.remove_segments()?;
        match fs::remove_file(self.meta_path()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

enum ReadOutcome {
    Record(Stored, usize),
    End,
    Corrupt,
}

fn read_one(reader: &mut BufReader<File>, max_payload: usize) -> io::Result<ReadOutcome> {
    let mut header = [0u8; RECORD_HEADER];
    match read_full(reader, &mut header)? {
        0 => return Ok(ReadOutcome::End),
        n if n < RECORD_HEADER => return Ok(ReadOutcome::Corrupt),
        _ => {}
    }
    let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    if !(PAYLOAD_HEADER..=max_payload).contains(&len) {
        return Ok(ReadOutcome::Corrupt);
    }
    let mut record = vec![0u8; RECORD_HEADER + len];
    record[..RECORD_HEADER].copy_from_slice(&header);
    if read_full(reader, &mut record[RECORD_HEADER..])? < len {
        return Ok(ReadOutcome::Corrupt);
    }
    Ok(match decode_record(&record, max_payload) {
        Some((stored, n)) => ReadOutcome::Record(stored, n),
        None => ReadOutcome::Corrupt,
    })
}

/// Reads until `buf` is full or the end; returns how much it read.
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A file number and a byte offset in it.
type Position = (u64, u64);

/// `(depth, read position, write position)`.
fn parse_meta(text: &str) -> Option<(u64, Position, Position)> {
    let mut lines = text.lines();
    let depth = lines.next()?.trim().parse().ok()?;
    let pair = |line: &str| -> Option<(u64, u64)> {
        let (a, b) = line.trim().split_once(',')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    Some((depth, pair(lines.next()?)?, pair(lines.next()?)?))
}

/// Writes `data` to `path` so that readers see the old or the new content,
/// never a mix: temp file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", rand::random::<u32>()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Path of the file that holds what a queue kept in memory at shutdown.
fn front_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.queue.front"))
}

/// Saves the messages a topic or channel held in memory (queued, in flight,
/// deferred) at shutdown; they come back first at the next start. Replaces
/// any earlier file atomically; an empty list removes it.
pub fn save_front(dir: &Path, name: &str, messages: &[(Message, Option<i64>)]) -> io::Result<()> {
    let path = front_path(dir, name);
    if messages.is_empty() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let mut buf = BytesMut::new();
    for (msg, deliver_at) in messages {
        encode_record(&mut buf, msg, *deliver_at);
    }
    write_atomically(&path, &buf)
}

/// Reads back what [`save_front`] wrote and removes the file; from then on
/// those messages live in memory again.
pub fn take_front(dir: &Path, name: &str, max_msg_size: u64) -> io::Result<Vec<Stored>> {
    let path = front_path(dir, name);
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let max_payload = PAYLOAD_HEADER + max_msg_size as usize;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        match decode_record(&data[pos..], max_payload) {
            Some((stored, n)) => {
                out.push(stored);
                pos += n;
            }
            None => {
                tracing::warn!(file = %path.display(), offset = pos, "corrupt record in saved state; skipping the rest");
                break;
            }
        }
    }
    fs::remove_file(&path)?;
    Ok(out)
}

/// Removes a queue's saved state (its topic or channel was deleted).
pub fn remove_front(dir: &Path, name: &str) {
    let _ = fs::remove_file(front_path(dir, name));
}

/// The unread part of a disk queue as it stood, for reading it without the
/// queue: [`DiskQueue::peek_plan`].
pub struct DiskPeek {
    dir: PathBuf,
    name: String,
    /// (segment, offset) of the first unread record.
    from: (u64, u64),
    /// (segment, offset) where the written data ended.
    end: (u64, u64),
    max_payload: usize,
}

impl DiskPeek {
    /// Appends up to `n` messages to `out` in order: passes over deferred
    /// ones not due at `now_unix` and those `keep` refuses, and stops at
    /// corrupt data (which a read would skip). A segment the queue has
    /// finished and deleted since is passed over. Blocking.
    pub fn read(
        self,
        n: usize,
        now_unix: i64,
        keep: &dyn Fn(&Message) -> bool,
        out: &mut Vec<Message>,
    ) -> io::Result<()> {
        let mut found = 0;
        let ((mut num, mut pos), (write_num, write_pos)) = (self.from, self.end);
        while num <= write_num && found < n {
            let path = DiskQueue::segment_path(&self.dir, &self.name, num);
            let mut file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    (num, pos) = (num + 1, 0);
                    continue;
                }
                Err(e) => return Err(e),
            };
            file.seek(SeekFrom::Start(pos))?;
            let end = (num == write_num).then_some(write_pos);
            let mut reader = BufReader::with_capacity(64 * 1024, file);
            while found < n && end.is_none_or(|end| pos < end) {
                match read_one(&mut reader, self.max_payload)? {
                    ReadOutcome::Record(stored, len) => {
                        pos += len as u64;
                        let due = stored.deliver_at.is_some_and(|at| at > now_unix);
                        if !due && keep(&stored.msg) {
                            out.push(stored.msg);
                            found += 1;
                        }
                    }
                    ReadOutcome::End => break,
                    ReadOutcome::Corrupt => return Ok(()),
                }
            }
            (num, pos) = (num + 1, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, max_bytes: u64) -> DiskConfig {
        DiskConfig {
            dir: dir.to_path_buf(),
            max_bytes_per_file: max_bytes,
            sync_every: 1000,
            max_msg_size: 1024,
            unsynced: UnsyncedFlag::default(),
        }
    }

    /// A directory removed when the test ends, also when it fails.
    fn dir(tag: &str) -> crate::log::TempDir {
        crate::log::TempDir::new(&format!("dq-{tag}"))
    }

    fn msg(i: u64) -> Message {
        Message {
            id: i,
            timestamp: 1000 + i as i64,
            attempts: (i % 3) as u16,
            body: Bytes::from(format!("body-{i}")),
        }
    }

    fn drain(q: &mut DiskQueue) -> Vec<u64> {
        std::iter::from_fn(|| q.pop().unwrap())
            .map(|s| s.msg.id)
            .collect()
    }

    /// The node's flag goes up with the first read or write after a sync,
    /// so that the periodic sync skips a node whose queues are all idle.
    #[test]
    fn the_first_unsynced_read_or_write_raises_the_nodes_flag() {
        let guard = dir("flag");
        let cfg = config(guard.path(), 1 << 20);
        let flag = cfg.unsynced.clone();
        let mut q = DiskQueue::open("t", cfg).unwrap();
        assert!(!flag.take(), "opening is not a write");
        q.put(&msg(1), None).unwrap();
        q.put(&msg(2), None).unwrap();
        assert!(flag.take());
        assert!(!flag.take(), "taken once");
        q.put(&msg(3), None).unwrap();
        assert!(!flag.take(), "still unsynced from before the take");
        q.sync_soon().unwrap();
        q.wait_for_syncs().unwrap();
        q.pop().unwrap().unwrap();
        assert!(flag.take(), "a read after the sync");
        q.sync_soon().unwrap();
        q.put(&msg(4), None).unwrap();
        assert!(flag.take(), "a write after the sync");
    }

    #[test]
    fn rolls_segments_and_deletes_read_ones() {
        let guard = dir("roll");
        let d = guard.path();
        let mut q = DiskQueue::open("t", config(d, 200)).unwrap();
        for i in 0..20 {
            q.put(&msg(i), if i == 3 { Some(77) } else { None })
                .unwrap();
        }
        assert_eq!(q.depth(), 20);
        assert!(q.segment_numbers().len() > 3, "rolled at 200 bytes");
        q.sync().unwrap();
        let on_disk: u64 = q
            .segment_numbers()
            .iter()
            .map(|&n| {
                fs::metadata(DiskQueue::segment_path(d, "t", n))
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(q.bytes(), on_disk);
        for f in q.segment_numbers() {
            assert!(
                fs::metadata(DiskQueue::segment_path(d, "t", f))
                    .unwrap()
                    .len()
                    <= 200
            );
        }
        let first = q.pop().unwrap().unwrap();
        assert_eq!(first.msg, msg(0));
        let rest: Vec<Stored> = std::iter::from_fn(|| q.pop().unwrap()).collect();
        assert_eq!(rest.len(), 19);
        assert_eq!(q.bytes(), 0);
        assert_eq!(rest[2].deliver_at, Some(77));
        assert_eq!(q.depth(), 0);
        assert_eq!(q.segment_numbers().len(), 1, "read segments deleted");
    }

    #[test]
    fn a_peek_reads_without_the_queue_and_passes_over_what_it_deleted_since() {
        let guard = dir("peek");
        let mut q = DiskQueue::open("t", config(guard.path(), 200)).unwrap();
        for i in 0..20 {
            let deferred = (i == 5).then_some(i64::MAX);
            q.put(&msg(i), deferred).unwrap();
        }
        let all = |plan: DiskPeek| {
            let mut out = Vec::new();
            plan.read(100, 0, &|m: &Message| m.id != 7, &mut out)
                .unwrap();
            out.into_iter().map(|m| m.id).collect::<Vec<_>>()
        };
        let plan = q.peek_plan().unwrap().expect("unread messages");
        let expected: Vec<u64> = (0..20).filter(|&i| i != 5 && i != 7).collect();
        assert_eq!(all(plan), expected);
        // The queue moves on after the plan was made: read segments go.
        let plan = q.peek_plan().unwrap().expect("unread messages");
        let popped: Vec<u64> = (0..12).map(|_| q.pop().unwrap().unwrap().msg.id).collect();
        assert_eq!(popped[..3], [0, 1, 2]);
        let peeked = all(plan);
        assert!(peeked.ends_with(&[18, 19]), "{peeked:?}");
        assert!(peeked.windows(2).all(|w| w[0] < w[1]), "{peeked:?}");
        let mut first_two = Vec::new();
        let plan = q.peek_plan().unwrap().expect("unread messages");
        plan.read(2, 0, &|_: &Message| true, &mut first_two)
            .unwrap();
        assert_eq!(first_two.len(), 2);
        assert_eq!(first_two[0].id, popped.last().unwrap() + 1);
        drain(&mut q);
        assert!(q.peek_plan().unwrap().is_none());
    }

    #[test]
    fn positions_survive_reopen_and_unsynced_records_are_recovered() {
        let guard = dir("reopen");
        let d = guard.path();
        let mut q = DiskQueue::open("t", config(d, 1 << 20)).unwrap();
        for i in 0..10 {
            q.put(&msg(i), None).unwrap();
        }
        q.sync().unwrap();
        assert_eq!(q.pop().unwrap().unwrap().msg.id, 0);
        q.sync().unwrap();
        for i in 10..15 {
            q.put(&msg(i), None).unwrap();
        }
        q.flush_writer().unwrap(); // in the OS, but the metadata never saw them
        drop(q);
        let mut q = DiskQueue::open("t", config(d, 1 << 20)).unwrap();
        assert_eq!(q.depth(), 14);
        assert_eq!(drain(&mut q), (1..15).collect::<Vec<_>>());
    }

    #[test]
    fn torn_tail_is_cut() {
        let guard = dir("torn");
        let d = guard.path();
        let mut q = DiskQueue::open("t", config(d, 1 << 20)).unwrap();
        for i in 0..5 {
            q.put(&msg(i), None).unwrap();
        }
        q.sync().unwrap();
        drop(q);
        let seg = DiskQueue::segment_path(d, "t", 0);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0, 0, 0, 40, 1, 2, 3]).unwrap(); // half a record
        drop(f);
        let mut q = DiskQueue::open("t", config(d, 1 << 20)).unwrap();
        assert_eq!(q.corrupt_bytes(), 7);
        q.put(&msg(5), None).unwrap();
        assert_eq!(drain(&mut q), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn checksum_failure_skips_only_the_bad_record() {
        let guard = dir("crc");
        let d = guard.path();
        let mut q = DiskQueue::open("t", config(d, 1 << 20)).unwrap();
        for i in 0..5 {
            q.put(&msg(i), None).unwrap();
        }
        q.sync().unwrap();
        drop(q);
        let seg = DiskQueue::segment_path(d, "t", 0);
        let mut data = fs::read(&seg).unwrap();
        let mut scratch = BytesMut::new();
        encode_record(&mut scratch, &msg(0), None);
        let second = scratch.len();
        data[second + 20] ^= 0xff; // inside record 1's payload
        fs::write(&seg, &data).unwrap();
        let mut q = DiskQueue::open("t", config(d, 1 << 20)).unwrap();
        assert_eq!(drain(&mut q), vec![0, 2, 3, 4]);
        assert!(q.corrupt_bytes() > 0);
    }

    #[test]
    fn missing_segment_is_skipped() {
        let guard = dir("missing");
        let d = guard.path();
        let mut q = DiskQueue::open("t", config(d, 100)).unwrap();
        for i in 0..6 {
            q.put(&msg(i), None).unwrap();
        }
        q.sync().unwrap();
        drop(q);
        fs::remove_file(DiskQueue::segment_path(d, "t", 1)).unwrap();
        let mut q = DiskQueue::open("t", config(d, 100)).unwrap();
        let got = drain(&mut q);
        assert!(
            got.len() >= 4 && got.contains(&0) && got.contains(&5),
            "{got:?}"
        );
    }

    #[test]
    fn empty_and_delete_remove_files() {
        let guard = dir("empty");
        let d = guard.path();
        let mut q = DiskQueue::open("t", config(d, 1 << 20)).unwrap();
        q.put(&msg(1), None).unwrap();
        q.empty().unwrap();
        assert_eq!((q.depth(), q.pop().unwrap()), (0, None));
        q.put(&msg(2), None).unwrap();
        assert_eq!(drain(&mut q), vec![2]);
        q.delete().unwrap();
        assert_eq!(fs::read_dir(d).unwrap().count(), 0);
    }
}
