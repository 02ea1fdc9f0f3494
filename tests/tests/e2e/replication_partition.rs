//! Replication across a real network partition (#18): the origin runs in its
//! own network namespace, its peer in this one, joined by a veth pair. The
//! test cuts the link, publishes on the origin (which goes on alone and
//! shows the peer down with its backlog), heals the link, and checks that
//! the peer caught up with everything and the origin shows it in sync.

use nsq::api::Stats;
use nsq_e2e::*;
use std::time::Duration;

fn stats_in(text: &str) -> Stats {
    serde_json::from_str(text).expect("stats JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_peer_catches_up_when_the_link_heals() {
    let Some(ns) = Netns::create(1) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to create network namespaces (run as root)"
        );
        eprintln!("skipped: cannot create a network namespace here (needs root and iproute2)");
        return;
    };
    let (dir_origin, dir_peer) = (temp_dir("origin"), temp_dir("peer"));
    let peer = Daemon::start_on(&ns.root_ip, &dir_peer, &["--mem-queue-size=0"]);
    let replicate = format!("--replicate-to={}", peer.tcp);
    let origin = Daemon::start_in_netns(
        &ns.name,
        &ns.inner_ip,
        &dir_origin,
        &[
            "--mem-queue-size=0",
            &replicate,
            "--replication-timeout=2s",
            "--replication-max-lag=200ms",
        ],
    );
    let origin_stats = format!("{}/stats?format=json", origin.http_url());
    let link = || async {
        let text = ns.get_inside(&origin_stats).expect("the origin's /stats");
        stats_in(&text).peers.expect("peers").remove(0)
    };
    let stored_on_peer = || async {
        let reply = get(&peer, "/stats?format=json").await;
        let replicas = stats_in(&reply.body).replicas.unwrap_or_default();
        replicas
            .first()
            .and_then(|r| r.topics.iter().find(|t| t.topic_name == "t"))
            .map_or(0, |t| t.stored_seq)
    };
    eventually_within("the link is in sync", Duration::from_secs(20), || async {
        link().await.state == "synced"
    })
    .await;
    for i in 0..10 {
        assert!(ns.publish_inside(origin.http, "t", &format!("before-{i}")));
    }
    assert_eq!(
        stored_on_peer().await,
        10,
        "stored on the peer before each OK"
    );

    // Cut: the origin goes on alone and says the peer is down.
    ns.cut();
    for i in 0..50 {
        assert!(
            ns.publish_inside(origin.http, "t", &format!("during-{i}")),
            "publish {i} during the partition"
        );
    }
    let during = link().await;
    assert_eq!(
        (during.state.as_str(), during.connected),
        ("down", false),
        "{during:?}"
    );
    assert_eq!(during.backlog_messages, 50, "{during:?}");
    assert_eq!(stored_on_peer().await, 10);

    // Healed: the peer gets what it missed, and the link is in sync again.
    ns.heal();
    eventually_within("the peer caught up", Duration::from_secs(30), || async {
        stored_on_peer().await == 60
    })
    .await;
    eventually_within(
        "the link is in sync again",
        Duration::from_secs(30),
        || async {
            let link = link().await;
            link.state == "synced" && link.backlog_messages == 0 && link.progress_lag_ms == 0
        },
    )
    .await;
    let reply = get(&peer, "/stats?format=json").await;
    let replica = stats_in(&reply.body).replicas.unwrap().remove(0);
    assert!(replica.connected);
    assert_eq!(replica.depth, 60, "every message is held for the topic");
    assert!(origin.terminate().success());
    assert!(peer.terminate().success());
}
