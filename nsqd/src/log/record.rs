//! Record framing, and the payloads of topic logs, journals and `topic.meta`.
//!
//! Every record is `[len: u32 BE][crc32c(payload): u32 BE][payload]`, the
//! disk queue's framing, and the first payload byte is its kind. A length
//! outside `1..=max_payload` or a checksum mismatch is corruption: decoding
//! never allocates by a length it read.

use crate::message::Message;
use bytes::{BufMut, Bytes, BytesMut};

pub(super) const FRAME_HEADER: usize = 8;
/// `[kind][seq][id][timestamp][attempts][deliver_at]` before the body.
pub(super) const MESSAGE_HEADER: usize = 1 + 8 + 8 + 8 + 2 + 8;
/// The largest delta payload, a Requeue: `[kind][seq][attempts][due]`.
pub(super) const DELTA_MAX_PAYLOAD: usize = 1 + 8 + 2 + 8;
/// Kind 1 is the disk queue's message record; 2 keeps the two apart.
const KIND_MESSAGE: u8 = 2;
const KIND_FIN: u8 = 3;
const KIND_REQUEUE: u8 = 4;
const KIND_EMPTY: u8 = 5;
pub(super) const KIND_SNAPSHOT: u8 = 6;
pub(super) const KIND_TOPIC_META: u8 = 7;

/// A message read back from a topic log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub msg: Message,
    /// Unix ns before which the message must not be delivered.
    pub deliver_at: Option<i64>,
}

/// Reserves room for a frame of `payload_len` and writes its length; the
/// caller puts the payload and then calls [`finish_frame`] with the offset.
pub(super) fn begin_frame(buf: &mut BytesMut, payload_len: usize) -> usize {
    buf.reserve(FRAME_HEADER + payload_len);
    let start = buf.len();
    buf.put_u32(payload_len as u32);
    buf.put_u32(0);
    start
}

/// Fills in the checksum of the frame at `start`, whose payload is complete.
pub(super) fn finish_frame(buf: &mut BytesMut, start: usize) {
    let mut len = [0; 4];
    len.copy_from_slice(&buf[start..start + 4]);
    let payload = start + FRAME_HEADER..start + FRAME_HEADER + u32::from_be_bytes(len) as usize;
    let crc = crc32c::crc32c(&buf[payload]);
    buf[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_be_bytes());
}

/// One record's state at the start of some bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// An intact record: its payload. The record is `FRAME_HEADER + len` long.
    Complete(&'a [u8]),
    /// A plausible record that needs more bytes than there are.
    Incomplete,
    Corrupt,
}

pub(super) fn frame(data: &[u8], max_payload: usize) -> Frame<'_> {
    let mut header = Fields(data);
    let (Some(len), Some(crc)) = (header.u32(), header.u32()) else {
        return Frame::Incomplete;
    };
    let len = len as usize;
    if len == 0 || len > max_payload {
        return Frame::Corrupt;
    }
    let Some(payload) = data.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Frame::Incomplete;
    };
    if crc32c::crc32c(payload) != crc {
        return Frame::Corrupt;
    }
    Frame::Complete(payload)
}

/// Big-endian fields read off the front of a payload; `None` past its end.
pub(super) struct Fields<'a>(pub(super) &'a [u8]);

impl<'a> Fields<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }
    pub(super) fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
    pub(super) fn rest(&self) -> &'a [u8] {
        self.0
    }
}

/// Builds the header on the stack and checksums header and body where they
/// are, so that the pending buffer sees two copies and one reservation.
pub(super) fn encode_message(buf: &mut BytesMut, seq: u64, msg: &Message, deliver_at: Option<i64>) {
    let len = MESSAGE_HEADER + msg.body.len();
    let mut head = [0u8; FRAME_HEADER + MESSAGE_HEADER];
    head[..4].copy_from_slice(&(len as u32).to_be_bytes());
    head[8] = KIND_MESSAGE;
    head[9..17].copy_from_slice(&seq.to_be_bytes());
    head[17..25].copy_from_slice(&msg.id.to_be_bytes());
    head[25..33].copy_from_slice(&msg.timestamp.to_be_bytes());
    head[33..35].copy_from_slice(&msg.attempts.to_be_bytes());
    head[35..43].copy_from_slice(&deliver_at.unwrap_or(0).to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[FRAME_HEADER..]), &msg.body);
    head[4..8].copy_from_slice(&crc.to_be_bytes());
    buf.reserve(FRAME_HEADER + len);
    buf.extend_from_slice(&head);
    buf.extend_from_slice(&msg.body);
}

/// The seq of an intact message payload, without decoding the rest.
pub(super) fn message_seq(payload: &[u8]) -> Option<u64> {
    let mut f = Fields(payload);
    (f.u8()? == KIND_MESSAGE && payload.len() >= MESSAGE_HEADER).then_some(())?;
    f.u64()
}

/// Decodes an intact message payload. The body is copied: a body that shares
/// a reader's chunk would pin the whole chunk for as long as it is deferred.
pub(super) fn decode_message(payload: &[u8]) -> Option<LogEntry> {
    let mut f = Fields(payload);
    if f.u8()? != KIND_MESSAGE {
        return None;
    }
    let seq = f.u64()?;
    let id = f.u64()?;
    let timestamp = f.i64()?;
    let attempts = f.u16()?;
    let deliver_at = f.i64()?;
    Some(LogEntry {
        seq,
        msg: Message {
            id,
            timestamp,
            attempts,
            body: Bytes::copy_from_slice(f.rest()),
        },
        deliver_at: (deliver_at != 0).then_some(deliver_at),
    })
}

/// A change to a channel's acknowledgement state, as its journal records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delta {
    /// Seqs `[start, end)` are finished.
    Fin { start: u64, end: u64 },
    /// `seq` went back in line; `due` is Unix ns, 0 for now.
    Requeue { seq: u64, attempts: u16, due: i64 },
    /// Everything below `upto` is finished.
    Empty { upto: u64 },
}

pub(super) fn encode_delta(buf: &mut BytesMut, delta: &Delta) {
    match *delta {
        Delta::Fin { start, end } => {
            let at = begin_frame(buf, 17);
            buf.put_u8(KIND_FIN);
            buf.put_u64(start);
            buf.put_u64(end);
            finish_frame(buf, at);
        }
        Delta::Requeue { seq, attempts, due } => {
            let at = begin_frame(buf, 19);
            buf.put_u8(KIND_REQUEUE);
            buf.put_u64(seq);
            buf.put_u16(attempts);
            buf.put_i64(due);
            finish_frame(buf, at);
        }
        Delta::Empty { upto } => {
            let at = begin_frame(buf, 9);
            buf.put_u8(KIND_EMPTY);
            buf.put_u64(upto);
            finish_frame(buf, at);
        }
    }
}

/// A journal record: a delta, or the body of a snapshot (decoded by `acks`).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum JournalRecord<'a> {
    Delta(Delta),
    Snapshot(&'a [u8]),
}

pub(super) fn decode_journal(payload: &[u8]) -> Option<JournalRecord<'_>> {
    let mut f = Fields(payload);
    let record = match f.u8()? {
        KIND_FIN => {
            let (start, end) = (f.u64()?, f.u64()?);
            (start < end).then_some(JournalRecord::Delta(Delta::Fin { start, end }))?
        }
        KIND_REQUEUE => JournalRecord::Delta(Delta::Requeue {
            seq: f.u64()?,
            attempts: f.u16()?,
            due: f.i64()?,
        }),
        KIND_EMPTY => JournalRecord::Delta(Delta::Empty { upto: f.u64()? }),
        KIND_SNAPSHOT => return Some(JournalRecord::Snapshot(f.rest())),
        _ => return None,
    };
    f.rest().is_empty().then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &'static [u8]) -> Message {
        Message {
            id: 77,
            timestamp: -5,
            attempts: 3,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn message_round_trips_and_reports_its_length() {
        let mut buf = BytesMut::new();
        encode_message(&mut buf, 9, &msg(b"hello"), Some(123));
        assert_eq!(buf.len(), FRAME_HEADER + MESSAGE_HEADER + 5);
        let Frame::Complete(payload) = frame(&buf, MESSAGE_HEADER + 5) else {
            panic!("intact record");
        };
        assert_eq!(message_seq(payload), Some(9));
        let entry = decode_message(payload).unwrap();
        assert_eq!((entry.seq, entry.deliver_at), (9, Some(123)));
        assert_eq!(entry.msg, msg(b"hello"));
    }

    #[test]
    fn bad_lengths_and_checksums_are_corruption_and_short_data_incomplete() {
        let mut buf = BytesMut::new();
        encode_message(&mut buf, 1, &msg(b"abc"), None);
        assert_eq!(
            frame(&buf, MESSAGE_HEADER + 2),
            Frame::Corrupt,
            "over the bound"
        );
        assert_eq!(frame(&buf[..buf.len() - 1], 1 << 20), Frame::Incomplete);
        assert_eq!(frame(&buf[..5], 1 << 20), Frame::Incomplete);
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(frame(&bad, 1 << 20), Frame::Corrupt);
        assert_eq!(frame(&[0; 8], 1 << 20), Frame::Corrupt, "zero length");
    }

    #[test]
    fn deltas_round_trip() {
        let deltas = [
            Delta::Fin { start: 3, end: 9 },
            Delta::Requeue {
                seq: 4,
                attempts: 2,
                due: 55,
            },
            Delta::Empty { upto: 100 },
        ];
        let mut buf = BytesMut::new();
        for delta in &deltas {
            encode_delta(&mut buf, delta);
        }
        let mut pos = 0;
        let mut got = Vec::new();
        while let Frame::Complete(p) = frame(&buf[pos..], 64) {
            got.push(decode_journal(p).unwrap());
            pos += FRAME_HEADER + p.len();
        }
        assert_eq!(pos, buf.len());
        let want: Vec<_> = deltas.iter().map(|d| JournalRecord::Delta(*d)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn malformed_journal_payloads_are_rejected() {
        assert_eq!(decode_journal(&[KIND_FIN, 0, 0]), None, "short");
        let mut empty_range = vec![KIND_FIN];
        empty_range.extend_from_slice(&5u64.to_be_bytes());
        empty_range.extend_from_slice(&5u64.to_be_bytes());
        assert_eq!(decode_journal(&empty_range), None);
        assert_eq!(decode_journal(&[KIND_MESSAGE]), None);
    }
}
