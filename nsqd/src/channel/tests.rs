//! The topic and channel state machines without sockets: put, take, FIN,
//! REQ, timeout, deferral, pause and empty, in each storage mode. A memory
//! topic copies messages into its channels; a log topic appends them once
//! and its channels read the log, which makes them visible after a commit
//! round, so takes here retry for a moment.

use super::*;
use crate::client_conn::{ClientConn, ClientSettings};
use crate::diskqueue::DiskConfig;
use crate::log::{SyncPolicy, TempDir};
use crate::topic::Topic;

#[derive(Debug, Clone, Copy)]
enum Mode {
    Memory,
    /// `--mem-queue-size=0`: a log fsynced every `--sync-every`.
    Log,
    /// `--mem-queue-size=0 --sync-every=1`.
    Durable,
}

const MODES: [Mode; 3] = [Mode::Memory, Mode::Log, Mode::Durable];

struct Fixture {
    topic: Arc<Topic>,
    writer: Option<Arc<LogWriter>>,
    config: ChannelConfig,
    _dir: TempDir,
}

impl Fixture {
    fn new(mode: Mode) -> Fixture {
        let dir = TempDir::new("state");
        let writer = match mode {
            Mode::Memory => None,
            Mode::Log | Mode::Durable => Some(Arc::new(
                LogWriter::start(SyncPolicy {
                    sync_every: if matches!(mode, Mode::Durable) {
                        1
                    } else {
                        100
                    },
                    sync_timeout: Duration::from_millis(50),
                })
                .unwrap(),
            )),
        };
        let config = ChannelConfig {
            mem_queue_size: if matches!(mode, Mode::Memory) { 100 } else { 0 },
            max_msg_timeout: Duration::from_secs(60),
            max_channel_consumers: 0,
            e2e_percentiles: Arc::from(Vec::new()),
            e2e_window: Duration::from_secs(60),
            disk: DiskConfig {
                dir: dir.path().to_path_buf(),
                max_bytes_per_file: 1 << 20,
                sync_every: 100,
                max_msg_size: 1 << 20,
                unsynced: Default::default(),
            },
            log_writer: writer.clone(),
            max_attempts: 0,
            msg_ttl: Duration::ZERO,
            replicated: false,
        };
        let topic = Topic::new("t", config.clone()).unwrap();
        topic.start();
        Fixture {
            topic,
            writer,
            config,
            _dir: dir,
        }
    }

    /// A clean stop and start of the topic on the same files, as nsqd's.
    fn restart(&mut self) {
        self.topic.shutdown().unwrap();
        if let Some(writer) = &self.writer {
            writer.flush();
        }
        self.topic = Topic::new("t", self.config.clone()).unwrap();
    }

    fn channel(&self, name: &str) -> Arc<Channel> {
        self.topic.get_or_create_channel(name).unwrap().0
    }

    async fn publish(&self, body: &str) {
        self.publish_item(Item::One(message(body))).await;
    }

    async fn publish_item(&self, item: Item) {
        let len = item.len();
        if let Some(end) = self.topic.put(item, len).unwrap() {
            self.topic.committed(end).await.unwrap();
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            writer.shutdown();
        }
    }
}

fn message(body: &str) -> Message {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    Message {
        id: NEXT.fetch_add(1, Ordering::Relaxed),
        timestamp: unix_nanos(),
        attempts: 0,
        body: body.to_string().into(),
    }
}

fn consumer(id: u64) -> ClientConn {
    let settings = ClientSettings {
        client_id: format!("c{id}"),
        hostname: "test".into(),
        user_agent: "test".into(),
        heartbeat_interval: None,
        output_buffer_size: 16 * 1024,
        output_buffer_timeout: None,
        msg_timeout: Duration::from_secs(60),
        sample_rate: 0,
        deflate: false,
        snappy: false,
    };
    ClientConn::new(id, "test".into(), settings, 0)
}

/// (id, body, attempts) of what one take handed out.
fn take(
    channel: &Channel,
    client: &ClientConn,
    max: usize,
    timeout: Duration,
) -> Vec<(u64, String, u16)> {
    let mut out = Vec::new();
    channel.take(client, max, timeout, 0, |m| {
        out.push((
            m.id,
            String::from_utf8_lossy(&m.body).into_owned(),
            m.attempts,
        ));
        true
    });
    out
}

/// Takes until `n` messages came (within two seconds).
async fn take_n(
    channel: &Channel,
    client: &ClientConn,
    n: usize,
    timeout: Duration,
) -> Vec<(u64, String, u16)> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(take(channel, client, n - out.len(), timeout));
        assert!(Instant::now() < deadline, "took {out:?}, wanted {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out
}

/// Asserts that nothing can be taken for a while.
async fn nothing_for(channel: &Channel, client: &ClientConn, wait: Duration) {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let got = take(channel, client, 10, Duration::from_secs(60));
        assert!(got.is_empty(), "took {got:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn bodies(taken: &[(u64, String, u16)]) -> Vec<&str> {
    taken.iter().map(|(_, b, _)| b.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_fin_and_req_in_order_with_attempts() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let c = f.channel("c");
        let client = consumer(1);
        for body in ["a", "b", "c"] {
            f.publish(body).await;
        }
        let first = take_n(&c, &client, 2, Duration::from_secs(60)).await;
        assert_eq!(bodies(&first), ["a", "b"], "{mode:?}");
        assert!(first.iter().all(|(_, _, attempts)| *attempts == 1));
        c.finish(1, first[0].0).unwrap();
        assert_eq!(c.finish(1, first[0].0), Err(InFlightError::NotInFlight));
        assert_eq!(c.finish(2, first[1].0), Err(InFlightError::NotOwner));
        // REQ 0: back in line (a memory queue at its end, as upstream's; a
        // cursor ahead of what it has not read yet).
        c.requeue(1, first[1].0, Duration::ZERO).unwrap();
        let mut again = take_n(&c, &client, 2, Duration::from_secs(60)).await;
        again.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(bodies(&again), ["b", "c"], "{mode:?}");
        assert_eq!(
            (again[0].2, again[1].2),
            (2, 1),
            "{mode:?}: attempts count deliveries"
        );
        let stats = c.stats(false, "");
        assert_eq!((stats.in_flight_count, stats.depth), (2, 0), "{mode:?}");
        assert_eq!(stats.requeue_count, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_deferrals_come_back_when_due() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let c = f.channel("c");
        let client = consumer(1);
        f.publish("slow").await;
        f.publish("later").await;
        let taken = take_n(&c, &client, 2, Duration::from_millis(100)).await;
        // "later" is REQ'd with a delay before its timeout falls.
        c.requeue(1, taken[1].0, Duration::from_millis(300))
            .unwrap();
        assert_eq!(c.stats(false, "").deferred_count, 1, "{mode:?}");
        let back = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        assert_eq!(bodies(&back), ["slow"], "{mode:?}: timed out");
        assert_eq!(back[0].2, 2);
        assert_eq!(c.stats(false, "").timeout_count, 1);
        let started = Instant::now();
        let due = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        assert_eq!(bodies(&due), ["later"], "{mode:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{mode:?}: not before its delay"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_publish_waits_its_time() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let c = f.channel("c");
        let client = consumer(1);
        let due = Instant::now() + Duration::from_millis(300);
        f.publish_item(Item::Deferred(message("deferred"), due))
            .await;
        f.publish("now").await;
        let first = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        assert_eq!(bodies(&first), ["now"], "{mode:?}");
        let second = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        assert_eq!(bodies(&second), ["deferred"], "{mode:?}");
        assert!(Instant::now() >= due - Duration::from_millis(5), "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_messages_and_empty_drops_them() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let c = f.channel("c");
        let client = consumer(1);
        f.publish("a").await;
        f.publish("b").await;
        c.pause();
        nothing_for(&c, &client, Duration::from_millis(50)).await;
        c.unpause();
        let taken = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        c.empty().unwrap();
        let stats = c.stats(false, "");
        assert_eq!((stats.depth, stats.in_flight_count), (0, 0), "{mode:?}");
        assert_eq!(c.finish(1, taken[0].0), Err(InFlightError::NotInFlight));
        nothing_for(&c, &client, Duration::from_millis(50)).await;
        f.publish("c").await;
        let after = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        assert_eq!(bodies(&after), ["c"], "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_keeps_messages_until_it_has_channels_and_while_paused() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let client = consumer(1);
        f.publish("early").await;
        let stats = f.topic.stats("", false, "").unwrap();
        assert_eq!(stats.depth, 1, "{mode:?}: waits in the topic");
        // The first channel gets the backlog; one created later does not.
        let first = f.channel("first");
        let got = take_n(&first, &client, 1, Duration::from_secs(60)).await;
        assert_eq!(bodies(&got), ["early"], "{mode:?}");
        let second = f.channel("second");
        f.topic.pause();
        f.publish("held").await;
        nothing_for(&second, &client, Duration::from_millis(50)).await;
        assert_eq!(f.topic.stats("", false, "").unwrap().depth, 1, "{mode:?}");
        f.topic.unpause();
        for channel in [&first, &second] {
            let got = take_n(channel, &client, 1, Duration::from_secs(60)).await;
            assert_eq!(bodies(&got), ["held"], "{mode:?}");
        }
        // Emptying the topic drops what it held, not what channels have.
        f.topic.pause();
        f.publish("dropped").await;
        f.topic.empty().unwrap();
        f.topic.unpause();
        nothing_for(&first, &client, Duration::from_millis(50)).await;
    }
}

/// At nsqd's start a topic is opened before its channels are: the log's
/// retention must not take the topic's release point for every channel's
/// and let go of segments they have not read (it once did, when its first
/// tick came before the channels).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_topic_keeps_its_segments_until_its_channels_are_back() {
    let mut f = Fixture::new(Mode::Durable);
    f.config.disk.max_bytes_per_file = 4096;
    f.restart();
    f.topic.start();
    let _c = f.channel("c");
    for i in 0..300 {
        f.publish(&format!("m{i:03}")).await;
    }
    // Reopened, released up to 300, without its channel for more than a
    // retention tick.
    f.restart();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let c = f.channel("c");
    f.topic.start();
    let got = take_n(&c, &consumer(1), 300, Duration::from_secs(60)).await;
    let want: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    assert_eq!(bodies(&got), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_consumer_gives_its_messages_back() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let c = f.channel("c");
        let (one, two) = (Arc::new(consumer(1)), consumer(2));
        c.add_client(one.clone()).unwrap();
        f.publish("m").await;
        take_n(&c, &one, 1, Duration::from_secs(60)).await;
        c.remove_client(1);
        let got = take_n(&c, &two, 1, Duration::from_secs(60)).await;
        assert_eq!((got[0].1.as_str(), got[0].2), ("m", 2), "{mode:?}");
    }
}

/// A consumer subscribed over a real loopback socket (so that a publish can
/// hand it messages), with RDY `rdy`; and the client's end of the socket.
async fn subscribed(
    c: &Channel,
    id: u64,
    rdy: i64,
) -> (
    Arc<ClientConn>,
    crate::stream::ReadHalf,
    tokio::net::TcpStream,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (ours, _) = listener.accept().await.unwrap();
    let (read, write) = nsq::transport::split(ours);
    let client = Arc::new(consumer(id));
    client.subscribed(Arc::new(crate::output::Output::new(write, None)));
    client.set_ready_count(rdy);
    c.add_client(client.clone()).unwrap();
    (client, read, peer)
}

/// (depth, in flight) of a channel.
fn held(c: &Channel) -> (i64, i64) {
    let s = c.stats(false, "");
    (s.depth, s.in_flight_count)
}

/// A publish hands messages only to a consumer that may take them now: not
/// to one whose session has closed (its messages were given back already,
/// and these would sit in flight until they timed out), nor to one that
/// sent CLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hand_over_skips_closed_and_closing_consumers() {
    for case in ["closed", "closing", "open"] {
        let f = Fixture::new(Mode::Memory);
        let c = f.channel("c");
        let (client, _read, _peer) = subscribed(&c, 1, 10).await;
        match case {
            "closed" => client.close(),
            "closing" => client.start_closing(),
            _ => {}
        }
        f.publish("m").await;
        let expected = if case == "open" { (0, 1) } else { (1, 0) };
        assert_eq!(
            held(&c),
            expected,
            "(depth, in flight) with a {case} consumer"
        );
    }
}

/// A batch handed over is spread over the waiting consumers, a share each,
/// as their competing pumps would have spread it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hand_over_spreads_a_batch_over_the_waiting_consumers() {
    use bytes::BufMut;
    let f = Fixture::new(Mode::Memory);
    let c = f.channel("c");
    let mut consumers = Vec::new();
    for id in 1..=3 {
        consumers.push(subscribed(&c, id, 100).await);
    }
    let mut records = bytes::BytesMut::new();
    for _ in 0..30 {
        records.put_u32(1);
        records.put_u8(b'm');
    }
    let run = crate::message::Run::new(records.freeze(), 30, message("id").id, unix_nanos());
    f.publish_item(Item::Run(run)).await;
    let shares: Vec<i64> = consumers
        .iter()
        .map(|(client, _, _)| client.stats("").in_flight_count)
        .collect();
    assert_eq!(shares, vec![10, 10, 10]);
}

/// A message the hand-over delivered wakes no pump: that wake-up is what it
/// saves. With two consumers, the one tried last takes what is left, so
/// that the offer still knows the queue ran dry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_message_wakes_no_pump() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    for consumers in [1, 2] {
        let f = Fixture::new(Mode::Memory);
        let c = f.channel("c");
        let mut held_open = Vec::new();
        for id in 1..=consumers {
            held_open.push(subscribed(&c, id, 100).await);
        }
        for round in 0..3 {
            let woken = c.available();
            tokio::pin!(woken);
            woken.as_mut().enable();
            f.publish("m").await;
            let polled = woken.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            assert!(
                polled == Poll::Pending,
                "{consumers} consumer(s), round {round}: a pump was woken"
            );
        }
        assert_eq!(held(&c), (0, 3));
    }
}

/// The hand-over takes large messages a few output buffers at a time, as
/// the pump does, not up to the consumer's whole room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hand_over_takes_large_messages_a_few_buffers_at_a_time() {
    use bytes::BufMut;
    let f = Fixture::new(Mode::Memory);
    let c = f.channel("c");
    let (_client, _read, _peer) = subscribed(&c, 1, 100).await;
    let body = vec![b'x'; 40 * 1024];
    let mut records = bytes::BytesMut::new();
    for _ in 0..10 {
        records.put_u32(body.len() as u32);
        records.put_slice(&body);
    }
    let run = crate::message::Run::new(records.freeze(), 10, message("id").id, unix_nanos());
    f.publish_item(Item::Run(run)).await;
    // 8 buffers of 16 KiB: three messages of 40 KiB.
    assert_eq!(held(&c), (7, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_channel_gets_copies_in_every_mode() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let durable = f.channel("durable");
        let tail = f.channel("tail#ephemeral");
        assert!(!tail.is_cursor());
        let client = consumer(1);
        f.publish("x").await;
        for channel in [&durable, &tail] {
            let got = take_n(channel, &client, 1, Duration::from_secs(60)).await;
            assert_eq!(bodies(&got), ["x"], "{mode:?}");
        }
    }
}

/// A consumer that REQs every delivery sees a message `max_attempts` times;
/// then it is a dead letter, counted in no depth, listed with its attempts,
/// and a requeue brings it back once with attempts 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_makes_dead_letters_that_can_be_requeued() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let c = f.channel("c");
        c.set_overrides(Overrides {
            max_attempts: Some(3),
            msg_ttl: None,
        });
        let client = consumer(1);
        f.publish("doomed").await;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let got = take_n(&c, &client, 1, Duration::from_secs(60)).await;
            seen.push(got[0].2);
            c.requeue(1, got[0].0, Duration::ZERO).unwrap();
        }
        assert_eq!(seen, [1, 2, 3], "{mode:?}");
        nothing_for(&c, &client, Duration::from_millis(50)).await;
        let stats = c.stats(false, "");
        assert_eq!((stats.depth, stats.in_flight_count), (0, 0), "{mode:?}");
        assert_eq!((stats.dead_count, stats.max_attempts), (1, 3), "{mode:?}");
        let (dead, total) = tokio::task::block_in_place(|| c.dead_letters(10)).unwrap();
        assert_eq!(total, 1);
        assert_eq!((&dead[0].body[..], dead[0].attempts), (&b"doomed"[..], 3));

        assert_eq!(tokio::task::block_in_place(|| c.requeue_dead()).unwrap(), 1);
        assert_eq!((c.dead_count(), c.depth()), (0, 1), "{mode:?}");
        let back = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        assert_eq!((back[0].1.as_str(), back[0].2), ("doomed", 1), "{mode:?}");
        // Requeued and timed out, it counts on from 1.
        c.requeue(1, back[0].0, Duration::ZERO).unwrap();
        let again = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        assert_eq!(again[0].2, 2);
        c.finish(1, again[0].0).unwrap();
        nothing_for(&c, &client, Duration::from_millis(50)).await;
        assert_eq!(c.dead_count(), 0);
    }
}

/// A requeue of the dead letters racing an empty of the channel: revived
/// in the file, then the channel emptied, then put in line. The empty's
/// drop comes after the revival in the file, so the messages must not come
/// back in memory either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_between_revival_and_requeue_drops_the_revived() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let c = f.channel("c");
        c.set_overrides(Overrides {
            max_attempts: Some(1),
            msg_ttl: None,
        });
        let client = consumer(1);
        f.publish("doomed").await;
        let got = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        c.requeue(1, got[0].0, Duration::ZERO).unwrap();
        nothing_for(&c, &client, Duration::from_millis(50)).await;
        assert_eq!(c.dead_count(), 1, "{mode:?}");

        let (revived, stamp) = tokio::task::block_in_place(|| c.dead.revive_all()).unwrap();
        assert_eq!(revived.len(), 1);
        c.empty().unwrap();
        c.deliver_revived(revived, stamp);
        assert_eq!((c.dead_count(), c.depth()), (0, 0), "{mode:?}");
        nothing_for(&c, &client, Duration::from_millis(50)).await;

        // Without an empty in between they come back as before.
        f.publish("doomed too").await;
        let got = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        c.requeue(1, got[0].0, Duration::ZERO).unwrap();
        nothing_for(&c, &client, Duration::from_millis(50)).await;
        let (revived, stamp) = tokio::task::block_in_place(|| c.dead.revive_all()).unwrap();
        c.deliver_revived(revived, stamp);
        let back = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        assert_eq!(back[0].1, "doomed too", "{mode:?}");
    }
}

/// Past the TTL a message is not delivered: it becomes a dead letter and
/// counts as expired. A requeued dead letter is not expired again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_the_ttl_become_dead_letters() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let c = f.channel("c");
        let client = consumer(1);
        let mut old = message("old");
        old.timestamp -= 5_000_000_000;
        f.publish_item(Item::One(old)).await;
        f.publish("new").await;
        c.set_overrides(Overrides {
            max_attempts: None,
            msg_ttl: Some(Duration::from_secs(2)),
        });
        let got = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        assert_eq!(bodies(&got), ["new"], "{mode:?}");
        let stats = c.stats(false, "");
        assert_eq!((stats.expired_count, stats.dead_count), (1, 1), "{mode:?}");
        assert_eq!(stats.msg_ttl_ms, 2000);
        tokio::task::block_in_place(|| c.requeue_dead()).unwrap();
        let back = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        assert_eq!(bodies(&back), ["old"], "{mode:?}");
        assert_eq!(tokio::task::block_in_place(|| c.empty_dead()).unwrap(), 0);
    }
}

/// Peek shows the next messages in delivery order and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_shows_what_comes_next_without_taking_it() {
    for mode in MODES {
        let f = Fixture::new(mode);
        let c = f.channel("c");
        let client = consumer(1);
        for i in 0..150 {
            f.publish(&format!("m{i}")).await;
        }
        let first = take_n(&c, &client, 1, Duration::from_secs(60)).await;
        c.requeue(1, first[0].0, Duration::ZERO).unwrap();
        let peeked = tokio::task::block_in_place(|| c.peek(100)).unwrap();
        let names: Vec<String> = peeked
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect();
        // Memory mode puts a REQ'd message at the end, a cursor in front.
        let expected: Vec<String> = match mode {
            Mode::Memory => (1..101).map(|i| format!("m{i}")).collect(),
            _ => (0..100).map(|i| format!("m{i}")).collect(),
        };
        assert_eq!(names, expected, "{mode:?}");
        let stats = c.stats(false, "");
        assert_eq!((stats.depth, stats.in_flight_count), (150, 0), "{mode:?}");
        let all = take_n(&c, &client, 150, Duration::from_secs(60)).await;
        assert_eq!(all.len(), 150);
    }
}

mod interleavings {
    //! Property test: any interleaving of takes, FIN, REQ (now or later),
    //! timeouts, pause, channel empty, peek and the dead-letter actions
    //! keeps every message in exactly one place. Whatever was published
    //! and not finished or dropped by an empty is queued, in flight,
    //! deferred or a dead letter; no take hands out a message that is
    //! finished, dead or already in flight; and a final drain finishes
    //! every message still held exactly once.

    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Publish(u8),
        /// Take up to n; with a zero timeout when `expire`.
        Take(u8, bool),
        Fin(u8),
        Req(u8, bool),
        Expire,
        Pause(bool),
        Empty,
        Peek,
        RequeueDead,
        EmptyDead,
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..4).prop_map(Op::Publish),
            4 => (1u8..5, any::<bool>()).prop_map(|(n, e)| Op::Take(n, e)),
            3 => any::<u8>().prop_map(Op::Fin),
            3 => (any::<u8>(), any::<bool>()).prop_map(|(i, d)| Op::Req(i, d)),
            1 => Just(Op::Expire),
            1 => any::<bool>().prop_map(Op::Pause),
            1 => Just(Op::Empty),
            1 => Just(Op::Peek),
            1 => Just(Op::RequeueDead),
            1 => Just(Op::EmptyDead),
            1 => Just(Op::Restart),
        ]
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Place {
        Held,
        InFlight,
        Finished,
        Dropped,
    }

    struct Model {
        places: HashMap<u64, Place>,
        in_flight: Vec<u64>,
        /// Dead letters the channel listed at the last requeue or empty.
        finished: u64,
        dropped: u64,
    }

    impl Model {
        fn held(&self) -> u64 {
            self.places.len() as u64 - self.finished - self.dropped
        }
    }

    /// Takes in what the timer task timed out, then checks the count, all
    /// under the channel's lock.
    fn conserved(c: &Channel, model: &mut Model, mode: Mode) -> Result<(), TestCaseError> {
        let st = c.state.lock();
        let places = &mut model.places;
        model.in_flight.retain(|id| {
            let still = st.in_flight.get(*id).is_some();
            if !still {
                places.insert(*id, Place::Held);
            }
            still
        });
        let counted = st.depth() + st.in_flight.len() + st.deferred.len();
        if counted as u64 + c.dead_count() != model.held() {
            let in_flight: Vec<u64> = st.in_flight.iter().map(|e| e.msg.id).collect();
            let deferred: Vec<(u64, u64)> = st.deferred.iter().map(|d| (d.msg.id, d.seq)).collect();
            let revived: Vec<u64> = st.revived.iter().map(|(_, m)| m.id).collect();
            drop(st);
            let queued: Vec<u64> = c.peek(100).unwrap().iter().map(|m| m.id).collect();
            let dead: Vec<u64> = c
                .dead_letters(1000)
                .unwrap()
                .0
                .iter()
                .map(|m| m.id)
                .collect();
            let mut held: Vec<u64> = model
                .places
                .iter()
                .filter(|(_, p)| matches!(p, Place::Held | Place::InFlight))
                .map(|(id, _)| *id)
                .collect();
            held.sort();
            return Err(TestCaseError::fail(format!("{mode:?}: model holds {held:?}; channel: queued {queued:?} in flight {in_flight:?} deferred {deferred:?} revived {revived:?} dead {dead:?}; places {:?}", model.places)));
        }
        prop_assert_eq!(st.in_flight.len(), model.in_flight.len());
        Ok(())
    }

    async fn run(mode: Mode, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut f = Fixture::new(mode);
        let settings = Overrides {
            max_attempts: Some(2),
            msg_ttl: None,
        };
        let mut c = f.channel("c");
        c.set_overrides(settings);
        let client = consumer(1);
        let mut model = Model {
            places: HashMap::new(),
            in_flight: Vec::new(),
            finished: 0,
            dropped: 0,
        };
        let mut paused = false;
        for op in ops {
            match op {
                Op::Publish(n) => {
                    for _ in 0..n {
                        let msg = message("m");
                        model.places.insert(msg.id, Place::Held);
                        f.publish_item(Item::One(msg)).await;
                    }
                }
                Op::Take(n, expire) => {
                    let timeout = if expire {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(60)
                    };
                    for (id, _, attempts) in take(&c, &client, n.into(), timeout) {
                        prop_assert!(!paused, "delivered while paused");
                        prop_assert!(attempts <= 2, "attempts {attempts} past max_attempts");
                        let place = model.places.get(&id).copied();
                        if place == Some(Place::InFlight) {
                            // Timed out by the timer task since the last look.
                            model.in_flight.retain(|&other| other != id);
                        } else {
                            prop_assert_eq!(
                                place,
                                Some(Place::Held),
                                "took {} from {:?}",
                                id,
                                place
                            );
                        }
                        model.places.insert(id, Place::InFlight);
                        model.in_flight.push(id);
                    }
                }
                Op::Fin(i) | Op::Req(i, _) if !model.in_flight.is_empty() => {
                    let id = model.in_flight.remove(i as usize % model.in_flight.len());
                    let done = match op {
                        Op::Fin(_) => c.finish(1, id),
                        Op::Req(_, later) => {
                            let delay = Duration::from_millis(if later { 20 } else { 0 });
                            c.requeue(1, id, delay)
                        }
                        _ => unreachable!(),
                    };
                    match (done, &op) {
                        (Ok(()), Op::Fin(_)) => {
                            model.places.insert(id, Place::Finished);
                            model.finished += 1;
                        }
                        // Timed out meanwhile: back in line.
                        (Ok(()), _) | (Err(InFlightError::NotInFlight), _) => {
                            model.places.insert(id, Place::Held);
                        }
                        (Err(e), _) => prop_assert!(false, "{e}"),
                    }
                }
                Op::Fin(_) | Op::Req(..) => {}
                Op::Expire => {
                    c.process_deadlines(Instant::now() + Duration::from_millis(30));
                }
                Op::Pause(true) => {
                    c.pause();
                    paused = true;
                }
                Op::Pause(false) => {
                    c.unpause();
                    paused = false;
                }
                Op::Empty => {
                    c.empty().unwrap();
                    // Dead letters are not the channel's queue: they stay.
                    let (dead, _) = tokio::task::block_in_place(|| c.dead_letters(10_000)).unwrap();
                    let dead: std::collections::HashSet<u64> = dead.iter().map(|m| m.id).collect();
                    for (id, place) in model.places.iter_mut() {
                        if matches!(place, Place::Held | Place::InFlight) && !dead.contains(id) {
                            *place = Place::Dropped;
                            model.dropped += 1;
                        }
                    }
                    model.in_flight.clear();
                }
                Op::Peek => {
                    let peeked = tokio::task::block_in_place(|| c.peek(100)).unwrap();
                    let mut seen = std::collections::HashSet::new();
                    for msg in &peeked {
                        prop_assert!(seen.insert(msg.id), "peek shows {} twice", msg.id);
                        let place = model.places.get(&msg.id).copied();
                        // In flight at the last look, timed out since.
                        let timed_out = place == Some(Place::InFlight)
                            && c.state.lock().in_flight.get(msg.id).is_none();
                        prop_assert!(
                            place == Some(Place::Held) || timed_out,
                            "peek shows {} ({:?})",
                            msg.id,
                            place
                        );
                    }
                }
                Op::RequeueDead => {
                    tokio::task::block_in_place(|| c.requeue_dead()).unwrap();
                }
                Op::Restart => {
                    drop(c);
                    tokio::task::block_in_place(|| f.restart());
                    c = f.channel("c");
                    c.set_overrides(settings);
                    f.topic.start();
                    paused = false;
                    // What was in flight is back in line.
                    for id in model.in_flight.drain(..) {
                        model.places.insert(id, Place::Held);
                    }
                }
                Op::EmptyDead => {
                    let (dead, _) = tokio::task::block_in_place(|| c.dead_letters(10_000)).unwrap();
                    let emptied = tokio::task::block_in_place(|| c.empty_dead()).unwrap();
                    prop_assert!(emptied >= dead.len() as u64);
                    for msg in dead {
                        prop_assert_eq!(model.places.get(&msg.id), Some(&Place::Held));
                        model.places.insert(msg.id, Place::Dropped);
                        model.dropped += 1;
                    }
                }
            }
            conserved(&c, &mut model, mode)?;
        }

        // Drain: everything held comes out once, dead letters by a requeue.
        c.unpause();
        for id in model.in_flight.drain(..) {
            if c.finish(1, id).is_ok() {
                model.places.insert(id, Place::Finished);
                model.finished += 1;
            } else {
                model.places.insert(id, Place::Held);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while model.held() > 0 {
            prop_assert!(
                Instant::now() < deadline,
                "{} never came back",
                model.held()
            );
            tokio::task::block_in_place(|| c.requeue_dead()).unwrap();
            for (id, _, _) in take(&c, &client, 100, Duration::from_secs(60)) {
                prop_assert_eq!(model.places.get(&id), Some(&Place::Held), "{} again", id);
                c.finish(1, id).unwrap();
                model.places.insert(id, Place::Finished);
                model.finished += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        conserved(&c, &mut model, mode)?;
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn no_interleaving_loses_or_repeats_a_message(ops in proptest::collection::vec(op(), 1..60)) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            for mode in [Mode::Memory, Mode::Log] {
                runtime.block_on(run(mode, ops.clone()))?;
            }
        }
    }
}
