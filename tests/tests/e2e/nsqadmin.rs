//! nsqadmin against a live cluster started in the test: every page, the
//! actions and their effect on nsqd, notifications, the ACL, a node that is
//! down, `/config`, history charts and `--base-path`. Its `/api` shapes
//! are in `nsqadmin_api.rs`.

use nsq_e2e::*;
use nsqadmin::NsqAdmin;
use reqwest::Method;
use serde_json::{json, Value};

/// `topic/channel` as `nsqd` reports it now; it must exist.
async fn existing_channel(nsqd: &Nsqd, topic: &str, channel: &str) -> nsq::api::ChannelStats {
    channel_stats(nsqd, topic, channel)
        .await
        .unwrap_or_else(|| panic!("{topic}/{channel} in /stats"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_the_cluster() {
    let c = AdminCluster::start(|_| {}).await;
    c.create_channel("orders", "billing").await;
    c.publish("orders", 5).await;
    let _consumer = nsq_e2e::consumer(&c.nsqd, "orders", "billing", 0).await;
    let lookupd = nsq::LookupdHttp::new(&c.lookupd.http_addr().to_string());
    lookupd.create_topic("planned").await.unwrap();

    let topics = c.get("/topics").await;
    assert_eq!(topics.status, 200);
    assert!(topics
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(
        topics.body.contains(r#"<tr data-topic="orders">"#),
        "{}",
        topics.body
    );
    assert!(topics
        .body
        .contains(r#"<td class="n channel-depth">5</td>"#));
    assert_eq!(c.get("/").await.body.matches("data-topic=").count(), 2);

    let topic = c.get("/topics/orders").await;
    assert!(topic.body.contains(r#"data-channel="billing""#));
    assert!(topic.body.contains(&format!(r#"data-node="{}""#, c.node())));
    assert!(topic.body.contains(r#"data-url="/api/topics/orders""#));

    let channel = c.get("/topics/orders/billing").await;
    assert!(channel.body.contains("<h2>Clients</h2>"));
    assert!(
        channel.body.contains("data-client=\"127.0.0.1:"),
        "a client row"
    );
    assert!(channel.body.contains(r#"<td class="n depth">5</td>"#));

    let nodes = c.get("/nodes").await;
    assert!(nodes.body.contains(&format!(r#"data-node="{}""#, c.node())));
    assert!(nodes.body.contains(" ago</td>"), "last ping shown");
    let node = c.get(&format!("/nodes/{}", c.node())).await;
    assert!(node.body.contains("5</strong> messages"), "{}", node.body);

    let lookup = c.get("/lookup").await;
    assert!(lookup.body.contains(r#"<tr data-topic="planned">"#));
    assert!(lookup.body.contains("inactive"));
    assert!(c.get("/counter").await.body.contains(r#"id="counter""#));

    let js = c.get("/static/app.js").await;
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(c
        .get("/static/style.css")
        .await
        .body
        .contains("table.stats"));
    assert_eq!(c.get("/static/nope.js").await.status, 404);
    assert_eq!(c.get("/nothing/here").await.status, 404);

    // A channel no nsqd has is a page that says so, not an error.
    let gone = c.get("/topics/orders/nope").await;
    assert!(gone.body.contains("No nsqd has this channel."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_reach_nsqd_and_notify() {
    let (endpoint, events) = notification_sink().await;

    let c = AdminCluster::start(|o| o.notification_http_endpoint = endpoint).await;
    c.create_channel("jobs", "workers").await;
    c.publish("jobs", 4).await;

    let pause = c
        .send(
            Method::POST,
            "/api/topics/jobs/workers",
            json!({"action": "pause"}),
        )
        .await;
    assert_eq!((pause.status, pause.json()), (200, json!({"message": ""})));
    // Upstream's handler waits for nsqd, so the effect is there at once.
    assert!(existing_channel(&c.nsqd, "jobs", "workers").await.paused);
    c.send(
        Method::POST,
        "/api/topics/jobs/workers",
        json!({"action": "unpause"}),
    )
    .await;
    assert!(!existing_channel(&c.nsqd, "jobs", "workers").await.paused);
    c.send(
        Method::POST,
        "/api/topics/jobs/workers",
        json!({"action": "empty"}),
    )
    .await;
    assert_eq!(existing_channel(&c.nsqd, "jobs", "workers").await.depth, 0);
    c.send(Method::POST, "/api/topics/jobs", json!({"action": "pause"}))
        .await;
    let s = stats(&c.nsqd).await;
    assert!(s
        .topics
        .unwrap()
        .iter()
        .any(|t| t.topic_name == "jobs" && t.paused));
    let bad = c
        .send(
            Method::POST,
            "/api/topics/jobs",
            json!({"action": "explode"}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.json()),
        (400, json!({"message": "INVALID_ACTION"}))
    );

    let created = c
        .send(
            Method::POST,
            "/api/topics",
            json!({"topic": "jobs", "channel": "audit"}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    existing_channel(&c.nsqd, "jobs", "audit").await;
    let lookupd = nsq::LookupdHttp::new(&c.lookupd.http_addr().to_string());
    assert!(lookupd
        .channels("jobs")
        .await
        .unwrap()
        .contains(&"audit".to_string()));
    let invalid = c
        .send(Method::POST, "/api/topics", json!({"topic": "bad topic!"}))
        .await;
    assert_eq!(
        (invalid.status, invalid.json()),
        (400, json!({"message": "INVALID_TOPIC"}))
    );

    let deleted = c
        .send(Method::DELETE, "/api/topics/jobs/audit", json!({}))
        .await;
    assert_eq!(deleted.status, 200);
    let s = stats(&c.nsqd).await;
    let jobs = s
        .topics
        .unwrap()
        .into_iter()
        .find(|t| t.topic_name == "jobs")
        .unwrap();
    assert!(jobs.channels.iter().all(|ch| ch.channel_name != "audit"));

    let tombstone = c
        .send(
            Method::DELETE,
            &format!("/api/nodes/{}", c.node()),
            json!({"topic": "jobs"}),
        )
        .await;
    assert_eq!(tombstone.status, 200, "{}", tombstone.body);
    let debug = lookupd.debug().await.unwrap();
    assert!(debug
        .get("topic:jobs:")
        .is_none_or(|peers| peers.iter().all(|p| p.tombstoned)));
    let s = stats(&c.nsqd).await;
    assert!(
        s.topics
            .unwrap_or_default()
            .iter()
            .all(|t| t.topic_name != "jobs"),
        "deleted on the node"
    );

    eventually("notifications arrive", || async {
        events.lock().unwrap().len() >= 8
    })
    .await;
    let events = events.lock().unwrap().clone();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "pause_channel",
        "unpause_channel",
        "empty_channel",
        "pause_topic",
        "create_topic",
        "create_channel",
        "delete_channel",
        "tombstone_topic_producer",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let pause = events
        .iter()
        .find(|e| e["action"] == "pause_channel")
        .unwrap();
    assert_eq!(pause["topic"], "jobs");
    assert_eq!(pause["channel"], "workers");
    assert_eq!(pause["remote_ip"], "127.0.0.1");
    assert_eq!(pause["url"], "/api/topics/jobs/workers");
    assert!(pause["timestamp"].as_i64().unwrap() > 1_600_000_000);
    assert!(pause["via"].as_str().is_some_and(|v| !v.is_empty()));
    let tomb = events
        .iter()
        .find(|e| e["action"] == "tombstone_topic_producer")
        .unwrap();
    assert_eq!(tomb["node"], c.node().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_users_may_act() {
    let c = AdminCluster::start(|o| o.admin_users = vec!["alice".into()]).await;
    c.create_channel("t", "c").await;
    c.publish("t", 1).await;
    let base = c.url();
    let client = reqwest::Client::new();
    let act = |user: Option<&'static str>| {
        let mut r = client
            .post(format!("{base}/api/topics/t/c"))
            .body(json!({"action": "pause"}).to_string());
        if let Some(u) = user {
            r = r.header("X-Forwarded-User", u);
        }
        r.send()
    };
    let anonymous = act(None).await.unwrap();
    assert_eq!(anonymous.status(), 403);
    assert_eq!(
        anonymous.json::<Value>().await.unwrap(),
        json!({"message": "FORBIDDEN"})
    );
    assert_eq!(act(Some("mallory")).await.unwrap().status(), 403);
    assert!(!existing_channel(&c.nsqd, "t", "c").await.paused);
    assert_eq!(act(Some("alice")).await.unwrap().status(), 200);
    assert!(existing_channel(&c.nsqd, "t", "c").await.paused);
    let forbidden_delete = c.send(Method::DELETE, "/api/topics/t", json!({})).await;
    assert_eq!(forbidden_delete.status, 403);

    // Reading stays open; the buttons show for admins only.
    assert_eq!(c.get("/api/topics/t/c").await.status, 200);
    let page = c.get("/topics/t/c").await;
    assert!(!page.body.contains(r#"class="action""#));
    let admin_page = client
        .get(format!("{base}/topics/t/c"))
        .header("X-Forwarded-User", "alice")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(admin_page.contains(r#"class="action""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_down_is_named_and_the_rest_shown() {
    let nsqd = start_nsqd(test_options()).await;
    let mut conn = Conn::connect(&nsqd).await;
    conn.publish("alive", b"x").await;
    // A port with nothing listening: bound, then closed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut opts = admin_options();
    opts.nsqd_http_addresses = vec![nsqd.http_addr().unwrap().to_string(), dead.clone()];
    let admin = NsqAdmin::start(opts).await.unwrap();
    let url = format!("http://{}", admin.http_addr());

    let topics = http_request(&url, Method::GET, "/api/topics", bytes::Bytes::new()).await;
    assert_eq!(topics.status, 200);
    let body = topics.json();
    assert_eq!(body["topics"], json!(["alive"]));
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("WARNING: ") && message.contains(&dead),
        "{message}"
    );
    let page = http_request(&url, Method::GET, "/topics", bytes::Bytes::new()).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Some nodes did not answer"));
    assert!(page.body.contains(&dead));
    assert!(page.body.contains(r#"data-topic="alive""#));
    let nodes = http_request(&url, Method::GET, "/api/nodes", bytes::Bytes::new()).await;
    assert_eq!(nodes.json()["nodes"].as_array().unwrap().len(), 1);

    // Nobody answers: an upstream error.
    let mut opts = admin_options();
    opts.nsqd_http_addresses = vec![dead.clone()];
    let lonely = NsqAdmin::start(opts).await.unwrap();
    let url = format!("http://{}", lonely.http_addr());
    let r = http_request(&url, Method::GET, "/api/topics", bytes::Bytes::new()).await;
    assert_eq!(r.status, 502);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("UPSTREAM_ERROR: Failed to query any nsqd"));
    let page = http_request(&url, Method::GET, "/topics", bytes::Bytes::new()).await;
    assert_eq!(page.status, 502);
    assert!(page.body.contains("No node answered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_read_and_changed_from_allowed_addresses_only() {
    let c = AdminCluster::start(|_| {}).await;
    let put = http_request(
        &c.url(),
        Method::PUT,
        "/config/nsqlookupd_http_addresses",
        r#"["127.0.0.1:1","127.0.0.1:2"]"#.into(),
    )
    .await;
    assert_eq!(put.json(), json!(["127.0.0.1:1", "127.0.0.1:2"]));
    let level = http_request(&c.url(), Method::PUT, "/config/log_level", "debug".into()).await;
    assert_eq!(level.status, 200);
    let bad = http_request(&c.url(), Method::PUT, "/config/log_level", "loud".into()).await;
    assert_eq!(
        (bad.status, bad.json()),
        (400, json!({"message": "INVALID_VALUE"}))
    );
    let unknown = c.get("/config/nope").await;
    assert_eq!(
        (unknown.status, unknown.json()),
        (400, json!({"message": "INVALID_OPTION"}))
    );
    let header = c.get("/config/acl_http_header").await;
    assert_eq!(header.body, "X-Forwarded-User");

    let far = AdminCluster::start(|o| o.allow_config_from_cidr = "10.0.0.0/8".into()).await;
    let denied = far.get("/config/nsqlookupd_http_addresses").await;
    assert_eq!(
        (denied.status, denied.json()),
        (403, json!({"message": "FORBIDDEN"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_draws_charts_and_base_path_prefixes_everything() {
    let c = AdminCluster::start(|o| o.base_path = "/admin/".into()).await;
    c.create_channel("metrics", "sink").await;
    c.publish("metrics", 10).await;
    eventually("a chart has data", || async {
        c.get("/admin/topics/metrics")
            .await
            .body
            .contains(r#"class="line s0""#)
    })
    .await;
    let page = c.get("/admin/topics/metrics/sink").await;
    assert!(page.body.contains(r#"href="/admin/static/style.css""#));
    assert!(page.body.contains(r#"data-base="/admin""#));
    assert!(page.body.contains(r#"href="/admin/topics/metrics""#));
    let api = c.get("/admin/api/topics").await;
    assert_eq!(api.json()["topics"], json!(["metrics"]));
    assert_eq!(c.get("/api/topics").await.status, 404);
    assert_eq!(c.get("/admin/ping").await.body, "OK");
    // The topics page has a sparkline once two samples exist.
    eventually("sparkline drawn", || async {
        c.get("/admin/topics")
            .await
            .body
            .contains(r#"<svg class="spark""#)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_topics_list_in_full() {
    let nsqd = start_nsqd(test_options()).await;
    let api = nsq::NsqdHttp::new(&nsqd.http_addr().unwrap().to_string());
    for start in (0..1000).step_by(100) {
        let creates = (start..start + 100).map(|i| {
            let api = api.clone();
            async move {
                api.topic_action(nsq::TopicAction::Create, &format!("topic{i:04}"))
                    .await
            }
        });
        for r in tokio::task::JoinSet::from_iter(creates).join_all().await {
            r.expect("topic created");
        }
    }
    let mut opts = admin_options();
    opts.nsqd_http_addresses = vec![nsqd.http_addr().unwrap().to_string()];
    let admin = NsqAdmin::start(opts).await.unwrap();
    let url = format!("http://{}", admin.http_addr());
    let page = http_request(&url, Method::GET, "/topics", bytes::Bytes::new()).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body.matches("<tr data-topic=").count(), 1000);
    assert!(page.body.contains(r#"data-topic="topic0999""#));
}
