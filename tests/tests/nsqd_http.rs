//! nsqd's HTTP API, end to end: status codes, headers and bodies as upstream
//! v1.3.0 answers them (compared with its captures where there is one), and
//! the effect of each endpoint on what TCP consumers see.

use bytes::Bytes;
use nsq::api::{ChannelStats, TopicStats};
use nsq::protocol::{Command, WireMessage};
use nsq_e2e::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NSQ_HEADER: &str = "x-nsq-content-type";
const NSQ_HEADER_VALUE: &str = "nsq; version=1.0";
const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

async fn send(nsqd: &Nsqd, method: reqwest::Method, path: &str, body: impl Into<Bytes>) -> Reply {
    http_request(&http_url(nsqd), method, path, body.into()).await
}

async fn get(nsqd: &Nsqd, path: &str) -> Reply {
    send(nsqd, reqwest::Method::GET, path, Bytes::new()).await
}

async fn post(nsqd: &Nsqd, path: &str, body: impl Into<Bytes>) -> Reply {
    send(nsqd, reqwest::Method::POST, path, body).await
}

async fn put(nsqd: &Nsqd, path: &str, body: impl Into<Bytes>) -> Reply {
    send(nsqd, reqwest::Method::PUT, path, body).await
}

/// Sends `head` and then `body` in chunked transfer encoding (no
/// Content-Length) on a fresh connection, and reads the answer.
async fn post_chunked(nsqd: &Nsqd, path: &str, body: &[u8]) -> Reply {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(64) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    raw_http(nsqd, &request).await
}

/// One request on a raw socket; the answer is read to the end of the connection.
async fn raw_http(nsqd: &Nsqd, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(nsqd.http_addr().expect("HTTP enabled"))
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("answer within patience")
        .expect("read answer");
    let text = String::from_utf8(answer).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("end of headers");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line")[9..12]
        .parse()
        .expect("status code");
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("header line");
            (n.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A V1 error: the status, the NSQ header, JSON, and `{"message":...}`.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, message: &str) {
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (status, format!("{{\"message\":\"{message}\"}}").as_str()),
        "{reply:?}"
    );
    assert_eq!(
        reply.header(NSQ_HEADER),
        Some(NSQ_HEADER_VALUE),
        "{reply:?}"
    );
    assert_eq!(reply.header("content-type"), Some(JSON), "{reply:?}");
}

/// A V1 success with no body: no Content-Type at all.
#[track_caller]
fn assert_empty_ok(reply: &Reply) {
    assert_eq!((reply.status, reply.body.as_str()), (200, ""), "{reply:?}");
    assert_eq!(
        reply.header(NSQ_HEADER),
        Some(NSQ_HEADER_VALUE),
        "{reply:?}"
    );
    assert_eq!(reply.header("content-type"), None, "{reply:?}");
}

/// A V1 success carrying raw text.
#[track_caller]
fn assert_text(reply: &Reply, body: &str) {
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, body),
        "{reply:?}"
    );
    assert_eq!(
        reply.header(NSQ_HEADER),
        Some(NSQ_HEADER_VALUE),
        "{reply:?}"
    );
    assert_eq!(reply.header("content-type"), Some(TEXT), "{reply:?}");
}

/// A V1 success carrying JSON.
#[track_caller]
fn assert_json(reply: &Reply) -> serde_json::Value {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header(NSQ_HEADER),
        Some(NSQ_HEADER_VALUE),
        "{reply:?}"
    );
    assert_eq!(reply.header("content-type"), Some(JSON), "{reply:?}");
    reply.json()
}

/// An upstream capture: `NAME.headers` (status line and headers) and `NAME.body`.
fn sample(name: &str) -> Reply {
    let head = std::fs::read_to_string(sample_path(&format!("nsqd/{name}.headers")))
        .expect("sample headers");
    let body =
        std::fs::read_to_string(sample_path(&format!("nsqd/{name}.body"))).expect("sample body");
    let mut lines = head.lines().filter(|l| !l.is_empty());
    let status = lines.next().expect("status line")[9..12]
        .parse()
        .expect("status code");
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("header line");
            (n.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body,
    }
}

/// How a body is compared with its capture.
enum Same {
    /// Byte for byte.
    Body,
    /// Field names, order and kinds, recursively (values differ between runs).
    JsonShape,
    /// Status and headers only.
    Nothing,
}

/// Same status as the capture, the same headers with the same values (Date
/// and Content-Length aside), none that the capture lacks, and the body.
#[track_caller]
fn assert_like_sample(reply: &Reply, name: &str, same: Same) {
    let sample = sample(name);
    assert_eq!(reply.status, sample.status, "{name}: {reply:?}");
    for (header, value) in &sample.headers {
        if header != "date" && header != "content-length" {
            assert_eq!(
                reply.header(header),
                Some(value.as_str()),
                "{name}: {header}"
            );
        }
    }
    for (header, _) in &reply.headers {
        if header != "date" && header != "content-length" {
            assert!(
                sample.header(header).is_some(),
                "{name}: upstream sends no {header}"
            );
        }
    }
    match same {
        Same::Body => assert_eq!(reply.body, sample.body, "{name}"),
        Same::JsonShape => assert_eq!(json_shape(&reply.body), json_shape(&sample.body), "{name}"),
        Same::Nothing => {}
    }
}

/// Every path of a JSON document with the kind of its value, in document
/// order, e.g. `.topics[].channels[].depth: number`. Array elements share
/// one path; each path is listed once, where it first appears.
fn json_shape(text: &str) -> Vec<String> {
    let mut parser = ShapeParser {
        text: text.as_bytes(),
        pos: 0,
        paths: Vec::new(),
    };
    parser.value("");
    parser.skip_space();
    assert_eq!(parser.pos, text.len(), "trailing bytes after JSON");
    let mut seen = std::collections::HashSet::new();
    parser.paths.retain(|p| seen.insert(p.clone()));
    parser.paths
}

/// Walks JSON text, keeping the order of object keys that `serde_json::Value` loses.
struct ShapeParser<'a> {
    text: &'a [u8],
    pos: usize,
    paths: Vec<String>,
}

impl ShapeParser<'_> {
    fn skip_space(&mut self) {
        while self.text.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn next_byte(&mut self) -> u8 {
        self.skip_space();
        let b = self.text[self.pos];
        self.pos += 1;
        b
    }

    fn value(&mut self, path: &str) {
        self.skip_space();
        let kind = match self.text[self.pos] {
            b'{' => {
                self.paths.push(format!("{path}: object"));
                self.pos += 1;
                self.skip_space();
                if self.text[self.pos] == b'}' {
                    self.pos += 1;
                    return;
                }
                loop {
                    self.skip_space();
                    let key = self.string();
                    assert_eq!(self.next_byte(), b':');
                    self.value(&format!("{path}.{key}"));
                    match self.next_byte() {
                        b',' => continue,
                        b'}' => return,
                        b => panic!("unexpected {:?} in object", b as char),
                    }
                }
            }
            b'[' => {
                self.paths.push(format!("{path}: array"));
                self.pos += 1;
                self.skip_space();
                if self.text[self.pos] == b']' {
                    self.pos += 1;
                    return;
                }
                loop {
                    self.value(&format!("{path}[]"));
                    match self.next_byte() {
                        b',' => continue,
                        b']' => return,
                        b => panic!("unexpected {:?} in array", b as char),
                    }
                }
            }
            b'"' => {
                self.string();
                "string"
            }
            b't' | b'f' | b'n' => {
                let kind = if self.text[self.pos] == b'n' {
                    "null"
                } else {
                    "bool"
                };
                while self.text.get(self.pos).is_some_and(u8::is_ascii_alphabetic) {
                    self.pos += 1;
                }
                kind
            }
            _ => {
                while self
                    .text
                    .get(self.pos)
                    .is_some_and(|b| b"+-.eE0123456789".contains(b))
                {
                    self.pos += 1;
                }
                "number"
            }
        };
        self.paths.push(format!("{path}: {kind}"));
    }

    fn string(&mut self) -> String {
        assert_eq!(self.text[self.pos], b'"');
        let start = self.pos + 1;
        self.pos = start;
        while self.text[self.pos] != b'"' {
            self.pos += if self.text[self.pos] == b'\\' { 2 } else { 1 };
        }
        self.pos += 1;
        String::from_utf8_lossy(&self.text[start..self.pos - 1]).into_owned()
    }
}

fn topic_stats(stats: &nsq::api::Stats, topic: &str) -> Option<TopicStats> {
    stats
        .topics
        .iter()
        .flatten()
        .find(|t| t.topic_name == topic)
        .cloned()
}

async fn topic_of(nsqd: &Nsqd, topic: &str) -> Option<TopicStats> {
    topic_stats(&stats(nsqd).await, topic)
}

async fn channel_of(nsqd: &Nsqd, topic: &str, channel: &str) -> Option<ChannelStats> {
    topic_of(nsqd, topic)
        .await?
        .channels
        .into_iter()
        .find(|c| c.channel_name == channel)
}

async fn identify(conn: &mut Conn, json: &str) {
    conn.send(Command::Identify(Bytes::copy_from_slice(json.as_bytes())))
        .await;
    conn.expect_response("OK").await;
}

fn body_of(msg: &WireMessage) -> &str {
    std::str::from_utf8(&msg.body).expect("UTF-8 body")
}

async fn expect_bodies(conn: &mut Conn, bodies: &[&str]) -> Vec<WireMessage> {
    let mut msgs = Vec::new();
    for expected in bodies {
        let msg = conn.expect_message().await;
        assert_eq!(body_of(&msg), *expected);
        msgs.push(msg);
    }
    msgs
}

/// Binary `/mpub` body: `[count]([size][bytes])*`, no leading total size.
fn binary_mpub(bodies: &[&[u8]]) -> Vec<u8> {
    let mut out = (bodies.len() as u32).to_be_bytes().to_vec();
    for body in bodies {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answers_plain_ok_without_the_nsq_header() {
    let nsqd = start_default_nsqd().await;
    let reply = get(&nsqd, "/ping").await;
    assert_like_sample(&reply, "ping", Same::Body);
    assert_eq!(reply.header(NSQ_HEADER), None);
    assert_eq!(reply.header("content-type"), Some(TEXT));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_lists_upstream_fields_in_order_with_real_ports() {
    let nsqd = start_default_nsqd().await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let reply = get(&nsqd, "/info").await;
    assert_like_sample(&reply, "info", Same::JsonShape);
    let info = assert_json(&reply);
    assert_eq!(info["version"], "1.3.0");
    assert_eq!(info["broadcast_address"], "127.0.0.1");
    assert!(!info["hostname"].as_str().unwrap().is_empty());
    assert_eq!(info["tcp_port"], nsqd.tcp_addr().port());
    assert_eq!(info["http_port"], nsqd.http_addr().unwrap().port());
    let start = info["start_time"].as_i64().unwrap();
    assert!((before - 5..=before + 1).contains(&start), "{start}");
    // Durations are Go Durations: integer nanoseconds.
    assert_eq!(info["max_heartbeat_interval"], 60_000_000_000i64);
    assert_eq!(info["max_output_buffer_timeout"], 30_000_000_000i64);
    assert_eq!(info["max_output_buffer_size"], 65536);
    assert_eq!(info["max_deflate_level"], 6);
    // /info never reads the query, so a bad escape there is harmless.
    assert_eq!(get(&nsqd, "/info?x=%zz").await.status, 200);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_accepts_a_message_and_refuses_bad_requests() {
    let nsqd = start_default_nsqd().await;
    let mut consumer = consumer(&nsqd, "test", "c", 10).await;

    assert_like_sample(
        &post(&nsqd, "/pub?topic=test", "hello").await,
        "pub",
        Same::Body,
    );
    expect_bodies(&mut consumer, &["hello"]).await;

    let empty = post(&nsqd, "/pub?topic=test", "").await;
    assert_like_sample(&empty, "pub_empty_body", Same::Body);
    assert_error(&empty, 400, "MSG_EMPTY");
    let missing = post(&nsqd, "/pub", "x").await;
    assert_like_sample(&missing, "pub_missing_topic", Same::Body);
    assert_error(&missing, 400, "MISSING_ARG_TOPIC");
    let bad = post(&nsqd, "/pub?topic=bad!name", "x").await;
    assert_like_sample(&bad, "pub_bad_topic", Same::Body);
    assert_error(&bad, 400, "INVALID_TOPIC");
    // Present but empty is invalid, not missing.
    assert_error(&post(&nsqd, "/pub?topic=", "x").await, 400, "INVALID_TOPIC");
    assert_error(
        &post(&nsqd, "/pub?topic=%zz", "x").await,
        400,
        "INVALID_REQUEST",
    );
    // The body is checked before the query.
    assert_error(&post(&nsqd, "/pub?topic=%zz", "").await, 400, "MSG_EMPTY");
    assert_error(&post(&nsqd, "/pub", "").await, 400, "MSG_EMPTY");
    // Query parameters are decoded: `%21` is `!`.
    assert_error(
        &post(&nsqd, "/pub?topic=a%21", "x").await,
        400,
        "INVALID_TOPIC",
    );
    assert_text(&post(&nsqd, "/pub?topic=t%65st", "decoded").await, "OK");
    expect_bodies(&mut consumer, &["decoded"]).await;

    // A refused publish creates no topic.
    let stats = stats(&nsqd).await;
    let names: Vec<&str> = stats
        .topics
        .iter()
        .flatten()
        .map(|t| t.topic_name.as_str())
        .collect();
    assert_eq!(names, ["test"]);
    assert_eq!(topic_stats(&stats, "test").unwrap().message_count, 2);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_refuses_a_message_over_max_msg_size_by_length_or_by_reading() {
    let nsqd = start_nsqd(Options {
        max_msg_size: 100,
        ..test_options()
    })
    .await;
    let exact = "x".repeat(100);
    let over = "x".repeat(101);
    assert_text(&post(&nsqd, "/pub?topic=big", exact.clone()).await, "OK");
    assert_error(
        &post(&nsqd, "/pub?topic=big", over.clone()).await,
        413,
        "MSG_TOO_BIG",
    );
    // The size is checked before the topic.
    assert_error(&post(&nsqd, "/pub", over.clone()).await, 413, "MSG_TOO_BIG");

    // Without a Content-Length the body is read up to one byte past the limit.
    let chunked = post_chunked(&nsqd, "/pub?topic=big", over.as_bytes()).await;
    assert_error(&chunked, 413, "MSG_TOO_BIG");
    let chunked = post_chunked(&nsqd, "/pub?topic=big", "y".repeat(150).as_bytes()).await;
    assert_error(&chunked, 413, "MSG_TOO_BIG");
    assert_text(
        &post_chunked(&nsqd, "/pub?topic=big", exact.as_bytes()).await,
        "OK",
    );
    assert_error(
        &post_chunked(&nsqd, "/pub?topic=big", b"").await,
        400,
        "MSG_EMPTY",
    );

    let topic = topic_of(&nsqd, "big").await.unwrap();
    assert_eq!((topic.message_count, topic.message_bytes), (2, 200));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_defer_is_validated_against_max_req_timeout() {
    let nsqd = start_nsqd(Options {
        max_req_timeout: Duration::from_secs(10),
        ..test_options()
    })
    .await;
    assert_empty_ok(&post(&nsqd, "/topic/create?topic=test", "").await);
    assert_empty_ok(&post(&nsqd, "/channel/create?topic=test&channel=c", "").await);

    let deferred = post(&nsqd, "/pub?topic=test&defer=6000", "deferred").await;
    assert_like_sample(&deferred, "pub_defer", Same::Body);
    assert_text(
        &post(&nsqd, "/pub?topic=test&defer=10000", "at max").await,
        "OK",
    );
    assert_text(&post(&nsqd, "/pub?topic=test&defer=0", "now").await, "OK");
    for bad in ["-1", "abc", "10001", "1.5", ""] {
        let reply = post(&nsqd, &format!("/pub?topic=test&defer={bad}"), "x").await;
        assert_error(&reply, 400, "INVALID_DEFER");
    }

    let channel = channel_of(&nsqd, "test", "c").await.unwrap();
    assert_eq!(
        (channel.deferred_count, channel.depth, channel.message_count),
        (2, 1, 3)
    );
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_pub_reaches_a_consumer_no_earlier_than_its_defer() {
    let nsqd = start_default_nsqd().await;
    let mut consumer = consumer(&nsqd, "later", "c", 5).await;
    let sent = Instant::now();
    assert_text(
        &post(&nsqd, "/pub?topic=later&defer=300", "late").await,
        "OK",
    );
    assert_text(&post(&nsqd, "/pub?topic=later", "early").await, "OK");
    let first = consumer.expect_message().await;
    assert_eq!(body_of(&first), "early");
    let second = consumer.expect_message().await;
    assert_eq!(body_of(&second), "late");
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "delivered after {:?}",
        sent.elapsed()
    );
    assert_eq!(second.attempts, 1);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_get_405_and_options_lists_the_allowed_ones() {
    let nsqd = start_default_nsqd().await;
    let reply = get(&nsqd, "/pub?topic=test").await;
    assert_like_sample(&reply, "pub_get_method", Same::Body);
    assert_error(&reply, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.header("allow"), Some("OPTIONS, POST"));

    let reply = send(&nsqd, reqwest::Method::OPTIONS, "/pub", "").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, ""));
    assert_eq!(reply.header("allow"), Some("OPTIONS, POST"));
    assert_eq!(reply.header(NSQ_HEADER), None);
    assert_eq!(reply.header("content-type"), None);

    let reply = send(&nsqd, reqwest::Method::OPTIONS, "/config/log_level", "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("allow"), Some("GET, OPTIONS, PUT"));
    let reply = send(&nsqd, reqwest::Method::DELETE, "/config/log_level", "").await;
    assert_error(&reply, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.header("allow"), Some("GET, OPTIONS, PUT"));
    // HEAD is not GET to httprouter.
    let reply = send(&nsqd, reqwest::Method::HEAD, "/ping", "").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, OPTIONS"));
    let reply = post(&nsqd, "/stats", "").await;
    assert_error(&reply, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.header("allow"), Some("GET, OPTIONS"));

    let reply = send(&nsqd, reqwest::Method::OPTIONS, "/nope", "").await;
    assert_error(&reply, 404, "NOT_FOUND");
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404_and_malformed_queries_invalid_request() {
    let nsqd = start_default_nsqd().await;
    let reply = get(&nsqd, "/nope").await;
    assert_like_sample(&reply, "not_found", Same::Body);
    assert_error(&reply, 404, "NOT_FOUND");
    // The pre-1.0 endpoints are gone.
    for path in [
        "/put",
        "/mput",
        "/create_topic",
        "/empty_channel",
        "/config",
        "/config/",
    ] {
        assert_error(&post(&nsqd, path, "x").await, 404, "NOT_FOUND");
    }
    assert_error(&get(&nsqd, "/config/a/b").await, 404, "NOT_FOUND");

    for path in [
        "/stats?topic=%zz",
        "/stats?format=json&x=%",
        "/stats?a=1;b=2",
    ] {
        assert_error(&get(&nsqd, path).await, 400, "INVALID_REQUEST");
    }
    for path in [
        "/topic/create?topic=%zz",
        "/topic/delete?topic=%zz",
        "/topic/empty?topic=%zz",
        "/topic/pause?topic=%zz",
        "/topic/unpause?topic=%zz",
        "/channel/create?topic=%zz",
        "/channel/delete?topic=%zz",
        "/channel/empty?topic=%zz",
        "/channel/pause?topic=%zz",
        "/channel/unpause?topic=%zz",
        "/mpub?topic=%zz",
        "/pub?topic=x&defer=%g1",
    ] {
        assert_error(&post(&nsqd, path, "x").await, 400, "INVALID_REQUEST");
    }
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_off_by_a_slash_or_case_are_redirected_as_httprouter_does() {
    let nsqd = start_default_nsqd().await;
    let reply = get(&nsqd, "/ping/").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/ping"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.body, "<a href=\"/ping\">Moved Permanently</a>.\n\n");
    assert_eq!(reply.header(NSQ_HEADER), None);

    let reply = get(&nsqd, "/STATS?format=json").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/stats?format=json"));
    let reply = get(&nsqd, "/config/log_level/").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/config/log_level"));

    // Other methods are sent back with the same method.
    let reply = post(&nsqd, "/pub/?topic=t", "x").await;
    assert_eq!((reply.status, reply.body.as_str()), (307, ""));
    assert_eq!(reply.header("location"), Some("/pub?topic=t"));
    let reply = post(&nsqd, "/Topic/Create?topic=t", "").await;
    assert_eq!(reply.status, 307);
    assert_eq!(reply.header("location"), Some("/topic/create?topic=t"));

    // Only routes of the request's own method are candidates.
    assert_error(&get(&nsqd, "/pub/").await, 404, "NOT_FOUND");
    // The path is decoded before routing, as Go's URL.Path.
    assert_eq!(get(&nsqd, "/p%69ng").await.body, "OK");
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpub_text_publishes_each_non_empty_line_in_order() {
    let nsqd = start_nsqd(Options {
        max_msg_size: 100,
        max_body_size: 1000,
        ..test_options()
    })
    .await;
    let mut consumer = consumer(&nsqd, "test", "c", 100).await;

    let reply = post(&nsqd, "/mpub?topic=test", "m1\nm2\n\n\nm3").await;
    assert_like_sample(&reply, "mpub_newline", Same::Body);
    // Only `\n` ends a line; a `\r` stays in the message.
    assert_text(&post(&nsqd, "/mpub?topic=test", "a\r\nb\n").await, "OK");
    assert_text(
        &post(&nsqd, "/mpub?topic=test&binary=false", "c\nd").await,
        "OK",
    );
    assert_text(&post(&nsqd, "/mpub?topic=test&binary=0", "e").await, "OK");
    // An empty body publishes nothing and is fine.
    assert_text(&post(&nsqd, "/mpub?topic=test", "").await, "OK");
    assert_text(&post(&nsqd, "/mpub?topic=test", "\n\n").await, "OK");
    expect_bodies(
        &mut consumer,
        &["m1", "m2", "m3", "a\r", "b", "c", "d", "e"],
    )
    .await;
    let sent = topic_of(&nsqd, "test").await.unwrap().message_count;
    assert_eq!(sent, 8);

    // A bad line refuses the whole body.
    let long = format!("ok\n{}\nok", "x".repeat(101));
    assert_error(
        &post(&nsqd, "/mpub?topic=test", long).await,
        413,
        "MSG_TOO_BIG",
    );
    let line_at_max = "x".repeat(100);
    assert_text(
        &post(&nsqd, "/mpub?topic=test", line_at_max.clone()).await,
        "OK",
    );
    expect_bodies(&mut consumer, &[&line_at_max]).await;

    let at_max = "ab\n".repeat(333) + "z";
    assert_eq!(at_max.len(), 1000);
    assert_text(&post(&nsqd, "/mpub?topic=test", at_max.clone()).await, "OK");
    let over = at_max + "z";
    assert_error(
        &post(&nsqd, "/mpub?topic=test", over.clone()).await,
        413,
        "BODY_TOO_BIG",
    );
    // The size is checked before the topic.
    assert_error(
        &post(&nsqd, "/mpub", over.clone()).await,
        413,
        "BODY_TOO_BIG",
    );
    // Without a Content-Length, lines are checked as they are read: the body
    // limit shows when it is reached, after the lines before it.
    let chunked = post_chunked(&nsqd, "/mpub?topic=test", over.as_bytes()).await;
    assert_error(&chunked, 413, "BODY_TOO_BIG");
    let early_long_line = format!("{}\n{}", "x".repeat(101), "y\n".repeat(600));
    let chunked = post_chunked(&nsqd, "/mpub?topic=test", early_long_line.as_bytes()).await;
    assert_error(&chunked, 413, "MSG_TOO_BIG");
    let chunked = post_chunked(&nsqd, "/mpub?topic=test", b"p\nq").await;
    assert_text(&chunked, "OK");

    assert_error(&post(&nsqd, "/mpub", "x").await, 400, "MISSING_ARG_TOPIC");
    assert_error(
        &post(&nsqd, "/mpub?topic=bad!name", "x").await,
        400,
        "INVALID_TOPIC",
    );
    let topic = topic_of(&nsqd, "test").await.unwrap();
    assert_eq!(topic.message_count, 8 + 1 + 334 + 2);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpub_binary_publishes_sized_messages_and_refuses_bad_framing() {
    let nsqd = start_nsqd(Options {
        max_msg_size: 100,
        max_body_size: 1000,
        ..test_options()
    })
    .await;
    let mut consumer = consumer(&nsqd, "test", "c", 100).await;

    let body = binary_mpub(&[b"one", b"two\nlines", b"three"]);
    let reply = post(&nsqd, "/mpub?topic=test&binary=true", body).await;
    assert_like_sample(&reply, "mpub_binary", Same::Body);
    let body = binary_mpub(&[b"four"]);
    assert_text(
        &post(&nsqd, "/mpub?topic=test&binary=1", body.clone()).await,
        "OK",
    );
    // Any other value means binary too (deprecated upstream).
    assert_text(
        &post(&nsqd, "/mpub?topic=test&binary=yes", body.clone()).await,
        "OK",
    );
    // Bytes after the last message are ignored.
    let mut trailing = binary_mpub(&[b"five"]);
    trailing.extend_from_slice(b"junk");
    assert_text(
        &post(&nsqd, "/mpub?topic=test&binary=true", trailing).await,
        "OK",
    );
    expect_bodies(
        &mut consumer,
        &["one", "two\nlines", "three", "four", "four", "five"],
    )
    .await;

    let at_max = "x".repeat(100);
    let body = binary_mpub(&[at_max.as_bytes()]);
    assert_text(
        &post(&nsqd, "/mpub?topic=test&binary=true", body).await,
        "OK",
    );
    expect_bodies(&mut consumer, &[&at_max]).await;

    let bin = "/mpub?topic=test&binary=true";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "BAD_BODY"),
        (vec![0, 0], "BAD_BODY"),
        (0u32.to_be_bytes().to_vec(), "BAD_BODY"),
        ((-1i32).to_be_bytes().to_vec(), "BAD_BODY"),
        // More messages than (max_body_size - 4) / 5 could ever fit.
        (200u32.to_be_bytes().to_vec(), "BAD_BODY"),
        (binary_mpub(&[b""]), "BAD_MESSAGE"),
        (binary_mpub(&["x".repeat(101).as_bytes()]), "BAD_MESSAGE"),
        // The count promises two messages; there is one.
        (
            [&2u32.to_be_bytes()[..], &binary_mpub(&[b"only"])[4..]].concat(),
            "BAD_MESSAGE",
        ),
        // A size with too few bytes behind it.
        (
            [
                &2u32.to_be_bytes()[..],
                &binary_mpub(&[b"cut"])[4..],
                &[0, 0, 0, 9, b'a'],
            ]
            .concat(),
            "BAD_MESSAGE",
        ),
        (1u32.to_be_bytes().to_vec(), "BAD_MESSAGE"),
    ];
    for (body, code) in cases {
        let reply = post(&nsqd, bin, body.clone()).await;
        assert_error(&reply, 413, code);
        if !body.is_empty() {
            let chunked = post_chunked(&nsqd, bin, &body).await;
            assert_error(&chunked, 413, code);
        }
    }
    let big: Vec<&[u8]> = vec![b"0123456789"; 80];
    let reply = post(&nsqd, bin, binary_mpub(&big)).await;
    assert_error(&reply, 413, "BODY_TOO_BIG");
    let reply = post_chunked(&nsqd, bin, &binary_mpub(&big)).await;
    assert_error(&reply, 413, "BODY_TOO_BIG");

    let topic = topic_of(&nsqd, "test").await.unwrap();
    assert_eq!(topic.message_count, 7);
    nsqd.shutdown().await;
}

/// The state upstream's `/stats` captures were taken in: topic `test` with a
/// consumer on `samplech` (messages in flight and one deferred), and topic
/// `test2` with an idle, paused channel `ch2`. Every publish is over HTTP, so
/// there are no producers. Returns the consumer, which must stay connected.
async fn upstream_sample_state(nsqd: &Nsqd) -> Conn {
    let mut conn = Conn::connect(nsqd).await;
    identify(
        &mut conn,
        r#"{"hostname":"vm","user_agent":"nsq_tail/1.3.0 go-nsq/1.1.0"}"#,
    )
    .await;
    conn.subscribe("test", "samplech").await;
    conn.rdy(200).await;
    for i in 0..7 {
        assert_text(&post(nsqd, "/pub?topic=test", format!("m{i}")).await, "OK");
    }
    assert_text(
        &post(nsqd, "/pub?topic=test&defer=60000", "later").await,
        "OK",
    );
    let msgs = expect_bodies(&mut conn, &["m0", "m1", "m2", "m3", "m4", "m5", "m6"]).await;
    conn.fin(msgs[0].id).await;
    conn.fin(msgs[1].id).await;
    assert_empty_ok(&post(nsqd, "/topic/create?topic=test2", "").await);
    assert_empty_ok(&post(nsqd, "/channel/create?topic=test2&channel=ch2", "").await);
    assert_empty_ok(&post(nsqd, "/channel/pause?topic=test2&channel=ch2", "").await);
    eventually("the FINs to land", || async {
        channel_of(nsqd, "test", "samplech")
            .await
            .is_some_and(|c| c.in_flight_count == 5)
    })
    .await;
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_json_has_upstream_layout_with_and_without_filters() {
    let nsqd = start_default_nsqd().await;
    let _consumer = upstream_sample_state(&nsqd).await;
    for (path, name) in [
        ("/stats?format=json", "stats_json"),
        ("/stats?format=json&include_mem=true", "stats_json_mem"),
        (
            "/stats?format=json&include_clients=false",
            "stats_json_noclients",
        ),
        ("/stats?format=json&topic=test", "stats_json_topic"),
        (
            "/stats?format=json&topic=test&channel=samplech",
            "stats_json_topic_channel",
        ),
    ] {
        let reply = get(&nsqd, path).await;
        assert_like_sample(&reply, name, Same::JsonShape);
    }

    let stats = assert_json(&get(&nsqd, "/stats?format=json").await);
    assert_eq!(stats["version"], "1.3.0");
    assert_eq!(stats["health"], "OK");
    let test = &stats["topics"][0];
    assert_eq!(test["topic_name"], "test");
    assert_eq!(test["message_count"], 8);
    assert_eq!(test["message_bytes"], 7 * 2 + 5);
    let samplech = &test["channels"][0];
    assert_eq!(samplech["in_flight_count"], 5);
    assert_eq!(samplech["deferred_count"], 1);
    assert_eq!(samplech["message_count"], 8);
    assert_eq!(samplech["client_count"], 1);
    assert_eq!(
        samplech["e2e_processing_latency"]["percentiles"],
        serde_json::Value::Null
    );
    let client = &samplech["clients"][0];
    assert_eq!(client["hostname"], "vm");
    assert_eq!(client["user_agent"], "nsq_tail/1.3.0 go-nsq/1.1.0");
    assert_eq!(client["state"], 3);
    assert_eq!(
        (
            &client["ready_count"],
            &client["message_count"],
            &client["finish_count"]
        ),
        (&200.into(), &7.into(), &2.into())
    );
    let ch2 = &stats["topics"][1]["channels"][0];
    assert_eq!(
        (&ch2["channel_name"], &ch2["paused"]),
        (&"ch2".into(), &true.into())
    );
    assert_eq!(ch2["clients"], serde_json::json!([]));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_filters_and_include_flags() {
    let nsqd = start_default_nsqd().await;
    let _consumer = upstream_sample_state(&nsqd).await;
    let mut producer = Conn::connect(&nsqd).await;
    producer.publish("test2", b"tcp").await;

    let topics = |v: &serde_json::Value| -> Vec<String> {
        v["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic_name"].as_str().unwrap().to_string())
            .collect()
    };
    let all = assert_json(&get(&nsqd, "/stats?format=json").await);
    assert_eq!(topics(&all), ["test", "test2"]);
    assert!(all["memory"].is_object());
    assert_eq!(all["producers"].as_array().unwrap().len(), 1);

    let one = assert_json(&get(&nsqd, "/stats?format=json&topic=test2").await);
    assert_eq!(topics(&one), ["test2"]);
    let channel = assert_json(&get(&nsqd, "/stats?format=json&topic=test&channel=samplech").await);
    assert_eq!(
        channel["topics"][0]["channels"].as_array().unwrap().len(),
        1
    );

    // A topic that does not exist: no topics and no producers at all.
    let reply = get(&nsqd, "/stats?format=json&topic=nosuch").await;
    assert!(reply.body.contains(r#""topics":null"#), "{}", reply.body);
    assert_eq!(reply.json()["producers"], serde_json::Value::Null);
    // A channel missing from the topic skips the topic.
    let reply = get(&nsqd, "/stats?format=json&topic=test&channel=nosuch").await;
    assert!(reply.body.contains(r#""topics":[]"#), "{}", reply.body);
    // A channel filter alone applies to every topic.
    let ch2 = assert_json(&get(&nsqd, "/stats?format=json&channel=ch2").await);
    assert_eq!(topics(&ch2), ["test2"]);

    let reply = get(&nsqd, "/stats?format=json&include_clients=false").await;
    let no_clients = assert_json(&reply);
    assert_eq!(no_clients["producers"], serde_json::Value::Null);
    let samplech = &no_clients["topics"][0]["channels"][0];
    assert_eq!(samplech["clients"], serde_json::Value::Null);
    assert_eq!(samplech["client_count"], 1);
    assert!(reply.body.contains(r#""producers":null"#));
    for flag in ["0", "false"] {
        let reply = get(&nsqd, &format!("/stats?format=json&include_mem={flag}")).await;
        assert!(!reply.body.contains(r#""memory""#), "{}", reply.body);
    }
    // Only true/1/false/0 count; anything else is the default, true.
    for flag in ["1", "true", "nonsense", ""] {
        let path = format!("/stats?format=json&include_mem={flag}&include_clients={flag}");
        let stats = assert_json(&get(&nsqd, &path).await);
        assert!(stats["memory"].is_object(), "{flag}");
        assert!(stats["producers"].is_array(), "{flag}");
    }
    // Only format=json gives JSON.
    let text = get(&nsqd, "/stats?format=JSON").await;
    assert_text(&text, &text.body);
    assert!(text.body.starts_with("nsqd v1.3.0"));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_follow_what_clients_did_over_tcp() {
    let nsqd = start_default_nsqd().await;
    assert_empty_ok(&post(&nsqd, "/topic/create?topic=counts", "").await);
    // An idle channel keeps every message as depth.
    assert_empty_ok(&post(&nsqd, "/channel/create?topic=counts&channel=idle", "").await);
    let mut consumer = consumer(&nsqd, "counts", "work", 10).await;
    let mut producer = Conn::connect(&nsqd).await;
    for i in 0..5 {
        producer.publish("counts", format!("m{i}").as_bytes()).await;
    }
    let msgs = expect_bodies(&mut consumer, &["m0", "m1", "m2", "m3", "m4"]).await;
    consumer.fin(msgs[0].id).await;
    consumer
        .send(Command::Req {
            id: msgs[1].id,
            delay: Duration::ZERO,
        })
        .await;
    let again = consumer.expect_message().await;
    assert_eq!((again.id, again.attempts), (msgs[1].id, 2));
    consumer
        .send(Command::Req {
            id: msgs[2].id,
            delay: Duration::from_secs(60),
        })
        .await;
    assert_empty_ok(&post(&nsqd, "/channel/pause?topic=counts&channel=idle", "").await);
    eventually("the REQ with delay to land", || async {
        channel_of(&nsqd, "counts", "work")
            .await
            .is_some_and(|c| c.deferred_count == 1)
    })
    .await;

    let stats = stats(&nsqd).await;
    let topic = topic_stats(&stats, "counts").unwrap();
    assert_eq!(
        (
            topic.depth,
            topic.message_count,
            topic.message_bytes,
            topic.paused
        ),
        (0, 5, 10, false)
    );
    let idle = &topic.channels[0];
    assert_eq!(idle.channel_name, "idle");
    assert_eq!(
        (
            idle.depth,
            idle.in_flight_count,
            idle.message_count,
            idle.client_count,
            idle.paused
        ),
        (5, 0, 5, 0, true)
    );
    assert_eq!(idle.clients, Some(vec![]));
    let work = &topic.channels[1];
    assert_eq!(work.channel_name, "work");
    assert_eq!(
        (
            work.depth,
            work.in_flight_count,
            work.deferred_count,
            work.message_count,
            work.requeue_count,
            work.timeout_count,
            work.client_count,
            work.paused
        ),
        (0, 3, 1, 5, 2, 0, 1, false)
    );
    let client = &work.clients.as_ref().unwrap()[0];
    assert_eq!(
        client.remote_address,
        consumer.stream.local_addr().unwrap().to_string()
    );
    assert_eq!(
        (
            client.state,
            client.ready_count,
            client.in_flight_count,
            client.message_count,
            client.finish_count,
            client.requeue_count
        ),
        (3, 10, 3, 6, 1, 2)
    );
    assert!(client.pub_counts.is_empty());

    // Only the connection that published is a producer.
    let producers = stats.producers.as_deref().unwrap();
    assert_eq!(producers.len(), 1);
    let p = &producers[0];
    assert_eq!(
        p.remote_address,
        producer.stream.local_addr().unwrap().to_string()
    );
    assert_eq!(p.version, "V2");
    assert_eq!(
        (p.pub_counts[0].topic.as_str(), p.pub_counts[0].count),
        ("counts", 5)
    );
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_timeouts() {
    let nsqd = start_nsqd(Options {
        msg_timeout: Duration::from_millis(150),
        ..test_options()
    })
    .await;
    let mut consumer = consumer(&nsqd, "slow", "c", 1).await;
    assert_text(&post(&nsqd, "/pub?topic=slow", "m").await, "OK");
    let first = consumer.expect_message().await;
    let again = consumer.expect_message().await;
    assert_eq!((again.id, again.attempts), (first.id, 2));
    consumer.fin(again.id).await;
    eventually("the FIN to land", || async {
        channel_of(&nsqd, "slow", "c")
            .await
            .is_some_and(|c| c.in_flight_count == 0)
    })
    .await;
    let channel = channel_of(&nsqd, "slow", "c").await.unwrap();
    assert_eq!(
        (
            channel.timeout_count,
            channel.requeue_count,
            channel.message_count
        ),
        (1, 0, 1)
    );
    let client = &channel.clients.unwrap()[0];
    assert_eq!((client.message_count, client.finish_count), (2, 1));
    nsqd.shutdown().await;
}

/// A `/stats` text line with its numbers blanked: a number padded with spaces
/// becomes `#` and its padded width, any other number `#`. Lines of two runs
/// then compare equal exactly when their layout is the same.
fn text_shape(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let digits_end = i;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i > digits_end && i < bytes.len() {
            out.push_str(&format!("#{}", i - start));
        } else {
            out.push('#');
            i = digits_end;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_text_has_upstream_layout() {
    let nsqd = start_default_nsqd().await;
    let _consumer = upstream_sample_state(&nsqd).await;
    let reply = get(&nsqd, "/stats").await;
    assert_like_sample(&reply, "stats_text", Same::Nothing);
    assert_text(&reply, &reply.body);

    let upstream = sample("stats_text").body;
    let ours: Vec<&str> = reply.body.split('\n').collect();
    let theirs: Vec<&str> = upstream.split('\n').collect();
    assert_eq!(ours.len(), theirs.len(), "{}", reply.body);
    // Line 1 names the build: `nsqd v1.3.0 (built w/go1.19.8)` upstream.
    assert!(ours[0].starts_with("nsqd v1.3.0 (") && ours[0].ends_with(')'));
    for (line, (a, b)) in ours.iter().zip(&theirs).enumerate().skip(1) {
        if b.starts_with("uptime ") {
            assert!(a.starts_with("uptime ") && a.ends_with('s'), "{a}");
            continue;
        }
        assert_eq!(text_shape(a), text_shape(b), "line {}", line + 1);
    }
    assert!(ours.contains(&"Producers: None"));

    // A paused topic, a producer, and no memory block.
    assert_empty_ok(&post(&nsqd, "/topic/pause?topic=test2", "").await);
    let mut producer = Conn::connect(&nsqd).await;
    producer.publish("test2", b"x").await;
    let port = producer.stream.local_addr().unwrap().port();
    let text = get(&nsqd, "/stats?include_mem=false").await.body;
    assert!(!text.contains("Memory:"), "{text}");
    assert!(
        text.contains(
            "\n*P [test2          ] depth: 1     be-depth: 0     msgs: 1        e2e%: \n"
        ),
        "{text}"
    );
    let producer_line = format!(
        "\nProducers:\n   [V2 127.0.0.1:{port:<11}] msgs: 1        topics: test2=1 connected: "
    );
    assert!(text.contains(&producer_line), "{text}");

    // No topics at all.
    let empty = start_default_nsqd().await;
    let text = get(&empty, "/stats?include_mem=false").await.body;
    assert!(
        text.ends_with("\nHealth: OK\n\nTopics: None\n\nProducers: None\n"),
        "{text}"
    );
    empty.shutdown().await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_endpoints_succeed_and_fail_as_upstream() {
    let nsqd = start_default_nsqd().await;
    assert_like_sample(
        &post(&nsqd, "/topic/create?topic=test2", "").await,
        "topic_create",
        Same::Body,
    );
    assert!(topic_of(&nsqd, "test2").await.is_some());
    // Create is idempotent.
    assert_empty_ok(&post(&nsqd, "/topic/create?topic=test2", "").await);
    assert_error(
        &post(&nsqd, "/topic/create", "").await,
        400,
        "MISSING_ARG_TOPIC",
    );
    assert_error(
        &post(&nsqd, "/topic/create?topic=bad!name", "").await,
        400,
        "INVALID_TOPIC",
    );
    assert_error(
        &post(&nsqd, "/topic/create?topic=", "").await,
        400,
        "INVALID_TOPIC",
    );

    assert_like_sample(
        &post(&nsqd, "/topic/empty?topic=test2", "").await,
        "topic_empty",
        Same::Body,
    );
    assert_error(
        &post(&nsqd, "/topic/empty", "").await,
        400,
        "MISSING_ARG_TOPIC",
    );
    assert_error(
        &post(&nsqd, "/topic/empty?topic=bad!name", "").await,
        400,
        "INVALID_TOPIC",
    );
    assert_error(
        &post(&nsqd, "/topic/empty?topic=nosuch", "").await,
        404,
        "TOPIC_NOT_FOUND",
    );

    assert_like_sample(
        &post(&nsqd, "/topic/pause?topic=test2", "").await,
        "topic_pause",
        Same::Body,
    );
    assert!(topic_of(&nsqd, "test2").await.unwrap().paused);
    assert_like_sample(
        &post(&nsqd, "/topic/unpause?topic=test2", "").await,
        "topic_unpause",
        Same::Body,
    );
    assert!(!topic_of(&nsqd, "test2").await.unwrap().paused);
    for action in ["pause", "unpause"] {
        let reply = post(&nsqd, &format!("/topic/{action}"), "").await;
        assert_error(&reply, 400, "MISSING_ARG_TOPIC");
        // Names are not checked, only looked up.
        let reply = post(&nsqd, &format!("/topic/{action}?topic=bad!name"), "").await;
        assert_error(&reply, 404, "TOPIC_NOT_FOUND");
        let reply = post(&nsqd, &format!("/topic/{action}?topic=nosuch"), "").await;
        assert_error(&reply, 404, "TOPIC_NOT_FOUND");
    }

    let reply = post(&nsqd, "/topic/delete?topic=doesnotexist", "").await;
    assert_like_sample(&reply, "topic_delete_missing", Same::Body);
    assert_error(
        &post(&nsqd, "/topic/delete", "").await,
        400,
        "MISSING_ARG_TOPIC",
    );
    assert_error(
        &post(&nsqd, "/topic/delete?topic=bad!name", "").await,
        404,
        "TOPIC_NOT_FOUND",
    );
    assert_empty_ok(&post(&nsqd, "/topic/delete?topic=test2", "").await);
    assert!(topic_of(&nsqd, "test2").await.is_none());
    assert_error(
        &post(&nsqd, "/topic/delete?topic=test2", "").await,
        404,
        "TOPIC_NOT_FOUND",
    );
    // None of the refused requests created a topic.
    assert_eq!(stats(&nsqd).await.topics, Some(vec![]));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_endpoints_succeed_and_fail_as_upstream() {
    let nsqd = start_default_nsqd().await;
    assert_empty_ok(&post(&nsqd, "/topic/create?topic=test2", "").await);
    let reply = post(&nsqd, "/channel/create?topic=test2&channel=ch2", "").await;
    assert_like_sample(&reply, "channel_create", Same::Body);
    assert!(channel_of(&nsqd, "test2", "ch2").await.is_some());
    let reply = post(&nsqd, "/channel/create?topic=test2", "").await;
    assert_like_sample(&reply, "channel_create_missing", Same::Body);
    // Channel create does not create the topic.
    let reply = post(&nsqd, "/channel/create?topic=nosuch&channel=c", "").await;
    assert_error(&reply, 404, "TOPIC_NOT_FOUND");
    assert!(topic_of(&nsqd, "nosuch").await.is_none());

    for action in ["create", "delete", "empty", "pause", "unpause"] {
        let at = |query: &str| format!("/channel/{action}{query}");
        let cases = [
            ("", 400, "MISSING_ARG_TOPIC"),
            ("?channel=ch2", 400, "MISSING_ARG_TOPIC"),
            ("?topic=bad!name&channel=ch2", 400, "INVALID_ARG_TOPIC"),
            ("?topic=&channel=ch2", 400, "INVALID_ARG_TOPIC"),
            ("?topic=test2", 400, "MISSING_ARG_CHANNEL"),
            // The arguments are checked before the topic is looked up.
            ("?topic=nosuch", 400, "MISSING_ARG_CHANNEL"),
            ("?topic=test2&channel=bad!chan", 400, "INVALID_ARG_CHANNEL"),
            ("?topic=nosuch&channel=bad!chan", 400, "INVALID_ARG_CHANNEL"),
            ("?topic=nosuch&channel=ch2", 404, "TOPIC_NOT_FOUND"),
        ];
        for (query, status, message) in cases {
            assert_error(&post(&nsqd, &at(query), "").await, status, message);
        }
        if action != "create" {
            let reply = post(&nsqd, &at("?topic=test2&channel=nosuch"), "").await;
            assert_error(&reply, 404, "CHANNEL_NOT_FOUND");
        }
    }

    let reply = post(&nsqd, "/channel/empty?topic=test2&channel=ch2", "").await;
    assert_like_sample(&reply, "channel_empty", Same::Body);
    let reply = post(&nsqd, "/channel/pause?topic=test2&channel=ch2", "").await;
    assert_like_sample(&reply, "channel_pause", Same::Body);
    assert!(channel_of(&nsqd, "test2", "ch2").await.unwrap().paused);
    let reply = post(&nsqd, "/channel/unpause?topic=test2&channel=ch2", "").await;
    assert_empty_ok(&reply);
    assert!(!channel_of(&nsqd, "test2", "ch2").await.unwrap().paused);
    assert_empty_ok(&post(&nsqd, "/channel/delete?topic=test2&channel=ch2", "").await);
    assert!(channel_of(&nsqd, "test2", "ch2").await.is_none());
    let reply = post(&nsqd, "/channel/delete?topic=test2&channel=ch2", "").await;
    assert_error(&reply, 404, "CHANNEL_NOT_FOUND");
    // The topic outlives its last (non-ephemeral) channel.
    assert!(topic_of(&nsqd, "test2").await.is_some());
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_pause_stops_delivery_until_unpause() {
    let nsqd = start_default_nsqd().await;
    let mut consumer = consumer(&nsqd, "p", "c", 10).await;
    assert_empty_ok(&post(&nsqd, "/channel/pause?topic=p&channel=c", "").await);
    assert_text(&post(&nsqd, "/pub?topic=p", "held").await, "OK");
    assert_text(&post(&nsqd, "/mpub?topic=p", "held2\nheld3").await, "OK");
    consumer.expect_silence(Duration::from_millis(300)).await;
    let channel = channel_of(&nsqd, "p", "c").await.unwrap();
    assert_eq!(
        (channel.depth, channel.in_flight_count, channel.paused),
        (3, 0, true)
    );

    assert_empty_ok(&post(&nsqd, "/channel/unpause?topic=p&channel=c", "").await);
    expect_bodies(&mut consumer, &["held", "held2", "held3"]).await;
    assert_text(&post(&nsqd, "/pub?topic=p", "after").await, "OK");
    expect_bodies(&mut consumer, &["after"]).await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_pause_holds_messages_in_the_topic_until_unpause() {
    let nsqd = start_default_nsqd().await;
    let mut consumer = consumer(&nsqd, "tp", "c", 10).await;
    assert_empty_ok(&post(&nsqd, "/topic/pause?topic=tp", "").await);
    for body in ["a", "b", "c"] {
        assert_text(&post(&nsqd, "/pub?topic=tp", body).await, "OK");
    }
    consumer.expect_silence(Duration::from_millis(300)).await;
    let topic = topic_of(&nsqd, "tp").await.unwrap();
    assert_eq!(
        (topic.depth, topic.paused, topic.message_count),
        (3, true, 3)
    );
    assert_eq!(
        (topic.channels[0].depth, topic.channels[0].message_count),
        (0, 0)
    );

    assert_empty_ok(&post(&nsqd, "/topic/unpause?topic=tp", "").await);
    expect_bodies(&mut consumer, &["a", "b", "c"]).await;
    let topic = topic_of(&nsqd, "tp").await.unwrap();
    assert_eq!((topic.depth, topic.paused), (0, false));
    assert_eq!(topic.channels[0].message_count, 3);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_drops_queued_messages() {
    let nsqd = start_default_nsqd().await;
    // Without channels, messages wait in the topic.
    for body in ["1", "2", "3"] {
        assert_text(&post(&nsqd, "/pub?topic=e", body).await, "OK");
    }
    assert_eq!(topic_of(&nsqd, "e").await.unwrap().depth, 3);
    assert_empty_ok(&post(&nsqd, "/topic/empty?topic=e", "").await);
    assert_eq!(topic_of(&nsqd, "e").await.unwrap().depth, 0);

    // A channel's queue, and what its consumer holds in flight.
    let mut consumer = consumer(&nsqd, "e", "c", 1).await;
    for body in ["4", "5", "6"] {
        assert_text(&post(&nsqd, "/pub?topic=e", body).await, "OK");
    }
    expect_bodies(&mut consumer, &["4"]).await;
    let channel = channel_of(&nsqd, "e", "c").await.unwrap();
    assert_eq!((channel.depth, channel.in_flight_count), (2, 1));
    assert_empty_ok(&post(&nsqd, "/channel/empty?topic=e&channel=c", "").await);
    let channel = channel_of(&nsqd, "e", "c").await.unwrap();
    assert_eq!((channel.depth, channel.in_flight_count), (0, 0));
    // Emptying does not disturb later deliveries.
    assert_text(&post(&nsqd, "/pub?topic=e", "7").await, "OK");
    expect_bodies(&mut consumer, &["7"]).await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_channel_or_topic_disconnects_its_consumers() {
    let nsqd = start_default_nsqd().await;
    let mut doomed = consumer(&nsqd, "d", "gone", 1).await;
    let mut kept = consumer(&nsqd, "d", "kept", 1).await;
    assert_empty_ok(&post(&nsqd, "/channel/delete?topic=d&channel=gone", "").await);
    doomed.expect_closed().await;
    assert!(channel_of(&nsqd, "d", "gone").await.is_none());
    assert_text(&post(&nsqd, "/pub?topic=d", "still here").await, "OK");
    expect_bodies(&mut kept, &["still here"]).await;

    assert_empty_ok(&post(&nsqd, "/topic/delete?topic=d", "").await);
    kept.expect_closed().await;
    assert!(topic_of(&nsqd, "d").await.is_none());
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_get_answers_upstream_types() {
    let nsqd = start_default_nsqd().await;
    let reply = get(&nsqd, "/config/log_level").await;
    assert_like_sample(&reply, "config_log_level", Same::Body);
    assert_eq!(reply.body, "2");
    let reply = get(&nsqd, "/config/nsqlookupd_tcp_addresses").await;
    assert_like_sample(&reply, "config_lookupd", Same::Nothing);
    assert_eq!(reply.body, "[]");

    // Durations are integer nanoseconds.
    assert_eq!(
        assert_json(&get(&nsqd, "/config/msg_timeout").await),
        60_000_000_000i64
    );
    assert_eq!(
        assert_json(&get(&nsqd, "/config/max_req_timeout").await),
        3_600_000_000_000i64
    );
    assert_eq!(
        assert_json(&get(&nsqd, "/config/mem_queue_size").await),
        10_000
    );
    assert_eq!(assert_json(&get(&nsqd, "/config/snappy").await), true);
    // An unset percentile list is Go's nil slice.
    let reply = get(&nsqd, "/config/e2e_processing_latency_percentiles").await;
    assert_eq!(assert_json(&reply), serde_json::Value::Null);
    // Strings go out raw, not JSON-quoted.
    assert_text(&get(&nsqd, "/config/tcp_address").await, "127.0.0.1:0");
    assert_text(&get(&nsqd, "/config/broadcast_address").await, "127.0.0.1");
    // The query is not read.
    assert_eq!(get(&nsqd, "/config/log_level?x=%zz").await.body, "2");

    for unknown in ["nope", "log-level", "LOG_LEVEL", "MsgTimeout"] {
        let reply = get(&nsqd, &format!("/config/{unknown}")).await;
        assert_error(&reply, 400, "INVALID_OPTION");
    }
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_put_changes_only_the_log_level() {
    let nsqd = start_default_nsqd().await;
    let reply = put(&nsqd, "/config/log_level", "debug").await;
    assert_eq!(assert_json(&reply), 1);
    assert_eq!(reply.body, "1");
    assert_eq!(get(&nsqd, "/config/log_level").await.body, "1");
    assert_eq!(put(&nsqd, "/config/log_level", "WARN").await.body, "3");
    assert_eq!(put(&nsqd, "/config/log_level", "error").await.body, "4");
    assert_eq!(put(&nsqd, "/config/log_level", "info").await.body, "2");

    assert_error(
        &put(&nsqd, "/config/log_level", "").await,
        413,
        "INVALID_VALUE",
    );
    // The body is taken as it is: no trimming, no aliases.
    for bad in ["bogus", "debug\n", " info", "warning", "1"] {
        let reply = put(&nsqd, "/config/log_level", bad).await;
        assert_error(&reply, 400, "INVALID_VALUE");
    }
    let too_big = "x".repeat(1024 * 1024 + 1);
    assert_error(
        &put(&nsqd, "/config/log_level", too_big).await,
        413,
        "INVALID_VALUE",
    );
    assert_eq!(get(&nsqd, "/config/log_level").await.body, "2");

    let reply = put(&nsqd, "/config/msg_timeout", "5").await;
    assert_error(&reply, 400, "INVALID_OPTION");
    assert_error(
        &put(&nsqd, "/config/nope", "5").await,
        400,
        "INVALID_OPTION",
    );
    // The value is checked before the option's name.
    assert_error(&put(&nsqd, "/config/nope", "").await, 413, "INVALID_VALUE");
    assert_eq!(get(&nsqd, "/config/msg_timeout").await.body, "60000000000");
    nsqd.shutdown().await;
}
