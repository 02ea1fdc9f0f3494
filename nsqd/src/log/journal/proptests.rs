//! The acknowledgement state and its journal against a model that keeps
//! every finished seq in a set: same floor, same answers, and the journal
//! bytes (snapshot, then deltas) rebuild the same state.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const SEQS: u64 = 120;

#[derive(Debug, Clone)]
enum Op {
    Fin(u64),
    FinRange(u64, u64),
    Requeue(u64, u16, Option<i64>),
    Empty(u64),
    /// The writer takes the pending deltas.
    Write,
    /// The writer replaces the journal with a snapshot.
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SEQS).prop_map(Op::Fin),
        2 => (0..SEQS, 0..20u64).prop_map(|(s, n)| Op::FinRange(s, s + n)),
        3 => (0..SEQS, any::<u16>(), proptest::option::of(1..1_000i64)).prop_map(|(s, a, d)| Op::Requeue(s, a, d)),
        1 => (0..SEQS).prop_map(Op::Empty),
        1 => Just(Op::Write),
        1 => Just(Op::Compact),
    ]
}

#[derive(Default)]
struct Model {
    finished: BTreeSet<u64>,
    requeues: BTreeMap<u64, (u16, Option<i64>)>,
}

impl Model {
    fn finish(&mut self, seqs: std::ops::Range<u64>) -> bool {
        let mut changed = false;
        for seq in seqs {
            changed |= self.finished.insert(seq);
            self.requeues.remove(&seq);
        }
        changed
    }

    fn floor(&self) -> u64 {
        (0..)
            .find(|s| !self.finished.contains(s))
            .unwrap_or(u64::MAX)
    }

    fn classify(&self, seq: u64) -> Disposition {
        if self.finished.contains(&seq) {
            return Disposition::Finished;
        }
        let r = self.requeues.get(&seq);
        Disposition::Deliver {
            attempts: r.map(|r| r.0),
            due: r.and_then(|r| r.1),
        }
    }
}

fn check(acks: &Acks, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(acks.floor(), model.floor());
    let mut above = model.finished.len() as u64;
    for seq in 0..SEQS + 25 {
        prop_assert_eq!(acks.classify(seq), model.classify(seq), "seq {}", seq);
        prop_assert_eq!(acks.finished_at_or_above(seq), above, "at or above {}", seq);
        above -= u64::from(model.finished.contains(&seq));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn acks_and_journal_agree_with_a_set_of_finished_seqs(
        start in 0..10u64,
        ops in proptest::collection::vec(op(), 0..150),
    ) {
        let mut model = Model::default();
        model.finish(0..start);
        let mut ledger = Ledger::new(Acks::new(start));
        let mut file = snapshot_of(&ledger.acks).to_vec();
        for op in ops {
            match op {
                Op::Fin(seq) => {
                    let changed = model.finish(seq..seq + 1);
                    prop_assert_eq!(ledger.fin(seq), changed, "a record only when something changed");
                }
                Op::FinRange(a, b) => {
                    let changed = model.finish(a..b);
                    prop_assert_eq!(ledger.fin_range(a, b), changed);
                }
                Op::Requeue(seq, attempts, due) => {
                    let live = !model.finished.contains(&seq);
                    if live {
                        model.requeues.insert(seq, (attempts, due));
                    }
                    prop_assert_eq!(ledger.requeue(seq, attempts, due), live);
                }
                Op::Empty(upto) => {
                    let changed = model.finish(0..upto);
                    prop_assert_eq!(ledger.empty(upto), changed);
                }
                Op::Write => {
                    let mut taken = BytesMut::new();
                    ledger.take(&mut taken);
                    file.extend_from_slice(&taken);
                }
                Op::Compact => {
                    file = snapshot_of(&ledger.acks).to_vec();
                    ledger.take(&mut BytesMut::new());
                }
            }
            check(&ledger.acks, &model)?;
        }
        let mut taken = BytesMut::new();
        ledger.take(&mut taken);
        file.extend_from_slice(&taken);
        let (replayed, good, cut) = replay(&file);
        prop_assert_eq!((good, cut), (file.len(), None));
        let replayed = replayed.expect("a snapshot first");
        check(&replayed, &model)?;
        prop_assert_eq!(replayed, ledger.acks);
    }
}

/// Ships what the origin's tap took to the replica, as a link would.
fn ship(origin: &mut Ledger, replica: &mut Ledger, snapshot: bool) -> Result<(), TestCaseError> {
    let taken = origin.take_tap(snapshot);
    if let Some(snapshot) = taken.snapshot {
        prop_assert!(taken.deltas.is_empty());
        let (acks, good, cut) = replay(&snapshot);
        prop_assert_eq!((good, cut), (snapshot.len(), None));
        replica.acks = acks.expect("a snapshot");
        replica.take(&mut BytesMut::new());
    }
    prop_assert_eq!(
        replica.apply_records(&taken.deltas),
        Ok(!taken.deltas.is_empty()),
        "deltas always change a replica that mirrors its origin"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_replica_fed_by_the_tap_agrees_with_its_origin(
        start in 0..10u64,
        ops in proptest::collection::vec((op(), 0..12u8), 0..150),
    ) {
        let mut origin = Ledger::new(Acks::new(start));
        let mut replica = Ledger::new(Acks::new(0));
        let mut model = Model::default();
        model.finish(0..start);
        ship(&mut origin, &mut replica, false)?;
        for (op, shipping) in ops {
            match op {
                Op::Fin(seq) => { origin.fin(seq); model.finish(seq..seq + 1); }
                Op::FinRange(a, b) => { origin.fin_range(a, b); model.finish(a..b); }
                Op::Requeue(seq, attempts, due) => {
                    if origin.requeue(seq, attempts, due) {
                        model.requeues.insert(seq, (attempts, due));
                    }
                }
                Op::Empty(upto) => { origin.empty(upto); model.finish(0..upto); }
                // The origin's own journal writes do not disturb the tap.
                Op::Write | Op::Compact => { origin.take(&mut BytesMut::new()); }
            }
            match shipping {
                0 => ship(&mut origin, &mut replica, true)?,
                1..=3 => ship(&mut origin, &mut replica, false)?,
                _ => {}
            }
        }
        ship(&mut origin, &mut replica, false)?;
        check(&replica.acks, &model)?;
        prop_assert_eq!(&replica.acks, &origin.acks);
    }
}
