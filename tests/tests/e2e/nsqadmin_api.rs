//! nsqadmin's `/api` in upstream's shapes (compared with NSQ v1.3.0's
//! captures), against our daemons and against upstream's captured answers;
//! HTTPS nodes with a private CA; graphite.

use nsq_e2e::*;
use nsqadmin::NsqAdmin;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_in_upstreams_shapes() {
    let c = AdminCluster::start(|_| {}).await;
    c.create_channel("test", "samplech").await;
    c.publish("test", 3).await;
    c.create_channel("test2", "ch2").await;
    c.publish("test2", 1).await;
    // A subscribed client, so that client stats exist.
    let mut consumer = nsq_e2e::consumer(&c.nsqd, "test", "samplech", 1).await;
    let m = consumer.expect_message().await;
    consumer.fin(m.id).await;

    let topics = c.get("/api/topics").await;
    assert_eq!(
        assert_v1_json(&topics),
        json!({"topics": ["test", "test2"], "message": ""})
    );

    let topic = c.get("/api/topics/test").await;
    assert_eq!(
        keys_in_order(&topic.body),
        keys_in_order(&capture_body("nsqadmin/api_topic"))
    );
    let t = topic.json();
    assert_eq!(t["node"], "*");
    assert_eq!(t["message_count"], 3);
    assert_eq!(t["nodes"][0]["node"], c.node().as_str());
    assert_eq!(t["channels"][0]["channel_name"], "samplech");
    assert_eq!(t["e2e_processing_latency"]["host"], "*");

    let channel = c.get("/api/topics/test/samplech").await;
    assert_eq!(
        keys_in_order(&channel.body),
        keys_in_order(&capture_body("nsqadmin/api_channel"))
    );
    let ch = channel.json();
    assert_eq!(ch["depth"], 1, "3 published, 1 finished, 1 in flight");
    assert_eq!(ch["in_flight_count"], 1);
    assert_eq!(ch["client_count"], 1);
    assert_eq!(ch["clients"][0]["node"], c.node().as_str());
    assert_eq!(ch["clients"][0]["ready_count"], 1);

    let nodes = c.get("/api/nodes").await;
    assert_eq!(
        keys_in_order(&nodes.body),
        keys_in_order(&capture_body("nsqadmin/api_nodes"))
    );
    let n = nodes.json();
    let remote = n["nodes"][0]["remote_addresses"][0].as_str().unwrap();
    assert!(
        remote.starts_with(&format!("{}/127.0.0.1:", c.lookupd.http_addr())),
        "{remote}"
    );

    let node = c.get(&format!("/api/nodes/{}", c.node())).await;
    assert_eq!(
        keys_in_order(&node.body),
        keys_in_order(&capture_body("nsqadmin/api_node"))
    );
    assert_eq!(node.json()["total_messages"], 4);
    assert_eq!(node.json()["total_clients"], 1);
    let missing = c.get("/api/nodes/127.0.0.1:1").await;
    assert_eq!(
        (missing.status, missing.json()),
        (404, json!({"message": "NODE_NOT_FOUND"}))
    );

    let counter = c.get("/api/counter").await;
    assert_eq!(keys_in_order(&counter.body), {
        let mut keys = keys_in_order(&capture_body("nsqadmin/api_counter"));
        // The capture's node is 127.0.0.1:4151; the keys embed ours.
        keys.iter_mut()
            .for_each(|k| *k = k.replace("127.0.0.1:4151", &c.node()));
        keys
    });

    let config = c.get("/config/nsqlookupd_http_addresses").await;
    assert_eq!(config.json(), json!([c.lookupd.http_addr().to_string()]));
    let ping = c.get("/ping").await;
    assert_eq!((ping.status, ping.body.as_str()), (200, "OK"));
    assert_eq!(
        ping.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let unknown = c.get("/api/topics/nope").await;
    assert_eq!(unknown.status, 502);
    assert!(unknown.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("UPSTREAM_ERROR: "));
    let wrong = c.send(Method::PUT, "/api/topics", json!({})).await;
    assert_eq!(wrong.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphite_rates_and_proxy() {
    // A stand-in graphite: /render answers one datapoint, or null for "gone".
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/render",
        axum::routing::get(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                let log = log.clone();
                async move {
                    let query = uri.query().unwrap_or("").to_string();
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    log.lock().unwrap().push(format!("{query} {auth}"));
                    let value = if query.contains("gone") {
                        "null"
                    } else {
                        "120.0"
                    };
                    format!(r#"[{{"target":"t","datapoints":[[{value},1795311805]]}}]"#)
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let graphite = format!("http://user:pw@{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let c = AdminCluster::start(|o| {
        o.graphite_url = graphite;
        o.proxy_graphite = true;
    })
    .await;

    let rate = c
        .get("/api/graphite?metric=rate&target=sumSeries(nsq.*.topic.t.message_count)")
        .await;
    assert_eq!(
        rate.json(),
        json!({"rate": "2.00"}),
        "120 per 60 s interval"
    );
    let gone = c.get("/api/graphite?metric=rate&target=gone").await;
    assert_eq!(gone.json(), json!({"rate": "N/A"}));
    let bad = c.get("/api/graphite?metric=depth&target=x").await;
    assert_eq!(
        (bad.status, bad.json()),
        (400, json!({"message": "INVALID_ARG_METRIC"}))
    );
    let query = seen.lock().unwrap()[0].clone();
    assert!(
        query.contains("from=-120sec")
            && query.contains("until=-60sec")
            && query.contains("format=json"),
        "{query}"
    );

    let proxied = c.get("/render?target=x&format=json").await;
    assert_eq!(proxied.status, 200);
    assert!(proxied.body.contains("datapoints"));
    let last = seen.lock().unwrap().last().unwrap().clone();
    // Basic auth from --graphite-url: "user:pw".
    assert!(last.ends_with("Basic dXNlcjpwdw=="), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_nodes_with_a_private_ca_and_client_certificates() {
    // nsqd serves HTTPS only to clients with a certificate from the test CA.
    let pki = nsq_e2e::TestPki::new();
    let nsqd = start_nsqd(pki.nsqd_options_verifying_clients()).await;
    let https = nsq_e2e::https_url(&nsqd);
    let tls = nsq::tls::TlsClientOptions {
        root_ca_file: Some(pki.ca_cert.clone()),
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
        ..Default::default()
    };
    let pool =
        nsq::HttpPool::with_tls(Duration::from_secs(2), Duration::from_secs(5), &tls).unwrap();
    nsq::NsqdHttp::with_pool(&https, &pool)
        .publish("secure", "x")
        .await
        .expect("published over HTTPS");
    let admin_with = |cert: bool| {
        let mut opts = admin_options();
        opts.nsqd_http_addresses = vec![https.clone()];
        opts.http_client_tls_root_ca_file = Some(pki.ca_cert.clone());
        if cert {
            opts.http_client_tls_cert = Some(pki.client_cert.clone());
            opts.http_client_tls_key = Some(pki.client_key.clone());
        }
        NsqAdmin::start(opts)
    };
    let admin = admin_with(true).await.expect("nsqadmin starts");
    let url = format!("http://{}", admin.http_addr());
    let topics = http_request(&url, Method::GET, "/api/topics", bytes::Bytes::new()).await;
    assert_eq!(topics.json(), json!({"topics": ["secure"], "message": ""}));
    let page = http_request(&url, Method::GET, "/topics/secure", bytes::Bytes::new()).await;
    assert!(
        page.body.contains(r#"<td class="n depth">1</td>"#),
        "{}",
        page.body
    );

    // Without a client certificate nsqd refuses the handshake: an upstream error.
    let refused = admin_with(false).await.expect("nsqadmin starts");
    let url = format!("http://{}", refused.http_addr());
    let topics = http_request(&url, Method::GET, "/api/topics", bytes::Bytes::new()).await;
    assert_eq!(topics.status, 502);

    // A key without its certificate is refused at start.
    let mut half = admin_options();
    half.nsqd_http_addresses = vec![https];
    half.http_client_tls_key = Some(pki.client_key.clone());
    assert!(NsqAdmin::start(half).await.is_err());
}

/// Upstream's nsqlookupd and nsqd, as captured from NSQ v1.3.0: one server
/// answers their HTTP APIs with the captured bodies (its own port put in
/// place of 4151), and nsqadmin is pointed at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_against_upstream_daemons_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let captured = move |name: &str| {
        let body = capture_body(name);
        body.replace("\"http_port\":4151", &format!("\"http_port\":{port}"))
    };
    let routes = [
        ("/topics", "nsqlookupd/topics"),
        ("/nodes", "nsqlookupd/nodes"),
        ("/lookup", "nsqlookupd/lookup"),
        ("/channels", "nsqlookupd/channels"),
        ("/info", "nsqd/info"),
    ];
    let mut app = axum::Router::new();
    for (path, name) in routes {
        let body = captured(name);
        app = app.route(
            path,
            axum::routing::get(move || async move {
                (
                    [
                        ("Content-Type", "application/json; charset=utf-8"),
                        ("X-Nsq-Content-Type", "nsq; version=1.0"),
                    ],
                    body,
                )
            }),
        );
    }
    // nsqd leaves clients out when asked to, as nsqadmin asks for topic pages.
    let (full, bare) = (
        captured("nsqd/stats_json"),
        captured("nsqd/stats_json_noclients"),
    );
    app = app.route(
        "/stats",
        axum::routing::get(move |uri: axum::http::Uri| async move {
            let body = if uri.query().unwrap_or("").contains("include_clients=false") {
                bare
            } else {
                full
            };
            ([("X-Nsq-Content-Type", "nsq; version=1.0")], body)
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut opts = admin_options();
    opts.nsqlookupd_http_addresses = vec![format!("127.0.0.1:{port}")];
    let admin = NsqAdmin::start(opts).await.unwrap();
    let url = format!("http://{}", admin.http_addr());
    let get = |path: &'static str| {
        let url = url.clone();
        async move { http_request(&url, Method::GET, path, bytes::Bytes::new()).await }
    };

    let node = format!("127.0.0.1:{port}");
    let upstream_stats: Value = serde_json::from_str(&captured("nsqd/stats_json")).unwrap();
    let samplech = &upstream_stats["topics"][0]["channels"][0];
    let topic = get("/api/topics/test").await;
    assert_eq!(
        keys_in_order(&topic.body),
        keys_in_order(&capture_body("nsqadmin/api_topic"))
    );
    let t = topic.json();
    assert_eq!(t["nodes"][0]["node"], node.as_str());
    assert_eq!(
        t["message_count"],
        upstream_stats["topics"][0]["message_count"]
    );
    let channel = get("/api/topics/test/samplech").await;
    assert_eq!(
        keys_in_order(&channel.body),
        keys_in_order(&capture_body("nsqadmin/api_channel"))
    );
    let c = channel.json();
    for field in [
        "in_flight_count",
        "deferred_count",
        "message_count",
        "client_count",
    ] {
        assert_eq!(c[field], samplech[field], "{field}");
    }
    assert_eq!(c["clients"][0]["user_agent"], "nsq_tail/1.3.0 go-nsq/1.1.0");
    let nodes = get("/api/nodes").await;
    assert_eq!(
        keys_in_order(&nodes.body),
        keys_in_order(&capture_body("nsqadmin/api_nodes"))
    );
    assert_eq!(
        nodes.json()["nodes"][0]["topics"],
        json!([{"topic": "test", "tombstoned": false}, {"topic": "test2", "tombstoned": false}])
    );
    let counter = get("/api/counter").await;
    assert_eq!(
        counter.json()["stats"][format!("test:samplech:{node}")]["message_count"],
        samplech["message_count"]
    );
    for page in [
        "/topics",
        "/topics/test",
        "/topics/test/samplech",
        "/nodes",
        "/lookup",
    ] {
        let r = get(page).await;
        assert_eq!(r.status, 200, "{page}");
        assert!(!r.body.contains("did not answer"), "{page}");
    }
}
