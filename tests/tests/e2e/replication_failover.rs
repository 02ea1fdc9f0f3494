//! Replication failover with real nsqd processes (#18): an origin killed
//! with SIGKILL while a consumer works through its messages, its peer
//! promoted, and the consumer (which discovers through nsqlookupd) finishing
//! the work from the peer; and two nsqds mirroring each other, each killed
//! in turn.

use nsq::api::{PeerStats, ReplicaStats, Stats};
use nsq::protocol::Command;
use nsq_e2e::*;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_LAG: &str = "--replication-max-lag=200ms";

async fn stats_of(d: &Daemon) -> Stats {
    let reply = get(d, "/stats?format=json").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).expect("stats JSON")
}

async fn link(d: &Daemon) -> PeerStats {
    stats_of(d).await.peers.expect("peers in /stats").remove(0)
}

async fn replica(d: &Daemon) -> Option<ReplicaStats> {
    stats_of(d).await.replicas.map(|mut r| r.remove(0))
}

async fn until_synced(d: &Daemon) {
    eventually_within("the link is in sync", Duration::from_secs(20), || async {
        link(d).await.state == "synced"
    })
    .await;
}

async fn until_origin_gone(peer: &Daemon) {
    eventually_within(
        "the peer sees its origin gone",
        Duration::from_secs(20),
        || async { replica(peer).await.is_some_and(|r| !r.connected) },
    )
    .await;
}

/// MPUBs `bodies` in batches of 100; each returns only once acknowledged.
async fn publish_all(d: &Daemon, topic: &str, bodies: &[String]) {
    let mut conn = Conn::connect_addr(d.tcp).await;
    for batch in bodies.chunks(100) {
        conn.send(Command::Mpub {
            topic: topic.into(),
            bodies: batch.iter().map(|b| b.clone().into()).collect(),
        })
        .await;
        conn.expect_response("OK").await;
    }
}

async fn promote(peer: &Daemon) -> nsq::api::PromoteAnswer {
    let reply = post(peer, "/replica/promote", "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).expect("promote JSON")
}

/// Every body a consumer handled, with when it first and last did.
#[derive(Default)]
struct Handled {
    times: HashMap<String, Vec<Instant>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_origin_is_replaced_by_its_promoted_peer() {
    let lookupd = start_lookupd().await;
    let lookupd_flag = format!("--lookupd-tcp-address={}", lookupd.tcp_addr());
    let (dir_a, dir_b) = (temp_dir("origin"), temp_dir("peer"));
    let b = Daemon::start(&dir_b, &["--mem-queue-size=0", &lookupd_flag]);
    let replicate = format!("--replicate-to={}", b.tcp);
    let a = Daemon::start(
        &dir_a,
        &["--mem-queue-size=0", &replicate, MAX_LAG, &lookupd_flag],
    );
    until_synced(&a).await;
    create_channel(&a.http.to_string(), "t", "c").await;
    let bodies: Vec<String> = (0..1000).map(|i| format!("m{i:04}")).collect();
    publish_all(&a, "t", &bodies).await;

    // A consumer that takes its time, finding nsqds through lookupd.
    let handled = Arc::new(Mutex::new(Handled::default()));
    let config = nsq::Config {
        max_in_flight: 5,
        lookupd_poll_interval: Duration::from_millis(200),
        ..nsq::Config::default()
    };
    let consumer = nsq::Consumer::new("t", "c", config).expect("valid consumer");
    let record = handled.clone();
    consumer
        .add_handler(move |msg: nsq::Message| {
            let record = record.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let body = String::from_utf8_lossy(msg.body()).into_owned();
                record
                    .lock()
                    .unwrap()
                    .times
                    .entry(body)
                    .or_default()
                    .push(Instant::now());
                Ok::<_, std::convert::Infallible>(())
            }
        })
        .expect("handler");
    consumer
        .connect_to_lookupd(&lookupd.http_addr().to_string())
        .await
        .expect("lookupd");
    eventually_within(
        "the consumer is under way",
        Duration::from_secs(20),
        || async { handled.lock().unwrap().times.len() >= 200 },
    )
    .await;

    a.kill();
    let killed = Instant::now();
    until_origin_gone(&b).await;
    let answer = promote(&b).await;
    assert_eq!(answer.promoted.len(), 1, "{answer:?}");
    assert_eq!(answer.promoted[0].topics, ["t"]);

    eventually_within(
        "the consumer gets every message from the promoted peer",
        Duration::from_secs(30),
        || async { handled.lock().unwrap().times.len() == bodies.len() },
    )
    .await;
    consumer.stop().await;
    let handled = std::mem::take(&mut *handled.lock().unwrap());
    let want: HashSet<&String> = bodies.iter().collect();
    assert_eq!(handled.times.keys().collect::<HashSet<_>>(), want);
    // A message is handled twice only when its FIN had not reached the peer
    // (the lag, 200 ms here) or was in flight at the kill.
    let window = Duration::from_secs(1);
    for (body, times) in &handled.times {
        if times.len() > 1 {
            assert!(
                times[0] + window > killed,
                "{body} was handled {:?} before the kill and delivered again",
                killed - times[0]
            );
        }
    }
    let duplicates: usize = handled.times.values().map(|t| t.len() - 1).sum();
    eprintln!("duplicates after the failover: {duplicates}");
    assert!(b.terminate().success());
    lookupd.shutdown().await;
}

/// Drains channel `c` of `t`: every body until a second of silence.
async fn drain(d: &Daemon) -> Vec<String> {
    let mut conn = Conn::connect_addr(d.tcp).await;
    conn.subscribe("t", "c").await;
    conn.rdy(500).await;
    let mut got = Vec::new();
    loop {
        match conn.read_frame_within(Duration::from_secs(1)).await {
            Ok(Some(f)) if f.frame_type == nsq::protocol::FrameType::Message => {
                let m = nsq::protocol::WireMessage::decode(f.data).unwrap();
                got.push(body_of(&m).to_string());
                conn.fin(m.id).await;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(()) => return got,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_peers_lose_nothing_when_each_is_killed_in_turn() {
    let (dir_a, dir_b) = (temp_dir("a"), temp_dir("b"));
    let (port_a, port_b) = (free_port(), free_port());
    let start = |dir: &TempDir, port: u16, peer: u16| {
        let replicate = format!("--replicate-to=127.0.0.1:{peer}");
        Daemon::start_at(
            dir,
            port,
            &[
                "--mem-queue-size=0",
                &replicate,
                MAX_LAG,
                "--replication-timeout=2s",
            ],
        )
    };
    let a = start(&dir_a, port_a, port_b);
    let b = start(&dir_b, port_b, port_a);
    until_synced(&a).await;
    until_synced(&b).await;
    for d in [&a, &b] {
        create_channel(&d.http.to_string(), "t", "c").await;
    }
    let from_a: Vec<String> = (0..300).map(|i| format!("a{i:03}")).collect();
    let from_b: Vec<String> = (0..300).map(|i| format!("b{i:03}")).collect();
    publish_all(&a, "t", &from_a).await;
    publish_all(&b, "t", &from_b).await;
    // 50 of A's are processed before anything goes wrong.
    let mut conn = Conn::connect_addr(a.tcp).await;
    conn.subscribe("t", "c").await;
    conn.rdy(50).await;
    let mut processed = HashSet::new();
    for _ in 0..50 {
        let m = conn.expect_message().await;
        processed.insert(body_of(&m).to_string());
        conn.fin(m.id).await;
    }
    // Closed only once A has them: RDY 50 brought 50 more, and a close with
    // them unread is a reset, which may drop FINs nsqd has not read yet.
    eventually_within("A has the FINs", Duration::from_secs(15), || async {
        let topics = stats_of(&a).await.topics.unwrap_or_default();
        let c = topics
            .iter()
            .flat_map(|t| &t.channels)
            .find(|c| c.channel_name == "c");
        c.is_some_and(|c| c.depth + c.in_flight_count == 250)
    })
    .await;
    drop(conn);
    eventually_within(
        "B's replica of A has the FINs",
        Duration::from_secs(15),
        || async { replica(&b).await.is_some_and(|r| r.depth == 250) },
    )
    .await;

    // A dies; B takes over A's messages beside its own.
    a.kill();
    until_origin_gone(&b).await;
    assert_eq!(promote(&b).await.promoted[0].messages, 250);

    // A returns fenced, retires its copy, and mirrors B again.
    let a = start(&dir_a, port_a, port_b);
    eventually_within("A is fenced", Duration::from_secs(20), || async {
        link(&a).await.state == "fenced"
    })
    .await;
    let reply = post(
        &a,
        &format!("/replication/retire?peer=127.0.0.1:{port_b}"),
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    until_synced(&a).await;
    until_synced(&b).await;
    eventually_within(
        "A's replica of B holds B's 550",
        Duration::from_secs(10),
        || async {
            replica(&a)
                .await
                .is_some_and(|r| r.connected && r.depth == 550)
        },
    )
    .await;

    // Then B dies, and A takes everything over.
    b.kill();
    until_origin_gone(&a).await;
    assert_eq!(promote(&a).await.promoted[0].messages, 550);
    let got = drain(&a).await;
    let unique: HashSet<String> = got.iter().cloned().collect();
    let want: HashSet<String> = from_a
        .iter()
        .chain(&from_b)
        .filter(|b| !processed.contains(*b))
        .cloned()
        .collect();
    assert_eq!(
        unique, want,
        "every acknowledged, unprocessed message, once"
    );
    assert_eq!(
        got.len(),
        want.len(),
        "no duplicates: every FIN was mirrored"
    );
    assert!(a.terminate().success());
}

/// A promotion is cut short by SIGKILL between a batch on disk and its
/// record in `origin.json` (`NSQD_TEST_PAUSE_AT=promotion_batch_adopted`):
/// promoted again after the restart, nothing is missing, and only that batch
/// (1,024 messages) comes twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_promotion_promotes_again_without_loss() {
    let (dir_a, dir_b) = (temp_dir("origin"), temp_dir("peer"));
    let b = Daemon::start_with_env(
        &dir_b,
        &["--mem-queue-size=0"],
        &[("NSQD_TEST_PAUSE_AT", "promotion_batch_adopted@2")],
    );
    let replicate = format!("--replicate-to={}", b.tcp);
    let a = Daemon::start(&dir_a, &["--mem-queue-size=0", &replicate, MAX_LAG]);
    until_synced(&a).await;
    create_channel(&a.http.to_string(), "t", "c").await;
    let bodies: Vec<String> = (0..3000).map(|i| format!("m{i:04}")).collect();
    publish_all(&a, "t", &bodies).await;
    eventually_within(
        "the replica holds all 3000",
        Duration::from_secs(15),
        || async { replica(&b).await.is_some_and(|r| r.depth == 3000) },
    )
    .await;
    a.kill();
    until_origin_gone(&b).await;

    // The promotion stops for good after its second batch is on disk.
    let promoting = tokio::spawn({
        let url = b.http_url();
        async move { post(url.as_str(), "/replica/promote", "").await }
    });
    eventually_within(
        "the promotion reaches its pause",
        Duration::from_secs(20),
        || async {
            b.log()
                .contains("nsqd test pause at promotion_batch_adopted")
        },
    )
    .await;
    b.kill();
    promoting.abort();

    let b = Daemon::start(&dir_b, &["--mem-queue-size=0"]);
    let answer = promote(&b).await;
    assert_eq!(answer.promoted.len(), 1, "{answer:?}");
    assert_eq!(
        answer.promoted[0].messages,
        3000 - 1024,
        "resumed after the first batch"
    );
    let got = drain(&b).await;
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(
        unique,
        bodies.iter().collect::<HashSet<_>>(),
        "every message"
    );
    assert_eq!(
        got.len(),
        3000 + 1024,
        "the unrecorded batch twice, nothing else"
    );
    assert!(b.terminate().success());
}
