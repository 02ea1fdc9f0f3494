//! The parser's answers to chosen inputs; `prop_parse.rs` tries any input.

use super::*;

fn limits() -> Limits {
    Limits {
        max_msg_size: 100,
        max_body_size: 1000,
        max_req_timeout_ms: 3_600_000,
        max_rdy_count: 2500,
    }
}

fn state(client: ClientState) -> ConnState {
    ConnState {
        client,
        tls_pending: false,
        heartbeats: true,
    }
}

fn parse_in(bytes: &[u8], conn: ConnState) -> Result<Option<Request>, ClientError> {
    parse(&mut BytesMut::from(bytes), &limits(), conn)
}

fn parse_all(bytes: &[u8]) -> Result<Option<Request>, ClientError> {
    parse_in(bytes, state(ClientState::Init))
}

#[test]
fn waits_for_complete_commands() {
    let full = b"PUB t\n\x00\x00\x00\x03abc";
    for cut in 0..full.len() {
        assert_eq!(parse_all(&full[..cut]), Ok(None), "cut at {cut}");
    }
    assert_eq!(
        parse_all(full),
        Ok(Some(Request::Pub {
            topic: "t".into(),
            body: Bytes::from_static(b"abc")
        }))
    );
}

#[test]
fn upstream_error_texts() {
    let err = |b: &[u8]| parse_all(b).unwrap_err().text();
    assert_eq!(
        err(b"PUB bad!topic\n"),
        "E_BAD_TOPIC PUB topic name \"bad!topic\" is not valid"
    );
    assert_eq!(
        err(b"MPUB b!\n"),
        "E_BAD_TOPIC E_BAD_TOPIC MPUB topic name \"b!\" is not valid"
    );
    assert_eq!(
        err(b"PUB t\n\x00\x00\x00\x00"),
        "E_BAD_MESSAGE PUB invalid message body size 0"
    );
    assert_eq!(
        err(b"PUB t\n\x00\x00\x01\x00"),
        "E_BAD_MESSAGE PUB message too big 256 > 100"
    );
    assert_eq!(
        err(b"DPUB t -5\n"),
        "E_INVALID DPUB could not parse timeout -5"
    );
    assert_eq!(
        err(b"DPUB t 3600001\n"),
        "E_INVALID DPUB timeout 3600001 out of range 0-3600000"
    );
    assert_eq!(
        err(b"MPUB t\n\x00\x00\x00\x08\x00\x00\x00\x00"),
        "E_BAD_BODY MPUB invalid message count 0"
    );
    assert_eq!(
        err(b"MPUB t\n\x00\x00\x00\x09\x00\x00\x00\x01\x00\x00\x00\x00x"),
        "E_BAD_MESSAGE MPUB invalid message(0) body size 0"
    );
    assert_eq!(
        err(b"IDENTIFY\n\xff\xff\xff\xff"),
        "E_BAD_BODY IDENTIFY invalid body size -1"
    );
    assert!(err(&[b'x'; MAX_LINE_LENGTH + 1]).starts_with("E_INVALID command line longer"));
}

#[test]
fn the_state_is_checked_before_the_parameters() {
    let init = state(ClientState::Init);
    let subscribed = state(ClientState::Subscribed);
    let closing = state(ClientState::Closing);
    let err = |b: &[u8], conn| parse_in(b, conn).unwrap_err().text();
    assert_eq!(err(b"FIN\n", init), "E_INVALID cannot FIN in current state");
    assert_eq!(
        err(b"FIN\n", subscribed),
        "E_INVALID FIN insufficient number of params"
    );
    assert_eq!(
        err(b"REQ x\n", closing),
        "E_INVALID REQ insufficient number of params"
    );
    assert_eq!(
        err(b"RDY x\n", init),
        "E_INVALID cannot RDY in current state"
    );
    assert_eq!(parse_in(b"RDY x\n", closing), Ok(Some(Request::Nop)));
    assert_eq!(
        err(b"SUB\n", subscribed),
        "E_INVALID cannot SUB in current state"
    );
    let no_heartbeats = ConnState {
        heartbeats: false,
        ..init
    };
    assert_eq!(
        err(b"SUB\n", no_heartbeats),
        "E_INVALID cannot SUB with heartbeats disabled"
    );
    assert_eq!(
        err(b"IDENTIFY\n", subscribed),
        "E_INVALID cannot IDENTIFY in current state"
    );
    assert_eq!(
        err(b"AUTH x\n", closing),
        "E_INVALID cannot AUTH in current state"
    );
    assert_eq!(
        err(b"CLS\n", closing),
        "E_INVALID cannot CLS in current state"
    );
    let tls_pending = ConnState {
        tls_pending: true,
        ..init
    };
    assert_eq!(
        err(b"PUB t\n", tls_pending),
        "E_INVALID cannot PUB in current state (TLS required)"
    );
    assert_eq!(parse_in(b"IDENTIFY\n", tls_pending), Ok(None));
    assert_eq!(
        err(b"FIN 0000000000000007\n", tls_pending),
        "E_INVALID cannot FIN in current state (TLS required)"
    );
}

#[test]
fn consumer_commands() {
    let subscribed = state(ClientState::Subscribed);
    let id = MessageId::from_u64(7);
    let line = |text: String| parse_in(text.as_bytes(), subscribed);
    assert_eq!(line("RDY\n".into()), Ok(Some(Request::Rdy(1))));
    assert_eq!(line("RDY 2500\n".into()), Ok(Some(Request::Rdy(2500))));
    assert_eq!(
        line("RDY 2501\n".into()).unwrap_err().text(),
        "E_INVALID RDY count 2501 out of range 0-2500"
    );
    assert_eq!(line(format!("FIN {id}\n")), Ok(Some(Request::Fin(id))));
    assert_eq!(
        line(format!("TOUCH {id}\r\n")),
        Ok(Some(Request::Touch(id)))
    );
    assert_eq!(
        line(format!("REQ {id} 99999999\n")),
        Ok(Some(Request::Req {
            id,
            timeout_ms: 99_999_999
        }))
    );
    assert_eq!(
        line(format!("REQ {id} -1\n")).unwrap_err().text(),
        "E_INVALID REQ could not parse timeout -1"
    );
    assert_eq!(
        line("FIN short\n".into()).unwrap_err().text(),
        "E_INVALID invalid message ID"
    );
    // FIN's own fast path reads lines as the general one does.
    assert_eq!(line(format!("FIN {id}\r\n")), Ok(Some(Request::Fin(id))));
    assert_eq!(line(format!("FIN {id} more\n")), Ok(Some(Request::Fin(id))));
    assert_eq!(
        line("FIN 0000000 00000007\n".into()).unwrap_err().text(),
        "E_INVALID invalid message ID"
    );
    assert_eq!(
        parse_in(format!("FIN {id}\n").as_bytes(), state(ClientState::Init))
            .unwrap_err()
            .text(),
        "E_INVALID cannot FIN in current state"
    );
    let mut two = BytesMut::from(format!("FIN {id}\nFIN {id}\n").as_bytes());
    for _ in 0..2 {
        let parsed = parse(&mut two, &limits(), subscribed);
        assert_eq!(parsed, Ok(Some(Request::Fin(id))));
    }
    assert!(two.is_empty());
    assert_eq!(line("CLS\n".into()), Ok(Some(Request::Cls)));
    assert_eq!(
        parse_all(b"SUB t c#ephemeral\n"),
        Ok(Some(Request::Sub {
            topic: "t".into(),
            channel: "c#ephemeral".into()
        }))
    );
    assert_eq!(
        parse_all(b"SUB t b@d\n").unwrap_err().text(),
        "E_BAD_CHANNEL SUB channel name \"b@d\" is not valid"
    );
    assert_eq!(
        parse_all(b"pub t\n").unwrap_err().text(),
        "E_INVALID invalid command pub"
    );
}

#[test]
fn mpub_records_must_fill_the_body() {
    let ok = b"MPUB t\n\x00\x00\x00\x11\x00\x00\x00\x02\x00\x00\x00\x02a1\x00\x00\x00\x03a22";
    match parse_all(ok) {
        Ok(Some(Request::Mpub {
            count: 2, records, ..
        })) => assert_eq!(records.len(), 13),
        other => panic!("{other:?}"),
    }
    let short = b"MPUB t\n\x00\x00\x00\x12\x00\x00\x00\x02\x00\x00\x00\x02a1\x00\x00\x00\x03a22X";
    assert_eq!(parse_all(short).unwrap_err().code, "E_BAD_BODY");
}

#[test]
fn go_style_quoting_and_numbers() {
    assert_eq!(go_quote(b"a\"b\n\x00\xff"), "\"a\\\"b\\n\\x00\\xff\"");
    assert_eq!(parse_base10(b"123"), Some(123));
    assert_eq!(parse_base10(b""), Some(0));
    assert_eq!(parse_base10(b"1x"), None);
}
