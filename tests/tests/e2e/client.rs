//! The `nsq` crate's Producer and Consumer against our nsqd.
//!
//! One file, past 600 lines, because producer and consumer scenarios share
//! one set of configs and consumer helpers.

use nsq::config::BackoffStrategy;
use nsq::{Config, Consumer, Message, Producer};
use nsq_e2e::{channel_stats, eventually, start_default_nsqd, stats, Nsqd, PATIENCE};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A config that keeps tests fast: short buffering, quick backoff and retries.
fn config() -> Config {
    Config {
        output_buffer_timeout: Some(Duration::from_millis(25)),
        default_requeue_delay: Duration::from_millis(100),
        backoff_multiplier: Duration::from_millis(20),
        max_backoff_duration: Duration::from_millis(200),
        lookupd_poll_interval: Duration::from_millis(200),
        rdy_redistribute_interval: Duration::from_millis(50),
        low_rdy_idle_timeout: Duration::from_millis(100),
        ..Config::default()
    }
}

fn producer(nsqd: &Nsqd, config: Config) -> Producer {
    Producer::new(nsqd.tcp_addr().to_string(), config).unwrap()
}

/// A consumer whose handler forwards every message to the returned channel.
fn forwarding_consumer(
    topic: &str,
    config: Config,
) -> (Consumer, mpsc::UnboundedReceiver<Message>) {
    let consumer = Consumer::new(topic, "ch", config).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    consumer
        .add_handler(move |msg: Message| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(msg);
                Ok::<_, std::io::Error>(())
            }
        })
        .unwrap();
    (consumer, rx)
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Message>) -> Message {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a message in time")
        .expect("channel open")
}

#[tokio::test]
async fn publish_and_consume_pub_mpub_dpub() {
    let nsqd = start_default_nsqd().await;
    let p = producer(&nsqd, config());
    let (consumer, mut rx) = forwarding_consumer("rt", config());
    consumer
        .connect_to_nsqd(&nsqd.tcp_addr().to_string())
        .await
        .unwrap();

    p.publish("rt", "one").await.unwrap();
    p.multi_publish("rt", ["two", "three"]).await.unwrap();
    let published = Instant::now();
    p.deferred_publish("rt", Duration::from_millis(300), "later")
        .await
        .unwrap();

    let mut bodies = Vec::new();
    for _ in 0..3 {
        bodies.push(recv(&mut rx).await.body().clone());
    }
    assert_eq!(bodies, ["one", "two", "three"]);
    let later = recv(&mut rx).await;
    assert_eq!(later.body(), "later");
    assert!(published.elapsed() >= Duration::from_millis(290));
    assert_eq!(later.attempts(), 1);
    eventually("all finished", || async {
        consumer.stats().messages_finished == 4
    })
    .await;
    consumer.stop().await;
    p.stop().await;
    nsqd.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_are_typed_and_the_producer_recovers() {
    let nsqd = start_default_nsqd().await;
    let p = producer(&nsqd, config());
    assert!(matches!(
        p.publish("bad topic\nNOP", "x").await,
        Err(nsq::Error::InvalidTopic(_))
    ));
    let err = p.publish("ok", "").await.unwrap_err();
    let e = err.protocol().expect("an error frame");
    assert_eq!(e.code, "E_BAD_MESSAGE");
    assert_eq!(e.text, "PUB invalid message body size 0");
    // nsqd closed the connection after that fatal error; the next publish reconnects.
    p.publish("ok", "x").await.unwrap();
    p.stop().await;
    assert!(matches!(
        p.publish("ok", "x").await,
        Err(nsq::Error::Stopped)
    ));

    let unreachable = Producer::new("127.0.0.1:1", config()).unwrap();
    assert!(matches!(
        unreachable.publish("t", "x").await,
        Err(nsq::Error::Io { .. })
    ));
    nsqd.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_pipelined_publishes() {
    let nsqd = start_default_nsqd().await;
    let p = Arc::new(producer(&nsqd, config()));
    p.ping().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10_000 {
        let p = p.clone();
        tasks.spawn(async move { p.publish("pipe", format!("m{i}")).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    let topic = stats(&nsqd)
        .await
        .topics
        .unwrap()
        .into_iter()
        .find(|t| t.topic_name == "pipe")
        .unwrap();
    assert_eq!(topic.message_count, 10_000);
    // Only one connection did all that.
    assert_eq!(stats(&nsqd).await.producers.unwrap_or_default().len(), 1);
    p.stop().await;
    nsqd.shutdown().await;
}

#[tokio::test]
async fn producer_stop_waits_for_outstanding_publishes() {
    let nsqd = start_default_nsqd().await;
    let p = Arc::new(producer(&nsqd, config()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..500 {
        let p = p.clone();
        tasks.spawn(async move { p.publish("stopping", format!("m{i}")).await });
    }
    tokio::task::yield_now().await;
    p.stop().await;
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert!(matches!(e, nsq::Error::Stopped), "{e}"),
        }
    }
    let topic = stats(&nsqd).await.topics.unwrap_or_default();
    let count = topic.first().map_or(0, |t| t.message_count);
    assert_eq!(count, ok, "every publish that returned Ok is in nsqd");
    nsqd.shutdown().await;
}

/// Holds messages until told to release them, to observe what is in flight.
fn holding_consumer(topic: &str, config: Config) -> (Consumer, Arc<tokio::sync::Semaphore>) {
    let consumer = Consumer::new(topic, "ch", config).unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    consumer
        .add_concurrent_handlers(
            move |_msg: Message| {
                let g = g.clone();
                async move {
                    g.acquire().await.unwrap().forget();
                    Ok::<_, std::io::Error>(())
                }
            },
            16,
        )
        .unwrap();
    (consumer, gate)
}

async fn totals(nsqds: &[Nsqd], topic: &str) -> (i64, i64, u64) {
    let (mut ready, mut in_flight, mut finished) = (0, 0, 0);
    for nsqd in nsqds {
        if let Some(ch) = channel_stats(nsqd, topic, "ch").await {
            in_flight += ch.in_flight_count;
            for client in ch.clients.unwrap_or_default() {
                ready += client.ready_count;
                finished += client.finish_count;
            }
        }
    }
    (ready, in_flight, finished)
}

async fn max_in_flight_across_three(max_in_flight: u32) {
    let topic = format!("mif{max_in_flight}");
    let mut nsqds = Vec::new();
    for _ in 0..3 {
        nsqds.push(start_default_nsqd().await);
    }
    let (consumer, gate) = holding_consumer(
        &topic,
        Config {
            max_in_flight,
            ..config()
        },
    );
    // Connect first: lowering a connection's RDY does not take back the
    // messages it already holds.
    for nsqd in &nsqds {
        consumer
            .connect_to_nsqd(&nsqd.tcp_addr().to_string())
            .await
            .unwrap();
    }
    for nsqd in &nsqds {
        let p = producer(nsqd, config());
        p.multi_publish(&topic, (0..10).map(|i| format!("m{i}")))
            .await
            .unwrap();
        p.stop().await;
    }
    let mut done = 0;
    let deadline = Instant::now() + 2 * PATIENCE;
    while done < 30 {
        assert!(Instant::now() < deadline, "only {done} of 30 finished");
        let (mut ready, mut in_flight, mut finished) = totals(&nsqds, &topic).await;
        if ready > max_in_flight as i64 || in_flight > max_in_flight as i64 {
            // Moving RDY between connections sends RDY 0 and RDY 1 on two
            // sockets, which two nsqds may apply in either order: a sum over
            // them can be briefly high. A real excess persists.
            tokio::time::sleep(Duration::from_millis(100)).await;
            (ready, in_flight, finished) = totals(&nsqds, &topic).await;
        }
        assert!(
            ready <= max_in_flight as i64,
            "RDY {ready} > {max_in_flight}"
        );
        assert!(
            in_flight <= max_in_flight as i64,
            "{in_flight} in flight > {max_in_flight}"
        );
        done = finished;
        gate.add_permits(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer.stop().await;
    for nsqd in nsqds {
        nsqd.shutdown().await;
    }
}

#[tokio::test]
async fn max_in_flight_is_shared_by_three_connections() {
    max_in_flight_across_three(4).await;
}

#[tokio::test]
async fn rdy_is_redistributed_when_connections_outnumber_max_in_flight() {
    max_in_flight_across_three(1).await;
}

#[tokio::test]
async fn handler_errors_requeue_with_growing_delay() {
    let nsqd = start_default_nsqd().await;
    let consumer = Consumer::new("req", "ch", config()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    consumer
        .add_handler(move |msg: Message| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push((msg.attempts(), Instant::now()));
                if msg.attempts() < 3 {
                    Err("not yet".into())
                } else {
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                }
            }
        })
        .unwrap();
    consumer
        .connect_to_nsqd(&nsqd.tcp_addr().to_string())
        .await
        .unwrap();
    producer(&nsqd, config()).publish("req", "x").await.unwrap();
    eventually("third attempt finished", || async {
        consumer.stats().messages_finished == 1
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "attempts"
    );
    // default_requeue_delay × attempts: 100 ms, then 200 ms.
    assert!(seen[1].1 - seen[0].1 >= Duration::from_millis(95));
    assert!(seen[2].1 - seen[1].1 >= Duration::from_millis(195));
    let ch = channel_stats(&nsqd, "req", "ch").await.unwrap();
    assert_eq!(ch.requeue_count, 2);
    assert_eq!(consumer.stats().messages_requeued, 2);
    consumer.stop().await;
    nsqd.shutdown().await;
}

struct AlwaysFails {
    failed: mpsc::UnboundedSender<(u16, bytes::Bytes)>,
}

impl nsq::Handler for AlwaysFails {
    async fn handle(&self, _msg: Message) -> Result<(), nsq::consumer::BoxError> {
        Err("broken".into())
    }

    fn failed(&self, msg: &Message) {
        let _ = self.failed.send((msg.attempts(), msg.body().clone()));
    }
}

#[tokio::test]
async fn max_attempts_hands_the_message_to_the_failure_hook() {
    let nsqd = start_default_nsqd().await;
    let consumer = Consumer::new(
        "dead",
        "ch",
        Config {
            max_attempts: 2,
            default_requeue_delay: Duration::from_millis(10),
            ..config()
        },
    )
    .unwrap();
    let (tx, mut failed) = mpsc::unbounded_channel();
    consumer.add_handler(AlwaysFails { failed: tx }).unwrap();
    consumer
        .connect_to_nsqd(&nsqd.tcp_addr().to_string())
        .await
        .unwrap();
    producer(&nsqd, config())
        .publish("dead", "poison")
        .await
        .unwrap();
    let (attempts, body) = tokio::time::timeout(PATIENCE, failed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((attempts, &body[..]), (3, &b"poison"[..]));
    eventually("finished in nsqd", || async {
        let ch = channel_stats(&nsqd, "dead", "ch").await.unwrap();
        ch.depth == 0 && ch.in_flight_count == 0 && ch.deferred_count == 0
    })
    .await;
    let s = consumer.stats();
    assert_eq!(
        (
            s.messages_given_up,
            s.messages_requeued,
            s.messages_finished
        ),
        (1, 2, 1)
    );
    consumer.stop().await;
    nsqd.shutdown().await;
}

#[tokio::test]
async fn backoff_is_entered_and_left() {
    backoff_entered_and_left(BackoffStrategy::Exponential).await;
}

#[tokio::test]
async fn full_jitter_backoff_is_entered_and_left() {
    backoff_entered_and_left(BackoffStrategy::FullJitter).await;
}

async fn backoff_entered_and_left(backoff_strategy: BackoffStrategy) {
    let nsqd = start_default_nsqd().await;
    let consumer = Consumer::new(
        "backoff",
        "ch",
        Config {
            max_in_flight: 5,
            default_requeue_delay: Duration::ZERO,
            backoff_multiplier: Duration::from_millis(50),
            max_backoff_duration: Duration::from_millis(400),
            backoff_strategy,
            ..config()
        },
    )
    .unwrap();
    let failures = Arc::new(Mutex::new(3));
    let f = failures.clone();
    consumer
        .add_handler(move |_msg: Message| {
            let f = f.clone();
            async move {
                let mut left = f.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return Err("failing");
                }
                Ok(())
            }
        })
        .unwrap();
    consumer
        .connect_to_nsqd(&nsqd.tcp_addr().to_string())
        .await
        .unwrap();
    let p = producer(&nsqd, config());
    p.multi_publish("backoff", (0..20).map(|i| format!("m{i}")))
        .await
        .unwrap();
    eventually("backoff entered", || async {
        consumer.stats().backoff_level > 0
    })
    .await;
    // While backing off, nsqd sees at most RDY 1.
    let ready: i64 = channel_stats(&nsqd, "backoff", "ch")
        .await
        .unwrap()
        .clients
        .unwrap_or_default()
        .iter()
        .map(|c| c.ready_count)
        .sum();
    assert!(ready <= 1, "RDY {ready} during backoff");
    eventually("all consumed and backoff left", || async {
        let s = consumer.stats();
        s.messages_finished == 20 && s.backoff_level == 0
    })
    .await;
    eventually("full RDY again", || async {
        let ch = channel_stats(&nsqd, "backoff", "ch").await.unwrap();
        ch.clients
            .unwrap_or_default()
            .first()
            .map(|c| c.ready_count)
            == Some(5)
    })
    .await;
    consumer.stop().await;
    p.stop().await;
    nsqd.shutdown().await;
}

/// A TCP forwarder whose connections the test can cut, to simulate failures.
struct Proxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let c = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        Proxy { addr, conns }
    }

    fn cut(&self) {
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test]
async fn consumer_and_producer_reconnect_after_the_connection_dies() {
    let nsqd = start_default_nsqd().await;
    let proxy = Proxy::start(nsqd.tcp_addr()).await;
    let (consumer, mut rx) = forwarding_consumer("recon", config());
    consumer
        .connect_to_nsqd(&proxy.addr.to_string())
        .await
        .unwrap();
    let p = Producer::new(proxy.addr.to_string(), config()).unwrap();
    p.publish("recon", "before").await.unwrap();
    assert_eq!(recv(&mut rx).await.body(), "before");
    eventually("FIN reached nsqd", || async {
        channel_stats(&nsqd, "recon", "ch")
            .await
            .is_some_and(|c| c.in_flight_count == 0)
    })
    .await;

    proxy.cut();
    eventually("consumer reconnected", || async {
        channel_stats(&nsqd, "recon", "ch")
            .await
            .is_some_and(|c| c.client_count == 1)
            && consumer.stats().connections == 1
    })
    .await;
    // The producer notices on its next publish at the latest.
    let mut delivered = p.publish("recon", "after").await;
    if delivered.is_err() {
        delivered = p.publish("recon", "after").await;
    }
    delivered.unwrap();
    assert_eq!(recv(&mut rx).await.body(), "after");
    consumer.stop().await;
    p.stop().await;
    nsqd.shutdown().await;
}

async fn compressed_round_trip(config: Config) {
    let nsqd = start_default_nsqd().await;
    let p = producer(&nsqd, config.clone());
    let (consumer, mut rx) = forwarding_consumer("z", config.clone());
    consumer
        .connect_to_nsqd(&nsqd.tcp_addr().to_string())
        .await
        .unwrap();
    let big = "compressible ".repeat(20_000);
    for i in 0..50 {
        p.publish("z", format!("{i} {big}")).await.unwrap();
    }
    for i in 0..50 {
        let msg = recv(&mut rx).await;
        assert_eq!(msg.body(), format!("{i} {big}").as_bytes());
    }
    let client = channel_stats(&nsqd, "z", "ch")
        .await
        .unwrap()
        .clients
        .unwrap()
        .remove(0);
    assert_eq!(
        (client.snappy, client.deflate),
        (config.snappy, config.deflate)
    );
    consumer.stop().await;
    p.stop().await;
    nsqd.shutdown().await;
}

#[tokio::test]
async fn snappy_connections() {
    compressed_round_trip(Config {
        snappy: true,
        ..config()
    })
    .await;
}

#[tokio::test]
async fn deflate_connections() {
    compressed_round_trip(Config {
        deflate: true,
        deflate_level: 3,
        ..config()
    })
    .await;
}

/// A consumer that counts every body it handles, slowly.
fn counting_consumer(counts: Arc<Mutex<HashMap<bytes::Bytes, u32>>>) -> Consumer {
    let consumer = Consumer::new(
        "graceful",
        "ch",
        Config {
            max_in_flight: 20,
            ..config()
        },
    )
    .unwrap();
    consumer
        .add_concurrent_handlers(
            move |msg: Message| {
                let counts = counts.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    *counts
                        .lock()
                        .unwrap()
                        .entry(msg.body().clone())
                        .or_default() += 1;
                    Ok::<_, std::io::Error>(())
                }
            },
            4,
        )
        .unwrap();
    consumer
}

#[tokio::test]
async fn graceful_stop_loses_nothing_and_processes_nothing_twice() {
    let nsqd = start_default_nsqd().await;
    let addr = nsqd.tcp_addr().to_string();
    let p = producer(&nsqd, config());
    p.multi_publish("graceful", (0..1000).map(|i| format!("m{i}")))
        .await
        .unwrap();
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let first = counting_consumer(counts.clone());
    first.connect_to_nsqd(&addr).await.unwrap();
    eventually("some handled", || async {
        counts.lock().unwrap().len() > 100
    })
    .await;
    first.stop().await;
    let after_first = counts.lock().unwrap().len();
    assert!(after_first < 1000, "stopped before the end");
    let ch = channel_stats(&nsqd, "graceful", "ch").await.unwrap();
    assert_eq!(ch.in_flight_count, 0, "nothing left in flight");
    assert_eq!(ch.depth as usize + after_first, 1000);
    assert_eq!(ch.requeue_count + ch.timeout_count, 0);

    let second = counting_consumer(counts.clone());
    second.connect_to_nsqd(&addr).await.unwrap();
    eventually("the rest handled", || async {
        counts.lock().unwrap().len() == 1000
    })
    .await;
    second.stop().await;
    assert!(counts.lock().unwrap().values().all(|&n| n == 1));
    p.stop().await;
    nsqd.shutdown().await;
}

#[tokio::test]
async fn explicit_touch_and_finish() {
    let nsqd = start_default_nsqd().await;
    let consumer = Consumer::new(
        "manual",
        "ch",
        Config {
            msg_timeout: Some(Duration::from_secs(1)),
            ..config()
        },
    )
    .unwrap();
    consumer
        .add_handler(|msg: Message| async move {
            msg.disable_auto_response();
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    msg.touch();
                }
                msg.finish();
            });
            Ok::<_, std::io::Error>(())
        })
        .unwrap();
    consumer
        .connect_to_nsqd(&nsqd.tcp_addr().to_string())
        .await
        .unwrap();
    producer(&nsqd, config())
        .publish("manual", "x")
        .await
        .unwrap();
    eventually("finished after touches", || async {
        consumer.stats().messages_finished == 1
    })
    .await;
    let ch = channel_stats(&nsqd, "manual", "ch").await.unwrap();
    assert_eq!((ch.timeout_count, ch.requeue_count), (0, 0));
    consumer.stop().await;
    nsqd.shutdown().await;
}

#[tokio::test]
async fn config_and_usage_errors() {
    let bad = Config {
        snappy: true,
        deflate: true,
        ..Config::default()
    };
    assert!(matches!(
        Producer::new("127.0.0.1:4150", bad.clone()),
        Err(nsq::Error::Config(_))
    ));
    assert!(Consumer::new("t", "c", bad).is_err());
    assert!(Consumer::new("bad topic", "c", Config::default()).is_err());
    let consumer = Consumer::new("t", "c", Config::default()).unwrap();
    assert!(matches!(
        consumer.connect_to_nsqd("127.0.0.1:1").await,
        Err(nsq::Error::Usage(_))
    ));
}

/// A stand-in for nsqlookupd's `/lookup` whose list of nsqd the test changes.
async fn fake_lookupd(producers: Arc<Mutex<Vec<SocketAddr>>>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let producers = producers.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                while !request.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if stream.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    request.push(byte[0]);
                }
                let request = String::from_utf8_lossy(&request).to_lowercase();
                assert!(request.starts_with("get /lookup?topic=disco "), "{request}");
                assert!(request.contains("accept: application/vnd.nsq; version=1.0"));
                let list: Vec<serde_json::Value> = producers
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "remote_address": a.to_string(),
                            "hostname": "h",
                            "broadcast_address": a.ip().to_string(),
                            "tcp_port": a.port(),
                            "http_port": 0,
                            "version": "1.3.0",
                        })
                    })
                    .collect();
                let body = serde_json::json!({"channels": ["ch"], "producers": list}).to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn lookupd_discovery_adds_and_drops_nsqds() {
    let a = start_default_nsqd().await;
    let b = start_default_nsqd().await;
    let reported = Arc::new(Mutex::new(vec![a.tcp_addr()]));
    let lookupd = fake_lookupd(reported.clone()).await;
    let (consumer, mut rx) = forwarding_consumer("disco", config());
    consumer
        .connect_to_lookupd(&lookupd.to_string())
        .await
        .unwrap();
    producer(&a, config())
        .publish("disco", "from a")
        .await
        .unwrap();
    assert_eq!(recv(&mut rx).await.body(), "from a");

    reported.lock().unwrap().push(b.tcp_addr());
    eventually("connected to both", || async {
        consumer.stats().connections == 2
    })
    .await;
    producer(&b, config())
        .publish("disco", "from b")
        .await
        .unwrap();
    assert_eq!(recv(&mut rx).await.body(), "from b");

    reported.lock().unwrap().remove(0);
    eventually("a dropped", || async {
        consumer.stats().connections == 1
            && channel_stats(&a, "disco", "ch")
                .await
                .is_some_and(|c| c.client_count == 0)
    })
    .await;
    consumer.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}
