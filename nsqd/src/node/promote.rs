//! Failover on the peer side of replication: a promotion turns the replicas
//! of an origin that is gone into this node's own topics and channels
//! (docs/replication-design.md §5), and a forget lets an origin go.
//! The origin side's answer to a promotion, retire, is here too.

use super::Node;
use crate::channel::Overrides;
use crate::log::{Disposition, PausePoint};
use crate::replica::{Origin, ReplicaTopic, Replicas};
use crate::topic::{Adopted, PutError, Topic};
use nsq::api::{Promoted, Retired};
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Messages adopted per batch, and their body bytes at most.
const ADOPT_BATCH: usize = 1024;
const ADOPT_BATCH_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("this nsqd keeps no replicas (it needs --mem-queue-size=0)")]
    NoReplicas,
    #[error("no replicas of origin {0}")]
    NotFound(String),
    #[error("origins {} all reported {name}: name one by its ID", ids.join(", "))]
    Ambiguous { name: String, ids: Vec<String> },
    #[error("origin {0} is connected: its replicas follow it still")]
    Connected(String),
    #[error("{0}")]
    Put(#[from] PutError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// [`Replicas::find`], with two origins at one address an error.
fn find(replicas: &Replicas, name: &str) -> Result<Option<Arc<Origin>>, PromoteError> {
    replicas.find(name).map_err(|ids| PromoteError::Ambiguous {
        name: name.to_string(),
        ids,
    })
}

impl Node {
    /// Promotes the replicas of `origin` (its uid or the address it
    /// reported), or of every origin not connected when `None`: see
    /// [`Node::promote_origin`]. Promotions take turns. Blocking.
    pub fn promote(&self, origin: Option<&str>) -> Result<Vec<Promoted>, PromoteError> {
        let replicas = self.replicas.as_ref().ok_or(PromoteError::NoReplicas)?;
        let _turn = self.promoting.lock();
        let chosen = match origin {
            Some(name) => {
                let found = find(replicas, name)?
                    .ok_or_else(|| PromoteError::NotFound(name.to_string()))?;
                if found.connected() {
                    return Err(PromoteError::Connected(name.to_string()));
                }
                vec![found]
            }
            None => replicas
                .origins()
                .into_iter()
                .filter(|o| !o.connected() && !o.topics().is_empty())
                .collect(),
        };
        let mut promoted = Vec::new();
        for origin in chosen {
            let address = origin.file().address;
            match self.promote_origin(replicas, &origin)? {
                Some(done) => promoted.push(done),
                None => return Err(PromoteError::Connected(address)),
            }
        }
        Ok(promoted)
    }

    /// Fences the origin first (its links are refused from then on), then
    /// appends each topic's unfinished messages to the local topic of the
    /// same name (created, and registered with the lookupds, if need be)
    /// with their attempts and due times, and removes the replica once
    /// that is on disk. A crash in between repeats at most one batch.
    /// `None` when the origin connected meanwhile. Blocking.
    fn promote_origin(
        &self,
        replicas: &Replicas,
        origin: &Arc<Origin>,
    ) -> Result<Option<Promoted>, PromoteError> {
        // What the replicas hold is on disk before the fence names its end.
        replicas.writer().flush();
        let Some(fence) = origin.fence()? else {
            return Ok(None);
        };
        let file = origin.file();
        tracing::warn!(origin = %file.address, uid = %origin.uid, "promoting the replicas of an origin");
        let mut done = Promoted {
            origin: file.address.clone(),
            origin_id: origin.uid.clone(),
            topics: Vec::new(),
            messages: 0,
        };
        for replica in origin.topics() {
            let end = fence.stored.get(&replica.name).copied();
            let messages = self.promote_topic(replicas, origin, &replica, end)?;
            tracing::info!(origin = %file.address, topic = %replica.name, messages, "promoted a replica");
            done.topics.push(replica.name.clone());
            done.messages += messages;
        }
        Ok(Some(done))
    }

    /// One topic of [`Node::promote_origin`], up to `end` (what the fence
    /// says this node held); returns the messages adopted.
    fn promote_topic(
        &self,
        replicas: &Replicas,
        origin: &Origin,
        replica: &ReplicaTopic,
        end: Option<u64>,
    ) -> Result<u64, PromoteError> {
        let topic = self.get_or_create_topic(&replica.name)?;
        let settings = origin
            .file()
            .channels
            .get(&replica.name)
            .cloned()
            .unwrap_or_default();
        let channels = replica.channels();
        for (name, _) in &channels {
            let existed = topic.channel(name).is_some();
            let channel = self.get_or_create_channel(&topic, name)?;
            let Some(s) = settings.get(name).filter(|_| !existed) else {
                continue;
            };
            if s.max_attempts.is_some() || s.msg_ttl_ms.is_some() {
                channel.set_overrides(Overrides {
                    max_attempts: s.max_attempts,
                    msg_ttl: s.msg_ttl_ms.map(Duration::from_millis),
                });
            }
            if s.paused {
                channel.pause();
            }
        }
        self.persist_metadata()?;

        let log = replica.log();
        let released = replica.meta().backlog_floor;
        let floor = channels
            .iter()
            .map(|(_, journal)| journal.floor())
            .fold(released, u64::min);
        let from = floor
            .max(origin.promoted_below(&replica.name))
            .max(log.first_seq());
        let limit = end.map_or(log.visible_end(), |end| end.min(log.visible_end()));
        let mut reader = log.reader(from);
        let (mut batch, mut bytes, mut adopted) = (Vec::new(), 0, 0);
        while let Some(entry) = reader.next(limit)? {
            let states = match entry.seq >= released {
                true => None,
                false => {
                    let states: BTreeMap<String, Disposition> = channels
                        .iter()
                        .map(|(name, journal)| (name.clone(), journal.classify(entry.seq)))
                        .collect();
                    if states.values().all(|d| *d == Disposition::Finished) {
                        continue;
                    }
                    Some(states)
                }
            };
            bytes += entry.msg.body.len();
            batch.push(Adopted {
                msg: entry.msg,
                deliver_at: entry.deliver_at,
                channels: states,
            });
            if batch.len() >= ADOPT_BATCH || bytes >= ADOPT_BATCH_BYTES {
                adopted += self.adopt(replicas, origin, &topic, &mut batch, reader.position())?;
                bytes = 0;
            }
        }
        adopted += self.adopt(replicas, origin, &topic, &mut batch, limit)?;
        // Also forgets where the promotion of this topic stood.
        replicas.drop_topic(origin, &replica.name)?;
        Ok(adopted)
    }

    /// Appends a batch, waits until it is on disk, then records that the
    /// replica's seqs below `below` are adopted. A batch the disk refused
    /// fails the promotion, and the replica stays.
    fn adopt(
        &self,
        replicas: &Replicas,
        origin: &Origin,
        topic: &Topic,
        batch: &mut Vec<Adopted>,
        below: u64,
    ) -> Result<u64, PromoteError> {
        let n = batch.len() as u64;
        if n > 0 {
            let end = topic.adopt(batch)?;
            batch.clear();
            replicas.writer().flush();
            let committed = tokio::runtime::Handle::current().block_on(topic.committed(end));
            committed.map_err(PutError::Backend)?;
            replicas.writer().pause(PausePoint::PromotionBatchAdopted);
        }
        origin.set_promoted_below(&topic.name, Some(below))?;
        Ok(n)
    }

    /// Forgets an origin here: its fence and any replica it still has.
    /// `Ok(false)` when no origin has that name. Blocking.
    pub fn forget_origin(&self, name: &str) -> Result<bool, PromoteError> {
        let replicas = self.replicas.as_ref().ok_or(PromoteError::NoReplicas)?;
        let _turn = self.promoting.lock();
        let Some(origin) = find(replicas, name)? else {
            return Ok(false);
        };
        match replicas.forget(&origin)? {
            true => Ok(true),
            false => Err(PromoteError::Connected(name.to_string())),
        }
    }

    /// Promotes, every second, each origin that has been away for
    /// `--replica-promote-after` (when set) and still has replicas here.
    pub async fn promote_when_away(self: Arc<Self>, after: Duration) {
        let stop = self.shutdown_token();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(replicas) = &self.replicas else {
                return;
            };
            for origin in replicas.origins() {
                let away = origin.away_for().is_some_and(|d| d >= after);
                if !away || origin.topics().is_empty() {
                    continue;
                }
                let node = self.clone();
                let uid = origin.uid.clone();
                let address = origin.file().address;
                tracing::warn!(origin = %address, after = ?after, "origin away for --replica-promote-after; promoting its replicas");
                let result = tokio::task::spawn_blocking(move || node.promote(Some(&uid))).await;
                match result {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(origin = %address, error = %e, "automatic promotion failed")
                    }
                    Err(e) => {
                        tracing::error!(origin = %address, error = %e, "automatic promotion panicked")
                    }
                }
            }
        }
    }

    /// On the old origin after a peer promoted its replicas: the messages
    /// the peer took over (the seqs below each topic's fenced end) are
    /// passed by every channel here, and the link to that peer starts a
    /// fresh replica. Messages this node took after the peer's copy stay.
    pub fn retire_copy(&self, peer: &str) -> Result<Retired, RetireError> {
        let replication = self.replication.get().ok_or(RetireError::NotAPeer)?;
        let fence = replication
            .fence_of(peer)
            .ok_or(RetireError::NotAPeer)?
            .ok_or(RetireError::NotFenced)?;
        let mut retired = Retired {
            peer: peer.to_string(),
            promoted_at: fence.promoted_at,
            topics: Vec::new(),
            messages: 0,
        };
        for (name, end) in &fence.stored {
            if let Some(topic) = self.topic(name) {
                retired.messages += topic.retire_below(*end);
                retired.topics.push(name.clone());
            }
        }
        // On disk before the peer lets go of its fence: a crash must not
        // bring back what the peer now delivers.
        if let Some(writer) = &self.channel_config.log_writer {
            writer.flush();
        }
        tracing::warn!(
            peer,
            topics = retired.topics.len(),
            "retired the copy a peer promoted"
        );
        replication.retired(peer, fence.promoted_at);
        Ok(retired)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error("not a --replicate-to peer")]
    NotAPeer,
    #[error("the peer has not promoted this node's replicas")]
    NotFenced,
}
