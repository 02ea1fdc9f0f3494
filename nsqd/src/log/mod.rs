//! The durable log: each topic's messages appended once to segment files,
//! channels as cursors over them with a small journal of what they finished.
//! This is the storage engine only; topics and channels use it in log mode
//! (`--mem-queue-size=0`, non-ephemeral), durably with `--sync-every=1`.
//!
//! # Files
//!
//! For topic `T` in data dir `D`:
//! * `D/T.log/<base_seq:020>.seg`: segments. One holds records with seqs from
//!   `base_seq` up; a new one starts before a record would take the current
//!   one past `max_bytes_per_file` (a larger record gets one of its own).
//! * `D/T.log/<channel>.journal`: a channel's snapshot followed by deltas.
//! * `D/T.log/topic.meta`: [`TopicMeta`], replaced atomically.
//!
//! # Records
//!
//! `[len: u32 BE][crc32c(payload): u32 BE][payload]`, as in the disk queue;
//! payloads are big-endian and start with a kind byte:
//! * message (2): `[seq: u64][id: u64][timestamp: i64][attempts: u16][deliver_at: i64][body]`
//!   (`deliver_at` Unix ns, 0 when not deferred);
//! * Fin (3) `[start][end]`: seqs `[start, end)` are finished;
//! * Requeue (4) `[seq][attempts: u16][due: i64]`: the latest for a seq wins;
//! * Empty (5) `[upto]`: everything below `upto` is finished;
//! * Snapshot (6) `[floor][n: u32][(start, end)]*n[m: u32][(seq, attempts, due)]*m`,
//!   only first in a journal;
//! * topic meta (7).
//!
//! # Seqs and guarantees
//!
//! Every message gets a `seq`, dense and increasing from 0 and never reused
//! (a journal that knows higher seqs than a log that lost its unsynced tail
//! raises the log's end when it opens). [`TopicLog::append`] only encodes
//! into memory; the [`LogWriter`] thread writes each round's batch, fsyncs it
//! when the [`SyncPolicy`] asks (every round when durable: group commit), and
//! then publishes [`TopicLog::visible_end`]. [`TopicLog::committed`] returns
//! once that covers the append; nothing it confirmed in durable mode is lost
//! in a crash. A batch whose write (or durable fsync) fails is *withdrawn*:
//! the file is cut back, its appends fail, its seqs never become visible, and
//! later appends keep their own, higher seqs.
//!
//! # Channels
//!
//! A channel is a cursor over its topic's log plus a [`Journal`]. Opening a
//! journal for a new channel takes the seq it starts at (the log's
//! `end_seq()`). After a restart the channel replays from
//! [`Journal::floor`] with a [`LogReader`] (in `spawn_blocking`), asking
//! [`Journal::classify`] about each entry: `Finished` is skipped, `Deliver`
//! goes out with the requeue's attempts and due time when it has them, else
//! the entry's own. Once caught up it reads the tail cache
//! ([`TopicLog::read_cached`], a reader again on `NotCached`) and waits with
//! [`TopicLog::wait_visible`].
//!
//! Reads pass over seqs that are not there: a withdrawn batch, records lost
//! to corruption, a missing segment. A channel sees that as a gap between its
//! cursor and the entry it got, or as a read that returns nothing although
//! its cursor is below the `limit` it passed (every seq in between is absent
//! then). It **must FIN such skipped ranges** ([`Journal::fin_range`]) as it
//! moves its cursor past them; otherwise the floor stays below the gap for
//! good and every restart replays from there.
//!
//! Segments go once every channel is past them: the integrator calls
//! [`TopicLog::retain_from`] with the lowest floor (and the topic's backlog
//! floor while it has no channels), and [`TopicLog::trim_cache_below`] with
//! the lowest cursor.
//!
//! # Replicas
//!
//! A peer keeps its copy of another node's topic as a log and journals of
//! its own, with the origin's seqs (docs/replication-design.md). The origin
//! ships records as its log stores them ([`TopicLog::encode_cached`], pending
//! ones included) and its channels' changes as journal records
//! ([`Journal::take_tap`]: deltas, or a snapshot when the tap overflowed).
//! The replica appends the records as they are ([`TopicLog::append_encoded`],
//! gaps allowed, [`TopicLog::skip_to`] for seqs it will never get) and
//! applies the changes ([`Journal::apply_records`], [`Journal::replace`]).
//!
//! # Locks and blocking
//!
//! Appends, FINs, requeues, cache reads, `committed` and `wait_visible` take
//! only short internal locks and never call out, so callers may hold their
//! own locks around them. Opening, deleting, `topic.meta`, `LogReader::next`
//! and `LogWriter::{flush, shutdown}` do I/O or wait for the writer: run them
//! in `spawn_blocking`. One `TopicLog` per topic and one `Journal` per channel
//! in a process; delete a topic's journals before the log. The `LogWriter`
//! is shut down last; dropping it without `shutdown` is a crash.

mod acks;
mod journal;
mod meta;
mod reader;
mod record;
mod segment;
mod topic_log;
mod writer;

pub use acks::Disposition;
pub use journal::Journal;
pub use meta::TopicMeta;
pub use record::LogEntry;
pub use topic_log::{LogConfig, TopicLog};
pub(crate) use writer::fsync_delay_from_env;
pub use writer::{LogWriter, PausePoint, SyncPolicy};

/// `read_cached` was asked for seqs the tail cache no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("seq is older than the tail cache; read it from disk")]
pub struct NotCached;

/// Topic and channel names that may become file names: `[.a-zA-Z0-9_-]{1,64}`.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A directory for one test, removed when dropped, also when the test fails.
#[cfg(test)]
pub(crate) struct TempDir(std::path::PathBuf);

#[cfg(test)]
impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("nsqd-log-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Per-call CPU time of the calling thread (Linux schedstat; wall time where
/// that is missing), and per-call wall time, of `n` calls made by `f`. CPU
/// time, so that a loaded machine's waiting does not count.
#[cfg(test)]
pub(crate) fn cost_of(n: u32, f: impl FnOnce()) -> (std::time::Duration, std::time::Duration) {
    let thread_cpu = || {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map(std::time::Duration::from_nanos)
    };
    let (wall, cpu) = (std::time::Instant::now(), thread_cpu());
    f();
    let wall = wall.elapsed();
    let cpu = thread_cpu()
        .zip(cpu)
        .map_or(wall, |(after, before)| after - before);
    (cpu / n, wall / n)
}
