//! nsqlookupd's HTTP API, path for path and error for error as upstream's:
//! where topics live (`/lookup`, `/topics`, `/channels`, `/nodes`), the
//! registration DB (`/debug`), and the admin actions nsqadmin uses.

use crate::registry::Registration;
use crate::state::State;
use axum::extract::{Request, State as Shared};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use nsq::api::{ChannelsResponse, LookupdInfo, TopicsResponse};
use nsq::protocol::{is_valid_channel_name, is_valid_topic_name};
use nsq_daemon::http_api::{err, resolve, Answer, Params, Route, GET, POST, V1};
use nsq_daemon::VERSION;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn serve(state: Arc<State>, listener: TcpListener) {
    serve_on(state, listener, "HTTP").await
}

/// The same API over TLS (`--https-address`, ours).
pub async fn serve_https(state: Arc<State>, listener: nsq_daemon::tls::HttpsListener) {
    serve_on(state, listener, "HTTPS").await
}

async fn serve_on<L>(state: Arc<State>, listener: L, name: &'static str)
where
    L: axum::serve::Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let app = Router::new().fallback(route).with_state(state.clone());
    let timeouts = state.opts.http_timeouts;
    nsq_daemon::http_server::serve(name, listener, app, timeouts, state.shutdown.clone()).await
}

const ROUTES: &[Route] = &[
    ("/ping", GET),
    ("/info", GET),
    ("/debug", GET),
    ("/lookup", GET),
    ("/topics", GET),
    ("/channels", GET),
    ("/nodes", GET),
    ("/topic/create", POST),
    ("/topic/delete", POST),
    ("/channel/create", POST),
    ("/channel/delete", POST),
    ("/topic/tombstone", POST),
    ("/metrics", GET),
];

async fn route(Shared(state): Shared<Arc<State>>, req: Request) -> Response {
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let path = match resolve(ROUTES, &method, req.uri().path(), &query) {
        Ok(matched) => matched.path,
        Err(response) => return *response,
    };
    tracing::debug!(%method, path, query, "HTTP request");
    if path == "/ping" {
        // Plain text, without the V1 header, as upstream.
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response();
    }
    if path == "/metrics" {
        let format = nsq_daemon::metrics::Format::for_request(req.headers());
        let body = crate::metrics::render(&state.registry, format);
        return ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    }
    let registry = &state.registry;
    let params = || Params::parse(&query).ok_or(err(StatusCode::BAD_REQUEST, "INVALID_REQUEST"));
    let answer = || -> Answer {
        match path.as_str() {
            "/info" => Ok(V1::json(&LookupdInfo {
                version: VERSION.into(),
            })),
            "/debug" => Ok(V1::json(&registry.debug())),
            "/topics" => Ok(V1::json(&TopicsResponse {
                topics: registry.topics(),
            })),
            "/nodes" => Ok(V1::json(&registry.nodes())),
            "/channels" => {
                let params = params()?;
                let topic = required(&params, "topic")?;
                Ok(V1::json(&ChannelsResponse {
                    channels: registry.channels(topic),
                }))
            }
            "/lookup" => {
                let params = params()?;
                let topic = required(&params, "topic")?;
                registry
                    .lookup(topic)
                    .map(|lookup| V1::json(&lookup))
                    .ok_or(err(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"))
            }
            "/topic/create" => {
                let params = params()?;
                let topic = required(&params, "topic")?;
                if !is_valid_topic_name(topic) {
                    return Err(err(StatusCode::BAD_REQUEST, "INVALID_ARG_TOPIC"));
                }
                tracing::info!(topic, "DB: adding topic");
                registry.add_registration(Registration::topic(topic));
                Ok(V1::Empty)
            }
            "/topic/delete" => {
                let params = params()?;
                let topic = required(&params, "topic")?;
                for registration in registry.delete_topic(topic) {
                    tracing::info!(%registration, "DB: removing registration");
                }
                Ok(V1::Empty)
            }
            "/channel/create" => {
                let params = params()?;
                let (topic, channel) = topic_and_channel(&params)?;
                tracing::info!(topic, channel, "DB: adding channel");
                registry.add_registration(Registration::channel(topic, channel));
                registry.add_registration(Registration::topic(topic));
                Ok(V1::Empty)
            }
            "/channel/delete" => {
                let params = params()?;
                let (topic, channel) = topic_and_channel(&params)?;
                if !registry.remove_registration(&Registration::channel(topic, channel)) {
                    return Err(err(StatusCode::NOT_FOUND, "CHANNEL_NOT_FOUND"));
                }
                tracing::info!(topic, channel, "DB: removed channel");
                Ok(V1::Empty)
            }
            "/topic/tombstone" => {
                let params = params()?;
                let topic = required(&params, "topic")?;
                let node = params
                    .get("node")
                    .ok_or(err(StatusCode::BAD_REQUEST, "MISSING_ARG_NODE"))?;
                let count = registry.tombstone(topic, node);
                tracing::info!(
                    topic,
                    node,
                    producers = count,
                    "DB: tombstoned producer of topic"
                );
                Ok(V1::Empty)
            }
            _ => Err(err(StatusCode::NOT_FOUND, "NOT_FOUND")),
        }
    };
    match answer() {
        Ok(v) | Err(v) => v.into_response(),
    }
}

/// A parameter that must be present (it may be empty): `MISSING_ARG_<NAME>`.
fn required<'p>(params: &'p Params, name: &str) -> Result<&'p str, V1> {
    params.get(name).ok_or_else(|| {
        err(
            StatusCode::BAD_REQUEST,
            format!("MISSING_ARG_{}", name.to_ascii_uppercase()),
        )
    })
}

/// Valid `?topic=` and `?channel=`, checked in upstream's order.
fn topic_and_channel(params: &Params) -> Result<(&str, &str), V1> {
    let topic = required(params, "topic")?;
    if !is_valid_topic_name(topic) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_ARG_TOPIC"));
    }
    let channel = required(params, "channel")?;
    if !is_valid_channel_name(channel) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_ARG_CHANNEL"));
    }
    Ok((topic, channel))
}
