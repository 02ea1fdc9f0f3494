//! The daemons' HTTP APIs as tests read them: exact replies, and nsqd's
//! `/stats` as JSON or as our types.

use crate::Nsqd;

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

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: not JSON: {:?}", self.body))
    }
}

/// One HTTP request to `base` (`http://host:port`), not following redirects,
/// so that tests see exactly what the daemon answered.
pub async fn http_request(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: bytes::Bytes,
) -> Reply {
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
