//! Dead letters, message TTL and peek through the real nsqd binary: what a
//! consumer sees, what the HTTP API shows, and what survives a restart and,
//! in durable mode, a SIGKILL.

use nsq::api::ChannelStats;
use nsq::protocol::{Command, FrameType, WireMessage};
use nsq::NsqdHttp;
use nsq_e2e::*;
use std::time::Duration;

async fn setup(d: &Daemon, topic: &str, channel: &str) -> NsqdHttp {
    let http = NsqdHttp::new(&d.http_url());
    http.topic_action(nsq::TopicAction::Create, topic)
        .await
        .unwrap();
    http.channel_action(nsq::TopicAction::Create, topic, channel)
        .await
        .unwrap();
    http
}

async fn channel_stats(http: &NsqdHttp, topic: &str, channel: &str) -> ChannelStats {
    let stats = http.stats(Some(topic), Some(channel), false).await.unwrap();
    let topics = stats.topics.unwrap_or_default();
    topics[0]
        .channels
        .iter()
        .find(|c| c.channel_name == channel)
        .cloned()
        .expect("channel in stats")
}

async fn subscribed(d: &Daemon, topic: &str, channel: &str, rdy: u32) -> Conn {
    let mut conn = Conn::connect_addr(d.tcp).await;
    conn.subscribe(topic, channel).await;
    conn.rdy(rdy).await;
    conn
}

async fn req(conn: &mut Conn, msg: &WireMessage) {
    conn.send(Command::Req {
        id: msg.id,
        delay: Duration::ZERO,
    })
    .await;
}

/// Publishes `bodies` over TCP, one PUB each.
async fn publish(d: &Daemon, topic: &str, bodies: &[String]) {
    let mut conn = Conn::connect_addr(d.tcp).await;
    for body in bodies {
        conn.publish(topic, body.as_bytes()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_becomes_a_dead_letter_and_can_be_requeued() {
    let dir = temp_dir("dead");
    let d = Daemon::start(&dir, &["--max-attempts=3"]);
    let http = setup(&d, "jobs", "work").await;
    publish(&d, "jobs", &["doomed".to_string()]).await;

    let mut conn = subscribed(&d, "jobs", "work", 1).await;
    for attempt in 1..=3 {
        let msg = conn.expect_message().await;
        assert_eq!((body_of(&msg), msg.attempts), ("doomed", attempt));
        req(&mut conn, &msg).await;
    }
    conn.expect_silence(Duration::from_millis(500)).await;
    let stats = channel_stats(&http, "jobs", "work").await;
    assert_eq!(
        (stats.dead_count, stats.max_attempts, stats.depth),
        (1, 3, 0)
    );
    let dead = http.dead_letters("jobs", "work", 10).await.unwrap();
    assert_eq!(dead.total, 1);
    assert_eq!(dead.messages[0].attempts, 3);
    assert_eq!(dead.messages[0].body_bytes().unwrap(), b"doomed");
    assert_eq!(dead.messages[0].id.len(), 16);
    drop(conn);

    // Dead letters survive a restart, and count in no depth.
    assert!(d.terminate().success());
    let d = Daemon::start(&dir, &["--max-attempts=3"]);
    let http = NsqdHttp::new(&d.http_url());
    let stats = channel_stats(&http, "jobs", "work").await;
    assert_eq!((stats.dead_count, stats.depth), (1, 0));
    let metrics = reqwest::get(format!("{}/metrics", d.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("nsqd_channel_dead_letters{topic=\"jobs\",channel=\"work\",")
            && l.ends_with("} 1")),
        "{metrics}"
    );

    assert_eq!(http.requeue_dead("jobs", "work").await.unwrap(), 1);
    let mut conn = subscribed(&d, "jobs", "work", 1).await;
    let msg = conn.expect_message().await;
    assert_eq!((body_of(&msg), msg.attempts), ("doomed", 1));
    conn.fin(msg.id).await;
    conn.expect_silence(Duration::from_millis(300)).await;
    let stats = channel_stats(&http, "jobs", "work").await;
    assert_eq!(
        (stats.dead_count, stats.depth, stats.in_flight_count),
        (0, 0, 0)
    );

    // Empty drops them.
    publish(&d, "jobs", &["again".to_string()]).await;
    for _ in 0..3 {
        let msg = conn.expect_message().await;
        req(&mut conn, &msg).await;
    }
    eventually("the second dead letter", || async {
        http.dead_letters("jobs", "work", 10).await.unwrap().total == 1
    })
    .await;
    http.empty_dead("jobs", "work").await.unwrap();
    assert_eq!(
        http.dead_letters("jobs", "work", 10).await.unwrap().total,
        0
    );
    assert_eq!(http.requeue_dead("jobs", "work").await.unwrap(), 0);
    conn.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_and_bad_arguments_get_upstream_style_errors() {
    let dir = temp_dir("dead-errors");
    let d = Daemon::start(&dir, &[]);
    let _http = setup(&d, "t", "c").await;
    let client = reqwest::Client::new();
    let url = d.http_url();
    for (method, path, status, message) in [
        (
            "GET",
            "/channel/dead?topic=nope&channel=c",
            404,
            "TOPIC_NOT_FOUND",
        ),
        (
            "GET",
            "/channel/dead?topic=t&channel=nope",
            404,
            "CHANNEL_NOT_FOUND",
        ),
        (
            "POST",
            "/channel/dead/requeue?topic=t",
            400,
            "MISSING_ARG_CHANNEL",
        ),
        (
            "POST",
            "/channel/dead/empty?topic=t&channel=nope",
            404,
            "CHANNEL_NOT_FOUND",
        ),
        (
            "GET",
            "/channel/peek?topic=t&channel=c&n=101",
            400,
            "INVALID_ARG_N",
        ),
        (
            "GET",
            "/channel/peek?topic=t&channel=c&n=-1",
            400,
            "INVALID_ARG_N",
        ),
        (
            "GET",
            "/channel/dead?topic=t&channel=c&n=99999",
            400,
            "INVALID_ARG_N",
        ),
        (
            "POST",
            "/channel/config?topic=t&channel=c&max_attempts=70000",
            400,
            "INVALID_ARG_MAX_ATTEMPTS",
        ),
        (
            "POST",
            "/channel/config?topic=t&channel=c&msg_ttl=soon",
            400,
            "INVALID_ARG_MSG_TTL",
        ),
        (
            "GET",
            "/channel/config?topic=t&channel=c&max_attempts=2",
            405,
            "MUST_POST_TO_CHANGE",
        ),
        (
            "POST",
            "/channel/peek?topic=t&channel=c",
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ] {
        let request = match method {
            "GET" => client.get(format!("{url}{path}")),
            _ => client.post(format!("{url}{path}")),
        };
        let response = request
            .header("Accept", "application/vnd.nsq; version=1.0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["message"], message, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channels_own_settings_persist_across_restart() {
    let dir = temp_dir("dead-config");
    let d = Daemon::start(&dir, &["--max-attempts=5"]);
    let http = setup(&d, "t", "c").await;
    http.channel_action(nsq::TopicAction::Create, "t", "other")
        .await
        .unwrap();
    let set = http
        .channel_config("t", "c", Some(2), Some(Duration::from_millis(1500)))
        .await
        .unwrap();
    assert_eq!((set.max_attempts, set.msg_ttl_ms), (2, 1500));
    assert!(d.terminate().success());

    let d = Daemon::start(&dir, &["--max-attempts=5"]);
    let http = NsqdHttp::new(&d.http_url());
    let read = http.channel_config("t", "c", None, None).await.unwrap();
    assert_eq!((read.max_attempts, read.msg_ttl_ms), (2, 1500));
    let stats = channel_stats(&http, "t", "c").await;
    assert_eq!((stats.max_attempts, stats.msg_ttl_ms), (2, 1500));
    // The other channel keeps the node's default.
    let other = http.channel_config("t", "other", None, None).await.unwrap();
    assert_eq!((other.max_attempts, other.msg_ttl_ms), (5, 0));
    // It applies: the second delivery was the last.
    publish(&d, "t", &["m".to_string()]).await;
    let mut conn = subscribed(&d, "t", "c", 1).await;
    for attempt in 1..=2 {
        let msg = conn.expect_message().await;
        assert_eq!(msg.attempts, attempt);
        req(&mut conn, &msg).await;
    }
    conn.expect_silence(Duration::from_millis(400)).await;
    assert_eq!(channel_stats(&http, "t", "c").await.dead_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_older_than_the_ttl_are_dead_lettered_not_delivered() {
    let dir = temp_dir("ttl");
    let d = Daemon::start(&dir, &["--msg-ttl=1s"]);
    let http = setup(&d, "news", "readers").await;
    let stale: Vec<String> = (0..5).map(|i| format!("stale-{i}")).collect();
    publish(&d, "news", &stale).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish(&d, "news", &["fresh".to_string()]).await;

    let mut conn = subscribed(&d, "news", "readers", 10).await;
    let msg = conn.expect_message().await;
    assert_eq!(body_of(&msg), "fresh");
    conn.fin(msg.id).await;
    conn.expect_silence(Duration::from_millis(300)).await;
    let stats = channel_stats(&http, "news", "readers").await;
    assert_eq!(
        (stats.expired_count, stats.dead_count, stats.msg_ttl_ms),
        (5, 5, 1000)
    );
    let dead = http.dead_letters("news", "readers", 3).await.unwrap();
    assert_eq!(dead.total, 5);
    let bodies: Vec<String> = dead
        .messages
        .iter()
        .map(|m| m.body_text().unwrap())
        .collect();
    assert_eq!(bodies, ["stale-0", "stale-1", "stale-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_reads_memory_and_disk_in_delivery_order_and_takes_nothing() {
    let dir = temp_dir("peek");
    let d = Daemon::start(&dir, &["--mem-queue-size=2"]);
    let http = setup(&d, "t", "c").await;
    let bodies: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    publish(&d, "t", &bodies).await;
    let stats = channel_stats(&http, "t", "c").await;
    assert_eq!((stats.depth, stats.backend_depth), (10, 8));

    let peeked = http.peek("t", "c", 10).await.unwrap();
    let seen: Vec<String> = peeked
        .messages
        .iter()
        .map(|m| m.body_text().unwrap())
        .collect();
    assert_eq!(seen, bodies);
    assert!(peeked.messages.iter().all(|m| m.attempts == 0));
    assert_eq!(peeked.total, 10);
    let few = http.peek("t", "c", 3).await.unwrap();
    assert_eq!(few.messages.len(), 3);
    let stats = channel_stats(&http, "t", "c").await;
    assert_eq!((stats.depth, stats.in_flight_count), (10, 0));

    let mut conn = subscribed(&d, "t", "c", 20).await;
    for body in &bodies {
        let msg = conn.expect_message().await;
        assert_eq!((body_of(&msg), msg.attempts), (body.as_str(), 1));
        conn.fin(msg.id).await;
    }
    conn.expect_silence(Duration::from_millis(300)).await;
}

/// Durable mode, killed between a dead letter's fsync and its journal FIN
/// (where `NSQD_TEST_PAUSE_AT=dead_letters_synced` stops the dead-letter
/// writer): after the restart the log
/// still has the message unfinished, so it is taken again, dies again at
/// once (its attempts were journaled with its REQ) and is recognised by ID:
/// no consumer sees it, and it is a dead letter exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_the_dead_letter_fsync_and_the_journal_finish_keeps_it_once() {
    let dir = temp_dir("dead-window");
    let flags = ["--mem-queue-size=0", "--sync-every=1", "--max-attempts=1"];
    let d = Daemon::start_with_env(
        &dir,
        &flags,
        &[("NSQD_TEST_PAUSE_AT", "dead_letters_synced")],
    );
    let http = setup(&d, "t", "c").await;
    let bodies: Vec<String> = (0..5).map(|i| format!("w{i}")).collect();
    publish(&d, "t", &bodies).await;
    let mut conn = subscribed(&d, "t", "c", 10).await;
    for _ in 0..5 {
        let msg = conn.expect_message().await;
        req(&mut conn, &msg).await;
    }
    // Each is taken again, found out of attempts and buried. The first
    // batch written is fsynced and then stopped in the window (the rest
    // wait behind it, not yet on disk): kill there.
    eventually("the dead-letter writer stopped in the window", || async {
        d.log().contains("nsqd test pause at dead_letters_synced")
    })
    .await;
    let on_disk = std::fs::read(dir.join("t:c.dead")).unwrap();
    assert!(bodies.iter().any(|b| contains(&on_disk, b.as_bytes())));
    eventually("five buried", || async {
        channel_stats(&http, "t", "c").await.dead_count == 5
    })
    .await;
    drop(conn);
    d.kill();

    let d = Daemon::start(&dir, &flags);
    let http2 = NsqdHttp::new(&d.http_url());
    let mut conn = subscribed(&d, "t", "c", 10).await;
    // The replay takes them again and buries them (the one already on disk
    // a second time, counted once after its write): however long that takes
    // under load, it ends with five dead letters and nothing waiting.
    eventually("every message buried once more", || async {
        let stats = channel_stats(&http2, "t", "c").await;
        (stats.dead_count, stats.depth, stats.in_flight_count) == (5, 0, 0)
    })
    .await;
    assert_eq!(dead_bodies(&http2, "t", "c").await, bodies);
    conn.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(channel_stats(&http2, "t", "c").await.dead_count, 5);
    drop(http);
}

/// The bodies of a channel's dead letters (up to 100), sorted.
async fn dead_bodies(http: &NsqdHttp, topic: &str, channel: &str) -> Vec<String> {
    let dead = http.dead_letters(topic, channel, 100).await.unwrap();
    let mut bodies: Vec<String> = dead
        .messages
        .iter()
        .map(|m| m.body_text().unwrap())
        .collect();
    bodies.sort();
    bodies
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Durable mode: dead letters are on disk before their messages are
/// finished in the log, so a SIGKILL right after keeps each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_durable_mode_dead_letters_and_requeued_ones_survive_sigkill() {
    let dir = temp_dir("dead-durable");
    let flags = ["--mem-queue-size=0", "--sync-every=1", "--max-attempts=2"];
    let d = Daemon::start(&dir, &flags);
    let http = setup(&d, "t", "c").await;
    let bodies: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    publish(&d, "t", &bodies).await;
    let mut conn = subscribed(&d, "t", "c", 50).await;
    for _ in 0..40 {
        let msg = conn.expect_message().await;
        req(&mut conn, &msg).await;
    }
    eventually("20 dead letters", || async {
        channel_stats(&http, "t", "c").await.dead_count == 20
    })
    .await;
    drop(conn);
    d.kill();

    let d = Daemon::start(&dir, &flags);
    let http = NsqdHttp::new(&d.http_url());
    // A finish lost in the kill brings a message back once more: it dies
    // again at once, and is not kept twice. If the kill also took the
    // requeue of its last round, it comes back with the attempts of the
    // delivery before (as the README says of any crash) and is delivered:
    // REQ it, and it dies again, still kept once.
    let mut conn = subscribed(&d, "t", "c", 50).await;
    while let Ok(Some(frame)) = conn.read_frame_within(Duration::from_millis(500)).await {
        if frame.frame_type == FrameType::Message {
            let msg = WireMessage::decode(frame.data).unwrap();
            assert!(bodies.iter().any(|b| b == body_of(&msg)), "{msg:?}");
            req(&mut conn, &msg).await;
        }
    }
    let names = dead_bodies(&http, "t", "c").await;
    let mut expected = bodies.clone();
    expected.sort();
    assert_eq!(names, expected);

    // Requeued, then killed with some finished and some in flight: the
    // unfinished ones come back, with their attempts.
    assert_eq!(http.requeue_dead("t", "c").await.unwrap(), 20);
    let mut finished = Vec::new();
    for i in 0..20 {
        let msg = conn.expect_message().await;
        assert_eq!(msg.attempts, 1);
        if i < 10 {
            conn.fin(msg.id).await;
            finished.push(body_of(&msg).to_string());
        }
    }
    // A NOP round trip: the FINs were read before the kill.
    conn.send(Command::Nop).await;
    eventually("10 in flight", || async {
        channel_stats(&http, "t", "c").await.in_flight_count == 10
    })
    .await;
    // A moment for the finishes to reach the dead-letter file; one that
    // does not (a loaded machine) comes back once, which at-least-once allows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(conn);
    d.kill();

    let d = Daemon::start(&dir, &flags);
    let mut conn = subscribed(&d, "t", "c", 50).await;
    let mut back = Vec::new();
    for msg in conn.fin_until_quiet(Duration::from_millis(700)).await {
        assert!(msg.attempts >= 1, "attempts never lower");
        back.push(body_of(&msg).to_string());
    }
    back.sort();
    let mut unfinished: Vec<String> = bodies
        .iter()
        .filter(|b| !finished.contains(b))
        .cloned()
        .collect();
    unfinished.sort();
    let (again, replayed): (Vec<String>, Vec<String>) =
        back.into_iter().partition(|b| !finished.contains(b));
    assert_eq!(again, unfinished, "every unfinished message is back, once");
    let mut once = replayed.clone();
    once.dedup();
    assert_eq!(once, replayed, "a finished message comes back at most once");
}
