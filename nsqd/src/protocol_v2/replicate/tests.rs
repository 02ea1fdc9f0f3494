//! The peer side of a link, driven by an origin made of the real log engine
//! (a topic log and a channel journal in a directory of its own) that speaks
//! REPL over a real connection to a real nsqd on loopback.

use crate::log::{Journal, LogConfig, LogWriter, SyncPolicy, TempDir, TopicLog};
use crate::message::Message;
use crate::{Nsqd, Options};
use bytes::{Bytes, BytesMut};
use nsq::api::Stats;
use nsq::conn::Connection;
use nsq::protocol::repl::{ReplHello, ToOrigin, ToPeer};
use nsq::protocol::{encode_frame, FrameType};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ORIGIN_UID: &str = "0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

fn peer_options(data: &Path) -> Options {
    Options {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        broadcast_address: "127.0.0.1".into(),
        data_path: data.to_path_buf(),
        mem_queue_size: 0,
        ..Options::default()
    }
}

async fn start_peer(data: &Path) -> Nsqd {
    Nsqd::start(peer_options(data))
        .await
        .expect("the peer starts")
}

async fn stats(nsqd: &Nsqd) -> Stats {
    let url = format!("http://{}/stats?format=json", nsqd.http_addr().unwrap());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// The origin's side: its own log engine, and a link to the peer.
struct Origin {
    _dir: TempDir,
    writer: LogWriter,
    log: Arc<TopicLog>,
    journal: Arc<Journal>,
}

impl Origin {
    fn new(tag: &str) -> Origin {
        let dir = TempDir::new(tag);
        let writer = LogWriter::start(SyncPolicy {
            sync_every: 1,
            sync_timeout: Duration::from_secs(60),
        })
        .unwrap();
        let log =
            TopicLog::open(&writer, dir.path(), "t", LogConfig::new(1 << 20, 1 << 20)).unwrap();
        let journal = Journal::open(&writer, &log, "c", 0).unwrap();
        Origin {
            _dir: dir,
            writer,
            log,
            journal,
        }
    }

    fn publish(&self, n: u64) {
        let msgs: Vec<Message> = (0..n)
            .map(|i| Message {
                id: 1000 + i,
                timestamp: 7,
                attempts: 0,
                body: Bytes::from(format!("body {i}")),
            })
            .collect();
        self.log.append(msgs.iter().map(|m| (m, None)));
        self.writer.flush();
    }

    fn records(&self, from: u64, limit: u64) -> Bytes {
        let mut out = BytesMut::new();
        assert_eq!(
            self.log.encode_cached(from, limit, usize::MAX, &mut out),
            Ok(limit)
        );
        out.freeze()
    }
}

struct Link {
    conn: Connection,
}

impl Link {
    /// Dials the peer and sends REPL; the peer's first frame.
    async fn open(peer: &Nsqd, uid: &str, version: u32) -> (Link, FrameType, Bytes) {
        let config = nsq::Config::default();
        let mut conn = Connection::connect(&peer.tcp_addr().to_string(), &config)
            .await
            .unwrap();
        let hello = serde_json::to_vec(&ReplHello {
            uid: uid.into(),
            address: "127.0.0.1:4150".into(),
            hostname: "origin-host".into(),
            version: "test".into(),
            retired_fence: 0,
        })
        .unwrap();
        let mut cmd = format!("REPL {version}\n").into_bytes();
        cmd.extend_from_slice(&(hello.len() as u32).to_be_bytes());
        cmd.extend_from_slice(&hello);
        conn.writer.push_encoded(&cmd);
        conn.writer.flush().await.unwrap();
        let mut link = Link { conn };
        let (kind, data) = link.recv().await;
        (link, kind, data)
    }

    async fn hello(peer: &Nsqd) -> (Link, ToOrigin) {
        let (link, kind, data) = Link::open(peer, ORIGIN_UID, 1).await;
        assert_eq!(
            kind,
            FrameType::Response,
            "{}",
            String::from_utf8_lossy(&data)
        );
        (link, ToOrigin::decode(data).unwrap())
    }

    async fn send(&mut self, frames: &[ToPeer]) {
        let (mut data, mut wire) = (BytesMut::new(), BytesMut::new());
        for frame in frames {
            data.clear();
            frame.encode(&mut data);
            encode_frame(&mut wire, FrameType::Response, &data);
        }
        self.conn.writer.push_encoded(&wire);
        self.conn.writer.flush().await.unwrap();
    }

    async fn recv(&mut self) -> (FrameType, Bytes) {
        let frame = tokio::time::timeout(WAIT, self.conn.reader.read_frame())
            .await
            .expect("the peer answers")
            .expect("a frame");
        (frame.frame_type, frame.data)
    }

    /// Reads until each of `wants` came, in any order (`W` waits for the
    /// disk, the rest does not); every frame must be a response.
    async fn expect(&mut self, wants: &[ToOrigin]) {
        let mut missing = wants.to_vec();
        while !missing.is_empty() {
            let (kind, data) = self.recv().await;
            assert_eq!(
                kind,
                FrameType::Response,
                "{}",
                String::from_utf8_lossy(&data)
            );
            let got = ToOrigin::decode(data).unwrap();
            missing.retain(|want| *want != got);
        }
    }

    /// Whether the peer closes the link within [`WAIT`]. Frames before the
    /// end are passed over: a `Stored` for messages sent earlier comes
    /// once they are on the peer's disk, which under load can be after
    /// what the test waited for.
    async fn closes(&mut self) -> bool {
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(end, self.conn.reader.read_frame()).await {
                Ok(Ok(_)) => continue,
                Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }

    /// The error frame the peer ends the link with, then EOF.
    async fn expect_error(&mut self) -> String {
        loop {
            let (kind, data) = self.recv().await;
            if kind == FrameType::Error {
                assert!(self.closes().await, "the link closes after an error");
                return String::from_utf8_lossy(&data).into_owned();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stores_the_origins_messages_and_follows_its_channel() {
    let data = tempfile::tempdir().unwrap();
    let peer = start_peer(data.path()).await;
    let origin = Origin::new("repl-origin");
    origin.publish(10);
    origin.journal.fin_range(0, 3);
    origin.journal.requeue(5, 2, Some(1));

    let (mut link, hello) = Link::hello(&peer).await;
    let ToOrigin::Hello { uid, topics, .. } = hello else {
        panic!("a hello first, got {hello:?}");
    };
    assert!(crate::replica::valid_uid(&uid) && uid != ORIGIN_UID);
    assert!(topics.is_empty());
    let snapshot = origin.journal.take_tap(true).snapshot.unwrap();
    link.send(&[
        ToPeer::Open {
            tid: 1,
            name: "t".into(),
            from: 0,
        },
        ToPeer::Msgs {
            tid: 1,
            end: 10,
            records: origin.records(0, 10),
        },
        ToPeer::Channel {
            tid: 1,
            cid: 4,
            name: "c".into(),
            paused: true,
            max_attempts: 0,
            msg_ttl_ms: 0,
            snapshot,
        },
        ToPeer::TopicState {
            tid: 1,
            backlog_floor: 10,
            released_end: None,
        },
        ToPeer::SyncDone,
        ToPeer::Tick { n: 1, unix_ns: 0 },
    ])
    .await;
    link.expect(&[
        ToOrigin::Stored { tid: 1, end: 10 },
        ToOrigin::Applied { n: 1 },
    ])
    .await;

    let s = stats(&peer).await;
    assert_eq!(s.topics, Some(vec![]), "replicas are not the peer's topics");
    let replicas = s.replicas.expect("a replicas section");
    assert_eq!(replicas.len(), 1);
    let r = &replicas[0];
    assert_eq!(
        (r.origin.as_str(), r.origin_id.as_str(), r.connected),
        ("127.0.0.1:4150", ORIGIN_UID, true)
    );
    assert_eq!((r.topics[0].stored_seq, r.topics[0].backlog), (10, 0));
    let c = &r.topics[0].channels[0];
    assert_eq!((c.channel_name.as_str(), c.depth, c.paused), ("c", 7, true));
    assert_eq!(r.depth, 7);

    // Progress: three more finished, one published and sent.
    origin.journal.fin_range(3, 6);
    origin.publish(1);
    let deltas = origin.journal.take_tap(false).deltas;
    link.send(&[
        ToPeer::Deltas {
            tid: 1,
            cid: 4,
            records: deltas,
        },
        ToPeer::Msgs {
            tid: 1,
            end: 11,
            records: origin.records(10, 11),
        },
        ToPeer::TopicState {
            tid: 1,
            backlog_floor: 11,
            released_end: None,
        },
        ToPeer::Tick { n: 2, unix_ns: 0 },
        ToPeer::Ping { n: 9 },
    ])
    .await;
    link.expect(&[
        ToOrigin::Stored { tid: 1, end: 11 },
        ToOrigin::Applied { n: 2 },
        ToOrigin::Pong { n: 9 },
    ])
    .await;
    assert_eq!(stats(&peer).await.replicas.unwrap()[0].depth, 5);
    drop(link);

    // A restarted peer has it all, and tells the next link where it is.
    peer.shutdown().await;
    let peer = start_peer(data.path()).await;
    let r = &stats(&peer).await.replicas.unwrap()[0];
    assert_eq!(
        (r.connected, r.depth, r.origin.as_str()),
        (false, 5, "127.0.0.1:4150")
    );
    let (_link, hello) = Link::hello(&peer).await;
    let ToOrigin::Hello { topics, .. } = hello else {
        panic!()
    };
    assert_eq!(topics, vec![("t".to_string(), 11)]);
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_done_drops_what_the_origin_no_longer_has() {
    let data = tempfile::tempdir().unwrap();
    let peer = start_peer(data.path()).await;
    let origin = Origin::new("repl-drop");
    origin.publish(3);
    let (mut link, _) = Link::hello(&peer).await;
    let snapshot = origin.journal.take_tap(true).snapshot.unwrap();
    link.send(&[
        ToPeer::Open {
            tid: 1,
            name: "t".into(),
            from: 0,
        },
        ToPeer::Open {
            tid: 2,
            name: "gone".into(),
            from: 0,
        },
        ToPeer::Msgs {
            tid: 1,
            end: 3,
            records: origin.records(0, 3),
        },
        ToPeer::Channel {
            tid: 1,
            cid: 1,
            name: "c".into(),
            paused: false,
            max_attempts: 0,
            msg_ttl_ms: 0,
            snapshot: snapshot.clone(),
        },
        ToPeer::Channel {
            tid: 1,
            cid: 2,
            name: "old".into(),
            paused: false,
            max_attempts: 0,
            msg_ttl_ms: 0,
            snapshot: snapshot.clone(),
        },
        ToPeer::Tick { n: 1, unix_ns: 0 },
    ])
    .await;
    link.expect(&[ToOrigin::Applied { n: 1 }]).await;
    let replica_dir = data.path().join("replicas").join(ORIGIN_UID);
    assert!(replica_dir.join("gone.log").is_dir());
    assert!(replica_dir.join("t.log/old.journal").is_file());

    // A newer link takes over; it names "t" and "c" only.
    let (mut newer, hello) = Link::hello(&peer).await;
    let ToOrigin::Hello { mut topics, .. } = hello else {
        panic!()
    };
    topics.sort();
    assert_eq!(topics, vec![("gone".to_string(), 0), ("t".to_string(), 3)]);
    assert!(link.closes().await, "the older link is closed");
    newer
        .send(&[
            ToPeer::Open {
                tid: 7,
                name: "t".into(),
                from: 3,
            },
            ToPeer::Channel {
                tid: 7,
                cid: 1,
                name: "c".into(),
                paused: false,
                max_attempts: 0,
                msg_ttl_ms: 0,
                snapshot,
            },
            ToPeer::SyncDone,
            ToPeer::Tick { n: 1, unix_ns: 0 },
        ])
        .await;
    newer.expect(&[ToOrigin::Applied { n: 1 }]).await;
    assert!(!replica_dir.join("gone.log").exists());
    assert!(!replica_dir.join("t.log/old.journal").exists());
    assert!(replica_dir.join("t.log/c.journal").is_file());
    let r = &stats(&peer).await.replicas.unwrap()[0];
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].channels.len(), 1);

    // Dropping a channel and a topic by name.
    newer
        .send(&[
            ToPeer::DropChannel { tid: 7, cid: 1 },
            ToPeer::DropTopic { tid: 7 },
            ToPeer::Tick { n: 2, unix_ns: 0 },
        ])
        .await;
    newer.expect(&[ToOrigin::Applied { n: 2 }]).await;
    assert!(!replica_dir.join("t.log").exists());
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_lets_go_of_segments_every_channel_finished() {
    let data = tempfile::tempdir().unwrap();
    let peer = Nsqd::start(Options {
        max_bytes_per_file: 512,
        ..peer_options(data.path())
    })
    .await
    .unwrap();
    let origin = Origin::new("repl-retain");
    origin.publish(100);
    let (mut link, _) = Link::hello(&peer).await;
    link.send(&[
        ToPeer::Open {
            tid: 1,
            name: "t".into(),
            from: 0,
        },
        ToPeer::Msgs {
            tid: 1,
            end: 100,
            records: origin.records(0, 100),
        },
        ToPeer::Channel {
            tid: 1,
            cid: 1,
            name: "c".into(),
            paused: false,
            max_attempts: 0,
            msg_ttl_ms: 0,
            snapshot: origin.journal.take_tap(true).snapshot.unwrap(),
        },
        ToPeer::TopicState {
            tid: 1,
            backlog_floor: 100,
            released_end: None,
        },
        ToPeer::Tick { n: 1, unix_ns: 0 },
    ])
    .await;
    link.expect(&[
        ToOrigin::Stored { tid: 1, end: 100 },
        ToOrigin::Applied { n: 1 },
    ])
    .await;
    let log_dir = data.path().join("replicas").join(ORIGIN_UID).join("t.log");
    let segments = || {
        std::fs::read_dir(&log_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count()
    };
    assert!(segments() > 5, "{} segments", segments());
    origin.journal.fin_range(0, 100);
    link.send(&[
        ToPeer::Deltas {
            tid: 1,
            cid: 1,
            records: origin.journal.take_tap(false).deltas,
        },
        ToPeer::Tick { n: 2, unix_ns: 0 },
    ])
    .await;
    link.expect(&[ToOrigin::Applied { n: 2 }]).await;
    assert_eq!(stats(&peer).await.replicas.unwrap()[0].depth, 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    while segments() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} segments left",
            segments()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_links_are_refused_and_only_they_close() {
    let data = tempfile::tempdir().unwrap();
    let peer = start_peer(data.path()).await;

    let (link, kind, text) = Link::open(&peer, ORIGIN_UID, 2).await;
    assert_eq!(kind, FrameType::Error);
    assert!(String::from_utf8_lossy(&text).starts_with("E_INVALID REPL version 2 not supported"));
    drop(link);
    let (_, kind, text) = Link::open(&peer, "not-a-uid", 1).await;
    assert_eq!(
        (kind, &text[..]),
        (
            FrameType::Error,
            &b"E_BAD_BODY REPL uid is not 32 lowercase hex digits"[..]
        )
    );
    let own = std::fs::read_to_string(data.path().join("nsqd.uid")).unwrap();
    let (_, kind, text) = Link::open(&peer, own.trim(), 1).await;
    assert_eq!(
        (kind, &text[..]),
        (
            FrameType::Error,
            &b"E_INVALID REPL from this nsqd itself"[..]
        )
    );

    let origin = Origin::new("repl-bad");
    origin.publish(2);
    let mut corrupt = origin.records(0, 2).to_vec();
    *corrupt.last_mut().unwrap() ^= 1;
    let bad_sessions: Vec<(Vec<ToPeer>, &str)> = vec![
        (
            vec![ToPeer::Msgs {
                tid: 9,
                end: 1,
                records: Bytes::new(),
            }],
            "E_INVALID REPL unknown topic 9",
        ),
        (
            vec![
                ToPeer::Open {
                    tid: 1,
                    name: "t".into(),
                    from: 0,
                },
                ToPeer::Msgs {
                    tid: 1,
                    end: 2,
                    records: corrupt.into(),
                },
            ],
            "E_INVALID REPL the record at byte 49 is corrupt or too large",
        ),
        (
            vec![
                ToPeer::Open {
                    tid: 1,
                    name: "t".into(),
                    from: 0,
                },
                ToPeer::Deltas {
                    tid: 1,
                    cid: 3,
                    records: Bytes::new(),
                },
            ],
            "E_INVALID REPL unknown channel 1/3",
        ),
        (
            vec![
                ToPeer::Open {
                    tid: 1,
                    name: "t".into(),
                    from: 0,
                },
                ToPeer::Channel {
                    tid: 1,
                    cid: 1,
                    name: "c".into(),
                    paused: false,
                    max_attempts: 0,
                    msg_ttl_ms: 0,
                    snapshot: Bytes::from_static(b"junk"),
                },
            ],
            "E_INVALID REPL not one intact journal snapshot",
        ),
    ];
    for (frames, want) in bad_sessions {
        let (mut link, _) = Link::hello(&peer).await;
        link.send(&frames).await;
        assert_eq!(link.expect_error().await, want);
    }
    // A frame of unknown kind, and a frame that is not a response.
    let (mut link, _) = Link::hello(&peer).await;
    let mut wire = BytesMut::new();
    encode_frame(&mut wire, FrameType::Response, b"Zjunk");
    link.conn.writer.push_encoded(&wire);
    link.conn.writer.flush().await.unwrap();
    assert_eq!(
        link.expect_error().await,
        "E_INVALID REPL unknown replication frame kind 'Z'"
    );
    let (mut link, _) = Link::hello(&peer).await;
    let mut wire = BytesMut::new();
    encode_frame(&mut wire, FrameType::Message, b"I\0\0\0\0\0\0\0\0");
    link.conn.writer.push_encoded(&wire);
    link.conn.writer.flush().await.unwrap();
    assert_eq!(
        link.expect_error().await,
        "E_INVALID REPL unexpected Message frame"
    );

    // The node itself is fine: it still takes a publish.
    let mut conn = Connection::connect(&peer.tcp_addr().to_string(), &nsq::Config::default())
        .await
        .unwrap();
    conn.writer
        .send(&nsq::protocol::Command::Pub {
            topic: "alive".into(),
            body: Bytes::from_static(b"x"),
        })
        .await
        .unwrap();
    conn.expect_ok(&nsq::Config::default()).await.unwrap();
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_mode_peer_refuses_repl() {
    let data = tempfile::tempdir().unwrap();
    let peer = Nsqd::start(Options {
        mem_queue_size: 10_000,
        ..peer_options(data.path())
    })
    .await
    .unwrap();
    let (_, kind, text) = Link::open(&peer, ORIGIN_UID, 1).await;
    assert_eq!(
        (kind, &text[..]),
        (
            FrameType::Error,
            &b"E_INVALID REPL needs --mem-queue-size=0 on the peer"[..]
        )
    );
    assert_eq!(stats(&peer).await.replicas, None);
    peer.shutdown().await;
}
