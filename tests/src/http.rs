//! The daemons' HTTP APIs as tests read them: exact replies, and nsqd's
//! `/stats` as JSON or as our types.

use crate::Nsqd;
use bytes::Bytes;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The base URL of an nsqd's HTTP API.
pub fn http_url(nsqd: &Nsqd) -> String {
    format!("http://{}", nsqd.http_addr().expect("HTTP enabled"))
}

/// One HTTP client for the helpers: building one loads the system's
/// certificates, too slow to do for every poll of `/stats`. It keeps no idle
/// connections, so it serves any test's runtime.
pub fn http_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("HTTP client")
    })
}

/// GET an nsqd HTTP path and decode the JSON.
pub async fn get_json(nsqd: &Nsqd, path: &str) -> serde_json::Value {
    http_client()
        .get(format!("{}{path}", http_url(nsqd)))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON body")
}

/// `/stats?format=json` as our typed view.
pub async fn stats(nsqd: &Nsqd) -> nsq::api::Stats {
    let body = http_client()
        .get(format!("{}/stats?format=json", http_url(nsqd)))
        .send()
        .await
        .expect("GET /stats")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&body).expect("stats JSON")
}

/// `topic` as `nsqd` reports it now, if it exists.
pub async fn topic_stats(nsqd: &Nsqd, topic: &str) -> Option<nsq::api::TopicStats> {
    stats(nsqd)
        .await
        .topics
        .unwrap_or_default()
        .into_iter()
        .find(|t| t.topic_name == topic)
}

/// Messages `topic` has taken on `nsqd` (0 if it does not exist).
pub async fn topic_message_count(nsqd: &Nsqd, topic: &str) -> u64 {
    topic_stats(nsqd, topic)
        .await
        .map_or(0, |t| t.message_count)
}

/// `topic/channel` as `nsqd` reports it now, if it exists.
pub async fn channel_stats(
    nsqd: &Nsqd,
    topic: &str,
    channel: &str,
) -> Option<nsq::api::ChannelStats> {
    topic_stats(nsqd, topic)
        .await?
        .channels
        .into_iter()
        .find(|c| c.channel_name == channel)
}

/// An HTTP answer: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// From a status line and header lines (as sent, or as captured) and a body.
    pub fn parse_head(head: &str, body: String) -> Reply {
        let mut lines = head.lines().map(str::trim_end).filter(|l| !l.is_empty());
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
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

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: not JSON: {:?}", self.body))
    }
}

/// A daemon with an HTTP API, or the base URL of one (`http://host:port`).
pub trait HttpApi {
    fn base_url(&self) -> String;
}

impl HttpApi for Nsqd {
    fn base_url(&self) -> String {
        http_url(self)
    }
}

impl HttpApi for nsqlookupd::Lookupd {
    fn base_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }
}

impl HttpApi for nsqadmin::NsqAdmin {
    fn base_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }
}

impl HttpApi for str {
    fn base_url(&self) -> String {
        self.to_string()
    }
}

/// One request to `api` (see [`http_request`]).
pub async fn send(
    api: &(impl HttpApi + ?Sized),
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
) -> Reply {
    http_request(&api.base_url(), method, path, body.into()).await
}

pub async fn get(api: &(impl HttpApi + ?Sized), path: &str) -> Reply {
    send(api, Method::GET, path, Bytes::new()).await
}

pub async fn post(api: &(impl HttpApi + ?Sized), path: &str, body: impl Into<Bytes>) -> Reply {
    send(api, Method::POST, path, body).await
}

pub async fn put(api: &(impl HttpApi + ?Sized), path: &str, body: impl Into<Bytes>) -> Reply {
    send(api, Method::PUT, path, body).await
}

/// POSTs `body` in chunked transfer encoding (no Content-Length), 64 bytes a
/// chunk, on a fresh connection.
pub async fn post_chunked(nsqd: &Nsqd, path: &str, body: &[u8]) -> Reply {
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

/// One request written as raw bytes; the answer is read to the end of the connection.
pub async fn raw_http(nsqd: &Nsqd, request: &[u8]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(nsqd.http_addr().expect("HTTP enabled"))
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut answer = Vec::new();
    tokio::time::timeout(crate::PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("answer within patience")
        .expect("read answer");
    let text = String::from_utf8(answer).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("end of headers");
    Reply::parse_head(head, body.to_string())
}

/// One HTTP request to `base` (`http://host:port`), not following redirects,
/// so that tests see exactly what the daemon answered.
pub async fn http_request(base: &str, method: Method, path: &str, body: Bytes) -> Reply {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client");
    let response = client
        .request(method, format!("{base}{path}"))
        .body(body)
        .send()
        .await
        .expect("HTTP request");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().expect("ASCII").into()))
        .collect();
    let body = response.text().await.expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

/// Every JSON object key in document order (`"name":`), to compare field order.
pub fn keys_in_order(json: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = json;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let tail = &after[end + 1..];
        if tail.starts_with(':') {
            keys.push(after[..end].to_string());
        }
        rest = tail;
    }
    keys
}

/// The base URL of an nsqd's HTTPS API.
pub fn https_url(nsqd: &Nsqd) -> String {
    format!("https://{}", nsqd.https_addr().expect("HTTPS enabled"))
}
