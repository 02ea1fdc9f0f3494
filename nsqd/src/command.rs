//! Parsing client commands off the input buffer, with upstream's checks in
//! upstream's order, so that each malformed input gets the same error.
//!
//! Parsing is pure: it looks at the buffer and consumes a command only once it
//! is complete, so it can be retried as bytes arrive and tested on its own.

use bytes::{Buf, Bytes, BytesMut};
use nsq::protocol::{is_valid_topic_name, split_params};
use std::fmt::Write as _;

/// Longest command line accepted; upstream's read buffer is this size.
pub const MAX_LINE_LENGTH: usize = 16 * 1024;

/// An error for the client: `CODE description`. Fatal ones close the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: &'static str,
    pub description: String,
    pub fatal: bool,
}

impl ClientError {
    pub fn fatal(code: &'static str, description: impl Into<String>) -> Self {
        ClientError {
            code,
            description: description.into(),
            fatal: true,
        }
    }

    pub fn non_fatal(code: &'static str, description: impl Into<String>) -> Self {
        ClientError {
            code,
            description: description.into(),
            fatal: false,
        }
    }

    pub fn invalid(description: impl Into<String>) -> Self {
        Self::fatal("E_INVALID", description)
    }

    /// The error frame's body.
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.description)
    }
}

/// Limits that bound what a client can make us read.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_msg_size: i64,
    pub max_body_size: i64,
    pub max_req_timeout_ms: u64,
}

/// A complete command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A command without a body: its line, without the `\n`.
    Line(Bytes),
    Identify(Bytes),
    Auth(Bytes),
    Pub {
        topic: String,
        body: Bytes,
    },
    /// `records` holds `count` back-to-back `[len: u32 BE][body]` records.
    Mpub {
        topic: String,
        records: Bytes,
        count: u32,
    },
    Dpub {
        topic: String,
        defer_ms: u64,
        body: Bytes,
    },
}

/// Takes the next complete command off `buf`; `Ok(None)` means more bytes are
/// needed. `state` is the client's protocol state: IDENTIFY's state check
/// comes before its body is read.
pub fn parse(
    buf: &mut BytesMut,
    limits: &Limits,
    state_is_init: bool,
) -> Result<Option<Request>, ClientError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE_LENGTH {
            return Err(ClientError::invalid(format!(
                "command line longer than {MAX_LINE_LENGTH} bytes"
            )));
        }
        return Ok(None);
    };
    if nl > MAX_LINE_LENGTH {
        return Err(ClientError::invalid(format!(
            "command line longer than {MAX_LINE_LENGTH} bytes"
        )));
    }
    let params = split_params(&buf[..nl]);
    let body_at = nl + 1;
    match params[0] {
        b"IDENTIFY" => {
            if !state_is_init {
                return Err(ClientError::invalid("cannot IDENTIFY in current state"));
            }
            let Some(len) = peek_len(buf, body_at) else {
                return Ok(None);
            };
            if len as i64 > limits.max_body_size {
                return Err(bad_body(format!(
                    "IDENTIFY body too big {len} > {}",
                    limits.max_body_size
                )));
            }
            if len <= 0 {
                return Err(bad_body(format!("IDENTIFY invalid body size {len}")));
            }
            Ok(take_body(buf, body_at, len).map(Request::Identify))
        }
        b"AUTH" => {
            if !state_is_init {
                return Err(ClientError::invalid("cannot AUTH in current state"));
            }
            if params.len() != 1 {
                return Err(ClientError::invalid("AUTH invalid number of parameters"));
            }
            let Some(len) = peek_len(buf, body_at) else {
                return Ok(None);
            };
            if len as i64 > limits.max_body_size {
                return Err(bad_body(format!(
                    "AUTH body too big {len} > {}",
                    limits.max_body_size
                )));
            }
            if len <= 0 {
                return Err(bad_body(format!("AUTH invalid body size {len}")));
            }
            Ok(take_body(buf, body_at, len).map(Request::Auth))
        }
        b"PUB" => {
            if params.len() < 2 {
                return Err(ClientError::invalid(
                    "PUB insufficient number of parameters",
                ));
            }
            let topic = topic_param("PUB", params[1])?;
            let Some(len) = peek_len(buf, body_at) else {
                return Ok(None);
            };
            message_len_ok("PUB", len, limits)?;
            Ok(take_body(buf, body_at, len).map(|body| Request::Pub { topic, body }))
        }
        b"DPUB" => {
            if params.len() < 3 {
                return Err(ClientError::invalid(
                    "DPUB insufficient number of parameters",
                ));
            }
            let topic = topic_param("DPUB", params[1])?;
            let defer_ms = parse_base10(params[2]).ok_or_else(|| {
                ClientError::invalid(format!("DPUB could not parse timeout {}", lossy(params[2])))
            })?;
            if defer_ms > limits.max_req_timeout_ms {
                return Err(ClientError::invalid(format!(
                    "DPUB timeout {defer_ms} out of range 0-{}",
                    limits.max_req_timeout_ms
                )));
            }
            let Some(len) = peek_len(buf, body_at) else {
                return Ok(None);
            };
            message_len_ok("DPUB", len, limits)?;
            Ok(take_body(buf, body_at, len).map(|body| Request::Dpub {
                topic,
                defer_ms,
                body,
            }))
        }
        b"MPUB" => {
            if params.len() < 2 {
                return Err(ClientError::invalid(
                    "MPUB insufficient number of parameters",
                ));
            }
            let topic = match std::str::from_utf8(params[1]) {
                Ok(t) if is_valid_topic_name(t) => t.to_string(),
                _ => {
                    // Upstream repeats the code inside the description.
                    return Err(ClientError::fatal(
                        "E_BAD_TOPIC",
                        format!(
                            "E_BAD_TOPIC MPUB topic name {} is not valid",
                            go_quote(params[1])
                        ),
                    ));
                }
            };
            let Some(len) = peek_len(buf, body_at) else {
                return Ok(None);
            };
            if len <= 0 {
                return Err(bad_body(format!("MPUB invalid body size {len}")));
            }
            if len as i64 > limits.max_body_size {
                return Err(bad_body(format!(
                    "MPUB body too big {len} > {}",
                    limits.max_body_size
                )));
            }
            let Some(count) = peek_len(buf, body_at + 4) else {
                return Ok(None);
            };
            let max_messages = (limits.max_body_size - 4) / 5;
            if count <= 0 || count as i64 > max_messages {
                return Err(bad_body(format!("MPUB invalid message count {count}")));
            }
            if buf.len() < body_at + 4 + len as usize {
                reserve_toward(buf, body_at + 4 + len as usize);
                return Ok(None);
            }
            check_mpub_records(&buf[body_at + 8..body_at + 4 + len as usize], count, limits)?;
            let body = take_body(buf, body_at, len).expect("complete body checked above");
            Ok(Some(Request::Mpub {
                topic,
                records: body.slice(4..),
                count: count as u32,
            }))
        }
        _ => {
            let line = buf.split_to(body_at).freeze();
            Ok(Some(Request::Line(line.slice(..nl))))
        }
    }
}

/// Validates MPUB's records: each non-empty and within `--max-msg-size`, and
/// together filling the declared body exactly.
fn check_mpub_records(mut records: &[u8], count: i32, limits: &Limits) -> Result<(), ClientError> {
    for i in 0..count {
        if records.len() < 4 {
            return Err(ClientError::fatal(
                "E_BAD_MESSAGE",
                "MPUB failed to read message body size",
            ));
        }
        let size = i32::from_be_bytes(records[..4].try_into().expect("4 bytes"));
        if size <= 0 {
            return Err(ClientError::fatal(
                "E_BAD_MESSAGE",
                format!("MPUB invalid message({i}) body size {size}"),
            ));
        }
        if size as i64 > limits.max_msg_size {
            return Err(ClientError::fatal(
                "E_BAD_MESSAGE",
                format!("MPUB message too big {size} > {}", limits.max_msg_size),
            ));
        }
        if records.len() < 4 + size as usize {
            return Err(ClientError::fatal(
                "E_BAD_MESSAGE",
                "MPUB failed to read message body",
            ));
        }
        records = &records[4 + size as usize..];
    }
    if !records.is_empty() {
        return Err(bad_body(format!(
            "MPUB body has {} bytes beyond its {count} messages",
            records.len()
        )));
    }
    Ok(())
}

fn bad_body(description: String) -> ClientError {
    ClientError::fatal("E_BAD_BODY", description)
}

fn topic_param(cmd: &str, raw: &[u8]) -> Result<String, ClientError> {
    match std::str::from_utf8(raw) {
        Ok(t) if is_valid_topic_name(t) => Ok(t.to_string()),
        _ => Err(ClientError::fatal(
            "E_BAD_TOPIC",
            format!("{cmd} topic name {} is not valid", go_quote(raw)),
        )),
    }
}

fn message_len_ok(cmd: &str, len: i32, limits: &Limits) -> Result<(), ClientError> {
    if len <= 0 {
        return Err(ClientError::fatal(
            "E_BAD_MESSAGE",
            format!("{cmd} invalid message body size {len}"),
        ));
    }
    if len as i64 > limits.max_msg_size {
        return Err(ClientError::fatal(
            "E_BAD_MESSAGE",
            format!("{cmd} message too big {len} > {}", limits.max_msg_size),
        ));
    }
    Ok(())
}

/// The signed 32-bit length at `at`, if those four bytes have arrived.
fn peek_len(buf: &BytesMut, at: usize) -> Option<i32> {
    buf.get(at..at + 4)
        .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
}

/// Consumes the command line, the length and `len` body bytes, copying the
/// body into its own exactly-sized buffer (queued messages must not pin the
/// connection's read buffer).
fn take_body(buf: &mut BytesMut, body_at: usize, len: i32) -> Option<Bytes> {
    let end = body_at + 4 + len as usize;
    if buf.len() < end {
        reserve_toward(buf, end);
        return None;
    }
    let body = Bytes::copy_from_slice(&buf[body_at + 4..end]);
    buf.advance(end);
    Some(body)
}

/// Makes room for a body still arriving, at most doubling the buffer: memory
/// follows the bytes a client has sent, not the size it claims (a valid
/// 5 MiB MPUB header alone must not cost 5 MiB per connection).
fn reserve_toward(buf: &mut BytesMut, end: usize) {
    buf.reserve((end - buf.len()).min(buf.len().max(16 * 1024)));
}

/// Upstream's digits-only number parser: no sign, no spaces; an empty string
/// is 0 and overflow wraps, as in Go.
pub fn parse_base10(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.wrapping_mul(10).wrapping_add((d - b'0') as u64))
    })
}

pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Quotes like Go's `%q`: double quotes, with escapes for quotes, backslashes,
/// control characters and invalid UTF-8.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_msg_size: 100,
            max_body_size: 1000,
            max_req_timeout_ms: 3_600_000,
        }
    }

    fn parse_all(bytes: &[u8]) -> Result<Option<Request>, ClientError> {
        parse(&mut BytesMut::from(bytes), &limits(), true)
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
    fn mpub_records_must_fill_the_body() {
        let ok = b"MPUB t\n\x00\x00\x00\x11\x00\x00\x00\x02\x00\x00\x00\x02a1\x00\x00\x00\x03a22";
        match parse_all(ok) {
            Ok(Some(Request::Mpub {
                count: 2, records, ..
            })) => assert_eq!(records.len(), 13),
            other => panic!("{other:?}"),
        }
        let short =
            b"MPUB t\n\x00\x00\x00\x12\x00\x00\x00\x02\x00\x00\x00\x02a1\x00\x00\x00\x03a22X";
        assert_eq!(parse_all(short).unwrap_err().code, "E_BAD_BODY");
    }

    #[test]
    fn go_style_quoting_and_numbers() {
        assert_eq!(go_quote(b"a\"b\n\x00\xff"), "\"a\\\"b\\n\\x00\\xff\"");
        assert_eq!(parse_base10(b"123"), Some(123));
        assert_eq!(parse_base10(b""), Some(0));
        assert_eq!(parse_base10(b"1x"), None);
    }
}
