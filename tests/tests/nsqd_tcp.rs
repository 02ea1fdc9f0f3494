//! nsqd's TCP protocol V2, end to end over real sockets.

use bytes::{Bytes, BytesMut};
use nsq::protocol::compress::{Decoder, Encoder};
use nsq::protocol::{decode_frame, Command, FrameType, IdentifyResponse, MessageId, WireMessage};
use nsq_e2e::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn identify(json: &str) -> Command {
    Command::Identify(Bytes::copy_from_slice(json.as_bytes()))
}

/// Replays the raw exchanges captured from upstream nsqd v1.3.0 and expects the
/// same bytes back (message IDs and timestamps aside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_upstream_capture_byte_for_byte() {
    let nsqd = start_default_nsqd().await;
    let text = capture_file("tcp/tcp_exchanges.json");
    let exchanges: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    // The capture's consumer read a message published to "tcpsub" beforehand.
    Conn::connect(&nsqd).await.publish("tcpsub", b"msg-1").await;

    let mut conn = Conn::connect_raw(&nsqd).await;
    let mut id: Option<Vec<u8>> = None;
    for exchange in exchanges {
        let name = exchange["name"].as_str().unwrap();
        let hex = |k: &str| -> Vec<u8> {
            let s = exchange[k].as_str().unwrap();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let mut sent = hex("sent_hex");
        let expected = hex("recv_hex");
        if name.starts_with("SUB")
            || name.starts_with("bad magic")
            || name.starts_with("CLS before")
        {
            conn = Conn::connect_raw(&nsqd).await;
            if !name.starts_with("bad magic") {
                conn.send_raw(b"  V2").await;
            }
        }
        if let Some(id) = &id {
            sent = replace(&sent, b"18a3c72127269000", id);
        }
        if !sent.is_empty() {
            conn.send_raw(&sent).await;
        }
        if expected.is_empty() {
            if name.starts_with("after fatal") {
                conn.expect_closed().await;
            } else {
                conn.expect_silence(Duration::from_millis(150)).await;
            }
            continue;
        }
        let frame = conn
            .read_frame()
            .await
            .unwrap_or_else(|| panic!("{name}: connection closed"));
        let mut got = BytesMut::new();
        match frame.frame_type {
            FrameType::Message => {
                let msg = WireMessage::decode(frame.data.clone()).unwrap();
                id = Some(msg.id.0.to_vec());
                let expected_msg =
                    WireMessage::decode(Bytes::copy_from_slice(&expected[8..])).unwrap();
                assert_eq!(
                    (msg.attempts, &msg.body),
                    (expected_msg.attempts, &expected_msg.body),
                    "{name}"
                );
                assert_eq!(expected[..8], {
                    nsq::protocol::encode_frame(&mut got, frame.frame_type, &frame.data);
                    got[..8].to_vec()
                });
            }
            _ => {
                nsq::protocol::encode_frame(&mut got, frame.frame_type, &frame.data);
                let expected = replace(
                    &expected,
                    b"18a3c72127269000",
                    id.as_deref().unwrap_or(b"18a3c72127269000"),
                );
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&expected),
                    "{name}"
                );
            }
        }
        if name.starts_with("PUB invalid")
            || name.starts_with("invalid command")
            || name.starts_with("bad magic")
        {
            conn.expect_closed().await;
        }
    }
    nsqd.shutdown().await;
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_negotiates_settings() {
    let nsqd = start_default_nsqd().await;
    let mut conn = Conn::connect(&nsqd).await;
    conn.send(identify(
        r#"{"client_id":"c1","feature_negotiation":true,"heartbeat_interval":2000,"msg_timeout":5000,"output_buffer_size":4096,"output_buffer_timeout":100,"sample_rate":50,"user_agent":"test/1"}"#,
    ))
    .await;
    let frame = conn.read_frame().await.unwrap();
    let resp: IdentifyResponse = serde_json::from_slice(&frame.data).unwrap();
    assert_eq!(resp.max_rdy_count, 2500);
    assert_eq!(resp.msg_timeout, 5000);
    assert_eq!(resp.max_msg_timeout, 900_000);
    assert_eq!(resp.output_buffer_size, 4096);
    assert_eq!(resp.output_buffer_timeout, 100);
    assert_eq!(resp.sample_rate, 50);
    assert!(!resp.tls_v1 && !resp.snappy && !resp.deflate && !resp.auth_required);
    assert_eq!(resp.version, "1.3.0");
    conn.subscribe("identify", "c").await;
    let stats = stats(&nsqd).await;
    let client = &stats.topics.unwrap()[0].channels[0]
        .clients
        .clone()
        .unwrap()[0];
    assert_eq!(
        (
            client.client_id.as_str(),
            client.user_agent.as_str(),
            client.sample_rate
        ),
        ("c1", "test/1", 50)
    );

    // Without feature negotiation the answer is a plain OK.
    let mut plain = Conn::connect(&nsqd).await;
    plain.send(identify(r#"{"client_id":"x"}"#)).await;
    plain.expect_response("OK").await;

    // Out-of-range values are fatal E_BAD_BODY errors with upstream's text.
    for (json, text) in [
        (
            r#"{"heartbeat_interval":500}"#,
            "E_BAD_BODY IDENTIFY heartbeat interval (500) is invalid",
        ),
        (
            r#"{"output_buffer_size":10}"#,
            "E_BAD_BODY IDENTIFY output buffer size (10) is invalid",
        ),
        (
            r#"{"output_buffer_timeout":1}"#,
            "E_BAD_BODY IDENTIFY output buffer timeout (1) is invalid",
        ),
        (
            r#"{"sample_rate":100}"#,
            "E_BAD_BODY IDENTIFY sample rate (100) is invalid",
        ),
        (
            r#"{"msg_timeout":999}"#,
            "E_BAD_BODY IDENTIFY msg timeout (999) is invalid",
        ),
        ("not json", "E_BAD_BODY IDENTIFY failed to decode JSON body"),
        (
            r#"{"snappy":true,"deflate":true,"feature_negotiation":true}"#,
            "E_IDENTIFY_FAILED cannot enable both deflate and snappy compression",
        ),
    ] {
        let mut conn = Conn::connect(&nsqd).await;
        conn.send(identify(json)).await;
        conn.expect_error(text).await;
        conn.expect_closed().await;
    }
    // IDENTIFY after SUB is refused.
    let mut conn = consumer(&nsqd, "identify", "c2", 0).await;
    conn.send(identify("{}")).await;
    conn.expect_error("E_INVALID cannot IDENTIFY in current state")
        .await;
    conn.expect_closed().await;
    nsqd.shutdown().await;
}

/// A client speaking through a compression layer, as go-nsq does after IDENTIFY.
struct Compressed {
    conn: Conn,
    encoder: Encoder,
    decoder: Decoder,
    raw: BytesMut,
    plain: BytesMut,
}

impl Compressed {
    async fn negotiate(
        nsqd: &Nsqd,
        json: &str,
        encoder: Encoder,
        decoder: Decoder,
    ) -> (Compressed, IdentifyResponse) {
        let mut conn = Conn::connect(nsqd).await;
        conn.send(identify(json)).await;
        let frame = conn.read_frame().await.unwrap();
        let resp: IdentifyResponse = serde_json::from_slice(&frame.data).unwrap();
        let mut c = Compressed {
            conn,
            encoder,
            decoder,
            raw: BytesMut::new(),
            plain: BytesMut::new(),
        };
        let ok = c.frame().await;
        assert_eq!(&ok.data[..], b"OK", "OK through the new layer");
        (c, resp)
    }

    async fn send(&mut self, cmd: Command) {
        let mut wire = BytesMut::new();
        self.encoder.encode(&cmd.to_bytes(), &mut wire).unwrap();
        self.conn.stream.write_all(&wire).await.unwrap();
    }

    async fn frame(&mut self) -> nsq::protocol::Frame {
        loop {
            if let Some(frame) = decode_frame(&mut self.plain, 1 << 24).unwrap() {
                if &frame.data[..] != b"_heartbeat_" {
                    return frame;
                }
                continue;
            }
            self.decoder
                .decode(&mut self.raw, &mut self.plain, 1 << 24)
                .unwrap();
            if decode_frame(&mut self.plain.clone(), 1 << 24)
                .unwrap()
                .is_some()
            {
                continue;
            }
            let n = tokio::time::timeout(PATIENCE, self.conn.stream.read_buf(&mut self.raw))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed");
        }
    }
}

async fn compressed_round_trip(json: &str, encoder: Encoder, decoder: Decoder) -> IdentifyResponse {
    let nsqd = start_default_nsqd().await;
    let (mut c, resp) = Compressed::negotiate(&nsqd, json, encoder, decoder).await;
    let body: Vec<u8> = (0..50_000u32)
        .flat_map(|i| (i % 97).to_le_bytes())
        .collect();
    c.send(Command::Pub {
        topic: "z".into(),
        body: body.clone().into(),
    })
    .await;
    assert_eq!(&c.frame().await.data[..], b"OK");
    c.send(Command::Sub {
        topic: "z".into(),
        channel: "c".into(),
    })
    .await;
    assert_eq!(&c.frame().await.data[..], b"OK");
    c.send(Command::Rdy(1)).await;
    let frame = c.frame().await;
    assert_eq!(frame.frame_type, FrameType::Message);
    let msg = WireMessage::decode(frame.data).unwrap();
    assert_eq!(msg.body.to_vec(), body);
    c.send(Command::Fin(msg.id)).await;
    eventually("FIN through the compressed stream", || async {
        let s = stats(&nsqd).await;
        s.topics.unwrap()[0].channels[0].clients.clone().unwrap()[0].finish_count == 1
    })
    .await;
    nsqd.shutdown().await;
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_stream() {
    let resp = compressed_round_trip(
        r#"{"feature_negotiation":true,"snappy":true}"#,
        Encoder::snappy(),
        Decoder::snappy(),
    )
    .await;
    assert!(resp.snappy && !resp.deflate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_stream() {
    let resp = compressed_round_trip(
        r#"{"feature_negotiation":true,"deflate":true,"deflate_level":9}"#,
        Encoder::deflate(9),
        Decoder::deflate(),
    )
    .await;
    // The level is capped at --max-deflate-level (6).
    assert!(resp.deflate && !resp.snappy);
    assert_eq!(resp.deflate_level, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_commands_and_their_errors() {
    let nsqd = start_default_nsqd().await;
    let mut conn = Conn::connect(&nsqd).await;
    conn.publish("p", b"one").await;
    conn.send(Command::Mpub {
        topic: "p".into(),
        bodies: vec![Bytes::from("two"), Bytes::from("three")],
    })
    .await;
    conn.expect_response("OK").await;
    conn.send(Command::Dpub {
        topic: "p".into(),
        delay: Duration::from_millis(10),
        body: Bytes::from("four"),
    })
    .await;
    conn.expect_response("OK").await;
    // Producers pipeline: many commands in one write, answered in order.
    let mut batch = BytesMut::new();
    for i in 0..100 {
        Command::Pub {
            topic: "p".into(),
            body: format!("m{i}").into(),
        }
        .encode(&mut batch);
    }
    conn.send_raw(&batch).await;
    for _ in 0..100 {
        conn.expect_response("OK").await;
    }
    let s = stats(&nsqd).await;
    let topic = &s.topics.unwrap()[0];
    assert_eq!(
        (topic.message_count, topic.depth),
        (104, 104),
        "with no channel yet, all wait in the topic"
    );
    let producers = s.producers.expect("the connection is a producer");
    assert_eq!(producers[0].pub_counts[0].count, 104);

    let too_long = format!(
        "E_BAD_TOPIC PUB topic name \"{}\" is not valid",
        "x".repeat(65)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"PUB\n".to_vec(),
            "E_INVALID PUB insufficient number of parameters",
        ),
        (
            b"PUB t\n\x00\x00\x00\x00".to_vec(),
            "E_BAD_MESSAGE PUB invalid message body size 0",
        ),
        (
            b"PUB t\n\x00\x10\x00\x01".to_vec(),
            "E_BAD_MESSAGE PUB message too big 1048577 > 1048576",
        ),
        (
            b"MPUB t\n\x00\x50\x00\x01".to_vec(),
            "E_BAD_BODY MPUB body too big 5242881 > 5242880",
        ),
        (
            b"MPUB t\n\x00\x00\x00\x00".to_vec(),
            "E_BAD_BODY MPUB invalid body size 0",
        ),
        (
            b"MPUB t\n\x00\x00\x00\x04\x00\x00\x00\x00".to_vec(),
            "E_BAD_BODY MPUB invalid message count 0",
        ),
        (
            b"MPUB t\n\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00".to_vec(),
            "E_BAD_MESSAGE MPUB invalid message(0) body size 0",
        ),
        (
            b"MPUB b@d\n".to_vec(),
            "E_BAD_TOPIC E_BAD_TOPIC MPUB topic name \"b@d\" is not valid",
        ),
        (
            b"DPUB t\n".to_vec(),
            "E_INVALID DPUB insufficient number of parameters",
        ),
        (
            b"DPUB t x\n".to_vec(),
            "E_INVALID DPUB could not parse timeout x",
        ),
        (
            b"DPUB t 3600001\n".to_vec(),
            "E_INVALID DPUB timeout 3600001 out of range 0-3600000",
        ),
        (
            b"DPUB b@d 1\n".to_vec(),
            "E_BAD_TOPIC DPUB topic name \"b@d\" is not valid",
        ),
        (format!("PUB {}\n", "x".repeat(65)).into_bytes(), &too_long),
        (
            b"AUTH\n\x00\x00\x00\x01s".to_vec(),
            "E_AUTH_DISABLED AUTH disabled",
        ),
        (b"RDY 1\n".to_vec(), "E_INVALID cannot RDY in current state"),
        (
            b"FIN 0123456789abcdef\n".to_vec(),
            "E_INVALID cannot FIN in current state",
        ),
        (
            b"REQ 0123456789abcdef 0\n".to_vec(),
            "E_INVALID cannot REQ in current state",
        ),
        (
            b"TOUCH 0123456789abcdef\n".to_vec(),
            "E_INVALID cannot TOUCH in current state",
        ),
        (b"CLS\n".to_vec(), "E_INVALID cannot CLS in current state"),
        (
            b"SUB t\n".to_vec(),
            "E_INVALID SUB insufficient number of parameters",
        ),
        (
            b"SUB b@d c\n".to_vec(),
            "E_BAD_TOPIC SUB topic name \"b@d\" is not valid",
        ),
        (
            b"SUB t b@d\n".to_vec(),
            "E_BAD_CHANNEL SUB channel name \"b@d\" is not valid",
        ),
        (b"\n".to_vec(), "E_INVALID invalid command "),
        (b"pub t\n".to_vec(), "E_INVALID invalid command pub"),
    ];
    for (bytes, text) in cases {
        let mut conn = Conn::connect(&nsqd).await;
        conn.send_raw(&bytes).await;
        conn.expect_error(text).await;
        conn.expect_closed().await;
    }
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_commands_and_their_errors() {
    let nsqd = start_default_nsqd().await;
    let mut producer = Conn::connect(&nsqd).await;
    let mut c = consumer(&nsqd, "t", "c", 0).await;
    producer.publish("t", b"a").await;
    c.expect_silence(Duration::from_millis(100)).await; // RDY 0: nothing yet
    c.rdy(1).await;
    let msg = c.expect_message().await;
    assert_eq!((msg.attempts, &msg.body[..]), (1, &b"a"[..]));
    // Non-fatal errors keep the connection.
    c.fin(MessageId(*b"0000000000000000")).await;
    c.expect_error("E_FIN_FAILED FIN 0000000000000000 failed ID not in flight")
        .await;
    c.send_raw(b"REQ 0000000000000000 0\n").await;
    c.expect_error("E_REQ_FAILED REQ 0000000000000000 failed ID not in flight")
        .await;
    c.send_raw(b"TOUCH 0000000000000000\n").await;
    c.expect_error("E_TOUCH_FAILED TOUCH 0000000000000000 failed ID not in flight")
        .await;
    // Another consumer of the channel does not own the message.
    let mut other = consumer(&nsqd, "t", "c", 0).await;
    other.fin(msg.id).await;
    other
        .expect_error(&format!(
            "E_FIN_FAILED FIN {} failed client does not own message",
            msg.id
        ))
        .await;
    c.send(Command::Touch(msg.id)).await;
    c.fin(msg.id).await;
    c.send(Command::Nop).await;
    c.expect_silence(Duration::from_millis(100)).await;
    // Fatal ones close it.
    for (bytes, text) in [
        (
            &b"RDY 2501\n"[..],
            "E_INVALID RDY count 2501 out of range 0-2500",
        ),
        (b"RDY -1\n", "E_INVALID RDY could not parse count -1"),
        (b"FIN short\n", "E_INVALID invalid message ID"),
        (b"FIN\n", "E_INVALID FIN insufficient number of params"),
        (
            b"REQ 0123456789abcdef\n",
            "E_INVALID REQ insufficient number of params",
        ),
        (
            b"REQ 0123456789abcdef x\n",
            "E_INVALID REQ could not parse timeout x",
        ),
        (b"TOUCH\n", "E_INVALID TOUCH insufficient number of params"),
        (b"SUB t c\n", "E_INVALID cannot SUB in current state"),
    ] {
        let mut conn = consumer(&nsqd, "t", "c", 0).await;
        conn.send_raw(bytes).await;
        conn.expect_error(text).await;
        conn.expect_closed().await;
    }
    // CLS: CLOSE_WAIT, RDY is then ignored.
    c.send(Command::Cls).await;
    c.expect_response("CLOSE_WAIT").await;
    c.rdy(5).await;
    producer.publish("t", b"b").await;
    c.expect_silence(Duration::from_millis(150)).await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_requires_heartbeats() {
    let nsqd = start_default_nsqd().await;
    let mut conn = Conn::connect(&nsqd).await;
    conn.send(identify(r#"{"heartbeat_interval":-1}"#)).await;
    conn.expect_response("OK").await;
    conn.send(Command::Sub {
        topic: "t".into(),
        channel: "c".into(),
    })
    .await;
    conn.expect_error("E_INVALID cannot SUB with heartbeats disabled")
        .await;
    conn.expect_closed().await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_disconnect_after_two_missed() {
    let nsqd = start_default_nsqd().await;
    let mut conn = Conn::connect(&nsqd).await;
    conn.send(identify(r#"{"heartbeat_interval":1000}"#)).await;
    conn.expect_response("OK").await;
    let started = Instant::now();
    let frame = conn.read_frame().await.unwrap();
    assert_eq!(&frame.data[..], b"_heartbeat_");
    let first = started.elapsed();
    assert!(
        first >= Duration::from_millis(900) && first < Duration::from_millis(1500),
        "{first:?}"
    );
    // Silent for two intervals: the server hangs up.
    while let Some(f) = conn.read_frame().await {
        assert_eq!(&f.data[..], b"_heartbeat_");
    }
    let closed = started.elapsed();
    assert!(
        closed >= Duration::from_millis(1900) && closed < Duration::from_millis(3000),
        "{closed:?}"
    );

    // A client that answers with NOP stays connected.
    let mut alive = Conn::connect(&nsqd).await;
    alive.send(identify(r#"{"heartbeat_interval":1000}"#)).await;
    alive.expect_response("OK").await;
    for _ in 0..3 {
        let f = alive.read_frame().await.unwrap();
        assert_eq!(&f.data[..], b"_heartbeat_");
        alive.send(Command::Nop).await;
    }
    alive.publish("still", b"here").await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_requeue_with_attempts_and_touch_extends() {
    let nsqd = start_default_nsqd().await;
    let mut c = Conn::connect(&nsqd).await;
    c.send(identify(r#"{"msg_timeout":1000}"#)).await;
    c.expect_response("OK").await;
    c.subscribe("to", "c").await;
    c.rdy(1).await;
    Conn::connect(&nsqd).await.publish("to", b"x").await;
    let first = c.expect_message().await;
    let delivered = Instant::now();
    let again = c.expect_message().await;
    let waited = delivered.elapsed();
    assert_eq!((again.id, again.attempts), (first.id, 2));
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_millis(1600),
        "{waited:?}"
    );
    // TOUCH restarts the timer.
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.send(Command::Touch(again.id)).await;
    let touched = Instant::now();
    let third = c.expect_message().await;
    assert_eq!(third.attempts, 3);
    assert!(
        touched.elapsed() >= Duration::from_millis(900),
        "TOUCH extended the deadline"
    );
    c.fin(third.id).await;
    eventually("timeout_count 2", || async {
        let s = stats(&nsqd).await;
        let ch = &s.topics.unwrap()[0].channels[0];
        ch.timeout_count == 2 && ch.in_flight_count == 0
    })
    .await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn req_delay_and_dpub_are_not_early() {
    let nsqd = start_default_nsqd().await;
    let mut producer = Conn::connect(&nsqd).await;
    let mut c = consumer(&nsqd, "d", "c", 10).await;
    producer.publish("d", b"now").await;
    let msg = c.expect_message().await;
    c.send(Command::Req {
        id: msg.id,
        delay: Duration::from_millis(400),
    })
    .await;
    let requeued = Instant::now();
    let again = c.expect_message().await;
    assert_eq!(again.attempts, 2);
    assert!(
        requeued.elapsed() >= Duration::from_millis(400),
        "REQ delay honoured: {:?}",
        requeued.elapsed()
    );
    c.fin(again.id).await;

    producer
        .send(Command::Dpub {
            topic: "d".into(),
            delay: Duration::from_millis(500),
            body: Bytes::from("later"),
        })
        .await;
    producer.expect_response("OK").await;
    let published = Instant::now();
    eventually("deferred_count 1", || async {
        stats(&nsqd).await.topics.unwrap()[0].channels[0].deferred_count == 1
    })
    .await;
    let later = c.expect_message().await;
    assert_eq!(&later.body[..], b"later");
    assert!(
        published.elapsed() >= Duration::from_millis(500),
        "{:?}",
        published.elapsed()
    );
    // REQ 0 puts it straight back; over --max-req-timeout is clamped, not refused.
    c.send(Command::Req {
        id: later.id,
        delay: Duration::ZERO,
    })
    .await;
    let back = c.expect_message().await;
    assert_eq!(back.attempts, 2);
    c.send_raw(format!("REQ {} 99999999999\n", back.id).as_bytes())
        .await;
    c.expect_silence(Duration::from_millis(100)).await;
    let s = stats(&nsqd).await;
    let ch = &s.topics.unwrap()[0].channels[0];
    assert_eq!((ch.requeue_count, ch.deferred_count), (3, 1));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_channels_and_competing_consumers() {
    let nsqd = start_default_nsqd().await;
    let mut a1 = consumer(&nsqd, "f", "a", 100).await;
    let mut a2 = consumer(&nsqd, "f", "a", 100).await;
    let mut b = consumer(&nsqd, "f", "b", 200).await;
    let mut producer = Conn::connect(&nsqd).await;
    let bodies: Vec<Bytes> = (0..200).map(|i| Bytes::from(format!("m{i}"))).collect();
    producer
        .send(Command::Mpub {
            topic: "f".into(),
            bodies: bodies.clone(),
        })
        .await;
    producer.expect_response("OK").await;

    // Channel b gets every message; channel a's two consumers share them.
    let mut seen_b = HashSet::new();
    for _ in 0..200 {
        let m = b.expect_message().await;
        assert!(seen_b.insert(m.body.clone()));
        b.fin(m.id).await;
    }
    let mut seen_a = HashSet::new();
    let (mut n1, mut n2) = (0, 0);
    while seen_a.len() < 200 {
        tokio::select! {
            m = a1.expect_message() => { n1 += 1; assert!(seen_a.insert(m.body.clone())); a1.fin(m.id).await; }
            m = a2.expect_message() => { n2 += 1; assert!(seen_a.insert(m.body.clone())); a2.fin(m.id).await; }
        }
    }
    assert_eq!(seen_a, seen_b);
    assert!(
        n1 > 0 && n2 > 0,
        "both consumers of channel a got work ({n1}, {n2})"
    );
    a1.expect_silence(Duration::from_millis(100)).await;
    // The same message has the same ID in every channel.
    producer.publish("f", b"same").await;
    let (x, y) = (
        b.expect_message().await,
        tokio::select! { m = a1.expect_message() => m, m = a2.expect_message() => m },
    );
    assert_eq!(x.id, y.id);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdy_caps_in_flight() {
    let nsqd = start_default_nsqd().await;
    let mut producer = Conn::connect(&nsqd).await;
    let bodies: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("r{i}"))).collect();
    producer
        .send(Command::Mpub {
            topic: "r".into(),
            bodies,
        })
        .await;
    producer.expect_response("OK").await;
    let mut c = consumer(&nsqd, "r", "c", 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(c.expect_message().await);
    }
    c.expect_silence(Duration::from_millis(200)).await;
    // Each FIN frees one slot.
    c.fin(held.remove(0).id).await;
    held.push(c.expect_message().await);
    c.expect_silence(Duration::from_millis(100)).await;
    // RDY 0 stops delivery without touching what is in flight.
    c.rdy(0).await;
    for m in held.drain(..) {
        c.fin(m.id).await;
    }
    c.expect_silence(Duration::from_millis(150)).await;
    c.rdy(100).await;
    for _ in 0..16 {
        let m = c.expect_message().await;
        c.fin(m.id).await;
    }
    let s = stats(&nsqd).await;
    let client = &s.topics.unwrap()[0].channels[0].clients.clone().unwrap()[0];
    assert_eq!(
        (
            client.ready_count,
            client.finish_count,
            client.message_count
        ),
        (100, 20, 20)
    );
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_rate_delivers_a_fraction() {
    let nsqd = start_default_nsqd().await;
    let mut c = Conn::connect(&nsqd).await;
    c.send(identify(r#"{"sample_rate":20}"#)).await;
    c.expect_response("OK").await;
    c.subscribe("s", "c").await;
    c.rdy(2500).await;
    let mut producer = Conn::connect(&nsqd).await;
    let bodies: Vec<Bytes> = (0..2000).map(|i| Bytes::from(format!("s{i}"))).collect();
    producer
        .send(Command::Mpub {
            topic: "s".into(),
            bodies,
        })
        .await;
    producer.expect_response("OK").await;
    let mut got = 0;
    while let Ok(Some(frame)) = c.read_frame_within(Duration::from_millis(300)).await {
        if frame.frame_type == FrameType::Message {
            got += 1;
        }
    }
    // About 21% (upstream keeps a message when rand(0..100) <= rate).
    assert!((250..=600).contains(&got), "sampled {got} of 2000");
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_channel_and_topic_vanish_with_their_last_user() {
    let nsqd = start_default_nsqd().await;
    let c = consumer(&nsqd, "e#ephemeral", "c#ephemeral", 1).await;
    let c2 = consumer(&nsqd, "durable", "tail#ephemeral", 1).await;
    assert_eq!(stats(&nsqd).await.topics.unwrap().len(), 2);
    drop(c);
    drop(c2);
    eventually("ephemeral topic and channel deleted", || async {
        let topics = stats(&nsqd).await.topics.unwrap();
        topics.len() == 1 && topics[0].topic_name == "durable" && topics[0].channels.is_empty()
    })
    .await;
    // Overflow past --mem-queue-size is dropped on ephemeral channels.
    let mut opts = test_options();
    opts.mem_queue_size = 10;
    let small = start_nsqd(opts).await;
    let _keep = consumer(&small, "o", "x#ephemeral", 0).await;
    let bodies: Vec<Bytes> = (0..25).map(|i| Bytes::from(format!("o{i}"))).collect();
    let mut producer = Conn::connect(&small).await;
    producer
        .send(Command::Mpub {
            topic: "o".into(),
            bodies,
        })
        .await;
    producer.expect_response("OK").await;
    let s = stats(&small).await;
    let ch = &s.topics.unwrap()[0].channels[0];
    assert_eq!((ch.depth, ch.message_count), (10, 25));
    small.shutdown().await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_requeues_in_flight_messages() {
    let nsqd = start_default_nsqd().await;
    Conn::connect(&nsqd).await.publish("dc", b"orphan").await;
    let mut first = consumer(&nsqd, "dc", "c", 1).await;
    let m = first.expect_message().await;
    drop(first);
    let mut second = consumer(&nsqd, "dc", "c", 1).await;
    let again = second.expect_message().await;
    assert_eq!((again.id, again.attempts), (m.id, 2));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_channel_consumers() {
    let mut opts = test_options();
    opts.max_channel_consumers = 1;
    let nsqd = start_nsqd(opts).await;
    let _one = consumer(&nsqd, "m", "c", 0).await;
    let mut two = Conn::connect(&nsqd).await;
    two.send(Command::Sub {
        topic: "m".into(),
        channel: "c".into(),
    })
    .await;
    two.expect_error("E_SUB_FAILED SUB failed consumers for m:c exceeds limit of 1")
        .await;
    two.expect_closed().await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_latency_percentiles() {
    let mut opts = test_options();
    opts.e2e_processing_latency_percentiles = vec![0.5, 0.99];
    let nsqd = start_nsqd(opts).await;
    let mut c = consumer(&nsqd, "lat", "c", 10).await;
    Conn::connect(&nsqd).await.publish("lat", b"x").await;
    let m = c.expect_message().await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.fin(m.id).await;
    eventually("latency recorded", || async {
        let s = stats(&nsqd).await;
        let e2e = s.topics.unwrap()[0].channels[0]
            .e2e_processing_latency
            .clone();
        e2e.count == 1
            && e2e
                .percentiles
                .is_some_and(|p| p.len() == 2 && p[0].value >= 30e6)
    })
    .await;
    nsqd.shutdown().await;
}

/// Garbage, truncated frames, huge sizes and silence on some connections do not
/// disturb a well-behaved producer and consumer on others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_leaves_others_unaffected() {
    let nsqd = start_default_nsqd().await;
    let mut good_consumer = consumer(&nsqd, "h", "c", 100).await;
    let mut good_producer = Conn::connect(&nsqd).await;
    let mut idle = Vec::new();
    let garbage: Vec<&[u8]> = vec![
        b"\x00\x01\x02\x03\xff\xfe",
        b"  V2\xff\xff\xff\xff\xff\n",
        b"  V2PUB t\n\x7f\xff\xff\xff",
        b"  V2MPUB t\n\x00\x00\x10\x00\x7f\xff\xff\xff",
        b"  V2IDENTIFY\n\x00\x00\x00\x05{\"a\":",
        b"  V2PUB t\n\x00\x00\x00\x10abc",
    ];
    for bytes in garbage {
        let mut conn = Conn::connect_raw(&nsqd).await;
        conn.send_raw(bytes).await;
        idle.push(conn);
    }
    let mut long = Conn::connect(&nsqd).await;
    long.send_raw(&vec![b'A'; 20_000]).await;
    long.expect_error("E_INVALID command line longer than 16384 bytes")
        .await;
    long.expect_closed().await;
    for i in 0..50 {
        good_producer.publish("h", format!("g{i}").as_bytes()).await;
        let m = good_consumer.expect_message().await;
        assert_eq!(m.body, Bytes::from(format!("g{i}")));
        good_consumer.fin(m.id).await;
    }
    nsqd.shutdown().await;
}
