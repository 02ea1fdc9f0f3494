//! Protocol V2 commands, parsed once into a [`Request`], with upstream's
//! checks in upstream's order (the connection's state first where upstream
//! looks at it first), so that each malformed input gets the same error.
//! Executing a request is `protocol_v2`'s job.
//!
//! Parsing is pure: it looks at the buffer and consumes a command only once it
//! is complete, so it can be retried as bytes arrive and tested on its own.

use crate::client_conn::ClientState;
use bytes::{Buf, Bytes, BytesMut};
use nsq::protocol::{is_valid_channel_name, is_valid_topic_name, split_params, MessageId};
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

/// Limits that bound what a client can make us read and ask for.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_msg_size: i64,
    pub max_body_size: i64,
    pub max_req_timeout_ms: u64,
    pub max_rdy_count: i64,
}

/// What the parser must know of the connection: upstream checks the
/// connection's state before a command's parameters, so the same malformed
/// line gets a different error before and after SUB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnState {
    pub client: ClientState,
    /// `--tls-required` and not yet upgraded: only IDENTIFY is allowed.
    pub tls_pending: bool,
    /// False once IDENTIFY disabled heartbeats: SUB is then refused.
    pub heartbeats: bool,
}

/// A complete command, checked as far as it can be without the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
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
    Sub {
        topic: String,
        channel: String,
    },
    /// Within `0..=max_rdy_count`.
    Rdy(i64),
    Fin(MessageId),
    /// The timeout as asked; `--max-req-timeout` clamps it when applied.
    Req {
        id: MessageId,
        timeout_ms: u64,
    },
    Touch(MessageId),
    Cls,
    Nop,
    /// Another nsqd asks to store replicas of its topics here (ours, see
    /// docs/replication-design.md): the protocol `version` and its hello.
    Repl {
        version: u32,
        hello: Bytes,
    },
}

impl Request {
    /// An MPUB of more than one message: its answer is worth a park of the
    /// reader, which costs less than polling for the next one per message.
    pub fn is_batch(&self) -> bool {
        matches!(self, Request::Mpub { count, .. } if *count > 1)
    }

    /// Whether nsqd answers the command when it succeeds. A consumer's FIN,
    /// REQ, TOUCH and RDY, and NOP, get no answer (only an error).
    pub fn is_answered(&self) -> bool {
        !matches!(
            self,
            Request::Rdy(_)
                | Request::Fin(_)
                | Request::Req { .. }
                | Request::Touch(_)
                | Request::Nop
        )
    }
}

/// Takes the next complete command off `buf`; `Ok(None)` means more bytes are
/// needed. Every error is fatal: the connection closes after it.
pub fn parse(
    buf: &mut BytesMut,
    limits: &Limits,
    conn: ConnState,
) -> Result<Option<Request>, ClientError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE_LENGTH {
            return Err(line_too_long());
        }
        return Ok(None);
    };
    // FIN is most of what a busy consumer sends: taken without splitting
    // the line into a vector (an allocation per message).
    if let Some(id) = lone_fin_id(&buf[..nl]) {
        if !conn.tls_pending {
            let request = Request::Fin(message_target(&[b"FIN", id], "FIN", 2, conn)?);
            buf.advance(nl + 1);
            return Ok(Some(request));
        }
    }
    let params = split_params(&buf[..nl]);
    let name = params[0];
    if conn.tls_pending && name != b"IDENTIFY" {
        return Err(ClientError::invalid(format!(
            "cannot {} in current state (TLS required)",
            lossy(name)
        )));
    }
    if nl > MAX_LINE_LENGTH {
        return Err(line_too_long());
    }
    let body_at = nl + 1;
    let request = match name {
        b"IDENTIFY" | b"AUTH" | b"PUB" | b"DPUB" | b"MPUB" | b"REPL" => {
            let command = body_command(&params, limits, conn)?;
            return with_body(buf, body_at, command, limits);
        }
        b"SUB" => sub(&params, conn)?,
        b"RDY" => rdy(&params, limits, conn)?,
        b"FIN" => Request::Fin(message_target(&params, "FIN", 2, conn)?),
        b"REQ" => {
            let id = message_target(&params, "REQ", 3, conn)?;
            let timeout_ms = parse_base10(params[2]).ok_or_else(|| {
                ClientError::invalid(format!("REQ could not parse timeout {}", lossy(params[2])))
            })?;
            Request::Req { id, timeout_ms }
        }
        b"TOUCH" => Request::Touch(message_target(&params, "TOUCH", 2, conn)?),
        b"CLS" => {
            if conn.client != ClientState::Subscribed {
                return Err(ClientError::invalid("cannot CLS in current state"));
            }
            Request::Cls
        }
        b"NOP" => Request::Nop,
        _ => {
            return Err(ClientError::invalid(format!(
                "invalid command {}",
                lossy(name)
            )))
        }
    };
    buf.advance(body_at);
    Ok(Some(request))
}

/// The ID of a line that is exactly `FIN <16 bytes without a space>`, as
/// [`split_params`] would read it.
fn lone_fin_id(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let id = line.strip_prefix(b"FIN ")?;
    (id.len() == 16 && !id.contains(&b' ')).then_some(id)
}

fn line_too_long() -> ClientError {
    ClientError::invalid(format!("command line longer than {MAX_LINE_LENGTH} bytes"))
}

fn sub(params: &[&[u8]], conn: ConnState) -> Result<Request, ClientError> {
    if conn.client != ClientState::Init {
        return Err(ClientError::invalid("cannot SUB in current state"));
    }
    if !conn.heartbeats {
        return Err(ClientError::invalid("cannot SUB with heartbeats disabled"));
    }
    if params.len() < 3 {
        return Err(ClientError::invalid(
            "SUB insufficient number of parameters",
        ));
    }
    let topic = topic_param("SUB", params[1])?;
    let channel = match std::str::from_utf8(params[2]) {
        Ok(c) if is_valid_channel_name(c) => c.to_string(),
        _ => {
            return Err(ClientError::fatal(
                "E_BAD_CHANNEL",
                format!("SUB channel name {} is not valid", go_quote(params[2])),
            ))
        }
    };
    Ok(Request::Sub { topic, channel })
}

fn rdy(params: &[&[u8]], limits: &Limits, conn: ConnState) -> Result<Request, ClientError> {
    match conn.client {
        // Upstream ignores RDY after CLS, whatever it says.
        ClientState::Closing => return Ok(Request::Nop),
        ClientState::Init => return Err(ClientError::invalid("cannot RDY in current state")),
        ClientState::Subscribed => {}
    }
    let count = match params.get(1) {
        None => 1,
        Some(raw) => parse_base10(raw).ok_or_else(|| {
            ClientError::invalid(format!("RDY could not parse count {}", lossy(raw)))
        })? as i64,
    };
    let max = limits.max_rdy_count;
    if !(0..=max).contains(&count) {
        return Err(ClientError::invalid(format!(
            "RDY count {count} out of range 0-{max}"
        )));
    }
    Ok(Request::Rdy(count))
}

/// The message ID of FIN, REQ and TOUCH, after upstream's checks.
fn message_target(
    params: &[&[u8]],
    cmd: &str,
    min_params: usize,
    conn: ConnState,
) -> Result<MessageId, ClientError> {
    if conn.client == ClientState::Init {
        return Err(ClientError::invalid(format!(
            "cannot {cmd} in current state"
        )));
    }
    if params.len() < min_params {
        return Err(ClientError::invalid(format!(
            "{cmd} insufficient number of params"
        )));
    }
    MessageId::from_slice(params[1]).ok_or_else(|| ClientError::invalid("invalid message ID"))
}

/// A command followed by a `[size: i32 BE]` body, its line checked.
enum BodyCommand {
    Identify,
    Auth,
    Pub(String),
    Dpub { topic: String, defer_ms: u64 },
    Mpub(String),
    Repl(u32),
}

/// The line checks of IDENTIFY, AUTH and the publishes: all of them come
/// before the body's size is read.
fn body_command(
    params: &[&[u8]],
    limits: &Limits,
    conn: ConnState,
) -> Result<BodyCommand, ClientError> {
    let at_least = |n: usize, cmd: &str| {
        if params.len() < n {
            Err(ClientError::invalid(format!(
                "{cmd} insufficient number of parameters"
            )))
        } else {
            Ok(())
        }
    };
    match params[0] {
        b"IDENTIFY" => {
            if conn.client != ClientState::Init {
                return Err(ClientError::invalid("cannot IDENTIFY in current state"));
            }
            Ok(BodyCommand::Identify)
        }
        b"AUTH" => {
            if conn.client != ClientState::Init {
                return Err(ClientError::invalid("cannot AUTH in current state"));
            }
            if params.len() != 1 {
                return Err(ClientError::invalid("AUTH invalid number of parameters"));
            }
            Ok(BodyCommand::Auth)
        }
        b"REPL" => {
            if conn.client != ClientState::Init {
                return Err(ClientError::invalid("cannot REPL in current state"));
            }
            at_least(2, "REPL")?;
            let version = parse_base10(params[1])
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    ClientError::invalid(format!(
                        "REPL could not parse version {}",
                        lossy(params[1])
                    ))
                })?;
            Ok(BodyCommand::Repl(version))
        }
        b"PUB" => {
            at_least(2, "PUB")?;
            Ok(BodyCommand::Pub(topic_param("PUB", params[1])?))
        }
        b"DPUB" => {
            at_least(3, "DPUB")?;
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
            Ok(BodyCommand::Dpub { topic, defer_ms })
        }
        _ => {
            at_least(2, "MPUB")?;
            match std::str::from_utf8(params[1]) {
                Ok(t) if is_valid_topic_name(t) => Ok(BodyCommand::Mpub(t.to_string())),
                // Upstream repeats the code inside the description.
                _ => Err(ClientError::fatal(
                    "E_BAD_TOPIC",
                    format!(
                        "E_BAD_TOPIC MPUB topic name {} is not valid",
                        go_quote(params[1])
                    ),
                )),
            }
        }
    }
}

/// Checks the body's size and takes the command once the whole body has
/// arrived; the line stays in `buf` until then.
fn with_body(
    buf: &mut BytesMut,
    body_at: usize,
    command: BodyCommand,
    limits: &Limits,
) -> Result<Option<Request>, ClientError> {
    let Some(len) = peek_len(buf, body_at) else {
        return Ok(None);
    };
    let body_len_ok = |cmd: &str| {
        if len as i64 > limits.max_body_size {
            return Err(bad_body(format!(
                "{cmd} body too big {len} > {}",
                limits.max_body_size
            )));
        }
        if len <= 0 {
            return Err(bad_body(format!("{cmd} invalid body size {len}")));
        }
        Ok(())
    };
    match command {
        BodyCommand::Identify => {
            body_len_ok("IDENTIFY")?;
            Ok(take_body(buf, body_at, len).map(Request::Identify))
        }
        BodyCommand::Auth => {
            body_len_ok("AUTH")?;
            Ok(take_body(buf, body_at, len).map(Request::Auth))
        }
        BodyCommand::Pub(topic) => {
            message_len_ok("PUB", len, limits)?;
            Ok(take_body(buf, body_at, len).map(|body| Request::Pub { topic, body }))
        }
        BodyCommand::Dpub { topic, defer_ms } => {
            message_len_ok("DPUB", len, limits)?;
            Ok(take_body(buf, body_at, len).map(|body| Request::Dpub {
                topic,
                defer_ms,
                body,
            }))
        }
        BodyCommand::Mpub(topic) => mpub(buf, body_at, len, topic, limits),
        BodyCommand::Repl(version) => {
            body_len_ok("REPL")?;
            Ok(take_body(buf, body_at, len).map(|hello| Request::Repl { version, hello }))
        }
    }
}

/// MPUB's checks are upstream's, in its order: the size (as small, then as
/// big), the count, then each record.
fn mpub(
    buf: &mut BytesMut,
    body_at: usize,
    len: i32,
    topic: String,
    limits: &Limits,
) -> Result<Option<Request>, ClientError> {
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
mod tests;
