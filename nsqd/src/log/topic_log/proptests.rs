//! Damaged segment files (bytes flipped, garbage inserted, the end cut off)
//! open and read without an error or a panic, give back exactly the records
//! that were not touched plus nothing invented, and keep seqs in order.

use super::*;
use crate::log::record::encode_message;
use crate::log::segment::segment_path;
use crate::log::{LogWriter, SyncPolicy, TempDir};
use bytes::Bytes;
use proptest::prelude::*;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Truncate(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Damage::Flip(at, x)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..40)
        )
            .prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
        any::<usize>().prop_map(Damage::Truncate),
    ]
}

fn message(i: usize, body: &[u8]) -> Message {
    Message {
        id: i as u64 * 3,
        timestamp: i as i64,
        attempts: i as u16,
        body: Bytes::copy_from_slice(body),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_segments_give_back_every_intact_record_and_nothing_else(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..30),
        damages in proptest::collection::vec(damage(), 0..4),
    ) {
        let msgs: Vec<Message> = bodies.iter().enumerate().map(|(i, b)| message(i, b)).collect();
        let mut encoded = BytesMut::new();
        let mut spans = Vec::new();
        for (seq, m) in msgs.iter().enumerate() {
            let start = encoded.len();
            encode_message(&mut encoded, seq as u64, m, (seq & 1 == 0).then_some(seq as i64 + 1));
            spans.push(start..encoded.len());
        }
        // Damage positions are in the original bytes.
        let len = encoded.len();
        let mut touched = vec![false; msgs.len()];
        let mut flips = vec![0u8; len];
        let mut inserts: Vec<Vec<u8>> = vec![Vec::new(); len + 1];
        let mut cut = len;
        for d in &damages {
            match d {
                Damage::Flip(at, x) => {
                    let at = at % len;
                    flips[at] ^= x;
                    touched.iter_mut().zip(&spans).filter(|(_, s)| s.contains(&at)).for_each(|(t, _)| *t = true);
                }
                Damage::Insert(at, bytes) => {
                    let at = at % (len + 1);
                    inserts[at].extend_from_slice(bytes);
                    touched.iter_mut().zip(&spans).filter(|(_, s)| s.start < at && at < s.end).for_each(|(t, _)| *t = true);
                }
                Damage::Truncate(at) => cut = cut.min(at % (len + 1)),
            }
        }
        touched.iter_mut().zip(&spans).filter(|(_, s)| s.end > cut).for_each(|(t, _)| *t = true);
        let mut damaged = Vec::with_capacity(len + 200);
        for at in 0..cut {
            damaged.extend_from_slice(&inserts[at]);
            damaged.push(encoded[at] ^ flips[at]);
        }
        damaged.extend_from_slice(&inserts[cut]);

        let dir = TempDir::new("damaged");
        let log_dir = dir.path().join("t.log");
        fs::create_dir_all(&log_dir).unwrap();
        fs::write(segment_path(&log_dir, 0), &damaged).unwrap();
        let writer = LogWriter::start(SyncPolicy { sync_every: 1, sync_timeout: Duration::from_secs(1) }).unwrap();
        let log = TopicLog::open(&writer, dir.path(), "t", LogConfig::new(1 << 20, 300)).unwrap();
        let mut reader = log.reader(0);
        let mut got = Vec::new();
        while let Some(entry) = reader.next(log.visible_end()).unwrap() {
            got.push(entry);
        }
        prop_assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "in order");
        for entry in &got {
            let seq = entry.seq as usize;
            prop_assert!(seq < msgs.len(), "invented seq {}", seq);
            prop_assert_eq!(&entry.msg, &msgs[seq]);
            prop_assert_eq!(entry.deliver_at, (seq & 1 == 0).then_some(seq as i64 + 1));
        }
        let returned: Vec<u64> = got.iter().map(|e| e.seq).collect();
        for (seq, _) in touched.iter().enumerate().filter(|(_, t)| !**t) {
            prop_assert!(returned.contains(&(seq as u64)), "intact record {} lost", seq);
        }
        prop_assert_eq!(log.end_seq(), returned.last().map_or(0, |s| s + 1));
    }
}
