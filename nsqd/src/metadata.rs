//! `nsqd.dat`: which topics and channels exist and which are paused, in
//! upstream's JSON shape, and the import of a data directory upstream nsqd
//! v1.3 left behind (its go-diskqueue files), so binaries can be swapped in place.

use crate::diskqueue::{write_atomically, DiskConfig, DiskQueue};
use crate::message::Message;
use nsq::protocol::MessageId;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub topics: Vec<TopicMeta>,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub paused: bool,
    /// `null` for a topic without channels, as upstream writes it.
    pub channels: Option<Vec<ChannelMeta>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelMeta {
    pub name: String,
    pub paused: bool,
    /// The channel's own `max_attempts` (ours; upstream ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u16>,
    /// The channel's own message TTL in milliseconds (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_ttl_ms: Option<u64>,
}

impl ChannelMeta {
    pub fn overrides(&self) -> crate::channel::Overrides {
        crate::channel::Overrides {
            max_attempts: self.max_attempts,
            msg_ttl: self.msg_ttl_ms.map(std::time::Duration::from_millis),
        }
    }
}

/// The data directory's uid (`nsqd.uid`, 32 hex digits), made at its first
/// start. Replication peers know an origin by it, whatever its address.
pub fn load_or_create_uid(dir: &Path) -> io::Result<String> {
    let path = dir.join("nsqd.uid");
    match fs::read_to_string(&path) {
        Ok(text) if crate::replica::valid_uid(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not 32 lowercase hex digits", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let uid = format!("{:032x}", rand::random::<u128>());
    write_atomically(&path, format!("{uid}\n").as_bytes())?;
    Ok(uid)
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join("nsqd.dat")
}

pub fn load(dir: &Path) -> io::Result<Option<Metadata>> {
    match fs::read(path(dir)) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("nsqd.dat: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn save(dir: &Path, meta: &Metadata) -> io::Result<()> {
    write_atomically(&path(dir), &serde_json::to_vec(meta).expect("plain struct"))
}

/// Moves every go-diskqueue (`NAME.diskqueue.NNNNNN.dat` with its
/// `NAME.diskqueue.meta.dat`) found in `config.dir` into our queue of the same
/// name, then renames the old files with an `.imported` suffix. Returns the
/// number of messages imported.
pub fn import_upstream_queues(config: &DiskConfig) -> io::Result<u64> {
    let mut total = 0;
    let mut names: Vec<String> = fs::read_dir(&config.dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".diskqueue.meta.dat").map(str::to_string))
        .collect();
    names.sort();
    for name in names {
        let imported = import_one(config, &name)?;
        tracing::info!(queue = %name, messages = imported, "imported upstream disk queue");
        total += imported;
    }
    Ok(total)
}

fn import_one(config: &DiskConfig, name: &str) -> io::Result<u64> {
    let meta_path = config.dir.join(format!("{name}.diskqueue.meta.dat"));
    let text = fs::read_to_string(&meta_path)?;
    let mut lines = text.lines();
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: bad metadata", meta_path.display()),
        )
    };
    let _depth: i64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(bad)?;
    let pair = |line: Option<&str>| -> Option<(u64, u64)> {
        let (a, b) = line?.trim().split_once(',')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let (read_num, read_pos) = pair(lines.next()).ok_or_else(bad)?;
    let (write_num, write_pos) = pair(lines.next()).ok_or_else(bad)?;
    let mut queue = DiskQueue::open(name, config.clone())?;
    let mut count = 0;
    let max_record = config.max_msg_size as usize + 26;
    for num in read_num..=write_num {
        let file = config.dir.join(format!("{name}.diskqueue.{num:06}.dat"));
        let data = match fs::read(&file) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut pos = if num == read_num {
            read_pos as usize
        } else {
            0
        };
        // Upstream may have written past its metadata before a crash; take
        // every complete record in the file.
        let end = if num == write_num {
            data.len().max(write_pos as usize)
        } else {
            data.len()
        };
        while pos + 4 <= end.min(data.len()) {
            let len = u32::from_be_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let Some(record) = data
                .get(pos + 4..pos + 4 + len)
                .filter(|_| (26..=max_record).contains(&len))
            else {
                tracing::warn!(file = %file.display(), offset = pos, "corrupt upstream record; skipping the rest of the file");
                break;
            };
            queue.put(&upstream_message(record), None)?;
            count += 1;
            pos += 4 + len;
        }
    }
    queue.sync()?;
    for num in read_num..=write_num {
        let file = config.dir.join(format!("{name}.diskqueue.{num:06}.dat"));
        if file.exists() {
            fs::rename(&file, file.with_extension("dat.imported"))?;
        }
    }
    fs::rename(&meta_path, meta_path.with_extension("dat.imported"))?;
    Ok(count)
}

/// Upstream's record: `[timestamp: i64][attempts: u16][id: 16 hex bytes][body]`.
fn upstream_message(record: &[u8]) -> Message {
    let id_bytes = MessageId::from_slice(&record[10..26]).expect("16 bytes");
    Message {
        timestamp: i64::from_be_bytes(record[..8].try_into().expect("8 bytes")),
        attempts: u16::from_be_bytes([record[8], record[9]]),
        // Upstream IDs are hex of a 64-bit number, like ours.
        id: id_bytes.to_u64().unwrap_or_else(rand::random),
        body: bytes::Bytes::copy_from_slice(&record[26..]),
    }
}
