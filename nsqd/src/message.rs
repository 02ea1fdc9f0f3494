//! Messages inside nsqd, and the compact form in which fresh ones wait in a queue.

use crate::guid::ID_STEP;
use bytes::{Bytes, BytesMut};
use nsq::protocol::message::encode_message_frame;
use nsq::protocol::MessageId;

/// One message. The body is shared by every channel's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    /// Nanoseconds since the Unix epoch at publish.
    pub timestamp: i64,
    /// Deliveries so far; 0 until first sent.
    pub attempts: u16,
    pub body: Bytes,
}

impl Message {
    pub fn wire_id(&self) -> MessageId {
        MessageId::from_u64(self.id)
    }

    pub fn encode_frame(&self, buf: &mut BytesMut) {
        encode_message_frame(
            buf,
            &self.wire_id(),
            self.timestamp,
            self.attempts,
            &self.body,
        );
    }
}

/// Messages published together (one PUB or MPUB) that no consumer has seen
/// yet. They share the command's buffer, `[len: u32 BE][body]` records back to
/// back, and an ID range, so a queued message costs its body plus four bytes.
#[derive(Debug, Clone)]
pub struct Run {
    records: Bytes,
    /// Byte offset of the next record.
    pos: usize,
    /// ID of the next message.
    next_id: u64,
    remaining: u32,
    timestamp: i64,
}

impl Run {
    /// `records` must hold exactly `count` well-formed records; the parser
    /// checked that before anything reaches a topic.
    pub fn new(records: Bytes, count: u32, first_id: u64, timestamp: i64) -> Self {
        Run {
            records,
            pos: 0,
            next_id: first_id,
            remaining: count,
            timestamp,
        }
    }

    pub fn len(&self) -> usize {
        self.remaining as usize
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// Total body bytes still in the run.
    pub fn body_bytes(&self) -> usize {
        self.records.len() - self.pos - 4 * self.remaining as usize
    }

    fn record_len(&self, pos: usize) -> usize {
        u32::from_be_bytes(self.records[pos..pos + 4].try_into().expect("4 bytes")) as usize
    }

    pub fn next_message(&mut self) -> Option<Message> {
        if self.remaining == 0 {
            return None;
        }
        let len = self.record_len(self.pos);
        let body = self.records.slice(self.pos + 4..self.pos + 4 + len);
        let msg = Message {
            id: self.next_id,
            timestamp: self.timestamp,
            attempts: 0,
            body,
        };
        self.pos += 4 + len;
        self.next_id += ID_STEP;
        self.remaining -= 1;
        Some(msg)
    }

    /// Keeps the first `n` messages and returns the rest as a run of their own.
    pub fn split_off(&mut self, n: usize) -> Run {
        let n = n.min(self.len());
        let mut pos = self.pos;
        for _ in 0..n {
            pos += 4 + self.record_len(pos);
        }
        let rest = Run {
            records: self.records.clone(),
            pos,
            next_id: self.next_id + n as u64 * ID_STEP,
            remaining: self.remaining - n as u32,
            timestamp: self.timestamp,
        };
        self.records.truncate(pos);
        self.remaining = n as u32;
        rest
    }
}

impl Iterator for Run {
    type Item = Message;
    fn next(&mut self) -> Option<Message> {
        self.next_message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn run_of(bodies: &[&str]) -> Run {
        let mut buf = BytesMut::new();
        for b in bodies {
            buf.put_u32(b.len() as u32);
            buf.put_slice(b.as_bytes());
        }
        Run::new(buf.freeze(), bodies.len() as u32, 100 * ID_STEP, 42)
    }

    #[test]
    fn yields_messages_with_consecutive_ids() {
        let msgs: Vec<_> = run_of(&["a", "bb", "ccc"]).collect();
        assert_eq!(msgs.len(), 3);
        assert_eq!(&msgs[2].body[..], b"ccc");
        assert_eq!(msgs[1].id, msgs[0].id + ID_STEP);
        assert_eq!(msgs[0].timestamp, 42);
    }

    #[test]
    fn split_keeps_order_and_ids() {
        let mut head = run_of(&["a", "bb", "ccc", "dddd"]);
        head.next_message();
        assert_eq!(head.body_bytes(), 9);
        let tail = head.split_off(1);
        let head: Vec<_> = head.map(|m| m.body).collect();
        let tail: Vec<_> = tail.collect();
        assert_eq!(head, vec![Bytes::from("bb")]);
        assert_eq!(
            tail.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
            vec![Bytes::from("ccc"), Bytes::from("dddd")]
        );
        assert_eq!(tail[0].id, 102 * ID_STEP);
    }
}
