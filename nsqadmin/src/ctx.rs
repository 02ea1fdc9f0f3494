//! What nsqadmin's request handlers see: the [`State`] every request shares
//! and one request as a [`Ctx`]. The server (routing), the pages and the
//! graphite proxy all use these; none of them is used here.

use crate::cluster::Cluster;
use crate::history::History;
use crate::notify::{Notifier, Requester, Target};
use crate::options::Options;
use crate::replication::ReplicationAction;
use axum::body::Body;
use axum::http::{HeaderMap, Method};
use nsq_daemon::http_api::{read_limited, Params, V1};
use nsq_daemon::logging::{LogLevel, LogLevelHook};
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Largest request body read (upstream's limit for `/config`).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every request handler shares.
pub struct State {
    pub opts: Options,
    pub cluster: Arc<Cluster>,
    pub history: Arc<History>,
    pub notifier: Option<Notifier>,
    pub log_level: Mutex<LogLevel>,
    pub log_level_hook: Option<LogLevelHook>,
    pub shutdown: CancellationToken,
}

/// A request, as handlers need it.
pub struct Ctx {
    pub state: Arc<State>,
    pub method: Method,
    pub params: Vec<String>,
    pub query: Params,
    pub headers: HeaderMap,
    pub remote: SocketAddr,
    pub url: String,
    /// Taken by the handlers that read it (a lock keeps `Ctx` shareable).
    pub body: Mutex<Option<Body>>,
}

impl Ctx {
    /// The user named by the ACL header, if any.
    pub fn user(&self) -> Option<&str> {
        self.headers
            .get(self.state.opts.acl_http_header.as_str())
            .and_then(|v| v.to_str().ok())
    }

    pub fn is_admin(&self) -> bool {
        self.state.opts.is_admin(self.user())
    }

    fn requester(&self) -> Requester {
        Requester::from_request(&self.headers, self.remote, self.url.clone())
    }

    /// Tells `--notification-http-endpoint` of an admin action.
    pub fn notify(&self, action: &str, topic: &str, channel: &str, node: &str) {
        self.notify_about(
            action,
            Target {
                topic: topic.into(),
                channel: channel.into(),
                node: node.into(),
                ..Target::default()
            },
        );
    }

    /// Tells `--notification-http-endpoint` of a replication action on `node`.
    pub fn notify_replication(&self, action: &ReplicationAction, node: &str) {
        let (origin, peer) = match action {
            ReplicationAction::Promote { origin } | ReplicationAction::Forget { origin } => {
                (origin.clone(), String::new())
            }
            ReplicationAction::Retire { peer } => (String::new(), peer.clone()),
        };
        self.notify_about(
            action.notification(),
            Target {
                node: node.into(),
                origin,
                peer,
                ..Target::default()
            },
        );
    }

    fn notify_about(&self, action: &str, target: Target) {
        if let Some(n) = &self.state.notifier {
            n.send(action, target, &self.requester());
        }
    }

    /// The request body, read up to [`BODY_LIMIT`].
    pub async fn read_body(&self) -> Result<bytes::Bytes, V1> {
        let body = self.body.lock().take().unwrap_or_default();
        read_limited(body, BODY_LIMIT).await
    }

    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }
}
