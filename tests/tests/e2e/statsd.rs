//! The statsd push end to end, received by a UDP socket in the test:
//! upstream's keys, counters sent as deltas, packets within their size.

use bytes::Bytes;
use nsq_e2e::{
    consumer, http_request, http_url, start_nsqd, stats, test_options, Conn, Nsqd, Options,
};
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::UdpSocket;

pub(crate) const PACKET_SIZE: usize = 200;

/// A statsd server: collects lines, one push at a time.
pub(crate) struct Statsd {
    socket: UdpSocket,
    /// Lines of the push being received.
    partial: Vec<String>,
}

/// One push: key (prefix removed) → (value, type).
pub(crate) type Push = HashMap<String, (i64, char)>;

impl Statsd {
    pub(crate) async fn bind() -> Statsd {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        Statsd {
            socket,
            partial: Vec::new(),
        }
    }

    /// Where nsqd is to push: `opts` with this server and a short interval.
    pub(crate) fn options(&self, opts: Options) -> Options {
        Options {
            statsd_address: self.socket.local_addr().unwrap().to_string(),
            statsd_interval: Duration::from_millis(200),
            statsd_udp_packet_size: PACKET_SIZE as i64,
            ..opts
        }
    }

    /// The prefix of `nsqd`'s keys.
    pub(crate) fn prefix(nsqd: &Nsqd) -> String {
        format!("nsq.127_0_0_1_{}.", nsqd.http_addr().unwrap().port())
    }

    /// The next complete push; `mem.gc_runs` is the last line of each.
    pub(crate) async fn next_push(&mut self, prefix: &str) -> Push {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), self.socket.recv(&mut buf))
                .await
                .expect("a statsd packet within 5s")
                .expect("recv");
            assert!(n <= PACKET_SIZE, "packet of {n} bytes > {PACKET_SIZE}");
            let text = std::str::from_utf8(&buf[..n]).expect("UTF-8 packet");
            assert!(text.ends_with('\n'), "packet ends mid-line: {text:?}");
            for line in text.lines() {
                self.partial.push(line.to_string());
                if line.contains(".mem.gc_runs:") {
                    return parse_push(prefix, &std::mem::take(&mut self.partial));
                }
            }
        }
    }
}

fn parse_push(prefix: &str, lines: &[String]) -> Push {
    let mut push = Push::new();
    for line in lines {
        let rest = line
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line:?} lacks prefix {prefix:?}"));
        let (key, value) = rest.rsplit_once(':').expect("key:value|type");
        let (value, kind) = value.split_once('|').expect("value|type");
        let kind = match kind {
            "c" => 'c',
            "g" => 'g',
            other => panic!("unexpected statsd type {other:?} in {line:?}"),
        };
        let value: i64 = value.parse().expect("integer value");
        assert!(
            push.insert(key.to_string(), (value, kind)).is_none(),
            "{key} twice in one push"
        );
    }
    push
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_pushes_upstream_keys_with_deltas() {
    let mut statsd = Statsd::bind().await;
    let mut opts = test_options();
    opts.statsd_address = statsd.socket.local_addr().unwrap().to_string();
    opts.statsd_interval = Duration::from_millis(200);
    opts.statsd_udp_packet_size = PACKET_SIZE as i64;
    opts.statsd_exclude_ephemeral = true;
    opts.e2e_processing_latency_percentiles = vec![0.99, 0.5];
    let nsqd = start_nsqd(opts).await;
    let port = nsqd.http_addr().unwrap().port();
    let prefix = format!("nsq.127_0_0_1_{port}.");
    // Expanded once at start, and `/config` shows it so (string options are raw).
    let config = |opt: &'static str| {
        let path = format!("/config/{opt}");
        let base = http_url(&nsqd);
        async move {
            http_request(&base, reqwest::Method::GET, &path, Bytes::new())
                .await
                .body
        }
    };
    assert_eq!(config("statsd_prefix").await, prefix);
    assert_eq!(config("statsd_interval").await, "200000000");

    let mut publisher = Conn::connect(&nsqd).await;
    let mut sub = consumer(&nsqd, "t", "c", 0).await;
    let _ephemeral = consumer(&nsqd, "t", "e#ephemeral", 0).await;
    let _ephemeral_topic = consumer(&nsqd, "x#ephemeral", "c", 0).await;
    for _ in 0..3 {
        publisher.publish("t", b"hello").await;
    }
    sub.rdy(2).await;
    let first = sub.expect_message().await;
    sub.expect_message().await;
    // The FIN frees a slot of RDY 2: the third message goes in flight too.
    sub.fin(first.id).await;

    // Sum the counter deltas until they reach the totals: a counter sent as
    // a running total would overshoot.
    let mut sum: HashMap<String, i64> = HashMap::new();
    let mut settled = None;
    let mut last = Push::new();
    for _ in 0..25 {
        let push = statsd.next_push(&prefix).await;
        last = push.clone();
        for (key, (value, kind)) in &push {
            assert!(!key.contains("ephemeral"), "ephemeral sent: {key}");
            if *kind == 'c' {
                *sum.entry(key.clone()).or_default() += value;
            }
        }
        if sum.get("topic.t.message_count") == Some(&3)
            && push.get("topic.t.channel.c.in_flight_count") == Some(&(2, 'g'))
        {
            settled = Some(push);
            break;
        }
    }
    let push = settled.unwrap_or_else(|| {
        panic!("no push with the published messages; sums {sum:?} last {last:?}")
    });
    let expect = |key: &str, value: i64, kind: char| {
        assert_eq!(push.get(key), Some(&(value, kind)), "{key}");
    };
    expect("topic.t.depth", 0, 'g');
    expect("topic.t.backend_depth", 0, 'g');
    expect("topic.t.channel.c.depth", 0, 'g');
    expect("topic.t.channel.c.backend_depth", 0, 'g');
    expect("topic.t.channel.c.in_flight_count", 2, 'g');
    expect("topic.t.channel.c.deferred_count", 0, 'g');
    expect("topic.t.channel.c.clients", 1, 'g');
    for key in [
        "topic.t.message_bytes",
        "topic.t.channel.c.message_count",
        "topic.t.channel.c.requeue_count",
        "topic.t.channel.c.timeout_count",
        "mem.gc_runs",
    ] {
        assert_eq!(push.get(key).map(|v| v.1), Some('c'), "{key}");
    }
    assert_eq!(sum["topic.t.message_bytes"], 15);
    assert_eq!(sum["topic.t.channel.c.message_count"], 3);
    for key in [
        "topic.t.channel.c.e2e_processing_latency_99",
        "topic.t.channel.c.e2e_processing_latency_50",
        "topic.t.e2e_processing_latency_99",
        "mem.heap_objects",
        "mem.heap_idle_bytes",
        "mem.heap_released_bytes",
        "mem.gc_pause_usec_100",
        "mem.gc_pause_usec_99",
        "mem.gc_pause_usec_95",
        "mem.next_gc_bytes",
    ] {
        assert_eq!(push.get(key).map(|v| v.1), Some('g'), "{key}");
    }
    assert!(push["topic.t.channel.c.e2e_processing_latency_99"].0 > 0);
    assert!(push["mem.heap_in_use_bytes"].0 > 0);

    // Nothing new: the next push's counters are zero deltas.
    let quiet = statsd.next_push(&prefix).await;
    assert_eq!(quiet["topic.t.message_count"], (0, 'c'));
    assert_eq!(quiet["topic.t.channel.c.message_count"], (0, 'c'));

    // Two more: the deltas add up to the new totals across pushes.
    publisher.publish("t", b"12345").await;
    publisher.publish("t", b"12345").await;
    let mut added = 0;
    for _ in 0..10 {
        added += statsd.next_push(&prefix).await["topic.t.message_count"].0;
        if added >= 2 {
            break;
        }
    }
    assert_eq!(added, 2);
    let push = statsd.next_push(&prefix).await;
    let s = stats(&nsqd).await;
    let t = &s.topics.as_ref().unwrap()[0];
    assert_eq!(t.message_count, 5);
    assert_eq!(push["topic.t.channel.c.depth"].0, t.channels[0].depth);
    drop(sub);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_sends_memory_only_when_asked() {
    let statsd = Statsd::bind().await;
    let mut opts = test_options();
    opts.statsd_address = statsd.socket.local_addr().unwrap().to_string();
    opts.statsd_interval = Duration::from_millis(100);
    opts.statsd_prefix = "custom".into();
    opts.statsd_mem_stats = false;
    let nsqd = start_nsqd(opts).await;
    let mut publisher = Conn::connect(&nsqd).await;
    publisher.publish("t", b"x").await;
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(Duration::from_secs(5), statsd.socket.recv(&mut buf))
        .await
        .expect("a packet")
        .unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(
        text.lines().all(|l| l.starts_with("custom.topic.t.")),
        "{text}"
    );
    assert!(!text.contains("mem."));
    nsqd.shutdown().await;
}
