use super::*;
use crate::log::segment::{list_segments, segment_path};
use crate::log::{cost_of, LogWriter, SyncPolicy, TempDir};
use bytes::Bytes;
use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

fn policy(sync_every: u64) -> SyncPolicy {
    SyncPolicy {
        sync_every,
        sync_timeout: Duration::from_secs(60),
    }
}

fn msg(i: u64) -> Message {
    Message {
        id: i,
        timestamp: 1_000 + i as i64,
        attempts: 1,
        body: Bytes::from(format!("message-{i:06}")),
    }
}

/// The on-disk length of `msg(i)`'s record.
const RECORD: u64 = 8 + 35 + 14;

fn open(writer: &LogWriter, dir: &TempDir, max_bytes: u64) -> Arc<TopicLog> {
    TopicLog::open(writer, dir.path(), "t", LogConfig::new(max_bytes, 1024)).unwrap()
}

fn append_all(log: &TopicLog, ids: Range<u64>) -> Range<u64> {
    let msgs: Vec<Message> = ids.map(msg).collect();
    log.append(msgs.iter().map(|m| (m, None)))
}

fn read_all(log: &TopicLog, from: u64) -> Vec<LogEntry> {
    let mut reader = log.reader(from);
    std::iter::from_fn(|| reader.next(log.visible_end()).unwrap()).collect()
}

fn seqs(entries: &[LogEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

/// Base and length of every segment file.
fn segments(log: &TopicLog) -> Vec<(u64, u64)> {
    let bases = list_segments(log.dir()).unwrap();
    bases
        .into_iter()
        .map(|b| (b, fs::metadata(segment_path(log.dir(), b)).unwrap().len()))
        .collect()
}

fn flip_byte(path: &Path, at: u64) {
    let mut data = fs::read(path).unwrap();
    data[at as usize] ^= 0x40;
    fs::write(path, data).unwrap();
}

#[test]
fn appends_read_back_in_order_from_disk_and_cache() {
    let dir = TempDir::new("order");
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    let (a, b) = (msg(1), msg(2));
    assert_eq!(log.append([(&a, None), (&b, Some(99))]), 0..2);
    assert_eq!(log.append([(&msg(3), None)]), 2..3);
    writer.flush();
    assert_eq!(log.visible_end(), 3);
    let entries = read_all(&log, 0);
    assert_eq!(seqs(&entries), vec![0, 1, 2]);
    assert_eq!(
        (entries[1].msg.clone(), entries[1].deliver_at),
        (b, Some(99))
    );
    assert_eq!(entries[0].msg, a);
    let mut cached = Vec::new();
    assert_eq!(log.read_cached(0, 10, &mut cached), Ok(3));
    assert_eq!(cached, entries);
    assert_eq!(
        seqs(&read_all(&log, 1)),
        vec![1, 2],
        "a reader starts mid-segment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_share_fsyncs() {
    let dir = TempDir::new("group");
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 1 << 30);
    let before = writer.fsyncs();
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    let fsyncs_before = log.writer.fsyncs();
                    let range = append_all(&log, t * 100 + i..t * 100 + i + 1);
                    log.committed(range.end).await.unwrap();
                    assert!(log.synced_end() >= range.end, "returned before its fsync");
                    assert!(
                        log.writer.fsyncs() > fsyncs_before,
                        "no fsync after the append"
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let fsyncs = writer.fsyncs() - before;
    println!("group commit: 6400 appends by 64 waiting tasks took {fsyncs} fsyncs");
    assert!(fsyncs < 6400 / 4, "{fsyncs} fsyncs");
    let mut ids: Vec<u64> = read_all(&log, 0).iter().map(|e| e.msg.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..6400).collect::<Vec<_>>());
}

/// Publishers that wait for their commit come back together after each
/// round; the writer waits for them rather than letting them split into
/// two groups that take turns (which costs twice the fsyncs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_publishers_gather_into_the_next_round() {
    let dir = TempDir::new("gather");
    let writer = LogWriter::start_slow(policy(1), Duration::from_millis(20)).unwrap();
    let log = open(&writer, &dir, 1 << 30);
    let before = writer.fsyncs();
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    let range = append_all(&log, t * 100 + i..t * 100 + i + 1);
                    log.committed(range.end).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let fsyncs = writer.fsyncs() - before;
    println!("16 waiting publishers, 30 appends each: {fsyncs} fsyncs");
    // 30 rounds when every round holds all 16; alternating halves take 60.
    assert!(fsyncs <= 45, "{fsyncs} fsyncs for 480 appends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_over_three_logs_costs_three_fsyncs() {
    let dir = TempDir::new("three");
    let writer = LogWriter::start(policy(1)).unwrap();
    let logs: Vec<_> = (0..3)
        .map(|i| {
            TopicLog::open(
                &writer,
                dir.path(),
                &format!("t{i}"),
                LogConfig::new(1 << 20, 1024),
            )
            .unwrap()
        })
        .collect();
    let before = writer.fsyncs();
    let ends: Vec<u64> = {
        let _held = writer.hold_rounds();
        let mut ends = Vec::new();
        for log in &logs {
            ends.push(
                (0..100)
                    .map(|i| append_all(log, i..i + 1).end)
                    .max()
                    .unwrap(),
            );
        }
        ends
    };
    for (log, end) in logs.iter().zip(ends) {
        log.committed(end).await.unwrap();
    }
    assert_eq!(writer.fsyncs() - before, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_error_fails_exactly_its_batch_and_leaves_the_file_as_it_was() {
    let dir = TempDir::new("enospc");
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    let a = append_all(&log, 0..5);
    log.committed(a.end).await.unwrap();
    let files = segments(&log);
    let (b1, b2) = {
        let _held = writer.hold_rounds();
        writer.fail_write_after(0);
        (append_all(&log, 5..6), append_all(&log, 6..8))
    };
    let e1 = log.committed(b1.end).await.unwrap_err();
    assert_eq!(e1.kind(), io::ErrorKind::StorageFull);
    assert!(log.committed(b2.end).await.is_err());
    assert_eq!(segments(&log), files, "file back at its size");
    let c = append_all(&log, 8..9);
    log.committed(c.end).await.unwrap();
    assert_eq!(c.start, b2.end, "fresh seqs after the withdrawn ones");
    let entries = read_all(&log, 0);
    assert_eq!(seqs(&entries), vec![0, 1, 2, 3, 4, 8]);
    let mut cached = Vec::new();
    log.read_cached(0, 100, &mut cached).unwrap();
    assert_eq!(cached, entries, "withdrawn entries left the cache too");
    log.committed(a.end).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_error_after_a_roll_removes_the_new_segment() {
    let dir = TempDir::new("enospc-roll");
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 3 * RECORD + 10);
    log.committed(append_all(&log, 0..2).end).await.unwrap();
    let files = segments(&log);
    let failed = {
        let _held = writer.hold_rounds();
        // The first write fills segment 0; the one after the roll fails.
        writer.fail_write_after(1);
        append_all(&log, 2..7)
    };
    assert!(log.committed(failed.end).await.is_err());
    assert_eq!(segments(&log), files);
    let ok = append_all(&log, 7..12);
    log.committed(ok.end).await.unwrap();
    assert_eq!(seqs(&read_all(&log, 0)), vec![0, 1, 7, 8, 9, 10, 11]);
    let files = segments(&log);
    assert_eq!(
        files.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![0, 8, 11]
    );
    assert!(files.iter().all(|&(_, len)| len <= 3 * RECORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_appends_survive_a_crash() {
    let dir = TempDir::new("crash");
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 40 * RECORD);
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut confirmed = Vec::new();
                for i in 0..25 {
                    let id = t * 25 + i;
                    let range = append_all(&log, id..id + 1);
                    log.committed(range.end).await.unwrap();
                    confirmed.push(id);
                }
                confirmed
            })
        })
        .collect();
    let mut confirmed = Vec::new();
    for task in tasks {
        confirmed.extend(task.await.unwrap());
    }
    append_all(&log, 200..250); // never confirmed: may or may not survive
    drop(log);
    drop(writer); // no shutdown: as a crash

    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 40 * RECORD);
    let entries = read_all(&log, 0);
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(entries.iter().all(|e| e.msg == msg(e.msg.id)), "intact");
    let ids: std::collections::HashSet<u64> = entries.iter().map(|e| e.msg.id).collect();
    assert!(
        confirmed.iter().all(|id| ids.contains(id)),
        "a confirmed append was lost"
    );
    let end = log.end_seq();
    assert_eq!(end, entries.last().unwrap().seq + 1);
    assert_eq!(append_all(&log, 300..301).start, end);
}

#[test]
fn a_torn_tail_is_cut_and_appending_continues() {
    let dir = TempDir::new("torn");
    let writer = LogWriter::start(policy(1000)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    append_all(&log, 0..10);
    writer.shutdown();
    let (base, len) = segments(&log)[0];
    drop(log);
    let path = segment_path(&dir.path().join("t.log"), base);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&[0, 0, 0, 50, 1, 2, 3]).unwrap(); // half a record
    drop(file);

    let writer = LogWriter::start(policy(1000)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    assert_eq!(fs::metadata(&path).unwrap().len(), len);
    assert_eq!((log.end_seq(), log.corrupt_bytes()), (10, 7));
    append_all(&log, 10..11);
    writer.flush();
    assert_eq!(seqs(&read_all(&log, 0)), (0..11).collect::<Vec<_>>());
}

#[test]
fn a_corrupt_last_record_is_cut() {
    let dir = TempDir::new("corrupt-tail");
    let writer = LogWriter::start(policy(1000)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    append_all(&log, 0..10);
    writer.shutdown();
    drop(log);
    let path = segment_path(&dir.path().join("t.log"), 0);
    flip_byte(&path, 9 * RECORD + 30);

    let writer = LogWriter::start(policy(1000)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    assert_eq!((log.end_seq(), log.corrupt_bytes()), (9, RECORD));
    assert_eq!(fs::metadata(&path).unwrap().len(), 9 * RECORD);
    assert_eq!(seqs(&read_all(&log, 0)), (0..9).collect::<Vec<_>>());
}

#[test]
fn corrupt_records_in_the_middle_are_skipped_and_counted() {
    let dir = TempDir::new("corrupt-middle");
    let writer = LogWriter::start(policy(1000)).unwrap();
    let log = open(&writer, &dir, 5 * RECORD);
    append_all(&log, 0..10);
    writer.shutdown();
    drop(log);
    let log_dir = dir.path().join("t.log");
    // Record 2 of the older segment, and record 7 (of 5..10) in the last one.
    flip_byte(&segment_path(&log_dir, 0), 2 * RECORD + 20);
    flip_byte(&segment_path(&log_dir, 5), 2 * RECORD + 20);

    let writer = LogWriter::start(policy(1000)).unwrap();
    let log = open(&writer, &dir, 5 * RECORD);
    assert_eq!(
        (log.end_seq(), log.corrupt_bytes()),
        (10, 0),
        "intact records after it are kept"
    );
    assert_eq!(seqs(&read_all(&log, 0)), vec![0, 1, 3, 4, 5, 6, 8, 9]);
    assert_eq!(log.corrupt_bytes(), 2 * RECORD);
}

#[test]
fn a_missing_middle_segment_is_skipped() {
    let dir = TempDir::new("missing");
    let writer = LogWriter::start(policy(1000)).unwrap();
    let log = open(&writer, &dir, 3 * RECORD);
    append_all(&log, 0..12);
    writer.shutdown();
    assert_eq!(
        segments(&log).iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![0, 3, 6, 9]
    );
    drop(log);
    fs::remove_file(segment_path(&dir.path().join("t.log"), 3)).unwrap();

    let writer = LogWriter::start(policy(1000)).unwrap();
    let log = open(&writer, &dir, 3 * RECORD);
    assert_eq!(seqs(&read_all(&log, 0)), vec![0, 1, 2, 6, 7, 8, 9, 10, 11]);
    assert_eq!(seqs(&read_all(&log, 4)), vec![6, 7, 8, 9, 10, 11]);
}

#[test]
fn segments_roll_at_max_bytes_and_retention_deletes_passed_ones() {
    let dir = TempDir::new("retain");
    let writer = LogWriter::start(policy(1000)).unwrap();
    let log = open(&writer, &dir, 3 * RECORD);
    append_all(&log, 0..30);
    writer.flush();
    let files = segments(&log);
    assert_eq!(files.len(), 10);
    assert!(files
        .iter()
        .enumerate()
        .all(|(i, &(base, len))| base == 3 * i as u64 && len == 3 * RECORD));
    assert_eq!(log.disk_bytes(), 30 * RECORD);

    log.retain_from(7);
    writer.flush();
    assert_eq!(
        segments(&log)[0].0,
        6,
        "0..3 and 3..6 are gone, 6..9 holds 7"
    );
    assert_eq!((log.first_seq(), log.disk_bytes()), (6, 24 * RECORD));
    assert_eq!(seqs(&read_all(&log, 0)), (6..30).collect::<Vec<_>>());

    log.retain_from(u64::MAX);
    writer.flush();
    assert_eq!(
        segments(&log),
        vec![(27, 3 * RECORD)],
        "never the active segment"
    );
    append_all(&log, 30..31);
    writer.flush();
    assert_eq!(
        segments(&log),
        vec![(30, RECORD)],
        "27..30 is below u64::MAX too, once closed"
    );
    assert_eq!(seqs(&read_all(&log, 0)), vec![30]);
}

#[test]
fn a_record_larger_than_a_segment_gets_one_of_its_own() {
    let dir = TempDir::new("big");
    let writer = LogWriter::start(policy(1000)).unwrap();
    let log = open(&writer, &dir, 3 * RECORD);
    let big = Message {
        body: Bytes::from(vec![7u8; 500]),
        ..msg(1)
    };
    log.append([(&msg(0), None), (&big, None), (&msg(2), None)]);
    writer.flush();
    let files = segments(&log);
    assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(files[1].1, 8 + 35 + 500);
    assert_eq!(read_all(&log, 0)[1].msg, big);
}

#[test]
fn the_tail_cache_holds_only_visible_entries_within_its_bounds() {
    let dir = TempDir::new("cache");
    let writer = LogWriter::start(policy(1000)).unwrap();
    let cfg = LogConfig {
        cache_max_msgs: 10,
        ..LogConfig::new(1 << 20, 1024)
    };
    let log = TopicLog::open(&writer, dir.path(), "t", cfg).unwrap();
    let mut out = Vec::new();
    {
        let _held = writer.hold_rounds();
        append_all(&log, 0..30);
        assert_eq!(log.read_cached(25, 100, &mut out), Ok(0), "not visible yet");
    }
    writer.flush();
    assert_eq!(log.read_cached(0, 100, &mut out), Err(NotCached));
    assert_eq!(log.read_cached(25, 100, &mut out), Ok(5));
    assert_eq!(log.read_cached(20, 3, &mut out), Ok(3));
    assert_eq!(seqs(&out), vec![25, 26, 27, 28, 29, 20, 21, 22]);
    log.trim_cache_below(28);
    assert_eq!(log.read_cached(27, 100, &mut out), Err(NotCached));
    assert_eq!(log.read_cached(30, 100, &mut out), Ok(0));
}

async fn synced_end_reaches(log: &TopicLog, end: u64) {
    let waited = Instant::now();
    while log.synced_end() < end {
        assert!(waited.elapsed() < Duration::from_secs(10), "never synced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_policy_syncs_every_n_messages_or_after_the_timeout() {
    let dir = TempDir::new("lazy");
    let writer = LogWriter::start(SyncPolicy {
        sync_every: 10,
        sync_timeout: Duration::from_secs(3600),
    })
    .unwrap();
    let log = open(&writer, &dir, 1 << 20);
    log.committed(append_all(&log, 0..25).end).await.unwrap();
    synced_end_reaches(&log, 25).await; // 25 >= sync_every
    log.committed(append_all(&log, 25..28).end).await.unwrap();
    assert_eq!(log.visible_end(), 28, "visible after the write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        log.synced_end(),
        25,
        "3 < sync_every, long before the timeout"
    );

    let timed = LogWriter::start(SyncPolicy {
        sync_every: 1000,
        sync_timeout: Duration::from_millis(50),
    })
    .unwrap();
    let log = TopicLog::open(&timed, dir.path(), "timed", LogConfig::new(1 << 20, 1024)).unwrap();
    log.committed(append_all(&log, 0..3).end).await.unwrap();
    synced_end_reaches(&log, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_ends_with_an_error_once_nothing_will_come() {
    let dir = TempDir::new("stopped");
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    let seen = log.visible_end();
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_visible(seen).await })
    };
    log.committed(append_all(&log, 0..1).end).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 1);
    writer.shutdown();
    let late = append_all(&log, 1..2);
    assert!(log.committed(late.end).await.is_err());
    assert!(log.wait_visible(1).await.is_err());
    log.delete().unwrap();
    assert!(!dir.path().join("t.log").exists());
}

#[test]
fn topic_meta_is_written_and_read_back() {
    let dir = TempDir::new("meta-log");
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    assert_eq!(log.read_meta().unwrap(), None);
    let meta = TopicMeta {
        backlog_floor: 3,
        released_end: Some(9),
    };
    log.write_meta(&meta).unwrap();
    assert_eq!(log.read_meta().unwrap(), Some(meta));
    fs::write(log.dir().join("topic.meta"), b"garbage").unwrap();
    assert_eq!(
        log.read_meta().unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
}

/// Not an assertion: `cargo test -p nsqd --release --lib append_cost -- --nocapture`.
#[test]
fn append_cost() {
    let dir = TempDir::new("cost");
    let writer = LogWriter::start(policy(1_000_000)).unwrap();
    let log = open(&writer, &dir, 1 << 30);
    let m = Message {
        body: Bytes::from(vec![b'x'; 200]),
        ..msg(0)
    };
    let n = 200_000u32;
    let (cpu, wall) = cost_of(n, || {
        for _ in 0..n {
            log.append([(&m, None)]);
        }
    });
    println!("append of one 200 B message, back to back: {cpu:?} CPU ({wall:?} wall)");
    let mpub: Vec<(&Message, Option<i64>)> = vec![(&m, None); 200];
    let (cpu, wall) = cost_of(n, || {
        for _ in 0..n / 200 {
            log.append(mpub.iter().copied());
        }
    });
    println!("append in MPUBs of 200, back to back: {cpu:?} CPU ({wall:?} wall) per message");
    writer.flush();
    assert_eq!(log.visible_end(), 2 * n as u64);
}

/// The records of `log`'s cached seqs `[from, limit)`, as a link ships them.
fn shipped(log: &TopicLog, from: u64, limit: u64) -> BytesMut {
    let mut out = BytesMut::new();
    assert_eq!(
        log.encode_cached(from, limit, usize::MAX, &mut out),
        Ok(limit)
    );
    out
}

#[test]
fn a_replica_appends_its_origins_records_with_their_seqs_and_gaps() {
    let (odir, rdir) = (TempDir::new("enc-origin"), TempDir::new("enc-replica"));
    let writer = LogWriter::start(policy(1)).unwrap();
    let origin = open(&writer, &odir, 1 << 20);
    append_all(&origin, 0..10);
    let replica = open(&writer, &rdir, 1 << 20);
    assert_eq!(
        replica.append_encoded(&shipped(&origin, 0, 4)).unwrap(),
        0..4
    );
    // Seqs 4..6 never come (withdrawn on the origin, say); 6..10 do.
    assert_eq!(
        replica.append_encoded(&shipped(&origin, 6, 10)).unwrap(),
        6..10
    );
    assert_eq!(replica.end_seq(), 10);
    writer.flush();
    assert_eq!(replica.visible_end(), 10);
    let mut cached = Vec::new();
    assert_eq!(
        replica.read_cached(0, 10, &mut cached),
        Err(NotCached),
        "replica records skip the cache"
    );
    let entries = read_all(&replica, 0);
    assert_eq!(seqs(&entries), vec![0, 1, 2, 3, 6, 7, 8, 9]);
    assert_eq!(
        entries,
        read_all(&origin, 0)
            .into_iter()
            .filter(|e| !(4..6).contains(&e.seq))
            .collect::<Vec<_>>()
    );

    // Below the end, corrupt, torn, or not a message: refused, nothing taken.
    let again = shipped(&origin, 8, 10);
    let mut corrupt = shipped(&origin, 9, 10).to_vec();
    *corrupt.last_mut().unwrap() ^= 1;
    append_all(&origin, 10..12);
    let mut torn = shipped(&origin, 10, 12).to_vec();
    torn.pop();
    let not_a_message = TopicMeta::default().encode();
    for bad in [&again[..], &corrupt[..], &torn[..], &not_a_message[..]] {
        let err = replica.append_encoded(bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(replica.end_seq(), 10);
    }
    assert_eq!(replica.append_encoded(&[]).unwrap(), 10..10);

    // The end is the file's truth after a reopen, and skip_to moves past seqs
    // the replica was told are absent.
    writer.shutdown();
    drop(replica);
    let writer = LogWriter::start(policy(1)).unwrap();
    let replica = open(&writer, &rdir, 1 << 20);
    assert_eq!(replica.end_seq(), 10);
    replica.skip_to(15);
    replica.skip_to(12);
    assert_eq!(replica.end_seq(), 15);
    let err = replica
        .append_encoded(&shipped(&origin, 10, 12))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn encode_cached_ships_pending_records_within_its_bounds() {
    let dir = TempDir::new("enc-bounds");
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = TopicLog::open(
        &writer,
        dir.path(),
        "t",
        LogConfig {
            cache_max_msgs: 8,
            ..LogConfig::new(1 << 20, 1024)
        },
    )
    .unwrap();
    let _held = writer.hold_rounds();
    append_all(&log, 0..6);
    assert_eq!(log.visible_end(), 0, "nothing written yet");
    let mut out = BytesMut::new();
    assert_eq!(
        log.encode_cached(0, 100, usize::MAX, &mut out),
        Ok(6),
        "pending records ship; the end bounds the limit"
    );
    assert_eq!(out.len() as u64, 6 * RECORD);
    out.clear();
    assert_eq!(log.encode_cached(2, 4, usize::MAX, &mut out), Ok(4));
    assert_eq!(out.len() as u64, 2 * RECORD);
    out.clear();
    assert_eq!(
        log.encode_cached(0, 6, 2 * RECORD as usize, &mut out),
        Ok(2),
        "stops once past max_bytes"
    );
    out.clear();
    assert_eq!(
        log.encode_cached(0, 6, 1, &mut out),
        Ok(1),
        "at least one goes"
    );
    out.clear();
    assert_eq!(log.encode_cached(6, 6, usize::MAX, &mut out), Ok(6));
    assert!(out.is_empty());
    append_all(&log, 6..12);
    assert_eq!(
        log.encode_cached(0, 12, usize::MAX, &mut out),
        Err(NotCached),
        "0..4 left the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_fails_what_is_unwritten_and_keeps_the_files() {
    let dir = TempDir::new("close");
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    let written = append_all(&log, 0..3);
    log.committed(written.end).await.unwrap();
    let unwritten = {
        let _held = writer.hold_rounds();
        let unwritten = append_all(&log, 3..5);
        log.close();
        unwritten
    };
    assert!(log.committed(unwritten.end).await.is_err());
    assert!(log.wait_visible(log.visible_end()).await.is_err());
    writer.shutdown();
    drop(log);
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    assert_eq!(log.end_seq(), 3);
    assert_eq!(seqs(&read_all(&log, 0)), vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_behind_a_batch_in_flight_becomes_visible_with_it() {
    let dir = TempDir::new("skip-in-flight");
    let writer = LogWriter::start(policy(1)).unwrap();
    let log = open(&writer, &dir, 1 << 20);
    // Each skip lands with records pending, with a batch in flight, or with
    // neither; all three must end up visible without another append.
    for i in 0..300u64 {
        let appended = append_all(&log, i..i + 1);
        if i % 3 == 1 {
            tokio::task::yield_now().await;
        }
        let end = appended.end + 2 + i % 5;
        log.skip_to(end);
        tokio::time::timeout(Duration::from_secs(10), log.committed(end))
            .await
            .expect("a skip never waits for a later append")
            .unwrap();
        assert_eq!(log.end_seq(), end);
    }
}
