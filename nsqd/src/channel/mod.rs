//! A channel: one copy of a topic's stream, shared by competing consumers.
//!
//! All state sits behind one short-held lock per channel, so channels never
//! contend with each other. Timeouts and deferrals are exact: a per-channel
//! timer task sleeps until the earliest deadline instead of scanning.

mod cursor;
mod dead;
mod in_flight;
mod lifecycle;
mod state;
mod timer;

use crate::client_conn::ClientConn;
use crate::diskqueue::{self, DiskConfig, DiskQueue};
use crate::e2e::E2eLatency;
use crate::guid::unix_nanos;
use crate::log::{Journal, LogWriter, TopicLog};
use crate::message::Message;
use crate::pump::Handed;
use crate::queue::{instant_to_unix, Backend, BoundedQueue, Item};
use cursor::{Cursor, Next};
use dead::{DeadLetters, REVIVED};
use in_flight::InFlightTable;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use state::{InFlight, Queue, State};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a FIN, REQ or TOUCH failed; the text follows upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InFlightError {
    #[error("ID not in flight")]
    NotInFlight,
    #[error("client does not own message")]
    NotOwner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("exiting")]
    Exiting,
    #[error("too many consumers")]
    TooManyConsumers,
}

/// Limits and settings a channel takes from the node's options.
#[derive(Clone)]
pub struct ChannelConfig {
    pub mem_queue_size: usize,
    pub max_msg_timeout: Duration,
    pub max_channel_consumers: usize,
    pub e2e_percentiles: Arc<[f64]>,
    pub e2e_window: Duration,
    pub disk: DiskConfig,
    /// The log writer, in log mode (`--mem-queue-size=0`): non-ephemeral
    /// topics keep their messages in a log, channels read it as cursors.
    pub log_writer: Option<Arc<LogWriter>>,
    /// `--max-attempts`: deliveries before a message becomes a dead letter
    /// (0: no limit), unless the channel sets its own.
    pub max_attempts: u16,
    /// `--msg-ttl`: age past which a message is not delivered but becomes a
    /// dead letter (zero: none), unless the channel sets its own.
    pub msg_ttl: Duration,
    /// `--replicate-to` is set: a log that reopens skips
    /// [`crate::replication::SHIP_WINDOW`] seqs, which peers may hold from
    /// before a crash.
    pub replicated: bool,
}

/// A channel's own dead-letter settings (`/channel/config`), kept in the
/// node's metadata; `None` takes the node's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub max_attempts: Option<u16>,
    pub msg_ttl: Option<Duration>,
}

impl ChannelConfig {
    /// Whether a topic of this name keeps its messages in a log.
    pub fn log_mode(&self, topic: &str) -> bool {
        self.log_writer.is_some() && !nsq::protocol::is_ephemeral(topic)
    }
}

/// Where a log-mode channel reads: its topic's log and release point.
pub struct LogSource {
    pub log: Arc<TopicLog>,
    pub released: Arc<AtomicU64>,
    /// Runs of seqs moved from each channel's disk queue into the new log:
    /// a channel's new journal skips the runs of the others.
    pub imported: BTreeMap<String, std::ops::Range<u64>>,
    /// Seqs a replicated topic passed over at its opening (they may have
    /// reached a peer before a crash): every channel finishes them.
    pub skipped: Option<std::ops::Range<u64>>,
}

/// Consumers a publish tries to hand its messages to before it wakes the pumps.
const HAND_OVER_TRIES: usize = 4;

/// Rounds of shares one offer hands out before it leaves the rest to the
/// pumps.
const HAND_OVER_ROUNDS: usize = 4;

/// Messages an ephemeral topic or channel keeps in memory in log mode.
const EPHEMERAL_LOG_MODE_CAPACITY: usize = 10_000;

/// Opens the backend of a topic or channel and takes back the messages it
/// held in memory at the last shutdown.
pub fn open_backend(
    name: &str,
    config: &ChannelConfig,
) -> std::io::Result<(BoundedQueue, Vec<diskqueue::Stored>)> {
    if nsq::protocol::is_ephemeral(name) {
        // In log mode (`--mem-queue-size=0`) an ephemeral queue still holds
        // what a consumer has not taken yet, up to upstream's default size.
        let capacity = match config.mem_queue_size {
            0 => EPHEMERAL_LOG_MODE_CAPACITY,
            n => n,
        };
        return Ok((
            BoundedQueue::new(capacity, Backend::Discard { dropped: 0 }),
            Vec::new(),
        ));
    }
    let disk = DiskQueue::open(name, config.disk.clone())?;
    let front = diskqueue::take_front(&config.disk.dir, name, config.disk.max_msg_size)?;
    Ok((
        BoundedQueue::new(config.mem_queue_size, Backend::Disk(Box::new(disk))),
        front,
    ))
}

pub struct Channel {
    pub name: String,
    pub topic_name: String,
    pub ephemeral: bool,
    /// A cursor over the topic's log (log mode), not a queue of its own.
    cursor: bool,
    me: Weak<Channel>,
    config: ChannelConfig,
    state: Mutex<State>,
    /// Wakes message pumps: messages arrived, or the channel was unpaused.
    available: Notify,
    /// Wakes the timer task for a deadline earlier than its sleep.
    timer: Notify,
    exit: CancellationToken,
    paused: AtomicBool,
    message_count: AtomicU64,
    /// Which consumer a publish offers its messages to first.
    turn: AtomicUsize,
    requeue_count: AtomicU64,
    timeout_count: AtomicU64,
    expired_count: AtomicU64,
    dead: Arc<DeadLetters>,
    overrides: Mutex<Overrides>,
    /// The settings in force, read by every `take`.
    max_attempts: AtomicU32,
    msg_ttl_ns: AtomicU64,
}

impl Channel {
    /// Creates the channel (restoring what it had on disk) and starts its
    /// timer task on the current runtime. With a `source` (a log-mode topic
    /// and a durable channel), the channel is a cursor over the topic's log
    /// and opens its journal; a new one starts at the topic's release point.
    /// Blocking when it opens a journal or a disk queue.
    pub fn new(
        topic_name: &str,
        name: &str,
        config: ChannelConfig,
        source: Option<&LogSource>,
    ) -> std::io::Result<Arc<Self>> {
        let ephemeral = nsq::protocol::is_ephemeral(name);
        let e2e = (!config.e2e_percentiles.is_empty()).then(|| E2eLatency::new(config.e2e_window));
        let dead_dir = (!ephemeral).then_some(config.disk.dir.as_path());
        let (dead, revived) =
            DeadLetters::open(topic_name, name, dead_dir, config.disk.max_msg_size)?;
        let mut state = State {
            revived: Default::default(),
            dead: dead.clone(),
            queue: Queue::Memory(BoundedQueue::new(0, Backend::Discard { dropped: 0 })),
            in_flight: InFlightTable::default(),
            timeouts: BinaryHeap::new(),
            deferred: BinaryHeap::new(),
            deferred_order: 0,
            clients: FxHashMap::default(),
            timer_wake: None,
            e2e,
            exiting: false,
        };
        match (source, &config.log_writer) {
            (Some(source), Some(writer)) if !ephemeral => {
                let start = source.released.load(Ordering::Acquire);
                let journal = Journal::open(writer, &source.log, name, start)?;
                for (other, run) in &source.imported {
                    if other != name && run.start >= start {
                        journal.fin_range(run.start, run.end);
                    }
                }
                if let Some(skipped) = &source.skipped {
                    journal.fin_range(skipped.start, skipped.end);
                }
                state.queue = Queue::Log(Box::new(Cursor::new(
                    source.log.clone(),
                    journal,
                    source.released.clone(),
                )));
            }
            _ => {
                let (mut queue, front) = open_backend(&format!("{topic_name}:{name}"), &config)?;
                for stored in front.into_iter().rev() {
                    match Item::from_stored(stored) {
                        Item::Deferred(msg, due) => {
                            state.defer(0, msg, due);
                        }
                        item => queue.push_front(item),
                    }
                }
                state.queue = Queue::Memory(queue);
            }
        }
        let now = unix_nanos();
        for entry in revived {
            match entry.due {
                due if due > now => {
                    state.defer(entry.seq, entry.msg, crate::queue::unix_to_instant(due));
                }
                _ => state.revived.push_back((entry.seq, entry.msg)),
            }
        }
        let cursor = matches!(state.queue, Queue::Log(_));
        let max_attempts = AtomicU32::new(config.max_attempts.into());
        let msg_ttl_ns = AtomicU64::new(config.msg_ttl.as_nanos() as u64);
        let channel = Arc::new_cyclic(|me| Channel {
            name: name.to_string(),
            topic_name: topic_name.to_string(),
            ephemeral,
            cursor,
            me: me.clone(),
            state: Mutex::new(state),
            config,
            available: Notify::new(),
            timer: Notify::new(),
            exit: CancellationToken::new(),
            paused: AtomicBool::new(false),
            message_count: AtomicU64::new(0),
            turn: AtomicUsize::new(0),
            requeue_count: AtomicU64::new(0),
            timeout_count: AtomicU64::new(0),
            expired_count: AtomicU64::new(0),
            dead,
            overrides: Mutex::new(Overrides::default()),
            max_attempts,
            msg_ttl_ns,
        });
        tokio::spawn(channel.clone().run_timer());
        Ok(channel)
    }

    /// Whether the channel reads its topic's log (rather than taking copies).
    pub fn is_cursor(&self) -> bool {
        self.cursor
    }

    /// Queues messages copied from the topic (channels that are not cursors).
    /// `true` when the queue was empty: the caller then calls
    /// [`Channel::offer`], once it holds no lock.
    pub fn put(&self, item: Item) -> std::io::Result<bool> {
        self.message_count
            .fetch_add(item.len() as u64, Ordering::Relaxed);
        let mut st = self.state.lock();
        match item {
            Item::Deferred(msg, due) => {
                if st.defer(0, msg, due) {
                    drop(st);
                    self.timer.notify_one();
                }
                Ok(false)
            }
            item => {
                let Queue::Memory(queue) = &mut st.queue else {
                    unreachable!("the topic copies only into channels with a queue");
                };
                let was_empty = queue.is_empty();
                queue.push(item)?;
                Ok(was_empty)
            }
        }
    }

    /// Hands what the queue (or the log, for a cursor) holds straight to
    /// consumers that wait for messages ([`crate::pump::deliver_now`]), and
    /// wakes the pumps when they did not take it all. `count`: how many
    /// messages just came; the consumers tried take turns, each at most its
    /// share of them, so that a batch is spread as competing pumps would
    /// spread it. When they took all their shares and more is there (a
    /// cursor's watcher fell behind the log, or more came meanwhile), they
    /// share that in another round, rather than one of them taking it all.
    pub fn offer(&self, count: usize) {
        let mut consumers: [Option<Arc<ClientConn>>; HAND_OVER_TRIES] = Default::default();
        let mut count = count;
        {
            let st = self.state.lock();
            // A cursor's `count` is what the log's watcher saw become
            // visible; more may be readable already.
            if self.cursor {
                count = count.max(st.depth());
            }
            if !st.clients.is_empty() {
                let start = self.turn.fetch_add(1, Ordering::Relaxed) % st.clients.len();
                let turn = st.clients.values().cycle().skip(start);
                for (slot, client) in consumers.iter_mut().zip(turn.take(st.clients.len())) {
                    *slot = Some(client.clone());
                }
            }
        }
        for _ in 0..HAND_OVER_ROUNDS {
            let left = consumers.iter().flatten().count();
            let share = count.div_ceil(left.max(1)).max(1);
            let mut more = false;
            for slot in consumers.iter_mut() {
                let Some(client) = slot else { continue };
                match crate::pump::deliver_now(client, self, share) {
                    // A take that stops short of its limit: nothing is left.
                    Some(Handed::All) => return,
                    Some(Handed::Share) => more = true,
                    // No room or no budget left: its pump takes the rest.
                    Some(Handed::Full) | None => *slot = None,
                }
            }
            if !more {
                break;
            }
            count = self.state.lock().depth();
            if count == 0 {
                return;
            }
        }
        self.available.notify_waiters();
    }

    /// Counts messages the topic released to this cursor; `wake` its
    /// consumers when they may be readable already.
    pub fn released(&self, count: u64, wake: bool) {
        if !self.cursor {
            return;
        }
        self.message_count.fetch_add(count, Ordering::Relaxed);
        if wake {
            self.available.notify_waiters();
        }
    }

    /// The topic was emptied: seqs `[start, end)` are not this cursor's.
    pub fn skip_log_range(&self, start: u64, end: u64) {
        if let Queue::Log(cursor) = &self.state.lock().queue {
            cursor.journal().fin_range(start, end);
        }
    }

    /// The journal of a cursor channel, for replication.
    pub fn journal(&self) -> Option<Arc<Journal>> {
        match &self.state.lock().queue {
            Queue::Memory(_) => None,
            Queue::Log(cursor) => Some(cursor.journal().clone()),
        }
    }

    /// The lowest seq this cursor still needs (`floor`: unfinished; `read`:
    /// next from the log's cache), for the topic's retention.
    pub fn log_positions(&self) -> Option<(u64, u64)> {
        match &self.state.lock().queue {
            Queue::Memory(_) => None,
            Queue::Log(cursor) => Some((cursor.journal().floor(), cursor.position())),
        }
    }

    /// Runs a refill off the log's files, then wakes the consumers.
    fn spawn_refill(&self, job: cursor::RefillJob) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            let refilled = match tokio::task::spawn_blocking(move || job.run()).await {
                Ok(refilled) => refilled,
                Err(e) => {
                    tracing::error!(error = %e, "log refill panicked");
                    return;
                }
            };
            let ok = match &mut me.state.lock().queue {
                Queue::Log(cursor) => cursor.apply_refill(refilled),
                Queue::Memory(_) => true,
            };
            if !ok {
                // A read error: give the disk a moment before the next try.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            me.available.notify_waiters();
        });
    }

    /// A future that completes when messages may have become available. Create
    /// it, `enable` it, then check with [`Channel::take`], then await it.
    pub fn available(&self) -> tokio::sync::futures::Notified<'_> {
        self.available.notified()
    }

    /// Moves up to `max` messages into flight for `client`, handing each to
    /// `emit` under the lock so that the caller can encode without copying;
    /// `emit` answers whether to go on (false: that message is the last of
    /// this take, as when the caller's buffer is full).
    /// Messages dropped by `sample_rate` (1..99) are consumed and not delivered.
    pub fn take(
        &self,
        client: &ClientConn,
        max: usize,
        msg_timeout: Duration,
        sample_rate: i32,
        mut emit: impl FnMut(&Message) -> bool,
    ) -> usize {
        if max == 0 || self.paused.load(Ordering::Acquire) {
            return 0;
        }
        let now = Instant::now();
        let deadline = now + msg_timeout;
        let mut st = self.state.lock();
        let mut taken = 0;
        let mut rng = (sample_rate > 0).then(rand::rng);
        let max_attempts = self.max_attempts.load(Ordering::Relaxed) as u16;
        let ttl = self.msg_ttl_ns.load(Ordering::Relaxed) as i64;
        let now_unix = match st.queue {
            Queue::Memory(_) if ttl == 0 => 0,
            _ => unix_nanos(),
        };
        let mut refill = None;
        let mut wake_timer = false;
        while taken < max {
            let revived = st.revived.pop_front();
            let got = match &mut st.queue {
                _ if revived.is_some() => {
                    let (seq, msg) = revived.expect("checked");
                    Next::Ready(seq, msg)
                }
                Queue::Memory(queue) => match queue.pop() {
                    None => Next::Nothing,
                    Some(Item::One(msg)) => Next::Ready(0, msg),
                    Some(Item::Deferred(msg, due)) => Next::Deferred(0, msg, instant_to_unix(due)),
                    Some(Item::Run(_)) => unreachable!("pop yields single messages"),
                },
                Queue::Log(cursor) => cursor.next(now_unix),
            };
            let (seq, mut msg) = match got {
                Next::Ready(seq, msg) => (seq, msg),
                Next::Deferred(seq, msg, due) => {
                    wake_timer |= st.defer(seq, msg, crate::queue::unix_to_instant(due));
                    continue;
                }
                Next::Nothing => break,
                Next::Refill(job) => {
                    refill = Some(job);
                    break;
                }
            };
            let revived = seq & REVIVED != 0;
            if max_attempts > 0 && msg.attempts >= max_attempts {
                st.bury(seq, msg);
                continue;
            }
            if ttl > 0 && !revived && now_unix.saturating_sub(msg.timestamp) > ttl {
                self.expired_count.fetch_add(1, Ordering::Relaxed);
                st.bury(seq, msg);
                continue;
            }
            if let Some(rng) = rng.as_mut() {
                if rand::Rng::random_range(rng, 0..100) > sample_rate {
                    st.finish_seq(seq);
                    continue;
                }
            }
            msg.attempts = msg.attempts.saturating_add(1);
            let more = emit(&msg);
            st.timeouts.push(Reverse((deadline, msg.id)));
            st.in_flight.insert(InFlight {
                msg,
                seq,
                client_id: client.id,
                deadline,
                delivered_at: now,
            });
            taken += 1;
            if !more {
                break;
            }
        }
        wake_timer |= taken > 0 && st.deadline_needs_timer(deadline);
        drop(st);
        if let Some(job) = refill {
            self.spawn_refill(job);
        }
        if taken > 0 {
            client.delivered(taken);
        }
        if wake_timer {
            self.timer.notify_one();
        }
        taken
    }

    pub fn finish(&self, client_id: u64, id: u64) -> Result<(), InFlightError> {
        let mut st = self.state.lock();
        let entry = st.take_in_flight(client_id, id)?;
        st.finish_seq(entry.seq);
        if let Some(e2e) = st.e2e.as_mut() {
            let latency = unix_nanos().saturating_sub(entry.msg.timestamp).max(0) as u64;
            e2e.record(latency, Instant::now());
        }
        Ok(())
    }

    /// REQ: back in line now (`delay` zero) or after `delay`.
    pub fn requeue(&self, client_id: u64, id: u64, delay: Duration) -> Result<(), InFlightError> {
        let mut st = self.state.lock();
        let entry = st.take_in_flight(client_id, id)?;
        self.requeue_count.fetch_add(1, Ordering::Relaxed);
        if delay.is_zero() {
            let was_empty = st.requeue_now(entry.seq, entry.msg, true);
            drop(st);
            if was_empty {
                self.available.notify_waiters();
            }
            return Ok(());
        }
        let due = Instant::now() + delay;
        let due_unix = unix_nanos() + delay.as_nanos() as i64;
        if entry.seq & REVIVED != 0 {
            self.dead
                .requeue_revived(entry.seq, entry.msg.attempts, Some(due_unix));
        } else if let Queue::Log(cursor) = &st.queue {
            cursor.defer(entry.seq, &entry.msg, due_unix);
        }
        if st.defer(entry.seq, entry.msg, due) {
            drop(st);
            self.timer.notify_one();
        }
        Ok(())
    }

    /// TOUCH: restarts the timeout, but never past delivery + `--max-msg-timeout`.
    pub fn touch(
        &self,
        client_id: u64,
        id: u64,
        msg_timeout: Duration,
    ) -> Result<(), InFlightError> {
        let mut st = self.state.lock();
        let entry = match st.in_flight.get_mut(id) {
            None => return Err(InFlightError::NotInFlight),
            Some(e) if e.client_id != client_id => return Err(InFlightError::NotOwner),
            Some(e) => e,
        };
        let deadline =
            (Instant::now() + msg_timeout).min(entry.delivered_at + self.config.max_msg_timeout);
        entry.deadline = deadline;
        st.timeouts.push(Reverse((deadline, id)));
        if st.deadline_needs_timer(deadline) {
            drop(st);
            self.timer.notify_one();
        }
        Ok(())
    }

    pub fn add_client(&self, client: Arc<ClientConn>) -> Result<(), SubscribeError> {
        let mut st = self.state.lock();
        if st.exiting {
            return Err(SubscribeError::Exiting);
        }
        let max = self.config.max_channel_consumers;
        if max > 0 && st.clients.len() >= max {
            return Err(SubscribeError::TooManyConsumers);
        }
        st.clients.insert(client.id, client);
        Ok(())
    }

    /// Removes a departed consumer. Its in-flight messages go straight back in
    /// line rather than waiting out their timeouts (upstream waits; see #137).
    pub fn remove_client(&self, client_id: u64) {
        let mut st = self.state.lock();
        st.clients.remove(&client_id);
        let orphans: Vec<u64> = st
            .in_flight
            .iter()
            .filter(|e| e.client_id == client_id)
            .map(|e| e.msg.id)
            .collect();
        let mut notify = false;
        for id in orphans {
            if let Some(entry) = st.in_flight.remove(id) {
                notify |= st.requeue_now(entry.seq, entry.msg, true);
            }
        }
        drop(st);
        if notify {
            self.available.notify_waiters();
        }
    }

    /// Marks the channel as going away if it has no consumers; used to retire
    /// ephemeral channels without racing a new SUB.
    pub fn retire_if_unused(&self) -> bool {
        let mut st = self.state.lock();
        if st.clients.is_empty() && !st.exiting {
            st.exiting = true;
            true
        } else {
            false
        }
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    pub fn unpause(&self) {
        self.paused.store(false, Ordering::Release);
        self.available.notify_waiters();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// The channel's own dead-letter settings.
    pub fn overrides(&self) -> Overrides {
        *self.overrides.lock()
    }

    /// Replaces the channel's own dead-letter settings; they apply to the
    /// next delivery.
    pub fn set_overrides(&self, overrides: Overrides) {
        *self.overrides.lock() = overrides;
        let max_attempts = overrides.max_attempts.unwrap_or(self.config.max_attempts);
        let ttl = overrides.msg_ttl.unwrap_or(self.config.msg_ttl);
        self.max_attempts
            .store(max_attempts.into(), Ordering::Relaxed);
        self.msg_ttl_ns
            .store(ttl.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The settings in force: `max_attempts` (0: no limit) and the TTL
    /// (zero: none).
    pub fn limits(&self) -> (u16, Duration) {
        (
            self.max_attempts.load(Ordering::Relaxed) as u16,
            Duration::from_nanos(self.msg_ttl_ns.load(Ordering::Relaxed)),
        )
    }

    /// Messages waiting to be delivered (not in flight, not deferred).
    pub fn depth(&self) -> usize {
        self.state.lock().depth()
    }

    pub fn dead_count(&self) -> u64 {
        self.dead.count()
    }

    pub fn expired_count(&self) -> u64 {
        self.expired_count.load(Ordering::Relaxed)
    }

    /// The oldest `n` dead letters and how many there are. Blocking.
    pub fn dead_letters(&self, n: usize) -> std::io::Result<(Vec<Message>, u64)> {
        self.dead.list(n)
    }

    /// Every dead letter goes back in line, ahead of the queue, with its
    /// attempts reset; returns how many. Blocking.
    pub fn requeue_dead(&self) -> std::io::Result<u64> {
        let (revived, stamp) = self.dead.revive_all()?;
        let count = revived.len() as u64;
        self.deliver_revived(revived, stamp);
        Ok(count)
    }

    /// Puts revived dead letters in line, unless the channel was emptied
    /// since their revival (its `DropLive` then drops them from the file
    /// too). [`Channel::empty`] queues that under this same lock, so either
    /// it is seen here or it clears them after.
    fn deliver_revived(&self, revived: Vec<dead::Revived>, stamp: u64) {
        if revived.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        if self.dead.drop_lives() > stamp {
            return;
        }
        st.revived
            .extend(revived.into_iter().map(|r| (r.seq, r.msg)));
        drop(st);
        self.available.notify_waiters();
    }

    /// Drops every dead letter; returns how many. Blocking.
    pub fn empty_dead(&self) -> std::io::Result<u64> {
        self.dead.empty()
    }

    /// The next `n` messages the channel would deliver, in order, changing
    /// nothing: not in flight, not deferred, not about to become dead
    /// letters. Blocking (it may read the disk queue or the log's files).
    pub fn peek(&self, n: usize) -> std::io::Result<Vec<Message>> {
        let (max_attempts, ttl) = self.limits();
        let now_unix = unix_nanos();
        let ttl = ttl.as_nanos() as i64;
        let attempts_left = |msg: &Message| max_attempts == 0 || msg.attempts < max_attempts;
        let keep = |msg: &Message| {
            attempts_left(msg) && (ttl == 0 || now_unix.saturating_sub(msg.timestamp) <= ttl)
        };
        let mut out = Vec::with_capacity(n);
        // What is on disk is read after the lock is let go: consumers and
        // publishers do not wait for a peek's reads.
        let (log_rest, disk_rest) = {
            let mut st = self.state.lock();
            let revived = st.revived.iter().map(|(_, msg)| msg);
            out.extend(revived.filter(|msg| attempts_left(msg)).take(n).cloned());
            let more = n - out.len();
            match &mut st.queue {
                _ if more == 0 => (None, None),
                Queue::Memory(queue) => (None, queue.peek(more, &keep, &mut out)?),
                Queue::Log(cursor) => (cursor.peek(more, now_unix, &keep, &mut out), None),
            }
        };
        let more = n - out.len();
        if let Some(rest) = log_rest {
            rest.read(more, now_unix, &keep, &mut out)?;
        }
        if let Some(rest) = disk_rest {
            rest.read(more, now_unix, &keep, &mut out)?;
        }
        Ok(out)
    }

    /// Drops every queued, in-flight and deferred message; later FINs for the
    /// old messages fail, as upstream's do.
    pub fn empty(&self) -> std::io::Result<()> {
        let mut st = self.state.lock();
        let cleared = match &mut st.queue {
            Queue::Memory(queue) => queue.clear(),
            Queue::Log(cursor) => {
                cursor.empty();
                Ok(())
            }
        };
        st.in_flight.clear();
        st.timeouts.clear();
        st.deferred.clear();
        st.revived.clear();
        self.dead.drop_live();
        for client in st.clients.values() {
            client.in_flight_dropped();
        }
        cleared
    }
}

#[cfg(test)]
mod tests;
