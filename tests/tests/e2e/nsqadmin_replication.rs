//! nsqadmin's view of replication (#18) over real nsqds on loopback, an
//! origin with `--replicate-to` and its peer: the node page's links and
//! replicas, the nodes list's "degraded" marker when the peer goes away,
//! promote, forget and retire through nsqadmin's `/api` (checked in nsqd's
//! `/stats`), and an operator promoting in a real browser, who is asked
//! first.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver`
//! (tests/run-all.sh installs them); without them it fails rather than skip.

use crate::browser;

use browser::{click, output_dir, wait_for_text, Driver};
use fantoccini::Locator;
use nsq::api::{ChannelStats, ReplicaStats};
use nsq_e2e::*;
use nsqadmin::{NsqAdmin, Options as AdminOptions};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A log-mode nsqd, which keeps replicas for the origins that dial it.
fn peer_options() -> Options {
    Options {
        mem_queue_size: 0,
        ..test_options()
    }
}

fn origin_options(peer: SocketAddr, data: &Path, tcp_port: u16, http_port: u16) -> Options {
    Options {
        tcp_address: format!("127.0.0.1:{tcp_port}"),
        http_address: format!("127.0.0.1:{http_port}"),
        data_path: data.to_path_buf(),
        mem_queue_size: 0,
        replicate_to: vec![peer.to_string()],
        replication_timeout: Duration::from_secs(2),
        replication_max_lag: Duration::from_millis(200),
        ..test_options()
    }
}

fn http_of(nsqd: &Nsqd) -> String {
    nsqd.http_addr().expect("HTTP").to_string()
}

/// nsqadmin watching `nsqds` (HTTP addresses) directly.
async fn admin_over(nsqds: &[&Nsqd], configure: impl FnOnce(&mut AdminOptions)) -> NsqAdmin {
    let mut opts = admin_options();
    opts.nsqd_http_addresses = nsqds.iter().map(|n| http_of(n)).collect();
    configure(&mut opts);
    NsqAdmin::start(opts).await.expect("nsqadmin starts")
}

async fn until_synced(origin: &Nsqd) {
    eventually_within("the link is in sync", Duration::from_secs(15), || async {
        stats(origin)
            .await
            .peers
            .is_some_and(|p| p[0].state == "synced")
    })
    .await;
}

async fn replica(peer: &Nsqd) -> Option<ReplicaStats> {
    stats(peer).await.replicas.map(|mut r| r.remove(0))
}

/// Publishes `n` messages to `topic` on `origin`, which has `channel`, and
/// waits until the peer's replica holds them for the channel. Messages are
/// on the peer at their OK; the channel follows with the next progress
/// tick (a quarter of the max lag).
async fn publish_replicated(origin: &Nsqd, peer: &Nsqd, topic: &str, channel: &str, n: u64) {
    create_channel(&http_of(origin), topic, channel).await;
    let mut conn = Conn::connect(origin).await;
    for i in 0..n {
        conn.publish(topic, format!("message {i}").as_bytes()).await;
    }
    eventually(
        "the replica holds every message for the channel",
        || async {
            replica(peer).await.is_some_and(|r| {
                r.topics.iter().any(|t| {
                    t.topic_name == topic
                        && t.channels
                            .iter()
                            .any(|c| c.channel_name == channel && c.depth == n)
                })
            })
        },
    )
    .await;
}

/// `/api/nodes`'s entry for the nsqd at `http`.
async fn listed(admin: &NsqAdmin, http: &str) -> Value {
    let nodes = get(admin, "/api/nodes").await;
    assert_eq!(nodes.status, 200, "{}", nodes.body);
    let answer = nodes.json();
    answer["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| {
            format!(
                "{}:{}",
                n["broadcast_address"].as_str().unwrap(),
                n["http_port"]
            ) == http
        })
        .unwrap_or_else(|| panic!("{http} in {answer}"))
        .clone()
}

/// The HTML of the table row marked `attribute`.
fn row<'a>(html: &'a str, attribute: &str) -> &'a str {
    let start = html
        .find(attribute)
        .unwrap_or_else(|| panic!("{attribute} in {html}"));
    let len = html[start..].find("</tr>").expect("the row ends");
    &html[start..start + len]
}

async fn node_page(admin: &NsqAdmin, http: &str) -> String {
    let page = get(admin, &format!("/nodes/{http}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body
}

async fn node_api(admin: &NsqAdmin, http: &str) -> Value {
    let node = get(admin, &format!("/api/nodes/{http}")).await;
    assert_eq!(node.status, 200, "{}", node.body);
    node.json()
}

async fn existing_channel(nsqd: &Nsqd, topic: &str, channel: &str) -> ChannelStats {
    channel_stats(nsqd, topic, channel)
        .await
        .unwrap_or_else(|| panic!("{topic}/{channel} in /stats"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pages_show_links_and_replicas_and_a_lost_peer_degrades_the_origin() {
    let peer = start_nsqd(peer_options()).await;
    let origin_dir = temp_dir("origin");
    let origin = start_nsqd(origin_options(peer.tcp_addr(), origin_dir.path(), 0, 0)).await;
    let plain = start_default_nsqd().await;
    until_synced(&origin).await;
    publish_replicated(&origin, &peer, "orders", "billing", 5).await;
    let admin = admin_over(&[&origin, &peer, &plain], |_| {}).await;
    let (origin_http, peer_http, plain_http) = (http_of(&origin), http_of(&peer), http_of(&plain));
    let (origin_tcp, peer_tcp) = (origin.tcp_addr().to_string(), peer.tcp_addr().to_string());

    // /api/nodes/:node passes nsqd's links and replicas on, each where it is.
    let o = node_api(&admin, &origin_http).await;
    assert_eq!(o["peers"][0]["address"], peer_tcp.as_str(), "{o}");
    assert_eq!(o["peers"][0]["state"], "synced");
    assert_eq!(o["peers"][0]["connected"], true);
    assert_eq!(o["peers"][0]["backlog_messages"], 0);
    assert!(o.get("replicas").is_none(), "{o}");
    let p = node_api(&admin, &peer_http).await;
    assert_eq!(p["replicas"][0]["origin"], origin_tcp.as_str(), "{p}");
    assert_eq!(p["replicas"][0]["connected"], true);
    assert_eq!(p["replicas"][0]["depth"], 5);
    assert!(p["replicas"][0].get("promoted_at").is_none(), "{p}");
    assert!(p.get("peers").is_none(), "{p}");
    let n = node_api(&admin, &plain_http).await;
    assert!(
        n.get("peers").is_none() && n.get("replicas").is_none(),
        "{n}"
    );

    // The pages: the origin's peers table, the peer's replicas table.
    let page = node_page(&admin, &origin_http).await;
    assert!(page.contains(r#"<section id="replication">"#), "{page}");
    let link = row(&page, &format!(r#"data-peer="{peer_tcp}""#));
    assert!(link.contains(r#"data-state="synced""#), "{link}");
    assert!(
        link.contains(r#"<span class="badge synced">synced</span>"#),
        "{link}"
    );
    assert!(link.contains(r#"<td class="connected">yes</td>"#), "{link}");
    assert!(link.contains(r#"<td class="n backlog">0</td>"#), "{link}");
    assert!(!page.contains(">Retire</button>"), "nothing to retire");
    assert!(!page.contains("badge degraded"), "{page}");
    let page = node_page(&admin, &peer_http).await;
    let kept = row(&page, &format!(r#"data-origin="{origin_tcp}""#));
    assert!(kept.contains(r#"data-connected="true""#), "{kept}");
    assert!(kept.contains(r#"<td class="n depth">5</td>"#), "{kept}");
    assert!(kept.contains(r#"<td class="promoted">–</td>"#), "{kept}");
    assert!(
        !page.contains(">Promote</button>"),
        "its origin is connected"
    );
    let page = node_page(&admin, &plain_http).await;
    assert!(
        !page.contains("replication"),
        "no section without links or replicas"
    );

    // Every link in sync: no node is degraded.
    let nodes = get(&admin, "/nodes").await.body;
    assert!(!nodes.contains("badge degraded"), "{nodes}");
    assert!(listed(&admin, &origin_http)
        .await
        .get("unsynced_peers")
        .is_none());

    // The peer goes away: its origin is degraded, in the list and on its page.
    peer.shutdown().await;
    eventually("nsqadmin sees the link out of sync", || async {
        listed(&admin, &origin_http)
            .await
            .get("unsynced_peers")
            .is_some()
    })
    .await;
    let unsynced = listed(&admin, &origin_http).await["unsynced_peers"].clone();
    assert_eq!(unsynced[0]["address"], peer_tcp.as_str(), "{unsynced}");
    assert_ne!(unsynced[0]["state"], "synced");
    let nodes = get(&admin, "/nodes").await.body;
    let listed_origin = row(&nodes, &format!(r#"data-node="{origin_http}""#));
    assert!(
        listed_origin.contains(">degraded</span>"),
        "{listed_origin}"
    );
    assert!(
        listed_origin.contains(&peer_tcp),
        "the title names the peer"
    );
    let listed_plain = row(&nodes, &format!(r#"data-node="{plain_http}""#));
    assert!(!listed_plain.contains("degraded"), "{listed_plain}");
    let page = node_page(&admin, &origin_http).await;
    assert!(page.contains(r#"class="badge degraded""#), "{page}");
    let link = row(&page, &format!(r#"data-peer="{peer_tcp}""#));
    assert!(!link.contains(r#"data-state="synced""#), "{link}");

    admin.shutdown().await;
    origin.shutdown().await;
    plain.shutdown().await;
}

async fn notified(events: &Arc<Mutex<Vec<Value>>>, action: &str) -> Value {
    eventually(&format!("the {action} notification"), || async {
        events.lock().unwrap().iter().any(|e| e["action"] == action)
    })
    .await;
    let events = events.lock().unwrap();
    events
        .iter()
        .find(|e| e["action"] == action)
        .unwrap()
        .clone()
}

/// nsqadmin's 502 for nsqd's refusal: `UPSTREAM_ERROR: <url>: <reason>`,
/// ending in `ending` (the path and the reason).
fn refused_by_nsqd(r: &Reply, ending: &str) {
    assert_eq!(r.status, 502, "{}", r.body);
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with("UPSTREAM_ERROR: ") && message.ends_with(ending),
        "{message}"
    );
}

/// A peer, an origin in sync with it holding `messages` on t/c (replicated),
/// and nsqadmin over both, telling `events` of its actions.
struct Failover {
    peer: Nsqd,
    origin: Nsqd,
    /// The origin's options, to start it again on the same address and data.
    origin_opts: Options,
    admin: NsqAdmin,
    events: Arc<Mutex<Vec<Value>>>,
    _origin_dir: TempDir,
}

async fn failover_under_admin(messages: u64) -> Failover {
    let peer = start_nsqd(peer_options()).await;
    let origin_dir = temp_dir("origin");
    let origin_opts = origin_options(peer.tcp_addr(), origin_dir.path(), free_port(), free_port());
    let origin = start_nsqd(origin_opts.clone()).await;
    until_synced(&origin).await;
    publish_replicated(&origin, &peer, "t", "c", messages).await;
    let (endpoint, events) = notification_sink().await;
    let admin = admin_over(&[&origin, &peer], |o| {
        o.notification_http_endpoint = endpoint
    })
    .await;
    Failover {
        peer,
        origin,
        origin_opts,
        admin,
        events,
        _origin_dir: origin_dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_retire_through_nsqadmin() {
    let Failover {
        peer,
        origin,
        origin_opts,
        admin,
        events,
        _origin_dir,
    } = failover_under_admin(10).await;
    let origin_opts = || origin_opts.clone();
    let (origin_http, peer_http) = (http_of(&origin), http_of(&peer));
    let (origin_tcp, peer_tcp) = (origin.tcp_addr().to_string(), peer.tcp_addr().to_string());
    let origin_id = replica(&peer).await.expect("a replica").origin_id;
    let on_peer = format!("/api/nodes/{peer_http}");
    let promote = json!({"action": "promote", "origin": origin_id}).to_string();

    // Requests that cannot be right never reach nsqd.
    let r = post(&admin, &on_peer, r#"{"action":"promote"}"#).await;
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"message": "MISSING_ARG_ORIGIN"}))
    );
    let r = post(&admin, &on_peer, r#"{"action":"retire"}"#).await;
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"message": "MISSING_ARG_PEER"}))
    );
    let r = post(&admin, &on_peer, r#"{"action":"jump","origin":"x"}"#).await;
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"message": "INVALID_ACTION"}))
    );
    let r = post(&admin, "/api/nodes/127.0.0.1:1", promote.clone()).await;
    assert_eq!(
        (r.status, r.json()),
        (404, json!({"message": "NODE_NOT_FOUND"}))
    );
    // nsqd refuses while the origin is connected, and nsqadmin says so.
    let r = post(&admin, &on_peer, promote.clone()).await;
    refused_by_nsqd(&r, "/replica/promote: ORIGIN_CONNECTED");
    assert!(topic_stats(&peer, "t").await.is_none(), "nothing promoted");

    // The origin is lost: the peer page offers Promote, asking first.
    origin.shutdown().await;
    eventually("nsqadmin sees the origin gone", || async {
        node_api(&admin, &peer_http).await["replicas"][0]["connected"] == false
    })
    .await;
    let page = node_page(&admin, &peer_http).await;
    let kept = row(&page, &format!(r#"data-origin="{origin_tcp}""#));
    assert!(kept.contains(r#"data-connected="false""#), "{kept}");
    assert!(kept.contains(">Promote</button>"), "{kept}");
    assert!(
        kept.contains(&format!("&quot;origin&quot;:&quot;{origin_id}&quot;")),
        "the button names the origin by its ID: {kept}"
    );
    let question = format!(
        "Promote the replicas of {origin_tcp} on {peer_http}? Its 10 unfinished messages (topics: t)"
    );
    assert!(
        kept.contains(&format!(r#"data-confirm="{question}"#)),
        "{kept}"
    );

    let r = post(&admin, &on_peer, promote.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.json();
    assert_eq!(answer["message"], "");
    assert_eq!(
        answer["promoted"][0]["origin"],
        origin_tcp.as_str(),
        "{answer}"
    );
    assert_eq!(answer["promoted"][0]["topics"], json!(["t"]));
    assert_eq!(answer["promoted"][0]["messages"], 10);
    // nsqd did it: the replica is promoted and the topic is the peer's own.
    let promoted = replica(&peer).await.expect("the promoted replica");
    assert!(promoted.promoted_at.is_some(), "{promoted:?}");
    assert_eq!(existing_channel(&peer, "t", "c").await.depth, 10);
    let page = node_page(&admin, &peer_http).await;
    let kept = row(&page, &format!(r#"data-origin="{origin_tcp}""#));
    assert!(kept.contains(" UTC</td>"), "promoted at: {kept}");
    assert!(!kept.contains(">Promote</button>"), "{kept}");
    let event = notified(&events, "promote_replica").await;
    assert_eq!(event["node"], peer_http.as_str(), "{event}");
    assert_eq!(event["origin"], origin_id.as_str(), "{event}");

    // The old origin returns, fenced: its page offers Retire.
    let origin = start_nsqd(origin_opts()).await;
    eventually("nsqadmin sees the link fenced", || async {
        listed(&admin, &origin_http).await["unsynced_peers"][0]["state"] == "fenced"
    })
    .await;
    let page = node_page(&admin, &origin_http).await;
    assert!(page.contains(r#"class="badge degraded""#), "{page}");
    let link = row(&page, &format!(r#"data-peer="{peer_tcp}""#));
    assert!(link.contains(r#"data-state="fenced""#), "{link}");
    assert!(link.contains(">Retire</button>"), "{link}");
    assert!(
        link.contains("/replication/retire"),
        "last error says what to do: {link}"
    );
    assert_eq!(
        existing_channel(&origin, "t", "c").await.depth,
        10,
        "its own copies"
    );

    let on_origin = format!("/api/nodes/{origin_http}");
    let retire = json!({"action": "retire", "peer": peer_tcp}).to_string();
    let r = post(&admin, &on_origin, retire.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.json();
    assert_eq!(answer["retired"]["peer"], peer_tcp.as_str(), "{answer}");
    assert_eq!(answer["retired"]["topics"], json!(["t"]));
    assert_eq!(
        existing_channel(&origin, "t", "c").await.depth,
        0,
        "what the peer took is passed"
    );
    let event = notified(&events, "retire_replication").await;
    assert_eq!(event["node"], origin_http.as_str(), "{event}");
    assert_eq!(event["peer"], peer_tcp.as_str(), "{event}");
    // The link replicates anew, and the origin is no longer degraded.
    eventually_within(
        "the link in sync again",
        Duration::from_secs(15),
        || async {
            listed(&admin, &origin_http)
                .await
                .get("unsynced_peers")
                .is_none()
        },
    )
    .await;
    let r = post(&admin, &on_origin, retire).await;
    refused_by_nsqd(&r, "/replication/retire: PEER_HAS_NOT_PROMOTED");

    admin.shutdown().await;
    origin.shutdown().await;
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_promotes_a_replica_in_a_browser_after_confirming() {
    let peer = start_nsqd(peer_options()).await;
    let origin_dir = temp_dir("origin");
    let origin = start_nsqd(origin_options(peer.tcp_addr(), origin_dir.path(), 0, 0)).await;
    until_synced(&origin).await;
    publish_replicated(&origin, &peer, "jobs", "workers", 3).await;
    let origin_tcp = origin.tcp_addr().to_string();
    origin.shutdown().await;
    eventually("the peer sees its origin gone", || async {
        replica(&peer).await.is_some_and(|r| !r.connected)
    })
    .await;
    let admin = admin_over(&[&peer], |_| {}).await;
    let page = format!("http://{}/nodes/{}", admin.http_addr(), http_of(&peer));

    let driver = Driver::start().await;
    let profile = temp_dir("chromium-profile");
    let browser = browser::open(&driver, &profile).await;
    // In a task of its own, so that a failed assertion still ends the
    // session below and Chromium exits with it.
    let session = tokio::spawn({
        let browser = browser.clone();
        async move {
            browser.goto(&page).await?;
            let promote = Locator::XPath(r#"//button[@class="action" and text()="Promote"]"#);
            // Asked first; declining changes nothing...
            click(&browser, promote).await?;
            let question = browser.get_alert_text().await?;
            assert!(
                question.contains(&origin_tcp) && question.contains("3 unfinished messages"),
                "{question}"
            );
            browser.dismiss_alert().await?;
            // ...and accepting promotes. Had the declined click promoted,
            // this one would have found nothing left to take over.
            click(&browser, promote).await?;
            browser.accept_alert().await?;
            wait_for_text(
                &browser,
                Locator::Css("#flash .ok"),
                "Promote: 3 messages taken over",
            )
            .await?;
            browser
                .wait()
                .for_element(Locator::XPath(
                    r#"//td[@class="promoted" and contains(text(), "UTC")]"#,
                ))
                .await?;
            let shot = browser.screenshot().await?;
            std::fs::write(output_dir().join("replica-promoted.png"), shot).unwrap();
            Ok::<_, fantoccini::error::CmdError>(())
        }
    });
    browser::finish(browser, session).await;

    assert!(replica(&peer)
        .await
        .is_some_and(|r| r.promoted_at.is_some()));
    assert_eq!(existing_channel(&peer, "jobs", "workers").await.depth, 3);
    admin.shutdown().await;
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_through_nsqadmin() {
    let Failover {
        peer,
        origin,
        admin,
        events,
        ..
    } = failover_under_admin(4).await;
    let peer_http = http_of(&peer);
    let origin_tcp = origin.tcp_addr().to_string();
    let origin_id = replica(&peer).await.expect("a replica").origin_id;
    let on_peer = format!("/api/nodes/{peer_http}");
    let forget = json!({"action": "forget", "origin": origin_id}).to_string();

    let r = post(&admin, &on_peer, r#"{"action":"forget"}"#).await;
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"message": "MISSING_ARG_ORIGIN"}))
    );
    // No Forget while the origin is connected, and nsqd refuses it.
    let page = node_page(&admin, &peer_http).await;
    let kept = row(&page, &format!(r#"data-origin="{origin_tcp}""#));
    assert!(!kept.contains(">Forget</button>"), "{kept}");
    let r = post(&admin, &on_peer, forget.clone()).await;
    refused_by_nsqd(&r, "/replica/forget: ORIGIN_CONNECTED");

    // The origin is away: Forget is offered beside Promote, saying what
    // it drops.
    origin.shutdown().await;
    eventually("nsqadmin sees the origin gone", || async {
        node_api(&admin, &peer_http).await["replicas"][0]["connected"] == false
    })
    .await;
    let page = node_page(&admin, &peer_http).await;
    let kept = row(&page, &format!(r#"data-origin="{origin_tcp}""#));
    assert!(kept.contains(">Promote</button>"), "{kept}");
    assert!(kept.contains(">Forget</button>"), "{kept}");
    let question = format!(
        "Forget the replicas of {origin_tcp} on {peer_http}? Its 4 unfinished messages kept here are dropped"
    );
    assert!(
        kept.contains(&format!(r#"data-confirm="{question}"#)),
        "{kept}"
    );

    let r = post(&admin, &on_peer, forget.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["forgot"], origin_id.as_str(), "{}", r.body);
    // nsqd did it: the replica is gone, and the page no longer lists it.
    assert!(replica(&peer).await.is_none(), "the replica is dropped");
    let page = node_page(&admin, &peer_http).await;
    assert!(
        !page.contains(&format!(r#"data-origin="{origin_tcp}""#)),
        "{page}"
    );
    let event = notified(&events, "forget_replica").await;
    assert_eq!(event["node"], peer_http.as_str(), "{event}");
    assert_eq!(event["origin"], origin_id.as_str(), "{event}");
    // Once more: nsqd knows no such origin now.
    let r = post(&admin, &on_peer, forget).await;
    refused_by_nsqd(&r, "/replica/forget: ORIGIN_NOT_FOUND");

    admin.shutdown().await;
    peer.shutdown().await;
}
