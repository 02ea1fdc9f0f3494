//! The codec against hand-written frames and generated ones: every frame
//! decodes to what was encoded, damaged ones are errors, and no input panics
//! or allocates by a count it claims.

use super::*;
use proptest::prelude::*;

const UID: &str = "0123456789abcdef0123456789abcdef";

fn peer_bytes(frame: &ToPeer) -> Bytes {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.freeze()
}

fn origin_bytes(frame: &ToOrigin) -> Bytes {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.freeze()
}

fn open(name: &str) -> Bytes {
    peer_bytes(&ToPeer::Open {
        tid: 1,
        name: name.into(),
        from: 2,
    })
}

fn channel(name: &str) -> ToPeer {
    ToPeer::Channel {
        tid: 7,
        cid: 8,
        name: name.into(),
        paused: true,
        max_attempts: 5,
        msg_ttl_ms: 60_000,
        snapshot: Bytes::from_static(b"snapshot"),
    }
}

fn hello(uid: &str, topics: &[&str]) -> Bytes {
    origin_bytes(&ToOrigin::Hello {
        uid: uid.into(),
        max_msg_size: 1 << 20,
        topics: topics.iter().map(|t| (t.to_string(), 3)).collect(),
    })
}

#[test]
fn every_frame_round_trips() {
    let to_peer = [
        ToPeer::Open {
            tid: 1,
            name: "orders#ephemeral".into(),
            from: 42,
        },
        ToPeer::Msgs {
            tid: 1,
            end: 50,
            records: Bytes::from_static(b"records"),
        },
        ToPeer::Msgs {
            tid: 1,
            end: 50,
            records: Bytes::new(),
        },
        channel("billing"),
        ToPeer::Deltas {
            tid: 1,
            cid: 2,
            records: Bytes::from_static(b"deltas"),
        },
        ToPeer::TopicState {
            tid: 1,
            backlog_floor: 9,
            released_end: None,
        },
        ToPeer::TopicState {
            tid: 1,
            backlog_floor: 9,
            released_end: Some(12),
        },
        ToPeer::DropChannel { tid: 1, cid: 2 },
        ToPeer::DropTopic { tid: u32::MAX },
        ToPeer::SyncDone,
        ToPeer::Tick { n: 3, unix_ns: -1 },
        ToPeer::Ping { n: u64::MAX },
    ];
    for frame in to_peer {
        assert_eq!(ToPeer::decode(peer_bytes(&frame)), Ok(frame));
    }
    let to_origin = [
        ToOrigin::Hello {
            uid: UID.into(),
            max_msg_size: 1 << 20,
            topics: vec![("a".into(), 0), ("orders".into(), 99)],
        },
        ToOrigin::Hello {
            uid: UID.into(),
            max_msg_size: 0,
            topics: vec![],
        },
        ToOrigin::Stored { tid: 4, end: 5 },
        ToOrigin::Applied { n: 6 },
        ToOrigin::Pong { n: 7 },
    ];
    for frame in to_origin {
        assert_eq!(ToOrigin::decode(origin_bytes(&frame)), Ok(frame));
    }
}

#[test]
fn rest_fields_are_slices_of_the_input() {
    let data = peer_bytes(&ToPeer::Msgs {
        tid: 1,
        end: 2,
        records: Bytes::from_static(b"records"),
    });
    let Ok(ToPeer::Msgs { records, .. }) = ToPeer::decode(data.clone()) else {
        panic!("not msgs");
    };
    assert_eq!(
        records.as_ptr(),
        data[data.len() - records.len()..].as_ptr()
    );
}

#[test]
fn rejects_empty_unknown_and_misdirected_frames() {
    assert_eq!(ToPeer::decode(Bytes::new()), Err(WireError::Empty));
    assert_eq!(ToOrigin::decode(Bytes::new()), Err(WireError::Empty));
    assert_eq!(
        ToPeer::decode(Bytes::from_static(b"Z")),
        Err(WireError::UnknownKind(b'Z'))
    );
    assert_eq!(
        ToPeer::decode(hello(UID, &[])),
        Err(WireError::UnknownKind(b'H'))
    );
    assert_eq!(
        ToOrigin::decode(open("t")),
        Err(WireError::UnknownKind(b'T'))
    );
}

#[test]
fn rejects_bad_names() {
    let long = "a".repeat(65);
    for name in ["", long.as_str(), "bad!name", "é"] {
        assert_eq!(
            ToPeer::decode(open(name)),
            Err(WireError::BadName(b'T')),
            "{name}"
        );
        assert_eq!(
            ToPeer::decode(peer_bytes(&channel(name))),
            Err(WireError::BadName(b'C')),
            "{name}"
        );
        assert_eq!(
            ToOrigin::decode(hello(UID, &["ok", name])),
            Err(WireError::BadName(b'H')),
            "{name}"
        );
    }
    let mut not_utf8 = open("ab").to_vec();
    not_utf8[6] = 0xff;
    assert_eq!(
        ToPeer::decode(not_utf8.into()),
        Err(WireError::BadName(b'T'))
    );
}

#[test]
fn rejects_flags_other_than_0_and_1() {
    // `[C][tid][cid][len = 1][name][paused]`, `[P][tid][backlog_floor][paused]`.
    let mut data = peer_bytes(&channel("c")).to_vec();
    data[11] = 2;
    assert_eq!(ToPeer::decode(data.into()), Err(WireError::BadFlag(b'C')));
    let mut data = peer_bytes(&ToPeer::TopicState {
        tid: 1,
        backlog_floor: 2,
        released_end: Some(3),
    })
    .to_vec();
    data[13] = 0x80;
    assert_eq!(ToPeer::decode(data.into()), Err(WireError::BadFlag(b'P')));
}

#[test]
fn rejects_bad_uids() {
    let upper = UID.to_uppercase();
    let long = format!("{UID}0");
    for uid in [
        &UID[1..],
        long.as_str(),
        upper.as_str(),
        "",
        "0123456789abcdef0123456789abcdeg",
    ] {
        assert_eq!(
            ToOrigin::decode(hello(uid, &[])),
            Err(WireError::BadUid),
            "{uid}"
        );
    }
}

#[test]
fn rejects_trailing_bytes() {
    let cases = [
        (open("t"), b'T'),
        (peer_bytes(&ToPeer::SyncDone), b'S'),
        (peer_bytes(&ToPeer::Ping { n: 1 }), b'I'),
    ];
    for (data, kind) in cases {
        let data = [&data[..], b"x"].concat();
        assert_eq!(ToPeer::decode(data.into()), Err(WireError::Trailing(kind)));
    }
    let data = [&hello(UID, &["t"])[..], b"x"].concat();
    assert_eq!(
        ToOrigin::decode(data.into()),
        Err(WireError::Trailing(b'H'))
    );
}

#[test]
fn hello_claiming_billions_of_topics_fails_fast() {
    let mut data = BytesMut::new();
    data.put_u8(b'H');
    put_name(&mut data, UID);
    data.put_u64(1 << 20);
    data.put_u32(4_000_000_000);
    data.put_slice(&[1, b'a', 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ToOrigin::decode(data.freeze()), Err(WireError::Short(b'H')));
}

#[test]
fn errors_name_the_kind() {
    assert_eq!(
        WireError::Short(b'T').to_string(),
        "replication frame 'T' is too short"
    );
    assert_eq!(
        WireError::UnknownKind(0).to_string(),
        "unknown replication frame kind 0x00"
    );
}

#[test]
fn max_frame_leaves_room_for_the_largest_message() {
    assert_eq!(max_frame(0), 4 << 20);
    assert_eq!(max_frame(1 << 20), 4 << 20);
    assert_eq!(max_frame(10 << 20), (10 << 20) + (64 << 10));
    assert_eq!(max_frame(u64::MAX), usize::MAX);
}

#[test]
fn repl_hello_defaults_the_retired_fence() {
    // The version is the REPL command's argument; a change is a protocol change.
    assert_eq!(format!("REPL {REPL_VERSION}"), "REPL 1");
    let json = r#"{"uid":"u","address":"h:4150","hostname":"h","version":"1.3.0"}"#;
    let hello: ReplHello = serde_json::from_str(json).unwrap();
    assert_eq!(hello.retired_fence, 0);
    let again: ReplHello = serde_json::from_str(&serde_json::to_string(&hello).unwrap()).unwrap();
    assert_eq!(again, hello);
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9._-]{1,64}", "[a-zA-Z0-9._-]{1,54}#ephemeral"]
}

fn tail() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

/// Frames whose every field has a fixed place: all but `M`, `C` and `D`.
fn fixed_to_peer() -> impl Strategy<Value = ToPeer> {
    prop_oneof![
        (any::<u32>(), name(), any::<u64>()).prop_map(|(tid, name, from)| ToPeer::Open {
            tid,
            name,
            from
        }),
        (any::<u32>(), any::<u64>(), any::<Option<u64>>()).prop_map(
            |(tid, backlog_floor, released_end)| {
                ToPeer::TopicState {
                    tid,
                    backlog_floor,
                    released_end,
                }
            }
        ),
        (any::<u32>(), any::<u32>()).prop_map(|(tid, cid)| ToPeer::DropChannel { tid, cid }),
        any::<u32>().prop_map(|tid| ToPeer::DropTopic { tid }),
        Just(ToPeer::SyncDone),
        (any::<u64>(), any::<i64>()).prop_map(|(n, unix_ns)| ToPeer::Tick { n, unix_ns }),
        any::<u64>().prop_map(|n| ToPeer::Ping { n }),
    ]
}

fn to_peer() -> impl Strategy<Value = ToPeer> {
    prop_oneof![
        fixed_to_peer(),
        (any::<u32>(), any::<u64>(), tail()).prop_map(|(tid, end, records)| ToPeer::Msgs {
            tid,
            end,
            records
        }),
        (
            any::<(u32, u32)>(),
            name(),
            any::<(bool, u16, u64)>(),
            tail()
        )
            .prop_map(
                |((tid, cid), name, (paused, max_attempts, msg_ttl_ms), snapshot)| {
                    ToPeer::Channel {
                        tid,
                        cid,
                        name,
                        paused,
                        max_attempts,
                        msg_ttl_ms,
                        snapshot,
                    }
                }
            ),
        (any::<u32>(), any::<u32>(), tail()).prop_map(|(tid, cid, records)| ToPeer::Deltas {
            tid,
            cid,
            records
        }),
    ]
}

fn to_origin() -> impl Strategy<Value = ToOrigin> {
    prop_oneof![
        (
            "[0-9a-f]{32}",
            any::<u64>(),
            proptest::collection::vec((name(), any::<u64>()), 0..8)
        )
            .prop_map(|(uid, max_msg_size, topics)| ToOrigin::Hello {
                uid,
                max_msg_size,
                topics,
            }),
        (any::<u32>(), any::<u64>()).prop_map(|(tid, end)| ToOrigin::Stored { tid, end }),
        any::<u64>().prop_map(|n| ToOrigin::Applied { n }),
        any::<u64>().prop_map(|n| ToOrigin::Pong { n }),
    ]
}

/// Mostly known kinds, so that the bytes reach the field parsers.
fn kind() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => proptest::sample::select(b"TMCDPXYSKIHWAO".to_vec()),
        1 => any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_frames_round_trip(peer in to_peer(), origin in to_origin()) {
        prop_assert_eq!(ToPeer::decode(peer_bytes(&peer)), Ok(peer));
        prop_assert_eq!(ToOrigin::decode(origin_bytes(&origin)), Ok(origin));
    }

    #[test]
    fn any_bytes_decode_without_panic(kind in kind(), rest in proptest::collection::vec(any::<u8>(), 0..160)) {
        let data = Bytes::from([&[kind][..], &rest].concat());
        let _ = ToPeer::decode(data.clone());
        let _ = ToOrigin::decode(data);
    }

    #[test]
    fn prefixes_of_fixed_frames_are_short(peer in fixed_to_peer(), origin in to_origin()) {
        let peer = peer_bytes(&peer);
        prop_assert_eq!(prefix_errors(&peer, ToPeer::decode), expected_prefix_errors(&peer));
        let origin = origin_bytes(&origin);
        prop_assert_eq!(prefix_errors(&origin, ToOrigin::decode), expected_prefix_errors(&origin));
    }
}

/// The errors of decoding each strict prefix of `data` (none for a success).
fn prefix_errors<T>(data: &Bytes, decode: fn(Bytes) -> Result<T, WireError>) -> Vec<WireError> {
    (0..data.len())
        .filter_map(|len| decode(data.slice(..len)).err())
        .collect()
}

fn expected_prefix_errors(data: &Bytes) -> Vec<WireError> {
    let short = (1..data.len()).map(|_| WireError::Short(data[0]));
    std::iter::once(WireError::Empty).chain(short).collect()
}
