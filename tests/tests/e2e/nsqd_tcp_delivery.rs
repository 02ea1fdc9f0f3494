//! nsqd's TCP protocol V2 over real sockets: delivery to consumers and its
//! timing: heartbeats, timeouts and TOUCH, REQ delays and DPUB, fan-out and
//! competing consumers, RDY, sampling, ephemeral names, disconnects, limits and
//! end-to-end latency.

use bytes::Bytes;
use nsq::protocol::{Command, FrameType};
use nsq_e2e::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_requires_heartbeats() {
    let nsqd = start_default_nsqd().await;
    let mut conn = Conn::connect(&nsqd).await;
    conn.identify_ok(r#"{"heartbeat_interval":-1}"#).await;
    conn.send(Command::Sub {
        topic: "t".into(),
        channel: "c".into(),
    })
    .await;
    conn.expect_error("E_INVALID cannot SUB with heartbeats disabled")
        .await;
    conn.expect_closed().await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_disconnect_after_two_missed() {
    let nsqd = start_default_nsqd().await;
    let mut conn = Conn::connect(&nsqd).await;
    conn.identify_ok(r#"{"heartbeat_interval":1000}"#).await;
    let started = Instant::now();
    let frame = conn.read_frame().await.unwrap();
    assert_eq!(&frame.data[..], b"_heartbeat_");
    let first = started.elapsed();
    assert!(
        first >= Duration::from_millis(900) && first < Duration::from_millis(1500),
        "{first:?}"
    );
    // Silent for two intervals: the server hangs up.
    while let Some(f) = conn.read_frame().await {
        assert_eq!(&f.data[..], b"_heartbeat_");
    }
    let closed = started.elapsed();
    assert!(
        closed >= Duration::from_millis(1900) && closed < Duration::from_millis(3000),
        "{closed:?}"
    );

    // A client that answers with NOP stays connected.
    let mut alive = Conn::connect(&nsqd).await;
    alive.identify_ok(r#"{"heartbeat_interval":1000}"#).await;
    for _ in 0..3 {
        let f = alive.read_frame().await.unwrap();
        assert_eq!(&f.data[..], b"_heartbeat_");
        alive.send(Command::Nop).await;
    }
    alive.publish("still", b"here").await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_requeue_with_attempts_and_touch_extends() {
    let nsqd = start_default_nsqd().await;
    let mut c = Conn::connect(&nsqd).await;
    c.identify_ok(r#"{"msg_timeout":1000}"#).await;
    c.subscribe("to", "c").await;
    c.rdy(1).await;
    Conn::connect(&nsqd).await.publish("to", b"x").await;
    let first = c.expect_message().await;
    let delivered = Instant::now();
    let again = c.expect_message().await;
    let waited = delivered.elapsed();
    assert_eq!((again.id, again.attempts), (first.id, 2));
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_millis(1600),
        "{waited:?}"
    );
    // TOUCH restarts the timer.
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.send(Command::Touch(again.id)).await;
    let touched = Instant::now();
    let third = c.expect_message().await;
    assert_eq!(third.attempts, 3);
    assert!(
        touched.elapsed() >= Duration::from_millis(900),
        "TOUCH extended the deadline"
    );
    c.fin(third.id).await;
    eventually("timeout_count 2", || async {
        let s = stats(&nsqd).await;
        let ch = &s.topics.unwrap()[0].channels[0];
        ch.timeout_count == 2 && ch.in_flight_count == 0
    })
    .await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn req_delay_and_dpub_are_not_early() {
    let nsqd = start_default_nsqd().await;
    let mut producer = Conn::connect(&nsqd).await;
    let mut c = consumer(&nsqd, "d", "c", 10).await;
    producer.publish("d", b"now").await;
    let msg = c.expect_message().await;
    c.send(Command::Req {
        id: msg.id,
        delay: Duration::from_millis(400),
    })
    .await;
    let requeued = Instant::now();
    let again = c.expect_message().await;
    assert_eq!(again.attempts, 2);
    assert!(
        requeued.elapsed() >= Duration::from_millis(400),
        "REQ delay honoured: {:?}",
        requeued.elapsed()
    );
    c.fin(again.id).await;

    producer
        .send(Command::Dpub {
            topic: "d".into(),
            delay: Duration::from_millis(500),
            body: Bytes::from("later"),
        })
        .await;
    producer.expect_response("OK").await;
    let published = Instant::now();
    eventually("deferred_count 1", || async {
        stats(&nsqd).await.topics.unwrap()[0].channels[0].deferred_count == 1
    })
    .await;
    let later = c.expect_message().await;
    assert_eq!(&later.body[..], b"later");
    assert!(
        published.elapsed() >= Duration::from_millis(500),
        "{:?}",
        published.elapsed()
    );
    // REQ 0 puts it straight back; over --max-req-timeout is clamped, not refused.
    c.send(Command::Req {
        id: later.id,
        delay: Duration::ZERO,
    })
    .await;
    let back = c.expect_message().await;
    assert_eq!(back.attempts, 2);
    c.send_raw(format!("REQ {} 99999999999\n", back.id).as_bytes())
        .await;
    c.expect_silence(Duration::from_millis(100)).await;
    // A consumer with room may have its REQ read a few milliseconds late.
    eventually("the clamped REQ read", || async {
        channel_stats(&nsqd, "d", "c")
            .await
            .is_some_and(|ch| ch.requeue_count >= 3)
    })
    .await;
    let s = stats(&nsqd).await;
    let ch = &s.topics.unwrap()[0].channels[0];
    assert_eq!((ch.requeue_count, ch.deferred_count), (3, 1));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_channels_and_competing_consumers() {
    let nsqd = start_default_nsqd().await;
    let mut a1 = consumer(&nsqd, "f", "a", 100).await;
    let mut a2 = consumer(&nsqd, "f", "a", 100).await;
    let mut b = consumer(&nsqd, "f", "b", 200).await;
    let mut producer = Conn::connect(&nsqd).await;
    let bodies: Vec<Bytes> = (0..200).map(|i| Bytes::from(format!("m{i}"))).collect();
    producer
        .send(Command::Mpub {
            topic: "f".into(),
            bodies: bodies.clone(),
        })
        .await;
    producer.expect_response("OK").await;

    // Channel b gets every message; channel a's two consumers share them.
    let mut seen_b = HashSet::new();
    for _ in 0..200 {
        let m = b.expect_message().await;
        assert!(seen_b.insert(m.body.clone()));
        b.fin(m.id).await;
    }
    let mut seen_a = HashSet::new();
    let (mut n1, mut n2) = (0, 0);
    while seen_a.len() < 200 {
        tokio::select! {
            m = a1.expect_message() => { n1 += 1; assert!(seen_a.insert(m.body.clone())); a1.fin(m.id).await; }
            m = a2.expect_message() => { n2 += 1; assert!(seen_a.insert(m.body.clone())); a2.fin(m.id).await; }
        }
    }
    assert_eq!(seen_a, seen_b);
    assert!(
        n1 > 0 && n2 > 0,
        "both consumers of channel a got work ({n1}, {n2})"
    );
    a1.expect_silence(Duration::from_millis(100)).await;
    // The same message has the same ID in every channel.
    producer.publish("f", b"same").await;
    let (x, y) = (
        b.expect_message().await,
        tokio::select! { m = a1.expect_message() => m, m = a2.expect_message() => m },
    );
    assert_eq!(x.id, y.id);
    nsqd.shutdown().await;
}

/// A publish hands its message straight to a consumer that waits for one
/// (in log mode, the log's watcher once the message is written), and the
/// consumers of one channel take turns, as their pumps did when the first to
/// wake took the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_consumers_of_a_channel_take_turns() {
    for mem_queue_size in [10_000, 0] {
        let nsqd = start_nsqd(Options {
            mem_queue_size,
            ..test_options()
        })
        .await;
        let mut consumers = Vec::new();
        for _ in 0..3 {
            consumers.push(consumer(&nsqd, "turns", "c", 100).await);
        }
        eventually("every RDY read", || async {
            let s = stats(&nsqd).await;
            let clients = s.topics.unwrap_or_default()[0].channels[0].clients.clone();
            clients.is_some_and(|c| c.len() == 3 && c.iter().all(|c| c.ready_count == 100))
        })
        .await;
        let mut producer = Conn::connect(&nsqd).await;
        for i in 0..30 {
            producer.publish("turns", format!("t{i}").as_bytes()).await;
        }
        let mut counts = Vec::new();
        for c in &mut consumers {
            counts.push(c.fin_until_quiet(Duration::from_millis(200)).await.len());
        }
        let mode = format!("--mem-queue-size={mem_queue_size}");
        assert_eq!(counts.iter().sum::<usize>(), 30, "{mode}: {counts:?}");
        assert!(
            counts.iter().all(|&n| n >= 5),
            "{mode}: uneven turns {counts:?}"
        );
        nsqd.shutdown().await;
    }
}

/// A consumer whose socket fills mid-message (a small receive buffer, read
/// slowly) still gets every message once, whole and in order: what a
/// publisher could not write at once is left for the consumer's pump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_reads_slowly_gets_every_message_whole_and_in_order() {
    const MESSAGES: usize = 200;
    let nsqd = start_default_nsqd().await;
    let mut c = Conn::connect_with_receive_buffer(&nsqd, 4096).await;
    c.subscribe("slow", "c").await;
    c.rdy(2500).await;
    let mut producer = Conn::connect(&nsqd).await;
    let publishing = async {
        for i in 0..MESSAGES {
            let mut body = format!("{i:06}").into_bytes();
            body.resize(8 * 1024, b'a' + (i % 26) as u8);
            producer.publish("slow", &body).await;
        }
    };
    let reading = async {
        for i in 0..MESSAGES {
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let m = c.expect_message().await;
            assert_eq!(&m.body[..6], format!("{i:06}").as_bytes(), "message {i}");
            assert_eq!(m.body.len(), 8 * 1024);
            assert!(m.body[6..].iter().all(|&b| b == b'a' + (i % 26) as u8));
            c.fin(m.id).await;
        }
        c.expect_silence(Duration::from_millis(100)).await;
    };
    tokio::join!(publishing, reading);
    nsqd.shutdown().await;
}

/// A consumer with room to spare may have its input wait a few milliseconds
/// to be read with more (its FINs, one per write as go-nsq sends them), but
/// a lone FIN, REQ or RDY is still read and acted on within that window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_command_from_a_consumer_with_room_is_read_promptly() {
    const PROMPTLY: Duration = Duration::from_secs(1);
    let nsqd = start_default_nsqd().await;
    let mut c = consumer(&nsqd, "lone", "c", 100).await;
    let mut producer = Conn::connect(&nsqd).await;
    producer.publish("lone", b"one").await;
    let m = c.expect_message().await;
    c.fin(m.id).await;
    eventually_within("the FIN read", PROMPTLY, || async {
        let s = channel_stats(&nsqd, "lone", "c")
            .await
            .expect("the channel");
        s.in_flight_count == 0 && s.clients.is_some_and(|c| c[0].finish_count == 1)
    })
    .await;

    producer.publish("lone", b"two").await;
    let m = c.expect_message().await;
    c.send(Command::Req {
        id: m.id,
        delay: Duration::ZERO,
    })
    .await;
    let again = tokio::time::timeout(PROMPTLY, c.expect_message())
        .await
        .expect("the REQ acted on within a second");
    assert_eq!((again.id, again.attempts), (m.id, 2));
    c.fin(again.id).await;

    c.rdy(0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    producer.publish("lone", b"three").await;
    c.expect_silence(Duration::from_millis(300)).await;
    nsqd.shutdown().await;
}

/// A consumer at its RDY that finishes one message at a time gets refilled in
/// steps of a quarter of its RDY (at a deep RDY its FINs are also read
/// together), but room below a step is never left unused: a single FIN still
/// brings the next message, and a consumer that then waits for it does not
/// stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_below_the_refill_step_is_still_refilled() {
    let nsqd = start_default_nsqd().await;
    for (topic, rdy) in [("s", 100), ("deep", 1000)] {
        let total = 3 * rdy;
        let mut producer = Conn::connect(&nsqd).await;
        let bodies: Vec<Bytes> = (0..total).map(|i| Bytes::from(format!("s{i}"))).collect();
        producer
            .send(Command::Mpub {
                topic: topic.into(),
                bodies,
            })
            .await;
        producer.expect_response("OK").await;
        let mut c = consumer(&nsqd, topic, "c", rdy as u32).await;
        let mut held = Vec::new();
        for _ in 0..rdy {
            held.push(c.expect_message().await);
        }
        c.expect_silence(Duration::from_millis(100)).await;
        for round in 0..3 {
            c.fin(held.remove(0).id).await;
            held.push(c.expect_message().await);
            c.expect_silence(Duration::from_millis(50)).await;
            assert_eq!(held.len(), rdy, "{topic} round {round}");
        }
        // Many FINs at once come back as as many messages.
        for m in held.drain(..40) {
            c.fin(m.id).await;
        }
        for _ in 0..40 {
            held.push(c.expect_message().await);
        }
        c.expect_silence(Duration::from_millis(50)).await;
        for m in held.drain(..) {
            c.fin(m.id).await;
        }
        for _ in 0..total - rdy - 43 {
            let m = c.expect_message().await;
            c.fin(m.id).await;
        }
        c.expect_silence(Duration::from_millis(100)).await;
        // Its last FINs may be read a few milliseconds late (quiet reads).
        eventually("the last FINs read", || async {
            channel_stats(&nsqd, topic, "c").await.is_some_and(|ch| {
                ch.clients
                    .is_some_and(|c| c[0].finish_count >= total as u64)
            })
        })
        .await;
        let s = stats(&nsqd).await;
        let t = s
            .topics
            .unwrap()
            .into_iter()
            .find(|t| t.topic_name == topic)
            .unwrap();
        let client = &t.channels[0].clients.clone().unwrap()[0];
        assert_eq!(
            (client.finish_count, client.message_count),
            (total as u64, total as u64)
        );
    }
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdy_caps_in_flight() {
    let nsqd = start_default_nsqd().await;
    let mut producer = Conn::connect(&nsqd).await;
    let bodies: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("r{i}"))).collect();
    producer
        .send(Command::Mpub {
            topic: "r".into(),
            bodies,
        })
        .await;
    producer.expect_response("OK").await;
    let mut c = consumer(&nsqd, "r", "c", 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(c.expect_message().await);
    }
    c.expect_silence(Duration::from_millis(200)).await;
    // Each FIN frees one slot.
    c.fin(held.remove(0).id).await;
    held.push(c.expect_message().await);
    c.expect_silence(Duration::from_millis(100)).await;
    // RDY 0 stops delivery without touching what is in flight.
    c.rdy(0).await;
    for m in held.drain(..) {
        c.fin(m.id).await;
    }
    c.expect_silence(Duration::from_millis(150)).await;
    c.rdy(100).await;
    for _ in 0..16 {
        let m = c.expect_message().await;
        c.fin(m.id).await;
    }
    // At RDY 100 with room to spare the last FINs may be read a few
    // milliseconds late (quiet reads).
    eventually("the last FINs read", || async {
        channel_stats(&nsqd, "r", "c")
            .await
            .is_some_and(|ch| ch.clients.is_some_and(|c| c[0].finish_count >= 20))
    })
    .await;
    let s = stats(&nsqd).await;
    let client = &s.topics.unwrap()[0].channels[0].clients.clone().unwrap()[0];
    assert_eq!(
        (
            client.ready_count,
            client.finish_count,
            client.message_count
        ),
        (100, 20, 20)
    );
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_rate_delivers_a_fraction() {
    let nsqd = start_default_nsqd().await;
    let mut c = Conn::connect(&nsqd).await;
    c.identify_ok(r#"{"sample_rate":20}"#).await;
    c.subscribe("s", "c").await;
    c.rdy(2500).await;
    let mut producer = Conn::connect(&nsqd).await;
    let bodies: Vec<Bytes> = (0..2000).map(|i| Bytes::from(format!("s{i}"))).collect();
    producer
        .send(Command::Mpub {
            topic: "s".into(),
            bodies,
        })
        .await;
    producer.expect_response("OK").await;
    let mut got = 0;
    while let Ok(Some(frame)) = c.read_frame_within(Duration::from_millis(300)).await {
        if frame.frame_type == FrameType::Message {
            got += 1;
        }
    }
    // About 21% (upstream keeps a message when rand(0..100) <= rate).
    assert!((250..=600).contains(&got), "sampled {got} of 2000");
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_channel_and_topic_vanish_with_their_last_user() {
    let nsqd = start_default_nsqd().await;
    let c = consumer(&nsqd, "e#ephemeral", "c#ephemeral", 1).await;
    let c2 = consumer(&nsqd, "durable", "tail#ephemeral", 1).await;
    assert_eq!(stats(&nsqd).await.topics.unwrap().len(), 2);
    drop(c);
    drop(c2);
    eventually("ephemeral topic and channel deleted", || async {
        let topics = stats(&nsqd).await.topics.unwrap();
        topics.len() == 1 && topics[0].topic_name == "durable" && topics[0].channels.is_empty()
    })
    .await;
    // Overflow past --mem-queue-size is dropped on ephemeral channels.
    let mut opts = test_options();
    opts.mem_queue_size = 10;
    let small = start_nsqd(opts).await;
    let _keep = consumer(&small, "o", "x#ephemeral", 0).await;
    let bodies: Vec<Bytes> = (0..25).map(|i| Bytes::from(format!("o{i}"))).collect();
    let mut producer = Conn::connect(&small).await;
    producer
        .send(Command::Mpub {
            topic: "o".into(),
            bodies,
        })
        .await;
    producer.expect_response("OK").await;
    let s = stats(&small).await;
    let ch = &s.topics.unwrap()[0].channels[0];
    assert_eq!((ch.depth, ch.message_count), (10, 25));
    small.shutdown().await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_requeues_in_flight_messages() {
    let nsqd = start_default_nsqd().await;
    Conn::connect(&nsqd).await.publish("dc", b"orphan").await;
    let mut first = consumer(&nsqd, "dc", "c", 1).await;
    let m = first.expect_message().await;
    drop(first);
    let mut second = consumer(&nsqd, "dc", "c", 1).await;
    let again = second.expect_message().await;
    assert_eq!((again.id, again.attempts), (m.id, 2));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_channel_consumers() {
    let mut opts = test_options();
    opts.max_channel_consumers = 1;
    let nsqd = start_nsqd(opts).await;
    let _one = consumer(&nsqd, "m", "c", 0).await;
    let mut two = Conn::connect(&nsqd).await;
    two.send(Command::Sub {
        topic: "m".into(),
        channel: "c".into(),
    })
    .await;
    two.expect_error("E_SUB_FAILED SUB failed consumers for m:c exceeds limit of 1")
        .await;
    two.expect_closed().await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_latency_percentiles() {
    let mut opts = test_options();
    opts.e2e_processing_latency_percentiles = vec![0.5, 0.99];
    let nsqd = start_nsqd(opts).await;
    let mut c = consumer(&nsqd, "lat", "c", 10).await;
    Conn::connect(&nsqd).await.publish("lat", b"x").await;
    let m = c.expect_message().await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.fin(m.id).await;
    eventually("latency recorded", || async {
        let s = stats(&nsqd).await;
        let e2e = s.topics.unwrap()[0].channels[0]
            .e2e_processing_latency
            .clone();
        e2e.count == 1
            && e2e
                .percentiles
                .is_some_and(|p| p.len() == 2 && p[0].value >= 30e6)
    })
    .await;
    nsqd.shutdown().await;
}
