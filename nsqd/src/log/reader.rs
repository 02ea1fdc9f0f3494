//! Sequential reads of a topic log from any seq, for channels catching up and
//! for recovery replay. Blocking: run it in `spawn_blocking`.

use super::record::{decode_message, LogEntry};
use super::segment::{segment_path, Scan, SegmentIndex};
use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct LogReader {
    index: Arc<SegmentIndex>,
    /// The next seq to return; seqs below it are passed over.
    pos: u64,
    open: Option<OpenSegment>,
    /// A record read ahead that was not yet below the caller's limit.
    held: Option<LogEntry>,
}

struct OpenSegment {
    base: u64,
    scan: Scan,
    /// How far it may be read, as the index said when last asked.
    bound: u64,
}

impl LogReader {
    pub(super) fn new(index: Arc<SegmentIndex>, from: u64) -> LogReader {
        LogReader {
            index,
            pos: from,
            open: None,
            held: None,
        }
    }

    /// The seq after the last one returned (or where the reader started).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next record at or after [`position`](Self::position) and below
    /// `limit` (pass the log's `visible_end()`), or `None` for now. Seqs that
    /// were withdrawn, lost to corruption or to a missing segment are passed
    /// over: the caller sees the gap between its position and the entry.
    pub fn next(&mut self, limit: u64) -> io::Result<Option<LogEntry>> {
        if let Some(entry) = self.held.take() {
            if entry.seq >= limit {
                self.held = Some(entry);
                return Ok(None);
            }
            self.pos = entry.seq + 1;
            return Ok(Some(entry));
        }
        while self.pos < limit {
            if !self.ensure_open()? {
                return Ok(None);
            }
            let Some(open) = self.open.as_mut() else {
                return Ok(None);
            };
            let mut skipped = 0;
            let found = open.scan.next(open.bound, self.pos, &mut skipped)?;
            if skipped > 0 {
                self.index
                    .corrupt_bytes
                    .fetch_add(skipped, Ordering::Relaxed);
                tracing::warn!(topic = %self.index.topic, segment = open.base, offset = open.scan.offset(), bytes = skipped, "skipped corrupt bytes in the log");
            }
            match found {
                Some((seq, payload)) => {
                    let Some(entry) = decode_message(open.scan.payload(payload)) else {
                        continue;
                    };
                    if seq >= limit {
                        self.held = Some(entry);
                        return Ok(None);
                    }
                    self.pos = seq + 1;
                    return Ok(Some(entry));
                }
                None => {
                    // Only at the end of what it knew: the index is shared
                    // with the writer, so it is not asked per record.
                    let (this, next) = self.index.step(open.base);
                    // Retention took it out of the index: read to its end.
                    let bound = this.map_or(u64::MAX, |m| m.len);
                    if bound > open.bound {
                        open.bound = bound;
                        continue;
                    }
                    let Some(next) = next else {
                        return Ok(None);
                    };
                    let base = open.base;
                    self.open = None;
                    self.move_past(base, next.base);
                }
            }
        }
        Ok(None)
    }

    /// Opens the segment that holds the position; false when there is none.
    fn ensure_open(&mut self) -> io::Result<bool> {
        while self.open.is_none() {
            let Some(mark) = self.index.locate(self.pos) else {
                return Ok(false);
            };
            let path = segment_path(&self.index.dir, mark.base);
            match File::open(&path) {
                Ok(file) => {
                    self.open = Some(OpenSegment {
                        base: mark.base,
                        scan: Scan::new(file, self.index.max_payload),
                        bound: mark.len,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(topic = %self.index.topic, file = %path.display(), "log segment missing; skipping it");
                    let Some(next) = self.index.step(mark.base).1 else {
                        return Ok(false);
                    };
                    self.move_past(mark.base, next.base);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Moves the position to the segment after `base`.
    fn move_past(&mut self, base: u64, next: u64) {
        if self.pos < next && self.pos > base {
            tracing::warn!(topic = %self.index.topic, from = self.pos, to = next, "seqs missing between log segments (a withdrawn batch, a cut tail or a deleted segment); skipping them");
        }
        self.pos = self.pos.max(next);
    }
}
