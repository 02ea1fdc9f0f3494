//! Protocol V1, spoken by nsqd to nsqlookupd: magic `"  V1"`, then command
//! lines (`IDENTIFY` with a `[size][JSON]` body, `REGISTER topic [channel]`,
//! `UNREGISTER topic [channel]`, `PING`). Every answer, errors included, is
//! `[size: u32 BE][data]`: unlike nsqd's frames there is no frame type.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

pub const MAGIC_V1: &[u8; 4] = b"  V1";

/// What nsqd tells lookupd about itself in IDENTIFY.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerIdentity {
    pub broadcast_address: String,
    pub hostname: String,
    pub tcp_port: u16,
    pub http_port: u16,
    pub version: String,
}

/// lookupd's answer to IDENTIFY: its own addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LookupdIdentity {
    pub tcp_port: u16,
    pub http_port: u16,
    pub version: String,
    pub broadcast_address: String,
    pub hostname: String,
}

/// A command from nsqd to lookupd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupCommand {
    Identify(PeerIdentity),
    Register {
        topic: String,
        channel: Option<String>,
    },
    Unregister {
        topic: String,
        channel: Option<String>,
    },
    Ping,
}

impl LookupCommand {
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            LookupCommand::Identify(identity) => {
                let json = serde_json::to_vec(identity).expect("plain struct");
                buf.put_slice(b"IDENTIFY\n");
                buf.put_u32(json.len() as u32);
                buf.put_slice(&json);
            }
            LookupCommand::Register { topic, channel } => {
                registration(buf, "REGISTER", topic, channel)
            }
            LookupCommand::Unregister { topic, channel } => {
                registration(buf, "UNREGISTER", topic, channel)
            }
            LookupCommand::Ping => buf.put_slice(b"PING\n"),
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }
}

fn registration(buf: &mut BytesMut, name: &str, topic: &str, channel: &Option<String>) {
    buf.put_slice(name.as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(topic.as_bytes());
    if let Some(channel) = channel {
        buf.put_u8(b' ');
        buf.put_slice(channel.as_bytes());
    }
    buf.put_u8(b'\n');
}

/// Appends one size-prefixed answer.
pub fn encode_response(buf: &mut BytesMut, data: &[u8]) {
    buf.put_u32(data.len() as u32);
    buf.put_slice(data);
}

/// Takes one answer off `buf`; `Ok(None)` until it is complete. Answers past
/// `max_size` are an error, so a peer cannot make us buffer without bound.
pub fn decode_response(buf: &mut BytesMut, max_size: usize) -> Result<Option<Bytes>, usize> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if size > max_size {
        return Err(size);
    }
    if buf.len() < 4 + size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_answers() {
        let register = LookupCommand::Register {
            topic: "t".into(),
            channel: Some("c".into()),
        };
        assert_eq!(&register.to_bytes()[..], b"REGISTER t c\n");
        let unregister = LookupCommand::Unregister {
            topic: "t".into(),
            channel: None,
        };
        assert_eq!(&unregister.to_bytes()[..], b"UNREGISTER t\n");
        let identify = LookupCommand::Identify(PeerIdentity {
            tcp_port: 4150,
            ..Default::default()
        })
        .to_bytes();
        assert!(identify.starts_with(b"IDENTIFY\n\x00\x00\x00"));
        let mut buf = BytesMut::new();
        encode_response(&mut buf, b"OK");
        assert_eq!(&buf[..], b"\x00\x00\x00\x02OK");
        assert_eq!(
            decode_response(&mut buf, 10),
            Ok(Some(Bytes::from_static(b"OK")))
        );
        assert_eq!(
            decode_response(&mut BytesMut::from(&b"\x00\x00\x01\x00"[..]), 10),
            Err(256)
        );
    }
}
