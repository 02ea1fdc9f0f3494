//! `topic.meta`: the small state an integrator keeps beside a topic's log,
//! and the atomic replacement of small files.

use super::record::{begin_frame, finish_frame, frame, Fields, Frame, KIND_TOPIC_META};
use bytes::{BufMut, BytesMut};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(super) const META_FILE: &str = "topic.meta";
const VERSION: u8 = 1;
const PAYLOAD: usize = 1 + 1 + 8 + 1 + 8;

/// Topic state that is not in the log itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicMeta {
    /// For a topic without channels: seqs below this were handed on (to the
    /// first channel created) or emptied, and must not be delivered again.
    pub backlog_floor: u64,
    /// For a paused topic: the end of the seqs released to its channels
    /// before the pause. `None` when not paused.
    pub released_end: Option<u64>,
}

impl TopicMeta {
    /// One framed record: `[kind][version][backlog_floor][paused: u8][released_end]`.
    pub fn encode(&self) -> BytesMut {
        let mut buf = BytesMut::new();
        let at = begin_frame(&mut buf, PAYLOAD);
        buf.put_u8(KIND_TOPIC_META);
        buf.put_u8(VERSION);
        buf.put_u64(self.backlog_floor);
        buf.put_u8(u8::from(self.released_end.is_some()));
        buf.put_u64(self.released_end.unwrap_or(0));
        finish_frame(&mut buf, at);
        buf
    }

    /// `None` unless `data` is exactly one intact record of this version.
    pub fn decode(data: &[u8]) -> Option<TopicMeta> {
        let Frame::Complete(payload) = frame(data, PAYLOAD) else {
            return None;
        };
        let mut f = Fields(payload);
        if f.u8()? != KIND_TOPIC_META || f.u8()? != VERSION {
            return None;
        }
        let backlog_floor = f.u64()?;
        let paused = f.u8()?;
        let released = f.u64()?;
        let exact = payload.len() == PAYLOAD && data.len() == PAYLOAD + super::record::FRAME_HEADER;
        exact.then_some(TopicMeta {
            backlog_floor,
            released_end: (paused != 0).then_some(released),
        })
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Replaces `path` with `data` so that a crash leaves the old content or the
/// new, never a mix: `path.tmp`, fsync, rename, fsync of the directory.
/// Writers of one path must take turns (the temp name is fixed so that a
/// crash leaves at most one behind).
pub fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes what a crash in [`write_atomically`] of `topic.meta` left.
pub(super) fn remove_stale_tmp(dir: &Path) {
    let _ = fs::remove_file(tmp_path(&dir.join(META_FILE)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::TempDir;

    #[test]
    fn meta_round_trips_and_rejects_damage() {
        for meta in [
            TopicMeta::default(),
            TopicMeta {
                backlog_floor: 42,
                released_end: Some(7),
            },
        ] {
            let bytes = meta.encode();
            assert_eq!(TopicMeta::decode(&bytes), Some(meta));
            for i in 0..bytes.len() {
                let mut bad = bytes.to_vec();
                bad[i] ^= 0x10;
                assert_eq!(TopicMeta::decode(&bad), None, "flipped byte {i}");
            }
            assert_eq!(TopicMeta::decode(&bytes[..bytes.len() - 1]), None);
        }
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = TempDir::new("meta");
        let path = dir.path().join("topic.meta");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
