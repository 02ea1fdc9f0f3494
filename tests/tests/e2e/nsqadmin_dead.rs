//! nsqadmin and nsqd's dead letters and peek: an operator in a real browser
//! (headless Chromium over chromedriver) finds a channel's dead letters,
//! peeks at what is queued and presses Requeue all; `/api/dead` and
//! `/api/peek` for scripts, behind the ACL; and nodes running upstream's
//! nsqd, which has neither endpoint, named as such.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver`
//! (tests/run-all.sh installs them); without them it fails rather than skip.

use crate::browser;

use browser::{click, column, output_dir, text, wait_for_text, Driver};
use fantoccini::Locator;
use nsq::protocol::Command;
use nsq_e2e::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const BINARY: &[u8] = b"\x00\x01\xfe\xff";

/// Turns `bodies` into dead letters of `topic/channel`: the channel keeps at
/// most 3 attempts, and a consumer requeues every delivery until nsqd stops
/// delivering (3 deliveries each) and holds them all as dead letters.
async fn make_dead_letters(nsqd: &Nsqd, topic: &str, channel: &str, bodies: &[&[u8]]) {
    let http = nsqd.http_addr().expect("HTTP").to_string();
    create_channel(&http, topic, channel).await;
    let api = nsq::NsqdHttp::new(&http);
    let settings = api
        .channel_config(topic, channel, Some(3), None)
        .await
        .expect("/channel/config");
    assert_eq!(settings.max_attempts, 3);
    let mut producer = Conn::connect(nsqd).await;
    for body in bodies {
        producer.publish(topic, body).await;
    }
    let mut conn = consumer(nsqd, topic, channel, bodies.len() as u32).await;
    for _ in 0..3 * bodies.len() {
        let m = conn.expect_message().await;
        assert!(m.attempts <= 3, "delivered past max_attempts: {m:?}");
        conn.send(Command::Req {
            id: m.id,
            delay: Duration::ZERO,
        })
        .await;
    }
    eventually("every message a dead letter", || async {
        channel_stats(nsqd, topic, channel)
            .await
            .is_some_and(|c| c.dead_count == bodies.len() as u64 && c.depth == 0)
    })
    .await;
    conn.expect_silence(Duration::from_millis(200)).await;
}

/// Takes `n` messages from the channel, checks each is on its first attempt,
/// and answers their bodies.
async fn consume(nsqd: &Nsqd, topic: &str, channel: &str, n: usize) -> Vec<Vec<u8>> {
    let mut conn = consumer(nsqd, topic, channel, n as u32).await;
    let mut bodies = Vec::new();
    for _ in 0..n {
        let m = conn.expect_message().await;
        assert_eq!(m.attempts, 1, "attempts start again");
        conn.fin(m.id).await;
        bodies.push(m.body.to_vec());
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_peeks_and_requeues_dead_letters_in_a_browser() {
    let c = AdminCluster::start(|_| {}).await;
    make_dead_letters(
        &c.nsqd,
        "orders",
        "billing",
        &[b"order 1", b"order 2", BINARY],
    )
    .await;
    c.publish("orders", 0).await;
    let base = c.url();

    let driver = Driver::start().await;
    let profile = temp_dir("chromium-profile");
    let browser = browser::open(&driver, &profile).await;
    // In a task of its own, so that a failed assertion still ends the
    // session below and Chromium exits with it.
    let session = tokio::spawn({
        let browser = browser.clone();
        async move {
            browser.goto(&format!("{base}/topics/orders")).await?;
            let dead = Locator::Css(r#"tr[data-channel="billing"] td.dead"#);
            assert_eq!(text(&browser, dead).await?, "3");
            click(&browser, Locator::Css(r#"tr[data-channel="billing"] a"#)).await?;

            // The channel page: the count, the settings, the letters.
            wait_for_text(&browser, Locator::Css("#dead-count"), "3").await?;
            assert_eq!(text(&browser, Locator::Css("#max-attempts")).await?, "3");
            assert_eq!(text(&browser, Locator::Css("#ttl")).await?, "none");
            let attempts = column(&browser, "#dead-letters", "td.attempts").await?;
            assert_eq!(attempts, ["3", "3", "3"]);
            let shown = column(&browser, "#dead-letters", "td.body").await?;
            assert_eq!(shown, ["order 1", "order 2", "binary, 4 bytes"]);
            let shot = browser.screenshot().await?;
            std::fs::write(output_dir().join("dead-letters.png"), shot).unwrap();

            // Requeue all, confirmed: the letters go back in line.
            let requeue = r#"//button[@class="action" and text()="Requeue all"]"#;
            click(&browser, Locator::XPath(requeue)).await?;
            let question = browser.get_alert_text().await?;
            assert!(
                question.contains("3 dead letters") && question.contains("billing"),
                "{question}"
            );
            browser.accept_alert().await?;
            wait_for_text(
                &browser,
                Locator::Css("#flash .ok"),
                "Requeue all: 3 requeued",
            )
            .await?;
            wait_for_text(&browser, Locator::Css("#dead-count"), "0").await?;

            // Peek shows them queued again, and leaves them there.
            click(&browser, Locator::Css("button.peek")).await?;
            browser.wait().for_element(Locator::Css("#peeked")).await?;
            let attempts = column(&browser, "#peeked", "td.attempts").await?;
            assert_eq!(attempts, ["0", "0", "0"]);
            let bodies = column(&browser, "#peeked", "td.body").await?;
            assert_eq!(bodies[0], "order 1");
            let shot = browser.screenshot().await?;
            std::fs::write(output_dir().join("peeked.png"), shot).unwrap();
            Ok::<_, fantoccini::error::CmdError>(())
        }
    });
    browser::finish(browser, session).await;

    let channel = channel_stats(&c.nsqd, "orders", "billing")
        .await
        .expect("the channel");
    assert_eq!((channel.dead_count, channel.depth), (0, 3));
    let bodies = consume(&c.nsqd, "orders", "billing", 3).await;
    assert_eq!(
        bodies,
        [b"order 1".to_vec(), b"order 2".to_vec(), BINARY.to_vec()]
    );
}

/// A request to nsqadmin as user `user` (the ACL header), if any.
async fn as_user(
    c: &AdminCluster,
    user: Option<&str>,
    method: Method,
    path: &str,
    body: Value,
) -> Reply {
    let mut request = http_client()
        .request(method, format!("{}{path}", c.url()))
        .body(body.to_string());
    if let Some(user) = user {
        request = request.header("X-Forwarded-User", user);
    }
    let response = request.send().await.expect("nsqadmin answers");
    let status = response.status().as_u16();
    let body = response.text().await.expect("a body");
    Reply {
        status,
        headers: Vec::new(),
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_api_lists_requeues_and_empties_for_admins_only() {
    let (endpoint, events) = notification_sink().await;
    let c = AdminCluster::start(|o| {
        o.admin_users = vec!["alice".into()];
        o.notification_http_endpoint = endpoint;
    })
    .await;
    make_dead_letters(&c.nsqd, "jobs", "work", &[b"a", b"b", b"c"]).await;
    c.publish("jobs", 0).await;

    let listed = c.get("/api/dead/jobs/work?n=2").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let answer = listed.json();
    assert_eq!(answer["total"], 3);
    assert_eq!(answer["message"], "");
    let messages = answer["messages"].as_array().unwrap();
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["a", "b"], "the oldest first");
    assert_eq!(messages[0]["attempts"], 3);
    assert_eq!(messages[0]["node"], c.node().as_str());
    assert_eq!(messages[0]["body"], "YQ==");
    assert_eq!(messages[0]["id"].as_str().unwrap().len(), 16);
    assert_eq!(
        (c.get("/api/dead/jobs/work?n=0").await.json()),
        json!({"message": "INVALID_COUNT"})
    );

    // The page shows the count and the letters; only admins get the buttons.
    let page = c.get("/topics/jobs/work").await;
    assert!(
        page.body.contains(r#"<strong id="dead-count">3</strong>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"id="dead-letters""#));
    assert!(!page.body.contains("Requeue all"));
    let admin_page = as_user(
        &c,
        Some("alice"),
        Method::GET,
        "/topics/jobs/work",
        json!({}),
    )
    .await;
    assert!(admin_page.body.contains("Requeue all"));
    assert!(admin_page.body.contains("Empty dead letters"));
    // The /api shapes stay upstream's; the counts are added where not 0.
    let api = c.get("/api/topics/jobs/work").await.json();
    assert_eq!(
        (api["dead_count"].clone(), api["max_attempts"].clone()),
        (json!(3), json!(3))
    );

    let requeue = json!({"action": "requeue"});
    let refused = as_user(
        &c,
        None,
        Method::POST,
        "/api/dead/jobs/work",
        requeue.clone(),
    )
    .await;
    assert_eq!(
        (refused.status, refused.json()),
        (403, json!({"message": "FORBIDDEN"}))
    );
    let bob = as_user(
        &c,
        Some("bob"),
        Method::POST,
        "/api/dead/jobs/work",
        requeue.clone(),
    )
    .await;
    assert_eq!(bob.status, 403);
    let wrong = as_user(
        &c,
        Some("alice"),
        Method::POST,
        "/api/dead/jobs/work",
        json!({"action": "drop"}),
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.json()),
        (400, json!({"message": "INVALID_ACTION"}))
    );
    let done = as_user(
        &c,
        Some("alice"),
        Method::POST,
        "/api/dead/jobs/work",
        requeue.clone(),
    )
    .await;
    assert_eq!(
        (done.status, done.json()),
        (200, json!({"requeued": 3, "message": ""}))
    );
    let channel = channel_stats(&c.nsqd, "jobs", "work").await.unwrap();
    assert_eq!((channel.dead_count, channel.depth), (0, 3));
    assert_eq!(
        consume(&c.nsqd, "jobs", "work", 3).await,
        [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );

    // Empty drops them.
    make_dead_letters(&c.nsqd, "jobs", "work", &[b"d"]).await;
    let emptied = as_user(
        &c,
        Some("alice"),
        Method::POST,
        "/api/dead/jobs/work",
        json!({"action": "empty"}),
    )
    .await;
    assert_eq!(
        (emptied.status, emptied.json()),
        (200, json!({"message": ""}))
    );
    let channel = channel_stats(&c.nsqd, "jobs", "work").await.unwrap();
    assert_eq!((channel.dead_count, channel.depth), (0, 0));
    let none = c.get("/api/dead/jobs/work").await.json();
    assert_eq!(none, json!({"messages": [], "total": 0, "message": ""}));

    // Each action is told to --notification-http-endpoint.
    eventually("notifications arrive", || async {
        events.lock().unwrap().len() >= 2
    })
    .await;
    let events = events.lock().unwrap().clone();
    let told: Vec<[&str; 4]> = events
        .iter()
        .map(|e| ["action", "topic", "channel", "url"].map(|k| e[k].as_str().unwrap()))
        .collect();
    assert_eq!(
        told,
        [
            [
                "requeue_dead_letters",
                "jobs",
                "work",
                "/api/dead/jobs/work"
            ],
            ["empty_dead_letters", "jobs", "work", "/api/dead/jobs/work"]
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_shows_queued_messages_without_taking_them() {
    let c = AdminCluster::start(|_| {}).await;
    c.create_channel("feed", "main").await;
    let mut producer = Conn::connect(&c.nsqd).await;
    for body in ["one", "two", "three", "four"] {
        producer.publish("feed", body.as_bytes()).await;
    }
    producer.publish("feed", BINARY).await;
    c.publish("feed", 0).await;

    let peeked = c.get("/api/peek/feed/main?count=3").await;
    assert_eq!(peeked.status, 200, "{}", peeked.body);
    let answer = peeked.json();
    assert_eq!(answer["total"], 5, "the channel's depth");
    let texts: Vec<&str> = answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    let all = c.get("/api/peek/feed/main?count=10").await.json();
    let last = &all["messages"][4];
    assert_eq!(
        (last["text"].clone(), last["size"].clone()),
        (Value::Null, json!(4))
    );
    assert_eq!(last["body"], "AAH+/w==");

    // Nothing was taken, nothing was delivered.
    let channel = channel_stats(&c.nsqd, "feed", "main").await.unwrap();
    assert_eq!((channel.depth, channel.in_flight_count), (5, 0));
    let bodies = consume(&c.nsqd, "feed", "main", 5).await;
    assert_eq!(bodies[0], b"one");
    assert_eq!(bodies[4], BINARY);

    // The page offers it; bad requests are refused.
    let page = c.get("/topics/feed/main").await;
    assert!(
        page.body
            .contains(r#"class="peek" data-topic="feed" data-channel="main""#),
        "{}",
        page.body
    );
    for (path, message) in [
        ("/api/peek/feed/main?count=0", "INVALID_COUNT"),
        ("/api/peek/feed/main?count=101", "INVALID_COUNT"),
        ("/api/peek/feed/a%20b", "INVALID_CHANNEL"),
    ] {
        let r = c.get(path).await;
        assert_eq!(
            (r.status, r.json()),
            (400, json!({"message": message})),
            "{path}"
        );
    }
    let empty = c.get("/api/peek/feed/main").await.json();
    assert_eq!(empty, json!({"messages": [], "total": 0, "message": ""}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nsqd_with_the_channel_is_read_and_acted_on() {
    let lookupd = start_lookupd().await;
    let one = start_nsqd(options_with_lookupds(&[&lookupd])).await;
    let two = start_nsqd(options_with_lookupds(&[&lookupd])).await;
    make_dead_letters(&one, "mail", "send", &[b"one 1", b"one 2"]).await;
    make_dead_letters(&two, "mail", "send", &[b"two 1"]).await;
    let mut producer = Conn::connect(&two).await;
    producer.publish("mail", b"queued on two").await;
    let lookup = nsq::LookupdHttp::new(&lookupd.http_addr().to_string());
    eventually("lookupd lists both nsqds", || async {
        lookup
            .lookup("mail")
            .await
            .is_ok_and(|l| l.producers.len() == 2)
    })
    .await;
    let mut opts = admin_options();
    opts.nsqlookupd_http_addresses = vec![lookupd.http_addr().to_string()];
    let admin = nsqadmin::NsqAdmin::start(opts).await.unwrap();
    let url = format!("http://{}", admin.http_addr());
    let get = |path: &'static str| {
        let url = url.clone();
        async move { http_request(&url, Method::GET, path, bytes::Bytes::new()).await }
    };

    // Summed and merged over the nodes, the oldest first.
    let page = get("/topics/mail/send").await;
    assert!(
        page.body.contains(r#"<strong id="dead-count">3</strong>"#),
        "{}",
        page.body
    );
    let dead = get("/api/dead/mail/send").await.json();
    assert_eq!(dead["total"], 3);
    let listed: Vec<(&str, &str)> = dead["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["node"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    let (node_one, node_two) = (
        one.http_addr().unwrap().to_string(),
        two.http_addr().unwrap().to_string(),
    );
    assert_eq!(
        listed,
        [
            (node_one.as_str(), "one 1"),
            (node_one.as_str(), "one 2"),
            (node_two.as_str(), "two 1")
        ]
    );
    let peeked = get("/api/peek/mail/send").await.json();
    assert_eq!(peeked["total"], 1);
    assert_eq!(peeked["messages"][0]["node"], node_two.as_str());
    assert_eq!(peeked["messages"][0]["text"], "queued on two");

    // Requeue all reaches both.
    let requeued = http_request(
        &url,
        Method::POST,
        "/api/dead/mail/send",
        json!({"action": "requeue"}).to_string().into(),
    )
    .await;
    assert_eq!(requeued.json(), json!({"requeued": 3, "message": ""}));
    for (nsqd, depth) in [(&one, 2), (&two, 2)] {
        let c = channel_stats(nsqd, "mail", "send").await.unwrap();
        assert_eq!((c.dead_count, c.depth), (0, depth));
    }
    admin.shutdown().await;
}

/// An nsqd as upstream's v1.3.0 answers (its captured `/stats` and `/info`),
/// found through a lookupd as captured too; every other path is upstream's
/// 404 `NOT_FOUND`, as `/channel/peek` and `/channel/dead` are there.
async fn upstream_nsqd() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let captured = move |name: &str| {
        capture_body(name).replace("\"http_port\":4151", &format!("\"http_port\":{port}"))
    };
    let mut app = axum::Router::new();
    for (path, name) in [
        ("/topics", "nsqlookupd/topics"),
        ("/nodes", "nsqlookupd/nodes"),
        ("/lookup", "nsqlookupd/lookup"),
        ("/channels", "nsqlookupd/channels"),
        ("/info", "nsqd/info"),
        ("/stats", "nsqd/stats_json"),
    ] {
        let body = captured(name);
        app = app.route(
            path,
            axum::routing::get(move || async move {
                ([("X-Nsq-Content-Type", "nsq; version=1.0")], body)
            }),
        );
    }
    let not_found = capture_body("nsqd/not_found");
    app = app.fallback(move || async move { (axum::http::StatusCode::NOT_FOUND, not_found) });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_nsqd_is_named_when_it_has_no_peek_or_dead_letters() {
    let upstream = upstream_nsqd().await;
    let mut opts = admin_options();
    opts.nsqlookupd_http_addresses = vec![upstream.clone()];
    let admin = nsqadmin::NsqAdmin::start(opts).await.unwrap();
    let url = format!("http://{}", admin.http_addr());
    let get = |path: &'static str| {
        let url = url.clone();
        async move { http_request(&url, Method::GET, path, bytes::Bytes::new()).await }
    };

    let peek = get("/api/peek/test/samplech").await;
    assert_eq!(peek.status, 502, "{}", peek.body);
    let message = peek.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&format!(
            "nsqd {upstream} has no /channel/peek: it runs upstream's NSQ"
        )),
        "{message}"
    );
    let requeue = http_request(
        &url,
        Method::POST,
        "/api/dead/test/samplech",
        json!({"action": "requeue"}).to_string().into(),
    )
    .await;
    assert_eq!(requeue.status, 502);
    assert!(requeue.json()["message"]
        .as_str()
        .unwrap()
        .contains("has no /channel/dead/requeue"));

    // Its channel page is as before: no dead letters, no warning.
    let page = get("/topics/test/samplech").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("did not answer"), "{}", page.body);
    assert!(page.body.contains(r#"<strong id="dead-count">0</strong>"#));
}
