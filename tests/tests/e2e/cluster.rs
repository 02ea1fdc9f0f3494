//! A cluster on loopback: two nsqlookupd, several nsqd, and a consumer that
//! finds nsqds only through lookupd, as go-nsq's does (poll `/lookup` on every
//! lookupd, union the producers, connect to the new ones).

use nsq::api::LookupResponse;
use nsq::protocol::{FrameType, WireMessage};
use nsq_e2e::*;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// A consumer of topic `t`, channel `c`, that discovers nsqds via lookupd.
struct DiscoveringConsumer {
    lookupds: Vec<String>,
    conns: BTreeMap<String, Conn>,
}

impl DiscoveringConsumer {
    fn new(lookupds: &[&nsqlookupd::Lookupd]) -> Self {
        DiscoveringConsumer {
            lookupds: lookupds.iter().map(|l| l.http_addr().to_string()).collect(),
            conns: BTreeMap::new(),
        }
    }

    /// One poll: every lookupd that answers, producers unioned; connects to
    /// the new ones. A lookupd that is down is skipped.
    async fn poll(&mut self) {
        let mut producers = HashSet::new();
        for lookupd in &self.lookupds {
            let url = format!("http://{lookupd}/lookup?topic=t");
            let answer = reqwest::Client::new()
                .get(url)
                .header("Accept", "application/vnd.nsq; version=1.0")
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if let Ok(answer) = answer {
                if let Ok(lookup) = answer.json::<LookupResponse>().await {
                    producers.extend(
                        lookup
                            .producers
                            .iter()
                            .map(|p| format!("{}:{}", p.broadcast_address, p.tcp_port)),
                    );
                }
            }
        }
        for addr in producers {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.conns.entry(addr) {
                let mut conn = Conn::connect_addr(slot.key().parse().unwrap()).await;
                conn.subscribe("t", "c").await;
                conn.rdy(100).await;
                slot.insert(conn);
            }
        }
    }

    /// Polls lookupd and reads until every body in `want` arrived (once each).
    async fn receive(&mut self, want: &[String]) {
        let mut missing: HashSet<String> = want.iter().cloned().collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !missing.is_empty() {
            assert!(Instant::now() < deadline, "never received {missing:?}");
            self.poll().await;
            let mut closed = Vec::new();
            for (addr, conn) in self.conns.iter_mut() {
                loop {
                    match conn.read_frame_within(Duration::from_millis(50)).await {
                        Ok(Some(frame)) if frame.frame_type == FrameType::Message => {
                            let m = WireMessage::decode(frame.data).unwrap();
                            let body = String::from_utf8_lossy(&m.body).into_owned();
                            assert!(missing.remove(&body), "unexpected or repeated {body}");
                            conn.fin(m.id).await;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            closed.push(addr.clone());
                            break;
                        }
                        Err(()) => break,
                    }
                }
            }
            for addr in closed {
                self.conns.remove(&addr);
            }
        }
    }
}

async fn publish(nsqd: &Nsqd, body: &str) -> String {
    Conn::connect(nsqd)
        .await
        .publish("t", body.as_bytes())
        .await;
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_find_every_nsqd_through_redundant_lookupds() {
    let (l1, l2) = (start_lookupd().await, start_lookupd().await);
    let mut nsqds = Vec::new();
    for _ in 0..3 {
        nsqds.push(start_nsqd(options_with_lookupds(&[&l1, &l2])).await);
    }
    let mut consumer = DiscoveringConsumer::new(&[&l1, &l2]);
    let mut want = Vec::new();
    for (i, nsqd) in nsqds.iter().enumerate() {
        want.push(publish(nsqd, &format!("from-{i}")).await);
    }
    consumer.receive(&want).await;
    assert_eq!(consumer.conns.len(), 3);

    // A new nsqd joins and is picked up.
    nsqds.push(start_nsqd(options_with_lookupds(&[&l1, &l2])).await);
    let fourth = publish(&nsqds[3], "from-new").await;
    consumer.receive(&[fourth]).await;
    assert_eq!(consumer.conns.len(), 4);

    // One lookupd dies: discovery goes on through the other.
    l1.shutdown().await;
    nsqds.push(start_nsqd(options_with_lookupds(&[&l2])).await);
    let fifth = publish(&nsqds[4], "after-lookupd-loss").await;
    consumer.receive(&[fifth]).await;
    assert_eq!(consumer.conns.len(), 5);

    for nsqd in nsqds {
        nsqd.shutdown().await;
    }
    l2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nsqd_registers_again_and_keeps_its_messages() {
    let lookupd = start_lookupd().await;
    let opts = options_with_lookupds(&[&lookupd]);
    let nsqd = start_nsqd(opts.clone()).await;
    let (tcp, http) = (nsqd.tcp_addr(), nsqd.http_addr().unwrap());
    let before = publish(&nsqd, "before-restart").await;
    let lookup = |lookupd: std::net::SocketAddr| async move {
        let url = format!("http://{lookupd}/lookup?topic=t");
        match reqwest::get(url).await {
            Ok(answer) => answer
                .json::<LookupResponse>()
                .await
                .unwrap_or_default()
                .producers
                .len(),
            Err(_) => 0,
        }
    };
    eventually("nsqd registered", || async {
        lookup(lookupd.http_addr()).await == 1
    })
    .await;
    nsqd.shutdown().await;
    eventually("lookupd dropped the stopped nsqd", || async {
        lookup(lookupd.http_addr()).await == 0
    })
    .await;

    // Same ports, same data: it comes back with its topic and its message.
    let mut again = opts;
    again.tcp_address = tcp.to_string();
    again.http_address = http.to_string();
    let nsqd = start_nsqd(again).await;
    eventually("nsqd registered again", || async {
        lookup(lookupd.http_addr()).await == 1
    })
    .await;
    let mut consumer = DiscoveringConsumer::new(&[&lookupd]);
    consumer.receive(&[before]).await;
    nsqd.shutdown().await;
    lookupd.shutdown().await;
}

/// Our own Consumer, given only the lookupds, finds every nsqd and picks up a
/// new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nsq_consumer_discovers_through_lookupd() {
    let (l1, l2) = (start_lookupd().await, start_lookupd().await);
    let mut nsqds = Vec::new();
    for _ in 0..3 {
        nsqds.push(start_nsqd(options_with_lookupds(&[&l1, &l2])).await);
    }
    for (i, nsqd) in nsqds.iter().enumerate() {
        publish(nsqd, &format!("n{i}")).await;
    }
    let config = nsq::Config {
        max_in_flight: 10,
        lookupd_poll_interval: Duration::from_millis(200),
        ..nsq::Config::default()
    };
    let consumer = nsq::Consumer::new("t", "c", config).expect("valid consumer");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    consumer
        .add_handler(move |msg: nsq::Message| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(String::from_utf8_lossy(msg.body()).into_owned());
                Ok::<_, std::convert::Infallible>(())
            }
        })
        .expect("handler");
    for lookupd in [&l1, &l2] {
        consumer
            .connect_to_lookupd(&lookupd.http_addr().to_string())
            .await
            .expect("lookupd");
    }
    let mut got = HashSet::new();
    while got.len() < 3 {
        let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a message")
            .unwrap();
        assert!(got.insert(body), "delivered twice");
    }
    nsqds.push(start_nsqd(options_with_lookupds(&[&l1, &l2])).await);
    publish(&nsqds[3], "newcomer").await;
    let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the newcomer's message")
        .unwrap();
    assert_eq!(body, "newcomer");
    consumer.stop().await;
    for nsqd in nsqds {
        nsqd.shutdown().await;
    }
    l1.shutdown().await;
    l2.shutdown().await;
}
