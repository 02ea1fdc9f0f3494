//! REPL: another nsqd (the origin) keeps replicas of its topics here. After
//! `REPL <version>` and its hello the connection is a replication link for
//! good: frames of `nsq::protocol::repl` both ways, stored through
//! [`crate::replica`]. See docs/replication-design.md.

use super::{Closed, Session};
use crate::command::ClientError;
use crate::log::{Journal, TopicLog, TopicMeta};
use crate::node::blocking;
use crate::replica::{
    valid_uid, AttachError, ChannelSettings, LinkGuard, Origin, ReplicaTopic, Replicas,
};
use bytes::{Bytes, BytesMut};
use nsq::protocol::repl::{max_frame, ReplHello, ToOrigin, ToPeer, REPL_VERSION};
use nsq::protocol::{decode_frame, FrameType};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A link with no frame for this long is dead (the origin pings every
/// second while idle).
const LINK_TIMEOUT: Duration = Duration::from_secs(10);

/// What one link has bound: the origin's ids for topics and channels, and
/// the names it described (at `S` the rest is dropped).
struct Link {
    replicas: Arc<Replicas>,
    origin: Arc<Origin>,
    guard: LinkGuard,
    topics: HashMap<u32, Arc<ReplicaTopic>>,
    channels: HashMap<(u32, u32), (String, Arc<Journal>)>,
    named: BTreeSet<(String, Option<String>)>,
    /// Appends whose commit the acknowledging task waits for.
    stored: mpsc::UnboundedSender<Stored>,
}

/// An `M` appended: `W` goes out once the log has `end` stored.
struct Stored {
    tid: u32,
    end: u64,
    log: Arc<TopicLog>,
    topic: Arc<ReplicaTopic>,
}

impl Session {
    /// REPL: serves the link until it ends; how the session then closes.
    pub(super) async fn repl(&mut self, version: u32, hello: Bytes) -> Closed {
        let link = match self.start_link(version, &hello).await {
            Ok(link) => link,
            Err(err) => {
                return self.send_error(err).await.unwrap_or(Closed::AfterError);
            }
        };
        self.serve_link(link).await
    }

    async fn start_link(
        &mut self,
        version: u32,
        hello: &[u8],
    ) -> Result<(Link, mpsc::UnboundedReceiver<Stored>), ClientError> {
        let Some(replicas) = self.node.replicas.clone() else {
            return Err(ClientError::invalid(
                "REPL needs --mem-queue-size=0 on the peer",
            ));
        };
        if version != REPL_VERSION {
            return Err(ClientError::invalid(format!(
                "REPL version {version} not supported (this nsqd speaks {REPL_VERSION})"
            )));
        }
        let hello: ReplHello = serde_json::from_slice(hello)
            .map_err(|e| ClientError::fatal("E_BAD_BODY", format!("REPL invalid hello: {e}")))?;
        if !valid_uid(&hello.uid) {
            return Err(ClientError::fatal(
                "E_BAD_BODY",
                "REPL uid is not 32 lowercase hex digits",
            ));
        }
        if hello.uid == self.node.uid {
            return Err(ClientError::invalid("REPL from this nsqd itself"));
        }
        if self.node.auth.is_some() && !self.client.auth().is_some_and(|a| a.has_authorizations()) {
            return Err(ClientError::fatal(
                "E_AUTH_FIRST",
                "AUTH required before REPL",
            ));
        }
        let failed =
            |e: std::io::Error| ClientError::fatal("E_REPL_FAILED", format!("REPL failed {e}"));
        let origin = blocking(|| replicas.origin(&hello.uid)).map_err(failed)?;
        let attached =
            blocking(|| origin.attach(&hello.address, &hello.hostname, hello.retired_fence));
        let guard = match attached {
            Ok(guard) => guard,
            Err(AttachError::Io(e)) => return Err(failed(e)),
            Err(AttachError::Promoted(fence)) => {
                tracing::warn!(origin = %hello.address, uid = %hello.uid, "refused a replication link: this origin was promoted here");
                let body = serde_json::to_string(&fence).expect("a plain struct serializes");
                return Err(ClientError::fatal("E_REPL_PROMOTED", body));
            }
        };
        tracing::info!(origin = %hello.address, uid = %hello.uid, client = self.client.id, "replication link from an origin");
        // The link has its own pings; reads time out after LINK_TIMEOUT.
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        self.heartbeat_interval = Some(LINK_TIMEOUT / 2);
        let mut topics = Vec::new();
        for topic in origin.topics() {
            topics.push((
                topic.name.clone(),
                stored_end(&replicas, &origin, &topic).await,
            ));
        }
        let mut frame = BytesMut::new();
        ToOrigin::Hello {
            uid: self.node.uid.clone(),
            max_msg_size: self.node.opts.max_msg_size as u64,
            topics,
        }
        .encode(&mut frame);
        self.respond(&frame).await?;
        let (stored, stored_rx) = mpsc::unbounded_channel();
        let link = Link {
            replicas,
            origin,
            guard,
            topics: HashMap::new(),
            channels: HashMap::new(),
            named: BTreeSet::new(),
            stored,
        };
        Ok((link, stored_rx))
    }

    async fn serve_link(
        &mut self,
        (mut link, stored_rx): (Link, mpsc::UnboundedReceiver<Stored>),
    ) -> Closed {
        let acks = tokio::spawn(acknowledge(
            stored_rx,
            self.out.clone(),
            self.client.clone(),
            link.replicas.clone(),
            link.origin.clone(),
        ));
        let max = max_frame(self.node.opts.max_msg_size as u64);
        let closed = loop {
            let frame = match decode_frame(&mut self.input, max) {
                Ok(Some(frame)) if frame.frame_type == FrameType::Response => frame,
                Ok(Some(frame)) => {
                    let err = ClientError::invalid(format!(
                        "REPL unexpected {:?} frame",
                        frame.frame_type
                    ));
                    break self.send_error(err).await.unwrap_or(Closed::AfterError);
                }
                Ok(None) => {
                    tokio::select! {
                        more = self.fill() => if !more { break Closed::Quietly },
                        _ = link.guard.superseded() => {
                            tracing::info!(uid = %link.origin.uid, "a newer link from the origin took over");
                            break Closed::Quietly;
                        }
                    }
                    continue;
                }
                Err(e) => {
                    let err = ClientError::invalid(format!("REPL bad frame: {e}"));
                    break self.send_error(err).await.unwrap_or(Closed::AfterError);
                }
            };
            if let Err(err) = self.on_frame(&mut link, frame.data).await {
                tracing::warn!(uid = %link.origin.uid, error = %err.text(), "replication link failed");
                break self.send_error(err).await.unwrap_or(Closed::AfterError);
            }
        };
        // Acknowledges what was stored before the link ended, then stops;
        // the origin counts as connected until then, so that a promotion
        // never races a write (or a reopen) of this link.
        let Link { guard, stored, .. } = link;
        drop(stored);
        let _ = acks.await;
        drop(guard);
        closed
    }

    async fn on_frame(&mut self, link: &mut Link, data: Bytes) -> Result<(), ClientError> {
        let frame = ToPeer::decode(data).map_err(|e| ClientError::invalid(format!("REPL {e}")))?;
        let failed =
            |e: std::io::Error| ClientError::fatal("E_REPL_FAILED", format!("REPL failed {e}"));
        let invalid = |e: std::io::Error| ClientError::invalid(format!("REPL {e}"));
        match frame {
            ToPeer::Open { tid, name, from } => {
                self.check_auth("REPL", &name, "").await?;
                let topic =
                    blocking(|| link.replicas.topic(&link.origin, &name)).map_err(failed)?;
                topic.log().skip_to(from);
                link.named.insert((name, None));
                link.topics.insert(tid, topic);
            }
            ToPeer::Msgs { tid, end, records } => {
                let topic = link.topic(tid)?.clone();
                let log = topic.log();
                log.append_encoded(&records).map_err(invalid)?;
                log.skip_to(end);
                let end = log.end_seq();
                // The acknowledging task only ends after the link does.
                let _ = link.stored.send(Stored {
                    tid,
                    end,
                    log,
                    topic,
                });
            }
            ToPeer::Channel {
                tid,
                cid,
                name,
                paused,
                max_attempts,
                msg_ttl_ms,
                snapshot,
            } => {
                let topic = link.topic(tid)?.clone();
                let settings = ChannelSettings {
                    paused,
                    max_attempts: (max_attempts != 0).then_some(max_attempts),
                    msg_ttl_ms: (msg_ttl_ms != 0).then_some(msg_ttl_ms),
                };
                let journal = blocking(|| {
                    link.replicas
                        .channel(&link.origin, &topic, &name, settings, &snapshot)
                })
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::InvalidData => invalid(e),
                    _ => failed(e),
                })?;
                link.named.insert((topic.name.clone(), Some(name.clone())));
                link.channels.insert((tid, cid), (name, journal));
            }
            ToPeer::Deltas { tid, cid, records } => {
                let (_, journal) = link.channels.get(&(tid, cid)).ok_or_else(|| {
                    ClientError::invalid(format!("REPL unknown channel {tid}/{cid}"))
                })?;
                journal.apply_records(&records).map_err(invalid)?;
            }
            ToPeer::TopicState {
                tid,
                backlog_floor,
                released_end,
            } => {
                let topic = link.topic(tid)?.clone();
                let meta = TopicMeta {
                    backlog_floor,
                    released_end,
                };
                blocking(|| topic.set_meta(meta)).map_err(failed)?;
            }
            ToPeer::DropChannel { tid, cid } => {
                let topic = link.topic(tid)?.clone();
                if let Some((name, _)) = link.channels.remove(&(tid, cid)) {
                    link.named.remove(&(topic.name.clone(), Some(name.clone())));
                    blocking(|| link.replicas.drop_channel(&link.origin, &topic, &name))
                        .map_err(failed)?;
                }
            }
            ToPeer::DropTopic { tid } => {
                let topic = link.topic(tid)?.clone();
                link.topics.remove(&tid);
                link.channels.retain(|(t, _), _| *t != tid);
                link.named.retain(|(t, _)| *t != topic.name);
                blocking(|| link.replicas.drop_topic(&link.origin, &topic.name)).map_err(failed)?;
            }
            ToPeer::SyncDone => blocking(|| link.drop_unnamed()).map_err(failed)?,
            ToPeer::Tick { n, .. } => {
                link.guard.ticked();
                self.reply(ToOrigin::Applied { n }).await?;
            }
            ToPeer::Ping { n } => self.reply(ToOrigin::Pong { n }).await?,
        }
        Ok(())
    }

    async fn reply(&self, frame: ToOrigin) -> Result<(), ClientError> {
        let mut data = BytesMut::new();
        frame.encode(&mut data);
        self.respond(&data).await
    }
}

impl Link {
    fn topic(&self, tid: u32) -> Result<&Arc<ReplicaTopic>, ClientError> {
        self.topics
            .get(&tid)
            .ok_or_else(|| ClientError::invalid(format!("REPL unknown topic {tid}")))
    }

    /// `S`: the origin has described everything it has; replicas of topics
    /// and channels it did not name were deleted there meanwhile. Blocking.
    fn drop_unnamed(&self) -> std::io::Result<()> {
        for topic in self.origin.topics() {
            if !self.named.contains(&(topic.name.clone(), None)) {
                tracing::info!(uid = %self.origin.uid, topic = %topic.name, "dropping the replica of a topic its origin no longer has");
                self.replicas.drop_topic(&self.origin, &topic.name)?;
                continue;
            }
            for (channel, _) in topic.channels() {
                if !self
                    .named
                    .contains(&(topic.name.clone(), Some(channel.clone())))
                {
                    tracing::info!(uid = %self.origin.uid, topic = %topic.name, %channel, "dropping the replica of a channel its origin no longer has");
                    self.replicas.drop_channel(&self.origin, &topic, &channel)?;
                }
            }
        }
        Ok(())
    }
}

/// What a replica log holds for sure: its end once everything appended is
/// committed. A log whose last batch failed is opened again first, so that
/// the origin sends the withdrawn records again.
async fn stored_end(replicas: &Replicas, origin: &Origin, topic: &ReplicaTopic) -> u64 {
    let log = topic.log();
    let end = log.end_seq();
    if log.committed(end).await.is_ok() {
        return end;
    }
    if let Err(e) = blocking(|| replicas.reopen_log(origin, topic)) {
        tracing::error!(topic = %topic.name, error = %e, "could not reopen a replica log");
    }
    topic.log().end_seq()
}

/// Sends `W` for each append once it is stored, in order. A failed write
/// ends the link; its log is opened again so that its end is what its
/// files hold, and the next link asks for the rest again.
async fn acknowledge(
    mut stored: mpsc::UnboundedReceiver<Stored>,
    out: Arc<crate::output::Output>,
    client: Arc<crate::client_conn::ClientConn>,
    replicas: Arc<Replicas>,
    origin: Arc<Origin>,
) {
    let mut frame = BytesMut::new();
    while let Some(Stored {
        tid,
        end,
        log,
        topic,
    }) = stored.recv().await
    {
        if let Err(e) = log.committed(end).await {
            tracing::error!(uid = %origin.uid, topic = %topic.name, error = %e, "replica write failed; ending the link");
            let text = format!("E_REPL_FAILED replica write failed {e}");
            let _ = out.send(FrameType::Error, text.as_bytes()).await;
            client.close();
            let (replicas, origin) = (replicas.clone(), origin.clone());
            let reopened =
                tokio::task::spawn_blocking(move || replicas.reopen_log(&origin, &topic)).await;
            if let Ok(Err(e)) = reopened {
                tracing::error!(error = %e, "could not reopen a replica log");
            }
            return;
        }
        frame.clear();
        ToOrigin::Stored { tid, end }.encode(&mut frame);
        if out.send(FrameType::Response, &frame).await.is_err() {
            client.close();
            return;
        }
    }
}

#[cfg(test)]
mod tests;
