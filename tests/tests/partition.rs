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
use std::process::Command as Process;
use std::time::{Duration, Instant};

const ROOT_IP: &str = "198.51.100.1";
const NSQD_IP: &str = "198.51.100.2";

/// A namespace and the veth pair to it; both go away on drop.
struct Netns {
    name: String,
    root_end: String,
    inner_end: String,
}

fn ip(args: &[&str]) -> bool {
    Process::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    fn create() -> Option<Netns> {
        let id = std::process::id() % 100_000;
        let ns = Netns {
            name: format!("nsqt-{id}"),
            root_end: format!("nqr{id}"),
            inner_end: format!("nqn{id}"),
        };
        let (name, root, inner) = (&ns.name, &ns.root_end, &ns.inner_end);
        let ok = ip(&["netns", "add", name])
            && ip(&["link", "add", root, "type", "veth", "peer", "name", inner])
            && ip(&["link", "set", inner, "netns", name])
            && ip(&["addr", "add", &format!("{ROOT_IP}/30"), "dev", root])
            && ip(&["link", "set", root, "up"])
            && ip(&[
                "netns",
                "exec",
                name,
                "ip",
                "addr",
                "add",
                &format!("{NSQD_IP}/30"),
                "dev",
                inner,
            ])
            && ip(&["netns", "exec", name, "ip", "link", "set", inner, "up"])
            && ip(&["netns", "exec", name, "ip", "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }

    /// Cuts the link from the namespace's side: this side keeps its route,
    /// so packets die on the veth instead of taking any other way.
    fn cut(&self) {
        self.set_inner_end("down");
    }

    fn heal(&self) {
        self.set_inner_end("up");
    }

    fn set_inner_end(&self, state: &str) {
        let name = &self.name;
        assert!(ip(&[
            "netns",
            "exec",
            name,
            "ip",
            "link",
            "set",
            &self.inner_end,
            state
        ]));
    }

    /// Publishes over HTTP from inside the namespace.
    fn publish_inside(&self, http: std::net::SocketAddr, topic: &str, body: &str) -> bool {
        let script = format!(
            "import urllib.request,sys\nr=urllib.request.urlopen(urllib.request.Request('http://{http}/pub?topic={topic}', data=sys.argv[1].encode()), timeout=5)\nsys.exit(0 if r.read()==b'OK' else 1)"
        );
        Process::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", &script, body])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.root_end]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

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
    let Some(ns) = Netns::create() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to create network namespaces (run as root)"
        );
        eprintln!("skipped: cannot create a network namespace here (needs root and iproute2)");
        return;
    };
    let lookupd = nsqlookupd::Lookupd::start(nsqlookupd::Options {
        tcp_address: format!("{ROOT_IP}:0"),
        http_address: format!("{ROOT_IP}:0"),
        broadcast_address: ROOT_IP.into(),
        ..nsqlookupd::Options::default()
    })
    .await
    .expect("lookupd starts");
    let lookupd_http = lookupd.http_addr();
    let data = temp_dir("partition");
    let lookupd_flag = format!("--lookupd-tcp-address={}", lookupd.tcp_addr());
    let nsqd = Daemon::start_in_netns(
        &ns.name,
        NSQD_IP,
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
