use super::*;
use crate::log::{cost_of, LogConfig, LogWriter, SyncPolicy, TempDir};
use crate::message::Message;
use bytes::Bytes;
use std::io::Write;

fn policy(sync_every: u64) -> SyncPolicy {
    SyncPolicy {
        sync_every,
        sync_timeout: Duration::from_secs(60),
    }
}

struct Setup {
    dir: TempDir,
    writer: LogWriter,
    log: Arc<TopicLog>,
}

fn setup(tag: &str, sync_every: u64) -> Setup {
    let dir = TempDir::new(tag);
    let writer = LogWriter::start(policy(sync_every)).unwrap();
    let log = TopicLog::open(&writer, dir.path(), "t", LogConfig::new(1 << 20, 1024)).unwrap();
    Setup { dir, writer, log }
}

impl Setup {
    fn journal(&self, start: u64) -> Arc<Journal> {
        Journal::open(&self.writer, &self.log, "c", start).unwrap()
    }

    /// Stops the writer (flushing) and opens everything again.
    fn reopen(self) -> (Setup, Arc<Journal>) {
        self.writer.shutdown();
        let Setup { dir, .. } = self;
        let writer = LogWriter::start(policy(1)).unwrap();
        let log = TopicLog::open(&writer, dir.path(), "t", LogConfig::new(1 << 20, 1024)).unwrap();
        let setup = Setup { dir, writer, log };
        let journal = setup.journal(0);
        (setup, journal)
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("t.log").join("c.journal")
    }

    fn file_len(&self) -> u64 {
        fs::metadata(self.path()).unwrap().len()
    }
}

fn states(journal: &Journal, upto: u64) -> Vec<Disposition> {
    (0..upto).map(|seq| journal.classify(seq)).collect()
}

fn fresh_snapshot_len(floor: u64) -> u64 {
    Acks::new(floor).snapshot_len() as u64
}

#[test]
fn a_new_journal_starts_at_its_start_and_state_survives_reopen() {
    let s = setup("reopen", 1);
    let j = s.journal(10);
    assert_eq!(j.floor(), 10);
    assert_eq!(s.file_len(), fresh_snapshot_len(10));
    j.fin(10);
    j.fin(12);
    j.fin_range(20, 30);
    j.requeue(11, 2, Some(5_000));
    j.requeue(13, 1, None);
    j.requeue(14, 1, Some(1));
    j.fin(14);
    j.empty(16);
    j.requeue(17, 4, Some(9));
    let before = (j.floor(), states(&j, 40), j.finished_at_or_above(0));
    assert_eq!(before.0, 16);
    assert_eq!(
        j.classify(11),
        Disposition::Finished,
        "Empty drops requeues"
    );
    assert_eq!(j.classify(14), Disposition::Finished, "FIN drops requeues");
    drop(j);
    let (s, j) = s.reopen();
    assert_eq!(
        (j.floor(), states(&j, 40), j.finished_at_or_above(0)),
        before
    );
    assert_eq!(
        j.classify(17),
        Disposition::Deliver {
            attempts: Some(4),
            due: Some(9)
        }
    );
    drop(s);
}

#[test]
fn deltas_written_but_not_synced_survive_a_crash() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let s = setup("crash-journal", 1);
    let j = s.journal(0);
    j.fin_range(0, 10);
    j.requeue(12, 3, Some(44));
    s.writer.flush();
    let m = Message {
        id: 1,
        timestamp: 1,
        attempts: 0,
        body: Bytes::from_static(b"x"),
    };
    // A round that writes the FINs (not urgent: not synced) along with a log
    // append that tells when the round is over.
    let end = {
        let _held = s.writer.hold_rounds();
        j.fin_range(10, 12);
        j.fin(13);
        s.log.append([(&m, None)]).end
    };
    rt.block_on(s.log.committed(end)).unwrap();
    let state = (j.floor(), states(&j, 30));
    assert_eq!(state.0, 12);
    drop(j);
    let Setup { dir, writer, log } = s;
    drop(log);
    drop(writer); // no shutdown: as a crash
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = TopicLog::open(&writer, dir.path(), "t", LogConfig::new(1 << 20, 1024)).unwrap();
    let j = Journal::open(&writer, &log, "c", 0).unwrap();
    assert_eq!((j.floor(), states(&j, 30)), state);
}

#[test]
fn fins_cost_a_record_per_run_per_round_and_repeats_cost_none() {
    let s = setup("coalesce", 1);
    let j = s.journal(0);
    {
        let _held = s.writer.hold_rounds();
        for seq in 0..10_000 {
            j.fin(seq);
        }
    }
    s.writer.flush();
    assert_eq!(s.file_len(), fresh_snapshot_len(0) + 25, "one Fin record");
    for seq in (0..10_000).step_by(7) {
        j.fin(seq);
    }
    assert!(
        !j.ledger.lock().has_pending(),
        "finished already: nothing recorded"
    );
    // Four consumers finishing their runs interleaved, above a stuck seq.
    {
        let _held = s.writer.hold_rounds();
        for i in 0..2_500 {
            for consumer in 0..4 {
                j.fin(10_001 + consumer * 2_500 + i);
            }
        }
    }
    s.writer.flush();
    assert_eq!(
        s.file_len(),
        fresh_snapshot_len(0) + 2 * 25,
        "one Fin record more"
    );
    // A million FINs above a stuck seq, a little out of order, stay small.
    for block in 0..10_000u64 {
        for i in (0..100).rev() {
            j.fin(20_001 + block * 100 + i);
        }
    }
    s.writer.flush();
    assert_eq!(j.ledger.lock().acks.range_count(), 1);
    assert_eq!(j.floor(), 10_000);
    assert_eq!(j.finished_at_or_above(10_000), 1_010_000);
    j.fin(10_000);
    assert_eq!(j.floor(), 1_020_001);
}

#[test]
fn an_urgent_requeue_is_fsynced_in_the_next_round_and_a_fin_is_not() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let s = setup("urgent", 1);
    let j = s.journal(0);
    let m = Message {
        id: 1,
        timestamp: 1,
        attempts: 0,
        body: Bytes::from_static(b"x"),
    };
    let round = |op: &dyn Fn()| {
        let end = {
            let _held = s.writer.hold_rounds();
            op();
            s.log.append([(&m, None)]).end
        };
        let before = s.writer.fsyncs();
        rt.block_on(s.log.committed(end)).unwrap();
        s.writer.fsyncs() - before
    };
    assert_eq!(round(&|| j.fin(0)), 1, "the log only");
    assert_eq!(
        round(&|| j.requeue(5, 1, None)),
        1,
        "not deferred: not urgent"
    );
    assert_eq!(
        round(&|| j.requeue(6, 1, Some(10))),
        2,
        "the log and the journal"
    );
}

#[test]
fn a_large_journal_is_compacted_to_the_same_state() {
    let s = setup("compact", 1);
    let j = s.journal(0);
    // Records that grow the journal while the state stays small, all in one
    // round (a round in between would compact early and leave deltas after).
    {
        let _held = s.writer.hold_rounds();
        for seq in 0..3_000 {
            j.requeue(seq, 1, Some(seq as i64));
            j.fin(seq);
        }
        j.requeue(5_000, 3, Some(77));
        j.fin(4_000);
    }
    let before = (j.floor(), states(&j, 5_010));
    s.writer.flush();
    assert_eq!(
        s.file_len(),
        j.ledger.lock().acks.snapshot_len() as u64,
        "only a snapshot"
    );
    assert_eq!((j.floor(), states(&j, 5_010)), before);
    j.fin(4_001);
    j.requeue(5_001, 2, None);
    let before = (j.floor(), states(&j, 5_010));
    drop(j);
    let (_s, j) = s.reopen();
    assert_eq!(
        (j.floor(), states(&j, 5_010)),
        before,
        "deltas after the snapshot count"
    );
}

#[test]
fn a_stale_compaction_file_is_ignored_and_removed() {
    let s = setup("stale-tmp", 1);
    let j = s.journal(0);
    j.fin_range(0, 5);
    drop(j);
    // A complete snapshot of another state: a compaction that never renamed.
    let tmp = tmp_path(&s.path());
    fs::write(&tmp, snapshot_of(&Acks::new(1_000))).unwrap();
    let (s, j) = s.reopen();
    assert_eq!(j.floor(), 5);
    assert!(!tmp.exists());
    drop(s);
}

#[test]
fn a_torn_journal_tail_is_cut() {
    let s = setup("torn-journal", 1);
    let j = s.journal(0);
    j.fin_range(0, 5);
    s.writer.flush();
    let len = s.file_len();
    drop(j);
    let mut file = OpenOptions::new().append(true).open(s.path()).unwrap();
    file.write_all(&[0, 0, 0, 17, 9, 9]).unwrap();
    drop(file);
    let (s, j) = s.reopen();
    assert_eq!((j.floor(), s.file_len()), (5, len));
    j.fin(5);
    s.writer.flush();
    assert_eq!(s.file_len(), len + 25, "appends after the cut");
}

#[test]
fn a_corrupt_record_ends_the_journal_there() {
    let s = setup("corrupt-journal", 1);
    let j = s.journal(0);
    j.fin_range(0, 5);
    s.writer.flush();
    let good = s.file_len();
    j.requeue(7, 2, Some(3));
    s.writer.flush();
    j.fin_range(5, 50);
    s.writer.flush();
    drop(j);
    let mut data = fs::read(s.path()).unwrap();
    data[good as usize + 12] ^= 1;
    fs::write(s.path(), data).unwrap();
    let (s, j) = s.reopen();
    assert_eq!(j.floor(), 5, "the Fin after the bad record is dropped too");
    assert_eq!(
        j.classify(7),
        Disposition::Deliver {
            attempts: None,
            due: None
        }
    );
    assert_eq!(s.file_len(), good);
}

#[test]
fn a_journal_without_a_snapshot_replays_everything_the_log_holds() {
    let s = setup("no-snapshot", 1);
    let m = Message {
        id: 1,
        timestamp: 1,
        attempts: 0,
        body: Bytes::from_static(b"x"),
    };
    s.log.append([(&m, None), (&m, None)]);
    fs::write(s.path(), b"not a journal").unwrap();
    let j = s.journal(2);
    assert_eq!(j.floor(), s.log.first_seq());
}

#[test]
fn opening_a_journal_raises_the_log_end_past_the_seqs_it_knows() {
    let s = setup("high-water", 1);
    let j = s.journal(0);
    j.fin(100);
    j.requeue(150, 1, None);
    drop(j);
    let (s, _j) = s.reopen();
    assert_eq!((s.log.end_seq(), s.log.visible_end()), (151, 151));
    let m = Message {
        id: 1,
        timestamp: 1,
        attempts: 0,
        body: Bytes::from_static(b"x"),
    };
    assert_eq!(s.log.append([(&m, None)]), 151..152);
}

#[test]
fn a_channel_fins_what_its_reader_skipped_so_the_floor_passes_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let s = setup("skip", 1);
    let j = s.journal(0);
    let m = Message {
        id: 1,
        timestamp: 1,
        attempts: 0,
        body: Bytes::from_static(b"x"),
    };
    rt.block_on(s.log.committed(s.log.append([(&m, None)]).end))
        .unwrap();
    s.writer.fail_write_after(0);
    assert!(rt
        .block_on(s.log.committed(s.log.append([(&m, None), (&m, None)]).end))
        .is_err());
    rt.block_on(s.log.committed(s.log.append([(&m, None)]).end))
        .unwrap();
    // What a channel does: deliver and FIN, and FIN the gaps its reader reports.
    let mut gaps = Vec::new();
    let mut reader = s.log.reader(j.floor());
    loop {
        let at = reader.position();
        let Some(entry) = reader.next(s.log.visible_end()).unwrap() else {
            break;
        };
        if entry.seq > at {
            gaps.push(at..entry.seq);
            j.fin_range(at, entry.seq);
        }
        j.fin(entry.seq);
    }
    assert_eq!(gaps, vec![1..3], "the withdrawn seqs");
    assert_eq!(j.floor(), 4);
}

#[test]
fn a_closed_journal_writes_what_it_had_and_nothing_later() {
    let s = setup("close", 1);
    let old = s.journal(0);
    old.fin(0);
    old.close();
    s.writer.flush();
    // The channel comes back (an in-process restart) on the same file.
    let new = s.journal(0);
    assert_eq!(new.floor(), 1, "what came before the close was written");
    new.empty(10);
    s.writer.flush();
    // A change of the stopped channel, late: it must not land on the new
    // journal's records (it would be written at the old journal's end).
    old.requeue(5, 1, None);
    old.fin_range(0, 3);
    s.writer.flush();
    drop((old, new));
    let (_s, j) = s.reopen();
    assert_eq!(j.floor(), 10, "the empty after the reopen holds");
}

#[test]
fn delete_removes_the_journal() {
    let s = setup("delete", 1);
    let j = s.journal(0);
    j.fin(0);
    j.delete().unwrap();
    assert!(!s.path().exists());
    j.fin(1);
    s.writer.flush();
    assert!(!s.path().exists(), "nothing written after delete");
}

/// Not an assertion: `cargo test -p nsqd --release --lib fin_cost -- --nocapture`.
#[test]
fn fin_cost() {
    let s = setup("fin-cost", 1);
    let j = s.journal(0);
    let n = 1_000_000u32;
    let (cpu, wall) = cost_of(n, || (0..n as u64).for_each(|seq| j.fin(seq)));
    println!("FIN in order: {cpu:?} CPU ({wall:?} wall)");
    let (cpu, wall) = cost_of(n, || {
        (0..n as u64).for_each(|seq| j.fin(n as u64 + 1 + seq))
    });
    println!("FIN in order above a stuck seq: {cpu:?} CPU ({wall:?} wall)");
    assert_eq!(j.floor(), n as u64);
}

/// A second topic log and writer in their own directory: a replica.
fn replica_setup(tag: &str) -> Setup {
    setup(tag, 1)
}

#[test]
fn a_replica_journal_follows_its_origin_through_the_tap() {
    let origin = setup("tap-origin", 1);
    let o = origin.journal(0);
    o.fin_range(0, 5);
    o.requeue(7, 2, Some(9_000));
    let first = o.take_tap(false);
    assert!(first.deltas.is_empty(), "the first take is a snapshot");
    let snapshot = first.snapshot.expect("a snapshot at the first take");

    let replica = replica_setup("tap-replica");
    let r = Journal::open_replica(&replica.writer, &replica.log, "c", Some(&snapshot)).unwrap();
    assert_eq!(
        replica.log.end_seq(),
        0,
        "a replica journal leaves the log's end alone"
    );
    assert_eq!(states(&r, 20), states(&o, 20));

    o.fin(5);
    o.fin(9);
    o.requeue(8, 1, None);
    o.empty(3);
    o.requeue(11, 4, Some(77));
    let taken = o.take_tap(false);
    assert_eq!(taken.snapshot, None);
    r.apply_records(&taken.deltas).unwrap();
    assert_eq!((r.floor(), states(&r, 20)), (o.floor(), states(&o, 20)));
    assert_eq!(o.take_tap(false), TapTaken::default(), "nothing new");

    // The replica's own journal file holds what it applied.
    let want = (r.floor(), states(&r, 20));
    drop(r);
    replica.writer.shutdown();
    let Setup { dir, .. } = replica;
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = TopicLog::open(&writer, dir.path(), "t", LogConfig::new(1 << 20, 1024)).unwrap();
    let r = Journal::open_replica(&writer, &log, "c", None).unwrap();
    assert_eq!((r.floor(), states(&r, 20)), want);
    assert_eq!(log.end_seq(), 0);
}

#[test]
fn bad_delta_records_are_refused_whole() {
    let origin = setup("bad-deltas", 1);
    let o = origin.journal(0);
    o.take_tap(false);
    o.fin(0);
    o.fin(2);
    let good = o.take_tap(false).deltas;
    assert_eq!(good.len(), 2 * (FRAME_HEADER + 17));

    let r = Journal::open_replica(
        &origin.writer,
        &origin.log,
        "r",
        Some(&o.take_tap(true).snapshot.unwrap()),
    )
    .unwrap();
    let before = states(&r, 5);
    let mut torn = good.to_vec();
    torn.pop();
    let mut corrupt = good.to_vec();
    *corrupt.last_mut().unwrap() ^= 1;
    let snapshot_as_delta = o.take_tap(true).snapshot.unwrap();
    for bad in [&torn[..], &corrupt[..], &snapshot_as_delta[..]] {
        let err = r.apply_records(bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(states(&r, 5), before, "nothing of a bad batch is applied");
    }
    assert!(r.replace(&good).is_err(), "deltas are not a snapshot");
    assert!(Journal::open_replica(&origin.writer, &origin.log, "x", Some(&torn)).is_err());
    r.apply_records(&good).unwrap();
    assert_eq!(r.classify(2), Disposition::Finished);
}

#[test]
fn replace_swaps_the_state_and_the_next_round_compacts_to_it() {
    let s = setup("replace", 1);
    let j = s.journal(0);
    for seq in (0..400).step_by(2) {
        j.fin(seq);
    }
    j.requeue(401, 3, Some(5));
    s.writer.flush();
    let grown = s.file_len();

    let other = setup("replace-source", 1);
    let source = other.journal(0);
    source.fin_range(0, 50);
    source.requeue(60, 9, Some(123));
    let snapshot = source.take_tap(true).snapshot.unwrap();

    // A delta taken before the replacement is dropped with the old state.
    j.fin(401);
    j.replace(&snapshot).unwrap();
    assert_eq!(
        (j.floor(), states(&j, 500)),
        (source.floor(), states(&source, 500))
    );
    s.writer.flush();
    assert_eq!(
        s.file_len(),
        snapshot.len() as u64,
        "compacted to the snapshot"
    );
    assert!(s.file_len() < grown);
    j.fin(50);
    s.writer.flush();
    let want = (j.floor(), states(&j, 500));
    assert_eq!(want.0, 51);
    drop(j);
    let (s, j) = s.reopen();
    assert_eq!((j.floor(), states(&j, 500)), want);
    drop(s);
}

#[test]
fn an_overflowing_tap_sends_a_snapshot_instead() {
    let s = setup("tap-overflow", 1);
    let j = s.journal(0);
    assert!(j.take_tap(false).snapshot.is_some());
    // Every other seq: one range each, past the tap's bound.
    for seq in (1..2 * TAP_MAX_RANGES as u64 + 10).step_by(2) {
        j.fin(seq);
    }
    let taken = j.take_tap(false);
    assert!(taken.deltas.is_empty());
    let snapshot = taken.snapshot.expect("a snapshot after an overflow");
    let r = Journal::open_replica(&s.writer, &s.log, "r", Some(&snapshot)).unwrap();
    assert_eq!(r.finished_at_or_above(0), j.finished_at_or_above(0));
    assert_eq!(r.classify(1), Disposition::Finished);
    j.fin(0);
    let taken = j.take_tap(false);
    assert_eq!(
        (taken.snapshot, taken.deltas.len()),
        (None, FRAME_HEADER + 17),
        "deltas again"
    );
}
