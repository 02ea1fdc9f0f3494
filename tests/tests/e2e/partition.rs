//! A real network partition: nsqd runs in its own network namespace, joined to
//! this one (nsqlookupd and a consumer) by a veth pair. The test cuts the
//! link until nsqd's lookupd connection fails (its PING every 15 s), publishes
//! inside the namespace, heals the link, and checks that nsqd registers again, the consumer finds it again and nothing published during
//! the partition is lost; messages in flight to the consumer that was cut off
//! time out and go to another one.
//!
//! Addresses come from 198.51.100.0/24 (TEST-NET-2, never routed) and exist
//! only on the veth pair the test creates. Everything is removed at the end.

use nsq::api::LookupResponse;
use nsq::protocol::{Command, WireMessage};
use nsq_e2e::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Waits until nsqd has logged `what` at least `times` times.
async fn wait_for_log(nsqd: &Daemon, what: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while nsqd.log().matches(what).count() < times {
        assert!(
            Instant::now() < deadline,
            "nsqd never logged {what:?} {times} times:\n{}",
            nsqd.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn producers(lookupd_http: std::net::SocketAddr, topic: &str) -> Vec<String> {
    let url = nsq::http_client::api_url(&lookupd_http.to_string(), "/lookup", &[("topic", topic)]);
    let Ok(answer) = reqwest::get(url.expect("lookupd URL")).await else {
        return vec![];
    };
    let lookup: LookupResponse = answer.json().await.unwrap_or_default();
    lookup
        .producers
        .iter()
        .map(|p| format!("{}:{}", p.broadcast_address, p.tcp_port))
        .collect()
}

/// Finds nsqd through lookupd, as a consumer does, and subscribes.
async fn discover_and_subscribe(
    lookupd_http: std::net::SocketAddr,
    rdy: u32,
    heartbeat_ms: u32,
) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Some(addr) = producers(lookupd_http, "p").await.first() {
            break addr.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "nsqd never appeared in lookupd");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut conn = Conn::connect_addr(addr).await;
    let identify = format!(r#"{{"heartbeat_interval":{heartbeat_ms}}}"#);
    conn.send(Command::Identify(identify.into_bytes().into()))
        .await;
    conn.expect_response("OK").await;
    conn.subscribe("p", "c").await;
    conn.rdy(rdy).await;
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_keeps_publishing_and_loses_nothing() {
    let Some(ns) = Netns::create(0) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to create network namespaces (run as root)"
        );
        eprintln!("skipped: cannot create a network namespace here (needs root and iproute2)");
        return;
    };
    let lookupd = nsqlookupd::Lookupd::start(nsqlookupd::Options {
        tcp_address: format!("{}:0", ns.root_ip),
        http_address: format!("{}:0", ns.root_ip),
        broadcast_address: ns.root_ip.clone(),
        ..nsqlookupd::Options::default()
    })
    .await
    .expect("lookupd starts");
    let lookupd_http = lookupd.http_addr();
    let data = temp_dir("partition");
    let lookupd_flag = format!("--lookupd-tcp-address={}", lookupd.tcp_addr());
    let nsqd = Daemon::start_in_netns(
        &ns.name,
        &ns.inner_ip,
        &data,
        &[&lookupd_flag, "--msg-timeout=2s"],
    );

    // Before: a consumer across the link holds three messages in flight.
    for i in 0..5 {
        assert!(
            ns.publish_inside(nsqd.http, "p", &format!("before-{i}")),
            "publish before the partition"
        );
    }
    let mut far = discover_and_subscribe(lookupd_http, 3, 1000).await;
    let held: Vec<WireMessage> = vec![
        far.expect_message().await,
        far.expect_message().await,
        far.expect_message().await,
    ];

    // The partition: nsqd keeps taking publishes, and its next PING to lookupd
    // (every 15 s) fails.
    ns.cut();
    for i in 0..20 {
        assert!(
            ns.publish_inside(nsqd.http, "p", &format!("during-{i}")),
            "publish {i} during the partition"
        );
    }
    wait_for_log(&nsqd, "lookupd connection failed", 1).await;

    // Healed: nsqd registers again and a new consumer finds it through lookupd.
    ns.heal();
    wait_for_log(&nsqd, "registered with lookupd", 2).await;
    let mut near = discover_and_subscribe(lookupd_http, 100, 5000).await;
    let mut expected: HashSet<String> = (0..20).map(|i| format!("during-{i}")).collect();
    expected.extend((3..5).map(|i| format!("before-{i}")));
    let held_bodies: HashSet<String> = held
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    expected.extend(held_bodies.iter().cloned());
    let mut got = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "missing after the partition: {:?}",
            expected.difference(&got).collect::<Vec<_>>()
        );
        let Ok(Some(frame)) = near.read_frame_within(Duration::from_secs(1)).await else {
            continue;
        };
        if frame.frame_type != nsq::protocol::FrameType::Message {
            continue;
        }
        let m = WireMessage::decode(frame.data).unwrap();
        let body = String::from_utf8_lossy(&m.body).into_owned();
        if held_bodies.contains(&body) {
            assert!(
                m.attempts >= 2,
                "{body} was redelivered after the cut-off consumer's timeout"
            );
        }
        assert!(got.insert(body.clone()), "{body} delivered twice");
        near.fin(m.id).await;
    }
    assert_eq!(got, expected);
    drop(far);
    let status = nsqd.terminate();
    assert!(status.success());
    lookupd.shutdown().await;
}
