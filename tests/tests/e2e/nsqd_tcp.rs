//! nsqd's TCP protocol V2 over real sockets, the connection's start: the
//! replay of upstream v1.3.0's captured exchanges, IDENTIFY's negotiation, and
//! snappy and deflate streams. Commands and their errors are in
//! `nsqd_tcp_commands.rs`, delivery and its timing in `nsqd_tcp_delivery.rs`.

use bytes::{Bytes, BytesMut};
use nsq::protocol::compress::{Decoder, Encoder};
use nsq::protocol::{decode_frame, Command, FrameType, IdentifyResponse, WireMessage};
use nsq_e2e::*;
use std::time::Duration;
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
