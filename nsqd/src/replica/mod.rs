//! The peer side of replication (docs/replication-design.md): the copies this
//! nsqd keeps of other nsqds' topics. They are invisible until promoted: not
//! delivered, not registered with nsqlookupd, not among the node's topics;
//! `/stats` lists them under `replicas`.
//!
//! # Files
//!
//! For an origin whose data directory has uid `U`, in data directory `D`:
//! * `D/replicas/U/origin.json`: [`OriginFile`], its last address and the
//!   settings of its channels, replaced atomically when they change;
//! * `D/replicas/U/<topic>.log/`: the topic's log and a journal per channel,
//!   exactly as `crate::log` keeps a local topic, with the origin's seqs.
//!
//! A replica is written through the node's one [`LogWriter`], under the
//! node's own sync policy: "stored" on a peer means what durable means there.

use crate::diskqueue::write_atomically;
use crate::log::{Journal, LogConfig, LogWriter, TopicLog, TopicMeta};
use nsq::api::{ReplicaChannelStats, ReplicaStats, ReplicaTopicStats};
use nsq::protocol::repl::Fence;
use nsq::protocol::{is_valid_channel_name, is_valid_topic_name};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// How often finished segments of replicas are let go.
pub const RETAIN_INTERVAL: Duration = Duration::from_secs(1);
const ORIGIN_FILE: &str = "origin.json";

/// A channel's settings as its origin has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSettings {
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_ttl_ms: Option<u64>,
}

/// `origin.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OriginFile {
    pub uid: String,
    /// `broadcast-address:tcp-port`, as the origin last reported it.
    pub address: String,
    pub hostname: String,
    /// Unix seconds of the last link's end (or start, while connected).
    pub last_seen: i64,
    /// topic → channel → settings.
    #[serde(default)]
    pub channels: BTreeMap<String, BTreeMap<String, ChannelSettings>>,
    /// Unix ms of the promotion that fenced this origin: its links are
    /// refused (`E_REPL_PROMOTED`) until it retires its copy or the
    /// operator forgets it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<u64>,
    /// Per topic, the seqs below which this node held the origin's
    /// messages at promotion: what the origin retires.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fence: BTreeMap<String, u64>,
    /// Per topic still being promoted, the seqs below which its messages
    /// were adopted already (a promotion cut short resumes there).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub promoted_below: BTreeMap<String, u64>,
}

/// Why a link from an origin was not attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The origin was promoted here: what `E_REPL_PROMOTED` tells it.
    #[error("promoted at {}", .0.promoted_at)]
    Promoted(Fence),
}

/// Whether `uid` can name an origin: 32 lowercase hex digits.
pub fn valid_uid(uid: &str) -> bool {
    uid.len() == 32 && uid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Every replica this node holds, by origin uid.
pub struct Replicas {
    dir: PathBuf,
    writer: Arc<LogWriter>,
    log_cfg: LogConfig,
    origins: Mutex<BTreeMap<String, Arc<Origin>>>,
}

impl Replicas {
    /// Opens every replica under `data_dir/replicas/`. Blocking.
    pub fn open(
        data_dir: &Path,
        writer: Arc<LogWriter>,
        log_cfg: LogConfig,
    ) -> io::Result<Replicas> {
        let dir = data_dir.join("replicas");
        let log_cfg = LogConfig {
            cache_max_bytes: 0,
            cache_max_msgs: 0,
            ..log_cfg
        };
        let replicas = Replicas {
            dir,
            writer,
            log_cfg,
            origins: Mutex::default(),
        };
        let entries = match std::fs::read_dir(&replicas.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(replicas),
            Err(e) => return Err(e),
        };
        for uid in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            if !valid_uid(&uid) {
                continue;
            }
            let origin = replicas.open_origin(&uid)?;
            replicas.origins.lock().insert(uid, origin);
        }
        Ok(replicas)
    }

    fn open_origin(&self, uid: &str) -> io::Result<Arc<Origin>> {
        let dir = self.dir.join(uid);
        let file = match std::fs::read(dir.join(ORIGIN_FILE)) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join(ORIGIN_FILE).display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => OriginFile {
                uid: uid.to_string(),
                ..OriginFile::default()
            },
            Err(e) => return Err(e),
        };
        let origin = Origin {
            uid: uid.to_string(),
            dir,
            file: Mutex::new(file),
            // Away counts from now, not from the last link: a restart of
            // this node gives the origin its time to come back.
            link: Mutex::new(LinkInfo {
                since: Some(Instant::now()),
                ..LinkInfo::default()
            }),
            forgotten: std::sync::atomic::AtomicBool::new(false),
            generation: AtomicU64::new(0),
            superseded: Notify::new(),
            topics: Mutex::default(),
        };
        if origin.dir.is_dir() {
            for name in std::fs::read_dir(&origin.dir)?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
            {
                let Some(topic) = name.strip_suffix(".log") else {
                    continue;
                };
                if !is_valid_topic_name(topic) {
                    continue;
                }
                let replica = self.open_topic(&origin, topic)?;
                for journal in std::fs::read_dir(origin.dir.join(&name))?
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                {
                    let Some(channel) = journal.strip_suffix(".journal") else {
                        continue;
                    };
                    if is_valid_channel_name(channel) {
                        let journal =
                            Journal::open_replica(&self.writer, &replica.log(), channel, None)?;
                        replica.channels.lock().insert(channel.to_string(), journal);
                    }
                }
                origin.topics.lock().insert(topic.to_string(), replica);
            }
        }
        Ok(Arc::new(origin))
    }

    fn open_topic(&self, origin: &Origin, name: &str) -> io::Result<Arc<ReplicaTopic>> {
        let log = TopicLog::open(&self.writer, &origin.dir, name, self.log_cfg.clone())?;
        let meta = log.read_meta()?.unwrap_or_default();
        Ok(Arc::new(ReplicaTopic {
            name: name.to_string(),
            log: Mutex::new(log),
            meta: Mutex::new(meta),
            channels: Mutex::default(),
        }))
    }

    /// The origin of this uid, created (with its directory) when new. Blocking.
    pub fn origin(&self, uid: &str) -> io::Result<Arc<Origin>> {
        if let Some(origin) = self.origins.lock().get(uid) {
            return Ok(origin.clone());
        }
        std::fs::create_dir_all(self.dir.join(uid))?;
        let origin = self.open_origin(uid)?;
        origin.save()?;
        Ok(self
            .origins
            .lock()
            .entry(uid.to_string())
            .or_insert(origin)
            .clone())
    }

    pub fn origins(&self) -> Vec<Arc<Origin>> {
        self.origins.lock().values().cloned().collect()
    }

    /// The origin named by its uid or by the address it last reported.
    /// Two origins can have reported one address (a data directory wiped
    /// and started again there gets a new uid): then none is taken, and
    /// the error lists their uids, sorted, to name one by.
    pub fn find(&self, name: &str) -> Result<Option<Arc<Origin>>, Vec<String>> {
        let origins = self.origins.lock();
        if let Some(origin) = origins.get(name) {
            return Ok(Some(origin.clone()));
        }
        let mut at: Vec<(&String, &Arc<Origin>)> = origins
            .iter()
            .filter(|(_, o)| o.file.lock().address == name)
            .collect();
        match at.len() {
            0 => Ok(None),
            1 => Ok(Some(at[0].1.clone())),
            _ => {
                at.sort_by(|a, b| a.0.cmp(b.0));
                Err(at.into_iter().map(|(uid, _)| uid.clone()).collect())
            }
        }
    }

    /// The writer replicas are written through.
    pub fn writer(&self) -> &Arc<LogWriter> {
        &self.writer
    }

    /// Forgets an origin: its fence and whatever replicas it still has
    /// here. `false` (and nothing done) while it is connected. Blocking.
    pub fn forget(&self, origin: &Arc<Origin>) -> io::Result<bool> {
        {
            let link = origin.link.lock();
            if link.connected.is_some() {
                return Ok(false);
            }
            // No link attaches to it from now on.
            origin.forgotten.store(true, Ordering::Release);
            origin.generation.fetch_add(1, Ordering::AcqRel);
            origin.superseded.notify_waiters();
        }
        for topic in origin.topics() {
            self.drop_topic(origin, &topic.name)?;
        }
        // Under the map's lock, so that a new link of the same origin
        // cannot make its directory while it is being removed.
        let mut origins = self.origins.lock();
        origins.remove(&origin.uid);
        match std::fs::remove_dir_all(&origin.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        drop(origins);
        tracing::info!(uid = %origin.uid, "forgot an origin and its replicas");
        Ok(true)
    }

    /// The replica of `name` from `origin`, opened or created. Blocking.
    pub fn topic(&self, origin: &Origin, name: &str) -> io::Result<Arc<ReplicaTopic>> {
        if let Some(topic) = origin.topics.lock().get(name) {
            return Ok(topic.clone());
        }
        let topic = self.open_topic(origin, name)?;
        Ok(origin
            .topics
            .lock()
            .entry(name.to_string())
            .or_insert(topic)
            .clone())
    }

    /// Replaces (or creates) a channel's replica with a snapshot of its
    /// acknowledgements, and records its settings. Blocking.
    pub fn channel(
        &self,
        origin: &Origin,
        topic: &ReplicaTopic,
        name: &str,
        settings: ChannelSettings,
        snapshot: &[u8],
    ) -> io::Result<Arc<Journal>> {
        let existing = topic.channels.lock().get(name).cloned();
        let journal = match existing {
            Some(journal) => {
                journal.replace(snapshot)?;
                journal
            }
            None => {
                let journal =
                    Journal::open_replica(&self.writer, &topic.log(), name, Some(snapshot))?;
                topic
                    .channels
                    .lock()
                    .insert(name.to_string(), journal.clone());
                journal
            }
        };
        origin.set_channel_settings(&topic.name, name, Some(settings))?;
        Ok(journal)
    }

    /// Removes a channel's replica. Blocking.
    pub fn drop_channel(
        &self,
        origin: &Origin,
        topic: &ReplicaTopic,
        name: &str,
    ) -> io::Result<()> {
        let journal = topic.channels.lock().remove(name);
        if let Some(journal) = journal {
            journal.delete()?;
        }
        origin.set_channel_settings(&topic.name, name, None)
    }

    /// Removes a topic's replica with its channels. Blocking.
    pub fn drop_topic(&self, origin: &Origin, name: &str) -> io::Result<()> {
        let topic = origin.topics.lock().remove(name);
        let Some(topic) = topic else { return Ok(()) };
        let channels: Vec<_> = std::mem::take(&mut *topic.channels.lock())
            .into_values()
            .collect();
        for journal in channels {
            journal.delete()?;
        }
        topic.log().delete()?;
        let mut file = origin.file.lock();
        let promoting = file.promoted_below.remove(name).is_some();
        if file.channels.remove(name).is_some() || promoting {
            write_atomically(
                &origin.dir.join(ORIGIN_FILE),
                &serde_json::to_vec_pretty(&*file)?,
            )?;
        }
        Ok(())
    }

    /// A replica log whose write failed is closed and opened again, so that
    /// its end is what its files hold and the origin sends the rest again.
    /// Blocking.
    pub fn reopen_log(&self, origin: &Origin, topic: &ReplicaTopic) -> io::Result<()> {
        let mut log = topic.log.lock();
        log.close();
        *log = TopicLog::open(&self.writer, &origin.dir, &topic.name, self.log_cfg.clone())?;
        Ok(())
    }

    /// Lets every replica log drop the segments its channels have finished.
    pub fn retain(&self) {
        for origin in self.origins() {
            for topic in origin.topics() {
                let released = topic.meta().backlog_floor;
                let floor = topic
                    .channels()
                    .iter()
                    .map(|(_, j)| j.floor())
                    .fold(released, u64::min);
                topic.log().retain_from(floor);
            }
        }
    }

    /// Every origin's replicas for `/stats`; `None` when there are none.
    pub fn stats(&self) -> Option<Vec<ReplicaStats>> {
        let origins = self.origins();
        (!origins.is_empty()).then(|| origins.iter().map(|o| o.stats()).collect())
    }

    /// Runs [`Replicas::retain`] every [`RETAIN_INTERVAL`] until `stop`.
    pub async fn run_retention(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(RETAIN_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.retain(),
            }
        }
    }
}

/// One origin's replicas and the state of its link.
pub struct Origin {
    pub uid: String,
    dir: PathBuf,
    file: Mutex<OriginFile>,
    link: Mutex<LinkInfo>,
    /// Set by [`Replicas::forget`]: links are refused.
    forgotten: std::sync::atomic::AtomicBool,
    /// Bumped by every new link; an older one sees it and ends.
    generation: AtomicU64,
    superseded: Notify,
    topics: Mutex<BTreeMap<String, Arc<ReplicaTopic>>>,
}

#[derive(Default)]
struct LinkInfo {
    /// The generation of the link being served.
    connected: Option<u64>,
    /// When the link came or went.
    since: Option<Instant>,
    /// When the last progress tick was applied.
    last_tick: Option<Instant>,
}

/// A served link: ends the origin's connected state when dropped.
pub struct LinkGuard {
    origin: Arc<Origin>,
    generation: u64,
}

impl LinkGuard {
    /// Resolves once a newer link of the same origin took over.
    pub async fn superseded(&self) {
        loop {
            let notified = self.origin.superseded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.origin.generation.load(Ordering::Acquire) != self.generation {
                return;
            }
            notified.await;
        }
    }

    /// A progress tick was applied.
    pub fn ticked(&self) {
        self.origin.link.lock().last_tick = Some(Instant::now());
    }
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let mut link = self.origin.link.lock();
        if link.connected == Some(self.generation) {
            *link = LinkInfo {
                connected: None,
                since: Some(Instant::now()),
                last_tick: None,
            };
            drop(link);
            self.origin.file.lock().last_seen = unix_secs();
            let _ = self.origin.save();
        }
    }
}

impl Origin {
    /// A link from this origin starts; an older one is told to end. Blocking
    /// (writes `origin.json`).
    /// A fenced origin is refused, unless `retired` names the promotion
    /// that fenced it and the promotion is complete: the origin retired
    /// its copy, and a fresh replica starts.
    pub fn attach(
        self: &Arc<Self>,
        address: &str,
        hostname: &str,
        retired: u64,
    ) -> Result<LinkGuard, AttachError> {
        let mut link = self.link.lock();
        if self.forgotten.load(Ordering::Acquire) {
            return Err(AttachError::Io(io::Error::other(
                "this origin is being forgotten; try again",
            )));
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.superseded.notify_waiters();
        {
            let mut file = self.file.lock();
            if let Some(at) = file.promoted_at {
                // Done once every replica topic went (a crash can leave a
                // `promoted_below` entry behind; the topic decides).
                let done = self.topics.lock().is_empty();
                if retired != at || !done {
                    return Err(AttachError::Promoted(Fence {
                        promoted_at: at,
                        stored: file.fence.clone(),
                    }));
                }
                tracing::info!(origin = address, uid = %self.uid, "the origin retired its copy; replicating it anew");
                file.promoted_at = None;
                file.fence.clear();
                file.promoted_below.clear();
                file.channels.clear();
            }
        }
        *link = LinkInfo {
            connected: Some(generation),
            since: Some(Instant::now()),
            last_tick: None,
        };
        drop(link);
        {
            let mut file = self.file.lock();
            file.address = address.to_string();
            file.hostname = hostname.to_string();
            file.last_seen = unix_secs();
        }
        self.save()?;
        Ok(LinkGuard {
            origin: self.clone(),
            generation,
        })
    }

    /// Fences the origin for a promotion (or finds it fenced by one cut
    /// short): from now on its links are refused, and a live one ends.
    /// `None` when it is connected. Blocking (writes `origin.json`).
    pub fn fence(&self) -> io::Result<Option<Fence>> {
        let link = self.link.lock();
        if link.connected.is_some() {
            return Ok(None);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.superseded.notify_waiters();
        let fence = {
            let mut file = self.file.lock();
            if file.promoted_at.is_none() {
                file.promoted_at = Some(unix_ms());
                file.fence = self
                    .topics()
                    .iter()
                    .map(|t| (t.name.clone(), t.log().end_seq()))
                    .collect();
            }
            Fence {
                promoted_at: file.promoted_at.unwrap_or_default(),
                stored: file.fence.clone(),
            }
        };
        drop(link);
        self.save()?;
        Ok(Some(fence))
    }

    /// Where a promotion of `topic` resumes: seqs below were adopted.
    pub fn promoted_below(&self, topic: &str) -> u64 {
        self.file
            .lock()
            .promoted_below
            .get(topic)
            .copied()
            .unwrap_or(0)
    }

    /// Records that the seqs of `topic` below `seq` were adopted (`None`:
    /// the topic is done). Blocking.
    pub fn set_promoted_below(&self, topic: &str, seq: Option<u64>) -> io::Result<()> {
        {
            let mut file = self.file.lock();
            match seq {
                Some(seq) => file.promoted_below.insert(topic.to_string(), seq),
                None => file.promoted_below.remove(topic),
            };
        }
        self.save()
    }

    /// How long the origin has been away; `None` while connected.
    pub fn away_for(&self) -> Option<Duration> {
        let link = self.link.lock();
        if link.connected.is_some() {
            return None;
        }
        Some(match link.since {
            Some(since) => since.elapsed(),
            None => {
                let last_seen = self.file.lock().last_seen;
                Duration::from_secs(unix_secs().saturating_sub(last_seen).max(0) as u64)
            }
        })
    }

    fn save(&self) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(&*self.file.lock())?;
        write_atomically(&self.dir.join(ORIGIN_FILE), &data)
    }

    fn set_channel_settings(
        &self,
        topic: &str,
        channel: &str,
        settings: Option<ChannelSettings>,
    ) -> io::Result<()> {
        {
            let mut file = self.file.lock();
            let channels = file.channels.entry(topic.to_string()).or_default();
            let before = match settings {
                Some(s) => channels.insert(channel.to_string(), s),
                None => channels.remove(channel),
            };
            if before == settings {
                return Ok(());
            }
        }
        self.save()
    }

    pub fn topics(&self) -> Vec<Arc<ReplicaTopic>> {
        self.topics.lock().values().cloned().collect()
    }

    pub fn file(&self) -> OriginFile {
        self.file.lock().clone()
    }

    pub fn connected(&self) -> bool {
        self.link.lock().connected.is_some()
    }

    /// How far behind its origin the replica may be: since the last applied
    /// tick while connected (since the connection before the first), since
    /// the disconnect (or this node's start) otherwise.
    pub fn lag(&self) -> Option<Duration> {
        let link = self.link.lock();
        link.last_tick.or(link.since).map(|at| at.elapsed())
    }

    fn stats(&self) -> ReplicaStats {
        let file = self.file();
        let topics: Vec<ReplicaTopicStats> = self.topics().iter().map(|t| t.stats(&file)).collect();
        ReplicaStats {
            origin: file.address,
            origin_id: self.uid.clone(),
            hostname: file.hostname,
            connected: self.connected(),
            last_seen: file.last_seen,
            depth: topics.iter().map(|t| t.depth).sum(),
            lag_ms: self.lag().map(|d| d.as_millis() as u64),
            promoted_at: file.promoted_at,
            topics,
        }
    }
}

/// One topic's replica: its log, its channels' journals, its `topic.meta`.
pub struct ReplicaTopic {
    pub name: String,
    log: Mutex<Arc<TopicLog>>,
    meta: Mutex<TopicMeta>,
    channels: Mutex<BTreeMap<String, Arc<Journal>>>,
}

impl ReplicaTopic {
    pub fn log(&self) -> Arc<TopicLog> {
        self.log.lock().clone()
    }

    pub fn meta(&self) -> TopicMeta {
        *self.meta.lock()
    }

    /// Records the origin's topic state; writes `topic.meta` when it changed.
    /// Blocking.
    pub fn set_meta(&self, meta: TopicMeta) -> io::Result<()> {
        let mut current = self.meta.lock();
        if *current == meta {
            return Ok(());
        }
        self.log().write_meta(&meta)?;
        *current = meta;
        Ok(())
    }

    pub fn channels(&self) -> Vec<(String, Arc<Journal>)> {
        self.channels
            .lock()
            .iter()
            .map(|(n, j)| (n.clone(), j.clone()))
            .collect()
    }

    /// Messages the topic holds for no channel yet (not released to them).
    pub fn backlog(&self) -> u64 {
        self.log()
            .end_seq()
            .saturating_sub(self.meta().backlog_floor)
    }

    /// Messages a channel has not finished.
    pub fn channel_depth(&self, journal: &Journal) -> u64 {
        let end = self.log().end_seq().min(self.meta().backlog_floor);
        let floor = journal.floor();
        end.saturating_sub(floor)
            .saturating_sub(journal.finished_at_or_above(floor))
    }

    fn stats(&self, file: &OriginFile) -> ReplicaTopicStats {
        let settings = file.channels.get(&self.name);
        let channels: Vec<ReplicaChannelStats> = self
            .channels()
            .iter()
            .map(|(name, journal)| ReplicaChannelStats {
                channel_name: name.clone(),
                depth: self.channel_depth(journal),
                paused: settings.and_then(|s| s.get(name)).is_some_and(|s| s.paused),
            })
            .collect();
        let backlog = self.backlog();
        ReplicaTopicStats {
            topic_name: self.name.clone(),
            stored_seq: self.log().visible_end(),
            backlog,
            depth: backlog + channels.iter().map(|c| c.depth).sum::<u64>(),
            channels,
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
