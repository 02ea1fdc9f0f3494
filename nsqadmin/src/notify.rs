//! Admin actions sent to `--notification-http-endpoint` as upstream's JSON,
//! in the background so that a slow endpoint never holds up the UI.

use axum::http::HeaderMap;
use base64::Engine;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AdminAction {
    pub action: String,
    pub topic: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub channel: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Ours: the origin whose replicas were promoted on `node`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// Ours: the peer whose link `node` retired.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// The HTTP basic-auth user of the request, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    pub remote_ip: String,
    pub user_agent: String,
    /// The URL of the request that acted.
    pub url: String,
    /// The hostname of this nsqadmin.
    pub via: String,
}

/// What an action acted on: upstream names a topic, a channel or a node;
/// a replication action (ours) names the nsqd and the other end of its link.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub topic: String,
    pub channel: String,
    pub node: String,
    pub origin: String,
    pub peer: String,
}

/// Who asked for an action, read from the request.
#[derive(Debug, Clone, Default)]
pub struct Requester {
    pub user: String,
    pub remote_ip: String,
    pub user_agent: String,
    pub url: String,
}

impl Requester {
    pub fn from_request(
        headers: &HeaderMap,
        remote: std::net::SocketAddr,
        url: String,
    ) -> Requester {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        Requester {
            user: basic_auth_user(&header("authorization")).unwrap_or_default(),
            remote_ip: remote.ip().to_string(),
            user_agent: header("user-agent"),
            url,
        }
    }
}

fn basic_auth_user(authorization: &str) -> Option<String> {
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.as_str(), |(u, _)| u)
            .to_string(),
    )
}

#[derive(Clone)]
pub struct Notifier {
    endpoint: reqwest::Url,
    via: String,
    client: reqwest::Client,
}

impl Notifier {
    /// `None` when no endpoint is configured, or when it is no URL (logged).
    pub fn new(endpoint: &str, via: String, timeout: std::time::Duration) -> Option<Notifier> {
        if endpoint.is_empty() {
            return None;
        }
        let endpoint = match nsq::http_client::api_url(endpoint, "", &[]) {
            Ok(url) => url,
            Err(e) => {
                tracing::error!(error = %e, "--notification-http-endpoint unusable; no notifications");
                return None;
            }
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("HTTP client");
        Some(Notifier {
            endpoint,
            via,
            client,
        })
    }

    /// Posts the action in the background; failures are logged.
    pub fn send(&self, action: &str, target: Target, by: &Requester) {
        let event = AdminAction {
            action: action.into(),
            topic: target.topic,
            channel: target.channel,
            node: target.node,
            origin: target.origin,
            peer: target.peer,
            timestamp: crate::cluster::unix_now(),
            user: by.user.clone(),
            remote_ip: by.remote_ip.clone(),
            user_agent: by.user_agent.clone(),
            url: by.url.clone(),
            via: self.via.clone(),
        };
        let this = self.clone();
        tokio::spawn(async move {
            let sent = this
                .client
                .post(this.endpoint.clone())
                .json(&event)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(status = %r.status(), endpoint = %this.endpoint, "notification refused")
                }
                Err(e) => {
                    tracing::warn!(error = %e, endpoint = %this.endpoint, "notification failed")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_user_is_read() {
        // "alice:secret"
        assert_eq!(
            basic_auth_user("Basic YWxpY2U6c2VjcmV0").as_deref(),
            Some("alice")
        );
        assert_eq!(basic_auth_user("Bearer x"), None);
        assert_eq!(basic_auth_user("Basic !!!"), None);
    }
}
