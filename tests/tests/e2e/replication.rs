//! Replication between two real nsqds on loopback (#18): an origin with
//! `--replicate-to` and its peer. What a publish's OK means, a peer that goes
//! away and comes back, `--replication-required`, and consumption progress.

use bytes::Bytes;
use nsq::api::{PeerStats, ReplicaStats};
use nsq::protocol::Command;
use nsq_e2e::*;
use std::net::SocketAddr;
use std::time::Duration;

fn log_mode(data: &std::path::Path, tcp_port: u16) -> Options {
    Options {
        tcp_address: format!("127.0.0.1:{tcp_port}"),
        data_path: data.to_path_buf(),
        mem_queue_size: 0,
        ..test_options()
    }
}

fn origin_options(peer: SocketAddr) -> Options {
    origin_options_in(peer, &temp_dir("origin").into_path(), 0)
}

fn origin_options_in(peer: SocketAddr, data: &std::path::Path, tcp_port: u16) -> Options {
    Options {
        replicate_to: vec![peer.to_string()],
        replication_timeout: Duration::from_secs(2),
        replication_max_lag: Duration::from_millis(200),
        ..log_mode(data, tcp_port)
    }
}

async fn peer_link(origin: &Nsqd) -> PeerStats {
    stats(origin)
        .await
        .peers
        .expect("peers in /stats")
        .remove(0)
}

async fn replica(peer: &Nsqd) -> Option<ReplicaStats> {
    stats(peer).await.replicas.map(|mut r| r.remove(0))
}

async fn stored_on_peer(peer: &Nsqd, topic: &str) -> u64 {
    let Some(r) = replica(peer).await else {
        return 0;
    };
    r.topics
        .iter()
        .find(|t| t.topic_name == topic)
        .map_or(0, |t| t.stored_seq)
}

/// A log-mode peer and an origin that replicates to it, once in sync; the
/// peer's data directory goes with the first.
async fn synced_pair() -> (TempDir, Nsqd, Nsqd) {
    let peer_dir = temp_dir("peer");
    let peer = start_nsqd(log_mode(peer_dir.path(), 0)).await;
    let origin = start_nsqd(origin_options(peer.tcp_addr())).await;
    until_synced(&origin).await;
    (peer_dir, peer, origin)
}

async fn until_synced(origin: &Nsqd) {
    eventually_within("the link is in sync", Duration::from_secs(15), || async {
        peer_link(origin).await.state == "synced"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_is_on_the_peer_before_its_ok() {
    let (_peer_dir, peer, origin) = synced_pair().await;

    let mut conn = Conn::connect(&origin).await;
    conn.publish("t", b"one").await;
    assert_eq!(stored_on_peer(&peer, "t").await, 1, "PUB");
    conn.send(Command::Mpub {
        topic: "t".into(),
        bodies: (0..50).map(|i| Bytes::from(format!("m{i}"))).collect(),
    })
    .await;
    conn.expect_response("OK").await;
    assert_eq!(stored_on_peer(&peer, "t").await, 51, "MPUB");
    conn.send(Command::Dpub {
        topic: "t".into(),
        delay: Duration::from_secs(60),
        body: Bytes::from_static(b"later"),
    })
    .await;
    conn.expect_response("OK").await;
    assert_eq!(stored_on_peer(&peer, "t").await, 52, "DPUB");
    let reply = post(&origin, "/pub?topic=t", "http").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(stored_on_peer(&peer, "t").await, 53, "/pub");
    let reply = post(&origin, "/mpub?topic=t", "a\nb\nc").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(stored_on_peer(&peer, "t").await, 56, "/mpub");

    // Replicas are invisible: the peer has no topic of its own.
    assert_eq!(stats(&peer).await.topics, Some(vec![]));
    let link = peer_link(&origin).await;
    assert_eq!((link.state.as_str(), link.backlog_messages), ("synced", 0));
    let r = replica(&peer).await.unwrap();
    assert!(r.connected);
    assert_eq!(r.origin, origin.tcp_addr().to_string());
    origin.shutdown().await;
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_was_down_catches_up_from_the_log() {
    let peer_dir = temp_dir("peer");
    let port = free_port();
    let peer = start_nsqd(log_mode(peer_dir.path(), port)).await;
    let peer_addr = peer.tcp_addr();
    let origin = start_nsqd(origin_options(peer_addr)).await;
    until_synced(&origin).await;
    let mut conn = Conn::connect(&origin).await;
    conn.publish("t", b"before").await;
    peer.shutdown().await;

    // Publishes go on without the peer.
    for i in 0..100 {
        conn.publish("t", format!("during-{i}").as_bytes()).await;
    }
    eventually("the link is down", || async {
        let link = peer_link(&origin).await;
        link.state == "down" && !link.connected
    })
    .await;
    let link = peer_link(&origin).await;
    assert!(!link.last_error.is_empty());
    let metrics = get(&origin, "/metrics").await.body;
    let peer_label = format!("peer=\"{peer_addr}\"");
    let sample = |name: &str, metrics: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&peer_label))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(sample("nsqd_replication_peer_synced{", &metrics), Some(0.0));
    assert_eq!(
        sample("nsqd_replication_peer_backlog_messages{", &metrics),
        Some(100.0)
    );
    let text = get(&origin, "/stats").await.body;
    assert!(
        text.contains(&format!("\nPeers:\n   peer {peer_addr} down backlog: 100")),
        "{text}"
    );

    // The peer returns on its address and gets what it missed.
    let peer = start_nsqd(log_mode(peer_dir.path(), port)).await;
    until_synced(&origin).await;
    eventually("the peer caught up", || async {
        stored_on_peer(&peer, "t").await == 101
    })
    .await;
    let link = peer_link(&origin).await;
    assert_eq!(link.backlog_messages, 0);
    assert_eq!(link.topics[0].stored_seq, link.topics[0].end_seq);
    eventually("progress is applied", || async {
        peer_link(&origin).await.progress_lag_ms == 0
    })
    .await;
    let metrics = get(&origin, "/metrics").await.body;
    assert_eq!(sample("nsqd_replication_peer_synced{", &metrics), Some(1.0));
    assert_eq!(
        sample("nsqd_replication_peer_backlog_messages{", &metrics),
        Some(0.0)
    );
    let metrics = get(&peer, "/metrics").await.body;
    let origin_label = format!("origin=\"{}\"", origin.tcp_addr());
    let depth = metrics
        .lines()
        .find(|l| l.starts_with("nsqd_replica_depth{") && l.contains(&origin_label));
    assert!(depth.is_some_and(|l| l.ends_with(" 101")), "{metrics}");
    origin.shutdown().await;
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_required_refuses_publishes_while_the_peer_is_away() {
    let peer_dir = temp_dir("peer");
    let port = free_port();
    let peer = start_nsqd(log_mode(peer_dir.path(), port)).await;
    let origin = start_nsqd(Options {
        replication_required: true,
        ..origin_options(peer.tcp_addr())
    })
    .await;
    until_synced(&origin).await;
    let mut conn = Conn::connect(&origin).await;
    conn.publish("t", b"while-up").await;
    peer.shutdown().await;
    eventually("the link is down", || async {
        peer_link(&origin).await.state == "down"
    })
    .await;

    let mut conn = Conn::connect(&origin).await;
    conn.send(Command::Pub {
        topic: "t".into(),
        body: Bytes::from_static(b"refused"),
    })
    .await;
    let frame = conn.read_non_heartbeat().await.expect("an answer");
    let text = String::from_utf8_lossy(&frame.data).into_owned();
    assert!(text.starts_with("E_PUB_FAILED PUB failed peer"), "{text}");
    let reply = post(&origin, "/pub?topic=t", "refused").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, r#"{"message":"REPLICATION_UNAVAILABLE"}"#)
    );
    // Ephemeral topics are never replicated, so never refused.
    let reply = post(&origin, "/pub?topic=e%23ephemeral", "fine").await;
    assert_eq!(reply.status, 200);

    let peer = start_nsqd(log_mode(peer_dir.path(), port)).await;
    until_synced(&origin).await;
    let mut conn = Conn::connect(&origin).await;
    conn.publish("t", b"after").await;
    assert_eq!(
        stored_on_peer(&peer, "t").await,
        2,
        "refused ones were not stored"
    );
    origin.shutdown().await;
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_messages_leave_the_replica_within_the_lag() {
    let (_peer_dir, peer, origin) = synced_pair().await;
    let mut consumer = consumer(&origin, "t", "c", 0).await;
    let mut conn = Conn::connect(&origin).await;
    for start in (0..2000).step_by(200) {
        conn.send(Command::Mpub {
            topic: "t".into(),
            bodies: (start..start + 200)
                .map(|i| Bytes::from(format!("m{i}")))
                .collect(),
        })
        .await;
        conn.expect_response("OK").await;
    }
    eventually("the replica holds all 2000", || async {
        replica(&peer).await.is_some_and(|r| r.depth == 2000)
    })
    .await;
    consumer.rdy(1000).await;
    for _ in 0..1000 {
        let m = consumer.expect_message().await;
        consumer.fin(m.id).await;
    }
    eventually_within("FINs reach the replica", Duration::from_secs(3), || async {
        let r = replica(&peer).await.unwrap();
        r.depth == 1000 && r.topics[0].channels[0].depth == 1000
    })
    .await;
    origin.shutdown().await;
    peer.shutdown().await;
}

/// A channel or topic deleted on the origin leaves the peer's replica
/// within the lag, and the others stay: with 300 topics, so that a
/// collector that looked each name up in a list would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_topics_and_channels_leave_the_replica() {
    let (_peer_dir, peer, origin) = synced_pair().await;
    let http = origin.http_addr().expect("http").to_string();
    for i in 0..300 {
        create_channel(&http, &format!("t{i}"), "c1").await;
    }
    create_channel(&http, "t0", "c2").await;
    let mut conn = Conn::connect(&origin).await;
    conn.publish("t0", b"kept").await;
    let replica_shape = || async {
        let r = replica(&peer).await.unwrap_or_default();
        let t0: Vec<String> = r
            .topics
            .iter()
            .find(|t| t.topic_name == "t0")
            .map(|t| t.channels.iter().map(|c| c.channel_name.clone()).collect())
            .unwrap_or_default();
        (r.topics.len(), t0)
    };
    eventually("the peer has every topic and both channels", || async {
        replica_shape().await == (300, vec!["c1".to_string(), "c2".to_string()])
    })
    .await;

    let deleted = post(&origin, "/channel/delete?topic=t0&channel=c2", "").await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let deleted = post(&origin, "/topic/delete?topic=t299", "").await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    eventually_within(
        "the deletions reach the peer",
        Duration::from_secs(5),
        || async { replica_shape().await == (299, vec!["c1".to_string()]) },
    )
    .await;
    let r = replica(&peer).await.unwrap();
    assert!(r.topics.iter().all(|t| t.topic_name != "t299"));
    assert_eq!(r.depth, 1, "t0's message is still held for c1");
    origin.shutdown().await;
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_mode_origin_cannot_replicate_and_a_memory_peer_refuses() {
    let err = nsqd::Nsqd::start(Options {
        replicate_to: vec!["127.0.0.1:1".into()],
        ..test_options()
    })
    .await
    .err()
    .expect("refused at start");
    assert!(
        err.to_string()
            .contains("--replicate-to needs the log (--mem-queue-size=0)"),
        "{err}"
    );

    let memory_peer = start_default_nsqd().await;
    let origin = start_nsqd(origin_options(memory_peer.tcp_addr())).await;
    eventually("the link is refused", || async {
        let link = peer_link(&origin).await;
        link.state == "refused"
            && link
                .last_error
                .contains("REPL needs --mem-queue-size=0 on the peer")
    })
    .await;
    // Publishes go on locally.
    let mut conn = Conn::connect(&origin).await;
    conn.publish("t", b"alone").await;
    origin.shutdown().await;
    memory_peer.shutdown().await;
}

async fn channel_depth(nsqd: &Nsqd, topic: &str, channel: &str) -> Option<i64> {
    let topic = topic_stats(nsqd, topic).await?;
    let channel = topic.channels.iter().find(|c| c.channel_name == channel)?;
    Some(channel.depth)
}

/// The bodies of `n` messages from a consumer, each FINed; with the
/// attempts each came with.
async fn take_bodies(consumer: &mut Conn, n: usize) -> Vec<(String, u16)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let m = consumer.expect_message().await;
        got.push((body_of(&m).to_string(), m.attempts));
        consumer.fin(m.id).await;
    }
    got.sort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_delivers_what_its_origin_had_not_finished() {
    let (peer_dir, origin_dir) = (temp_dir("peer"), temp_dir("origin"));
    let peer = start_nsqd(log_mode(peer_dir.path(), 0)).await;
    let origin_port = free_port();
    let origin_opts = || origin_options_in(peer.tcp_addr(), origin_dir.path(), origin_port);
    let origin = start_nsqd(origin_opts()).await;
    until_synced(&origin).await;

    // Two channels: "done" finishes m00..m29, "retry" requeues m00..m09.
    let mut done = consumer(&origin, "t", "done", 0).await;
    let mut retry = consumer(&origin, "t", "retry", 0).await;
    let mut conn = Conn::connect(&origin).await;
    conn.send(Command::Mpub {
        topic: "t".into(),
        bodies: (0..100).map(|i| Bytes::from(format!("m{i:02}"))).collect(),
    })
    .await;
    conn.expect_response("OK").await;
    done.rdy(30).await;
    take_bodies(&mut done, 30).await;
    retry.rdy(10).await;
    for _ in 0..10 {
        let m = retry.expect_message().await;
        retry
            .send(Command::Req {
                id: m.id,
                delay: Duration::ZERO,
            })
            .await;
    }
    retry.rdy(0).await;
    eventually_within(
        "progress reaches the replica",
        Duration::from_secs(5),
        || async {
            let Some(r) = replica(&peer).await else {
                return false;
            };
            let depths: Vec<u64> = r.topics[0].channels.iter().map(|c| c.depth).collect();
            depths == [70, 100]
        },
    )
    .await;
    drop((done, retry, conn));

    // A promotion is refused while the origin is connected.
    let origin_addr = origin.tcp_addr().to_string();
    let reply = post(&peer, &format!("/replica/promote?origin={origin_addr}"), "").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (409, r#"{"message":"ORIGIN_CONNECTED"}"#)
    );
    origin.shutdown().await;
    eventually("the peer sees its origin gone", || async {
        replica(&peer).await.is_some_and(|r| !r.connected)
    })
    .await;

    let reply = post(&peer, "/replica/promote", "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer: nsq::api::PromoteAnswer = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(answer.promoted.len(), 1);
    assert_eq!(answer.promoted[0].origin, origin_addr);
    assert_eq!(answer.promoted[0].topics, ["t"]);
    assert_eq!(answer.promoted[0].messages, 100);
    assert_eq!(channel_depth(&peer, "t", "done").await, Some(70));
    assert_eq!(channel_depth(&peer, "t", "retry").await, Some(100));
    let r = replica(&peer).await.unwrap();
    assert!(r.promoted_at.is_some() && r.topics.is_empty(), "{r:?}");
    // Nothing is left to promote.
    let reply = post(&peer, "/replica/promote", "").await;
    assert_eq!(reply.body, r#"{"promoted":[]}"#);

    let mut done = consumer(&peer, "t", "done", 100).await;
    let got = take_bodies(&mut done, 70).await;
    let want: Vec<(String, u16)> = (30..100).map(|i| (format!("m{i:02}"), 1)).collect();
    assert_eq!(got, want, "\"done\" gets what it had not finished");
    done.expect_silence(Duration::from_millis(200)).await;
    let mut retry = consumer(&peer, "t", "retry", 100).await;
    let got = take_bodies(&mut retry, 100).await;
    let want: Vec<(String, u16)> = (0..100)
        .map(|i| (format!("m{i:02}"), if i < 10 { 2 } else { 1 }))
        .collect();
    assert_eq!(
        got, want,
        "\"retry\" gets everything, the requeued with their attempts"
    );

    // The old origin returns: fenced until it retires its copy.
    let origin = start_nsqd(origin_opts()).await;
    eventually("the old origin is fenced", || async {
        peer_link(&origin).await.state == "fenced"
    })
    .await;
    assert!(peer_link(&origin)
        .await
        .last_error
        .contains("/replication/retire"));
    assert_eq!(channel_depth(&origin, "t", "done").await, Some(70));
    let reply = post(
        &origin,
        &format!("/replication/retire?peer={}", peer.tcp_addr()),
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let retired: nsq::api::Retired = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(retired.topics, ["t"]);
    assert_eq!(channel_depth(&origin, "t", "done").await, Some(0));
    assert_eq!(channel_depth(&origin, "t", "retry").await, Some(0));
    // ... and is replicated anew.
    until_synced(&origin).await;
    let mut conn = Conn::connect(&origin).await;
    conn.publish("t", b"after").await;
    let r = replica(&peer).await.unwrap();
    assert!(r.connected && r.promoted_at.is_none(), "{r:?}");
    eventually(
        "the new message reaches both channels' replicas",
        || async { replica(&peer).await.unwrap().topics[0].depth == 2 },
    )
    .await;
    origin.shutdown().await;
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_and_forget_answer_clear_errors() {
    let memory = start_default_nsqd().await;
    let reply = post(&memory, "/replica/promote", "").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (400, r#"{"message":"NO_REPLICAS_WITHOUT_LOG_MODE"}"#)
    );
    memory.shutdown().await;

    let dir = temp_dir("peer");
    let peer = start_nsqd(log_mode(dir.path(), 0)).await;
    let reply = post(&peer, "/replica/promote?origin=10.0.0.1:4150", "").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (404, r#"{"message":"ORIGIN_NOT_FOUND"}"#)
    );
    let reply = post(&peer, "/replica/forget", "").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (400, r#"{"message":"MISSING_ARG_ORIGIN"}"#)
    );
    let reply = post(&peer, "/replica/forget?origin=10.0.0.1:4150", "").await;
    assert_eq!(reply.status, 404);
    let reply = post(&peer, "/replication/retire?peer=10.0.0.1:4150", "").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (404, r#"{"message":"PEER_NOT_FOUND"}"#)
    );
    let reply = get(&peer, "/replica/promote").await;
    assert_eq!(reply.status, 405);
    peer.shutdown().await;
}

/// An origin whose data directory was wiped comes back at its address with
/// a new ID: the peer then holds two origins that reported one address.
/// Named by that address, neither is promoted or forgotten (409
/// ORIGIN_AMBIGUOUS with both IDs); named by its ID, the old one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_two_origins_reported_is_ambiguous() {
    let peer_dir = temp_dir("peer");
    let peer = start_nsqd(log_mode(peer_dir.path(), 0)).await;
    let port = free_port();
    let first_dir = temp_dir("origin-first");
    let first = start_nsqd(origin_options_in(peer.tcp_addr(), first_dir.path(), port)).await;
    until_synced(&first).await;
    Conn::connect(&first).await.publish("t", b"old").await;
    first.shutdown().await;
    let second_dir = temp_dir("origin-second");
    let second = start_nsqd(origin_options_in(peer.tcp_addr(), second_dir.path(), port)).await;
    until_synced(&second).await;
    let origins = || async { stats(&peer).await.replicas.unwrap_or_default() };
    eventually("the peer knows both origins", || async {
        origins().await.len() == 2
    })
    .await;
    let mut ids: Vec<String> = origins().await.into_iter().map(|o| o.origin_id).collect();
    ids.sort();
    let address = format!("127.0.0.1:{port}");
    for action in ["promote", "forget"] {
        let reply = post(&peer, &format!("/replica/{action}?origin={address}"), "").await;
        let expected = format!(
            r#"{{"message":"ORIGIN_AMBIGUOUS: name one of {}, {}"}}"#,
            ids[0], ids[1]
        );
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (409, expected.as_str()),
            "{action}"
        );
    }
    let old = origins()
        .await
        .into_iter()
        .find(|o| !o.connected)
        .expect("the first origin, away");
    let reply = post(
        &peer,
        &format!("/replica/promote?origin={}", old.origin_id),
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let promoted: nsq::api::PromoteAnswer = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(promoted.promoted.len(), 1);
    assert_eq!(promoted.promoted[0].messages, 1, "the old origin's message");
    second.shutdown().await;
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_promotes_by_itself_after_replica_promote_after_and_forgets_on_request() {
    let peer_dir = temp_dir("peer");
    let peer = start_nsqd(Options {
        replica_promote_after: Duration::from_secs(1),
        ..log_mode(peer_dir.path(), 0)
    })
    .await;
    let origin = start_nsqd(origin_options(peer.tcp_addr())).await;
    until_synced(&origin).await;
    let mut conn = Conn::connect(&origin).await;
    conn.publish("t", b"kept").await;
    // Connected, it is never promoted, however long that lasts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(replica(&peer).await.unwrap().promoted_at.is_none());
    let origin_addr = origin.tcp_addr().to_string();
    drop(conn);
    origin.shutdown().await;

    eventually_within("promoted by itself", Duration::from_secs(10), || async {
        let r = replica(&peer).await.unwrap();
        r.promoted_at.is_some() && r.topics.is_empty()
    })
    .await;
    assert_eq!(topic_stats(&peer, "t").await.map(|t| t.depth), Some(1));

    // Forgetting drops the fence: the origin is no longer listed.
    let reply = post(&peer, &format!("/replica/forget?origin={origin_addr}"), "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(replica(&peer).await.is_none());
    assert!(!peer_dir
        .path()
        .join("replicas")
        .read_dir()
        .unwrap()
        .any(|_| true));
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_carries_the_replication_gauges() {
    use crate::statsd::Statsd;
    let (mut peer_statsd, mut origin_statsd) = (Statsd::bind().await, Statsd::bind().await);
    let peer_dir = temp_dir("peer");
    let peer = start_nsqd(peer_statsd.options(log_mode(peer_dir.path(), 0))).await;
    let origin = start_nsqd(origin_statsd.options(origin_options(peer.tcp_addr()))).await;
    until_synced(&origin).await;
    let http = origin.http_addr().unwrap().to_string();
    create_channel(&http, "t", "c").await;
    let mut conn = Conn::connect(&origin).await;
    conn.send(Command::Mpub {
        topic: "t".into(),
        bodies: (0..3).map(|i| Bytes::from(format!("m{i}"))).collect(),
    })
    .await;
    conn.expect_response("OK").await;

    // On the origin, per peer: "127.0.0.1:PORT" as 127_0_0_1_PORT.
    let key = format!("replication.peer.127_0_0_1_{}", peer.tcp_addr().port());
    let prefix = Statsd::prefix(&origin);
    let mut push = origin_statsd.next_push(&prefix).await;
    for _ in 0..25 {
        if push.get(&format!("{key}.backlog_messages")) == Some(&(0, 'g')) {
            break;
        }
        push = origin_statsd.next_push(&prefix).await;
    }
    assert_eq!(
        push.get(&format!("{key}.synced")),
        Some(&(1, 'g')),
        "{push:?}"
    );
    assert_eq!(push.get(&format!("{key}.connected")), Some(&(1, 'g')));
    assert_eq!(
        push.get(&format!("{key}.backlog_messages")),
        Some(&(0, 'g'))
    );
    assert!(matches!(
        push.get(&format!("{key}.progress_lag_ms")),
        Some((_, 'g'))
    ));

    // On the peer, per origin, by the address the origin reported.
    let origin_address = replica(&peer).await.expect("a replica").origin;
    let key = format!("replica.{}", origin_address.replace(['.', ':'], "_"));
    let prefix = Statsd::prefix(&peer);
    let mut push = peer_statsd.next_push(&prefix).await;
    for _ in 0..25 {
        if push.get(&format!("{key}.depth")) == Some(&(3, 'g')) {
            break;
        }
        push = peer_statsd.next_push(&prefix).await;
    }
    assert_eq!(
        push.get(&format!("{key}.depth")),
        Some(&(3, 'g')),
        "{push:?}"
    );
    assert_eq!(push.get(&format!("{key}.connected")), Some(&(1, 'g')));
    assert!(matches!(push.get(&format!("{key}.lag_ms")), Some((_, 'g'))));
}
