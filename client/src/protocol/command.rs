//! Client-to-server commands: a line `NAME[ param]*\n`, followed for some
//! commands by a body `[size: u32 BE][bytes]`.

use super::MessageId;
use bytes::{BufMut, Bytes, BytesMut};
use std::time::Duration;

/// A command as a client sends it.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use nsq::protocol::Command;
///
/// let mut buf = BytesMut::new();
/// Command::Sub { topic: "events".into(), channel: "archive".into() }.encode(&mut buf);
/// Command::Rdy(10).encode(&mut buf);
/// Command::Pub { topic: "events".into(), body: Bytes::from_static(b"hi") }.encode(&mut buf);
/// assert_eq!(&buf[..], b"SUB events archive\nRDY 10\nPUB events\n\0\0\0\x02hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The JSON body of an IDENTIFY.
    Identify(Bytes),
    Auth(Bytes),
    Sub {
        topic: String,
        channel: String,
    },
    Rdy(u32),
    Fin(MessageId),
    Req {
        id: MessageId,
        delay: Duration,
    },
    Touch(MessageId),
    Cls,
    Nop,
    Pub {
        topic: String,
        body: Bytes,
    },
    Mpub {
        topic: String,
        bodies: Vec<Bytes>,
    },
    Dpub {
        topic: String,
        delay: Duration,
        body: Bytes,
    },
}

impl Command {
    /// Appends the command's wire form to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Command::Identify(json) => line_with_body(buf, &["IDENTIFY"], json),
            Command::Auth(secret) => line_with_body(buf, &["AUTH"], secret),
            Command::Sub { topic, channel } => line(buf, &["SUB", topic, channel]),
            Command::Rdy(count) => line(buf, &["RDY", &count.to_string()]),
            Command::Fin(id) => id_line(buf, b"FIN ", id, None),
            Command::Req { id, delay } => id_line(buf, b"REQ ", id, Some(delay.as_millis())),
            Command::Touch(id) => id_line(buf, b"TOUCH ", id, None),
            Command::Cls => buf.put_slice(b"CLS\n"),
            Command::Nop => buf.put_slice(b"NOP\n"),
            Command::Pub { topic, body } => line_with_body(buf, &["PUB", topic], body),
            Command::Dpub { topic, delay, body } => {
                line_with_body(buf, &["DPUB", topic, &delay.as_millis().to_string()], body)
            }
            Command::Mpub { topic, bodies } => {
                line(buf, &["MPUB", topic]);
                let total: usize = 4 + bodies.iter().map(|b| 4 + b.len()).sum::<usize>();
                buf.reserve(4 + total);
                buf.put_u32(total as u32);
                buf.put_u32(bodies.len() as u32);
                for body in bodies {
                    buf.put_u32(body.len() as u32);
                    buf.put_slice(body);
                }
            }
        }
    }

    /// The wire form as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }
}

fn line(buf: &mut BytesMut, words: &[&str]) {
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b' ');
        }
        buf.put_slice(word.as_bytes());
    }
    buf.put_u8(b'\n');
}

fn line_with_body(buf: &mut BytesMut, words: &[&str], body: &[u8]) {
    line(buf, words);
    buf.reserve(4 + body.len());
    buf.put_u32(body.len() as u32);
    buf.put_slice(body);
}

fn id_line(buf: &mut BytesMut, name: &[u8], id: &MessageId, millis: Option<u128>) {
    buf.put_slice(name);
    buf.put_slice(&id.0);
    if let Some(ms) = millis {
        buf.put_u8(b' ');
        buf.put_slice(ms.to_string().as_bytes());
    }
    buf.put_u8(b'\n');
}

/// Splits a command line (without its `\n`) into its parameters the way nsqd
/// does: a trailing `\r` is dropped and every single space separates, so two
/// spaces in a row make an empty parameter.
pub fn split_params(line: &[u8]) -> Vec<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.split(|&b| b == b' ').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_upstream_clients() {
        let mpub = Command::Mpub {
            topic: "tcptopic".into(),
            bodies: vec![Bytes::from_static(b"a1"), Bytes::from_static(b"a22")],
        };
        assert_eq!(
            &mpub.to_bytes()[..],
            b"MPUB tcptopic\n\x00\x00\x00\x11\x00\x00\x00\x02\x00\x00\x00\x02a1\x00\x00\x00\x03a22"
        );
        let dpub = Command::Dpub {
            topic: "tcptopic".into(),
            delay: Duration::from_millis(1000),
            body: Bytes::from_static(b"dly"),
        };
        assert_eq!(
            &dpub.to_bytes()[..],
            b"DPUB tcptopic 1000\n\x00\x00\x00\x03dly"
        );
        let req = Command::Req {
            id: MessageId(*b"18a3c72127269000"),
            delay: Duration::ZERO,
        };
        assert_eq!(&req.to_bytes()[..], b"REQ 18a3c72127269000 0\n");
    }

    #[test]
    fn splits_on_every_space() {
        assert_eq!(split_params(b"SUB a b\r"), vec![&b"SUB"[..], b"a", b"b"]);
        assert_eq!(split_params(b"SUB  b"), vec![&b"SUB"[..], b"", b"b"]);
        assert_eq!(split_params(b""), vec![&b""[..]]);
    }
}
