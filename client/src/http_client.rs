//! Typed clients of nsqd's and nsqlookupd's HTTP APIs, for tools, nsqadmin and
//! applications that publish over HTTP. Answers are read with the types of
//! [`crate::api`], errors carry the daemon's status and message.

use crate::api::{
    ChannelsResponse, LookupResponse, NodesResponse, NsqdInfo, Stats, TopicsResponse,
};
use crate::{Error, Result};
use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The Accept header NSQ's clients send, asking for V1 answers.
const ACCEPT_V1: &str = "application/vnd.nsq; version=1.0";

/// Shared plumbing: a base URL and an HTTP client with timeouts.
#[derive(Debug, Clone)]
struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    /// `addr` is `host:port` or a full `http(s)://` URL.
    fn new(addr: &str, timeout: Duration) -> Http {
        let base = if addr.contains("://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("HTTP client");
        Http { base, client }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Bytes> {
        let url = format!("{}{path}", self.base);
        let failed = |status: Option<u16>, message: String| Error::Http {
            url: url.clone(),
            status,
            message,
        };
        let mut request = self
            .client
            .request(method, &url)
            .query(query)
            .header("Accept", ACCEPT_V1);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| failed(None, e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| failed(Some(status.as_u16()), e.to_string()))?;
        if !status.is_success() {
            // Upstream's errors are `{"message":"TOPIC_NOT_FOUND"}`.
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(failed(Some(status.as_u16()), message));
        }
        Ok(bytes)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T> {
        let bytes = self.send(reqwest::Method::GET, path, query, None).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Http {
            url: format!("{}{path}", self.base),
            status: Some(200),
            message: format!("unreadable JSON: {e}"),
        })
    }

    async fn post(&self, path: &str, query: &[(&str, &str)], body: Option<Bytes>) -> Result<()> {
        self.send(reqwest::Method::POST, path, query, body)
            .await
            .map(drop)
    }
}

/// nsqd's HTTP API (default port 4151).
#[derive(Debug, Clone)]
pub struct NsqdHttp(Http);

impl NsqdHttp {
    /// `addr` is `host:port` or a URL; requests time out after five seconds.
    pub fn new(addr: &str) -> NsqdHttp {
        NsqdHttp(Http::new(addr, Duration::from_secs(5)))
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
}

/// What the admin endpoints of nsqd (and nsqadmin) do to a topic or channel.
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
#[derive(Debug, Clone)]
pub struct LookupdHttp(Http);

impl LookupdHttp {
    /// `addr` is `host:port` or a URL; requests time out after five seconds.
    pub fn new(addr: &str) -> LookupdHttp {
        LookupdHttp(Http::new(addr, Duration::from_secs(5)))
    }

    pub async fn ping(&self) -> Result<()> {
        self.0
            .send(reqwest::Method::GET, "/ping", &[], None)
            .await
            .map(drop)
    }

    /// The nsqds that have `topic`; an unknown topic is the error 404 `TOPIC_NOT_FOUND`.
    pub async fn lookup(&self, topic: &str) -> Result<LookupResponse> {
        self.0.get("/lookup", &[("topic", topic)]).await
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
