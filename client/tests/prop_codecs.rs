//! Property tests of every decoder a peer can feed: any bytes give a value or
//! an error, never a panic, and never an allocation sized by a length field
//! before the bytes behind it have arrived. Valid encodings round-trip.

use bytes::{Bytes, BytesMut};
use nsq::protocol::compress::{Decoder, Encoder};
use nsq::protocol::message::encode_message_frame;
use nsq::protocol::{
    decode_frame, encode_frame, FrameError, FrameType, IdentifyRequest, MessageId, WireMessage,
};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Bytes derived from a valid encoding: cut short, with some bytes
/// overwritten, and with a 4-byte big-endian length somewhere set huge.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len().max(1);
    (
        proptest::option::of(0..=valid.len()),
        proptest::collection::vec((0..len, any::<u8>()), 0..4),
        proptest::option::of((
            0..len,
            prop_oneof![Just(u32::MAX), Just(0x7fff_ffff), any::<u32>()],
        )),
    )
        .prop_map(move |(cut, flips, huge)| {
            let mut bytes = valid.clone();
            for (at, byte) in flips {
                if at < bytes.len() {
                    bytes[at] = byte;
                }
            }
            if let Some((at, size)) = huge {
                let at = at.min(bytes.len().saturating_sub(4));
                if bytes.len() >= 4 {
                    bytes[at..at + 4].copy_from_slice(&size.to_be_bytes());
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            bytes
        })
}

/// What a buffer may have grown to while waiting for `received` bytes: at
/// most double, plus one read's worth. Never the claimed size.
fn bounded_growth(buf: &BytesMut, received: usize) -> bool {
    buf.capacity() <= 2 * received + 16 * 1024 + 64
}

fn frame_type() -> impl Strategy<Value = FrameType> {
    prop_oneof![
        Just(FrameType::Response),
        Just(FrameType::Error),
        Just(FrameType::Message)
    ]
}

fn frames() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        (frame_type(), proptest::collection::vec(any::<u8>(), 0..64)),
        1..4,
    )
    .prop_map(|frames| {
        let mut buf = BytesMut::new();
        for (t, data) in frames {
            encode_frame(&mut buf, t, &data);
        }
        buf.to_vec()
    })
}

/// Decodes every complete frame; returns what was decoded and the error, if any.
fn drain_frames(buf: &mut BytesMut, max: usize) -> Result<usize, FrameError> {
    let mut n = 0;
    while let Some(frame) = decode_frame(buf, max)? {
        assert!(frame.data.len() + 4 <= max);
        n += 1;
    }
    Ok(n)
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn frames_never_panic_or_preallocate(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            frames().prop_flat_map(mutated),
        ],
        max in prop_oneof![Just(usize::MAX), 4usize..1 << 20],
    ) {
        let received = bytes.len();
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = drain_frames(&mut buf, max);
        prop_assert!(bounded_growth(&buf, received), "capacity {} after {received} bytes", buf.capacity());
    }

    #[test]
    fn frames_round_trip_whatever_the_chunking(
        sent in proptest::collection::vec((frame_type(), proptest::collection::vec(any::<u8>(), 0..300)), 1..6),
        chunk in 1usize..64,
    ) {
        let mut wire = BytesMut::new();
        for (t, data) in &sent {
            encode_frame(&mut wire, *t, data);
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(frame) = decode_frame(&mut buf, 1024).unwrap() {
                got.push((frame.frame_type, frame.data.to_vec()));
            }
        }
        prop_assert_eq!(got, sent);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn messages_round_trip(
        timestamp in any::<i64>(),
        attempts in any::<u16>(),
        id in any::<u64>(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let id = MessageId::from_u64(id);
        let mut wire = BytesMut::new();
        encode_message_frame(&mut wire, &id, timestamp, attempts, &body);
        let frame = decode_frame(&mut wire, 1 << 20).unwrap().unwrap();
        prop_assert_eq!(frame.frame_type, FrameType::Message);
        let msg = WireMessage::decode(frame.data).unwrap();
        prop_assert_eq!(
            (msg.id, msg.timestamp, msg.attempts, &msg.body[..]),
            (id, timestamp, attempts, &body[..])
        );
        prop_assert_eq!(msg.id.to_u64(), id.to_u64());
    }

    #[test]
    fn message_data_of_any_shape_decodes_or_errs(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        match WireMessage::decode(Bytes::from(data.clone())) {
            Ok(msg) => prop_assert_eq!(msg.body.len() + 26, data.len()),
            Err(short) => prop_assert!(short.0 < 26),
        }
        let _ = MessageId::from_slice(&data).map(|id| id.to_u64());
    }

    #[test]
    fn identify_bodies_of_any_shape_parse_or_err(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            identify_object().prop_map(|v| v.to_string().into_bytes()).prop_flat_map(mutated),
        ],
    ) {
        let _ = IdentifyRequest::from_json(&body);
    }

    #[test]
    fn identify_requests_round_trip(
        req in (
            (".{0,12}", ".{0,12}", ".{0,12}", any::<bool>(), any::<i64>(), any::<i64>(), any::<i64>()),
            (any::<bool>(), any::<bool>(), any::<bool>(), any::<i64>(), any::<i32>(), any::<i64>()),
        ).prop_map(|((client_id, hostname, user_agent, feature_negotiation, heartbeat_interval, output_buffer_size, output_buffer_timeout),
                     (tls_v1, snappy, deflate, deflate_level, sample_rate, msg_timeout))| IdentifyRequest {
            client_id, hostname, user_agent, feature_negotiation, heartbeat_interval,
            output_buffer_size, output_buffer_timeout, tls_v1, snappy, deflate, deflate_level,
            sample_rate: sample_rate as i64, msg_timeout,
        }),
    ) {
        let json = serde_json::to_vec(&req).unwrap();
        prop_assert_eq!(IdentifyRequest::from_json(&json).unwrap(), req);
    }
}

/// JSON objects with IDENTIFY's keys (in any letter case) and values of any type.
fn identify_object() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("client_id"),
        Just("HOSTNAME"),
        Just("heartbeat_interval"),
        Just("sample_rate"),
        Just("Snappy"),
        Just("msg_timeout"),
        Just("unknown"),
    ];
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
        Just(serde_json::json!([1, {"a": null}])),
    ];
    proptest::collection::vec((key, value), 0..6).prop_map(|pairs| {
        serde_json::Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    })
}

fn snappy_or_deflate() -> impl Strategy<Value = bool> {
    any::<bool>()
}

fn codec(snappy: bool) -> (Encoder, Decoder) {
    if snappy {
        (Encoder::snappy(), Decoder::snappy())
    } else {
        (Encoder::deflate(6), Decoder::deflate())
    }
}

/// Feeds `wire` in `chunk`-sized pieces, decoding with an output limit of
/// `step` bytes per call as nsqd does; returns the plain bytes or the error.
fn decode_stream(
    decoder: &mut Decoder,
    wire: &[u8],
    chunk: usize,
    step: usize,
) -> Result<Vec<u8>, String> {
    let mut src = BytesMut::new();
    let mut plain = Vec::new();
    for piece in wire.chunks(chunk.max(1)) {
        src.extend_from_slice(piece);
        loop {
            let mut out = BytesMut::new();
            decoder
                .decode(&mut src, &mut out, step)
                .map_err(|e| e.to_string())?;
            // One snappy chunk (64 KiB) or one zlib step may pass the limit.
            assert!(
                out.len() <= step + 64 * 1024,
                "{} plain bytes for a limit of {step}",
                out.len()
            );
            if out.is_empty() {
                break;
            }
            plain.extend_from_slice(&out);
        }
        assert!(src.capacity() <= 2 * src.len().max(80 * 1024) + 64 * 1024);
    }
    Ok(plain)
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn compressed_streams_round_trip(
        snappy in snappy_or_deflate(),
        writes in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..2000),
                (any::<u8>(), 0usize..70_000).prop_map(|(b, n)| vec![b; n]),
            ],
            1..4,
        ),
        chunk in 1usize..5000,
        step in 1024usize..100_000,
    ) {
        let (mut enc, mut dec) = codec(snappy);
        let mut wire = BytesMut::new();
        for w in &writes {
            enc.encode(w, &mut wire).unwrap();
        }
        let plain = decode_stream(&mut dec, &wire, chunk, step).unwrap();
        prop_assert_eq!(plain, writes.concat());
    }

    #[test]
    fn corrupt_compressed_streams_are_errors_not_panics(
        snappy in snappy_or_deflate(),
        wire in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            (snappy_or_deflate(), proptest::collection::vec(any::<u8>(), 0..3000)).prop_flat_map(|(snappy, plain)| {
                let (mut enc, _) = codec(snappy);
                let mut wire = BytesMut::new();
                enc.encode(&plain, &mut wire).unwrap();
                mutated(wire.to_vec())
            }),
        ],
        chunk in 1usize..300,
    ) {
        let (_, mut dec) = codec(snappy);
        let _ = decode_stream(&mut dec, &wire, chunk, 16 * 1024);
    }
}

#[test]
fn a_tiny_deflate_bomb_decodes_a_step_at_a_time() {
    let (mut enc, mut dec) = codec(false);
    let mut wire = BytesMut::new();
    enc.encode(&vec![0u8; 8 << 20], &mut wire).unwrap();
    assert!(wire.len() < 64 * 1024, "8 MiB of zeros compress well");
    let mut src = BytesMut::from(&wire[..]);
    let mut out = BytesMut::new();
    dec.decode(&mut src, &mut out, 256 * 1024).unwrap();
    assert!(out.len() <= 256 * 1024 + 64 * 1024, "{}", out.len());
}

#[test]
fn a_huge_frame_size_with_no_limit_reserves_nothing_like_it() {
    let mut buf = BytesMut::from(&b"\xff\xff\xff\xff\x00\x00\x00\x00ab"[..]);
    assert_eq!(decode_frame(&mut buf, usize::MAX), Ok(None));
    assert!(buf.capacity() < 1 << 20, "reserved {}", buf.capacity());
}
