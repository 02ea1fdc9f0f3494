//! One peer's link: connect as a client, `REPL 1`, describe every topic and
//! channel, then ship records as they are appended and progress as the
//! collector takes it. Reconnects with a backoff when the link drops.

use super::{Settings, Topics, SHIP_WINDOW};
use crate::log::{Journal, NotCached, TopicLog};
use crate::replica::ChannelSettings;
use bytes::{Bytes, BytesMut};
use nsq::api::{PeerStats, PeerTopicStats};
use nsq::conn::{Connection, FrameReader, FrameWriter};
use nsq::protocol::repl::{Fence, ReplHello, ToOrigin, ToPeer, REPL_VERSION};
use nsq::protocol::{encode_frame, FrameType};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Records per `M` frame, about: one frame per round of appends under load.
const MAX_BATCH: usize = 1 << 20;
/// Written out once this much is buffered, even mid-pass.
const FLUSH_AT: usize = 4 << 20;
const PING_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// After a refusal (fenced, unauthorized, not a peer) the link waits this long.
const REFUSED_RETRY: Duration = Duration::from_secs(30);
/// Progress batches a session may hold unsent before it starts over.
const PROGRESS_QUEUE: usize = 64;

/// A change the collector took, for every link.
pub(super) enum Progress {
    TopicState {
        topic: String,
        log: Arc<TopicLog>,
        released: u64,
        paused: bool,
    },
    Channel {
        topic: String,
        log: Arc<TopicLog>,
        name: String,
        settings: ChannelSettings,
        snapshot: Bytes,
    },
    Deltas {
        topic: String,
        log: Arc<TopicLog>,
        name: String,
        journal: Arc<Journal>,
        settings: ChannelSettings,
        deltas: Bytes,
    },
    DropChannel {
        topic: String,
        name: String,
    },
    DropTopic {
        topic: String,
    },
    Tick {
        n: u64,
        unix_ns: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    CatchingUp,
    Synced,
    Down,
    Refused,
    /// The peer promoted its replicas of this node.
    Fenced,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::CatchingUp => "catching_up",
            State::Synced => "synced",
            State::Down => "down",
            State::Refused => "refused",
            State::Fenced => "fenced",
        }
    }
}

struct Status {
    state: State,
    since: Instant,
    last_error: String,
}

pub(super) struct Link {
    pub(super) address: String,
    status: Mutex<Status>,
    session: Mutex<Option<Arc<Session>>>,
    /// The session before, once it ended: what the peer had stored then,
    /// for the backlog shown while no session runs.
    last: Mutex<Option<(Arc<Session>, Instant)>>,
    /// What the peer said when it refused this node for a promotion.
    fence: Mutex<Option<Fence>>,
    /// The promotion whose copy this node retired (`retired_fence`).
    retired: AtomicU64,
    /// Cuts a wait before the next attempt short.
    retry: tokio::sync::Notify,
}

/// One topic's stream within a session.
pub(super) struct Stream {
    tid: u32,
    name: String,
    log: Arc<TopicLog>,
    /// Seqs below this were not needed by the peer (the `T` frame's `from`).
    from: u64,
    /// The stream is in sync once the peer stored this much.
    target: u64,
    acked: AtomicU64,
    synced: AtomicBool,
    changed: tokio::sync::Notify,
    ended: CancellationToken,
}

impl Stream {
    /// Whether the peer stored every seq below `end`; false once the
    /// session ended.
    pub(super) async fn wait_stored(&self, end: u64) -> bool {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.acked.load(Ordering::Acquire) >= end {
                return true;
            }
            if self.ended.is_cancelled() {
                return false;
            }
            notified.await;
        }
    }

    fn stored(&self, end: u64) {
        let acked = self.acked.fetch_max(end, Ordering::AcqRel).max(end);
        if acked >= self.target {
            self.synced.store(true, Ordering::Release);
        }
        self.changed.notify_waiters();
    }
}

/// What a live session shares between the writer, the reader and publishers.
struct Session {
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    by_tid: Mutex<HashMap<u32, Arc<Stream>>>,
    next_tid: AtomicU32,
    /// The first description is sent: publishers may open streams.
    described: AtomicBool,
    wake: tokio::sync::Notify,
    progress: Mutex<VecDeque<Arc<Vec<Progress>>>>,
    ended: CancellationToken,
    failure: Mutex<Option<String>>,
    ticks: Mutex<VecDeque<(u64, Instant)>>,
    last_heard: Mutex<Instant>,
}

impl Session {
    fn new() -> Session {
        Session {
            streams: Mutex::default(),
            by_tid: Mutex::default(),
            next_tid: AtomicU32::new(1),
            described: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            progress: Mutex::default(),
            ended: CancellationToken::new(),
            failure: Mutex::default(),
            ticks: Mutex::default(),
            last_heard: Mutex::new(Instant::now()),
        }
    }

    /// The topic's stream, opened when new: shipped from `from`, in sync once
    /// `target` is stored (`synced` at once for a topic new to the session).
    fn open(&self, name: &str, log: &Arc<TopicLog>, from: u64, target: u64) -> (Arc<Stream>, bool) {
        let mut streams = self.streams.lock();
        if let Some(stream) = streams.get(name) {
            return (stream.clone(), false);
        }
        let stream = Arc::new(Stream {
            tid: self.next_tid.fetch_add(1, Ordering::Relaxed),
            name: name.to_string(),
            log: log.clone(),
            from,
            target,
            acked: AtomicU64::new(from),
            synced: AtomicBool::new(from >= target),
            changed: tokio::sync::Notify::new(),
            ended: self.ended.clone(),
        });
        streams.insert(name.to_string(), stream.clone());
        self.by_tid.lock().insert(stream.tid, stream.clone());
        (stream, true)
    }

    fn fail(&self, why: String) {
        self.failure.lock().get_or_insert(why);
        self.ended.cancel();
        self.wake.notify_one();
    }

    fn streams(&self) -> Vec<Arc<Stream>> {
        self.streams.lock().values().cloned().collect()
    }
}

/// Why a session ended.
enum End {
    /// Retry after a backoff.
    Down(String),
    /// The peer said no: retry after [`REFUSED_RETRY`].
    Refused(String),
    /// The peer promoted its replicas of this node (`E_REPL_PROMOTED`).
    Fenced(Fence),
}

impl Link {
    pub(super) fn new(address: String) -> Arc<Link> {
        Arc::new(Link {
            address,
            status: Mutex::new(Status {
                state: State::Connecting,
                since: Instant::now(),
                last_error: String::new(),
            }),
            session: Mutex::default(),
            last: Mutex::default(),
            fence: Mutex::default(),
            retired: AtomicU64::new(0),
            retry: tokio::sync::Notify::new(),
        })
    }

    /// The fence the peer answered with, if it promoted this node's replicas.
    pub(super) fn fence(&self) -> Option<Fence> {
        self.fence.lock().clone()
    }

    /// This node retired the copy of the promotion at `promoted_at`: the
    /// next hello says so, now.
    pub(super) fn retired(&self, promoted_at: u64) {
        self.retired.store(promoted_at, Ordering::Release);
        self.retry.notify_one();
    }

    pub(super) fn is_synced(&self) -> bool {
        self.status.lock().state == State::Synced
    }

    fn set_state(&self, state: State, error: Option<String>) {
        let mut status = self.status.lock();
        if status.state != state {
            status.state = state;
            status.since = Instant::now();
        }
        if let Some(error) = error {
            status.last_error = error;
        }
    }

    /// The stream a publish to `topic` waits for; `None` when this peer is
    /// not waited for (no session, or the topic is still catching up).
    pub(super) fn stream_for_publish(
        &self,
        topic: &str,
        log: &Arc<TopicLog>,
    ) -> Option<Arc<Stream>> {
        let session = self.session.lock().clone()?;
        if !session.described.load(Ordering::Acquire) || session.ended.is_cancelled() {
            return None;
        }
        let (stream, new) = session.open(topic, log, log.first_seq(), 0);
        // Records leave when the writer's round takes them (see `session`);
        // a stream new to the session is announced now.
        if new {
            session.wake.notify_one();
        }
        stream.synced.load(Ordering::Acquire).then_some(stream)
    }

    /// Ends the session: the peer is given up on until it reconnects.
    pub(super) fn fail(&self, why: &str) {
        if let Some(session) = self.session.lock().clone() {
            session.fail(why.to_string());
        }
    }

    /// A batch of progress from the collector, for the session if one runs.
    pub(super) fn progress(&self, batch: &Arc<Vec<Progress>>) {
        let Some(session) = self.session.lock().clone() else {
            return;
        };
        let mut queue = session.progress.lock();
        if queue.len() >= PROGRESS_QUEUE {
            drop(queue);
            session.fail("the peer fell behind on progress".into());
            return;
        }
        queue.push_back(batch.clone());
        drop(queue);
        session.wake.notify_one();
    }

    pub(super) fn stats(&self) -> PeerStats {
        let status = self.status.lock();
        // A session still describing the topics to the peer knows less than
        // the last one did.
        let session = self
            .session
            .lock()
            .clone()
            .filter(|s| s.described.load(Ordering::Acquire));
        let live = session.is_some();
        // Without a session, what the last one knew: the backlog grows.
        let last = self.last.lock().clone();
        let known = session
            .clone()
            .or_else(|| last.as_ref().map(|(s, _)| s.clone()));
        let mut topics: Vec<PeerTopicStats> = known
            .as_ref()
            .map(|s| {
                s.streams()
                    .iter()
                    .map(|stream| PeerTopicStats {
                        topic_name: stream.name.clone(),
                        end_seq: stream.log.end_seq(),
                        stored_seq: stream.acked.load(Ordering::Acquire),
                        synced: live && stream.synced.load(Ordering::Acquire),
                    })
                    .collect()
            })
            .unwrap_or_default();
        topics.sort_by(|a, b| a.topic_name.cmp(&b.topic_name));
        let mut progress_lag_ms = known
            .as_ref()
            .and_then(|s| {
                s.ticks
                    .lock()
                    .front()
                    .map(|(_, at)| at.elapsed().as_millis() as u64)
            })
            .unwrap_or(0);
        if let Some((_, ended)) = last.filter(|_| !live) {
            // Nothing has reached the peer since the link went.
            progress_lag_ms = progress_lag_ms.max(ended.elapsed().as_millis() as u64);
        }
        PeerStats {
            address: self.address.clone(),
            state: status.state.name().into(),
            connected: live,
            since_ms: status.since.elapsed().as_millis() as u64,
            last_error: status.last_error.clone(),
            backlog_messages: topics
                .iter()
                .map(|t| t.end_seq.saturating_sub(t.stored_seq))
                .sum(),
            progress_lag_ms,
            topics,
        }
    }

    /// Keeps a session with the peer up until `stop`.
    pub(super) async fn run(
        self: Arc<Self>,
        settings: Arc<Settings>,
        topics: Arc<Topics>,
        stop: CancellationToken,
    ) {
        let mut backoff = BACKOFF_MIN;
        loop {
            self.set_state(State::Connecting, None);
            let session = Arc::new(Session::new());
            let ended = tokio::select! {
                _ = stop.cancelled() => return,
                ended = self.session(&session, &settings, &topics) => ended,
            };
            let was_synced = self.is_synced();
            self.end_session(&session);
            let wait = match ended {
                End::Refused(why) => {
                    tracing::error!(peer = %self.address, error = %why, "replication refused by the peer; retrying in 30s");
                    self.set_state(State::Refused, Some(why));
                    REFUSED_RETRY
                }
                End::Fenced(fence) => {
                    let why = format!(
                        "the peer promoted its replicas of this node at {} (Unix ms); POST /replication/retire?peer={} here retires this node's copy",
                        fence.promoted_at, self.address
                    );
                    tracing::error!(peer = %self.address, "{why}");
                    self.set_state(State::Fenced, Some(why));
                    *self.fence.lock() = Some(fence);
                    REFUSED_RETRY
                }
                End::Down(why) => {
                    tracing::warn!(peer = %self.address, error = %why, "replication link down; publishes go on here and the peer catches up later");
                    self.set_state(State::Down, Some(why));
                    backoff = if was_synced {
                        BACKOFF_MIN
                    } else {
                        (backoff * 2).min(BACKOFF_MAX)
                    };
                    backoff
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.retry.notified() => {}
            }
        }
    }

    fn end_session(&self, session: &Arc<Session>) {
        session.ended.cancel();
        let mut current = self.session.lock();
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
            *current = None;
        }
        drop(current);
        if session.described.load(Ordering::Acquire) {
            *self.last.lock() = Some((session.clone(), Instant::now()));
        }
        for stream in session.streams() {
            stream.changed.notify_waiters();
        }
    }

    async fn session(&self, session: &Arc<Session>, settings: &Settings, topics: &Topics) -> End {
        let conn = match Connection::connect(&self.address, &settings.client).await {
            Ok(conn) => conn,
            Err(e) => return End::Down(format!("connect: {e}")),
        };
        let Connection {
            mut reader, writer, ..
        } = conn;
        let mut out = Out {
            writer,
            frame: BytesMut::new(),
            wire: BytesMut::new(),
        };
        let identity = &settings.identity;
        let hello = serde_json::to_vec(&ReplHello {
            uid: identity.uid.clone(),
            address: identity.address.clone(),
            hostname: identity.hostname.clone(),
            version: identity.version.clone(),
            retired_fence: self.retired.load(Ordering::Acquire),
        })
        .expect("a plain struct serializes");
        let mut command = format!("REPL {REPL_VERSION}\n").into_bytes();
        command.extend_from_slice(&(hello.len() as u32).to_be_bytes());
        command.extend_from_slice(&hello);
        out.writer.push_encoded(&command);
        if let Err(e) = out.writer.flush().await {
            return End::Down(format!("write: {e}"));
        }
        let first = match tokio::time::timeout(settings.timeout, reader.read_frame()).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(e)) => return End::Down(format!("read: {e}")),
            Err(_) => return End::Down("no hello within --replication-timeout".into()),
        };
        if first.frame_type == FrameType::Error {
            let text = String::from_utf8_lossy(&first.data).into_owned();
            if let Some(body) = text.strip_prefix("E_REPL_PROMOTED ") {
                return match serde_json::from_str(body) {
                    Ok(fence) => End::Fenced(fence),
                    Err(e) => End::Refused(format!("{text} (unreadable: {e})")),
                };
            }
            return match text.starts_with("E_INVALID invalid command") {
                true => End::Refused("the peer does not speak REPL (upstream nsqd?)".into()),
                false => End::Refused(text),
            };
        }
        let stored = match ToOrigin::decode(first.data) {
            Ok(ToOrigin::Hello {
                uid,
                max_msg_size,
                topics,
            }) => {
                if uid == identity.uid {
                    return End::Refused("--replicate-to names this nsqd itself".into());
                }
                if max_msg_size < settings.max_msg_size {
                    return End::Refused(format!(
                        "the peer's --max-msg-size {max_msg_size} is below ours ({})",
                        settings.max_msg_size
                    ));
                }
                *self.fence.lock() = None;
                topics.into_iter().collect::<HashMap<String, u64>>()
            }
            Ok(other) => return End::Down(format!("expected a hello, got {other:?}")),
            Err(e) => return End::Down(format!("bad hello: {e}")),
        };

        // Registered before the channels' snapshots are taken: the
        // collector's batches from now on queue for this session, so that
        // the changes they took from the journals' taps (FINs, requeues,
        // channels made or dropped) after a snapshot still reach the peer.
        // Dropped, a FIN never reached it: the replica kept the message
        // (and its log segment) until the next snapshot, and a promotion
        // delivered it again.
        *self.session.lock() = Some(session.clone());
        let mut writer = Writer {
            session: session.clone(),
            announced: HashSet::new(),
            sent: HashMap::new(),
            channels: HashMap::new(),
            next_cid: 1,
        };
        for view in topics() {
            let mut from = view.floor();
            if let Some(&peer_end) = stored.get(&view.name) {
                // The peer holds seqs this log lost in a crash: never reuse them.
                view.log.skip_to(peer_end);
                from = from.max(peer_end);
            }
            let (stream, _) = session.open(&view.name, &view.log, from, view.log.end_seq());
            writer.announce(&stream, &mut out);
            for channel in &view.channels {
                writer.channel(
                    &stream,
                    &channel.name,
                    channel.settings,
                    channel.journal.snapshot(),
                    &mut out,
                );
            }
            out.push(&ToPeer::TopicState {
                tid: stream.tid,
                backlog_floor: view.released,
                released_end: view.paused.then_some(view.released),
            });
        }
        out.push(&ToPeer::SyncDone);
        session.described.store(true, Ordering::Release);
        self.set_state(State::CatchingUp, None);
        tracing::info!(peer = %self.address, "replication link up; catching up");

        let reading = tokio::spawn(read_answers(reader, session.clone()));
        let mut written = settings.writer.written();
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut pings = 0u64;
        let end = loop {
            if let Err(e) = writer.pass(&mut out).await {
                break End::Down(e);
            }
            if let Err(e) = out.flush().await {
                break End::Down(format!("write: {e}"));
            }
            let streams = session.streams();
            let synced = streams.iter().all(|s| s.synced.load(Ordering::Acquire));
            match (synced, self.is_synced()) {
                (true, false) => {
                    tracing::info!(peer = %self.address, "replication link in sync");
                    self.set_state(State::Synced, None);
                }
                (false, true) => self.set_state(State::CatchingUp, None),
                _ => {}
            }
            if session.last_heard.lock().elapsed() > settings.timeout {
                session.fail("no answer within --replication-timeout".into());
            }
            tokio::select! {
                _ = session.wake.notified() => {}
                // A writer round took appends: ship them, one frame per
                // round, while the local fsync runs.
                _ = written.changed() => {}
                _ = ping.tick() => {
                    pings += 1;
                    out.push(&ToPeer::Ping { n: pings });
                }
                _ = session.ended.cancelled() => {
                    let why = session.failure.lock().clone().unwrap_or_else(|| "ended".into());
                    break match why.strip_prefix("refused: ") {
                        Some(why) => End::Refused(why.to_string()),
                        None => End::Down(why),
                    };
                }
            }
        };
        reading.abort();
        end
    }
}

/// The link's write side: frames buffered, then written in one flush.
struct Out {
    writer: FrameWriter,
    frame: BytesMut,
    wire: BytesMut,
}

impl Out {
    fn push(&mut self, frame: &ToPeer) {
        self.frame.clear();
        frame.encode(&mut self.frame);
        encode_frame(&mut self.wire, FrameType::Response, &self.frame);
    }

    async fn flush(&mut self) -> Result<(), nsq::Error> {
        if self.wire.is_empty() {
            return Ok(());
        }
        self.writer.push_encoded(&self.wire);
        self.wire.clear();
        self.writer.flush().await
    }
}

/// The writer's own view of a session: what the peer was told.
struct Writer {
    session: Arc<Session>,
    /// Streams whose `T` went out.
    announced: HashSet<u32>,
    /// Per stream: seqs below this were shipped.
    sent: HashMap<u32, u64>,
    /// (tid, channel) → cid.
    channels: HashMap<(u32, String), u32>,
    next_cid: u32,
}

impl Writer {
    fn announce(&mut self, stream: &Stream, out: &mut Out) {
        if self.announced.insert(stream.tid) {
            out.push(&ToPeer::Open {
                tid: stream.tid,
                name: stream.name.clone(),
                from: stream.from,
            });
            self.sent.insert(stream.tid, stream.from);
        }
    }

    fn stream(&mut self, topic: &str, log: &Arc<TopicLog>, out: &mut Out) -> Arc<Stream> {
        let (stream, _) = self.session.open(topic, log, log.first_seq(), 0);
        self.announce(&stream, out);
        stream
    }

    fn channel(
        &mut self,
        stream: &Stream,
        name: &str,
        settings: ChannelSettings,
        snapshot: Bytes,
        out: &mut Out,
    ) {
        let next = &mut self.next_cid;
        let cid = *self
            .channels
            .entry((stream.tid, name.to_string()))
            .or_insert_with(|| {
                *next += 1;
                *next - 1
            });
        out.push(&ToPeer::Channel {
            tid: stream.tid,
            cid,
            name: name.to_string(),
            paused: settings.paused,
            max_attempts: settings.max_attempts.unwrap_or(0),
            msg_ttl_ms: settings.msg_ttl_ms.unwrap_or(0),
            snapshot,
        });
    }

    /// Sends what is new: streams publishers opened, the collector's
    /// progress, and every stream's records not yet shipped.
    async fn pass(&mut self, out: &mut Out) -> Result<(), String> {
        for stream in self.session.streams() {
            self.announce(&stream, out);
        }
        loop {
            let batch = self.session.progress.lock().pop_front();
            let Some(batch) = batch else { break };
            for item in batch.iter() {
                self.progress(item, out);
            }
        }
        for stream in self.session.streams() {
            self.ship(&stream, out).await?;
        }
        Ok(())
    }

    fn progress(&mut self, item: &Progress, out: &mut Out) {
        match item {
            Progress::TopicState {
                topic,
                log,
                released,
                paused,
            } => {
                let stream = self.stream(topic, log, out);
                out.push(&ToPeer::TopicState {
                    tid: stream.tid,
                    backlog_floor: *released,
                    released_end: paused.then_some(*released),
                });
            }
            Progress::Channel {
                topic,
                log,
                name,
                settings,
                snapshot,
            } => {
                let stream = self.stream(topic, log, out);
                self.channel(&stream, name, *settings, snapshot.clone(), out);
            }
            Progress::Deltas {
                topic,
                log,
                name,
                journal,
                settings,
                deltas,
            } => {
                let stream = self.stream(topic, log, out);
                match self.channels.get(&(stream.tid, name.clone())) {
                    Some(&cid) => out.push(&ToPeer::Deltas {
                        tid: stream.tid,
                        cid,
                        records: deltas.clone(),
                    }),
                    // Not described to this session yet: the whole state.
                    None => self.channel(&stream, name, *settings, journal.snapshot(), out),
                }
            }
            Progress::DropChannel { topic, name } => {
                let Some(stream) = self.session.streams.lock().get(topic).cloned() else {
                    return;
                };
                if let Some(cid) = self.channels.remove(&(stream.tid, name.clone())) {
                    out.push(&ToPeer::DropChannel {
                        tid: stream.tid,
                        cid,
                    });
                }
            }
            Progress::DropTopic { topic } => {
                let Some(stream) = self.session.streams.lock().remove(topic) else {
                    return;
                };
                self.session.by_tid.lock().remove(&stream.tid);
                self.channels.retain(|(tid, _), _| *tid != stream.tid);
                self.sent.remove(&stream.tid);
                if self.announced.remove(&stream.tid) {
                    out.push(&ToPeer::DropTopic { tid: stream.tid });
                }
                stream.changed.notify_waiters();
            }
            Progress::Tick { n, unix_ns } => {
                out.push(&ToPeer::Tick {
                    n: *n,
                    unix_ns: *unix_ns,
                });
                self.session.ticks.lock().push_back((*n, Instant::now()));
            }
        }
    }

    /// Ships the stream's records not yet sent, up to what is fsynced here
    /// plus [`SHIP_WINDOW`]: out of the log's memory tail when it has them
    /// (before the local fsync, so that both fsyncs overlap), else off disk.
    async fn ship(&mut self, stream: &Arc<Stream>, out: &mut Out) -> Result<(), String> {
        let Some(&from) = self.sent.get(&stream.tid) else {
            return Ok(());
        };
        let log = &stream.log;
        let limit = log
            .end_seq()
            .min(log.synced_end().saturating_add(SHIP_WINDOW));
        let mut sent = from;
        while sent < limit {
            let mut records = BytesMut::new();
            let covered = match log.encode_cached(sent, limit, MAX_BATCH, &mut records) {
                Ok(end) => end,
                Err(NotCached) => {
                    let log = log.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        let mut records = BytesMut::new();
                        log.encode_stored(sent, limit, MAX_BATCH, &mut records)
                            .map(|end| (end, records))
                    })
                    .await
                    .map_err(|e| format!("log read: {e}"))?;
                    let (end, read) = read.map_err(|e| format!("log read: {e}"))?;
                    records = read;
                    end
                }
            };
            if covered <= sent {
                break;
            }
            out.push(&ToPeer::Msgs {
                tid: stream.tid,
                end: covered,
                records: records.freeze(),
            });
            sent = covered;
            if out.wire.len() >= FLUSH_AT {
                out.flush().await.map_err(|e| format!("write: {e}"))?;
            }
        }
        self.sent.insert(stream.tid, sent);
        Ok(())
    }
}

/// The link's read side: the peer's answers, until the link ends.
async fn read_answers(mut reader: FrameReader, session: Arc<Session>) {
    loop {
        let frame = match reader.read_frame().await {
            Ok(frame) => frame,
            Err(e) => return session.fail(format!("read: {e}")),
        };
        *session.last_heard.lock() = Instant::now();
        if frame.frame_type == FrameType::Error {
            let text = String::from_utf8_lossy(&frame.data).into_owned();
            let why = match text.starts_with("E_REPL_FAILED") {
                true => text,
                false => format!("refused: {text}"),
            };
            return session.fail(why);
        }
        match ToOrigin::decode(frame.data) {
            Ok(ToOrigin::Stored { tid, end }) => {
                let stream = session.by_tid.lock().get(&tid).cloned();
                if let Some(stream) = stream {
                    stream.stored(end);
                }
                session.wake.notify_one();
            }
            Ok(ToOrigin::Applied { n }) => {
                let mut ticks = session.ticks.lock();
                while ticks.front().is_some_and(|(sent, _)| *sent <= n) {
                    ticks.pop_front();
                }
            }
            Ok(ToOrigin::Pong { .. }) => {}
            Ok(other) => return session.fail(format!("unexpected {other:?}")),
            Err(e) => return session.fail(format!("bad frame: {e}")),
        }
    }
}
