//! A channel in log mode: a read position in its topic's log plus the
//! channel's journal, instead of a queue of its own. Every message is on disk
//! once, in the topic's log, until every channel has finished it.
//!
//! Reading goes, in order: messages back in line (requeued, timed out, due
//! after a deferral), entries already read ahead, the log's in-memory tail,
//! and, when the cursor is older than that tail, a blocking read off the
//! files that the channel runs in `spawn_blocking` ([`Cursor::refill_job`]).
//! Each entry read is asked [`Journal::classify`]: after a restart the
//! journal knows which ones were finished and which were requeued, with
//! their attempts and due times.

use crate::log::{Disposition, Journal, LogEntry, TopicLog};
use crate::message::Message;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Entries read off the cache per lock hold, and off the files per refill.
const READ_BATCH: usize = 256;
const REFILL_BATCH: usize = 1024;
/// A refill stops early past this many body bytes.
const REFILL_BYTES: usize = 4 << 20;

/// What the cursor has next.
pub(crate) enum Next {
    /// Deliver this message (seq, message with the attempts it had so far).
    Ready(u64, Message),
    /// Hold it back until `due` (Unix ns): a DPUB, or a deferral replayed
    /// after a restart.
    Deferred(u64, Message, i64),
    /// Nothing can be read now.
    Nothing,
    /// The next entries must come off the files: run the job, then
    /// [`Cursor::apply_refill`].
    Refill(RefillJob),
}

/// A blocking read of the files from the cursor's position.
pub(crate) struct RefillJob {
    log: Arc<TopicLog>,
    from: u64,
    limit: u64,
    generation: u64,
}

/// What a refill read.
pub(crate) struct Refilled {
    generation: u64,
    entries: Vec<LogEntry>,
    /// The seq after the entries, when the read ended at its limit: every
    /// seq between the last entry and this one is absent from the log.
    absent_until: Option<u64>,
    error: Option<io::Error>,
}

impl RefillJob {
    /// Reads up to a batch of entries. Blocking.
    pub(crate) fn run(self) -> Refilled {
        let mut reader = self.log.reader(self.from);
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut absent_until = None;
        let mut error = None;
        while entries.len() < REFILL_BATCH && bytes < REFILL_BYTES {
            match reader.next(self.limit) {
                Ok(Some(entry)) => {
                    bytes += entry.msg.body.len();
                    entries.push(entry);
                }
                Ok(None) => {
                    absent_until = Some(self.limit);
                    break;
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        Refilled {
            generation: self.generation,
            entries,
            absent_until,
            error,
        }
    }
}

/// The entry's message as the channel would have it, with the due time
/// (Unix ns) when it must wait; `None` when it was finished.
fn classify(
    journal: &Journal,
    entry: LogEntry,
    now_unix: i64,
) -> Option<(u64, Message, Option<i64>)> {
    let (attempts, due) = match journal.classify(entry.seq) {
        Disposition::Finished => return None,
        Disposition::Deliver { attempts, due } => (attempts, due),
    };
    let mut msg = entry.msg;
    if let Some(attempts) = attempts {
        msg.attempts = attempts;
    }
    let due = due.or(entry.deliver_at).filter(|&due| due > now_unix);
    Some((entry.seq, msg, due))
}

/// The rest of a peek: the log from `from` to `limit`, read off the cache
/// or, when older, off the files.
pub(crate) struct LogPeek {
    log: Arc<TopicLog>,
    journal: Arc<Journal>,
    from: u64,
    limit: u64,
}

impl LogPeek {
    /// Appends up to `n` more messages to `out`. Blocking.
    pub(crate) fn read(
        self,
        n: usize,
        now_unix: i64,
        keep: &dyn Fn(&Message) -> bool,
        out: &mut Vec<Message>,
    ) -> io::Result<()> {
        let start = out.len();
        let mut offer = |entry: LogEntry| {
            if let Some((_, msg, None)) = classify(&self.journal, entry, now_unix) {
                if keep(&msg) {
                    out.push(msg);
                }
            }
            out.len() - start < n
        };
        let mut from = self.from;
        let mut batch = Vec::new();
        while from < self.limit {
            batch.clear();
            match self.log.read_cached(from, READ_BATCH, &mut batch) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    for entry in batch.drain(..) {
                        if entry.seq >= self.limit {
                            return Ok(());
                        }
                        from = entry.seq + 1;
                        if !offer(entry) {
                            return Ok(());
                        }
                    }
                }
                Err(_not_cached) => {
                    let mut reader = self.log.reader(from);
                    while let Some(entry) = reader.next(self.limit)? {
                        if !offer(entry) {
                            break;
                        }
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

pub(crate) struct Cursor {
    log: Arc<TopicLog>,
    journal: Arc<Journal>,
    /// The topic's release point: seqs below it belong to the channels.
    released: Arc<AtomicU64>,
    /// The next seq to read from the log.
    next: u64,
    /// Read from the log, not yet classified.
    ahead: VecDeque<LogEntry>,
    /// Back in line, served before anything new.
    front: VecDeque<(u64, Message)>,
    refilling: bool,
    /// Bumped when the channel is emptied, so that a refill started before
    /// is dropped.
    generation: u64,
    scratch: Vec<LogEntry>,
}

impl Cursor {
    pub(crate) fn new(log: Arc<TopicLog>, journal: Arc<Journal>, released: Arc<AtomicU64>) -> Self {
        let next = journal.floor();
        Cursor {
            log,
            journal,
            released,
            next,
            ahead: VecDeque::new(),
            front: VecDeque::new(),
            refilling: false,
            generation: 0,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Seqs below this may be read: released by the topic and visible.
    fn limit(&self) -> u64 {
        self.released
            .load(Ordering::Acquire)
            .min(self.log.visible_end())
    }

    /// The seq this channel still needs from the log's cache and files.
    pub(crate) fn position(&self) -> u64 {
        self.ahead.front().map_or(self.next, |e| e.seq)
    }

    pub(crate) fn next(&mut self, now_unix: i64) -> Next {
        if let Some((seq, msg)) = self.front.pop_front() {
            return Next::Ready(seq, msg);
        }
        loop {
            while let Some(entry) = self.ahead.pop_front() {
                return match classify(&self.journal, entry, now_unix) {
                    None => continue,
                    Some((seq, msg, Some(due))) => Next::Deferred(seq, msg, due),
                    Some((seq, msg, None)) => Next::Ready(seq, msg),
                };
            }
            if self.refilling {
                return Next::Nothing;
            }
            let limit = self.limit();
            if self.next >= limit {
                return Next::Nothing;
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            let read = self.log.read_cached(self.next, READ_BATCH, &mut scratch);
            let outcome = match read {
                Ok(_) => {
                    self.take_entries(scratch.drain(..), limit, true);
                    None
                }
                Err(_not_cached) => {
                    self.refilling = true;
                    Some(Next::Refill(RefillJob {
                        log: self.log.clone(),
                        from: self.next,
                        limit,
                        generation: self.generation,
                    }))
                }
            };
            self.scratch = scratch;
            if let Some(next) = outcome {
                return next;
            }
        }
    }

    /// Appends up to `n` messages to `out` in the order [`Cursor::next`]
    /// would give them, moving nothing; passes over deferred ones and those
    /// `keep` refuses. Returns the part of the log still to read, if any.
    pub(crate) fn peek(
        &self,
        n: usize,
        now_unix: i64,
        keep: &dyn Fn(&Message) -> bool,
        out: &mut Vec<Message>,
    ) -> Option<LogPeek> {
        let start = out.len();
        let ahead = self.ahead.iter().filter_map(|entry| {
            match classify(&self.journal, entry.clone(), now_unix) {
                Some((_, msg, None)) => Some(msg),
                _ => None,
            }
        });
        let queued = self.front.iter().map(|(_, msg)| msg.clone()).chain(ahead);
        out.extend(queued.filter(|msg| keep(msg)).take(n));
        let limit = self.limit();
        (out.len() - start < n && self.next < limit).then(|| LogPeek {
            log: self.log.clone(),
            journal: self.journal.clone(),
            from: self.next,
            limit,
        })
    }

    /// Queues entries below `limit` in order, finishing the seqs the log does
    /// not have (withdrawn or lost) as the cursor passes them. With
    /// `complete`, the entries are all the log has from the cursor to
    /// `limit`, so the rest of that range is absent too.
    fn take_entries(
        &mut self,
        entries: impl Iterator<Item = LogEntry>,
        limit: u64,
        complete: bool,
    ) {
        for entry in entries {
            if entry.seq >= limit {
                break;
            }
            if entry.seq > self.next {
                self.journal.fin_range(self.next, entry.seq);
            }
            self.next = entry.seq + 1;
            self.ahead.push_back(entry);
        }
        if complete && self.ahead.is_empty() && self.next < limit {
            self.journal.fin_range(self.next, limit);
            self.next = limit;
        }
    }

    /// Takes what a refill read; `false` when it failed (try again later).
    pub(crate) fn apply_refill(&mut self, refilled: Refilled) -> bool {
        if refilled.generation != self.generation {
            return true;
        }
        self.refilling = false;
        let limit = refilled.absent_until.unwrap_or(u64::MAX);
        let got_any = !refilled.entries.is_empty();
        self.take_entries(refilled.entries.into_iter(), limit, false);
        if let Some(end) = refilled.absent_until {
            if self.next < end {
                self.journal.fin_range(self.next, end);
                self.next = end;
            }
        }
        match refilled.error {
            Some(e) => {
                tracing::error!(topic = %self.log.topic(), error = %e, "reading the topic log failed");
                got_any
            }
            None => true,
        }
    }

    /// Puts a message back in line; `record` when the journal must learn
    /// its attempts (a requeue or timeout, not a deferral falling due).
    pub(crate) fn requeue(&mut self, seq: u64, msg: Message, record: bool) {
        if record {
            self.journal.requeue(seq, msg.attempts, None);
        }
        self.front.push_back((seq, msg));
    }

    /// Records a deferral, due at `due_unix`.
    pub(crate) fn defer(&self, seq: u64, msg: &Message, due_unix: i64) {
        self.journal.requeue(seq, msg.attempts, Some(due_unix));
    }

    pub(crate) fn finish(&self, seq: u64) {
        self.journal.fin(seq);
    }

    /// Whether something can be delivered without waiting for the log.
    pub(crate) fn has_ready(&self) -> bool {
        !self.front.is_empty() || !self.ahead.is_empty()
    }

    /// Everything released so far is finished: the channel was emptied.
    pub(crate) fn empty(&mut self) {
        let upto = self.released.load(Ordering::Acquire).max(self.next);
        self.journal.empty(upto);
        self.front.clear();
        self.ahead.clear();
        self.next = upto;
        self.refilling = false;
        self.generation += 1;
    }

    /// Messages waiting: back in line, plus every seq from the first one
    /// read ahead (or the next to read) up to the limit that the journal
    /// does not know as finished. Entries read ahead are not classified yet,
    /// so after a restart some of them are finished ones: counting them by
    /// the journal, not one by one, keeps them out of the depth.
    pub(crate) fn depth(&self) -> usize {
        let from = self.position();
        let waiting = self.limit().max(self.next).saturating_sub(from);
        let finished = match waiting {
            0 => 0,
            _ => self.journal.finished_at_or_above(from).min(waiting),
        };
        self.front.len() + (waiting - finished) as usize
    }

    /// The part of the depth that is only on disk.
    pub(crate) fn disk_depth(&self) -> usize {
        self.depth() - self.front.len()
    }
}
