//! AUTH against an auth server the test runs (axum on loopback): upstream's
//! contract (`GET /auth?common_name=&remote_ip=&secret=&tls=`), the AUTH
//! command's answers and errors, the checks on SUB, PUB, MPUB and DPUB, TTL
//! expiry with a fresh query, failover between auth servers, and what the
//! HTTP API does (upstream leaves it unprotected).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use nsq::protocol::{Command, FrameType, IdentifyResponse};
use nsq_e2e::{
    eventually, http_request, http_url, start_nsqd, stats, test_options, Conn, Nsqd, Options,
    PATIENCE,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "s3cret";

/// What the test's auth server answers and what it was asked.
#[derive(Clone, Default)]
struct AuthServer {
    /// Status and body for the right secret; any other secret gets 403.
    answer: Arc<Mutex<(u16, Value)>>,
    queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl AuthServer {
    /// Grants publishing to `pub_topic` and subscribing to `sub_topic`'s
    /// `sub_channel`, for `ttl` seconds.
    fn grant(&self, ttl: u64) {
        self.set(
            200,
            json!({
                "ttl": ttl,
                "identity": "svc-orders",
                "identity_url": "https://auth.example/svc-orders",
                "authorizations": [
                    {"topic": "^orders$", "channels": [".*"], "permissions": ["publish"]},
                    {"topic": "^events$", "channels": ["^archive$"], "permissions": ["subscribe"]},
                ],
            }),
        );
    }

    fn set(&self, status: u16, body: Value) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn calls(&self) -> usize {
        self.queries.lock().unwrap().len()
    }

    fn last_query(&self) -> HashMap<String, String> {
        self.queries
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a query")
    }

    /// Serves `GET /auth` (and `/custom`, for URL-form addresses) on loopback.
    async fn start(&self) -> SocketAddr {
        async fn auth(
            State(server): State<AuthServer>,
            Query(query): Query<HashMap<String, String>>,
        ) -> (StatusCode, String) {
            let secret_ok = query.get("secret").map(String::as_str) == Some(SECRET);
            server.queries.lock().unwrap().push(query);
            if !secret_ok {
                return (
                    StatusCode::FORBIDDEN,
                    json!({"message": "NOPE"}).to_string(),
                );
            }
            let (status, body) = server.answer.lock().unwrap().clone();
            (StatusCode::from_u16(status).unwrap(), body.to_string())
        }
        let app = Router::new()
            .route("/auth", get(auth))
            .route("/custom", get(auth))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }
}

/// An auth server granting for an hour, and an nsqd that asks it.
async fn nsqd_with_auth() -> (Nsqd, AuthServer) {
    let server = AuthServer::default();
    server.grant(3600);
    let addr = server.start().await;
    let nsqd = start_nsqd(Options {
        auth_http_addresses: vec![addr.to_string()],
        ..test_options()
    })
    .await;
    (nsqd, server)
}

async fn identify(conn: &mut Conn) -> IdentifyResponse {
    conn.send(Command::Identify(Bytes::from_static(
        br#"{"feature_negotiation":true}"#,
    )))
    .await;
    let frame = conn.read_non_heartbeat().await.expect("IDENTIFY answer");
    assert_eq!(frame.frame_type, FrameType::Response);
    serde_json::from_slice(&frame.data).expect("IDENTIFY JSON")
}

async fn auth(conn: &mut Conn, secret: &str) {
    conn.send(Command::Auth(Bytes::copy_from_slice(secret.as_bytes())))
        .await;
}

/// A connection that has done IDENTIFY and a successful AUTH.
async fn authed(nsqd: &Nsqd) -> Conn {
    let mut conn = Conn::connect(nsqd).await;
    assert!(identify(&mut conn).await.auth_required);
    auth(&mut conn, SECRET).await;
    let frame = conn.read_non_heartbeat().await.expect("AUTH answer");
    assert_eq!(frame.frame_type, FrameType::Response);
    conn
}

fn publish(topic: &str) -> Command {
    Command::Pub {
        topic: topic.into(),
        body: Bytes::from_static(b"m"),
    }
}

#[tokio::test]
async fn identify_announces_auth_and_commands_need_it_first() {
    let (nsqd, server) = nsqd_with_auth().await;
    for (cmd, name) in [
        (publish("orders"), "PUB"),
        (
            Command::Sub {
                topic: "events".into(),
                channel: "archive".into(),
            },
            "SUB",
        ),
        (
            Command::Mpub {
                topic: "orders".into(),
                bodies: vec![Bytes::from_static(b"a")],
            },
            "MPUB",
        ),
        (
            Command::Dpub {
                topic: "orders".into(),
                delay: Duration::from_millis(5),
                body: Bytes::from_static(b"a"),
            },
            "DPUB",
        ),
    ] {
        let mut conn = Conn::connect(&nsqd).await;
        assert!(identify(&mut conn).await.auth_required);
        conn.send(cmd).await;
        conn.expect_error(&format!("E_AUTH_FIRST AUTH required before {name}"))
            .await;
        conn.expect_closed().await;
    }
    assert_eq!(server.calls(), 0);
    // Without IDENTIFY too.
    let mut conn = Conn::connect(&nsqd).await;
    conn.send(publish("orders")).await;
    conn.expect_error("E_AUTH_FIRST AUTH required before PUB")
        .await;
    nsqd.shutdown().await;
}

#[tokio::test]
async fn auth_grants_by_topic_channel_and_permission() {
    let (nsqd, server) = nsqd_with_auth().await;
    let mut conn = Conn::connect(&nsqd).await;
    identify(&mut conn).await;
    auth(&mut conn, SECRET).await;
    let frame = conn.read_non_heartbeat().await.unwrap();
    assert_eq!(frame.frame_type, FrameType::Response);
    assert_eq!(
        std::str::from_utf8(&frame.data).unwrap(),
        r#"{"identity":"svc-orders","identity_url":"https://auth.example/svc-orders","permission_count":2}"#
    );
    let query = server.last_query();
    assert_eq!(query["secret"], SECRET);
    assert_eq!(query["remote_ip"], "127.0.0.1");
    assert_eq!(query["tls"], "false");
    assert_eq!(query["common_name"], "");
    conn.publish("orders", b"first").await;
    conn.send(Command::Mpub {
        topic: "orders".into(),
        bodies: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
    })
    .await;
    conn.expect_response("OK").await;

    // /stats shows who the producer is.
    let producer = stats(&nsqd).await.producers.expect("a producer")[0].clone();
    assert!(producer.authed);
    assert_eq!(producer.auth_identity, "svc-orders");
    assert_eq!(
        producer.auth_identity_url,
        "https://auth.example/svc-orders"
    );

    conn.send(publish("payments")).await;
    conn.expect_error(r#"E_UNAUTHORIZED AUTH failed for PUB on "payments" """#)
        .await;
    conn.expect_closed().await;

    // Subscribing needs the subscribe permission and a matching channel.
    let mut sub = authed(&nsqd).await;
    sub.subscribe("events", "archive").await;
    let mut sub = authed(&nsqd).await;
    sub.send(Command::Sub {
        topic: "orders".into(),
        channel: "archive".into(),
    })
    .await;
    sub.expect_error(r#"E_UNAUTHORIZED AUTH failed for SUB on "orders" "archive""#)
        .await;
    let mut sub = authed(&nsqd).await;
    sub.send(Command::Sub {
        topic: "events".into(),
        channel: "archive2".into(),
    })
    .await;
    sub.expect_error(r#"E_UNAUTHORIZED AUTH failed for SUB on "events" "archive2""#)
        .await;
    nsqd.shutdown().await;
}

#[tokio::test]
async fn refused_secrets_and_empty_grants_close_the_connection() {
    let (nsqd, server) = nsqd_with_auth().await;
    let mut conn = Conn::connect(&nsqd).await;
    identify(&mut conn).await;
    auth(&mut conn, "wrong").await;
    // The auth server's reason is logged, never told to the client.
    conn.expect_error("E_AUTH_FAILED AUTH failed").await;
    conn.expect_closed().await;
    assert_eq!(server.last_query()["secret"], "wrong");

    server.set(
        200,
        json!({"ttl": 60, "identity": "nobody", "authorizations": []}),
    );
    let mut conn = Conn::connect(&nsqd).await;
    auth(&mut conn, SECRET).await;
    conn.expect_error("E_UNAUTHORIZED AUTH no authorizations found")
        .await;
    conn.expect_closed().await;

    // An answer that breaks the contract (a TTL of 0) is a failure too.
    server.set(
        200,
        json!({"ttl": 0, "authorizations": [
        {"topic": ".*", "channels": [".*"], "permissions": ["publish"]}]}),
    );
    let mut conn = Conn::connect(&nsqd).await;
    auth(&mut conn, SECRET).await;
    conn.expect_error("E_AUTH_FAILED AUTH failed").await;

    server.grant(60);
    let mut conn = authed(&nsqd).await;
    auth(&mut conn, SECRET).await;
    conn.expect_error("E_INVALID AUTH already set").await;
    conn.expect_closed().await;
    nsqd.shutdown().await;
}

#[tokio::test]
async fn auth_is_refused_when_disabled() {
    let nsqd = start_nsqd(test_options()).await;
    let mut conn = Conn::connect(&nsqd).await;
    assert!(!identify(&mut conn).await.auth_required);
    auth(&mut conn, SECRET).await;
    conn.expect_error("E_AUTH_DISABLED AUTH disabled").await;
    conn.expect_closed().await;
    nsqd.shutdown().await;
}

/// Publishes to `orders` until nsqd refuses with `error`: once the grant's
/// TTL has run out and nsqd has asked the auth server again.
async fn publish_until_refused(conn: &mut Conn, error: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "grant never expired"
        );
        conn.send(publish("orders")).await;
        let frame = conn.read_non_heartbeat().await.expect("an answer");
        if frame.frame_type == FrameType::Error {
            assert_eq!(std::str::from_utf8(&frame.data).unwrap(), error);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_expired_grant_is_asked_for_again() {
    let server = AuthServer::default();
    server.grant(1);
    let addr = server.start().await;
    let nsqd = start_nsqd(Options {
        auth_http_addresses: vec![addr.to_string()],
        ..test_options()
    })
    .await;
    let mut conn = authed(&nsqd).await;
    conn.publish("orders", b"while granted").await;
    assert_eq!(server.calls(), 1, "the grant is cached within its TTL");
    // The auth server changes its mind; nsqd learns it when the TTL runs out.
    server.set(
        200,
        json!({"ttl": 60, "authorizations": [
            {"topic": "^other$", "channels": [".*"], "permissions": ["publish"]}]}),
    );
    publish_until_refused(
        &mut conn,
        r#"E_UNAUTHORIZED AUTH failed for PUB on "orders" """#,
    )
    .await;
    assert_eq!(server.calls(), 2);
    assert_eq!(server.last_query()["secret"], SECRET);

    // A re-query the auth server fails is E_AUTH_FAILED.
    server.grant(1);
    let mut conn = authed(&nsqd).await;
    server.set(500, json!({"message": "down"}));
    publish_until_refused(&mut conn, "E_AUTH_FAILED AUTH failed").await;
    nsqd.shutdown().await;
}

#[tokio::test]
async fn a_dead_auth_server_is_skipped_and_urls_are_used_as_given() {
    let server = AuthServer::default();
    server.grant(60);
    let addr = server.start().await;
    // Nothing listens on the first address; the servers are tried from a
    // random one, so over several connections both orders happen.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let nsqd = start_nsqd(Options {
        auth_http_addresses: vec![dead_addr.to_string(), format!("http://{addr}/custom")],
        ..test_options()
    })
    .await;
    for _ in 0..6 {
        let mut conn = authed(&nsqd).await;
        conn.publish("orders", b"x").await;
    }
    assert_eq!(server.calls(), 6);
    nsqd.shutdown().await;
}

/// Upstream's HTTP API does not use AUTH (its docs say to keep it from
/// untrusted clients): `/pub` and `/mpub` publish to any topic without a secret.
#[tokio::test]
async fn the_http_api_is_not_covered_by_auth() {
    let (nsqd, server) = nsqd_with_auth().await;
    let base = http_url(&nsqd);
    let reply = http_request(
        &base,
        reqwest::Method::POST,
        "/pub?topic=payments",
        Bytes::from_static(b"x"),
    )
    .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
    let reply = http_request(
        &base,
        reqwest::Method::POST,
        "/mpub?topic=payments",
        Bytes::from_static(b"a\nb\n"),
    )
    .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
    eventually("three messages on payments", || async {
        stats(&nsqd)
            .await
            .topics
            .unwrap_or_default()
            .iter()
            .any(|t| t.topic_name == "payments" && t.message_count == 3)
    })
    .await;
    assert_eq!(server.calls(), 0);
    nsqd.shutdown().await;
}

/// Our Producer and Consumer send the secret when nsqd asks for it.
#[tokio::test]
async fn our_producer_and_consumer_send_the_secret() {
    let (nsqd, server) = nsqd_with_auth().await;
    let addr = nsqd.tcp_addr().to_string();
    let config = nsq::Config {
        auth_secret: Some(SECRET.into()),
        ..nsq::Config::default()
    };
    let producer = nsq::Producer::new(addr.clone(), config.clone()).unwrap();
    producer.publish("orders", "allowed").await.unwrap();
    let err = producer.publish("payments", "refused").await.unwrap_err();
    let refusal = err.protocol().expect("an error frame");
    assert_eq!(refusal.code, "E_UNAUTHORIZED");
    assert_eq!(refusal.text, r#"AUTH failed for PUB on "payments" """#);
    producer.stop().await;

    let consumer = nsq::Consumer::new("events", "archive", config).unwrap();
    consumer
        .add_handler(|_: nsq::Message| async { Ok::<_, std::convert::Infallible>(()) })
        .unwrap();
    consumer.connect_to_nsqd(&addr).await.unwrap();
    // Its SUB went through: nsqd lists it on the channel, with its identity.
    let channel = stats(&nsqd).await.topics.unwrap()[0].channels[0].clone();
    assert_eq!(channel.channel_name, "archive");
    let subscriber = channel.clients.unwrap().remove(0);
    assert!(subscriber.authed);
    assert_eq!(subscriber.auth_identity, "svc-orders");
    consumer.stop().await;
    assert!(server.calls() >= 2);

    // Without a secret our client says so instead of being refused later.
    let anonymous = nsq::Producer::new(addr, nsq::Config::default()).unwrap();
    let err = anonymous.publish("orders", "x").await.unwrap_err();
    assert!(err.to_string().contains("auth_secret"), "{err}");
    nsqd.shutdown().await;
}

/// Over mutual TLS, nsqd tells the auth server about TLS and the client
/// certificate's common name.
#[tokio::test]
async fn auth_over_tls_passes_the_certificate_name() {
    let pki = nsq_e2e::TestPki::new();
    let server = AuthServer::default();
    server.grant(60);
    let auth_addr = server.start().await;
    let nsqd = start_nsqd(Options {
        auth_http_addresses: vec![auth_addr.to_string()],
        ..pki.nsqd_options_verifying_clients()
    })
    .await;
    let producer = nsq::Producer::new(
        nsqd.tcp_addr().to_string(),
        nsq::Config {
            tls_v1: true,
            tls: pki.client_tls(true),
            auth_secret: Some(SECRET.into()),
            ..nsq::Config::default()
        },
    )
    .unwrap();
    producer.publish("orders", "over tls").await.unwrap();
    let query = server.last_query();
    assert_eq!(
        (query["tls"].as_str(), query["common_name"].as_str()),
        ("true", "test-client")
    );
    producer.stop().await;
    nsqd.shutdown().await;
}
