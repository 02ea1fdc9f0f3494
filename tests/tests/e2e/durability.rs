//! What survives what: restarts, crashes, corruption, a full disk and an
//! upstream data directory, through the real nsqd binary.

use bytes::Bytes;
use nsq::protocol::{Command, FrameType, WireMessage};
use nsq_e2e::*;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

async fn post(url: &str) -> reqwest::Response {
    reqwest::Client::new().post(url).send().await.expect("POST")
}

async fn daemon_stats(d: &Daemon) -> nsq::api::Stats {
    let body = reqwest::get(format!("{}/stats?format=json", d.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

async fn publish_batches(
    addr: std::net::SocketAddr,
    topic: &str,
    prefix: &str,
    total: usize,
    batch: usize,
) {
    let mut conn = Conn::connect_addr(addr).await;
    for start in (0..total).step_by(batch) {
        let bodies: Vec<Bytes> = (start..(start + batch).min(total))
            .map(|i| Bytes::from(format!("{prefix}-{i}")))
            .collect();
        conn.send(Command::Mpub {
            topic: topic.into(),
            bodies,
        })
        .await;
        conn.expect_response("OK").await;
    }
}

/// Consumes until `expected` distinct bodies arrived; fails on a duplicate.
async fn consume_exactly(
    addr: std::net::SocketAddr,
    topic: &str,
    channel: &str,
    expected: usize,
) -> Vec<WireMessage> {
    let mut conn = Conn::connect_addr(addr).await;
    conn.subscribe(topic, channel).await;
    conn.rdy(500).await;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while seen.len() < expected {
        let m = conn.expect_message().await;
        assert!(seen.insert(m.body.clone()), "{:?} delivered twice", m.body);
        conn.fin(m.id).await;
        out.push(m);
    }
    conn.expect_silence(Duration::from_millis(300)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_every_message_once() {
    let dir = temp_dir("restart");
    let d = Daemon::start(&dir, &["--mem-queue-size=100"]);
    post(&format!("{}/topic/create?topic=r", d.http_url())).await;
    post(&format!(
        "{}/channel/create?topic=r&channel=c",
        d.http_url()
    ))
    .await;
    publish_batches(d.tcp, "r", "m", 5000, 250).await;
    // A topic without channels keeps its messages itself.
    publish_batches(d.tcp, "lonely", "l", 700, 100).await;
    let s = daemon_stats(&d).await;
    let channel = &s
        .topics
        .as_ref()
        .unwrap()
        .iter()
        .find(|t| t.topic_name == "r")
        .unwrap()
        .channels[0];
    assert_eq!(
        (channel.depth, channel.backend_depth),
        (5000, 4900),
        "all but --mem-queue-size went to disk"
    );
    assert!(
        channel.backend_bytes > 4900 * 8,
        "disk bytes reported: {}",
        channel.backend_bytes
    );
    assert!(d.terminate().success(), "clean exit on SIGTERM");

    let d = Daemon::start(&dir, &["--mem-queue-size=100"]);
    let s = daemon_stats(&d).await;
    let topics = s.topics.unwrap();
    assert_eq!(
        topics
            .iter()
            .map(|t| t.topic_name.as_str())
            .collect::<Vec<_>>(),
        ["lonely", "r"]
    );
    assert_eq!(topics[1].channels[0].depth, 5000);
    assert_eq!(topics[0].depth, 700);
    let got = consume_exactly(d.tcp, "r", "c", 5000).await;
    // Order survives too: memory part first, then the disk part.
    let first: Vec<String> = got
        .iter()
        .take(3)
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(first, ["m-0", "m-1", "m-2"]);
    consume_exactly(d.tcp, "lonely", "c", 700).await;
    assert!(d.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_and_deferred_messages_survive_with_their_state() {
    let dir = temp_dir("state");
    let d = Daemon::start(&dir, &[]);
    publish_batches(d.tcp, "s", "f", 10, 10).await;
    let mut consumer = Conn::connect_addr(d.tcp).await;
    consumer.subscribe("s", "c").await;
    consumer.rdy(10).await;
    for _ in 0..10 {
        consumer.expect_message().await; // in flight, never finished
    }
    let mut producer = Conn::connect_addr(d.tcp).await;
    let published = Instant::now();
    for i in 0..3 {
        producer
            .send(Command::Dpub {
                topic: "s".into(),
                delay: Duration::from_millis(3000),
                body: format!("later-{i}").into(),
            })
            .await;
        producer.expect_response("OK").await;
    }
    assert!(d.terminate().success());

    let d = Daemon::start(&dir, &[]);
    let s = daemon_stats(&d).await;
    let channel = &s.topics.unwrap()[0].channels[0];
    assert_eq!(
        (channel.depth, channel.deferred_count),
        (10, 3),
        "in-flight back in line, deferred still deferred"
    );
    let mut consumer = Conn::connect_addr(d.tcp).await;
    consumer.subscribe("s", "c").await;
    consumer.rdy(100).await;
    for _ in 0..10 {
        let m = consumer.expect_message().await;
        assert_eq!(m.attempts, 2, "the earlier delivery still counts");
        consumer.fin(m.id).await;
    }
    for _ in 0..3 {
        let m = consumer.expect_message().await;
        assert!(m.body.starts_with(b"later-"));
        assert!(
            published.elapsed() >= Duration::from_millis(3000),
            "deferred message came early"
        );
        consumer.fin(m.id).await;
    }
    assert!(d.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_with_sync_every_one_loses_nothing_acknowledged() {
    kill_loses_nothing_acknowledged(&["--mem-queue-size=0", "--sync-every=1"]).await;
}

/// Log mode without `--sync-every=1`: an `OK` follows the write (not the
/// fsync), which a killed process cannot take back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_in_log_mode_loses_nothing_acknowledged() {
    kill_loses_nothing_acknowledged(&["--mem-queue-size=0"]).await;
}

/// Memory mode: a publish that spills to a disk queue is handed to the OS
/// before its OK, as upstream's disk queue writes each message, so a
/// SIGKILL right after keeps it, with `--sync-every` (2,500 by default) and
/// `--sync-timeout` both far off. All but the one message the channel's
/// memory queue holds come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_mode_spills_survive_a_kill_right_after_their_ok() {
    let dir = temp_dir("spill-kill");
    let flags = ["--mem-queue-size=1", "--sync-timeout=1h"];
    let d = Daemon::start(&dir, &flags);
    create_channel(&d.http.to_string(), "k", "c").await;
    publish_batches(d.tcp, "k", "m", 20, 20).await;
    publish_batches(d.tcp, "k", "p", 20, 1).await;
    d.kill();

    let d = Daemon::start(&dir, &flags);
    let mut conn = Conn::connect_addr(d.tcp).await;
    conn.subscribe("k", "c").await;
    conn.rdy(100).await;
    let mut got = HashSet::new();
    for m in conn.fin_until_quiet(Duration::from_millis(500)).await {
        let body = body_of(&m).to_string();
        assert!(got.insert(body.clone()), "{body} delivered twice");
    }
    let published: Vec<String> = ["m", "p"]
        .iter()
        .flat_map(|prefix| (0..20).map(move |i| format!("{prefix}-{i}")))
        .collect();
    let lost: Vec<&String> = published.iter().filter(|b| !got.contains(*b)).collect();
    assert_eq!(
        lost,
        [&"m-0".to_string()],
        "only the message held in memory is lost"
    );
    assert!(d.terminate().success());
}

/// Memory mode: the periodic sync (`--sync-timeout`) records a spill in the
/// queue's metadata, and records the next one too, after a round that
/// found every queue synced and passed over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_sync_records_each_spill_within_the_sync_timeout() {
    let dir = temp_dir("spill-sync");
    let d = Daemon::start(&dir, &["--mem-queue-size=1", "--sync-timeout=100ms"]);
    create_channel(&d.http.to_string(), "k", "c").await;
    let meta = dir.join("k:c.queue.meta");
    let recorded_depth = || {
        std::fs::read_to_string(&meta)
            .ok()
            .and_then(|text| text.lines().next()?.parse::<u64>().ok())
    };
    for (burst, on_disk) in [("a", 19), ("b", 39)] {
        publish_batches(d.tcp, "k", burst, 20, 20).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while recorded_depth() != Some(on_disk) {
            assert!(
                Instant::now() < deadline,
                "after burst {burst} the metadata says {:?}, not {on_disk}",
                recorded_depth()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Rounds with nothing to sync pass before the next burst.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(d.terminate().success());
}

/// Publishes, puts some messages in flight, then SIGKILL: every acknowledged
/// message comes back exactly once.
async fn kill_loses_nothing_acknowledged(flags: &[&str]) {
    let dir = temp_dir("crash");
    let d = Daemon::start(&dir, flags);
    post(&format!("{}/topic/create?topic=k", d.http_url())).await;
    post(&format!(
        "{}/channel/create?topic=k&channel=c",
        d.http_url()
    ))
    .await;
    // Publish one at a time; count what was acknowledged, then crash.
    let mut conn = Conn::connect_addr(d.tcp).await;
    let mut acked = Vec::new();
    for i in 0..300 {
        let body = format!("k-{i}");
        conn.send(Command::Pub {
            topic: "k".into(),
            body: body.clone().into(),
        })
        .await;
        conn.expect_response("OK").await;
        acked.push(body);
    }
    // Some in flight to a consumer that never finishes them.
    let mut holder = Conn::connect_addr(d.tcp).await;
    holder.subscribe("k", "c").await;
    holder.rdy(50).await;
    for _ in 0..50 {
        holder.expect_message().await;
    }
    // Leave a publish in the air while the process dies.
    conn.send(Command::Pub {
        topic: "k".into(),
        body: Bytes::from("in-the-air"),
    })
    .await;
    d.kill();

    let d = Daemon::start(&dir, flags);
    let mut consumer = Conn::connect_addr(d.tcp).await;
    consumer.subscribe("k", "c").await;
    consumer.rdy(500).await;
    let mut got = HashSet::new();
    // Until every acknowledged message is back (a loaded machine may pause),
    // then a little longer for any stray extra.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = acked.iter().all(|b| got.contains(b));
        let wait = if done {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(1)
        };
        match consumer.read_frame_within(wait).await {
            Ok(Some(frame)) if frame.frame_type == FrameType::Message => {
                let m = WireMessage::decode(frame.data).unwrap();
                assert!(
                    got.insert(String::from_utf8_lossy(&m.body).into_owned()),
                    "duplicate"
                );
                consumer.fin(m.id).await;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("nsqd closed the connection"),
            Err(()) if done || Instant::now() > deadline => break,
            Err(()) => {}
        }
    }
    for body in &acked {
        assert!(got.contains(body), "acknowledged {body} lost in the crash");
    }
    // The publish in the air may or may not have made it; nothing else may appear.
    got.remove("in-the-air");
    assert_eq!(got.len(), acked.len());
    assert!(d.terminate().success());
}

fn segments(dir: &Path, queue: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("{queue}.queue.")) && name.ends_with(".dat")
        })
        .collect();
    files.sort();
    files
}

/// A topic log's segments, oldest first (log mode: `--mem-queue-size=0`).
fn log_segments(dir: &Path, topic: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(format!("{topic}.log")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Log mode lets go of a segment once every channel has finished it, also
/// for a topic that sat idle first: its passes come less often while
/// nothing moves (one in 32 s at most), and again every second once its
/// channels do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_segments_go_once_finished_after_the_topic_sat_idle() {
    let dir = temp_dir("retain-idle");
    let flags = ["--mem-queue-size=0", "--max-bytes-per-file=4096"];
    let d = Daemon::start(&dir, &flags);
    create_channel(&d.http.to_string(), "r", "c").await;
    publish_batches(d.tcp, "r", "r", 600, 50).await;
    let written = log_segments(&dir, "r");
    assert!(written.len() >= 6, "several segments: {written:?}");
    // Idle long enough for the passes to space out (1, 2, then 4 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(log_segments(&dir, "r"), written, "nothing finished yet");
    consume_exactly(d.tcp, "r", "c", 600).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while log_segments(&dir, "r").len() > 1 {
        assert!(
            Instant::now() < deadline,
            "finished segments kept: {:?}",
            log_segments(&dir, "r")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_in_a_topic_log_is_skipped_and_every_good_record_delivered() {
    corruption_is_skipped_and_every_good_record_delivered(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_in_a_disk_queue_is_skipped_and_every_good_record_delivered() {
    corruption_is_skipped_and_every_good_record_delivered(false).await;
}

/// Log mode (`--mem-queue-size=0`: the topic's log) or memory mode with a
/// one-message memory queue (the channel's disk queue takes the rest).
async fn corruption_is_skipped_and_every_good_record_delivered(log_mode: bool) {
    let dir = temp_dir("corrupt");
    let mem = if log_mode { "0" } else { "1" };
    let mem = format!("--mem-queue-size={mem}");
    let flags = [mem.as_str(), "--max-bytes-per-file=4096"];
    let d = Daemon::start(&dir, &flags);
    post(&format!(
        "{}/channel/create?topic=x&channel=c",
        d.http_url()
    ))
    .await;
    post(&format!("{}/topic/create?topic=x", d.http_url())).await;
    post(&format!(
        "{}/channel/create?topic=x&channel=c",
        d.http_url()
    ))
    .await;
    publish_batches(d.tcp, "x", "x", 600, 50).await;
    assert!(d.terminate().success());

    let files = match log_mode {
        true => log_segments(&dir, "x"),
        false => segments(&dir, "x:c"),
    };
    assert!(files.len() >= 6, "several segments: {files:?}");
    // Flip a byte in the middle of the first segment, delete the third,
    // and cut the last one mid-record.
    let mut first = std::fs::read(&files[0]).unwrap();
    let mid = first.len() / 2;
    first[mid] ^= 0x5a;
    std::fs::write(&files[0], &first).unwrap();
    std::fs::remove_file(&files[2]).unwrap();
    let last = files.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    let d = Daemon::start(&dir, &flags);
    let mut conn = Conn::connect_addr(d.tcp).await;
    conn.subscribe("x", "c").await;
    conn.rdy(1000).await;
    let mut got = HashSet::new();
    let mut other = Vec::new();
    let ended = loop {
        let frame = match conn.read_frame_within(Duration::from_millis(1500)).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break "closed by nsqd",
            Err(()) => break "silence",
        };
        if frame.frame_type != FrameType::Message {
            other.push(String::from_utf8_lossy(&frame.data).into_owned());
        }
        if frame.frame_type == FrameType::Message {
            let m = WireMessage::decode(frame.data).unwrap();
            assert!(got.insert(m.body.clone()), "duplicate");
            conn.fin(m.id).await;
        }
    };
    // The last segment may be short: count the others only.
    let per_segment = 600usize.div_ceil(files.len() - 1);
    // Lost: one corrupt record, one deleted segment, one torn record.
    assert!(
        got.len() >= 600 - per_segment - 4 && got.len() < 600,
        "delivered {} of 600, then {ended}; other frames {other:?}; nsqd's log:\n{}",
        got.len(),
        d.log()
    );
    assert!(got.contains(&Bytes::from("x-0")) && got.contains(&Bytes::from("x-598")));
    let s = daemon_stats(&d).await;
    let topic = &s.topics.unwrap()[0];
    let (corrupt, logged) = match log_mode {
        true => (
            topic.backend_corrupt_bytes,
            "skipped corrupt bytes in the log",
        ),
        false => (
            topic.channels[0].backend_corrupt_bytes,
            "skipped corrupt data",
        ),
    };
    assert!(corrupt > 0, "corruption counted in /stats");
    let log = d.log();
    assert!(
        log.contains(logged) && log.contains("missing"),
        "corruption logged:\n{log}"
    );
    // nsqd keeps serving.
    publish_batches(d.tcp, "x", "after", 5, 5).await;
    assert!(d.terminate().success());
}

/// (topic, paused, [(channel, paused)])
type TopicSummary = (String, bool, Vec<(String, bool)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_restores_channels_and_pause_state() {
    let dir = temp_dir("meta");
    let d = Daemon::start(&dir, &[]);
    for path in [
        "/topic/create?topic=t1",
        "/channel/create?topic=t1&channel=a",
        "/channel/create?topic=t1&channel=b",
        "/channel/pause?topic=t1&channel=a",
        "/topic/create?topic=t2",
        "/topic/pause?topic=t2",
        "/topic/create?topic=gone",
        "/topic/delete?topic=gone",
        "/topic/create?topic=eph%23ephemeral",
    ] {
        assert!(
            post(&format!("{}{path}", d.http_url()))
                .await
                .status()
                .is_success(),
            "{path}"
        );
    }
    assert!(d.terminate().success());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("nsqd.dat")).unwrap()).unwrap();
    assert_eq!(
        meta,
        serde_json::json!({"topics":[
            {"name":"t1","paused":false,"channels":[{"name":"a","paused":true},{"name":"b","paused":false}]},
            {"name":"t2","paused":true,"channels":null}],"version":"1.3.0"})
    );
    let d = Daemon::start(&dir, &[]);
    let topics = daemon_stats(&d).await.topics.unwrap();
    let summary: Vec<TopicSummary> = topics
        .iter()
        .map(|t| {
            (
                t.topic_name.clone(),
                t.paused,
                t.channels
                    .iter()
                    .map(|c| (c.channel_name.clone(), c.paused))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "t1".to_string(),
                false,
                vec![("a".to_string(), true), ("b".to_string(), false)]
            ),
            ("t2".to_string(), true, vec![])
        ]
    );
    assert!(d.terminate().success());
}

/// Writes a go-diskqueue as upstream nsqd v1.3.0 does: records of
/// `[len][timestamp][attempts][16 hex id][body]`, and its text metadata.
fn write_upstream_queue(
    dir: &Path,
    name: &str,
    messages: &[(u64, u16, &str)],
    read_pos_skip: usize,
) {
    let mut data = Vec::new();
    let mut skip_bytes = 0;
    for (i, (id, attempts, body)) in messages.iter().enumerate() {
        let mut rec = Vec::new();
        rec.extend_from_slice(&1_700_000_000_000_000_000i64.to_be_bytes());
        rec.extend_from_slice(&attempts.to_be_bytes());
        rec.extend_from_slice(format!("{id:016x}").as_bytes());
        rec.extend_from_slice(body.as_bytes());
        data.extend_from_slice(&(rec.len() as u32).to_be_bytes());
        data.extend_from_slice(&rec);
        if i < read_pos_skip {
            skip_bytes = data.len();
        }
    }
    std::fs::write(dir.join(format!("{name}.diskqueue.000000.dat")), &data).unwrap();
    let depth = messages.len() - read_pos_skip;
    std::fs::write(
        dir.join(format!("{name}.diskqueue.meta.dat")),
        format!("{depth}\n0,{skip_bytes}\n0,{}\n", data.len()),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_data_directory_is_imported() {
    let dir = temp_dir("upstream");
    std::fs::write(
        dir.join("nsqd.dat"),
        r#"{"topics":[{"channels":[{"name":"ch","paused":false}],"name":"legacy","paused":false}],"version":"1.3.0"}"#,
    )
    .unwrap();
    // The channel's queue: the first record was already read upstream.
    write_upstream_queue(
        &dir,
        "legacy:ch",
        &[(0xaa, 1, "done"), (0x1234, 2, "one"), (0x1235, 0, "two")],
        1,
    );
    // The topic's own backlog, not yet copied to channels.
    write_upstream_queue(&dir, "legacy", &[(0x2000, 0, "three")], 0);

    let d = Daemon::start(&dir, &[]);
    assert!(
        d.log().contains("imported upstream disk queue"),
        "{}",
        d.log()
    );
    let got = consume_exactly(d.tcp, "legacy", "ch", 3).await;
    let summary: Vec<(String, String, u16)> = got
        .iter()
        .map(|m| {
            (
                String::from_utf8_lossy(&m.body).into_owned(),
                m.id.to_string(),
                m.attempts,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("one".to_string(), "0000000000001234".to_string(), 3),
            ("two".to_string(), "0000000000001235".to_string(), 1),
            ("three".to_string(), "0000000000002000".to_string(), 1),
        ]
    );
    assert!(
        dir.join("legacy:ch.diskqueue.meta.dat.imported").exists(),
        "old files kept aside"
    );
    assert!(d.terminate().success());
    // A second start does not import again.
    let d = Daemon::start(&dir, &[]);
    assert_eq!(
        daemon_stats(&d).await.topics.unwrap()[0].channels[0].depth,
        0
    );
    assert!(d.terminate().success());
}

/// Mounts a small tmpfs for the data directory; unmounted on drop, then removed.
struct SmallDisk(nsq_e2e::TempDir);

impl SmallDisk {
    /// `None` (the test then passes over it, saying so) only outside CI:
    /// CI runs as root and must mount it.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = temp_dir("fulldisk");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to mount a tmpfs (run as root)"
            );
            eprintln!("skipped: cannot mount a tmpfs here (not root)");
        }
        ok.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// Sends `command(0)`, `command(1)`, ... until nsqd answers one with an
/// error; returns how many it took and the error. Fails past `limit`.
async fn publish_until_refused(
    conn: &mut Conn,
    limit: usize,
    command: impl Fn(usize) -> Command,
) -> (usize, String) {
    for accepted in 0..limit {
        conn.send(command(accepted)).await;
        let frame = conn.read_frame().await.expect("an answer");
        if frame.frame_type == FrameType::Error {
            return (accepted, String::from_utf8_lossy(&frame.data).into_owned());
        }
    }
    panic!("the disk never filled up: {limit} publishes taken");
}

/// Memory mode on a full disk: an MPUB that spills is refused whole, and
/// none of its messages turns up later; every accepted one is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_a_spilling_mpub_whole() {
    let Some(disk) = SmallDisk::mount("512k") else {
        return;
    };
    let d = Daemon::start(&disk.0, &["--mem-queue-size=1"]);
    create_channel(&d.http.to_string(), "f", "c").await;
    // Room to give back once the disk is full.
    let ballast = disk.0.join("ballast");
    std::fs::write(&ballast, vec![0u8; 100_000]).unwrap();
    let mut conn = Conn::connect_addr(d.tcp).await;
    let (accepted, refusal) = publish_until_refused(&mut conn, 200, |n| Command::Mpub {
        topic: "f".into(),
        bodies: (0..10)
            .map(|i| Bytes::from(format!("{n:04}-{i}-{}", "z".repeat(4000))))
            .collect(),
    })
    .await;
    assert!(refusal.contains("MPUB failed"), "{refusal}");
    // With room again, the next publish goes through, and it alone.
    std::fs::remove_file(&ballast).unwrap();
    let mut conn = Conn::connect_addr(d.tcp).await;
    conn.publish("f", b"9999-after").await;
    let got = consume_exactly(d.tcp, "f", "c", accepted * 10 + 1).await;
    for m in &got {
        let batch: usize = String::from_utf8_lossy(&m.body[..4]).parse().unwrap();
        assert!(
            batch < accepted || batch == 9999,
            "a message of the refused MPUB came back"
        );
    }
    assert!(d.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_publishes_and_recovers() {
    let Some(disk) = SmallDisk::mount("512k") else {
        return;
    };
    let flags = [
        "--mem-queue-size=0",
        "--max-bytes-per-file=32768",
        "--sync-every=1",
    ];
    let d = Daemon::start(&disk.0, &flags);
    post(&format!("{}/topic/create?topic=f", d.http_url())).await;
    post(&format!(
        "{}/channel/create?topic=f&channel=c",
        d.http_url()
    ))
    .await;
    let body = |i: usize| Bytes::from(format!("{i:06}{}", "z".repeat(4000)));
    let mut conn = Conn::connect_addr(d.tcp).await;
    let (accepted, refusal) = publish_until_refused(&mut conn, 1000, |n| Command::Pub {
        topic: "f".into(),
        body: body(n),
    })
    .await;
    assert!(refusal.starts_with("E_PUB_FAILED PUB failed"), "{refusal}");
    let ping = reqwest::get(format!("{}/ping", d.http_url()))
        .await
        .unwrap();
    assert_eq!(ping.status(), 500);
    assert!(ping.text().await.unwrap().starts_with("NOK - "));
    let http = reqwest::Client::new()
        .post(format!("{}/pub?topic=f", d.http_url()))
        .body(body(9999))
        .send()
        .await
        .unwrap();
    assert_eq!(http.status(), 500);

    // Consuming frees whole segments; then publishing works again.
    let got = consume_exactly(d.tcp, "f", "c", accepted).await;
    assert_eq!(got.len(), accepted, "every accepted message is delivered");
    // (A log lets go of its segments once a second.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = Conn::connect_addr(d.tcp).await;
        conn.send(Command::Pub {
            topic: "f".into(),
            body: body(accepted),
        })
        .await;
        let frame = conn.read_frame().await.expect("an answer");
        if frame.frame_type == FrameType::Response {
            break;
        }
        assert!(Instant::now() < deadline, "publishing never worked again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ping = reqwest::get(format!("{}/ping", d.http_url()))
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    assert!(d.terminate().success());
}
