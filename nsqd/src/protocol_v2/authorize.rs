//! AUTH, and the permission check that publishes and SUB make, against
//! upstream's auth server contract.

use super::Session;
use crate::auth::{AuthState, Credentials};
use crate::command::{go_quote, ClientError};
use std::sync::Arc;

impl Session {
    /// AUTH: asks the auth server what `secret` allows. Upstream reads the
    /// body before its checks, as the parser has.
    pub(super) async fn auth(&mut self, secret: &[u8]) -> Result<(), ClientError> {
        let authed = self.client.auth().is_some_and(|a| a.has_authorizations());
        if authed {
            return Err(ClientError::invalid("AUTH already set"));
        }
        if self.node.auth.is_none() {
            return Err(ClientError::fatal("E_AUTH_DISABLED", "AUTH disabled"));
        }
        let secret = String::from_utf8_lossy(secret).into_owned();
        let state = self.query_auth(&secret).await?;
        self.auth_secret = Some(secret);
        if !state.has_authorizations() {
            return Err(ClientError::fatal(
                "E_UNAUTHORIZED",
                "AUTH no authorizations found",
            ));
        }
        #[derive(serde::Serialize)]
        struct AuthResponse<'a> {
            identity: &'a str,
            identity_url: &'a str,
            permission_count: usize,
        }
        let json = serde_json::to_vec(&AuthResponse {
            identity: &state.identity,
            identity_url: &state.identity_url,
            permission_count: state.authorizations.len(),
        })
        .expect("plain struct serializes");
        self.respond(&json)
            .await
            .map_err(|_| ClientError::fatal("E_AUTH_ERROR", "AUTH error write failed"))
    }

    /// Asks the auth servers and keeps the answer on the client. Why it
    /// failed is logged; the client only learns that it did.
    async fn query_auth(&self, secret: &str) -> Result<Arc<AuthState>, ClientError> {
        let authorizer = self
            .node
            .auth
            .as_ref()
            .ok_or_else(|| ClientError::fatal("E_AUTH_DISABLED", "AUTH disabled"))?;
        let tls = self.client.tls();
        let credentials = Credentials {
            remote_ip: &self.remote.host,
            tls: tls.is_some(),
            common_name: tls.map_or("", |t| t.peer_common_name.as_str()),
            secret,
        };
        match authorizer.query(&credentials).await {
            Ok(state) => {
                let state = Arc::new(state);
                self.client.set_auth(state.clone());
                Ok(state)
            }
            Err(e) => {
                tracing::warn!(client = self.client.id, error = %e, "AUTH failed");
                Err(ClientError::fatal("E_AUTH_FAILED", "AUTH failed"))
            }
        }
    }

    /// With auth enabled, whether this client may `cmd` the topic (and
    /// channel; empty for publishes), asking the auth server again once the
    /// last answer's TTL has passed.
    pub(super) async fn check_auth(
        &self,
        cmd: &str,
        topic: &str,
        channel: &str,
    ) -> Result<(), ClientError> {
        if self.node.auth.is_none() {
            return Ok(());
        }
        let state = self.client.auth();
        let state = match state {
            Some(state) if state.has_authorizations() => state,
            _ => {
                return Err(ClientError::fatal(
                    "E_AUTH_FIRST",
                    format!("AUTH required before {cmd}"),
                ))
            }
        };
        let state = if state.is_expired() {
            let secret = self.auth_secret.clone().unwrap_or_default();
            self.query_auth(&secret).await?
        } else {
            state
        };
        if state.allows(topic, channel) {
            Ok(())
        } else {
            Err(ClientError::fatal(
                "E_UNAUTHORIZED",
                format!(
                    "AUTH failed for {cmd} on {} {}",
                    go_quote(topic.as_bytes()),
                    go_quote(channel.as_bytes())
                ),
            ))
        }
    }
}
