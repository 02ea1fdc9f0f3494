//! The origin side of replication (#18, docs/replication-design.md): every
//! `--replicate-to` peer gets a link that ships the log-mode topics' records
//! as the log stores them, and their channels' progress. A publish is
//! answered once every peer in sync has stored it too ([`Replication::stored`]).
//!
//! The node is seen through [`TopicView`]s that it hands over on demand, so
//! that this module does not reach into topics and channels.

mod link;

use crate::log::{Journal, TopicLog};
use crate::replica::ChannelSettings;
use crate::topic::PutError;
use link::{Link, Progress};
use nsq::api::PeerStats;
use nsq::protocol::repl::Fence;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Seqs a link may ship past what the origin has fsynced. A restarted origin
/// skips this many seqs, so that it never reuses one a peer holds from
/// before its crash.
pub const SHIP_WINDOW: u64 = 65_536;

/// One log-mode topic as replication sees it.
pub struct TopicView {
    pub name: String,
    pub log: Arc<TopicLog>,
    /// Seqs below this went to the channels (the topic's backlog floor).
    pub released: u64,
    pub paused: bool,
    pub channels: Vec<ChannelView>,
}

/// One cursor channel of a [`TopicView`].
pub struct ChannelView {
    pub name: String,
    pub journal: Arc<Journal>,
    pub settings: ChannelSettings,
}

impl TopicView {
    /// The lowest seq some channel (or the backlog) still needs: a peer
    /// needs nothing below it.
    fn floor(&self) -> u64 {
        self.channels
            .iter()
            .map(|c| c.journal.floor())
            .fold(self.released, u64::min)
    }
}

/// Hands the node's log-mode topics over.
pub type Topics = Box<dyn Fn() -> Vec<TopicView> + Send + Sync>;

/// Who this origin is, as its hello says.
pub struct Identity {
    pub uid: String,
    pub address: String,
    pub hostname: String,
    pub version: String,
}

/// What the links are configured with.
pub struct Settings {
    pub identity: Identity,
    pub peers: Vec<String>,
    pub required: bool,
    pub timeout: Duration,
    pub max_lag: Duration,
    pub max_msg_size: u64,
    /// How a link connects: TLS and AUTH as a client would.
    pub client: nsq::Config,
    /// The log writer's rounds: a link ships what each one wrote.
    pub writer: Arc<crate::log::LogWriter>,
}

pub struct Replication {
    links: Vec<Arc<Link>>,
    required: bool,
    timeout: Duration,
}

impl Replication {
    /// Starts a link per peer and the progress collector, until `stop`.
    pub fn start(settings: Settings, topics: Topics, stop: CancellationToken) -> Arc<Replication> {
        let topics = Arc::new(topics);
        let settings = Arc::new(settings);
        let links: Vec<Arc<Link>> = settings
            .peers
            .iter()
            .map(|peer| Link::new(peer.clone()))
            .collect();
        for link in &links {
            tokio::spawn(
                link.clone()
                    .run(settings.clone(), topics.clone(), stop.clone()),
            );
        }
        let period = (settings.max_lag / 4).max(Duration::from_millis(10));
        tokio::spawn(collect(links.clone(), topics, period, stop));
        Arc::new(Replication {
            links,
            required: settings.required,
            timeout: settings.timeout,
        })
    }

    /// `--replication-required`: refuses a publish up front, before it is
    /// stored here, while a peer is not in sync.
    pub fn admit(&self) -> Result<(), PutError> {
        if !self.required {
            return Ok(());
        }
        match self.links.iter().find(|l| !l.is_synced()) {
            Some(link) => Err(PutError::Unreplicated(format!(
                "peer {} is not in sync",
                link.address
            ))),
            None => Ok(()),
        }
    }

    /// Waits until every peer in sync has stored `topic`'s seqs below `end`.
    /// A peer that does not answer within `--replication-timeout` is dropped
    /// (and caught up later). With `--replication-required` a peer that
    /// drops or is not in sync fails the publish; without, it is not waited
    /// for.
    pub async fn stored(&self, topic: &str, log: &Arc<TopicLog>, end: u64) -> Result<(), PutError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut waits = Vec::with_capacity(self.links.len());
        for link in &self.links {
            match link.stream_for_publish(topic, log) {
                Some(stream) => waits.push((link, stream)),
                None if self.required => {
                    return Err(PutError::Unreplicated(format!(
                        "peer {} is not in sync",
                        link.address
                    )))
                }
                None => {}
            }
        }
        for (link, stream) in waits {
            let stored = tokio::time::timeout_at(deadline, stream.wait_stored(end)).await;
            let failure = match stored {
                Ok(true) => continue,
                Ok(false) => format!("peer {} dropped", link.address),
                Err(_) => {
                    link.fail("no answer within --replication-timeout");
                    format!(
                        "peer {} did not answer within --replication-timeout",
                        link.address
                    )
                }
            };
            if self.required {
                return Err(PutError::Unreplicated(failure));
            }
        }
        Ok(())
    }

    /// Every peer's link, for `/stats`.
    pub fn stats(&self) -> Vec<PeerStats> {
        self.links.iter().map(|l| l.stats()).collect()
    }

    /// `None` when `peer` is not a `--replicate-to` address; otherwise
    /// the fence it answered with, if it promoted this node's replicas.
    pub fn fence_of(&self, peer: &str) -> Option<Option<Fence>> {
        let link = self.links.iter().find(|l| l.address == peer)?;
        Some(link.fence())
    }

    /// This node retired its copy of what `peer` promoted at `promoted_at`:
    /// the link reconnects now and the peer replicates it anew.
    pub fn retired(&self, peer: &str, promoted_at: u64) {
        if let Some(link) = self.links.iter().find(|l| l.address == peer) {
            link.retired(promoted_at);
        }
    }
}

/// What the collector last sent of a channel.
#[derive(PartialEq)]
struct Sent {
    settings: ChannelSettings,
}

/// Every `max_lag / 4`: takes each replicated channel's changes (one take
/// feeds every link), notes topic and channel changes, and ends the batch
/// with a tick that peers acknowledge.
async fn collect(
    links: Vec<Arc<Link>>,
    topics: Arc<Topics>,
    period: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut channels: HashMap<(String, String), Sent> = HashMap::new();
    let mut metas: BTreeMap<String, (u64, bool)> = BTreeMap::new();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let views = (topics)();
        let mut batch = Vec::new();
        let mut seen_channels = HashMap::with_capacity(channels.len());
        for view in &views {
            for channel in &view.channels {
                let key = (view.name.clone(), channel.name.clone());
                let sent = Sent {
                    settings: channel.settings,
                };
                let changed = channels.remove(&key).is_none_or(|before| before != sent);
                let taken = channel.journal.take_tap(false);
                let snapshot = match (taken.snapshot, changed) {
                    (Some(snapshot), _) => Some(snapshot),
                    (None, true) => Some(channel.journal.snapshot()),
                    (None, false) => None,
                };
                match snapshot {
                    Some(snapshot) => batch.push(Progress::Channel {
                        topic: view.name.clone(),
                        log: view.log.clone(),
                        name: channel.name.clone(),
                        settings: channel.settings,
                        snapshot,
                    }),
                    None if !taken.deltas.is_empty() => batch.push(Progress::Deltas {
                        topic: view.name.clone(),
                        log: view.log.clone(),
                        name: channel.name.clone(),
                        journal: channel.journal.clone(),
                        settings: channel.settings,
                        deltas: taken.deltas,
                    }),
                    None => {}
                }
                seen_channels.insert(key, sent);
            }
            // The topic's release point after its channels: a peer must
            // never see it raised before it knows the channels it was raised
            // for, or its retention would let go of what they need.
            let meta = (view.released, view.paused);
            if metas.insert(view.name.clone(), meta) != Some(meta) {
                batch.push(Progress::TopicState {
                    topic: view.name.clone(),
                    log: view.log.clone(),
                    released: view.released,
                    paused: view.paused,
                });
            }
        }
        // A set, not a scan of the views per name: with thousands of topics
        // the scans made each tick quadratic.
        let alive: HashSet<&str> = views.iter().map(|v| v.name.as_str()).collect();
        for (topic, channel) in channels.into_keys() {
            if alive.contains(topic.as_str()) {
                batch.push(Progress::DropChannel {
                    topic,
                    name: channel,
                });
            }
        }
        channels = seen_channels;
        metas.retain(|name, _| {
            let alive = alive.contains(name.as_str());
            if !alive {
                batch.push(Progress::DropTopic {
                    topic: name.clone(),
                });
            }
            alive
        });
        n += 1;
        batch.push(Progress::Tick {
            n,
            unix_ns: unix_nanos(),
        });
        let batch = Arc::new(batch);
        for link in &links {
            link.progress(&batch);
        }
    }
}

fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
