//! Hostile clients: thousands of connections that send garbage, half a
//! command, a huge size field or nothing at all, beside well-behaved clients
//! that must not notice; a consumer that never reads; and the
//! `--max-tcp-connections` limit of both daemons.
//!
//! One file, past 600 lines, because every scenario shares the one
//! well-behaved-client check that must keep passing beside the attack.

use nsq::protocol::{decode_frame, Command, FrameType, MAGIC_V2};
use nsq_daemon::lookup_protocol::{decode_response, LookupCommand, PeerIdentity, MAGIC_V1};
use nsq_e2e::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Counts the bytes allocated and not yet freed in this process, so the
/// tests can tell what the in-process daemons hold for hostile peers.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = System.realloc(p, layout, new_size);
        if !q.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Raises this process's open-file limit to its hard limit, as the daemons
/// do; fails the test if that is still less than `needed` (both ends of
/// every connection live in this process).
fn ensure_fd_limit(needed: u64) {
    let before = nsq_daemon::limits::raise_open_files().expect("raise the open files limit");
    assert!(
        before.hard >= needed,
        "this test needs {needed} open files; the hard limit is {}",
        before.hard
    );
}

/// Started with a soft limit of 256 open files (a service manager's is
/// often 1,024), nsqd raises it to the hard limit as Go daemons do, and
/// serves 600 consumers where 256 descriptors would refuse most of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqd_raises_a_low_soft_open_files_limit() {
    ensure_fd_limit(1_000);
    let dir = temp_dir("open-files");
    let d = Daemon::start_with_open_files(256, &dir, &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line")
        .split_whitespace()
        .collect();
    assert_eq!(
        open_files[3], open_files[4],
        "soft limit raised to the hard one: {limits}"
    );
    let mut consumers = Vec::new();
    for i in 0..600 {
        let mut conn = Conn::connect_addr(d.tcp).await;
        conn.subscribe("many", &format!("c{}", i % 4)).await;
        consumers.push(conn);
    }
    let mut publisher = Conn::connect_addr(d.tcp).await;
    publisher.publish("many", b"to every channel").await;
    // One consumer of each channel (RDY 1) gets it.
    for conn in consumers.iter_mut().take(4) {
        conn.rdy(1).await;
        assert_eq!(&conn.expect_message().await.body[..], b"to every channel");
    }
    drop(consumers);
    assert!(d.terminate().success());
}

/// Opens `count` connections to `addr`, `batch` at a time, each sending
/// what `hello` gives for its index, and keeps them open.
async fn open_many(
    addr: std::net::SocketAddr,
    count: usize,
    hello: impl Fn(usize) -> Vec<u8>,
) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for start in (0..count).step_by(200) {
        let mut batch = tokio::task::JoinSet::new();
        for i in start..(start + 200).min(count) {
            let bytes = hello(i);
            batch.spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                if !bytes.is_empty() {
                    // A peer that already answered and closed may refuse it.
                    let _ = stream.write_all(&bytes).await;
                }
                stream
            });
        }
        while let Some(stream) = batch.join_next().await {
            streams.push(stream.expect("connect task"));
        }
    }
    streams
}

/// What each kind of hostile V2 client sends, by index.
fn hostile_v2(i: usize) -> Vec<u8> {
    let with_magic = |rest: &[u8]| [&MAGIC_V2[..], rest].concat();
    match i % 6 {
        // Garbage instead of the magic, and garbage after it.
        0 => b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        1 => with_magic(b"\x00\xff\x13 garbage without end"),
        // Half a command: the size of a body that never comes.
        2 => with_magic(b"PUB hostile\n\x00\x00"),
        // A valid, maximal MPUB size (5 MiB) with no body behind it.
        3 => with_magic(b"MPUB hostile\n\x00\x50\x00\x00\x00\x00\x00\x01"),
        // A size far past every limit.
        4 => with_magic(b"PUB hostile\n\x7f\xff\xff\xff"),
        // Nothing at all.
        _ => Vec::new(),
    }
}

/// A consumer that subscribes with a large RDY and then never reads its
/// socket, though it keeps the connection alive with NOPs.
async fn never_reading_consumer(nsqd: &Nsqd, topic: &str, channel: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stream = socket.connect(nsqd.tcp_addr()).await.expect("connect");
    let mut hello = MAGIC_V2.to_vec();
    let identify = br#"{"heartbeat_interval":1000}"#;
    for cmd in [
        Command::Identify(identify.to_vec().into()),
        Command::Sub {
            topic: topic.into(),
            channel: channel.into(),
        },
        Command::Rdy(2500),
    ] {
        hello.extend_from_slice(&cmd.to_bytes());
    }
    stream.write_all(&hello).await.expect("subscribe");
    stream
}

async fn channel_clients(nsqd: &Nsqd, topic: &str, channel: &str) -> i64 {
    stats(nsqd)
        .await
        .topics
        .unwrap_or_default()
        .iter()
        .filter(|t| t.topic_name == topic)
        .flat_map(|t| &t.channels)
        .filter(|c| c.channel_name == channel)
        .map(|c| c.client_count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_hostile_connections_leave_good_clients_unaffected() {
    const HOSTILE: usize = 2000;
    const MESSAGES: usize = 2000;
    // Both ends of the crowd, of one churning batch, and some to spare.
    ensure_fd_limit(2 * (HOSTILE as u64 + 200) + 1024);
    let nsqd = start_default_nsqd().await;
    let mut consumer = consumer(&nsqd, "good", "c", 100).await;
    let mut producer = Conn::connect(&nsqd).await;
    producer.publish("good", b"first").await;
    assert_eq!(&consumer.expect_message().await.body[..], b"first");
    let baseline = live_bytes();

    // The hostile crowd is there before the good clients start, and more
    // come and go while they work.
    let addr = nsqd.tcp_addr();
    let hostile = open_many(addr, HOSTILE, hostile_v2).await;
    let churn = async {
        for round in 0..10 {
            let offset = round * 7;
            drop(open_many(addr, 200, move |i| hostile_v2(i + offset)).await);
        }
    };
    let mut slow = never_reading_consumer(&nsqd, "good", "slow").await;
    // 8 MiB in all: more than the kernel buffers for a peer that never reads.
    let body = vec![b'x'; 4096];
    let publishing = async {
        let mut worst = Duration::ZERO;
        for i in 0..MESSAGES {
            let mut msg = format!("{i:06}").into_bytes();
            msg.extend_from_slice(&body);
            let started = Instant::now();
            producer.publish("good", &msg).await;
            worst = worst.max(started.elapsed());
            if i % 50 == 0 {
                let _ = slow.write_all(b"NOP\n").await;
            }
        }
        worst
    };
    let consuming = async {
        let mut seen = vec![false; MESSAGES];
        for _ in 0..MESSAGES {
            let msg = consumer.expect_message().await;
            let i: usize = std::str::from_utf8(&msg.body[..6])
                .unwrap()
                .parse()
                .unwrap();
            assert!(!seen[i], "message {i} delivered twice");
            seen[i] = true;
            consumer.fin(msg.id).await;
        }
        seen.iter().all(|s| *s)
    };
    let (worst, all_seen, ()) = tokio::join!(publishing, consuming, churn);
    assert!(all_seen, "every message reached the good consumer");
    assert!(
        worst < Duration::from_secs(2),
        "a publish took {worst:?} among the hostile connections"
    );

    // Each hostile connection costs nsqd a few buffers, not the 5 MiB its
    // MPUB header claims (that alone would be over 1.6 GiB here).
    let per_connection = (live_bytes() - baseline) / HOSTILE as isize;
    assert!(
        per_connection < 128 * 1024,
        "{per_connection} bytes held per hostile connection"
    );

    // The consumer that never reads was cut off by the write timeout (its
    // heartbeat interval), not buffered for without end.
    let deadline = Instant::now() + PATIENCE;
    while channel_clients(&nsqd, "good", "slow").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the consumer that never reads is still connected"
        );
        let _ = slow.write_all(b"NOP\n").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(channel_clients(&nsqd, "good", "c").await, 1);

    drop(hostile);
    producer.publish("good", b"last").await;
    assert_eq!(&consumer.expect_message().await.body[..], b"last");
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_two_heartbeat_intervals() {
    let nsqd = start_default_nsqd().await;
    let mut idle = Conn::connect(&nsqd).await;
    let mut half = Conn::connect(&nsqd).await;
    for conn in [&mut idle, &mut half] {
        conn.send(Command::Identify(
            br#"{"heartbeat_interval":1000}"#.to_vec().into(),
        ))
        .await;
        conn.expect_response("OK").await;
    }
    half.send_raw(b"PUB t\n\x00\x00\x00\x10part").await;
    let started = Instant::now();
    idle.expect_closed().await;
    half.expect_closed().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "closed after {waited:?}, expected about 2 s"
    );
    nsqd.shutdown().await;
}

/// True if the server closes `stream` without answering.
async fn closed_at_once(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A fresh connection that publishes and is answered `OK`; false if refused.
async fn can_publish(addr: std::net::SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let mut hello = MAGIC_V2.to_vec();
    let publish = Command::Pub {
        topic: "t".into(),
        body: b"x".to_vec().into(),
    };
    hello.extend_from_slice(&publish.to_bytes());
    if stream.write_all(&hello).await.is_err() {
        return false;
    }
    let mut buf = bytes::BytesMut::new();
    loop {
        match decode_frame(&mut buf, 1024) {
            Ok(Some(f)) => return f.frame_type == FrameType::Response && &f.data[..] == b"OK",
            Ok(None) => {}
            Err(_) => return false,
        }
        match tokio::time::timeout(PATIENCE, stream.read_buf(&mut buf)).await {
            Ok(Ok(1..)) => {}
            _ => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_closes_the_excess_and_recovers() {
    let dir = temp_dir("hostile-limit");
    let d = Daemon::start(&dir, &["--max-tcp-connections=50"]);
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut conn = Conn::connect_addr(d.tcp).await;
        conn.publish("t", b"held").await;
        held.push(conn);
    }
    let mut excess = open_many(d.tcp, 30, |_| MAGIC_V2.to_vec()).await;
    for stream in &mut excess {
        assert!(
            closed_at_once(stream).await,
            "a connection past the limit stays open"
        );
    }
    // HTTP is not counted: the node stays observable.
    let ping = reqwest::get(format!("{}/ping", d.http_url()))
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    let warnings = |log: &str| log.matches("connection limit reached").count();
    eventually("the limit is logged", || async { warnings(&d.log()) == 1 }).await;

    drop(excess);
    drop(held);
    eventually("new connections are accepted again", || can_publish(d.tcp)).await;
    assert_eq!(
        warnings(&d.log()),
        1,
        "one line, not one per refusal:\n{}",
        d.log()
    );
    assert!(d.terminate().success());
}

fn peer_identity() -> PeerIdentity {
    PeerIdentity {
        broadcast_address: "127.0.0.1".into(),
        hostname: "good".into(),
        tcp_port: 4150,
        http_port: 4151,
        version: "1.3.0".into(),
    }
}

/// Sends V1 commands on `stream` and reads one answer per command.
async fn v1_exchange(stream: &mut TcpStream, cmds: &[LookupCommand]) -> Vec<String> {
    let mut bytes = Vec::new();
    for cmd in cmds {
        bytes.extend_from_slice(&cmd.to_bytes());
    }
    stream.write_all(&bytes).await.expect("write");
    let mut buf = bytes::BytesMut::new();
    let mut answers = Vec::new();
    while answers.len() < cmds.len() {
        if let Some(answer) = decode_response(&mut buf, 1 << 16).expect("well-formed answer") {
            answers.push(String::from_utf8_lossy(&answer).into_owned());
            continue;
        }
        let read = tokio::time::timeout(PATIENCE, stream.read_buf(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(1..))), "lookupd stopped answering");
    }
    answers
}

/// What each kind of hostile V1 client sends, by index.
fn hostile_v1(i: usize) -> Vec<u8> {
    let with_magic = |rest: &[u8]| [&MAGIC_V1[..], rest].concat();
    match i % 5 {
        0 => b"\x16\x03\x01 not V1".to_vec(),
        1 => with_magic(b"REGISTER half-a-line"),
        // IDENTIFY claiming its largest body (1 MiB) and sending none.
        2 => with_magic(b"IDENTIFY\n\x00\x10\x00\x00{"),
        3 => with_magic(&[b'x'; 5000]),
        _ => Vec::new(),
    }
}

async fn start_lookupd_with(
    max_tcp_connections: usize,
    client_timeout: Duration,
) -> nsqlookupd::Lookupd {
    nsqlookupd::Lookupd::start(nsqlookupd::Options {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        broadcast_address: "127.0.0.1".into(),
        max_tcp_connections,
        client_timeout,
        ..nsqlookupd::Options::default()
    })
    .await
    .expect("nsqlookupd starts")
}

/// A V1 connection past the magic.
async fn v1_connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(MAGIC_V1).await.expect("magic");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookupd_serves_its_peers_among_hostile_connections() {
    const HOSTILE: usize = 1000;
    ensure_fd_limit(2 * HOSTILE as u64 + 512);
    let lookupd = start_lookupd_with(0, Duration::from_secs(60)).await;
    let addr = lookupd.tcp_addr();
    let baseline = live_bytes();
    let hostile = open_many(addr, HOSTILE, hostile_v1).await;

    let mut peer = v1_connect(addr).await;
    let register = LookupCommand::Register {
        topic: "good".into(),
        channel: Some("c".into()),
    };
    let answers = v1_exchange(
        &mut peer,
        &[
            LookupCommand::Identify(peer_identity()),
            register,
            LookupCommand::Ping,
        ],
    )
    .await;
    assert_eq!(&answers[1..], ["OK", "OK"]);
    let http = nsq::LookupdHttp::new(&lookupd.http_addr().to_string());
    assert_eq!(http.lookup("good").await.unwrap().producers.len(), 1);
    // An IDENTIFY that claims 1 MiB costs nothing until the bytes come.
    let per_connection = (live_bytes() - baseline) / HOSTILE as isize;
    assert!(
        per_connection < 64 * 1024,
        "{per_connection} bytes held per hostile connection"
    );
    drop(hostile);
    assert_eq!(v1_exchange(&mut peer, &[LookupCommand::Ping]).await, ["OK"]);
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookupd_limits_connections_and_closes_silent_ones() {
    let lookupd = start_lookupd_with(20, Duration::from_secs(1)).await;
    let addr = lookupd.tcp_addr();
    let mut silent = open_many(addr, 20, |_| Vec::new()).await;
    let mut past = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_at_once(&mut past).await,
        "a connection past the limit stays open"
    );
    // Silent connections are closed after the client timeout (1 s here),
    // which frees their slots.
    let started = Instant::now();
    for stream in &mut silent {
        assert!(
            closed_at_once(stream).await,
            "a silent connection stays open"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    let mut again = v1_connect(addr).await;
    assert_eq!(
        v1_exchange(&mut again, &[LookupCommand::Ping]).await,
        ["OK"]
    );
    lookupd.shutdown().await;
}

/// Negotiates compression with `json`, sends `wire` (the client's whole
/// compressed stream) in one write and returns every frame nsqd sent after
/// the IDENTIFY response, once it has closed the connection.
async fn compressed_exchange(
    nsqd: &Nsqd,
    json: &str,
    mut decoder: nsq::protocol::compress::Decoder,
    wire: &[u8],
) -> Vec<nsq::protocol::Frame> {
    let mut stream = TcpStream::connect(nsqd.tcp_addr()).await.unwrap();
    let mut hello = MAGIC_V2.to_vec();
    hello.extend_from_slice(&Command::Identify(json.as_bytes().to_vec().into()).to_bytes());
    stream.write_all(&hello).await.unwrap();
    let mut plain = bytes::BytesMut::new();
    let identified = loop {
        if let Some(frame) = decode_frame(&mut plain, 1 << 20).unwrap() {
            break frame;
        }
        let n = tokio::time::timeout(PATIENCE, stream.read_buf(&mut plain))
            .await
            .expect("IDENTIFY answered")
            .unwrap();
        assert!(n > 0, "closed before the IDENTIFY response");
    };
    assert_eq!(identified.frame_type, FrameType::Response);
    stream.write_all(wire).await.unwrap();
    // Everything after the IDENTIFY response is compressed.
    let mut raw = plain;
    loop {
        match tokio::time::timeout(PATIENCE, stream.read_buf(&mut raw)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => panic!("nsqd kept the connection open after bad compressed input"),
        }
    }
    let mut plain = bytes::BytesMut::new();
    decoder.decode(&mut raw, &mut plain, 1 << 20).unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = decode_frame(&mut plain, 1 << 20).unwrap() {
        frames.push(frame);
    }
    frames
}

/// Upstream closes on a chunk that fails its checksum and publishes nothing;
/// the whole chunk is checked before any byte of it is parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snappy_chunk_with_a_bad_checksum_is_never_executed() {
    use nsq::protocol::compress::{Decoder, Encoder};
    let nsqd = start_default_nsqd().await;
    // A short body stays an uncompressed chunk (0x01), a long repetitive
    // one becomes a compressed chunk (0x00).
    for (topic, body, kind) in [
        ("crc", vec![b'x'; 4], 0x01),
        ("crc", vec![b'a'; 2000], 0x00),
    ] {
        let publish = Command::Pub {
            topic: topic.into(),
            body: body.into(),
        };
        let mut wire = bytes::BytesMut::new();
        Encoder::snappy()
            .encode(&publish.to_bytes(), &mut wire)
            .unwrap();
        // Stream identifier (10 bytes), then type, length (3), masked CRC (4).
        assert_eq!(wire[10], kind);
        wire[14] ^= 0x01;
        let frames = compressed_exchange(
            &nsqd,
            r#"{"feature_negotiation":true,"snappy":true}"#,
            Decoder::snappy(),
            &wire,
        )
        .await;
        let answers: Vec<_> = frames.iter().map(|f| f.data.clone()).collect();
        assert_eq!(
            answers,
            [&b"OK"[..]],
            "only IDENTIFY's OK, for chunk type {kind:#04x}"
        );
        assert!(
            topic_stats(&nsqd, topic).await.is_none(),
            "{topic} was created"
        );
    }
    nsqd.shutdown().await;
}

/// Raw DEFLATE has no checksum, but a stream that breaks does not get to
/// execute what it decoded in the same step: here a whole PUB, decoded in the
/// step's first 64 KiB, before the break.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_deflate_stream_is_never_executed() {
    use nsq::protocol::compress::{Decoder, Encoder};
    let nsqd = start_default_nsqd().await;
    let mut plain = Command::Pub {
        topic: "broken".into(),
        body: b"body".to_vec().into(),
    }
    .to_bytes()
    .to_vec();
    let big = Command::Pub {
        topic: "broken".into(),
        body: vec![b'a'; 100_000].into(),
    };
    plain.extend_from_slice(&big.to_bytes());
    let mut wire = bytes::BytesMut::new();
    Encoder::deflate(6).encode(&plain, &mut wire).unwrap();
    // A final block of the reserved type 3: the stream is broken.
    wire.extend_from_slice(&[0xff, 0xff]);
    let frames = compressed_exchange(
        &nsqd,
        r#"{"feature_negotiation":true,"deflate":true}"#,
        Decoder::deflate(),
        &wire,
    )
    .await;
    let answers: Vec<_> = frames.iter().map(|f| f.data.clone()).collect();
    assert_eq!(answers, [&b"OK"[..]]);
    assert!(topic_stats(&nsqd, "broken").await.is_none());
    nsqd.shutdown().await;
}

/// Short HTTP timeouts, so that the tests below wait seconds, not minutes.
fn quick_http() -> nsq_daemon::http_server::HttpTimeouts {
    nsq_daemon::http_server::HttpTimeouts {
        http_header_timeout: Duration::from_secs(2),
        http_idle_timeout: Duration::from_secs(1),
    }
}

/// The HTTP listeners of an nsqd, an nsqlookupd and an nsqadmin, all with
/// [`quick_http`] timeouts; the daemons are returned to be shut down.
async fn http_daemons() -> (
    Nsqd,
    nsqlookupd::Lookupd,
    nsqadmin::NsqAdmin,
    Vec<std::net::SocketAddr>,
) {
    let nsqd = start_nsqd(Options {
        http_timeouts: quick_http(),
        ..test_options()
    })
    .await;
    let lookupd = nsqlookupd::Lookupd::start(nsqlookupd::Options {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        broadcast_address: "127.0.0.1".into(),
        http_timeouts: quick_http(),
        ..nsqlookupd::Options::default()
    })
    .await
    .expect("nsqlookupd starts");
    let admin = nsqadmin::NsqAdmin::start(nsqadmin::Options {
        http_address: "127.0.0.1:0".into(),
        nsqd_http_addresses: vec![nsqd.http_addr().unwrap().to_string()],
        http_timeouts: quick_http(),
        ..nsqadmin::Options::default()
    })
    .await
    .expect("nsqadmin starts");
    let addrs = vec![
        nsqd.http_addr().unwrap(),
        lookupd.http_addr(),
        admin.http_addr(),
    ];
    (nsqd, lookupd, admin, addrs)
}

async fn pings(addr: std::net::SocketAddr) -> bool {
    let answer = http_client()
        .get(format!("http://{addr}/ping"))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    matches!(answer, Ok(r) if r.status() == 200)
}

/// A client that sends its headers a byte a second is closed once the header
/// timeout has passed, and `/ping` answers others all along; a connection
/// left idle after a request is closed after the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_http_clients_are_closed_on_every_listener() {
    let (nsqd, lookupd, admin, addrs) = http_daemons().await;
    for addr in addrs {
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let header = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa";
        let mut closed_after = None;
        for byte in header {
            if slow.write_all(&[*byte]).await.is_err()
                || closed_at_once_within(&mut slow, Duration::from_secs(1)).await
            {
                closed_after = Some(started.elapsed());
                break;
            }
            assert!(pings(addr).await, "{addr}: /ping stopped answering");
        }
        let closed_after =
            closed_after.unwrap_or_else(|| panic!("{addr}: a trickling client was never closed"));
        assert!(
            closed_after >= Duration::from_millis(1500) && closed_after < Duration::from_secs(5),
            "{addr}: closed after {closed_after:?}; the header timeout is 2 s"
        );

        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"OK") {
            let n = tokio::time::timeout(PATIENCE, idle.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "{addr}: closed before answering");
            answer.extend_from_slice(&buf[..n]);
        }
        let answered = Instant::now();
        assert!(
            closed_at_once(&mut idle).await,
            "{addr}: an idle connection stayed open"
        );
        let idled = answered.elapsed();
        assert!(
            idled >= Duration::from_millis(700) && idled < Duration::from_secs(4),
            "{addr}: closed after {idled:?} idle; the idle timeout is 1 s"
        );
    }
    admin.shutdown().await;
    nsqd.shutdown().await;
    lookupd.shutdown().await;
}

/// True if the server closes `stream` within `limit` (it sends nothing).
async fn closed_at_once_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Go accepts a megabyte of headers; hyper's defaults refuse a hundred
/// headers (431) and a long request line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_many_headers_and_a_long_query_are_served() {
    let (nsqd, lookupd, admin, addrs) = http_daemons().await;
    let query = "x".repeat(60_000);
    for addr in addrs {
        let mut request = http_client().get(format!("http://{addr}/ping?pad={query}"));
        for i in 0..200 {
            request = request.header(format!("x-header-{i}"), "v".repeat(100));
        }
        let answer = request.send().await.expect("request");
        assert_eq!(answer.status(), 200, "{addr}");
    }
    let big = http_client()
        .post(format!(
            "http://{}/pub?topic=headers&pad={query}",
            nsqd.http_addr().unwrap()
        ))
        .header("x-big", "v".repeat(500_000))
        .body("body")
        .send()
        .await
        .expect("request");
    assert_eq!(big.status(), 200);
    assert_eq!(topic_message_count(&nsqd, "headers").await, 1);
    admin.shutdown().await;
    nsqd.shutdown().await;
    lookupd.shutdown().await;
}
