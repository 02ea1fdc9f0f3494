//! One file because the parser's, the TCP sessions' and the HTTP requests'
//! properties share their generators and the in-process nsqd.
//!
//! Property tests of what nsqd parses from clients: the V2 command parser on
//! its own (in each connection state), then whole TCP sessions and HTTP
//! `/pub` and `/mpub` requests against an nsqd running in this process. Any bytes give an answer or a
//! closed connection, never a panic, and never an allocation sized by a
//! claimed length; valid commands parse back to what was encoded.

use crate::client_conn::ClientState;
use crate::command::{parse, ClientError, ConnState, Limits, Request};
use crate::{Nsqd, Options};
use bytes::{Buf, Bytes, BytesMut};
use nsq::protocol::{decode_frame, Command, FrameType, MessageId, MAGIC_V2};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: Limits = Limits {
    max_msg_size: 1000,
    max_body_size: 5000,
    max_req_timeout_ms: 3_600_000,
    max_rdy_count: 2500,
};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn topic() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,20}(#ephemeral)?"
}

fn body(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 1..max).prop_map(Bytes::from)
}

fn message_id() -> impl Strategy<Value = MessageId> {
    any::<u64>().prop_map(MessageId::from_u64)
}

/// The publishes, with valid arguments: allowed in every state.
fn publish() -> impl Strategy<Value = Command> {
    prop_oneof![
        topic().prop_flat_map(|topic| body(200).prop_map(move |body| Command::Pub {
            topic: topic.clone(),
            body
        })),
        (topic(), 0u64..3_600_000, body(200)).prop_map(|(topic, ms, body)| Command::Dpub {
            topic,
            delay: Duration::from_millis(ms),
            body
        }),
        (topic(), proptest::collection::vec(body(100), 1..8))
            .prop_map(|(topic, bodies)| Command::Mpub { topic, bodies }),
        Just(Command::Nop),
    ]
}

/// Valid commands of a connection that has not subscribed.
fn before_sub() -> impl Strategy<Value = Command> {
    prop_oneof![
        publish(),
        "\\{\"client_id\":\"[a-z]{0,8}\"\\}".prop_map(|j| Command::Identify(j.into())),
        body(50).prop_map(Command::Auth),
        (topic(), topic()).prop_map(|(topic, channel)| Command::Sub { topic, channel }),
    ]
}

/// Valid commands of a subscribed connection.
fn after_sub() -> impl Strategy<Value = Command> {
    prop_oneof![
        publish(),
        (0u32..=2500).prop_map(Command::Rdy),
        message_id().prop_map(Command::Fin),
        (message_id(), 0u64..100_000).prop_map(|(id, ms)| Command::Req {
            id,
            delay: Duration::from_millis(ms)
        }),
        message_id().prop_map(Command::Touch),
        Just(Command::Cls),
    ]
}

/// Every command a client can send, with valid arguments.
fn command() -> impl Strategy<Value = Command> {
    prop_oneof![before_sub(), after_sub()]
}

fn connection(client: ClientState) -> ConnState {
    ConnState {
        client,
        tls_pending: false,
        heartbeats: true,
    }
}

/// Any state a connection can be in when a command arrives.
fn any_connection() -> impl Strategy<Value = ConnState> {
    let client = prop_oneof![
        Just(ClientState::Init),
        Just(ClientState::Subscribed),
        Just(ClientState::Closing)
    ];
    (client, any::<bool>(), any::<bool>()).prop_map(|(client, tls_pending, heartbeats)| ConnState {
        client,
        tls_pending,
        heartbeats,
    })
}

/// What nsqd should parse `cmd` into.
fn expected(cmd: &Command) -> Request {
    let wire = cmd.to_bytes();
    let line_end = wire.iter().position(|&b| b == b'\n').unwrap();
    let body = || wire.slice(line_end + 5..);
    match cmd {
        Command::Pub { topic, .. } => Request::Pub {
            topic: topic.clone(),
            body: body(),
        },
        Command::Dpub { topic, delay, .. } => Request::Dpub {
            topic: topic.clone(),
            defer_ms: delay.as_millis() as u64,
            body: body(),
        },
        Command::Mpub { topic, bodies } => Request::Mpub {
            topic: topic.clone(),
            records: wire.slice(line_end + 9..),
            count: bodies.len() as u32,
        },
        Command::Identify(_) => Request::Identify(body()),
        Command::Auth(_) => Request::Auth(body()),
        Command::Sub { topic, channel } => Request::Sub {
            topic: topic.clone(),
            channel: channel.clone(),
        },
        Command::Rdy(count) => Request::Rdy(*count as i64),
        Command::Fin(id) => Request::Fin(*id),
        Command::Req { id, delay } => Request::Req {
            id: *id,
            timeout_ms: delay.as_millis() as u64,
        },
        Command::Touch(id) => Request::Touch(*id),
        Command::Cls => Request::Cls,
        Command::Nop => Request::Nop,
    }
}

/// Bytes derived from valid commands: cut short, with bytes overwritten, and
/// with a 4-byte big-endian size somewhere set huge or negative.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = proptest::collection::vec(command(), 1..4).prop_map(|cmds| {
        let mut buf = BytesMut::new();
        for c in cmds {
            c.encode(&mut buf);
        }
        buf.to_vec()
    });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..100),
        valid.prop_flat_map(|bytes| {
            let len = bytes.len();
            (
                Just(bytes),
                proptest::option::of(0..=len),
                proptest::collection::vec((0..len, any::<u8>()), 0..4),
                proptest::option::of((
                    0..len,
                    prop_oneof![
                        Just(u32::MAX),
                        Just(0x7fff_ffff),
                        Just(0x8000_0000),
                        any::<u32>()
                    ],
                )),
            )
                .prop_map(|(mut bytes, cut, flips, huge)| {
                    for (at, b) in flips {
                        bytes[at] = b;
                    }
                    if let Some((at, size)) = huge {
                        if bytes.len() >= 4 {
                            let at = at.min(bytes.len() - 4);
                            bytes[at..at + 4].copy_from_slice(&size.to_be_bytes());
                        }
                    }
                    if let Some(cut) = cut {
                        bytes.truncate(cut);
                    }
                    bytes
                })
        }),
    ]
}

/// Parses everything parseable off `buf`, as the connection does.
fn parse_all(buf: &mut BytesMut, conn: ConnState) -> Result<Vec<Request>, ClientError> {
    let mut out = Vec::new();
    while let Some(request) = parse(buf, &LIMITS, conn)? {
        out.push(request);
    }
    Ok(out)
}

fn check_limits(request: &Request) -> Result<(), TestCaseError> {
    let max_msg = LIMITS.max_msg_size as usize;
    let max_body = LIMITS.max_body_size as usize;
    match request {
        Request::Pub { body, .. } | Request::Dpub { body, .. } => {
            prop_assert!(!body.is_empty() && body.len() <= max_msg)
        }
        Request::Mpub { records, count, .. } => {
            prop_assert!(records.len() + 4 <= max_body);
            let mut rest = records.clone();
            for _ in 0..*count {
                let len = rest.get_u32() as usize;
                prop_assert!(len > 0 && len <= max_msg);
                rest.advance(len);
            }
            prop_assert!(rest.is_empty());
        }
        Request::Identify(body) | Request::Auth(body) | Request::Repl { hello: body, .. } => {
            prop_assert!(body.len() <= max_body)
        }
        Request::Rdy(count) => prop_assert!((0..=LIMITS.max_rdy_count).contains(count)),
        Request::Sub { .. }
        | Request::Fin(_)
        | Request::Req { .. }
        | Request::Touch(_)
        | Request::Cls
        | Request::Nop => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn any_bytes_parse_or_fail_within_the_limits(bytes in hostile_bytes(), conn in any_connection()) {
        let mut buf = BytesMut::from(&bytes[..]);
        if let Ok(requests) = parse_all(&mut buf, conn) {
            for request in &requests {
                check_limits(request)?;
            }
        }
        // Waiting for a body reserves at most double what arrived.
        prop_assert!(buf.capacity() <= 2 * bytes.len() + 16 * 1024 + 64, "capacity {} after {} bytes", buf.capacity(), bytes.len());
    }

    #[test]
    fn valid_commands_parse_back_whatever_the_chunking(
        (subscribed, cmds) in any::<bool>().prop_flat_map(|subscribed| {
            let cmds = if subscribed { after_sub().boxed() } else { before_sub().boxed() };
            (Just(subscribed), proptest::collection::vec(cmds, 1..6))
        }),
        chunk in 1usize..40,
    ) {
        let conn = connection(if subscribed { ClientState::Subscribed } else { ClientState::Init });
        let mut wire = BytesMut::new();
        for c in &cmds {
            c.encode(&mut wire);
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            got.extend(parse_all(&mut buf, conn).unwrap());
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, cmds.iter().map(expected).collect::<Vec<_>>());
    }
}

#[test]
fn a_claimed_body_costs_nothing_until_it_arrives() {
    let limits = Limits {
        max_msg_size: 1 << 30,
        max_body_size: 1 << 30,
        max_req_timeout_ms: 0,
        max_rdy_count: 0,
    };
    for header in [
        &b"PUB t\n\x3f\xff\xff\xff"[..],
        b"MPUB t\n\x3f\xff\xff\xff\x00\x00\x00\x01",
        b"IDENTIFY\n\x3f\xff\xff\xff",
    ] {
        let mut buf = BytesMut::from(header);
        assert_eq!(
            parse(&mut buf, &limits, connection(ClientState::Init)),
            Ok(None)
        );
        assert!(buf.capacity() < 1 << 20, "{}", buf.capacity());
    }
}

/// Set by any panic in this process, nsqd's tasks included.
static PANICKED: AtomicBool = AtomicBool::new(false);

fn watch_for_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        default(info);
    }));
}

/// A runtime and an nsqd on loopback with small limits, for the tests below.
/// The data directory goes when the returned guard is dropped, after nsqd.
fn start_nsqd() -> (tempfile::TempDir, tokio::runtime::Runtime, Nsqd) {
    watch_for_panics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let nsqd = runtime.block_on(async {
        Nsqd::start(Options {
            tcp_address: "127.0.0.1:0".into(),
            http_address: "127.0.0.1:0".into(),
            broadcast_address: "127.0.0.1".into(),
            data_path: data.path().to_path_buf(),
            max_msg_size: LIMITS.max_msg_size,
            max_body_size: LIMITS.max_body_size,
            ..Options::default()
        })
        .await
        .unwrap()
    });
    (data, runtime, nsqd)
}

/// Sends `bytes` after the magic, closes the sending side, and reads frames
/// until nsqd closes the connection. Every frame must be well formed.
async fn session(nsqd: &Nsqd, bytes: &[u8]) -> Result<Vec<(FrameType, Bytes)>, TestCaseError> {
    let mut stream = TcpStream::connect(nsqd.tcp_addr()).await.unwrap();
    stream.write_all(MAGIC_V2).await.unwrap();
    // nsqd may close before reading it all: a failed write is fine.
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_buf(&mut buf)).await;
        match read {
            Err(_) => return Err(TestCaseError::fail("nsqd neither answered nor closed")),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
        }
        while let Some(frame) =
            decode_frame(&mut buf, 1 << 20).map_err(|e| TestCaseError::fail(e.to_string()))?
        {
            frames.push((frame.frame_type, frame.data));
        }
    }
    Ok(frames)
}

/// Alive and well: a fresh client publishes and is answered `OK`.
async fn publishes(nsqd: &Nsqd) -> bool {
    let mut bytes = BytesMut::new();
    Command::Pub {
        topic: "alive".into(),
        body: Bytes::from_static(b"x"),
    }
    .encode(&mut bytes);
    let frames = session(nsqd, &bytes).await.unwrap_or_default();
    frames.first().map(|(t, d)| (*t, &d[..])) == Some((FrameType::Response, &b"OK"[..]))
}

#[test]
fn tcp_sessions_of_any_bytes_end_in_answers_or_a_close() {
    let (_data, runtime, nsqd) = start_nsqd();
    let mut runner = TestRunner::new(config(512));
    runner
        .run(&hostile_bytes(), |bytes| {
            runtime.block_on(session(&nsqd, &bytes))?;
            prop_assert!(!PANICKED.load(Ordering::SeqCst), "nsqd panicked");
            Ok(())
        })
        .unwrap();
    assert!(runtime.block_on(publishes(&nsqd)));
    runtime.block_on(nsqd.shutdown());
}

/// Publishing commands, each answered `OK`.
fn publishes_only() -> impl Strategy<Value = Vec<Command>> {
    proptest::collection::vec(command(), 1..5).prop_map(|cmds| {
        cmds.into_iter()
            .filter(|c| {
                matches!(
                    c,
                    Command::Pub { .. } | Command::Mpub { .. } | Command::Dpub { .. }
                )
            })
            .collect()
    })
}

/// Negotiates snappy or deflate, then sends `plain` through it (with one
/// wire byte overwritten if `flip`), and returns the frames nsqd sent back
/// after the IDENTIFY answer, decoded, until it closed.
async fn compressed_session(
    nsqd: &Nsqd,
    snappy: bool,
    plain: &[u8],
    flip: Option<(usize, u8)>,
) -> Result<Vec<(FrameType, Bytes)>, String> {
    use nsq::protocol::compress::{Decoder, Encoder};
    let json = format!(
        r#"{{"feature_negotiation":true,"snappy":{snappy},"deflate":{}}}"#,
        !snappy
    );
    let mut hello = BytesMut::from(&MAGIC_V2[..]);
    Command::Identify(json.into()).encode(&mut hello);
    let (mut encoder, mut decoder) = if snappy {
        (Encoder::snappy(), Decoder::snappy())
    } else {
        (Encoder::deflate(6), Decoder::deflate())
    };
    let mut wire = BytesMut::new();
    encoder.encode(plain, &mut wire).unwrap();
    if let Some((at, byte)) = flip {
        let at = at % wire.len();
        wire[at] = byte;
    }
    hello.extend_from_slice(&wire);
    let mut stream = TcpStream::connect(nsqd.tcp_addr()).await.unwrap();
    let _ = stream.write_all(&hello).await;
    let _ = stream.shutdown().await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .map_err(|_| "nsqd neither answered nor closed".to_string())?;
    let mut raw = BytesMut::from(&raw[..]);
    let identify = decode_frame(&mut raw, 1 << 20).map_err(|e| e.to_string())?;
    if identify.map(|f| f.frame_type) != Some(FrameType::Response) {
        return Err("no IDENTIFY answer".into());
    }
    let mut plain_out = BytesMut::new();
    decoder
        .decode(&mut raw, &mut plain_out, usize::MAX)
        .map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    while let Some(frame) = decode_frame(&mut plain_out, 1 << 20).map_err(|e| e.to_string())? {
        frames.push((frame.frame_type, frame.data));
    }
    Ok(frames)
}

#[test]
fn compressed_sessions_round_trip_and_survive_corruption() {
    let (_data, runtime, nsqd) = start_nsqd();
    let case = (
        any::<bool>(),
        publishes_only(),
        proptest::option::of((any::<usize>(), any::<u8>())),
    );
    let mut runner = TestRunner::new(config(160));
    runner
        .run(&case, |(snappy, cmds, flip)| {
            let mut plain = BytesMut::new();
            for c in &cmds {
                c.encode(&mut plain);
            }
            let answers = runtime.block_on(compressed_session(&nsqd, snappy, &plain, flip));
            prop_assert!(!PANICKED.load(Ordering::SeqCst), "nsqd panicked");
            if flip.is_none() {
                // The OK that starts compression, then one per publish.
                let answers = answers.map_err(TestCaseError::fail)?;
                prop_assert_eq!(answers.len(), 1 + cmds.len());
                prop_assert!(answers
                    .iter()
                    .all(|(t, d)| *t == FrameType::Response && &d[..] == b"OK"));
            }
            Ok(())
        })
        .unwrap();
    assert!(runtime.block_on(publishes(&nsqd)));
    runtime.block_on(nsqd.shutdown());
}

/// One HTTP/1.1 request over a fresh connection; the status code.
async fn http(nsqd: &Nsqd, method: &str, target: &str, body: &[u8], chunked: bool) -> u16 {
    let mut stream = TcpStream::connect(nsqd.http_addr().unwrap()).await.unwrap();
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: nsqd\r\nConnection: close\r\n");
    if chunked {
        request.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    }
    let mut bytes = request.into_bytes();
    if chunked {
        for piece in body.chunks(7) {
            bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            bytes.extend_from_slice(piece);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else {
        bytes.extend_from_slice(body);
    }
    let _ = stream.write_all(&bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no HTTP answer to {target}");
    let status = answer.get(9..12).and_then(|s| std::str::from_utf8(s).ok());
    status.and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A binary `/mpub` body: `[count]([size][body])*`.
fn binary_mpub(bodies: &[Bytes]) -> Vec<u8> {
    let mut out = (bodies.len() as u32).to_be_bytes().to_vec();
    for b in bodies {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// Queries from pieces nsqd reads, escapes good and bad, and stray bytes.
fn query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("topic=t"),
        Just("topic=t%23ephemeral"),
        Just("topic="),
        Just("topic=bad!"),
        Just("binary=true"),
        Just("binary=false"),
        Just("binary=maybe"),
        Just("defer=100"),
        Just("defer=-1"),
        Just("defer=99999999999"),
        Just("%zz"),
        Just("a;b"),
        Just("=&="),
        Just("+"),
    ];
    proptest::collection::vec(piece, 0..4).prop_map(|p| p.join("&"))
}

#[test]
fn http_publishing_answers_any_body_and_query_without_a_server_error() {
    let (_data, runtime, nsqd) = start_nsqd();
    let request = (
        prop_oneof![Just("/pub"), Just("/mpub"), Just("/PUB"), Just("/mpub/")],
        query(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(body(300), 1..5).prop_map(|b| binary_mpub(&b)),
            Just(vec![b'x'; 1001]),
            Just(vec![b'\n'; 5001]),
            Just(b"\x7f\xff\xff\xff\x00\x00\x00\x01x".to_vec()),
        ],
        any::<bool>(),
    );
    let mut runner = TestRunner::new(config(512));
    runner
        .run(&request, |(path, query, body, chunked)| {
            let status = runtime.block_on(http(
                &nsqd,
                "POST",
                &format!("{path}?{query}"),
                &body,
                chunked,
            ));
            prop_assert!(
                (200..500).contains(&status),
                "{path}?{query}: status {status}"
            );
            prop_assert!(!PANICKED.load(Ordering::SeqCst), "nsqd panicked");
            Ok(())
        })
        .unwrap();
    runtime.block_on(nsqd.shutdown());
}

#[test]
fn valid_http_publishes_arrive_as_sent() {
    let (_data, runtime, nsqd) = start_nsqd();
    let request = (
        proptest::collection::vec(body(200), 1..6),
        prop_oneof![Just("binary"), Just("text"), Just("pub")],
        any::<bool>(),
    );
    let expected = std::cell::Cell::new(0u64);
    let mut runner = TestRunner::new(config(128));
    runner
        .run(&request, |(bodies, kind, chunked)| {
            let (target, body, count) = match kind {
                "binary" => (
                    "/mpub?topic=p&binary=true",
                    binary_mpub(&bodies),
                    bodies.len(),
                ),
                "pub" => ("/pub?topic=p", bodies[0].to_vec(), 1),
                _ => {
                    // Text lines cannot hold a newline; empty lines are skipped.
                    let lines: Vec<Vec<u8>> = bodies
                        .iter()
                        .map(|b| {
                            b.iter()
                                .map(|&c| if c == b'\n' { b'.' } else { c })
                                .collect()
                        })
                        .collect();
                    ("/mpub?topic=p", lines.join(&b'\n'), lines.len())
                }
            };
            let status = runtime.block_on(http(&nsqd, "POST", target, &body, chunked));
            prop_assert_eq!(status, 200, "{}", target);
            expected.set(expected.get() + count as u64);
            Ok(())
        })
        .unwrap();
    let depth = runtime.block_on(async {
        let mut stream = TcpStream::connect(nsqd.http_addr().unwrap()).await.unwrap();
        stream
            .write_all(b"GET /stats?format=json&topic=p HTTP/1.1\r\nHost: nsqd\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let json = answer.split("\r\n\r\n").nth(1).unwrap();
        let stats: serde_json::Value = serde_json::from_str(json).unwrap();
        stats["topics"][0]["message_count"].as_u64().unwrap()
    });
    assert_eq!(depth, expected.get());
    runtime.block_on(nsqd.shutdown());
}
