//! The segment files of one topic log: their names, the chunked scan that
//! recovery and readers share, the index that tells readers how far each
//! segment may be read, and the writer thread's side (append, roll, undo).

use super::record::{frame, message_seq, Frame, FRAME_HEADER};
use super::writer::Io;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Readers and recovery read this much at a time.
const CHUNK: usize = 256 * 1024;

pub(super) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Base seqs of the segments in `dir`, ascending.
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| parse_segment_name(e.ok()?.file_name().to_str()?))
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

fn create_segment(dir: &Path, base: u64, io: &Io) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(segment_path(dir, base))?;
    io.sync_dir(dir)?;
    Ok(file)
}

/// A segment as readers may see it: `len` bytes hold published records.
/// Bytes past it are being written, or were withdrawn and not yet cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) base: u64,
    pub(super) len: u64,
}

/// The segments readers may open. Shared by the log and its readers; the
/// writer thread updates it when it publishes a round.
pub(super) struct SegmentIndex {
    pub(super) topic: String,
    pub(super) dir: PathBuf,
    pub(super) max_payload: usize,
    marks: Mutex<VecDeque<Mark>>,
    pub(super) corrupt_bytes: std::sync::atomic::AtomicU64,
}

impl SegmentIndex {
    pub(super) fn new(
        topic: &str,
        dir: PathBuf,
        max_payload: usize,
        marks: VecDeque<Mark>,
    ) -> Self {
        SegmentIndex {
            topic: topic.to_string(),
            dir,
            max_payload,
            marks: Mutex::new(marks),
            corrupt_bytes: Default::default(),
        }
    }

    /// The segment that holds `seq`, or the first one when `seq` is older
    /// than every segment.
    pub(super) fn locate(&self, seq: u64) -> Option<Mark> {
        let marks = self.marks.lock();
        let i = marks.partition_point(|m| m.base <= seq);
        marks.get(i.saturating_sub(1)).copied()
    }

    pub(super) fn first_base(&self) -> u64 {
        self.marks.lock().front().map_or(0, |m| m.base)
    }

    pub(super) fn bytes(&self) -> u64 {
        self.marks.lock().iter().map(|m| m.len).sum()
    }

    /// How far `base` may be read now, and the segment after it. One lock,
    /// so that a reader never sees the next segment without the final length
    /// of the one before it.
    pub(super) fn step(&self, base: u64) -> (Option<Mark>, Option<Mark>) {
        let marks = self.marks.lock();
        let i = marks.partition_point(|m| m.base < base);
        let this = marks.get(i).copied().filter(|m| m.base == base);
        let next = marks.get(i + usize::from(this.is_some())).copied();
        (this, next)
    }

    fn set(marks: &mut VecDeque<Mark>, mark: Mark) {
        match marks.back_mut() {
            Some(last) if last.base == mark.base => last.len = mark.len,
            _ => marks.push_back(mark),
        }
    }

    /// Removes and returns the oldest segment if every seq in it is below
    /// `seq` and it is not the last one.
    fn pop_retired(&self, seq: u64) -> Option<Mark> {
        let mut marks = self.marks.lock();
        if marks.len() >= 2 && marks[1].base <= seq {
            marks.pop_front()
        } else {
            None
        }
    }
}

/// Sequential reads of one segment's message records, skipping corruption by
/// searching forward byte by byte for the next intact record (as the disk
/// queue does). Reads in large chunks with `pread`, so it needs no seek state.
pub(super) struct Scan {
    file: File,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`; `read_at` is the file offset of `buf[end]`.
    start: usize,
    end: usize,
    read_at: u64,
    max_payload: usize,
}

impl Scan {
    pub(super) fn new(file: File, max_payload: usize) -> Scan {
        Scan {
            file,
            buf: Vec::new(),
            start: 0,
            end: 0,
            read_at: 0,
            max_payload,
        }
    }

    /// File offset of the next unread byte.
    pub(super) fn offset(&self) -> u64 {
        self.read_at - (self.end - self.start) as u64
    }

    /// The next intact message record with a seq of at least `min_seq` in the
    /// first `bound` bytes of the file: its seq and where its payload is in
    /// [`Scan::payload`]. Records below `min_seq` are passed over; bytes that
    /// are not records are added to `skipped`. `None` at `bound` (or the end
    /// of the file); a later call with a larger bound continues from there.
    pub(super) fn next(
        &mut self,
        bound: u64,
        min_seq: u64,
        skipped: &mut u64,
    ) -> io::Result<Option<(u64, Range<usize>)>> {
        loop {
            match frame(&self.buf[self.start..self.end], self.max_payload) {
                Frame::Complete(payload) => {
                    let at = self.start + FRAME_HEADER;
                    let len = payload.len();
                    match message_seq(payload) {
                        Some(seq) => {
                            self.start = at + len;
                            if seq >= min_seq {
                                return Ok(Some((seq, at..at + len)));
                            }
                        }
                        None => self.skip_byte(skipped),
                    }
                }
                Frame::Incomplete => {
                    if !self.fill(bound)? {
                        if self.start == self.end {
                            return Ok(None);
                        }
                        // Cannot complete within the bound: a torn tail, or a
                        // corrupt length in front of intact records.
                        self.skip_byte(skipped);
                    }
                }
                Frame::Corrupt => self.skip_byte(skipped),
            }
        }
    }

    pub(super) fn payload(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    fn skip_byte(&mut self, skipped: &mut u64) {
        self.start += 1;
        *skipped += 1;
    }

    /// Reads more of the file, up to `bound`; false when nothing more came.
    fn fill(&mut self, bound: u64) -> io::Result<bool> {
        if self.read_at >= bound {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // Room for the record being assembled: its length passed `frame`'s bound.
        let need = match self.buf[..self.end].first_chunk::<4>() {
            Some(len) => FRAME_HEADER + u32::from_be_bytes(*len) as usize,
            None => FRAME_HEADER,
        };
        let size = CHUNK.max(need.min(FRAME_HEADER + self.max_payload));
        if self.buf.len() < size {
            self.buf.resize(size, 0);
        }
        let room = (self.buf.len() - self.end).min((bound - self.read_at) as usize);
        let n = loop {
            match self
                .file
                .read_at(&mut self.buf[self.end..self.end + room], self.read_at)
            {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.end += n;
        self.read_at += n as u64;
        Ok(n > 0)
    }
}

/// What opening a log found on disk.
pub(super) struct Recovered {
    pub(super) marks: VecDeque<Mark>,
    pub(super) files: SegmentFiles,
    pub(super) end_seq: u64,
    /// Bytes cut off the last segment.
    pub(super) cut: u64,
}

/// Lists the segments and recovers the last one: every intact record is
/// kept, corruption in front of intact records is left for readers to skip,
/// and a torn or corrupt tail is cut. Older segments are not read.
pub(super) fn recover(
    dir: &Path,
    topic: &str,
    max_payload: usize,
    io: &Io,
) -> io::Result<Recovered> {
    let bases = list_segments(dir)?;
    let Some(&base) = bases.last() else {
        let file = create_segment(dir, 0, io)?;
        return Ok(Recovered {
            marks: VecDeque::from([Mark { base: 0, len: 0 }]),
            files: SegmentFiles::new(file, 0, 0),
            end_seq: 0,
            cut: 0,
        });
    };
    let mut marks = VecDeque::with_capacity(bases.len());
    for &b in &bases[..bases.len() - 1] {
        let len = fs::metadata(segment_path(dir, b))?.len();
        marks.push_back(Mark { base: b, len });
    }
    let path = segment_path(dir, base);
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    let file_len = file.metadata()?.len();
    let mut scan = Scan::new(file.try_clone()?, max_payload);
    let (mut next_seq, mut valid_end, mut skipped) = (base, 0, 0);
    while let Some((seq, _)) = scan.next(file_len, next_seq, &mut skipped)? {
        next_seq = seq + 1;
        valid_end = scan.offset();
    }
    let cut = file_len - valid_end;
    if skipped > cut {
        tracing::warn!(topic, file = %path.display(), bytes = skipped - cut, "corrupt records inside the last segment; readers will skip them");
    }
    if cut > 0 {
        tracing::warn!(topic, file = %path.display(), bytes = cut, "cut a torn or corrupt tail off the log");
        file.set_len(valid_end)?;
        io.sync_file(&file)?;
    }
    marks.push_back(Mark {
        base,
        len: valid_end,
    });
    Ok(Recovered {
        marks,
        files: SegmentFiles::new(file, base, valid_end),
        end_seq: next_seq,
        cut,
    })
}

/// A segment closed during the batch being written.
struct Rolled {
    base: u64,
    len: u64,
    file: File,
}

/// The writer thread's side of one log's segments. Only the writer thread
/// (and open/delete) touch it.
pub(super) struct SegmentFiles {
    active: File,
    active_base: u64,
    active_len: u64,
    /// Set when a failed batch could not be cut off: its bytes must stay out
    /// of reach, so the next batch starts a new segment.
    must_roll: bool,
    /// Segments closed by the batch being written, until it is published or undone.
    rolled: Vec<Rolled>,
    /// The active segment's length before the batch being written.
    undo_len: u64,
}

impl SegmentFiles {
    fn new(active: File, base: u64, len: u64) -> Self {
        SegmentFiles {
            active,
            active_base: base,
            active_len: len,
            must_roll: false,
            rolled: Vec::new(),
            undo_len: len,
        }
    }

    /// Writes a batch of message records, rolling to a new segment before a
    /// record would take the active one past `max_bytes`. On error everything
    /// the batch wrote is undone before returning.
    pub(super) fn write(
        &mut self,
        dir: &Path,
        batch: &[u8],
        max_bytes: u64,
        io: &Io,
    ) -> io::Result<()> {
        self.undo_len = self.active_len;
        let result = self.write_records(dir, batch, max_bytes, io);
        if result.is_err() {
            self.undo(dir, io);
        }
        result
    }

    fn write_records(
        &mut self,
        dir: &Path,
        batch: &[u8],
        max_bytes: u64,
        io: &Io,
    ) -> io::Result<()> {
        if !self.must_roll && self.active_len + batch.len() as u64 <= max_bytes {
            return self.write_active(batch, io);
        }
        let (mut from, mut pos) = (0, 0);
        while pos < batch.len() {
            let rest = &batch[pos..];
            let bad = || {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed record in a log batch",
                )
            };
            let len = FRAME_HEADER
                + rest
                    .first_chunk::<4>()
                    .map(|b| u32::from_be_bytes(*b))
                    .ok_or_else(bad)? as usize;
            let filled = self.active_len + (pos - from) as u64;
            if self.must_roll || (filled > 0 && filled + len as u64 > max_bytes) {
                self.write_active(&batch[from..pos], io)?;
                let seq = rest
                    .get(FRAME_HEADER..len)
                    .and_then(message_seq)
                    .ok_or_else(bad)?;
                self.roll(dir, seq, io)?;
                from = pos;
            }
            pos += len;
        }
        self.write_active(&batch[from..], io)
    }

    fn write_active(&mut self, bytes: &[u8], io: &Io) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        io.before_write()?;
        self.active.write_all_at(bytes, self.active_len)?;
        self.active_len += bytes.len() as u64;
        Ok(())
    }

    /// The closed segment is synced first: nothing may depend on a later
    /// segment while an earlier one could still lose records.
    fn roll(&mut self, dir: &Path, base: u64, io: &Io) -> io::Result<()> {
        io.sync_file(&self.active)?;
        let file = create_segment(dir, base, io)?;
        let old = std::mem::replace(&mut self.active, file);
        self.rolled.push(Rolled {
            base: self.active_base,
            len: self.active_len,
            file: old,
        });
        self.active_base = base;
        self.active_len = 0;
        self.must_roll = false;
        Ok(())
    }

    /// Puts the files back as they were before the batch: segments it created
    /// are removed, the segment it started in is cut back.
    pub(super) fn undo(&mut self, dir: &Path, io: &Io) {
        let mut rolled = std::mem::take(&mut self.rolled).into_iter();
        if let Some(first) = rolled.next() {
            let created: Vec<u64> = rolled.map(|r| r.base).chain([self.active_base]).collect();
            self.active = first.file;
            self.active_base = first.base;
            for base in created {
                let path = segment_path(dir, base);
                if let Err(e) = fs::remove_file(&path) {
                    tracing::error!(file = %path.display(), error = %e, "could not remove a segment of a failed batch");
                }
            }
            if let Err(e) = io.sync_dir(dir) {
                tracing::error!(dir = %dir.display(), error = %e, "could not sync the log directory");
            }
        }
        if let Err(e) = self.active.set_len(self.undo_len) {
            tracing::error!(dir = %dir.display(), error = %e, "could not cut a failed batch off the log; starting a new segment");
            self.must_roll = true;
        }
        self.active_len = self.undo_len;
    }

    pub(super) fn sync(&self, io: &Io) -> io::Result<()> {
        io.sync_file(&self.active)
    }

    /// Lets readers see what the batch wrote.
    pub(super) fn publish(&mut self, index: &SegmentIndex) {
        let mut marks = index.marks.lock();
        for r in self.rolled.drain(..) {
            SegmentIndex::set(
                &mut marks,
                Mark {
                    base: r.base,
                    len: r.len,
                },
            );
        }
        let active = Mark {
            base: self.active_base,
            len: self.active_len,
        };
        SegmentIndex::set(&mut marks, active);
    }

    /// Deletes the segments whose every seq is below `seq`; never the active one.
    pub(super) fn retire(&self, index: &SegmentIndex, seq: u64, io: &Io) {
        let mut removed = false;
        while let Some(mark) = index.pop_retired(seq) {
            let path = segment_path(&index.dir, mark.base);
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(topic = %index.topic, file = %path.display(), error = %e, "could not delete a retired segment")
                }
            }
        }
        if removed {
            if let Err(e) = io.sync_dir(&index.dir) {
                tracing::warn!(topic = %index.topic, error = %e, "could not sync the log directory");
            }
        }
    }
}
