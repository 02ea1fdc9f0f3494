//! AUTH with upstream's auth server contract: nsqd sends a client's secret,
//! address, TLS state and certificate common name to an auth server over
//! HTTP and gets back what the client may do, for how long.
//!
//! `GET http://<addr>/auth?common_name=&remote_ip=&secret=&tls=` (or the
//! given URL when the address has a scheme) answers
//! `{"ttl":3600,"identity":"...","identity_url":"...","authorizations":
//! [{"topic":"<regex>","channels":["<regex>"],"permissions":["subscribe","publish"]}]}`.
//! Regexes match anywhere in a name unless anchored. A publish is allowed by
//! an authorization with `publish` whose topic matches and one of whose
//! channel patterns matches the empty string (in practice `.*`).

use regex::Regex;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Bounds what an auth server's answer may make us read.
const MAX_ANSWER: usize = 1 << 20;

/// What a client is allowed, until `expires`.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub identity: String,
    pub identity_url: String,
    pub authorizations: Vec<Authorization>,
    pub expires: Instant,
}

#[derive(Debug, Clone)]
pub struct Authorization {
    topic: Regex,
    channels: Vec<Regex>,
    subscribe: bool,
    publish: bool,
}

impl Authorization {
    /// `channel` is empty for a publish.
    fn allows(&self, topic: &str, channel: &str) -> bool {
        let permitted = if channel.is_empty() {
            self.publish
        } else {
            self.subscribe
        };
        permitted && self.topic.is_match(topic) && self.channels.iter().any(|c| c.is_match(channel))
    }
}

impl AuthState {
    pub fn has_authorizations(&self) -> bool {
        !self.authorizations.is_empty()
    }

    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.expires
    }

    /// Whether one of the authorizations allows SUB to `topic`/`channel`, or,
    /// with an empty `channel`, a publish to `topic`.
    pub fn allows(&self, topic: &str, channel: &str) -> bool {
        self.authorizations.iter().any(|a| a.allows(topic, channel))
    }

    /// Checks an auth server's JSON answer as upstream does: known
    /// permissions only, valid regexes, a TTL above zero.
    pub fn from_answer(body: &[u8]) -> Result<AuthState, String> {
        #[derive(Deserialize)]
        #[serde(default)]
        #[derive(Default)]
        struct Answer {
            ttl: i64,
            identity: String,
            identity_url: String,
            authorizations: Vec<Entry>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Entry {
            topic: String,
            channels: Vec<String>,
            permissions: Vec<String>,
        }
        let answer: Answer =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON answer: {e}"))?;
        let compile = |what: &str, p: &str| {
            Regex::new(p).map_err(|e| format!("unable to compile {what} {p:?} {e}"))
        };
        let mut authorizations = Vec::with_capacity(answer.authorizations.len());
        for entry in answer.authorizations {
            let (mut subscribe, mut publish) = (false, false);
            for p in &entry.permissions {
                match p.as_str() {
                    "subscribe" => subscribe = true,
                    "publish" => publish = true,
                    other => return Err(format!("unknown permission {other}")),
                }
            }
            authorizations.push(Authorization {
                topic: compile("topic", &entry.topic)?,
                channels: entry
                    .channels
                    .iter()
                    .map(|c| compile("channel", c))
                    .collect::<Result<_, _>>()?,
                subscribe,
                publish,
            });
        }
        if answer.ttl <= 0 {
            return Err(format!("invalid TTL {} (must be >0)", answer.ttl));
        }
        Ok(AuthState {
            identity: answer.identity,
            identity_url: answer.identity_url,
            authorizations,
            expires: Instant::now() + Duration::from_secs(answer.ttl as u64),
        })
    }
}

/// What nsqd tells the auth server about a client.
pub struct Credentials<'a> {
    pub remote_ip: &'a str,
    pub tls: bool,
    /// Of the client's certificate; empty without one.
    pub common_name: &'a str,
    pub secret: &'a str,
}

/// The configured auth servers (`--auth-http-address`).
pub struct Authorizer {
    addresses: Vec<String>,
    client: reqwest::Client,
}

impl Authorizer {
    pub fn new(addresses: Vec<String>, client: reqwest::Client) -> Authorizer {
        Authorizer { addresses, client }
    }

    /// Asks the servers in turn, from a random one, until one answers.
    /// The error names every failure; it is for the log, never the client.
    pub async fn query(&self, credentials: &Credentials<'_>) -> Result<AuthState, String> {
        let n = self.addresses.len();
        let start = rand::random_range(0..n.max(1));
        let mut failures = Vec::new();
        for i in 0..n {
            let addr = &self.addresses[(start + i) % n];
            match self.query_one(addr, credentials).await {
                Ok(state) => return Ok(state),
                Err(e) => failures.push(format!("failed to auth against {addr} - {e}")),
            }
        }
        Err(failures.join("; "))
    }

    async fn query_one(&self, addr: &str, c: &Credentials<'_>) -> Result<AuthState, String> {
        let tls = if c.tls { "true" } else { "false" };
        // In the order of Go's url.Values.Encode: sorted by key.
        let query = [
            ("common_name", c.common_name),
            ("remote_ip", c.remote_ip),
            ("secret", c.secret),
            ("tls", tls),
        ];
        // A URL names the endpoint itself; `host:port` means upstream's `/auth` there.
        let path = if addr.contains("://") { "" } else { "/auth" };
        let url = nsq::http_client::api_url(addr, path, &query).map_err(|e| e.to_string())?;
        let mut response = self
            .client
            .get(url)
            .header("Accept", nsq::api::ACCEPT_V1)
            .send()
            .await
            .map_err(without_url)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(without_url)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("answer larger than {MAX_ANSWER} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        if status != reqwest::StatusCode::OK {
            return Err(format!(
                "got response {status} {:?}",
                String::from_utf8_lossy(&body)
            ));
        }
        AuthState::from_answer(&body)
    }
}

/// The error without the request's URL: its query holds the secret, and
/// the error goes to the log (upstream's leak, nsq#1486).
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> AuthState {
        AuthState::from_answer(json.as_bytes()).unwrap()
    }

    #[test]
    fn upstream_matching_rules() {
        let s = state(
            r#"{"ttl":60,"identity":"svc","authorizations":[
                {"topic":"^orders$","channels":[".*"],"permissions":["publish"]},
                {"topic":"events","channels":["^archive$"],"permissions":["subscribe"]}]}"#,
        );
        assert_eq!(s.identity, "svc");
        assert!(s.allows("orders", ""));
        assert!(!s.allows("orders2", ""), "anchored topic");
        assert!(!s.allows("orders", "c"), "publish only");
        assert!(s.allows("events", "archive"));
        assert!(s.allows("old_events_2", "archive"), "unanchored topic");
        assert!(!s.allows("events", "archive2"));
        assert!(!s.allows("events", ""), "no publish permission");
        // Publishing needs a channel pattern that matches the empty string.
        let s = state(
            r#"{"ttl":60,"authorizations":[{"topic":".*","channels":["x"],"permissions":["publish"]}]}"#,
        );
        assert!(!s.allows("t", ""));
    }

    #[test]
    fn bad_answers_are_refused() {
        for bad in [
            r#"{"ttl":0,"authorizations":[]}"#,
            r#"{"ttl":5,"authorizations":[{"topic":"(","channels":[],"permissions":[]}]}"#,
            r#"{"ttl":5,"authorizations":[{"topic":"t","channels":["["],"permissions":[]}]}"#,
            r#"{"ttl":5,"authorizations":[{"topic":"t","channels":[],"permissions":["admin"]}]}"#,
            r#"{"ttl":"5"}"#,
            "not json",
        ] {
            assert!(AuthState::from_answer(bad.as_bytes()).is_err(), "{bad}");
        }
        let empty = state(r#"{"ttl":5}"#);
        assert!(!empty.has_authorizations());
        assert!(!empty.is_expired());
    }

    #[tokio::test]
    async fn failures_never_show_the_secret() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let authorizer = Authorizer::new(vec![addr.clone()], reqwest::Client::new());
        let err = authorizer
            .query(&Credentials {
                remote_ip: "127.0.0.1",
                tls: false,
                common_name: "",
                secret: "hunter2",
            })
            .await
            .unwrap_err();
        assert!(err.contains(&addr), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
