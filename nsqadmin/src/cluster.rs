//! What nsqadmin knows of the cluster, asked fresh of every nsqlookupd and
//! nsqd concurrently (through the `nsq` crate's typed HTTP clients). A node
//! that does not answer is reported by name and the rest is still shown;
//! only when none answers is the whole request an upstream error.

use crate::messages::DeadAction;
use crate::model::{self, older_version, Producer, ProducerTopic, TopicStats};
use crate::replication::{self, ActionDone, ReplicationAction};
use nsq::{HttpPool, LookupdHttp, NsqdHttp, TopicAction};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::future::Future;

/// A result from many nodes: what the answering ones said, and one line per
/// node that failed. `Err` means no node answered.
pub type Gathered<T> = Result<(T, Vec<String>), String>;

pub struct Cluster {
    pool: HttpPool,
    /// Changed at run time by `PUT /config/nsqlookupd_http_addresses`.
    lookupds: RwLock<Vec<String>>,
    nsqds: Vec<String>,
}

/// Runs `query` on every address at once, each answer with its address.
async fn ask_all<T, F, Fut>(addrs: &[String], query: F) -> Vec<(String, nsq::Result<T>)>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = nsq::Result<T>>,
{
    join_all(addrs.iter().map(|a| {
        let fut = query(a.clone());
        async move { (a.clone(), fut.await) }
    }))
    .await
}

/// Runs `query` on every address at once; keeps answers and failures apart.
async fn each<T, F, Fut>(addrs: &[String], query: F) -> (Vec<(String, T)>, Vec<String>)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = nsq::Result<T>>,
{
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (addr, answer) in ask_all(addrs, query).await {
        match answer {
            Ok(value) => ok.push((addr, value)),
            Err(e) => failed.push(e.to_string()),
        }
    }
    (ok, failed)
}

/// Polls every future to completion, concurrently, keeping their order. They
/// borrow the cluster, so they are polled in place rather than spawned.
pub(crate) async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut slots: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, fut) in pinned.iter_mut().enumerate() {
            if slots[i].is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => slots[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    slots.into_iter().map(|s| s.expect("completed")).collect()
}

/// `Err` when every node failed, else the answers with the failures as warnings.
fn gathered<T>(kind: &str, total: usize, value: T, failed: Vec<String>) -> Gathered<T> {
    if total > 0 && failed.len() == total {
        Err(format!("Failed to query any {kind}: {}", failed.join("\n")))
    } else {
        Ok((value, failed))
    }
}

impl Cluster {
    pub fn new(pool: HttpPool, lookupds: Vec<String>, nsqds: Vec<String>) -> Cluster {
        Cluster {
            pool,
            lookupds: RwLock::new(lookupds),
            nsqds,
        }
    }

    pub fn lookupds(&self) -> Vec<String> {
        self.lookupds.read().clone()
    }

    pub fn set_lookupds(&self, addrs: Vec<String>) {
        *self.lookupds.write() = addrs;
    }

    pub fn nsqds(&self) -> &[String] {
        &self.nsqds
    }

    /// Whether the cluster is found through lookupd (else: fixed nsqds).
    pub fn lookupd_mode(&self) -> bool {
        !self.lookupds.read().is_empty()
    }

    fn lookupd(&self, addr: &str) -> LookupdHttp {
        LookupdHttp::with_pool(addr, &self.pool)
    }

    fn nsqd(&self, addr: &str) -> NsqdHttp {
        NsqdHttp::with_pool(addr, &self.pool)
    }

    /// Every topic: the union of lookupds' `/topics`, or of nsqds' `/stats`.
    pub async fn topics(&self) -> Gathered<Vec<String>> {
        let lookupds = self.lookupds();
        let (kind, total, answers, failed) = if lookupds.is_empty() {
            let (ok, failed) = each(&self.nsqds, |a| async move {
                let stats = self.nsqd(&a).stats(None, None, false).await?;
                Ok(stats
                    .topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| t.topic_name)
                    .collect::<Vec<_>>())
            })
            .await;
            ("nsqd", self.nsqds.len(), ok, failed)
        } else {
            let (ok, failed) = each(
                &lookupds,
                |a| async move { self.lookupd(&a).topics().await },
            )
            .await;
            ("nsqlookupd", lookupds.len(), ok, failed)
        };
        let mut topics: Vec<String> = answers.into_iter().flat_map(|(_, t)| t).collect();
        topics.sort();
        topics.dedup();
        gathered(kind, total, topics, failed)
    }

    /// The channels lookupds know for `topic`.
    pub async fn lookupd_topic_channels(&self, topic: &str) -> Gathered<Vec<String>> {
        let lookupds = self.lookupds();
        let (ok, failed) = each(&lookupds, |a| async move {
            self.lookupd(&a).channels(topic).await
        })
        .await;
        let mut channels: Vec<String> = ok.into_iter().flat_map(|(_, c)| c).collect();
        channels.sort();
        channels.dedup();
        gathered("nsqlookupd", lookupds.len(), channels, failed)
    }

    /// Every nsqd: from lookupds' `/nodes` (merged, with which lookupd saw
    /// it from where), or from each nsqd's `/info` and `/stats`.
    pub async fn producers(&self) -> Gathered<Vec<Producer>> {
        let lookupds = self.lookupds();
        if lookupds.is_empty() {
            return self.nsqd_producers(None).await;
        }
        let (ok, failed) = each(&lookupds, |a| async move { self.lookupd(&a).nodes().await }).await;
        let mut by_tcp: BTreeMap<String, Producer> = BTreeMap::new();
        for (lookupd, nodes) in ok {
            for n in nodes.producers {
                let mut topics: Vec<ProducerTopic> = n
                    .topics
                    .iter()
                    .enumerate()
                    .map(|(i, t)| ProducerTopic {
                        topic: t.clone(),
                        tombstoned: n.tombstones.get(i).copied().unwrap_or(false),
                    })
                    .collect();
                topics.sort_by(|a, b| a.topic.cmp(&b.topic));
                let remote = if n.remote_address.is_empty() {
                    "N/A".to_string()
                } else {
                    n.remote_address.clone()
                };
                let key = nsq::api::join_host_port(&n.broadcast_address, n.tcp_port);
                let p = by_tcp.entry(key).or_insert_with(|| Producer {
                    remote_addresses: Some(Vec::new()),
                    remote_address: n.remote_address.clone(),
                    hostname: n.hostname.clone(),
                    broadcast_address: n.broadcast_address.clone(),
                    tcp_port: n.tcp_port,
                    http_port: n.http_port,
                    version: n.version.clone(),
                    topics,
                    out_of_date: false,
                    unsynced_peers: Vec::new(),
                });
                if let Some(r) = &mut p.remote_addresses {
                    r.push(format!("{lookupd}/{remote}"));
                }
            }
        }
        let mut producers: Vec<Producer> = by_tcp.into_values().collect();
        mark_out_of_date(&mut producers);
        producers.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        gathered("nsqlookupd", lookupds.len(), producers, failed)
    }

    /// nsqds named on the command line (those having `topic`, if given).
    async fn nsqd_producers(&self, topic: Option<&str>) -> Gathered<Vec<Producer>> {
        let (ok, failed) = each(&self.nsqds, |a| async move {
            let nsqd = self.nsqd(&a);
            let stats = nsqd.stats(topic, None, false).await?;
            let topics: Vec<ProducerTopic> = stats
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| ProducerTopic {
                    topic: t.topic_name,
                    tombstoned: false,
                })
                .collect();
            if topic.is_some() && topics.is_empty() {
                return Ok(None);
            }
            let info = nsqd.info().await?;
            let (host, port) = split_host_port(&a);
            Ok(Some(Producer {
                remote_addresses: None,
                remote_address: String::new(),
                hostname: if info.hostname.is_empty() {
                    host.clone()
                } else {
                    info.hostname
                },
                broadcast_address: if info.broadcast_address.is_empty() {
                    host
                } else {
                    info.broadcast_address
                },
                tcp_port: u16::try_from(info.tcp_port).unwrap_or(0),
                http_port: u16::try_from(info.http_port).unwrap_or(port),
                version: info.version,
                topics,
                out_of_date: false,
                unsynced_peers: Vec::new(),
            }))
        })
        .await;
        let mut producers: Vec<Producer> = ok.into_iter().filter_map(|(_, p)| p).collect();
        mark_out_of_date(&mut producers);
        gathered("nsqd", self.nsqds.len(), producers, failed)
    }

    /// The nsqds that have `topic`.
    pub async fn topic_producers(&self, topic: &str) -> Gathered<Vec<Producer>> {
        let lookupds = self.lookupds();
        if lookupds.is_empty() {
            return self.nsqd_producers(Some(topic)).await;
        }
        let (ok, failed) = each(&lookupds, |a| async move {
            self.lookupd(&a).lookup(topic).await
        })
        .await;
        let mut producers: Vec<Producer> = Vec::new();
        for (_, lookup) in ok {
            for p in lookup.producers {
                let producer = Producer {
                    remote_addresses: None,
                    remote_address: p.remote_address,
                    hostname: p.hostname,
                    broadcast_address: p.broadcast_address,
                    tcp_port: p.tcp_port,
                    http_port: p.http_port,
                    version: p.version,
                    topics: Vec::new(),
                    out_of_date: false,
                    unsynced_peers: Vec::new(),
                };
                if !producers
                    .iter()
                    .any(|q| q.http_address() == producer.http_address())
                {
                    producers.push(producer);
                }
            }
        }
        gathered("nsqlookupd", lookupds.len(), producers, failed)
    }

    /// Per-node topic stats from `producers`, sorted by host; `topic` and
    /// `channel` narrow what each nsqd reports.
    pub async fn node_stats(
        &self,
        producers: &[Producer],
        topic: Option<&str>,
        channel: Option<&str>,
        include_clients: bool,
    ) -> Gathered<Vec<TopicStats>> {
        let addrs: Vec<String> = producers.iter().map(Producer::http_address).collect();
        let (ok, failed) = each(&addrs, |a| async move {
            self.nsqd(&a).stats(topic, channel, include_clients).await
        })
        .await;
        let now = unix_now();
        let mut list = Vec::new();
        for (addr, stats) in ok {
            let node = producers
                .iter()
                .find(|p| p.http_address() == addr)
                .map(Producer::node)
                .unwrap_or_default();
            list.extend(model::node_topics(&node, &stats, topic, now));
        }
        list.sort_by(|a, b| (&a.hostname, &a.node).cmp(&(&b.hostname, &b.node)));
        gathered("nsqd", addrs.len(), list, failed)
    }

    /// One nsqd's whole `/stats`, clients included: its topics, and its
    /// replication links and replicas.
    pub async fn stats(&self, producer: &Producer) -> Result<nsq::api::Stats, String> {
        self.nsqd(&producer.http_address())
            .stats(None, None, true)
            .await
            .map_err(|e| format!("Failed to query any nsqd: {e}"))
    }

    /// Asks each of `producers` for its replication links and notes those
    /// not in sync; answers the nodes that did not answer.
    pub async fn mark_unsynced(&self, producers: &mut [Producer]) -> Vec<String> {
        let addrs: Vec<String> = producers.iter().map(Producer::http_address).collect();
        let (ok, failed) = each(&addrs, |a| async move {
            self.nsqd(&a).stats(None, None, false).await
        })
        .await;
        for (addr, stats) in ok {
            let peers = stats.peers.unwrap_or_default();
            for p in producers.iter_mut().filter(|p| p.http_address() == addr) {
                p.unsynced_peers = replication::unsynced(&peers);
            }
        }
        failed
    }

    /// Promotes or forgets replicas on, or retires a link of, the nsqd `node`.
    pub async fn replication_action(
        &self,
        node: &str,
        action: &ReplicationAction,
    ) -> nsq::Result<ActionDone> {
        let nsqd = self.nsqd(node);
        Ok(match action {
            ReplicationAction::Promote { origin } => {
                ActionDone::Promoted(nsqd.promote_replicas(Some(origin)).await?)
            }
            ReplicationAction::Forget { origin } => {
                nsqd.forget_replica(origin).await?;
                ActionDone::Forgot {
                    forgot: origin.clone(),
                }
            }
            ReplicationAction::Retire { peer } => ActionDone::Retired {
                retired: nsqd.retire_replication(peer).await?,
            },
        })
    }

    /// Registers a topic (and channel) in every lookupd; a channel is also
    /// created on the nsqds that have the topic.
    pub async fn create_topic_channel(
        &self,
        topic: &str,
        channel: &str,
    ) -> Result<Vec<String>, String> {
        let lookupds = self.lookupds();
        let (_, mut failed) = each(&lookupds, |a| async move {
            self.lookupd(&a).create_topic(topic).await
        })
        .await;
        if !channel.is_empty() {
            let (_, f) = each(&lookupds, |a| async move {
                self.lookupd(&a).create_channel(topic, channel).await
            })
            .await;
            failed.extend(f);
            let (producers, f) = self
                .topic_producers(topic)
                .await
                .unwrap_or_else(|e| (Vec::new(), vec![e]));
            failed.extend(f);
            failed.extend(
                self.on_producers(&producers, |n| async move {
                    n.channel_action(TopicAction::Create, topic, channel).await
                })
                .await,
            );
        }
        Ok(failed)
    }

    /// Deletes a topic (or one of its channels) from every lookupd and from
    /// every nsqd that has it.
    pub async fn delete(&self, topic: &str, channel: Option<&str>) -> Result<Vec<String>, String> {
        let (producers, mut failed) = self.topic_producers(topic).await?;
        let lookupds = self.lookupds();
        let (_, f) = each(&lookupds, |a| async move {
            match channel {
                None => self.lookupd(&a).delete_topic(topic).await,
                Some(c) => self.lookupd(&a).delete_channel(topic, c).await,
            }
        })
        .await;
        failed.extend(f);
        failed.extend(
            self.on_producers(&producers, |n| async move {
                match channel {
                    None => n.topic_action(TopicAction::Delete, topic).await,
                    Some(c) => n.channel_action(TopicAction::Delete, topic, c).await,
                }
            })
            .await,
        );
        Ok(failed)
    }

    /// Pauses, unpauses or empties a topic or channel on every nsqd that has the topic.
    pub async fn act(
        &self,
        action: TopicAction,
        topic: &str,
        channel: Option<&str>,
    ) -> Result<Vec<String>, String> {
        let (producers, mut failed) = self.topic_producers(topic).await?;
        failed.extend(
            self.on_producers(&producers, |n| async move {
                match channel {
                    None => n.topic_action(action, topic).await,
                    Some(c) => n.channel_action(action, topic, c).await,
                }
            })
            .await,
        );
        Ok(failed)
    }

    /// Tombstones `node` for `topic` in every lookupd, then deletes the topic there.
    pub async fn tombstone(&self, topic: &str, node: &str) -> Result<Vec<String>, String> {
        let lookupds = self.lookupds();
        let (_, mut failed) = each(&lookupds, |a| async move {
            self.lookupd(&a).tombstone(topic, node).await
        })
        .await;
        if let Err(e) = self
            .nsqd(node)
            .topic_action(TopicAction::Delete, topic)
            .await
        {
            failed.push(e.to_string());
        }
        Ok(failed)
    }

    /// Runs one of our channel endpoints (`endpoint`, for the messages) on
    /// each of `nodes` (HTTP addresses). A node without the topic or channel
    /// has nothing to give and is left out; one without the endpoint is
    /// named as upstream's nsqd.
    pub async fn on_channel<T, F, Fut>(
        &self,
        nodes: &[String],
        endpoint: &str,
        query: F,
    ) -> Gathered<Vec<(String, T)>>
    where
        F: Fn(NsqdHttp) -> Fut,
        Fut: Future<Output = nsq::Result<T>>,
    {
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for (addr, answer) in ask_all(nodes, |a| query(self.nsqd(&a))).await {
            match answer {
                Ok(value) => ok.push((addr, value)),
                Err(e) if e.is_missing_topic_or_channel() => {}
                Err(e) if e.is_unknown_endpoint() => {
                    failed.push(crate::messages::unknown_endpoint(&addr, endpoint))
                }
                Err(e) => failed.push(e.to_string()),
            }
        }
        gathered("nsqd", ok.len() + failed.len(), ok, failed)
    }

    /// Requeues or drops a channel's dead letters on every nsqd that has the
    /// topic; answers how many were requeued.
    pub async fn dead_letters_action(
        &self,
        action: DeadAction,
        topic: &str,
        channel: &str,
    ) -> Gathered<u64> {
        let (producers, mut warnings) = self.topic_producers(topic).await?;
        let nodes: Vec<String> = producers.iter().map(Producer::http_address).collect();
        let (answers, failed) = self
            .on_channel(&nodes, action.endpoint(), |n| async move {
                match action {
                    DeadAction::Requeue => n.requeue_dead(topic, channel).await,
                    DeadAction::Empty => n.empty_dead(topic, channel).await.map(|()| 0),
                }
            })
            .await?;
        warnings.extend(failed);
        Ok((answers.iter().map(|(_, n)| n).sum(), warnings))
    }

    async fn on_producers<F, Fut>(&self, producers: &[Producer], act: F) -> Vec<String>
    where
        F: Fn(NsqdHttp) -> Fut,
        Fut: Future<Output = nsq::Result<()>>,
    {
        let addrs: Vec<String> = producers.iter().map(Producer::http_address).collect();
        let (_, failed) = each(&addrs, |a| act(self.nsqd(&a))).await;
        failed
    }

    /// When each nsqd last pinged a lookupd (Unix ns), by `broadcast:http_port`.
    pub async fn last_pings(&self) -> BTreeMap<String, i64> {
        let lookupds = self.lookupds();
        let (ok, _) = each(&lookupds, |a| async move { self.lookupd(&a).debug().await }).await;
        let mut last = BTreeMap::new();
        for (_, registrations) in ok {
            for peer in registrations.into_values().flatten() {
                let key = nsq::api::join_host_port(&peer.broadcast_address, peer.http_port);
                let t = last.entry(key).or_insert(0);
                *t = peer.last_update.max(*t);
            }
        }
        last
    }
}

fn mark_out_of_date(producers: &mut [Producer]) {
    let newest = producers
        .iter()
        .map(|p| p.version.clone())
        .reduce(|a, b| if older_version(&a, &b) { b } else { a })
        .unwrap_or_default();
    for p in producers {
        p.out_of_date = older_version(&p.version, &newest);
    }
}

fn split_host_port(addr: &str) -> (String, u16) {
    let addr = addr.split("://").last().unwrap_or(addr);
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_matches(['[', ']']).to_string(),
            port.trim_end_matches('/').parse().unwrap_or(0),
        ),
        None => (addr.to_string(), 0),
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
