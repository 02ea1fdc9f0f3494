//! The registration DB: which nsqd (producer) holds which topic and channel.
//!
//! Keys are `(category, key, subkey)`: `client::` for every identified nsqd,
//! `topic:T:` and `channel:T:C`. Each key maps peer ids to producers. A key may
//! exist with no producers (created over HTTP, or left behind when its last
//! producer went away); only ephemeral names are deleted with their last
//! producer. As upstream, a key or subkey of `*` in a query matches any.

use nsq::api::{DebugPeer, LookupResponse, Node, NodesResponse, PeerInfo};
use nsq::protocol::is_ephemeral;
use nsq_daemon::lookup_protocol::PeerIdentity;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What Go reports as the Unix nanoseconds of its zero `time.Time`: the
/// `tombstoned_at` of a producer never tombstoned, in `/debug`.
const GO_ZERO_TIME_UNIX_NANOS: i64 = -6_795_364_578_871_345_152;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Client,
    Topic,
    Channel,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Client => "client",
            Category::Topic => "topic",
            Category::Channel => "channel",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Registration {
    pub category: Category,
    pub key: String,
    pub subkey: String,
}

impl Registration {
    pub fn client() -> Self {
        Self::new(Category::Client, "", "")
    }

    pub fn topic(topic: &str) -> Self {
        Self::new(Category::Topic, topic, "")
    }

    pub fn channel(topic: &str, channel: &str) -> Self {
        Self::new(Category::Channel, topic, channel)
    }

    fn new(category: Category, key: &str, subkey: &str) -> Self {
        Registration {
            category,
            key: key.into(),
            subkey: subkey.into(),
        }
    }

    fn matches(&self, category: Category, key: &str, subkey: &str) -> bool {
        self.category == category
            && (key == "*" || self.key == key)
            && (subkey == "*" || self.subkey == subkey)
    }
}

/// `category:key:subkey`, as upstream logs and `/debug` names registrations.
impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.category.as_str(), self.key, self.subkey)
    }
}

/// An identified nsqd connection, shared by all of its registrations.
#[derive(Debug)]
pub struct Peer {
    /// The connection's remote `ip:port`, unique while it is open.
    pub id: String,
    pub identity: PeerIdentity,
    last_update: Mutex<Stamp>,
}

/// A moment, monotonic for comparisons and in Unix nanoseconds for `/debug`.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    at: Instant,
    unix_nanos: i64,
}

impl Stamp {
    fn now() -> Self {
        let unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Stamp {
            at: Instant::now(),
            unix_nanos,
        }
    }
}

impl Peer {
    /// A peer seen just now (IDENTIFY counts as the first PING).
    pub fn new(id: String, identity: PeerIdentity) -> Self {
        Peer {
            id,
            identity,
            last_update: Mutex::new(Stamp::now()),
        }
    }

    /// Records a PING; returns the time since the previous one.
    pub fn touch(&self) -> Duration {
        let now = Stamp::now();
        let previous = std::mem::replace(&mut *self.last_update.lock(), now);
        now.at.duration_since(previous.at)
    }

    fn is_active(&self, now: Instant, timeout: Duration) -> bool {
        now.duration_since(self.last_update.lock().at) <= timeout
    }

    fn info(&self) -> PeerInfo {
        PeerInfo {
            remote_address: self.id.clone(),
            hostname: self.identity.hostname.clone(),
            broadcast_address: self.identity.broadcast_address.clone(),
            tcp_port: self.identity.tcp_port,
            http_port: self.identity.http_port,
            version: self.identity.version.clone(),
        }
    }
}

/// One peer in one registration. Tombstones belong here, not to the peer:
/// they hide an nsqd for one topic only.
#[derive(Debug)]
struct Producer {
    peer: Arc<Peer>,
    tombstoned_at: Option<Stamp>,
}

impl Producer {
    fn is_tombstoned(&self, now: Instant, lifetime: Duration) -> bool {
        self.tombstoned_at
            .is_some_and(|t| now.duration_since(t.at) < lifetime)
    }
}

type Producers = BTreeMap<String, Producer>;

/// Producers per topic and per `(topic, channel)`, and connected nsqds.
#[derive(Debug, Default)]
pub struct Counts {
    pub topics: Vec<(String, usize)>,
    pub channels: Vec<(String, String, usize)>,
    pub peers: usize,
}

pub struct Registry {
    map: RwLock<BTreeMap<Registration, Producers>>,
    inactive_producer_timeout: Duration,
    tombstone_lifetime: Duration,
}

impl Registry {
    pub fn new(inactive_producer_timeout: Duration, tombstone_lifetime: Duration) -> Self {
        Registry {
            map: RwLock::new(BTreeMap::new()),
            inactive_producer_timeout,
            tombstone_lifetime,
        }
    }

    /// Adds a key with no producers, if it is not there yet.
    pub fn add_registration(&self, registration: Registration) {
        self.map.write().entry(registration).or_default();
    }

    /// Adds `peer` to a registration (creating it); false if it was there.
    pub fn add_producer(&self, registration: Registration, peer: &Arc<Peer>) -> bool {
        let mut map = self.map.write();
        let producers = map.entry(registration).or_default();
        if producers.contains_key(&peer.id) {
            return false;
        }
        let producer = Producer {
            peer: peer.clone(),
            tombstoned_at: None,
        };
        producers.insert(peer.id.clone(), producer);
        true
    }

    /// Removes a peer from a registration, leaving the key. Returns whether it
    /// was there and how many producers are left.
    pub fn remove_producer(&self, registration: &Registration, id: &str) -> (bool, usize) {
        let mut map = self.map.write();
        match map.get_mut(registration) {
            None => (false, 0),
            Some(producers) => (producers.remove(id).is_some(), producers.len()),
        }
    }

    pub fn remove_registration(&self, registration: &Registration) -> bool {
        self.map.write().remove(registration).is_some()
    }

    pub fn find_registrations(
        &self,
        category: Category,
        key: &str,
        subkey: &str,
    ) -> Vec<Registration> {
        self.map
            .read()
            .keys()
            .filter(|r| r.matches(category, key, subkey))
            .cloned()
            .collect()
    }

    /// Every registration that `id` is a producer of.
    pub fn lookup_registrations(&self, id: &str) -> Vec<Registration> {
        self.map
            .read()
            .iter()
            .filter(|(_, producers)| producers.contains_key(id))
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// REGISTER: the peer produces `topic` (and `channel`). Returns the
    /// registrations it was not in before.
    pub fn register(
        &self,
        peer: &Arc<Peer>,
        topic: &str,
        channel: Option<&str>,
    ) -> Vec<Registration> {
        let mut wanted = Vec::with_capacity(2);
        if let Some(channel) = channel {
            wanted.push(Registration::channel(topic, channel));
        }
        wanted.push(Registration::topic(topic));
        wanted
            .into_iter()
            .filter(|r| self.add_producer(r.clone(), peer))
            .collect()
    }

    /// UNREGISTER: with a channel, the peer leaves that channel; without, it
    /// leaves the topic and every channel of it. An ephemeral channel or topic
    /// goes away with its last producer. Returns the registrations left.
    pub fn unregister(&self, id: &str, topic: &str, channel: Option<&str>) -> Vec<Registration> {
        let mut targets = match channel {
            Some(channel) => vec![Registration::channel(topic, channel)],
            None => self.find_registrations(Category::Channel, topic, "*"),
        };
        if channel.is_none() {
            targets.push(Registration::topic(topic));
        }
        let mut removed = Vec::new();
        for registration in targets {
            let (was_there, left) = self.remove_producer(&registration, id);
            let name = match registration.category {
                Category::Channel => &registration.subkey,
                _ => &registration.key,
            };
            // Only the named registration goes: a topic unregistration leaves
            // the ephemeral channels it swept, as upstream.
            let named = channel.is_some() || registration.category == Category::Topic;
            if named && left == 0 && is_ephemeral(name) {
                self.remove_registration(&registration);
            }
            if was_there {
                removed.push(registration);
            }
        }
        removed
    }

    /// The peer's connection closed: it leaves every registration. The keys
    /// stay, even empty ones.
    pub fn remove_peer(&self, id: &str) -> Vec<Registration> {
        self.lookup_registrations(id)
            .into_iter()
            .filter(|r| self.remove_producer(r, id).0)
            .collect()
    }

    /// Every topic key, with or without producers.
    pub fn topics(&self) -> Vec<String> {
        self.find_registrations(Category::Topic, "*", "")
            .into_iter()
            .map(|r| r.key)
            .collect()
    }

    pub fn channels(&self, topic: &str) -> Vec<String> {
        self.find_registrations(Category::Channel, topic, "*")
            .into_iter()
            .map(|r| r.subkey)
            .collect()
    }

    /// `/lookup`: the topic's channels and its active, untombstoned
    /// producers; `None` if the topic is not registered at all.
    pub fn lookup(&self, topic: &str) -> Option<LookupResponse> {
        let map = self.map.read();
        let now = Instant::now();
        let mut topics = map
            .iter()
            .filter(|(r, _)| r.matches(Category::Topic, topic, ""))
            .peekable();
        topics.peek()?;
        let mut producers: Vec<PeerInfo> = Vec::new();
        for (_, registered) in topics {
            for producer in registered.values() {
                let shown = producer.peer.is_active(now, self.inactive_producer_timeout)
                    && !producer.is_tombstoned(now, self.tombstone_lifetime);
                if shown
                    && !producers
                        .iter()
                        .any(|p| p.remote_address == producer.peer.id)
                {
                    producers.push(producer.peer.info());
                }
            }
        }
        let channels = map
            .keys()
            .filter(|r| r.matches(Category::Channel, topic, "*"))
            .map(|r| r.subkey.clone())
            .collect();
        Some(LookupResponse {
            channels,
            producers,
        })
    }

    /// `/nodes`: every active nsqd, tombstoned or not, with its topics and
    /// whether it is tombstoned for each.
    pub fn nodes(&self) -> NodesResponse {
        let map = self.map.read();
        let now = Instant::now();
        let Some(clients) = map.get(&Registration::client()) else {
            return NodesResponse::default();
        };
        let producers = clients
            .values()
            .filter(|p| p.peer.is_active(now, self.inactive_producer_timeout))
            .map(|client| {
                let peer = &client.peer;
                let (topics, tombstones) = map
                    .iter()
                    .filter(|(r, _)| r.category == Category::Topic)
                    .filter_map(|(r, producers)| {
                        let producer = producers.get(&peer.id)?;
                        let tombstoned = producer.is_tombstoned(now, self.tombstone_lifetime);
                        Some((r.key.clone(), tombstoned))
                    })
                    .unzip();
                let info = peer.info();
                Node {
                    remote_address: info.remote_address,
                    hostname: info.hostname,
                    broadcast_address: info.broadcast_address,
                    tcp_port: info.tcp_port,
                    http_port: info.http_port,
                    version: info.version,
                    tombstones,
                    topics,
                }
            })
            .collect();
        NodesResponse { producers }
    }

    /// Producer counts for `/metrics`, counted as `/lookup` (topics: active
    /// and not tombstoned) and `/nodes` (peers: active) count them.
    pub fn counts(&self) -> Counts {
        let map = self.map.read();
        let now = Instant::now();
        let active = |p: &&Producer| p.peer.is_active(now, self.inactive_producer_timeout);
        let mut counts = Counts::default();
        for (r, producers) in map.iter() {
            match r.category {
                Category::Client => counts.peers += producers.values().filter(active).count(),
                Category::Topic => {
                    let shown = producers
                        .values()
                        .filter(active)
                        .filter(|p| !p.is_tombstoned(now, self.tombstone_lifetime))
                        .count();
                    counts.topics.push((r.key.clone(), shown));
                }
                Category::Channel => {
                    let shown = producers.values().filter(active).count();
                    counts
                        .channels
                        .push((r.key.clone(), r.subkey.clone(), shown));
                }
            }
        }
        counts
    }

    /// `/debug`: every registration with producers, by `category:key:subkey`.
    pub fn debug(&self) -> BTreeMap<String, Vec<DebugPeer>> {
        let map = self.map.read();
        map.iter()
            .filter(|(_, producers)| !producers.is_empty())
            .map(|(r, producers)| {
                let peers = producers
                    .values()
                    .map(|p| DebugPeer {
                        broadcast_address: p.peer.identity.broadcast_address.clone(),
                        hostname: p.peer.identity.hostname.clone(),
                        http_port: p.peer.identity.http_port,
                        id: p.peer.id.clone(),
                        last_update: p.peer.last_update.lock().unix_nanos,
                        tcp_port: p.peer.identity.tcp_port,
                        tombstoned: p.tombstoned_at.is_some(),
                        tombstoned_at: p
                            .tombstoned_at
                            .map_or(GO_ZERO_TIME_UNIX_NANOS, |t| t.unix_nanos),
                        version: p.peer.identity.version.clone(),
                    })
                    .collect();
                (r.to_string(), peers)
            })
            .collect()
    }

    /// `/topic/delete`: the topic and every channel of it, producers and all.
    pub fn delete_topic(&self, topic: &str) -> Vec<Registration> {
        let mut map = self.map.write();
        let doomed: Vec<Registration> = map
            .keys()
            .filter(|r| {
                r.matches(Category::Channel, topic, "*") || r.matches(Category::Topic, topic, "")
            })
            .cloned()
            .collect();
        for registration in &doomed {
            map.remove(registration);
        }
        doomed
    }

    /// `/topic/tombstone`: hides the producers of `topic` whose
    /// `broadcast_address:http_port` is `node`. Returns how many.
    pub fn tombstone(&self, topic: &str, node: &str) -> usize {
        let mut map = self.map.write();
        let now = Stamp::now();
        let mut count = 0;
        for (_, producers) in map
            .iter_mut()
            .filter(|(r, _)| r.matches(Category::Topic, topic, ""))
        {
            for producer in producers.values_mut() {
                let identity = &producer.peer.identity;
                if format!("{}:{}", identity.broadcast_address, identity.http_port) == node {
                    producer.tombstoned_at = Some(now);
                    count += 1;
                }
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, http_port: u16) -> Arc<Peer> {
        Arc::new(Peer::new(
            id.into(),
            PeerIdentity {
                broadcast_address: "host".into(),
                hostname: "h".into(),
                tcp_port: http_port - 1,
                http_port,
                version: "1.3.0".into(),
            },
        ))
    }

    fn registry() -> Registry {
        Registry::new(Duration::from_secs(300), Duration::from_secs(45))
    }

    fn addresses(r: &Registry, topic: &str) -> Vec<String> {
        r.lookup(topic)
            .expect("topic registered")
            .producers
            .into_iter()
            .map(|p| p.remote_address)
            .collect()
    }

    #[test]
    fn register_adds_topic_and_channel_once() {
        let r = registry();
        let a = peer("a:1", 4151);
        assert_eq!(
            r.register(&a, "t", Some("c")),
            vec![Registration::channel("t", "c"), Registration::topic("t")]
        );
        assert!(r.register(&a, "t", Some("c")).is_empty());
        assert_eq!(r.topics(), vec!["t"]);
        assert_eq!(r.channels("t"), vec!["c"]);
        let lookup = r.lookup("t").unwrap();
        assert_eq!(lookup.channels, vec!["c"]);
        assert_eq!(lookup.producers[0].tcp_port, 4150);
        assert!(r.lookup("other").is_none());
    }

    #[test]
    fn unregister_keeps_keys_but_drops_ephemeral_ones() {
        let r = registry();
        let (a, b) = (peer("a:1", 4151), peer("b:1", 4151));
        for p in [&a, &b] {
            r.register(p, "t", Some("c"));
            r.register(p, "t", Some("e#ephemeral"));
            r.register(p, "x#ephemeral", None);
        }
        r.unregister("a:1", "t", Some("e#ephemeral"));
        assert_eq!(r.channels("t"), vec!["c", "e#ephemeral"]);
        r.unregister("b:1", "t", Some("e#ephemeral"));
        r.unregister("b:1", "t", Some("c"));
        assert_eq!(r.channels("t"), vec!["c"]);
        r.unregister("a:1", "x#ephemeral", None);
        assert!(r.topics().contains(&"x#ephemeral".to_string()));
        r.unregister("b:1", "x#ephemeral", None);
        assert_eq!(r.topics(), vec!["t"]);
        // A topic unregistration sweeps the peer's channels too.
        let removed = r.unregister("a:1", "t", None);
        assert_eq!(
            removed,
            vec![Registration::channel("t", "c"), Registration::topic("t")]
        );
        assert_eq!(addresses(&r, "t"), vec!["b:1"]);
    }

    #[test]
    fn closing_removes_every_registration_of_the_peer_only() {
        let r = registry();
        let (a, b) = (peer("a:1", 4151), peer("b:1", 4161));
        r.add_producer(Registration::client(), &a);
        r.register(&a, "t", Some("c"));
        r.register(&b, "t", None);
        assert_eq!(r.remove_peer("a:1").len(), 3);
        assert_eq!(addresses(&r, "t"), vec!["b:1"]);
        assert_eq!(r.channels("t"), vec!["c"]);
        assert!(r.lookup_registrations("a:1").is_empty());
    }

    #[test]
    fn tombstone_hides_one_producer_of_one_topic_for_its_lifetime() {
        let r = Registry::new(Duration::from_secs(300), Duration::from_millis(50));
        let (a, b) = (peer("a:1", 4151), peer("b:1", 4161));
        for p in [&a, &b] {
            r.add_producer(Registration::client(), p);
            r.register(p, "t", None);
            r.register(p, "u", None);
        }
        assert_eq!(r.tombstone("t", "host:4151"), 1);
        assert_eq!(addresses(&r, "t"), vec!["b:1"]);
        assert_eq!(addresses(&r, "u"), vec!["a:1", "b:1"]);
        let nodes = r.nodes();
        assert_eq!(nodes.producers.len(), 2);
        assert_eq!(nodes.producers[0].topics, vec!["t", "u"]);
        assert_eq!(nodes.producers[0].tombstones, vec![true, false]);
        assert_eq!(nodes.producers[1].tombstones, vec![false, false]);
        let debug = r.debug();
        assert!(debug["topic:t:"][0].tombstoned);
        assert_eq!(debug["topic:u:"][0].tombstoned_at, GO_ZERO_TIME_UNIX_NANOS);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(addresses(&r, "t"), vec!["a:1", "b:1"]);
    }

    #[test]
    fn inactive_producers_are_hidden_until_they_ping() {
        let r = Registry::new(Duration::from_millis(30), Duration::from_secs(45));
        let a = peer("a:1", 4151);
        r.add_producer(Registration::client(), &a);
        r.register(&a, "t", None);
        std::thread::sleep(Duration::from_millis(40));
        assert!(addresses(&r, "t").is_empty());
        assert!(r.nodes().producers.is_empty());
        // Still registered: only filtered out.
        assert_eq!(r.debug()["topic:t:"].len(), 1);
        a.touch();
        assert_eq!(addresses(&r, "t"), vec!["a:1"]);
        assert_eq!(r.nodes().producers.len(), 1);
    }

    #[test]
    fn http_side_keys() {
        let r = registry();
        r.add_registration(Registration::channel("t", "c"));
        r.add_registration(Registration::topic("t"));
        r.add_registration(Registration::topic("u"));
        assert_eq!(r.topics(), vec!["t", "u"]);
        assert!(r.debug().is_empty(), "keys without producers are not shown");
        assert_eq!(r.delete_topic("t").len(), 2);
        assert_eq!(r.topics(), vec!["u"]);
        assert!(r.channels("t").is_empty());
        // As upstream, `*` matches any topic.
        r.add_registration(Registration::channel("u", "c"));
        assert_eq!(r.channels("*"), vec!["c"]);
    }
}
