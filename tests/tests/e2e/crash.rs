//! Durable mode (`--mem-queue-size=0 --sync-every=1`) under crashes: nothing
//! acknowledged is lost, whatever state a message was in when nsqd died
//! (queued, in flight, requeued, deferred), and duplicates stay few.
//!
//! Through the real binary, killed with SIGKILL while a producer and a
//! consumer run, and restarted on the same data directory.

use bytes::Bytes;
use nsq::protocol::{Command, FrameType, WireMessage};
use nsq_e2e::{temp_dir, Conn, Daemon};
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DURABLE: [&str; 3] = ["--mem-queue-size=0", "--sync-every=1", "--msg-timeout=3s"];

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A deterministic spread over `0..100` for a message and attempt.
fn roll(body: &[u8], attempts: u16) -> u64 {
    let mut h = DefaultHasher::new();
    (body, attempts).hash(&mut h);
    h.finish() % 100
}

/// What the clients saw across every life of nsqd.
#[derive(Default)]
struct Ledger {
    /// Acknowledged publishes: body -> not deliverable before (Unix ms).
    acked: HashMap<String, i64>,
    /// FINs sent, per body.
    fins: HashMap<String, u32>,
    /// Highest attempts delivered, per body, and in which life.
    attempts: HashMap<String, (u16, usize)>,
    /// REQs with a delay: body -> (due, sent at, life).
    deferred: HashMap<String, (i64, Instant, usize)>,
    violations: Vec<String>,
    deliveries: u64,
}

impl Ledger {
    /// Checks a delivery in life `life`, where the kill of that life (if
    /// any) happened at `killed`.
    fn delivered(&mut self, body: &str, attempts: u16, life: usize, kills: &[Instant]) {
        self.deliveries += 1;
        let now = unix_ms();
        if let Some(&due) = self.acked.get(body) {
            if now + 50 < due {
                self.violations
                    .push(format!("{body}: deferred until {due}, delivered at {now}"));
            }
        }
        if let Some(&(due, sent, req_life)) = self.deferred.get(body) {
            // A REQ sent shortly before a kill may not have reached nsqd.
            let reached = req_life == life
                || kills
                    .get(req_life)
                    .is_none_or(|&k| k > sent + Duration::from_millis(500));
            if reached && now + 50 < due {
                self.violations
                    .push(format!("{body}: requeued until {due}, delivered at {now}"));
            }
        }
        if let Some(&(seen, seen_life)) = self.attempts.get(body) {
            let fine = match seen_life == life {
                true => attempts > seen,
                false => attempts >= seen,
            };
            if !fine {
                self.violations.push(format!(
                    "{body}: attempts {attempts} after {seen} (lives {seen_life}, {life})"
                ));
            }
        }
        self.attempts.insert(body.to_string(), (attempts, life));
    }
}

/// Publishes numbered messages one at a time until the connection dies;
/// one in twenty is a DPUB of 0.3–2.5 s.
async fn produce(addr: std::net::SocketAddr, ledger: Arc<Mutex<Ledger>>, life: usize) {
    let mut conn = Conn::connect_addr(addr).await;
    for i in 0.. {
        let body = format!("m-{life}-{i}");
        let r = roll(body.as_bytes(), 0);
        let delay = (r < 5).then(|| Duration::from_millis(300 + r * 440));
        let cmd = match delay {
            Some(delay) => Command::Dpub {
                topic: "crash".into(),
                delay,
                body: Bytes::from(body.clone()),
            },
            None => Command::Pub {
                topic: "crash".into(),
                body: Bytes::from(body.clone()),
            },
        };
        let due = unix_ms() + delay.map_or(0, |d| d.as_millis() as i64);
        if conn.try_send(cmd).await.is_err() {
            return;
        }
        match conn.read_frame_within(Duration::from_secs(10)).await {
            Ok(Some(frame)) if frame.frame_type == FrameType::Response => {
                ledger.lock().unwrap().acked.insert(body, due);
            }
            _ => return,
        }
    }
}

/// Consumes until the connection dies: FINs most messages, REQs some (with
/// and without a delay) and lets a few time out. With `drain`, FINs all.
async fn consume(
    addr: std::net::SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    life: usize,
    kills: Arc<Mutex<Vec<Instant>>>,
    drain: bool,
) {
    let mut conn = Conn::connect_addr(addr).await;
    if conn.try_subscribe("crash", "c").await.is_err() {
        return;
    }
    conn.rdy(50).await;
    loop {
        let frame = match conn.read_frame_within(Duration::from_secs(30)).await {
            Ok(Some(frame)) => frame,
            _ => return,
        };
        if frame.frame_type != FrameType::Message {
            if &frame.data[..] == b"_heartbeat_" && conn.try_send(Command::Nop).await.is_err() {
                return;
            }
            continue;
        }
        let m = WireMessage::decode(frame.data).unwrap();
        let body = String::from_utf8_lossy(&m.body).into_owned();
        let r = if drain { 99 } else { roll(&m.body, m.attempts) };
        let cmd = {
            let mut ledger = ledger.lock().unwrap();
            ledger.delivered(&body, m.attempts, life, &kills.lock().unwrap());
            match r {
                0..=2 => None,
                3..=9 => {
                    let due = unix_ms() + 200;
                    ledger.deferred.insert(body, (due, Instant::now(), life));
                    Some(Command::Req {
                        id: m.id,
                        delay: Duration::from_millis(200),
                    })
                }
                10..=12 => {
                    ledger.deferred.remove(&body);
                    Some(Command::Req {
                        id: m.id,
                        delay: Duration::ZERO,
                    })
                }
                _ => {
                    *ledger.fins.entry(body).or_default() += 1;
                    Some(Command::Fin(m.id))
                }
            }
        };
        if let Some(cmd) = cmd {
            if conn.try_send(cmd).await.is_err() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_loses_nothing_acknowledged() {
    let dir = temp_dir("crash-loop");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let kills = Arc::new(Mutex::new(Vec::new()));
    let lives = [1500, 2600, 1900, 3000, 2200];
    for (life, ms) in lives.into_iter().enumerate() {
        let d = Daemon::start(&dir, &DURABLE);
        let producer = tokio::spawn(produce(d.tcp, ledger.clone(), life));
        let consumer = tokio::spawn(consume(d.tcp, ledger.clone(), life, kills.clone(), false));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        kills.lock().unwrap().push(Instant::now());
        d.kill();
        let _ = tokio::time::timeout(Duration::from_secs(15), producer).await;
        let _ = tokio::time::timeout(Duration::from_secs(15), consumer).await;
    }

    // The last life drains: every acknowledged message must come back.
    let d = Daemon::start(&dir, &DURABLE);
    let life = lives.len();
    let drain = tokio::spawn(consume(d.tcp, ledger.clone(), life, kills.clone(), true));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = {
            let l = ledger.lock().unwrap();
            l.acked.keys().filter(|b| !l.fins.contains_key(*b)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged messages never came back; nsqd log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Whatever is still on its way (duplicates) arrives, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain.abort();
    assert!(d.terminate().success());

    let l = ledger.lock().unwrap();
    let acked = l.acked.len();
    let duplicates: u32 = l.fins.values().map(|n| n - 1).sum();
    eprintln!(
        "acknowledged {acked}, delivered {} times, {duplicates} FINed more than once",
        l.deliveries
    );
    assert!(acked > 500, "the producer got going: {acked}");
    assert!(l.violations.is_empty(), "{:#?}", l.violations);
    // FINs are written with the next fsync; a kill loses at most those of
    // the moment, a handful per life.
    assert!(
        (duplicates as usize) < 20 * lives.len(),
        "{duplicates} duplicates"
    );
}

/// Publishes one at a time until a publish gets no answer (the log writer
/// stopped at its pause point); returns the acknowledged bodies and the
/// one left in the air.
async fn publish_until_stuck(conn: &mut Conn, prefix: &str) -> (Vec<String>, String) {
    let mut acked = Vec::new();
    for i in 0..100_000 {
        let body = format!("{prefix}-{i}");
        conn.send(Command::Pub {
            topic: "paused".into(),
            body: Bytes::from(body.clone()),
        })
        .await;
        match conn.read_frame_within(Duration::from_secs(2)).await {
            Ok(Some(frame)) if frame.frame_type == FrameType::Response => acked.push(body),
            Err(()) => return (acked, body),
            other => panic!("unexpected answer to PUB: {other:?}"),
        }
    }
    panic!("the writer never stopped");
}

/// Consumes and FINs until nothing more comes; returns the bodies.
async fn drain(addr: std::net::SocketAddr, channel: &str) -> HashSet<String> {
    let mut conn = Conn::connect_addr(addr).await;
    conn.subscribe("paused", channel).await;
    conn.rdy(500).await;
    conn.fin_until_quiet(Duration::from_millis(1500))
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

async fn wait_for_pause(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("nsqd test pause at") {
        assert!(Instant::now() < deadline, "no pause; log:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Killed while a group commit is written but not fsynced, and between the
/// fsync and the OKs: what was acknowledged is there after the restart, and
/// with the fsync done, so is the publish that never got its OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_around_the_fsync_keeps_every_acknowledged_publish() {
    for (point, fsynced) in [("before_fsync@300", false), ("after_fsync@300", true)] {
        let dir = temp_dir("pause-fsync");
        let d = Daemon::start_with_env(&dir, &DURABLE, &[("NSQD_TEST_PAUSE_AT", point)]);
        let mut conn = Conn::connect_addr(d.tcp).await;
        conn.subscribe("paused", "c").await;
        let mut producer = Conn::connect_addr(d.tcp).await;
        let (acked, in_the_air) = publish_until_stuck(&mut producer, point).await;
        wait_for_pause(&d).await;
        d.kill();
        assert!(acked.len() > 100, "{point}: {} acknowledged", acked.len());

        let d = Daemon::start(&dir, &DURABLE);
        let got = drain(d.tcp, "c").await;
        for body in &acked {
            assert!(got.contains(body), "{point}: acknowledged {body} lost");
        }
        if fsynced {
            assert!(
                got.contains(&in_the_air),
                "{point}: fsynced {in_the_air} lost"
            );
        }
        assert!(d.terminate().success());
    }
}

/// Killed in the middle of a journal compaction, after the compacted copy
/// is written and after it replaced the journal: no unfinished message is
/// lost, and the FINs written before stay in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_journal_compaction_loses_no_unfinished_message() {
    // Long timeouts and a large RDY: some messages stay in flight.
    let flags = [
        "--mem-queue-size=0",
        "--sync-every=1",
        "--msg-timeout=60s",
        "--max-rdy-count=10000",
    ];
    for point in ["compaction_written", "compaction_renamed"] {
        let dir = temp_dir("pause-compaction");
        let d = Daemon::start_with_env(&dir, &flags, &[("NSQD_TEST_PAUSE_AT", point)]);
        // One connection publishes, receives and FINs nine messages in ten,
        // each FIN before the next publish: one journal record per commit
        // round, so the journal outgrows its snapshot, is compacted, and the
        // writer stops there; the next publish gets no answer.
        let mut conn = Conn::connect_addr(d.tcp).await;
        conn.subscribe("paused", "c").await;
        conn.rdy(10000).await;
        let (mut unfinished, mut finished) = (HashSet::new(), 0);
        'publishing: for i in 0..20_000 {
            let body = format!("{point}-{i}");
            conn.send(Command::Pub {
                topic: "paused".into(),
                body: Bytes::from(body.clone()),
            })
            .await;
            let (mut ok, mut msg) = (false, None);
            while !ok || msg.is_none() {
                let frame = match conn.read_frame_within(Duration::from_secs(2)).await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => panic!("nsqd closed the connection"),
                    Err(()) if ok => panic!("{body} acknowledged, never delivered"),
                    Err(()) => {
                        if msg.is_some() {
                            unfinished.insert(body);
                        }
                        break 'publishing;
                    }
                };
                match frame.frame_type {
                    FrameType::Message => msg = Some(WireMessage::decode(frame.data).unwrap()),
                    FrameType::Response if &frame.data[..] == b"OK" => ok = true,
                    _ => {}
                }
            }
            let m = msg.expect("delivered");
            assert_eq!(m.body, body.as_bytes());
            if i % 10 != 0 {
                conn.fin(m.id).await;
                finished += 1;
            } else {
                unfinished.insert(body);
            }
        }
        wait_for_pause(&d).await;
        d.kill();
        assert!(finished > 2000, "{point}: {finished} FINs before the pause");

        let d = Daemon::start(&dir, &flags);
        let got = drain(d.tcp, "c").await;
        for body in &unfinished {
            assert!(got.contains(body), "{point}: unfinished {body} lost");
        }
        // Only FINs sent after the writer stopped may be replayed.
        let replayed = got.len() - unfinished.len();
        assert!(
            replayed <= 2,
            "{point}: {replayed} of {finished} finished messages came back"
        );
        assert!(d.terminate().success());
    }
}

/// A slow disk (every fsync 800 ms longer) holds up durable publishes, and
/// nothing else: an ephemeral topic, `/ping` and heartbeats answer at once,
/// because the log writer's thread does all the file work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_stalls_only_what_waits_for_it() {
    let dir = temp_dir("slow-disk");
    let d = Daemon::start_with_env(
        &dir,
        &["--mem-queue-size=0", "--sync-every=1"],
        &[("NSQD_TEST_FSYNC_DELAY_MS", "800")],
    );
    // Durable publishers keep the writer busy with slow fsyncs.
    let addr = d.tcp;
    let durable = tokio::spawn(async move {
        let mut conn = Conn::connect_addr(addr).await;
        let mut waits = Vec::new();
        for i in 0..4 {
            let sent = Instant::now();
            conn.publish("durable", format!("d-{i}").as_bytes()).await;
            waits.push(sent.elapsed());
        }
        waits
    });
    let mut sub = Conn::connect_addr(d.tcp).await;
    sub.subscribe("fast#ephemeral", "c#ephemeral").await;
    sub.rdy(100).await;
    let mut publisher = Conn::connect_addr(d.tcp).await;
    let http = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let sent = Instant::now();
        publisher
            .publish("fast#ephemeral", format!("f-{i}").as_bytes())
            .await;
        let m = sub.expect_message().await;
        sub.fin(m.id).await;
        let ping = http
            .get(format!("{}/ping", d.http_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(ping.status(), 200);
        slowest = slowest.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waits = durable.await.unwrap();
    assert!(
        waits.iter().all(|w| *w >= Duration::from_millis(750)),
        "durable publishes wait for the slow fsync: {waits:?}"
    );
    assert!(
        slowest < Duration::from_millis(400),
        "an ephemeral round trip and /ping took {slowest:?} while fsyncs took 800 ms"
    );
    assert!(d.terminate().success());
}

/// Memory mode on a slow disk: a topic that spills every message to its
/// disk queue and syncs after each (`--sync-every=1`) hands the fsyncs to
/// the sync thread, so its own publishes, another topic and `/ping` answer
/// at once; a clean stop still waits for them, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_does_not_stall_memory_mode() {
    let dir = temp_dir("slow-disk-memory");
    let flags = ["--mem-queue-size=1", "--sync-every=1"];
    let d = Daemon::start_with_env(&dir, &flags, &[("NSQD_TEST_FSYNC_DELAY_MS", "800")]);
    let http = reqwest::Client::new();
    let url = d.http_url();
    http.post(format!("{url}/channel/create?topic=spill&channel=c"))
        .send()
        .await
        .unwrap();
    let mut spiller = Conn::connect_addr(d.tcp).await;
    let mut sub = Conn::connect_addr(d.tcp).await;
    sub.subscribe("fast", "c").await;
    sub.rdy(100).await;
    let mut publisher = Conn::connect_addr(d.tcp).await;
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let sent = Instant::now();
        spiller.publish("spill", format!("s-{i}").as_bytes()).await;
        publisher.publish("fast", format!("f-{i}").as_bytes()).await;
        let m = sub.expect_message().await;
        sub.fin(m.id).await;
        let ping = http.get(format!("{url}/ping")).send().await.unwrap();
        assert_eq!(ping.status(), 200);
        slowest = slowest.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        slowest < Duration::from_millis(400),
        "a spilling publish, another topic's round trip and /ping took {slowest:?} while fsyncs took 800 ms"
    );
    drop((spiller, sub, publisher));
    // The stop waits for the slow fsyncs: the delay was real.
    let stopping = Instant::now();
    assert!(d.terminate().success());
    assert!(
        stopping.elapsed() >= Duration::from_millis(500),
        "stopped in {:?}",
        stopping.elapsed()
    );

    let d = Daemon::start(&dir, &flags);
    let mut conn = Conn::connect_addr(d.tcp).await;
    conn.subscribe("spill", "c").await;
    conn.rdy(100).await;
    let mut got = Vec::new();
    for _ in 0..20 {
        let m = conn.expect_message().await;
        got.push(String::from_utf8_lossy(&m.body).into_owned());
        conn.send(Command::Fin(m.id)).await;
    }
    let expected: Vec<String> = (0..20).map(|i| format!("s-{i}")).collect();
    assert_eq!(got, expected);
    conn.expect_silence(Duration::from_millis(300)).await;
    assert!(d.terminate().success());
}

/// fsyncs the log writer made so far, from `/metrics`.
async fn log_fsyncs(d: &Daemon) -> u64 {
    let text = reqwest::get(format!("{}/metrics", d.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("nsqd_log_fsyncs_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no nsqd_log_fsyncs_total in\n{text}"))
}

/// A message that reaches three channels is written once: it costs no more
/// fsyncs than one that reaches one channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_does_not_multiply_fsyncs() {
    let dir = temp_dir("fan-out");
    let d = Daemon::start(&dir, &["--mem-queue-size=0", "--sync-every=1"]);
    let http = reqwest::Client::new();
    for (topic, channels) in [("one", 1), ("three", 3)] {
        for c in 0..channels {
            let url = format!("{}/channel/create?topic={topic}&channel=c{c}", d.http_url());
            http.post(url).send().await.unwrap();
        }
    }
    let mut cost = Vec::new();
    for topic in ["one", "three"] {
        let mut conn = Conn::connect_addr(d.tcp).await;
        let before = log_fsyncs(&d).await;
        for i in 0..200 {
            conn.publish(topic, format!("{topic}-{i}").as_bytes()).await;
        }
        cost.push(log_fsyncs(&d).await - before);
    }
    let (one, three) = (cost[0], cost[1]);
    assert!(one >= 200, "each synchronous durable PUB is fsynced: {one}");
    assert!(
        three <= one + one / 10,
        "three channels cost {three} fsyncs, one channel {one}"
    );
    assert!(d.terminate().success());
}
