//! Typed clients of nsqd's and nsqlookupd's HTTP APIs, for tools, nsqadmin and
//! applications that publish over HTTP. Answers are read with the types of
//! [`crate::api`], errors carry the daemon's status and message.

use crate::api::{
    ChannelSettings, ChannelsResponse, LookupResponse, NodesResponse, NsqdInfo, PromoteAnswer,
    Requeued, Retired, ShownMessages, Stats, TopicsResponse, ACCEPT_V1,
};
use crate::{Error, Result};
use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Shared plumbing: the address of a daemon's HTTP API (`host:port` or a
/// URL) and an HTTP client with timeouts.
#[derive(Debug, Clone)]
struct Http {
    base: String,
    client: reqwest::Client,
}

/// Connections and timeouts shared by any number of typed clients: one pool
/// serves every nsqd and nsqlookupd a program talks to. Cloning is cheap.
///
/// ```
/// use std::time::Duration;
///
/// let pool = nsq::HttpPool::new(Duration::from_secs(2), Duration::from_secs(5));
/// let lookupd = nsq::LookupdHttp::with_pool("127.0.0.1:4161", &pool);
/// let nsqd = nsq::NsqdHttp::with_pool("https://nsqd-1.internal:4152", &pool);
/// # let _ = (lookupd, nsqd);
/// ```
#[derive(Debug, Clone)]
pub struct HttpPool(reqwest::Client);

impl HttpPool {
    /// `connect` bounds establishing a connection, `request` the whole exchange
    /// (upstream's `--http-client-connect-timeout` and `--http-client-request-timeout`).
    pub fn new(connect: Duration, request: Duration) -> HttpPool {
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .build()
            .expect("HTTP client");
        HttpPool(client)
    }
}

impl HttpPool {
    /// As [`HttpPool::new`], for `https://` servers signed by a custom CA or
    /// that ask for a client certificate.
    pub fn with_tls(
        connect: Duration,
        request: Duration,
        tls: &crate::tls::TlsClientOptions,
    ) -> std::result::Result<HttpPool, crate::tls::TlsError> {
        let config = tls.client_config()?;
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .use_preconfigured_tls((*config).clone())
            .build()
            .map_err(|e| crate::tls::TlsError(format!("HTTP client: {e}")))?;
        Ok(HttpPool(client))
    }
}

impl HttpPool {
    /// A pool around a client configured elsewhere (the consumer's lookupd
    /// polling, with its own timeouts and user agent).
    pub(crate) fn from_client(client: reqwest::Client) -> HttpPool {
        HttpPool(client)
    }
}

impl Default for HttpPool {
    /// Upstream's defaults: 2 s to connect, 5 s per request.
    fn default() -> HttpPool {
        HttpPool::new(Duration::from_secs(2), Duration::from_secs(5))
    }
}

/// The URL of `path` on an HTTP API named by `host:port` or by a URL
/// (`https://host:port`, perhaps with a path prefix), with `query` escaped
/// as Go's `url.Values` does. An empty `path` leaves the URL's own path.
///
/// ```
/// let url = nsq::http_client::api_url("127.0.0.1:4161", "/channels", &[("topic", "t#ephemeral")])?;
/// assert_eq!(url.as_str(), "http://127.0.0.1:4161/channels?topic=t%23ephemeral");
/// let url = nsq::http_client::api_url("https://nsq.example/lookupd/", "/nodes", &[])?;
/// assert_eq!(url.as_str(), "https://nsq.example/lookupd/nodes");
/// # Ok::<(), nsq::Error>(())
/// ```
pub fn api_url(addr: &str, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url> {
    let parsed = if addr.contains("://") {
        reqwest::Url::parse(addr)
    } else {
        reqwest::Url::parse(&format!("http://{addr}"))
    };
    let mut url = parsed.map_err(|e| Error::Http {
        url: addr.to_string(),
        status: None,
        message: format!("not an address or URL: {e}"),
    })?;
    if !path.is_empty() {
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

impl Http {
    /// `addr` is `host:port` or a full `http(s)://` URL.
    fn new(addr: &str, pool: &HttpPool) -> Http {
        Http {
            base: addr.to_string(),
            client: pool.0.clone(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Bytes> {
        let mut url = api_url(&self.base, path, query)?;
        let (mut status, mut bytes) = self.exchange(method.clone(), &url, body.clone()).await?;
        // nsqd with `--tls-required` refuses plain HTTP and names its HTTPS
        // port; upstream's clients retry there, and so do we.
        if let Some(https) = tls_required_redirect(&url, status, &bytes) {
            url = https;
            (status, bytes) = self.exchange(method, &url, body).await?;
        }
        if !status.is_success() {
            // Upstream's errors are `{"message":"TOPIC_NOT_FOUND"}`.
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(http_error(&url, Some(status.as_u16()), message));
        }
        Ok(bytes)
    }

    async fn exchange(
        &self,
        method: reqwest::Method,
        url: &reqwest::Url,
        body: Option<Bytes>,
    ) -> Result<(reqwest::StatusCode, Bytes)> {
        let mut request = self
            .client
            .request(method, url.clone())
            .header("Accept", ACCEPT_V1);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| http_error(url, None, e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| http_error(url, Some(status.as_u16()), e.to_string()))?;
        Ok((status, bytes))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T> {
        let bytes = self.send(reqwest::Method::GET, path, query, None).await?;
        serde_json::from_slice(&bytes).map_err(|e| self.unreadable(path, e))
    }

    /// A 200 answer whose JSON is not what `path` answers.
    fn unreadable(&self, path: &str, e: serde_json::Error) -> Error {
        let url = api_url(&self.base, path, &[]);
        let url = url.map_or_else(|_| self.base.clone(), String::from);
        Error::Http {
            url,
            status: Some(200),
            message: format!("unreadable JSON: {e}"),
        }
    }

    async fn post(&self, path: &str, query: &[(&str, &str)], body: Option<Bytes>) -> Result<()> {
        self.send(reqwest::Method::POST, path, query, body)
            .await
            .map(drop)
    }
}

/// A failed call, named by its URL without the query (which may hold secrets).
fn http_error(url: &reqwest::Url, status: Option<u16>, message: String) -> Error {
    let mut shown = url.clone();
    shown.set_query(None);
    Error::Http {
        url: shown.into(),
        status,
        message,
    }
}

/// The `https://` form of `url` when a plain-HTTP answer is nsqd's 403
/// `{"message": "TLS_REQUIRED", "https_port": N}`.
fn tls_required_redirect(
    url: &reqwest::Url,
    status: reqwest::StatusCode,
    body: &[u8],
) -> Option<reqwest::Url> {
    if status != reqwest::StatusCode::FORBIDDEN || url.scheme() != "http" {
        return None;
    }
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    if answer["message"] != "TLS_REQUIRED" {
        return None;
    }
    let port = answer["https_port"]
        .as_u64()
        .filter(|p| (1..=65535).contains(p))?;
    let mut https = url.clone();
    https.set_scheme("https").ok()?;
    https.set_port(Some(port as u16)).ok()?;
    Some(https)
}

/// nsqd's HTTP API (default port 4151).
///
/// ```no_run
/// # async fn run() -> Result<(), nsq::Error> {
/// use nsq::{NsqdHttp, TopicAction};
///
/// let nsqd = NsqdHttp::new("127.0.0.1:4151");
/// nsqd.publish("events", "hello").await?;
/// nsqd.multi_publish("events", ["a", "b"]).await?;
/// nsqd.topic_action(TopicAction::Pause, "events").await?;
/// let stats = nsqd.stats(Some("events"), None, false).await?;
/// for topic in stats.topics.unwrap_or_default() {
///     println!("{}: depth {}", topic.topic_name, topic.depth);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct NsqdHttp(Http);

impl NsqdHttp {
    /// `addr` is `host:port` or a URL; requests time out after five seconds.
    pub fn new(addr: &str) -> NsqdHttp {
        NsqdHttp::with_pool(addr, &HttpPool::default())
    }

    /// A client that shares `pool`'s connections and timeouts.
    pub fn with_pool(addr: &str, pool: &HttpPool) -> NsqdHttp {
        NsqdHttp(Http::new(addr, pool))
    }

    /// The address requests go to, as given: `host:port` or a URL.
    pub fn base_url(&self) -> &str {
        &self.0.base
    }

    pub async fn ping(&self) -> Result<()> {
        self.0
            .send(reqwest::Method::GET, "/ping", &[], None)
            .await
            .map(drop)
    }

    pub async fn info(&self) -> Result<NsqdInfo> {
        self.0.get("/info", &[]).await
    }

    /// `/stats?format=json`, optionally for one topic (and channel).
    pub async fn stats(
        &self,
        topic: Option<&str>,
        channel: Option<&str>,
        include_clients: bool,
    ) -> Result<Stats> {
        let mut query = vec![
            ("format", "json"),
            (
                "include_clients",
                if include_clients { "true" } else { "false" },
            ),
        ];
        query.extend(topic.map(|t| ("topic", t)));
        query.extend(channel.map(|c| ("channel", c)));
        self.0.get("/stats", &query).await
    }

    pub async fn publish(&self, topic: &str, body: impl Into<Bytes>) -> Result<()> {
        self.0
            .post("/pub", &[("topic", topic)], Some(body.into()))
            .await
    }

    pub async fn deferred_publish(
        &self,
        topic: &str,
        delay: Duration,
        body: impl Into<Bytes>,
    ) -> Result<()> {
        let ms = delay.as_millis().to_string();
        self.0
            .post(
                "/pub",
                &[("topic", topic), ("defer", &ms)],
                Some(body.into()),
            )
            .await
    }

    /// `/mpub?binary=true`, so bodies may contain newlines.
    pub async fn multi_publish<B: AsRef<[u8]>>(
        &self,
        topic: &str,
        bodies: impl IntoIterator<Item = B>,
    ) -> Result<()> {
        let bodies: Vec<B> = bodies.into_iter().collect();
        let mut buf = BytesMut::new();
        buf.put_u32(bodies.len() as u32);
        for body in &bodies {
            buf.put_u32(body.as_ref().len() as u32);
            buf.put_slice(body.as_ref());
        }
        self.0
            .post(
                "/mpub",
                &[("topic", topic), ("binary", "true")],
                Some(buf.freeze()),
            )
            .await
    }

    /// `/topic/<action>`: create, delete, empty, pause or unpause.
    pub async fn topic_action(&self, action: TopicAction, topic: &str) -> Result<()> {
        self.0
            .post(
                &format!("/topic/{}", action.as_str()),
                &[("topic", topic)],
                None,
            )
            .await
    }

    /// `/channel/<action>`: create, delete, empty, pause or unpause.
    pub async fn channel_action(
        &self,
        action: TopicAction,
        topic: &str,
        channel: &str,
    ) -> Result<()> {
        self.0
            .post(
                &format!("/channel/{}", action.as_str()),
                &[("topic", topic), ("channel", channel)],
                None,
            )
            .await
    }

    /// `/channel/dead`: the oldest `n` dead letters of a channel and how
    /// many it holds (ours; upstream answers 404).
    pub async fn dead_letters(
        &self,
        topic: &str,
        channel: &str,
        n: usize,
    ) -> Result<ShownMessages> {
        let n = n.to_string();
        self.0
            .get(
                "/channel/dead",
                &[("topic", topic), ("channel", channel), ("n", &n)],
            )
            .await
    }

    /// `/channel/dead/requeue`: every dead letter goes back in line with its
    /// attempts reset; answers how many.
    pub async fn requeue_dead(&self, topic: &str, channel: &str) -> Result<u64> {
        let bytes = self
            .0
            .send(
                reqwest::Method::POST,
                "/channel/dead/requeue",
                &[("topic", topic), ("channel", channel)],
                None,
            )
            .await?;
        serde_json::from_slice::<Requeued>(&bytes)
            .map(|r| r.requeued)
            .map_err(|e| self.0.unreadable("/channel/dead/requeue", e))
    }

    /// `/channel/dead/empty`: drops a channel's dead letters.
    pub async fn empty_dead(&self, topic: &str, channel: &str) -> Result<()> {
        self.0
            .post(
                "/channel/dead/empty",
                &[("topic", topic), ("channel", channel)],
                None,
            )
            .await
    }

    /// `/channel/peek`: the next `n` (at most 100) messages the channel would
    /// deliver, changing nothing.
    pub async fn peek(&self, topic: &str, channel: &str, n: usize) -> Result<ShownMessages> {
        let n = n.to_string();
        self.0
            .get(
                "/channel/peek",
                &[("topic", topic), ("channel", channel), ("n", &n)],
            )
            .await
    }

    /// `/channel/config`: sets what is given (`max_attempts`; `msg_ttl`,
    /// zero for none) for one channel, persistently, and answers the
    /// settings in force. With neither, only reads them.
    pub async fn channel_config(
        &self,
        topic: &str,
        channel: &str,
        max_attempts: Option<u16>,
        msg_ttl: Option<Duration>,
    ) -> Result<ChannelSettings> {
        let max_attempts = max_attempts.map(|n| n.to_string());
        let msg_ttl = msg_ttl.map(|ttl| format!("{}ms", ttl.as_millis()));
        let mut query = vec![("topic", topic), ("channel", channel)];
        query.extend(max_attempts.as_deref().map(|n| ("max_attempts", n)));
        query.extend(msg_ttl.as_deref().map(|ttl| ("msg_ttl", ttl)));
        let bytes = self
            .0
            .send(reqwest::Method::POST, "/channel/config", &query, None)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| self.0.unreadable("/channel/config", e))
    }

    /// `/replica/promote` on a replication peer: the replicas of `origin`
    /// (the address it reported, or its ID), or of every origin that is not
    /// connected, become this nsqd's own topics (ours). nsqd answers 409
    /// `ORIGIN_CONNECTED` while that origin is connected.
    pub async fn promote_replicas(&self, origin: Option<&str>) -> Result<PromoteAnswer> {
        let query: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        let bytes = self
            .0
            .send(reqwest::Method::POST, "/replica/promote", &query, None)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| self.0.unreadable("/replica/promote", e))
    }

    /// `/replica/forget` on a replication peer: drops what it keeps for
    /// `origin` (the address it reported, or its ID), fence included, so
    /// that the origin replicates anew when it connects (ours). nsqd answers
    /// 409 `ORIGIN_CONNECTED` while that origin is connected and 404
    /// `ORIGIN_NOT_FOUND` for one it does not know.
    pub async fn forget_replica(&self, origin: &str) -> Result<()> {
        self.0
            .send(
                reqwest::Method::POST,
                "/replica/forget",
                &[("origin", origin)],
                None,
            )
            .await?;
        Ok(())
    }

    /// `/replication/retire` on an origin whose `peer` promoted its replicas
    /// (the link shows `fenced`): every channel here passes what the peer
    /// took over, and the link replicates anew (ours). nsqd answers 409
    /// `PEER_HAS_NOT_PROMOTED` for a peer that did not.
    pub async fn retire_replication(&self, peer: &str) -> Result<Retired> {
        let bytes = self
            .0
            .send(
                reqwest::Method::POST,
                "/replication/retire",
                &[("peer", peer)],
                None,
            )
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| self.0.unreadable("/replication/retire", e))
    }
}

/// What the admin endpoints of nsqd (and nsqadmin) do to a topic or channel.
///
/// ```no_run
/// # async fn run(nsqd: nsq::NsqdHttp) -> Result<(), nsq::Error> {
/// use nsq::TopicAction;
///
/// nsqd.channel_action(TopicAction::Empty, "events", "archive").await?;
/// assert_eq!(TopicAction::Unpause.as_str(), "unpause");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicAction {
    Create,
    Delete,
    Empty,
    Pause,
    Unpause,
}

impl TopicAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicAction::Create => "create",
            TopicAction::Delete => "delete",
            TopicAction::Empty => "empty",
            TopicAction::Pause => "pause",
            TopicAction::Unpause => "unpause",
        }
    }
}

/// nsqlookupd's HTTP API (default port 4161).
///
/// ```no_run
/// # async fn run() -> Result<(), nsq::Error> {
/// let lookupd = nsq::LookupdHttp::new("127.0.0.1:4161");
/// for producer in lookupd.lookup("events").await?.producers {
///     println!("events on {}:{}", producer.broadcast_address, producer.tcp_port);
/// }
/// println!("channels: {:?}", lookupd.channels("events").await?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LookupdHttp(Http);

impl LookupdHttp {
    /// `addr` is `host:port` or a URL; requests time out after five seconds.
    pub fn new(addr: &str) -> LookupdHttp {
        LookupdHttp::with_pool(addr, &HttpPool::default())
    }

    /// A client that shares `pool`'s connections and timeouts.
    pub fn with_pool(addr: &str, pool: &HttpPool) -> LookupdHttp {
        LookupdHttp(Http::new(addr, pool))
    }

    /// The address requests go to, as given: `host:port` or a URL.
    pub fn base_url(&self) -> &str {
        &self.0.base
    }

    /// nsqlookupd's `/info` (its version).
    pub async fn info(&self) -> Result<crate::api::LookupdInfo> {
        self.0.get("/info", &[]).await
    }

    pub async fn ping(&self) -> Result<()> {
        self.0
            .send(reqwest::Method::GET, "/ping", &[], None)
            .await
            .map(drop)
    }

    /// The nsqds that have `topic`; an unknown topic is the error 404
    /// `TOPIC_NOT_FOUND`. Lookupds older than 1.0 wrap the answer as
    /// `{"status_code","status_txt","data"}`; that is read too.
    pub async fn lookup(&self, topic: &str) -> Result<LookupResponse> {
        let mut answer: serde_json::Value = self.0.get("/lookup", &[("topic", topic)]).await?;
        if let Some(data) = answer.get_mut("data") {
            answer = data.take();
        }
        serde_json::from_value(answer).map_err(|e| self.0.unreadable("/lookup", e))
    }

    pub async fn topics(&self) -> Result<Vec<String>> {
        self.0
            .get::<TopicsResponse>("/topics", &[])
            .await
            .map(|r| r.topics)
    }

    pub async fn channels(&self, topic: &str) -> Result<Vec<String>> {
        self.0
            .get::<ChannelsResponse>("/channels", &[("topic", topic)])
            .await
            .map(|r| r.channels)
    }

    pub async fn nodes(&self) -> Result<NodesResponse> {
        self.0.get("/nodes", &[]).await
    }

    /// `/debug`: every registration and its producers, keyed `category:key:subkey`.
    pub async fn debug(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<crate::api::DebugPeer>>> {
        self.0.get("/debug", &[]).await
    }

    pub async fn create_topic(&self, topic: &str) -> Result<()> {
        self.0
            .post("/topic/create", &[("topic", topic)], None)
            .await
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        self.0
            .post("/topic/delete", &[("topic", topic)], None)
            .await
    }

    pub async fn create_channel(&self, topic: &str, channel: &str) -> Result<()> {
        self.0
            .post(
                "/channel/create",
                &[("topic", topic), ("channel", channel)],
                None,
            )
            .await
    }

    pub async fn delete_channel(&self, topic: &str, channel: &str) -> Result<()> {
        self.0
            .post(
                "/channel/delete",
                &[("topic", topic), ("channel", channel)],
                None,
            )
            .await
    }

    /// Hides nsqd `node` (`broadcast_address:http_port`) for `topic` for a while.
    pub async fn tombstone(&self, topic: &str, node: &str) -> Result<()> {
        self.0
            .post(
                "/topic/tombstone",
                &[("topic", topic), ("node", node)],
                None,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_addresses_and_base_urls() {
        let url = |addr, path, query| api_url(addr, path, query).unwrap().to_string();
        assert_eq!(
            url("127.0.0.1:4161", "/lookup", &[]),
            "http://127.0.0.1:4161/lookup"
        );
        assert_eq!(
            url("http://h:4161/", "/lookup", &[]),
            "http://h:4161/lookup"
        );
        assert_eq!(
            url("[::1]:4151", "/pub", &[("topic", "a b&c=#")]),
            "http://[::1]:4151/pub?topic=a+b%26c%3D%23"
        );
        assert_eq!(
            url("https://auth/check", "", &[("tls", "true")]),
            "https://auth/check?tls=true"
        );
        assert!(api_url("h:port", "/x", &[]).is_err());
    }

    fn redirect(url: &str, status: reqwest::StatusCode, body: &[u8]) -> Option<String> {
        let url = reqwest::Url::parse(url).unwrap();
        tls_required_redirect(&url, status, body).map(String::from)
    }

    #[test]
    fn follows_tls_required_to_the_https_port() {
        let forbidden = reqwest::StatusCode::FORBIDDEN;
        let body = br#"{"message": "TLS_REQUIRED", "https_port": 4152}"#;
        assert_eq!(
            redirect("http://10.0.0.7:4151/stats", forbidden, body).as_deref(),
            Some("https://10.0.0.7:4152/stats")
        );
        assert_eq!(
            redirect("http://[::1]:4151/pub?topic=t", forbidden, body).as_deref(),
            Some("https://[::1]:4152/pub?topic=t")
        );
        // Only that answer, only from plain HTTP, only with a usable port.
        for (url, status, body) in [
            ("https://h:4152/stats", forbidden, &body[..]),
            ("http://h:4151/stats", reqwest::StatusCode::OK, &body[..]),
            (
                "http://h:4151/stats",
                forbidden,
                br#"{"message":"FORBIDDEN"}"#,
            ),
            (
                "http://h:4151/stats",
                forbidden,
                br#"{"message":"TLS_REQUIRED","https_port":0}"#,
            ),
            ("http://h:4151/stats", forbidden, b"not json"),
        ] {
            assert_eq!(redirect(url, status, body), None, "{url} {status}");
        }
    }
}
