//! A channel's acknowledgement state: which seqs are finished, and which went
//! back in line with what attempts and due time. Pure state; `journal.rs`
//! records every change and replays it here.
//!
//! Finished seqs are `[0, floor)` plus disjoint, non-adjacent ranges above the
//! floor. FINs mostly arrive in order, so a FIN at the floor is a compare and
//! an increment (plus a look at the first range when there are any); a range
//! that the floor reaches is folded into it. FINs above a stuck message grow
//! the range they touch in place, so a million of them stay one range.

use super::record::{begin_frame, finish_frame, Fields, KIND_SNAPSHOT};
use bytes::{BufMut, BytesMut};
use std::collections::BTreeMap;

/// What a channel must do with a seq it meets in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Finished,
    /// Deliver it. `attempts` is set when it was requeued (the log holds the
    /// attempts of its publish); `due` when it must wait until then (Unix ns).
    Deliver {
        attempts: Option<u16>,
        due: Option<i64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Requeued {
    pub(super) attempts: u16,
    /// Unix ns; 0 for now.
    pub(super) due: i64,
}

/// Disjoint, non-adjacent ranges of seqs: `start -> end`, merged on insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RangeSet {
    map: BTreeMap<u64, u64>,
    /// Seqs in all ranges, so that depth needs no walk.
    count: u64,
}

impl RangeSet {
    /// Adds `[start, end)`; returns how many of its seqs were not in yet.
    /// Growing a range at its end (FINs in order above a stuck one) changes
    /// it in place: no allocation.
    pub(super) fn insert(&mut self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        let (mut lo, mut hi, mut absorbed) = (start, end, 0);
        if let Some((&s, &e)) = self.map.range(..=start).next_back() {
            if e >= end {
                return 0;
            }
            if e >= start {
                (lo, absorbed) = (s, e - s);
            }
        }
        while let Some((&s, &e)) = self.map.range(lo + 1..=hi).next() {
            self.map.remove(&s);
            absorbed += e - s;
            hi = hi.max(e);
        }
        match self.map.get_mut(&lo) {
            Some(e) => *e = hi,
            None => {
                self.map.insert(lo, hi);
            }
        }
        let added = hi - lo - absorbed;
        self.count += added;
        added
    }

    /// The range that holds `seq`.
    fn range_of(&self, seq: u64) -> Option<(u64, u64)> {
        let (&start, &end) = self.map.range(..=seq).next_back()?;
        (seq < end).then_some((start, end))
    }

    /// Removes and returns the first range when it starts at or below `seq`.
    fn pop_first_upto(&mut self, seq: u64) -> Option<(u64, u64)> {
        let entry = self.map.first_entry().filter(|e| *e.key() <= seq)?;
        let (start, end) = entry.remove_entry();
        self.count -= end - start;
        Some((start, end))
    }

    fn count_at_or_above(&self, seq: u64) -> u64 {
        let straddling = self.range_of(seq).map_or(0, |(_, end)| end - seq);
        let above: u64 = self.map.range(seq + 1..).map(|(s, e)| e - s).sum();
        straddling + above
    }

    fn last_end(&self) -> Option<u64> {
        self.map.last_key_value().map(|(_, &e)| e)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &e)| (s, e))
    }

    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.count = 0;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Acks {
    floor: u64,
    /// Finished ranges above the floor; none starts at it (it would be folded in).
    ranges: RangeSet,
    /// Only for seqs not finished: finishing one drops its entry.
    requeues: BTreeMap<u64, Requeued>,
}

impl Acks {
    pub(super) fn new(floor: u64) -> Acks {
        Acks {
            floor,
            ranges: RangeSet::default(),
            requeues: BTreeMap::new(),
        }
    }

    pub(super) fn floor(&self) -> u64 {
        self.floor
    }

    #[cfg(test)]
    pub(super) fn range_count(&self) -> usize {
        self.ranges.len()
    }

    pub(super) fn is_finished(&self, seq: u64) -> bool {
        seq < self.floor || self.ranges.range_of(seq).is_some()
    }

    /// Finishes `seq`; false when it already was (nothing to record).
    pub(super) fn fin(&mut self, seq: u64) -> bool {
        if seq < self.floor {
            return false;
        }
        if seq == self.floor {
            self.floor += 1;
            self.absorb_ranges_at_floor();
        } else if self.ranges.insert(seq, seq + 1) == 0 {
            return false;
        }
        if !self.requeues.is_empty() {
            self.requeues.remove(&seq);
        }
        true
    }

    fn absorb_ranges_at_floor(&mut self) {
        while let Some((_, end)) = self.ranges.pop_first_upto(self.floor) {
            self.floor = self.floor.max(end);
        }
    }

    /// Finishes `[start, end)`; false when all of it already was.
    pub(super) fn fin_range(&mut self, start: u64, end: u64) -> bool {
        let start = start.max(self.floor);
        if start >= end {
            return false;
        }
        if start == self.floor {
            self.floor = end;
            self.absorb_ranges_at_floor();
        } else if self.ranges.insert(start, end) == 0 {
            return false;
        }
        while let Some((&seq, _)) = self.requeues.range(start..end).next() {
            self.requeues.remove(&seq);
        }
        true
    }

    /// Records that `seq` went back in line; the latest entry wins. False when
    /// `seq` is finished (a late REQ after a FIN).
    pub(super) fn requeue(&mut self, seq: u64, attempts: u16, due: i64) -> bool {
        if self.is_finished(seq) {
            return false;
        }
        self.requeues.insert(seq, Requeued { attempts, due });
        true
    }

    pub(super) fn classify(&self, seq: u64) -> Disposition {
        if self.is_finished(seq) {
            return Disposition::Finished;
        }
        let requeued = self.requeues.get(&seq);
        Disposition::Deliver {
            attempts: requeued.map(|r| r.attempts),
            due: requeued.map(|r| r.due).filter(|&due| due != 0),
        }
    }

    pub(super) fn finished_at_or_above(&self, seq: u64) -> u64 {
        if seq <= self.floor {
            return self.floor - seq + self.ranges.count;
        }
        self.ranges.count_at_or_above(seq)
    }

    /// The lowest seq that this state says nothing about: the log must not
    /// hand out seqs below it again.
    pub(super) fn high_water(&self) -> u64 {
        let ranges = self.ranges.last_end().unwrap_or(0);
        let requeues = self.requeues.last_key_value().map_or(0, |(&s, _)| s + 1);
        self.floor.max(ranges).max(requeues)
    }

    pub(super) fn snapshot_len(&self) -> usize {
        super::record::FRAME_HEADER
            + 1
            + 8
            + 4
            + 16 * self.ranges.len()
            + 4
            + 18 * self.requeues.len()
    }

    /// `[kind][floor][n: u32][(start, end)]*n[m: u32][(seq, attempts, due)]*m`.
    pub(super) fn encode_snapshot(&self, buf: &mut BytesMut) {
        let at = begin_frame(buf, self.snapshot_len() - super::record::FRAME_HEADER);
        buf.put_u8(KIND_SNAPSHOT);
        buf.put_u64(self.floor);
        buf.put_u32(self.ranges.len() as u32);
        for (start, end) in self.ranges.iter() {
            buf.put_u64(start);
            buf.put_u64(end);
        }
        buf.put_u32(self.requeues.len() as u32);
        for (&seq, r) in &self.requeues {
            buf.put_u64(seq);
            buf.put_u16(r.attempts);
            buf.put_i64(r.due);
        }
        finish_frame(buf, at);
    }

    /// Rebuilds the state from a snapshot body (after its kind byte). Goes
    /// through the same operations as live FINs, so a snapshot that breaks the
    /// invariants (it passed its checksum, but still) cannot break the state.
    pub(super) fn decode_snapshot(body: &[u8]) -> Option<Acks> {
        let mut f = Fields(body);
        let mut acks = Acks::new(f.u64()?);
        for _ in 0..f.u32()? {
            let (start, end) = (f.u64()?, f.u64()?);
            acks.fin_range(start, end);
        }
        for _ in 0..f.u32()? {
            let (seq, attempts, due) = (f.u64()?, f.u16()?, f.i64()?);
            acks.requeue(seq, attempts, due);
        }
        f.rest().is_empty().then_some(acks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::{frame, Frame, JournalRecord};

    fn ranges(acks: &Acks) -> Vec<(u64, u64)> {
        acks.ranges.iter().collect()
    }

    #[test]
    fn in_order_fins_only_move_the_floor() {
        let mut acks = Acks::new(10);
        for seq in 10..1000 {
            assert!(acks.fin(seq));
        }
        assert_eq!((acks.floor(), acks.range_count()), (1000, 0));
        assert!(!acks.fin(500), "below the floor is a no-op");
    }

    #[test]
    fn out_of_order_fins_merge_and_the_floor_swallows_ranges() {
        let mut acks = Acks::new(0);
        assert!(acks.fin(5));
        assert!(acks.fin(7));
        assert_eq!(ranges(&acks), vec![(5, 6), (7, 8)]);
        assert!(acks.fin(6));
        assert_eq!(ranges(&acks), vec![(5, 8)]);
        assert!(acks.fin(4), "joins downwards");
        assert_eq!(ranges(&acks), vec![(4, 8)]);
        assert!(!acks.fin(6));
        for seq in 0..4 {
            acks.fin(seq);
        }
        assert_eq!((acks.floor(), acks.range_count()), (8, 0));
    }

    #[test]
    fn a_million_fins_above_one_stuck_seq_stay_a_handful_of_ranges() {
        let mut acks = Acks::new(0);
        // Interleaved like many consumers finishing a little out of order.
        for block in 0..10_000u64 {
            let base = 1 + block * 100;
            for i in (0..100).rev() {
                acks.fin(base + i);
            }
            assert!(acks.range_count() <= 2);
        }
        assert_eq!(ranges(&acks), vec![(1, 1_000_001)]);
        assert_eq!(
            acks.classify(0),
            Disposition::Deliver {
                attempts: None,
                due: None
            }
        );
        assert!(acks.fin(0));
        assert_eq!((acks.floor(), acks.range_count()), (1_000_001, 0));
    }

    #[test]
    fn fin_ranges_merge_with_neighbours_and_overlaps() {
        let mut acks = Acks::new(0);
        acks.fin_range(10, 20);
        acks.fin_range(30, 40);
        acks.fin_range(50, 60);
        assert!(!acks.fin_range(12, 18), "covered");
        assert!(acks.fin_range(20, 30), "adjacent on both sides");
        assert_eq!(ranges(&acks), vec![(10, 40), (50, 60)]);
        assert!(acks.fin_range(35, 55));
        assert_eq!(ranges(&acks), vec![(10, 60)]);
        assert_eq!(acks.finished_at_or_above(0), 50);
        assert!(acks.fin_range(0, 11));
        assert_eq!((acks.floor(), acks.range_count()), (60, 0));
        assert!(!acks.fin_range(3, 60));
    }

    #[test]
    fn requeues_keep_the_latest_entry_and_go_when_finished() {
        let mut acks = Acks::new(0);
        assert!(acks.requeue(5, 1, 100));
        assert!(acks.requeue(5, 2, 0));
        assert_eq!(
            acks.classify(5),
            Disposition::Deliver {
                attempts: Some(2),
                due: None
            }
        );
        acks.requeue(6, 1, 99);
        assert_eq!(
            acks.classify(6),
            Disposition::Deliver {
                attempts: Some(1),
                due: Some(99)
            }
        );
        acks.fin(5);
        assert_eq!(acks.classify(5), Disposition::Finished);
        assert!(!acks.requeue(5, 3, 0), "late REQ after FIN");
        acks.requeue(9, 1, 0);
        acks.fin_range(0, 7);
        assert_eq!(acks.requeues.keys().copied().collect::<Vec<_>>(), vec![9]);
        assert_eq!(acks.high_water(), 10);
    }

    #[test]
    fn depth_counts_finished_seqs_above_a_point() {
        let mut acks = Acks::new(5);
        acks.fin_range(10, 15);
        acks.fin(20);
        assert_eq!(acks.finished_at_or_above(0), 5 + 6);
        assert_eq!(acks.finished_at_or_above(12), 3 + 1);
        assert_eq!(acks.finished_at_or_above(15), 1);
        assert_eq!(acks.finished_at_or_above(21), 0);
    }

    #[test]
    fn snapshot_round_trips() {
        let mut acks = Acks::new(3);
        acks.fin_range(10, 15);
        acks.fin(20);
        acks.requeue(7, 4, 1234);
        let mut buf = BytesMut::new();
        acks.encode_snapshot(&mut buf);
        assert_eq!(buf.len(), acks.snapshot_len());
        let Frame::Complete(payload) = frame(&buf, buf.len()) else {
            panic!("intact");
        };
        let Some(JournalRecord::Snapshot(body)) = crate::log::record::decode_journal(payload)
        else {
            panic!("a snapshot");
        };
        assert_eq!(Acks::decode_snapshot(body), Some(acks));
        assert_eq!(Acks::decode_snapshot(&body[..body.len() - 1]), None);
    }
}
