//! Property tests of what the daemons parse from peers: lookupd's answers
//! to nsqd (protocol V1) and HTTP requests (paths, queries, bodies). Any
//! input gives a value or an answer, never a panic or a server error, and
//! never an allocation sized by a length field before its bytes arrive.

use bytes::{Bytes, BytesMut};
use nsq_daemon::http_api::{read_limited, resolve, Params, Route, GET, GET_PUT, POST};
use nsq_daemon::lookup_protocol::{decode_response, encode_response, PeerIdentity};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Size-prefixed answers whose sizes claim anything (huge ones included)
/// over whatever bytes follow, and answers cut short.
fn answers_of_any_claimed_size() -> impl Strategy<Value = Vec<u8>> {
    let size = prop_oneof![Just(u32::MAX), Just(0x7fff_ffff), 0u32..64, any::<u32>()];
    let answer = (size, proptest::collection::vec(any::<u8>(), 0..40));
    let cut = proptest::option::of(0usize..200);
    (proptest::collection::vec(answer, 0..4), cut).prop_map(|(answers, cut)| {
        let mut bytes: Vec<u8> = answers
            .into_iter()
            .flat_map(|(size, data)| size.to_be_bytes().into_iter().chain(data))
            .collect();
        bytes.truncate(cut.unwrap_or(usize::MAX));
        bytes
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn lookup_answers_never_panic_or_preallocate(
        bytes in answers_of_any_claimed_size(),
        max in prop_oneof![Just(usize::MAX), 0usize..64],
    ) {
        let received = bytes.len();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(answer)) = decode_response(&mut buf, max) {
            prop_assert!(answer.len() <= max);
        }
        // Never the claimed size: at most double what arrived, plus one read.
        prop_assert!(buf.capacity() <= 2 * received + 16 * 1024 + 64);
    }

    #[test]
    fn lookup_answers_round_trip(answers in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..5)) {
        let mut buf = BytesMut::new();
        for a in &answers {
            encode_response(&mut buf, a);
        }
        let mut got = Vec::new();
        while let Some(a) = decode_response(&mut buf, 100).unwrap() {
            got.push(a.to_vec());
        }
        prop_assert_eq!(got, answers);
    }

    #[test]
    fn peer_identity_json_round_trips(
        broadcast_address in ".{0,20}",
        hostname in ".{0,20}",
        tcp_port in any::<u16>(),
        http_port in any::<u16>(),
        version in "[0-9.]{0,8}",
    ) {
        let identity = PeerIdentity { broadcast_address, hostname, tcp_port, http_port, version };
        let json = serde_json::to_vec(&identity).unwrap();
        prop_assert_eq!(serde_json::from_slice::<PeerIdentity>(&json).unwrap(), identity);
    }
}

const ROUTES: &[Route] = &[
    ("/ping", GET),
    ("/pub", POST),
    ("/topic/create", POST),
    ("/config/:opt", GET_PUT),
    ("/api/topics/:topic/:channel", GET),
];

fn method() -> impl Strategy<Value = axum::http::Method> {
    use axum::http::Method;
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
        "[A-Z]{1,7}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

/// Paths built from route pieces, escapes (good and bad), dots and slashes.
fn path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("ping"),
        Just("pub"),
        Just("PUB"),
        Just("topic"),
        Just("create"),
        Just("config"),
        Just("api"),
        Just("topics"),
        Just(""),
        Just("."),
        Just(".."),
        Just("%2F"),
        Just("%zz"),
        Just("%"),
        Just("%e2%82"),
        Just("é"),
        Just("a b"),
    ];
    prop_oneof![
        proptest::collection::vec(piece, 0..6).prop_map(|p| format!("/{}", p.join("/"))),
        ".{0,40}",
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn routing_answers_every_request(method in method(), path in path(), query in ".{0,20}") {
        match resolve(ROUTES, &method, &path, &query) {
            Ok(matched) => prop_assert!(ROUTES.iter().any(|(p, _)| *p == matched.pattern)),
            Err(response) => prop_assert!(!response.status().is_server_error()),
        }
    }

    #[test]
    fn any_query_parses_or_is_refused(query in prop_oneof![
        ".{0,60}",
        proptest::collection::vec(prop_oneof![Just("="), Just("&"), Just("%"), Just("%4"), Just("%41"), Just("+"), Just(";"), Just("k"), Just("é")], 0..12)
            .prop_map(|p| p.concat()),
    ]) {
        if let Some(params) = Params::parse(&query) {
            let _ = (params.get("k"), params.get_all("k"), params.flag("k", true));
        }
    }

    #[test]
    fn escaped_queries_round_trip(pairs in proptest::collection::vec(("[a-z]{1,4}", ".{0,12}"), 0..5)) {
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", escape(v)))
            .collect::<Vec<_>>()
            .join("&");
        let params = Params::parse(&query).unwrap();
        for (k, _) in &pairs {
            let first = pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
            prop_assert_eq!(params.get(k), first);
        }
    }

    #[test]
    fn bodies_are_read_up_to_one_byte_past_the_limit(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..6),
        limit in prop_oneof![0usize..200, Just(usize::MAX)],
    ) {
        let all = chunks.concat();
        let body = axum::body::Body::new(Chunks(chunks.into_iter().map(Bytes::from).collect()));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let read = runtime.block_on(read_limited(body, limit)).ok().unwrap();
        let expected = &all[..all.len().min(limit.saturating_add(1))];
        prop_assert_eq!(&read[..], expected);
    }
}

/// Go's `url.QueryEscape` closely enough for a round trip.
fn escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A request body that arrives in the given pieces.
struct Chunks(std::collections::VecDeque<Bytes>);

impl axum::body::HttpBody for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}
