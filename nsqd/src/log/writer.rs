//! The node's one log writer thread: group commit for every topic log and
//! channel journal.
//!
//! A round takes every pending buffer that appends, FINs and requeues filled
//! since the last round, writes them, fsyncs what the policy asks for (once
//! per file, however many messages the round holds), and makes the messages
//! visible and wakes the publishers waiting on them: after the write, or
//! when durable only after the fsync. Whatever arrives during a round's
//! fsync is the next round's group.
//!
//! One thread does every file's fsync in turn: a round over many durable
//! topics takes as long as their fsyncs together.
//!
//! Durable rounds gather: after a round, the writer waits (at most one fsync's
//! time, and [`GATHER_MAX`]) until as many appends have arrived as the round
//! answered. Publishers that wait for their `OK` come back at once, and
//! without the wait they would split into two groups that take turns, each
//! paying an fsync (its CPU, above all) for half of them.

use super::journal::Journal;
use super::topic_log::TopicLog;
use parking_lot::{Condvar, Mutex};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a durable round waits for the publishers the previous one
/// answered.
const GATHER_MAX: Duration = Duration::from_millis(2);

/// `--sync-every` and `--sync-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct SyncPolicy {
    /// 1 (or 0) is durable: appends become visible, and `committed` returns,
    /// only after the fsync that covers them. Above 1, after the write; the
    /// writer fsyncs a log every this many messages.
    pub sync_every: u64,
    /// Longest time written data stays unsynced.
    pub sync_timeout: Duration,
}

impl SyncPolicy {
    pub fn is_durable(&self) -> bool {
        self.sync_every <= 1
    }
}

/// Where the writer thread stops for good when `NSQD_TEST_PAUSE_AT` names it
/// (`NAME`, or `NAME@N` for its `N`th time), so that a test can kill the
/// process exactly there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PausePoint {
    /// A round's batches are written, not yet synced.
    BeforeFsync,
    /// Synced; the waiters are not yet woken.
    AfterFsync,
    /// A compacted journal is in its `.tmp` file, not yet renamed.
    CompactionWritten,
    /// Renamed over the journal; the directory is not yet synced.
    CompactionRenamed,
    /// Dead letters are fsynced in their file; the journal does not yet
    /// know their messages finished (on the dead-letter writer's thread).
    DeadLettersSynced,
    /// A promotion's batch is on disk in the local topic; `origin.json`
    /// does not yet say it was adopted (on the promoting thread).
    PromotionBatchAdopted,
}

impl PausePoint {
    const ALL: [(PausePoint, &'static str); 6] = [
        (PausePoint::BeforeFsync, "before_fsync"),
        (PausePoint::AfterFsync, "after_fsync"),
        (PausePoint::CompactionWritten, "compaction_written"),
        (PausePoint::CompactionRenamed, "compaction_renamed"),
        (PausePoint::DeadLettersSynced, "dead_letters_synced"),
        (PausePoint::PromotionBatchAdopted, "promotion_batch_adopted"),
    ];

    pub fn parse(name: &str) -> Option<PausePoint> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == name.trim())
            .map(|(p, _)| *p)
    }

    /// The only environment read of the engine, once per writer: the
    /// point, and how many times to pass it first.
    fn from_env() -> Option<(PausePoint, u64)> {
        let value = std::env::var("NSQD_TEST_PAUSE_AT").ok()?;
        let (name, nth) = match value.split_once('@') {
            Some((name, n)) => (name, n.trim().parse::<u64>().ok().filter(|&n| n > 0)),
            None => (value.as_str(), Some(1)),
        };
        let point = PausePoint::parse(name).zip(nth);
        if point.is_none() {
            tracing::warn!(value, "unknown NSQD_TEST_PAUSE_AT point; ignoring it");
        }
        point.map(|(p, n)| (p, n - 1))
    }
}

/// A slow disk for the tests: `NSQD_TEST_FSYNC_DELAY_MS` makes every fsync
/// that much longer, the log writer's and the disk queues' syncer's alike.
pub(crate) fn fsync_delay_from_env() -> Option<Duration> {
    let value = std::env::var("NSQD_TEST_FSYNC_DELAY_MS").ok()?;
    match value.trim().parse::<u64>() {
        Ok(ms) => Some(Duration::from_millis(ms)),
        Err(_) => {
            tracing::warn!(
                value,
                "NSQD_TEST_FSYNC_DELAY_MS is not a number; ignoring it"
            );
            None
        }
    }
}

impl fmt::Display for PausePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(p, _)| p == self)
            .map_or("?", |(_, n)| n);
        f.write_str(name)
    }
}

/// The file operations every log and journal does through the writer: the
/// fsync counter, and the hooks of the tests: write errors, and a slow disk
/// (`NSQD_TEST_FSYNC_DELAY_MS`, read once per writer: each fsync of a file
/// takes that much longer).
#[derive(Default)]
pub(super) struct Io {
    fsyncs: AtomicU64,
    fsync_delay: Option<Duration>,
    /// Successful writes left before an injected ENOSPC; negative when off.
    #[cfg(test)]
    fail_after: std::sync::atomic::AtomicI64,
}

impl Io {
    pub(super) fn sync_file(&self, file: &File) -> io::Result<()> {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        if let Some(delay) = self.fsync_delay {
            std::thread::sleep(delay);
        }
        file.sync_data()
    }

    pub(super) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        File::open(dir)?.sync_all()
    }

    #[cfg(not(test))]
    pub(super) fn before_write(&self) -> io::Result<()> {
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn before_write(&self) -> io::Result<()> {
        match self.fail_after.fetch_sub(1, Ordering::SeqCst) {
            0 => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected ENOSPC",
            )),
            n if n < 0 => {
                self.fail_after.store(-1, Ordering::SeqCst);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A file's writes that are not yet fsynced: since when, and whether the
/// writer thread keeps the file in its list of deadlines.
#[derive(Default)]
pub(super) struct Unsynced {
    pub(super) since: Option<Instant>,
    listed: bool,
}

impl Unsynced {
    /// True the first time the file owes an fsync: the writer lists it.
    pub(super) fn list(&mut self) -> bool {
        let list = self.since.is_some() && !self.listed;
        self.listed |= list;
        list
    }

    /// False, and unlisted, once the file owes none.
    pub(super) fn keep_listed(&mut self) -> bool {
        self.listed = self.since.is_some();
        self.listed
    }
}

enum Stop {
    /// Shutdown: write and fsync everything, then stop.
    Flush,
    /// Dropped without shutdown: stop as a crash would.
    Abandon,
}

#[derive(Default)]
struct Queue {
    logs: Vec<Arc<TopicLog>>,
    journals: Vec<Arc<Journal>>,
    stop: Option<Stop>,
    flush_requested: u64,
    flush_done: u64,
}

impl Queue {
    fn has_work(&self) -> bool {
        !self.logs.is_empty()
            || !self.journals.is_empty()
            || self.stop.is_some()
            || self.flush_requested > self.flush_done
    }
}

/// What logs and journals share with the writer thread.
pub(super) struct Shared {
    pub(super) policy: SyncPolicy,
    pub(super) io: Io,
    queue: Mutex<Queue>,
    wake: Condvar,
    flushed: Condvar,
    stopped: AtomicBool,
    /// Appends ever made, and the count at which the gathering writer wants
    /// waking (0: at any append, `u64::MAX`: not waiting).
    arrivals: AtomicU64,
    wake_at: AtomicU64,
    pause_at: Option<PausePoint>,
    /// Times `pause_at` is still passed before the writer stops there.
    pause_skips: AtomicU64,
    /// Counts the rounds that wrote some log: replication links ship what
    /// such a round took, in one frame, while its fsync runs.
    written: tokio::sync::watch::Sender<u64>,
    /// Held by a test to let several appends land in one round.
    #[cfg(test)]
    gate: Mutex<()>,
}

impl Shared {
    /// A round wrote some log: tells replication links, if there are any.
    fn rounds_written(&self) {
        if self.written.receiver_count() > 0 {
            self.written.send_modify(|n| *n += 1);
        }
    }

    /// True once the thread is gone: nothing appended will be written.
    pub(super) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Queues a log for the next round. `arrivals` is the count after the
    /// append that scheduled it (`u64::MAX` wakes the writer in any case).
    pub(super) fn schedule_log(&self, log: Arc<TopicLog>, arrivals: u64) {
        let mut queue = self.queue.lock();
        if self.stopped() {
            drop(queue);
            log.wake();
            return;
        }
        queue.logs.push(log);
        let wake = arrivals >= self.wake_at.load(Ordering::SeqCst);
        drop(queue);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Counts an append; returns the count for [`Shared::schedule_log`]
    /// or [`Shared::arrived`].
    pub(super) fn count_arrival(&self) -> u64 {
        self.arrivals.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// An append to a log already queued: wakes the writer if it waits for
    /// this many.
    pub(super) fn arrived(&self, arrivals: u64) {
        // The writer stores `wake_at` before it reads `arrivals`, both under
        // the queue lock: one side sees the other's write, and the lock makes
        // the writer be in its wait before the notify.
        if arrivals >= self.wake_at.load(Ordering::SeqCst) {
            drop(self.queue.lock());
            self.wake.notify_one();
        }
    }

    pub(super) fn schedule_journal(&self, journal: Arc<Journal>) {
        let mut queue = self.queue.lock();
        if !self.stopped() {
            queue.journals.push(journal);
            drop(queue);
            self.wake.notify_one();
        }
    }

    pub(super) fn fsyncs(&self) -> u64 {
        self.io.fsyncs.load(Ordering::Relaxed)
    }

    pub(super) fn pause(&self, point: PausePoint) {
        if self.pause_at == Some(point)
            && self
                .pause_skips
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_err()
        {
            eprintln!("nsqd test pause at {point}");
            loop {
                std::thread::park();
            }
        }
    }
}

/// Node-wide: owns the writer thread. Created once by the node, shut down
/// last. Dropping it without [`shutdown`](Self::shutdown) stops the thread
/// as a crash would: what is not yet written is lost, which recovery is
/// built for (and what the crash tests rely on).
pub struct LogWriter {
    pub(super) shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LogWriter {
    pub fn start(policy: SyncPolicy) -> io::Result<LogWriter> {
        Self::start_with(policy, fsync_delay_from_env())
    }

    /// A writer whose every fsync takes `delay` longer: a slow disk.
    #[cfg(test)]
    pub(super) fn start_slow(policy: SyncPolicy, delay: Duration) -> io::Result<LogWriter> {
        Self::start_with(policy, Some(delay))
    }

    fn start_with(policy: SyncPolicy, fsync_delay: Option<Duration>) -> io::Result<LogWriter> {
        let pause = PausePoint::from_env();
        let shared = Arc::new(Shared {
            policy,
            io: Io {
                fsync_delay,
                #[cfg(test)]
                fail_after: std::sync::atomic::AtomicI64::new(-1),
                ..Io::default()
            },
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            flushed: Condvar::new(),
            stopped: AtomicBool::new(false),
            arrivals: AtomicU64::new(0),
            wake_at: AtomicU64::new(0),
            pause_at: pause.map(|(point, _)| point),
            pause_skips: AtomicU64::new(pause.map_or(0, |(_, skips)| skips)),
            written: tokio::sync::watch::Sender::new(0),
            #[cfg(test)]
            gate: Mutex::new(()),
        });
        let mut rounds = Rounds::new(shared.clone());
        let thread = std::thread::Builder::new()
            .name("nsqd-log-writer".into())
            .spawn(move || rounds.run())?;
        Ok(LogWriter {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Changes each time a round has written records to some log (before
    /// its fsync).
    pub fn written(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.written.subscribe()
    }

    /// Writes and fsyncs everything pending, then stops the thread. Appends
    /// after this fail their `committed`. Blocking.
    pub fn shutdown(&self) {
        self.stop(Stop::Flush);
    }

    /// Stops the calling thread for good at `point` when the tests asked
    /// for it (`NSQD_TEST_PAUSE_AT`): for moments outside the writer.
    pub fn pause(&self, point: PausePoint) {
        self.shared.pause(point);
    }

    /// Writes and fsyncs everything pending now, and waits for it. Blocking.
    pub fn flush(&self) {
        let mut queue = self.shared.queue.lock();
        queue.flush_requested += 1;
        let target = queue.flush_requested;
        self.shared.wake.notify_one();
        while queue.flush_done < target && !self.shared.stopped() {
            self.shared.flushed.wait(&mut queue);
        }
    }

    /// fsyncs of files and directories since start.
    pub fn fsyncs(&self) -> u64 {
        self.shared.fsyncs()
    }

    fn stop(&self, how: Stop) {
        self.shared.queue.lock().stop.get_or_insert(how);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.lock().take() {
            // A panic was logged by the thread itself.
            let _ = thread.join();
        }
    }

    /// The write after `n` more successful ones fails with ENOSPC.
    #[cfg(test)]
    pub(super) fn fail_write_after(&self, n: i64) {
        self.shared.io.fail_after.store(n, Ordering::SeqCst);
    }

    /// While the guard lives no round starts, so that work queued meanwhile
    /// lands in one round.
    #[cfg(test)]
    pub(super) fn hold_rounds(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.shared.gate.lock()
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.stop(Stop::Abandon);
    }
}

/// The writer thread's own state.
struct Rounds {
    shared: Arc<Shared>,
    logs: Vec<Arc<TopicLog>>,
    journals: Vec<Arc<Journal>>,
    /// Written but not yet synced (never empty-handed in durable mode
    /// unless an fsync failed); their deadlines wake the thread.
    unsynced_logs: Vec<Arc<TopicLog>>,
    unsynced_journals: Vec<Arc<Journal>>,
    batches: Vec<Option<super::topic_log::Batch>>,
    /// After a durable round: the arrival count to wait for, and until when.
    gather: Option<(u64, Instant)>,
}

impl Rounds {
    fn new(shared: Arc<Shared>) -> Self {
        Rounds {
            shared,
            logs: Vec::new(),
            journals: Vec::new(),
            unsynced_logs: Vec::new(),
            unsynced_journals: Vec::new(),
            batches: Vec::new(),
            gather: None,
        }
    }

    fn run(&mut self) {
        loop {
            let (stop, flush_to) = self.wait_for_work();
            if matches!(stop, Some(Stop::Abandon)) {
                break;
            }
            let flush = stop.is_some() || flush_to.is_some();
            self.round(flush);
            if let Some(target) = flush_to {
                let mut queue = self.shared.queue.lock();
                queue.flush_done = queue.flush_done.max(target);
                self.shared.flushed.notify_all();
            }
            if stop.is_some() {
                break;
            }
        }
    }

    /// Sleeps until something is queued or an unsynced file's deadline, then
    /// takes the queue; after a durable round, first gathers its publishers
    /// (see the module doc). Returns the stop request and the flush to confirm.
    fn wait_for_work(&mut self) -> (Option<Stop>, Option<u64>) {
        let shared = &self.shared;
        let mut queue = shared.queue.lock();
        loop {
            let now = Instant::now();
            let due = self.deadline();
            let urgent = queue.stop.is_some() || queue.flush_requested > queue.flush_done;
            if urgent || due.is_some_and(|at| at <= now) {
                break;
            }
            let gathering = match self.gather {
                Some((target, until)) if now < until => {
                    shared.wake_at.store(target, Ordering::SeqCst);
                    shared.arrivals.load(Ordering::SeqCst) < target
                }
                _ => false,
            };
            let until = match gathering {
                true => self.gather.map(|(_, until)| until),
                false => {
                    self.gather = None;
                    shared.wake_at.store(0, Ordering::SeqCst);
                    if queue.has_work() {
                        break;
                    }
                    None
                }
            };
            match until.into_iter().chain(due).min() {
                Some(at) => {
                    shared.wake.wait_until(&mut queue, at);
                }
                None => shared.wake.wait(&mut queue),
            }
        }
        shared.wake_at.store(u64::MAX, Ordering::SeqCst);
        self.gather = None;
        #[cfg(test)]
        let mut queue = {
            drop(queue);
            let _held = shared.gate.lock();
            shared.queue.lock()
        };
        std::mem::swap(&mut self.logs, &mut queue.logs);
        std::mem::swap(&mut self.journals, &mut queue.journals);
        let flush_to = (queue.flush_requested > queue.flush_done).then_some(queue.flush_requested);
        (queue.stop.take(), flush_to)
    }

    fn deadline(&self) -> Option<Instant> {
        let logs = self.unsynced_logs.iter().filter_map(|l| l.sync_deadline());
        let journals = self
            .unsynced_journals
            .iter()
            .filter_map(|j| j.sync_deadline());
        logs.chain(journals).min()
    }

    fn round(&mut self, flush: bool) {
        let now = Instant::now();
        // Files that owe an fsync by now join the round.
        for log in &self.unsynced_logs {
            if flush || log.sync_deadline().is_some_and(|at| at <= now) {
                self.logs.push(log.clone());
            }
        }
        for journal in &self.unsynced_journals {
            if flush || journal.sync_deadline().is_some_and(|at| at <= now) {
                self.journals.push(journal.clone());
            }
        }
        // Journals are written (and fsynced, below) before logs: see the
        // fsyncs below for why.
        let mut wrote = false;
        for journal in &self.journals {
            wrote |= journal.write_pending(now);
        }
        self.batches.clear();
        self.batches
            .extend(self.logs.iter().map(|log| log.write_pending()));
        let logs_wrote = self.batches.iter().flatten().any(|b| !b.failed);
        if logs_wrote {
            self.shared.rounds_written();
        }
        wrote |= logs_wrote;
        if wrote {
            self.shared.pause(PausePoint::BeforeFsync);
        }
        let durable = self.shared.policy.is_durable();
        if !durable {
            // Visible once written: no need to wait for this round's fsyncs.
            for (log, batch) in self.logs.iter().zip(&self.batches) {
                log.publish(batch.as_ref());
            }
        }
        // Journals before logs: a promotion records its adopted messages'
        // states in journals ahead of the messages, so that a crash between
        // the two fsyncs leaves states for seqs that do not exist (passed
        // over) rather than messages without their states (delivered to
        // channels that had finished them). Normal traffic does not care:
        // a journal names only seqs already visible, so already synced.
        for journal in &self.journals {
            journal.sync_if_due(now, flush);
        }
        let syncing = Instant::now();
        for (log, batch) in self.logs.iter().zip(&mut self.batches) {
            log.sync_if_due(batch.as_mut(), now, flush);
        }
        let sync_time = syncing.elapsed();
        if wrote {
            self.shared.pause(PausePoint::AfterFsync);
        }
        for (log, batch) in self.logs.iter().zip(&self.batches) {
            log.publish(batch.as_ref().filter(|_| durable));
            log.retire();
        }
        if logs_wrote && durable {
            // Links hold back what runs too far past the fsynced end: they
            // may ship more now.
            self.shared.rounds_written();
        }
        let answered: u64 = self.batches.iter().flatten().map(|b| b.appends).sum();
        if durable && answered > 0 {
            let target = self.shared.arrivals.load(Ordering::SeqCst) + answered;
            self.gather = Some((target, Instant::now() + sync_time.min(GATHER_MAX)));
        }
        for journal in &self.journals {
            journal.compact_if_large();
        }
        for log in self.logs.drain(..) {
            if log.list_if_unsynced() {
                self.unsynced_logs.push(log);
            }
        }
        for journal in self.journals.drain(..) {
            if journal.list_if_unsynced() {
                self.unsynced_journals.push(journal);
            }
        }
        self.unsynced_logs.retain(|log| log.keep_listed());
        self.unsynced_journals
            .retain(|journal| journal.keep_listed());
    }
}

/// The thread ends, also by a panic: mark the writer stopped and wake whoever
/// waits on work it will never do, so that they get errors, not a hang.
impl Drop for Rounds {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the log writer thread panicked; appends will fail");
        }
        let mut queue = self.shared.queue.lock();
        self.shared.stopped.store(true, Ordering::Release);
        let queued = std::mem::take(&mut queue.logs);
        queue.journals.clear();
        self.shared.flushed.notify_all();
        drop(queue);
        for log in queued.iter().chain(&self.logs) {
            log.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_points_parse_by_name() {
        for (point, name) in PausePoint::ALL {
            assert_eq!(PausePoint::parse(name), Some(point));
            assert_eq!(point.to_string(), name);
        }
        assert_eq!(
            PausePoint::parse(" after_fsync\n"),
            Some(PausePoint::AfterFsync)
        );
        assert_eq!(PausePoint::parse("after-fsync"), None);
        assert_eq!(PausePoint::parse(""), None);
    }

    #[test]
    fn policy_is_durable_only_when_every_message_is_synced() {
        let policy = |sync_every| SyncPolicy {
            sync_every,
            sync_timeout: Duration::from_secs(2),
        };
        assert!(policy(1).is_durable());
        assert!(!policy(2500).is_durable());
    }
}
