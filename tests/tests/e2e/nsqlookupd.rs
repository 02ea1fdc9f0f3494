//! nsqlookupd end to end, on loopback: protocol V1 sessions over raw TCP as
//! nsqd speaks them, every HTTP endpoint (compared with upstream v1.3.0's
//! captures where there is one), inactivity, tombstones and ephemeral names.
//!
//! One file, past 600 lines, because every test drives the same raw V1
//! peer that stands in for nsqd.

use nsq_daemon::lookup_protocol::{LookupCommand, LookupdIdentity, PeerIdentity, MAGIC_V1};
use nsq_e2e::{
    assert_like_capture, assert_v1_empty, assert_v1_error, capture, eventually, get, http_request,
    keys_in_order, post, send, Reply, Same, PATIENCE,
};
use nsqlookupd::{Lookupd, Options};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The nsqd connection in the captures, as lookupd saw it.
const CAPTURED_PEER: &str = "127.0.0.1:34512";

fn options() -> Options {
    Options {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        broadcast_address: "lookupd.test".into(),
        ..Options::default()
    }
}

async fn start(opts: Options) -> Lookupd {
    Lookupd::start(opts).await.expect("nsqlookupd starts")
}

/// The identity of the nsqd in the captures.
fn nsqd_identity(http_port: u16) -> PeerIdentity {
    PeerIdentity {
        broadcast_address: "127.0.0.1".into(),
        hostname: "vm".into(),
        tcp_port: http_port - 1,
        http_port,
        version: "1.3.0".into(),
    }
}

/// `IDENTIFY` with a raw JSON body.
fn identify_with(json: &str) -> Vec<u8> {
    let mut bytes = b"IDENTIFY\n".to_vec();
    bytes.extend_from_slice(&(json.len() as u32).to_be_bytes());
    bytes.extend_from_slice(json.as_bytes());
    bytes
}

/// A raw protocol V1 connection, as nsqd makes one.
struct Peer {
    stream: TcpStream,
}

impl Peer {
    /// Connected, magic sent.
    async fn connect(lookupd: &Lookupd) -> Peer {
        let mut peer = Peer::connect_raw(lookupd).await;
        peer.send(MAGIC_V1).await;
        peer
    }

    async fn connect_raw(lookupd: &Lookupd) -> Peer {
        let stream = TcpStream::connect(lookupd.tcp_addr())
            .await
            .expect("connect to lookupd");
        Peer { stream }
    }

    /// Connected and identified with the given HTTP port.
    async fn identified(lookupd: &Lookupd, http_port: u16) -> Peer {
        let mut peer = Peer::connect(lookupd).await;
        peer.identify(nsqd_identity(http_port)).await;
        peer
    }

    /// The address lookupd knows this peer by.
    fn id(&self) -> String {
        self.stream.local_addr().expect("local address").to_string()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// The next `[size][data]` answer, or `None` once lookupd has closed.
    async fn answer(&mut self) -> Option<String> {
        let read = async {
            let size = self.stream.read_u32().await.ok()?;
            let mut data = vec![0; size as usize];
            self.stream.read_exact(&mut data).await.ok()?;
            Some(String::from_utf8(data).expect("UTF-8 answer"))
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("an answer in time")
    }

    async fn command(&mut self, command: &str) -> String {
        self.send(format!("{command}\n").as_bytes()).await;
        self.answer().await.expect("an answer, not a close")
    }

    async fn identify(&mut self, identity: PeerIdentity) -> LookupdIdentity {
        self.send(&LookupCommand::Identify(identity).to_bytes())
            .await;
        let answer = self.answer().await.expect("IDENTIFY answer");
        serde_json::from_str(&answer).expect("IDENTIFY answer is JSON")
    }

    /// Expects an error answer, then the connection closing.
    async fn expect_fatal(&mut self, error: &str) {
        assert_eq!(self.answer().await.as_deref(), Some(error));
        self.expect_closed().await;
    }

    async fn expect_closed(&mut self) {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(PATIENCE, self.stream.read(&mut byte))
            .await
            .expect("lookupd closes in time");
        assert!(matches!(read, Ok(0) | Err(_)), "connection still open");
    }
}

/// `GET path?topic=<topic>`, the topic escaped.
async fn get_for_topic(lookupd: &Lookupd, path: &str, topic: &str) -> Reply {
    let addr = lookupd.http_addr().to_string();
    let url = nsq::http_client::api_url(&addr, path, &[("topic", topic)]).unwrap();
    http_request(url.as_str(), reqwest::Method::GET, "", bytes::Bytes::new()).await
}

/// `remote_address` of each producer `/lookup` lists for `topic`.
async fn producers_of(lookupd: &Lookupd, topic: &str) -> Vec<String> {
    let reply = get_for_topic(lookupd, "/lookup", topic).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut ids: Vec<String> = reply.json()["producers"]
        .as_array()
        .expect("producers")
        .iter()
        .map(|p| p["remote_address"].as_str().expect("address").to_string())
        .collect();
    ids.sort();
    ids
}

fn strings(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect();
    list.sort();
    list
}

async fn topics(lookupd: &Lookupd) -> Vec<String> {
    strings(&get(lookupd, "/topics").await.json()["topics"])
}

async fn channels(lookupd: &Lookupd, topic: &str) -> Vec<String> {
    strings(&get_for_topic(lookupd, "/channels", topic).await.json()["channels"])
}

/// The registrations of the captures: one nsqd with `test/samplech` and `test2/ch2`.
async fn captured_state(lookupd: &Lookupd) -> Peer {
    let mut nsqd = Peer::identified(lookupd, 4151).await;
    assert_eq!(nsqd.command("REGISTER test samplech").await, "OK");
    assert_eq!(nsqd.command("REGISTER test2 ch2").await, "OK");
    nsqd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_upstream_captures() {
    let lookupd = start(options()).await;
    let nsqd = captured_state(&lookupd).await;
    let id = nsqd.id();

    assert_like_capture(&get(&lookupd, "/ping").await, "nsqlookupd/ping", Same::Body);
    assert_like_capture(&get(&lookupd, "/info").await, "nsqlookupd/info", Same::Body);
    assert_like_capture(
        &get(&lookupd, "/lookup?topic=nosuchtopic").await,
        "nsqlookupd/lookup_missing",
        Same::Body,
    );
    assert_like_capture(
        &get(&lookupd, "/lookup").await,
        "nsqlookupd/lookup_no_param",
        Same::Body,
    );
    assert_like_capture(
        &get(&lookupd, "/channels?topic=test").await,
        "nsqlookupd/channels",
        Same::Body,
    );
    assert_like_capture(
        &get(&lookupd, "/topics").await,
        "nsqlookupd/topics",
        Same::Body,
    );

    let lookup = capture("nsqlookupd/lookup");
    let ours = get(&lookupd, "/lookup?topic=test").await;
    assert_like_capture(&ours, "nsqlookupd/lookup", Same::Nothing);
    assert_eq!(ours.body, lookup.body.replace(CAPTURED_PEER, &id));

    // Topic order is Go's map order upstream; ours is sorted.
    let nodes = capture("nsqlookupd/nodes");
    let ours = get(&lookupd, "/nodes").await;
    assert_like_capture(&ours, "nsqlookupd/nodes", Same::Nothing);
    assert_eq!(keys_in_order(&ours.body), keys_in_order(&nodes.body));
    let sorted_topics = |mut v: Value| {
        for p in v["producers"].as_array_mut().expect("producers") {
            p["topics"] = serde_json::json!(strings(&p["topics"]));
        }
        v
    };
    let theirs: Value = serde_json::from_str(&nodes.body.replace(CAPTURED_PEER, &id)).unwrap();
    assert_eq!(sorted_topics(ours.json()), sorted_topics(theirs));

    // `/debug`: same keys in the same order; same values but for the time of
    // the last PING. A producer never tombstoned shows Go's zero time.
    let debug = capture("nsqlookupd/debug");
    let ours = get(&lookupd, "/debug").await;
    assert_like_capture(&ours, "nsqlookupd/debug", Same::Nothing);
    assert_eq!(keys_in_order(&ours.body), keys_in_order(&debug.body));
    let without_time = |mut v: Value| {
        for peers in v.as_object_mut().expect("map").values_mut() {
            for peer in peers.as_array_mut().expect("peers") {
                assert!(peer["last_update"].as_i64().expect("ns") > 1_600_000_000_000_000_000);
                peer["last_update"] = Value::Null;
            }
        }
        v
    };
    let theirs: Value = serde_json::from_str(&debug.body.replace(CAPTURED_PEER, &id)).unwrap();
    assert_eq!(without_time(ours.json()), without_time(theirs));

    assert_like_capture(
        &post(&lookupd, "/topic/create?topic=lk_topic", "").await,
        "nsqlookupd/topic_create",
        Same::Body,
    );
    let after = capture("nsqlookupd/topics_after_create");
    let ours = get(&lookupd, "/topics").await;
    assert_like_capture(&ours, "nsqlookupd/topics_after_create", Same::Nothing);
    let theirs: Value = serde_json::from_str(&after.body).unwrap();
    assert_eq!(strings(&ours.json()["topics"]), strings(&theirs["topics"]));
    assert_like_capture(
        &post(&lookupd, "/channel/create?topic=lk_topic&channel=lk_ch", "").await,
        "nsqlookupd/channel_create",
        Same::Body,
    );
    assert_eq!(channels(&lookupd, "lk_topic").await, vec!["lk_ch"]);
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_upstreams() {
    let lookupd = start(options()).await;
    for (path, message) in [
        ("/channels", "MISSING_ARG_TOPIC"),
        ("/channels?topic=%zz", "INVALID_REQUEST"),
        ("/lookup?topic=%zz", "INVALID_REQUEST"),
    ] {
        assert_v1_error(&get(&lookupd, path).await, 400, message);
    }
    for (path, status, message) in [
        ("/topic/create", 400, "MISSING_ARG_TOPIC"),
        ("/topic/create?topic=bad!", 400, "INVALID_ARG_TOPIC"),
        ("/topic/create?topic=a;b", 400, "INVALID_REQUEST"),
        ("/topic/delete", 400, "MISSING_ARG_TOPIC"),
        ("/channel/create", 400, "MISSING_ARG_TOPIC"),
        (
            "/channel/create?topic=bad!&channel=c",
            400,
            "INVALID_ARG_TOPIC",
        ),
        ("/channel/create?topic=t", 400, "MISSING_ARG_CHANNEL"),
        (
            "/channel/create?topic=t&channel=bad!",
            400,
            "INVALID_ARG_CHANNEL",
        ),
        ("/channel/delete?topic=t", 400, "MISSING_ARG_CHANNEL"),
        (
            "/channel/delete?topic=t&channel=c",
            404,
            "CHANNEL_NOT_FOUND",
        ),
        ("/topic/tombstone", 400, "MISSING_ARG_TOPIC"),
        ("/topic/tombstone?topic=t", 400, "MISSING_ARG_NODE"),
    ] {
        assert_v1_error(&post(&lookupd, path, "").await, status, message);
    }
    // httprouter's answers for paths and methods it has no route for.
    assert_v1_error(&get(&lookupd, "/nope").await, 404, "NOT_FOUND");
    let wrong = get(&lookupd, "/topic/create?topic=t").await;
    assert_v1_error(&wrong, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(wrong.header("allow"), Some("OPTIONS, POST"));
    let wrong = post(&lookupd, "/lookup?topic=t", "").await;
    assert_v1_error(&wrong, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(wrong.header("allow"), Some("GET, OPTIONS"));
    let options = send(&lookupd, reqwest::Method::OPTIONS, "/topics", "").await;
    assert_eq!(
        (options.status, options.header("allow")),
        (200, Some("GET, OPTIONS"))
    );
    let redirect = get(&lookupd, "/lookup/?topic=t").await;
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (301, Some("/lookup?topic=t"))
    );
    // Nothing was created by the refused requests.
    assert!(topics(&lookupd).await.is_empty());
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_admin_actions() {
    let lookupd = start(options()).await;
    let mut nsqd = Peer::identified(&lookupd, 4151).await;
    assert_eq!(nsqd.command("REGISTER t c1").await, "OK");

    // Created keys have no producers: listed, but not in `/debug`.
    assert_eq!(
        post(&lookupd, "/channel/create?topic=new&channel=c", "")
            .await
            .status,
        200
    );
    assert_eq!(topics(&lookupd).await, vec!["new", "t"]);
    let lookup = get(&lookupd, "/lookup?topic=new").await;
    assert_eq!(
        (lookup.status, lookup.body.as_str()),
        (200, r#"{"channels":["c"],"producers":[]}"#)
    );
    assert!(get(&lookupd, "/debug")
        .await
        .json()
        .get("topic:new:")
        .is_none());

    let deleted = post(&lookupd, "/channel/delete?topic=new&channel=c", "").await;
    assert_v1_empty(&deleted);
    assert!(channels(&lookupd, "new").await.is_empty());
    assert_v1_error(
        &post(&lookupd, "/channel/delete?topic=new&channel=c", "").await,
        404,
        "CHANNEL_NOT_FOUND",
    );

    // Deleting a topic takes its channels and producers; nsqd re-registers
    // whatever it still has.
    assert_eq!(
        post(&lookupd, "/topic/delete?topic=t", "").await.status,
        200
    );
    assert_eq!(topics(&lookupd).await, vec!["new"]);
    assert!(channels(&lookupd, "t").await.is_empty());
    assert_v1_error(
        &get(&lookupd, "/lookup?topic=t").await,
        404,
        "TOPIC_NOT_FOUND",
    );
    assert_eq!(
        post(&lookupd, "/topic/delete?topic=never", "").await.status,
        200
    );
    assert_eq!(nsqd.command("REGISTER t c1").await, "OK");
    assert_eq!(producers_of(&lookupd, "t").await, vec![nsqd.id()]);
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_v1_session() {
    let lookupd = start(options()).await;
    let mut nsqd = Peer::connect(&lookupd).await;
    // PING before IDENTIFY is harmless.
    assert_eq!(nsqd.command("PING").await, "OK");
    let me = nsqd.identify(nsqd_identity(4151)).await;
    assert_eq!(
        (
            me.tcp_port,
            me.http_port,
            me.version.as_str(),
            me.broadcast_address.as_str()
        ),
        (
            lookupd.tcp_addr().port(),
            lookupd.http_addr().port(),
            "1.3.0",
            "lookupd.test"
        )
    );
    assert!(!me.hostname.is_empty());
    let id = nsqd.id();
    let nodes = get(&lookupd, "/nodes").await.json();
    assert_eq!(nodes["producers"][0]["remote_address"], id.as_str());
    assert_eq!(nodes["producers"][0]["topics"], serde_json::json!([]));

    // A topic alone, then a channel of it; surrounding whitespace is ignored.
    assert_eq!(nsqd.command("REGISTER t").await, "OK");
    let lookup = get(&lookupd, "/lookup?topic=t").await.json();
    assert_eq!(lookup["channels"], serde_json::json!([]));
    assert_eq!(lookup["producers"][0]["remote_address"], id.as_str());
    assert_eq!(lookup["producers"][0]["broadcast_address"], "127.0.0.1");
    assert_eq!(lookup["producers"][0]["tcp_port"], 4150);
    assert_eq!(nsqd.command("  REGISTER t c \r").await, "OK");
    assert_eq!(nsqd.command("REGISTER t c").await, "OK");
    assert_eq!(channels(&lookupd, "t").await, vec!["c"]);
    assert_eq!(nsqd.command("REGISTER u").await, "OK");
    let nodes = get(&lookupd, "/nodes").await.json();
    assert_eq!(
        nodes["producers"][0]["topics"],
        serde_json::json!(["t", "u"])
    );
    assert_eq!(nsqd.command("PING").await, "OK");

    // Unregistering a channel leaves its (non-ephemeral) key; a topic
    // unregistration also sweeps the peer's channels.
    assert_eq!(nsqd.command("UNREGISTER t c").await, "OK");
    assert_eq!(channels(&lookupd, "t").await, vec!["c"]);
    assert!(get(&lookupd, "/debug")
        .await
        .json()
        .get("channel:t:c")
        .is_none());
    assert_eq!(nsqd.command("REGISTER t c").await, "OK");
    assert_eq!(nsqd.command("UNREGISTER t").await, "OK");
    let debug = get(&lookupd, "/debug").await.json();
    assert!(debug.get("channel:t:c").is_none() && debug.get("topic:t:").is_none());
    assert!(producers_of(&lookupd, "t").await.is_empty());
    assert_eq!(topics(&lookupd).await, vec!["t", "u"]);
    // Unregistering what was never registered is fine.
    assert_eq!(nsqd.command("UNREGISTER nope ch").await, "OK");
    assert_eq!(producers_of(&lookupd, "u").await, vec![id]);
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_error_closes_the_connection() {
    let lookupd = start(options()).await;

    let mut bad = Peer::connect_raw(&lookupd).await;
    bad.send(b"  V2").await;
    bad.expect_fatal("E_BAD_PROTOCOL").await;

    // Before IDENTIFY.
    for (command, error) in [
        ("FOO", "E_INVALID invalid command FOO"),
        ("", "E_INVALID invalid command "),
        ("register t", "E_INVALID invalid command register"),
        ("REGISTER t", "E_INVALID client must IDENTIFY"),
        ("UNREGISTER t c", "E_INVALID client must IDENTIFY"),
    ] {
        let mut peer = Peer::connect(&lookupd).await;
        peer.send(format!("{command}\n").as_bytes()).await;
        peer.expect_fatal(error).await;
    }

    // After IDENTIFY; a fatal error also drops the peer's registrations.
    for (command, error) in [
        (
            "REGISTER",
            "E_INVALID REGISTER insufficient number of params",
        ),
        (
            "UNREGISTER",
            "E_INVALID UNREGISTER insufficient number of params",
        ),
        (
            "REGISTER bad!",
            "E_BAD_TOPIC REGISTER topic name 'bad!' is not valid",
        ),
        (
            "REGISTER  t",
            "E_BAD_TOPIC REGISTER topic name '' is not valid",
        ),
        (
            "REGISTER t bad!",
            "E_BAD_CHANNEL REGISTER channel name 'bad!' is not valid",
        ),
        (
            "UNREGISTER bad!",
            "E_BAD_TOPIC UNREGISTER topic name 'bad!' is not valid",
        ),
        (
            "UNREGISTER t c!",
            "E_BAD_CHANNEL UNREGISTER channel name 'c!' is not valid",
        ),
        ("NOPE", "E_INVALID invalid command NOPE"),
    ] {
        let mut peer = Peer::identified(&lookupd, 4151).await;
        assert_eq!(peer.command("REGISTER kept").await, "OK");
        let id = peer.id();
        assert_eq!(producers_of(&lookupd, "kept").await, vec![id.clone()]);
        peer.send(format!("{command}\n").as_bytes()).await;
        peer.expect_fatal(error).await;
        eventually("the peer's registrations to go", || async {
            producers_of(&lookupd, "kept").await.is_empty()
        })
        .await;
    }

    let mut twice = Peer::identified(&lookupd, 4151).await;
    twice
        .send(&LookupCommand::Identify(nsqd_identity(4151)).to_bytes())
        .await;
    twice.expect_fatal("E_INVALID cannot IDENTIFY again").await;

    // IDENTIFY bodies: every field but the hostname is required.
    let full = serde_json::to_value(nsqd_identity(4151)).unwrap();
    for field in ["broadcast_address", "tcp_port", "http_port", "version"] {
        let mut body = full.clone();
        body.as_object_mut().unwrap().remove(field);
        let mut peer = Peer::connect(&lookupd).await;
        peer.send(&identify_with(&body.to_string())).await;
        peer.expect_fatal("E_BAD_BODY IDENTIFY missing fields")
            .await;
    }
    let mut no_hostname = full.clone();
    no_hostname.as_object_mut().unwrap().remove("hostname");
    let mut peer = Peer::connect(&lookupd).await;
    peer.send(&identify_with(&no_hostname.to_string())).await;
    assert!(peer.answer().await.expect("answer").starts_with('{'));
    for body in ["{not json", "", r#"{"tcp_port":"x"}"#] {
        let mut peer = Peer::connect(&lookupd).await;
        peer.send(&identify_with(body)).await;
        peer.expect_fatal("E_BAD_BODY IDENTIFY failed to decode JSON body")
            .await;
    }
    let mut peer = Peer::connect(&lookupd).await;
    peer.send(b"IDENTIFY\n\xff\xff\xff\xff").await;
    peer.expect_fatal("E_BAD_BODY IDENTIFY invalid body size -1")
        .await;
    // The peer stops writing mid-command: lookupd still answers, then closes.
    for (bytes, error) in [
        (
            &b"IDENTIFY\n\x00\x00"[..],
            "E_BAD_BODY IDENTIFY failed to read body size",
        ),
        (
            &b"IDENTIFY\n\x00\x00\x00\x09{}"[..],
            "E_BAD_BODY IDENTIFY failed to read body",
        ),
    ] {
        let mut peer = Peer::connect(&lookupd).await;
        peer.send(bytes).await;
        peer.stream.shutdown().await.expect("half close");
        peer.expect_fatal(error).await;
    }
    // An endless line is cut off rather than buffered.
    let mut peer = Peer::connect(&lookupd).await;
    peer.send(&vec![b'A'; 5000]).await;
    peer.expect_fatal("E_INVALID command line too long").await;
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_removes_the_peers_registrations() {
    let lookupd = start(options()).await;
    let mut a = Peer::identified(&lookupd, 4151).await;
    let mut b = Peer::identified(&lookupd, 5151).await;
    for peer in [&mut a, &mut b] {
        assert_eq!(peer.command("REGISTER t c").await, "OK");
    }
    assert_eq!(a.command("REGISTER only_a").await, "OK");
    let (a_id, b_id) = (a.id(), b.id());
    let mut both = vec![a_id.clone(), b_id.clone()];
    both.sort();
    assert_eq!(producers_of(&lookupd, "t").await, both);

    drop(a);
    eventually("a's registrations to go", || async {
        producers_of(&lookupd, "t").await == vec![b_id.clone()]
    })
    .await;
    let nodes = get(&lookupd, "/nodes").await.json();
    assert_eq!(nodes["producers"].as_array().unwrap().len(), 1);
    assert_eq!(nodes["producers"][0]["remote_address"], b_id.as_str());
    // The keys stay, even with no producer left.
    assert!(producers_of(&lookupd, "only_a").await.is_empty());
    assert!(get(&lookupd, "/debug")
        .await
        .json()
        .get("topic:only_a:")
        .is_none());

    // A partial line before the close is dropped, and the close still counts.
    b.send(b"UNREGISTER t").await;
    drop(b);
    eventually("b's registrations to go", || async {
        producers_of(&lookupd, "t").await.is_empty()
    })
    .await;
    assert_eq!(topics(&lookupd).await, vec!["only_a", "t"]);
    assert_eq!(channels(&lookupd, "t").await, vec!["c"]);
    assert_eq!(get(&lookupd, "/debug").await.body, "{}");
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_producers_drop_out_until_they_ping() {
    let lookupd = start(Options {
        inactive_producer_timeout: Duration::from_millis(300),
        ..options()
    })
    .await;
    let mut nsqd = Peer::identified(&lookupd, 4151).await;
    assert_eq!(nsqd.command("REGISTER t").await, "OK");
    assert_eq!(producers_of(&lookupd, "t").await, vec![nsqd.id()]);
    eventually("the silent producer to drop out", || async {
        producers_of(&lookupd, "t").await.is_empty()
    })
    .await;
    let nodes = get(&lookupd, "/nodes").await.json();
    assert_eq!(nodes["producers"], serde_json::json!([]));
    // Still registered: REGISTER does not count as activity, PING does.
    assert_eq!(
        get(&lookupd, "/debug").await.json()["topic:t:"][0]["id"],
        nsqd.id().as_str()
    );
    assert_eq!(nsqd.command("REGISTER u").await, "OK");
    assert!(producers_of(&lookupd, "u").await.is_empty());
    assert_eq!(nsqd.command("PING").await, "OK");
    assert_eq!(producers_of(&lookupd, "t").await, vec![nsqd.id()]);
    assert_eq!(
        get(&lookupd, "/nodes").await.json()["producers"][0]["topics"],
        serde_json::json!(["t", "u"])
    );
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstone_hides_one_producer_of_one_topic_for_its_lifetime() {
    let lookupd = start(Options {
        tombstone_lifetime: Duration::from_millis(500),
        ..options()
    })
    .await;
    let mut a = Peer::identified(&lookupd, 4151).await;
    let mut b = Peer::identified(&lookupd, 5151).await;
    for peer in [&mut a, &mut b] {
        assert_eq!(peer.command("REGISTER t").await, "OK");
        assert_eq!(peer.command("REGISTER u").await, "OK");
    }
    let (a_id, b_id) = (a.id(), b.id());
    let mut both = vec![a_id.clone(), b_id.clone()];
    both.sort();

    let reply = post(&lookupd, "/topic/tombstone?topic=t&node=127.0.0.1:4151", "").await;
    assert_v1_empty(&reply);
    assert_eq!(producers_of(&lookupd, "t").await, vec![b_id.clone()]);
    assert_eq!(producers_of(&lookupd, "u").await, both);
    // `/nodes` keeps tombstoned nodes and says which topics are tombstoned.
    let nodes = get(&lookupd, "/nodes").await.json();
    let node_a = nodes["producers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["remote_address"] == a_id.as_str())
        .expect("a listed")
        .clone();
    assert_eq!(node_a["topics"], serde_json::json!(["t", "u"]));
    assert_eq!(node_a["tombstones"], serde_json::json!([true, false]));
    let debug = get(&lookupd, "/debug").await.json();
    let tombstoned: Vec<&Value> = debug["topic:t:"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["tombstoned"] == true)
        .collect();
    assert_eq!(tombstoned.len(), 1);
    assert_eq!(tombstoned[0]["id"], a_id.as_str());
    assert!(tombstoned[0]["tombstoned_at"].as_i64().unwrap() > 0);

    // An unknown node tombstones nothing.
    assert_eq!(
        post(&lookupd, "/topic/tombstone?topic=u&node=127.0.0.1:1", "")
            .await
            .status,
        200
    );
    assert_eq!(producers_of(&lookupd, "u").await, both);

    eventually("the tombstone to expire", || async {
        producers_of(&lookupd, "t").await == both
    })
    .await;
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_registrations_vanish_with_their_last_producer() {
    let lookupd = start(options()).await;
    let mut a = Peer::identified(&lookupd, 4151).await;
    let mut b = Peer::identified(&lookupd, 5151).await;
    for peer in [&mut a, &mut b] {
        assert_eq!(peer.command("REGISTER t c#ephemeral").await, "OK");
        assert_eq!(peer.command("REGISTER t c").await, "OK");
        assert_eq!(peer.command("REGISTER e#ephemeral").await, "OK");
    }
    assert_eq!(channels(&lookupd, "t").await, vec!["c", "c#ephemeral"]);

    assert_eq!(a.command("UNREGISTER t c#ephemeral").await, "OK");
    assert_eq!(channels(&lookupd, "t").await, vec!["c", "c#ephemeral"]);
    for peer in [&mut a, &mut b] {
        assert_eq!(peer.command("UNREGISTER t c").await, "OK");
    }
    assert_eq!(b.command("UNREGISTER t c#ephemeral").await, "OK");
    assert_eq!(channels(&lookupd, "t").await, vec!["c"]);

    assert_eq!(a.command("UNREGISTER e#ephemeral").await, "OK");
    assert!(topics(&lookupd).await.contains(&"e#ephemeral".to_string()));
    assert_eq!(b.command("UNREGISTER e#ephemeral").await, "OK");
    assert_eq!(topics(&lookupd).await, vec!["t"]);
    assert_v1_error(
        &get(&lookupd, "/lookup?topic=e%23ephemeral").await,
        404,
        "TOPIC_NOT_FOUND",
    );

    // As upstream, a disconnect empties ephemeral keys but does not delete them.
    assert_eq!(a.command("REGISTER x#ephemeral").await, "OK");
    drop(a);
    eventually("a's registrations to go", || async {
        producers_of(&lookupd, "x#ephemeral").await.is_empty()
    })
    .await;
    assert_eq!(topics(&lookupd).await, vec!["t", "x#ephemeral"]);
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_and_listeners() {
    let lookupd = start(options()).await;
    let (tcp, http): (SocketAddr, SocketAddr) = (lookupd.tcp_addr(), lookupd.http_addr());
    let mut nsqd = Peer::identified(&lookupd, 4151).await;
    assert_eq!(nsqd.command("REGISTER t").await, "OK");
    // A client stalled mid-request does not hold shutdown up.
    let mut stalled = TcpStream::connect(http).await.expect("connect to HTTP");
    stalled.write_all(b"GET /pi").await.expect("send");
    tokio::time::timeout(PATIENCE / 2, lookupd.shutdown())
        .await
        .expect("shutdown in time");
    nsqd.expect_closed().await;
    assert!(TcpStream::connect(tcp).await.is_err());
    assert!(TcpStream::connect(http).await.is_err());
}
