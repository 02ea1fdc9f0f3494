//! Replication between nsqds (ours; docs/replication-design.md): `REPL
//! <version>` with a JSON [`ReplHello`] turns a connection into a link, and
//! then every frame's data is `[kind: u8][fields]` in NSQ's envelope
//! `[size u32][type u32 = Response]`, which is the caller's.
//!
//! # Frames
//!
//! Fields are big-endian. A name is `[len: u8][utf-8]`, a valid topic or
//! channel name of 1 to 64 bytes; a flag is a u8, 0 or 1. `tid` and `cid`
//! are u32 ids the origin chooses for the link's lifetime (`T` and `C` bind
//! them to names). A field marked *rest* runs to the end of the frame; every
//! other frame ends exactly after its last field.
//!
//! Origin → peer ([`ToPeer`]):
//! * `T` open `[tid][name][from: u64]`: seqs below `from` are not needed;
//! * `M` msgs `[tid][end: u64][records: rest]`: log message records; every
//!   seq below `end` not in them is absent;
//! * `C` channel `[tid][cid][name][paused: flag][max_attempts: u16][msg_ttl_ms: u64][snapshot: rest]`;
//! * `D` deltas `[tid][cid][records: rest]`: journal delta records;
//! * `P` topic state `[tid][backlog_floor: u64][paused: flag][released_end: u64]`,
//!   as in `topic.meta`;
//! * `X` drop channel `[tid][cid]`, `Y` drop topic `[tid]`;
//! * `S` sync done: every topic and channel has been described;
//! * `K` tick `[n: u64][unix_ns: i64]`: the end of progress batch `n`;
//! * `I` ping `[n: u64]`.
//!
//! Peer → origin ([`ToOrigin`]):
//! * `H` hello `[32: u8][uid: 32 lowercase hex][max_msg_size: u64][n: u32][(topic, stored_end: u64)]*n`;
//! * `W` stored `[tid][end: u64]`: every seq below `end` is committed;
//! * `A` applied `[n: u64]`: progress batch `n` is applied;
//! * `O` pong `[n: u64]`.

use super::names::{is_valid_channel_name, is_valid_topic_name, MAX_NAME_LENGTH};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The version a `REPL` command names.
pub const REPL_VERSION: u32 = 1;

const OPEN: u8 = b'T';
const MSGS: u8 = b'M';
const CHANNEL: u8 = b'C';
const DELTAS: u8 = b'D';
const TOPIC_STATE: u8 = b'P';
const DROP_CHANNEL: u8 = b'X';
const DROP_TOPIC: u8 = b'Y';
const SYNC_DONE: u8 = b'S';
const TICK: u8 = b'K';
const PING: u8 = b'I';
const HELLO: u8 = b'H';
const STORED: u8 = b'W';
const APPLIED: u8 = b'A';
const PONG: u8 = b'O';

const UID_LEN: usize = 32;
/// The smallest entry of a hello's topic list: a one-byte name and a u64.
const MIN_TOPIC_ENTRY: usize = 1 + 1 + 8;

/// The largest frame either side accepts: room for a record of the largest
/// message plus the frame's own fields.
pub fn max_frame(max_msg_size: u64) -> usize {
    let limit = max_msg_size.saturating_add(64 << 10).max(4 << 20);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// The JSON body of `REPL <version>`, from the origin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplHello {
    pub uid: String,
    /// `broadcast_address:tcp_port`.
    pub address: String,
    pub hostname: String,
    pub version: String,
    #[serde(default)]
    pub retired_fence: u64,
}

/// The body of a peer's `E_REPL_PROMOTED` answer to `REPL`: the peer
/// promoted its replicas of this origin (Unix ms), holding the seqs below
/// `stored[topic]` of each topic. The origin retires them, and its next
/// hello names `promoted_at` as `retired_fence`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fence {
    pub promoted_at: u64,
    pub stored: std::collections::BTreeMap<String, u64>,
}

/// Origin → peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToPeer {
    Open {
        tid: u32,
        name: String,
        from: u64,
    },
    Msgs {
        tid: u32,
        end: u64,
        records: Bytes,
    },
    Channel {
        tid: u32,
        cid: u32,
        name: String,
        paused: bool,
        max_attempts: u16,
        msg_ttl_ms: u64,
        snapshot: Bytes,
    },
    Deltas {
        tid: u32,
        cid: u32,
        records: Bytes,
    },
    TopicState {
        tid: u32,
        backlog_floor: u64,
        released_end: Option<u64>,
    },
    DropChannel {
        tid: u32,
        cid: u32,
    },
    DropTopic {
        tid: u32,
    },
    SyncDone,
    Tick {
        n: u64,
        unix_ns: i64,
    },
    Ping {
        n: u64,
    },
}

/// Peer → origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToOrigin {
    /// `topics` are the peer's replica topics with their `stored_end`.
    Hello {
        uid: String,
        max_msg_size: u64,
        topics: Vec<(String, u64)>,
    },
    Stored {
        tid: u32,
        end: u64,
    },
    Applied {
        n: u64,
    },
    Pong {
        n: u64,
    },
}

/// Why a frame's data is not a valid frame. Each is fatal to the link.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("empty replication frame")]
    Empty,
    #[error("unknown replication frame kind {}", show(.0))]
    UnknownKind(u8),
    #[error("replication frame {} is too short", show(.0))]
    Short(u8),
    #[error("replication frame {} has trailing bytes", show(.0))]
    Trailing(u8),
    #[error("replication frame {} has an invalid name", show(.0))]
    BadName(u8),
    #[error("replication frame {} has a flag other than 0 or 1", show(.0))]
    BadFlag(u8),
    #[error("replication hello has a uid that is not 32 lowercase hex digits")]
    BadUid,
}

fn show(kind: &u8) -> String {
    if kind.is_ascii_graphic() {
        format!("'{}'", char::from(*kind))
    } else {
        format!("{kind:#04x}")
    }
}

impl ToPeer {
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            ToPeer::Open { tid, name, from } => {
                out.put_u8(OPEN);
                out.put_u32(*tid);
                put_name(out, name);
                out.put_u64(*from);
            }
            ToPeer::Msgs { tid, end, records } => {
                out.reserve(1 + 4 + 8 + records.len());
                out.put_u8(MSGS);
                out.put_u32(*tid);
                out.put_u64(*end);
                out.put_slice(records);
            }
            ToPeer::Channel {
                tid,
                cid,
                name,
                paused,
                max_attempts,
                msg_ttl_ms,
                snapshot,
            } => {
                out.reserve(1 + 4 + 4 + 1 + name.len() + 1 + 2 + 8 + snapshot.len());
                out.put_u8(CHANNEL);
                out.put_u32(*tid);
                out.put_u32(*cid);
                put_name(out, name);
                out.put_u8(u8::from(*paused));
                out.put_u16(*max_attempts);
                out.put_u64(*msg_ttl_ms);
                out.put_slice(snapshot);
            }
            ToPeer::Deltas { tid, cid, records } => {
                out.reserve(1 + 4 + 4 + records.len());
                out.put_u8(DELTAS);
                out.put_u32(*tid);
                out.put_u32(*cid);
                out.put_slice(records);
            }
            ToPeer::TopicState {
                tid,
                backlog_floor,
                released_end,
            } => {
                out.put_u8(TOPIC_STATE);
                out.put_u32(*tid);
                out.put_u64(*backlog_floor);
                out.put_u8(u8::from(released_end.is_some()));
                out.put_u64(released_end.unwrap_or(0));
            }
            ToPeer::DropChannel { tid, cid } => {
                out.put_u8(DROP_CHANNEL);
                out.put_u32(*tid);
                out.put_u32(*cid);
            }
            ToPeer::DropTopic { tid } => {
                out.put_u8(DROP_TOPIC);
                out.put_u32(*tid);
            }
            ToPeer::SyncDone => out.put_u8(SYNC_DONE),
            ToPeer::Tick { n, unix_ns } => {
                out.put_u8(TICK);
                out.put_u64(*n);
                out.put_i64(*unix_ns);
            }
            ToPeer::Ping { n } => {
                out.put_u8(PING);
                out.put_u64(*n);
            }
        }
    }

    /// The *rest* fields are slices of `data`, not copies.
    pub fn decode(data: Bytes) -> Result<ToPeer, WireError> {
        let mut r = Reader::new(data)?;
        let frame = match r.kind {
            OPEN => ToPeer::Open {
                tid: r.u32()?,
                name: r.name(is_valid_topic_name)?,
                from: r.u64()?,
            },
            MSGS => ToPeer::Msgs {
                tid: r.u32()?,
                end: r.u64()?,
                records: r.rest(),
            },
            CHANNEL => ToPeer::Channel {
                tid: r.u32()?,
                cid: r.u32()?,
                name: r.name(is_valid_channel_name)?,
                paused: r.flag()?,
                max_attempts: r.u16()?,
                msg_ttl_ms: r.u64()?,
                snapshot: r.rest(),
            },
            DELTAS => ToPeer::Deltas {
                tid: r.u32()?,
                cid: r.u32()?,
                records: r.rest(),
            },
            TOPIC_STATE => {
                let tid = r.u32()?;
                let backlog_floor = r.u64()?;
                let paused = r.flag()?;
                let released = r.u64()?;
                ToPeer::TopicState {
                    tid,
                    backlog_floor,
                    released_end: paused.then_some(released),
                }
            }
            DROP_CHANNEL => ToPeer::DropChannel {
                tid: r.u32()?,
                cid: r.u32()?,
            },
            DROP_TOPIC => ToPeer::DropTopic { tid: r.u32()? },
            SYNC_DONE => ToPeer::SyncDone,
            TICK => ToPeer::Tick {
                n: r.u64()?,
                unix_ns: r.i64()?,
            },
            PING => ToPeer::Ping { n: r.u64()? },
            kind => return Err(WireError::UnknownKind(kind)),
        };
        r.finish()?;
        Ok(frame)
    }
}

impl ToOrigin {
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            ToOrigin::Hello {
                uid,
                max_msg_size,
                topics,
            } => {
                out.put_u8(HELLO);
                put_name(out, uid);
                out.put_u64(*max_msg_size);
                out.put_u32(topics.len() as u32);
                for (name, stored_end) in topics {
                    put_name(out, name);
                    out.put_u64(*stored_end);
                }
            }
            ToOrigin::Stored { tid, end } => {
                out.put_u8(STORED);
                out.put_u32(*tid);
                out.put_u64(*end);
            }
            ToOrigin::Applied { n } => {
                out.put_u8(APPLIED);
                out.put_u64(*n);
            }
            ToOrigin::Pong { n } => {
                out.put_u8(PONG);
                out.put_u64(*n);
            }
        }
    }

    pub fn decode(data: Bytes) -> Result<ToOrigin, WireError> {
        let mut r = Reader::new(data)?;
        let frame = match r.kind {
            HELLO => {
                let uid = r.uid()?;
                let max_msg_size = r.u64()?;
                let n = r.u32()? as usize;
                // `n` is the sender's claim: reserve only what the bytes can hold.
                if n > r.data.len() / MIN_TOPIC_ENTRY {
                    return Err(WireError::Short(HELLO));
                }
                let mut topics = Vec::with_capacity(n);
                for _ in 0..n {
                    topics.push((r.name(is_valid_topic_name)?, r.u64()?));
                }
                ToOrigin::Hello {
                    uid,
                    max_msg_size,
                    topics,
                }
            }
            STORED => ToOrigin::Stored {
                tid: r.u32()?,
                end: r.u64()?,
            },
            APPLIED => ToOrigin::Applied { n: r.u64()? },
            PONG => ToOrigin::Pong { n: r.u64()? },
            kind => return Err(WireError::UnknownKind(kind)),
        };
        r.finish()?;
        Ok(frame)
    }
}

/// Names are valid by the time they are sent, so they fit their length byte.
fn put_name(out: &mut BytesMut, name: &str) {
    debug_assert!(name.len() <= usize::from(u8::MAX));
    out.put_u8(name.len() as u8);
    out.put_slice(name.as_bytes());
}

/// Big-endian fields read off the front of a frame, after its kind; a
/// missing field is [`WireError::Short`].
struct Reader {
    kind: u8,
    data: Bytes,
}

impl Reader {
    fn new(mut data: Bytes) -> Result<Reader, WireError> {
        if data.is_empty() {
            return Err(WireError::Empty);
        }
        let kind = data.get_u8();
        Ok(Reader { kind, data })
    }

    fn take(&mut self, len: usize) -> Result<Bytes, WireError> {
        if self.data.len() < len {
            return Err(WireError::Short(self.kind));
        }
        Ok(self.data.split_to(len))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, _) = self
            .data
            .split_first_chunk::<N>()
            .ok_or(WireError::Short(self.kind))?;
        let head = *head;
        self.data.advance(N);
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        self.array::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_be_bytes)
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        self.array().map(i64::from_be_bytes)
    }

    fn flag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::BadFlag(self.kind)),
        }
    }

    /// A topic or channel name that `valid` accepts.
    fn name(&mut self, valid: fn(&str) -> bool) -> Result<String, WireError> {
        let len = usize::from(self.u8()?);
        if len == 0 || len > MAX_NAME_LENGTH {
            return Err(WireError::BadName(self.kind));
        }
        let bytes = self.take(len)?;
        match std::str::from_utf8(&bytes) {
            Ok(name) if valid(name) => Ok(name.to_owned()),
            _ => Err(WireError::BadName(self.kind)),
        }
    }

    fn uid(&mut self) -> Result<String, WireError> {
        if usize::from(self.u8()?) != UID_LEN {
            return Err(WireError::BadUid);
        }
        let bytes = self.take(UID_LEN)?;
        if !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(WireError::BadUid);
        }
        // All ASCII, checked above.
        Ok(bytes.iter().map(|&b| char::from(b)).collect())
    }

    /// The rest of the frame, sharing the input's buffer.
    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.data)
    }

    fn finish(self) -> Result<(), WireError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.kind))
        }
    }
}

#[cfg(test)]
mod tests;
