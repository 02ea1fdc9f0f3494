//! nsqadmin's HTTP server: the pages, their assets, upstream's `/api` and
//! `/config` routes, all under `--base-path`, routed as httprouter does.

use crate::ctx::{Ctx, State};
use crate::messages::DeadAction;
use crate::replication::ReplicationAction;
use crate::views::{self, warning_message, Partial};
use axum::extract::{ConnectInfo, Request, State as Shared};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use nsq::protocol::{is_valid_channel_name, is_valid_topic_name};
use nsq::TopicAction;
use nsq_daemon::http_api::{config_option, err, resolve, Answer, Params, Route, GET, GET_PUT, V1};
use nsq_daemon::logging::LogLevel;
use parking_lot::Mutex;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

const GET_POST_DELETE: &[Method] = &[Method::GET, Method::POST, Method::DELETE];
const GET_POST: &[Method] = &[Method::GET, Method::POST];

const ROUTES: &[Route] = &[
    ("/ping", GET),
    ("/", GET),
    ("/topics", GET),
    ("/topics/:topic", GET),
    ("/topics/:topic/:channel", GET),
    ("/nodes", GET),
    ("/nodes/:node", GET),
    ("/counter", GET),
    ("/lookup", GET),
    ("/static/:asset", GET),
    ("/render", GET),
    ("/api/topics", GET_POST),
    ("/api/topics/:topic", GET_POST_DELETE),
    ("/api/topics/:topic/:channel", GET_POST_DELETE),
    ("/api/nodes", GET),
    ("/api/nodes/:node", GET_POST_DELETE),
    ("/api/counter", GET),
    ("/api/graphite", GET),
    ("/api/peek/:topic/:channel", GET),
    ("/api/dead/:topic/:channel", GET_POST),
    ("/config/:opt", GET_PUT),
];

pub async fn serve(state: Arc<State>, listener: TcpListener) {
    let app = Router::new().fallback(route).with_state(state.clone());
    let timeouts = state.opts.http_timeouts;
    nsq_daemon::http_server::serve("HTTP", listener, app, timeouts, state.shutdown.clone()).await
}

async fn route(
    Shared(state): Shared<Arc<State>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let raw_path = req.uri().path().to_string();
    let url = req.uri().to_string();
    let prefix = state.opts.prefix();
    let Some(path) = raw_path
        .strip_prefix(prefix)
        .filter(|p| p.is_empty() || p.starts_with('/'))
    else {
        return err(StatusCode::NOT_FOUND, "NOT_FOUND").into_response();
    };
    let path = if path.is_empty() { "/" } else { path };
    let matched = match resolve(ROUTES, &method, path, &query) {
        Ok(matched) => matched,
        Err(response) => return *response,
    };
    tracing::debug!(%method, path = matched.path, query, "HTTP request");
    let Some(params) = Params::parse(&query) else {
        return err(StatusCode::BAD_REQUEST, "INVALID_REQUEST").into_response();
    };
    let (parts, body) = req.into_parts();
    let ctx = Ctx {
        state,
        method,
        params: matched.params,
        query: params,
        headers: parts.headers,
        remote,
        url,
        body: Mutex::new(Some(body)),
    };
    match matched.pattern {
        "/ping" => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response(),
        "/static/:asset" => crate::assets::serve(ctx.param(0)),
        "/render" => graphite_proxy(&ctx).await,
        p if p.starts_with("/api/") || p.starts_with("/config/") => {
            api(ctx, p).await.into_response()
        }
        page => crate::pages::render(&ctx, page).await,
    }
}

/// A JSON answer with upstream's trailing `message` field.
#[derive(Serialize)]
struct WithMessage<T: Serialize> {
    #[serde(flatten)]
    data: T,
    message: String,
}

fn with_message<T: Serialize>(partial: Partial<T>) -> V1 {
    V1::json(&WithMessage {
        message: warning_message(&partial.warnings),
        data: partial.data,
    })
}

/// `{"<name>": ...}` with typed contents (the `json!` macro would sort fields).
#[derive(Serialize)]
struct Topics<T: Serialize> {
    topics: T,
}

#[derive(Serialize)]
struct Nodes {
    nodes: Vec<crate::model::Producer>,
}

#[derive(Serialize)]
struct Stats {
    stats: std::collections::BTreeMap<String, views::Counter>,
}

fn message_only(warnings: &[String]) -> V1 {
    V1::json(&serde_json::json!({ "message": warning_message(warnings) }))
}

/// 502 `UPSTREAM_ERROR: ...` when no node answered.
pub fn upstream(e: String) -> V1 {
    tracing::error!(error = %e, "upstream request failed");
    err(StatusCode::BAD_GATEWAY, format!("UPSTREAM_ERROR: {e}"))
}

fn log_warnings(warnings: &[String]) {
    for w in warnings {
        tracing::warn!(error = %w, "a node did not answer");
    }
}

async fn api(ctx: Ctx, pattern: &str) -> Answer {
    let cluster = ctx.state.cluster.clone();
    let mutating = ctx.method != Method::GET && !pattern.starts_with("/config/");
    if mutating && !ctx.is_admin() {
        return Err(err(StatusCode::FORBIDDEN, "FORBIDDEN"));
    }
    let answer = match (pattern, &ctx.method) {
        ("/api/topics", &Method::GET) => {
            if ctx.query.get("inactive") == Some("true") {
                if !cluster.lookupd_mode() {
                    return Ok(V1::json(&serde_json::json!({"topics": {}, "message": ""})));
                }
                views::inactive_topics(&cluster)
                    .await
                    .map(|p| with_message(p.map(|topics| Topics { topics })))
            } else {
                views::topic_names(&cluster)
                    .await
                    .map(|p| with_message(p.map(|topics| Topics { topics })))
            }
        }
        ("/api/topics", &Method::POST) => return create(&ctx).await,
        ("/api/topics/:topic", &Method::GET) => {
            views::topic(&cluster, ctx.param(0)).await.map(with_message)
        }
        ("/api/topics/:topic/:channel", &Method::GET) => {
            views::channel(&cluster, ctx.param(0), ctx.param(1))
                .await
                .map(with_message)
        }
        ("/api/topics/:topic", &Method::POST) | ("/api/topics/:topic/:channel", &Method::POST) => {
            return act(&ctx).await
        }
        ("/api/topics/:topic", &Method::DELETE)
        | ("/api/topics/:topic/:channel", &Method::DELETE) => {
            let topic = ctx.param(0).to_string();
            let channel = ctx.params.get(1).cloned();
            let failed = cluster
                .delete(&topic, channel.as_deref())
                .await
                .map_err(upstream)?;
            match &channel {
                None => ctx.notify("delete_topic", &topic, "", ""),
                Some(c) => ctx.notify("delete_channel", &topic, c, ""),
            }
            log_warnings(&failed);
            return Ok(message_only(&failed));
        }
        ("/api/nodes", _) => views::nodes(&cluster)
            .await
            .map(|p| with_message(p.map(|nodes| Nodes { nodes }))),
        ("/api/nodes/:node", &Method::GET) => {
            let p = views::node(&cluster, ctx.param(0))
                .await
                .map_err(upstream)?;
            log_warnings(&p.warnings);
            return match p.data {
                Some(data) => Ok(with_message(Partial {
                    data,
                    warnings: p.warnings,
                })),
                None => Err(err(StatusCode::NOT_FOUND, "NODE_NOT_FOUND")),
            };
        }
        ("/api/nodes/:node", &Method::POST) => return replication_action(&ctx).await,
        ("/api/nodes/:node", &Method::DELETE) => return tombstone(&ctx).await,
        ("/api/counter", _) => views::counter(&cluster)
            .await
            .map(|p| with_message(p.map(|stats| Stats { stats }))),
        ("/api/graphite", _) => return crate::graphite::rate(&ctx).await,
        ("/api/peek/:topic/:channel", _) => return peek(&ctx).await,
        ("/api/dead/:topic/:channel", &Method::GET) => return dead_letters(&ctx).await,
        ("/api/dead/:topic/:channel", &Method::POST) => return dead_letters_action(&ctx).await,
        ("/config/:opt", _) => return config(&ctx).await,
        _ => return Err(err(StatusCode::NOT_FOUND, "NOT_FOUND")),
    };
    match answer {
        Ok(v) => Ok(v),
        Err(e) => Err(upstream(e)),
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(ctx: &Ctx) -> Result<T, V1> {
    let bytes = ctx.read_body().await?;
    serde_json::from_slice(&bytes).map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn create(ctx: &Ctx) -> Answer {
    #[derive(serde::Deserialize)]
    struct Create {
        #[serde(default)]
        topic: String,
        #[serde(default)]
        channel: String,
    }
    let body: Create = json_body(ctx).await?;
    if !is_valid_topic_name(&body.topic) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_TOPIC"));
    }
    if !body.channel.is_empty() && !is_valid_channel_name(&body.channel) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_CHANNEL"));
    }
    let failed = ctx
        .state
        .cluster
        .create_topic_channel(&body.topic, &body.channel)
        .await
        .map_err(upstream)?;
    ctx.notify("create_topic", &body.topic, "", "");
    if !body.channel.is_empty() {
        ctx.notify("create_channel", &body.topic, &body.channel, "");
    }
    log_warnings(&failed);
    Ok(message_only(&failed))
}

/// `{"action": "pause" | "unpause" | "empty"}` on a topic or channel.
async fn act(ctx: &Ctx) -> Answer {
    #[derive(serde::Deserialize)]
    struct Act {
        #[serde(default)]
        action: String,
    }
    let body: Act = json_body(ctx).await?;
    let action = match body.action.as_str() {
        "pause" => TopicAction::Pause,
        "unpause" => TopicAction::Unpause,
        "empty" => TopicAction::Empty,
        _ => return Err(err(StatusCode::BAD_REQUEST, "INVALID_ACTION")),
    };
    let topic = ctx.param(0).to_string();
    let channel = ctx.params.get(1).cloned();
    let failed = ctx
        .state
        .cluster
        .act(action, &topic, channel.as_deref())
        .await
        .map_err(upstream)?;
    let what = if channel.is_some() {
        "channel"
    } else {
        "topic"
    };
    ctx.notify(
        &format!("{}_{what}", body.action),
        &topic,
        channel.as_deref().unwrap_or(""),
        "",
    );
    log_warnings(&failed);
    Ok(message_only(&failed))
}

/// `DELETE /api/nodes/:node` with `{"topic"}`: tombstone the node for the topic.
async fn tombstone(ctx: &Ctx) -> Answer {
    #[derive(serde::Deserialize)]
    struct Tombstone {
        #[serde(default)]
        topic: String,
    }
    let bytes = ctx.read_body().await?;
    let body: Tombstone =
        serde_json::from_slice(&bytes).map_err(|_| err(StatusCode::BAD_REQUEST, "INVALID_BODY"))?;
    if !is_valid_topic_name(&body.topic) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_TOPIC"));
    }
    let node = ctx.param(0).to_string();
    let failed = ctx
        .state
        .cluster
        .tombstone(&body.topic, &node)
        .await
        .map_err(upstream)?;
    ctx.notify("tombstone_topic_producer", &body.topic, "", &node);
    log_warnings(&failed);
    Ok(message_only(&failed))
}

/// Ours: `POST /api/nodes/:node` with `{"action":"promote","origin"}` or
/// `{"action":"forget","origin"}` (the node is a replication peer; the
/// origin is its address or ID) or `{"action":"retire","peer"}` (the node
/// is an old origin whose peer promoted). Answers nsqd's answer; nsqd's refusal is an upstream error.
async fn replication_action(ctx: &Ctx) -> Answer {
    #[derive(serde::Deserialize)]
    struct Act {
        #[serde(default)]
        action: String,
        #[serde(default)]
        origin: String,
        #[serde(default)]
        peer: String,
    }
    let body: Act = json_body(ctx).await?;
    let action = ReplicationAction::parse(&body.action, &body.origin, &body.peer)
        .map_err(|code| err(StatusCode::BAD_REQUEST, code))?;
    let node = ctx.param(0);
    let cluster = &ctx.state.cluster;
    // Only nsqds of the cluster are asked, never an address from the URL.
    let (producers, _) = cluster.producers().await.map_err(upstream)?;
    if !producers.iter().any(|p| p.http_address() == node) {
        return Err(err(StatusCode::NOT_FOUND, "NODE_NOT_FOUND"));
    }
    let done = cluster
        .replication_action(node, &action)
        .await
        .map_err(|e| upstream(e.to_string()))?;
    ctx.notify_replication(&action, node);
    Ok(with_message(Partial {
        data: done,
        warnings: Vec::new(),
    }))
}

/// The topic and channel of `/api/peek` and `/api/dead`, checked.
fn topic_channel(ctx: &Ctx) -> Result<(&str, &str), V1> {
    let (topic, channel) = (ctx.param(0), ctx.param(1));
    if !is_valid_topic_name(topic) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_TOPIC"));
    }
    if !is_valid_channel_name(channel) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_CHANNEL"));
    }
    Ok((topic, channel))
}

/// `count` (peek) or `n` (dead letters): 1 to 100, as nsqd's `/channel/peek` takes.
fn count(ctx: &Ctx, name: &str) -> Result<usize, V1> {
    match ctx.query.get(name) {
        None => Ok(10),
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or(err(StatusCode::BAD_REQUEST, "INVALID_COUNT")),
    }
}

/// Ours: `GET /api/peek/:topic/:channel?count=10`, the channel's next
/// messages on each nsqd, left where they are.
async fn peek(ctx: &Ctx) -> Answer {
    let (topic, channel) = topic_channel(ctx)?;
    let n = count(ctx, "count")?;
    let listing = views::peek(&ctx.state.cluster, topic, channel, n)
        .await
        .map_err(upstream)?;
    log_warnings(&listing.warnings);
    Ok(with_message(listing))
}

/// Ours: `GET /api/dead/:topic/:channel?n=10`, the channel's oldest dead
/// letters over the nsqds that have the topic.
async fn dead_letters(ctx: &Ctx) -> Answer {
    let (topic, channel) = topic_channel(ctx)?;
    let n = count(ctx, "n")?;
    let cluster = &ctx.state.cluster;
    let (producers, mut warnings) = cluster.topic_producers(topic).await.map_err(upstream)?;
    let nodes: Vec<String> = producers
        .iter()
        .map(crate::model::Producer::http_address)
        .collect();
    let listing = views::dead_letters(cluster, &nodes, topic, channel, n)
        .await
        .map_err(upstream)?;
    warnings.extend(listing.warnings);
    log_warnings(&warnings);
    Ok(with_message(Partial {
        data: listing.data,
        warnings,
    }))
}

/// Ours: `POST /api/dead/:topic/:channel` with `{"action": "requeue" | "empty"}`
/// on every nsqd that has the channel.
async fn dead_letters_action(ctx: &Ctx) -> Answer {
    #[derive(serde::Deserialize)]
    struct Act {
        #[serde(default)]
        action: String,
    }
    #[derive(Serialize)]
    struct Requeued {
        requeued: u64,
    }
    let body: Act = json_body(ctx).await?;
    let action =
        DeadAction::parse(&body.action).ok_or(err(StatusCode::BAD_REQUEST, "INVALID_ACTION"))?;
    let (topic, channel) = topic_channel(ctx)?;
    let (requeued, warnings) = ctx
        .state
        .cluster
        .dead_letters_action(action, topic, channel)
        .await
        .map_err(upstream)?;
    ctx.notify(action.notification(), topic, channel, "");
    log_warnings(&warnings);
    Ok(match action {
        DeadAction::Requeue => with_message(Partial {
            data: Requeued { requeued },
            warnings,
        }),
        DeadAction::Empty => message_only(&warnings),
    })
}

/// `GET/PUT /config/:opt`, only from `--allow-config-from-cidr`.
async fn config(ctx: &Ctx) -> Answer {
    let state = ctx.state.clone();
    let opts = &state.opts;
    if let Some(cidr) = crate::cidr::Cidr::parse(&opts.allow_config_from_cidr) {
        if !cidr.contains(ctx.remote.ip()) {
            return Err(err(StatusCode::FORBIDDEN, "FORBIDDEN"));
        }
    }
    let opt = ctx.param(0).to_string();
    if ctx.method == Method::PUT {
        let value = ctx.read_body().await?;
        if value.is_empty() || value.len() >= crate::ctx::BODY_LIMIT {
            return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "INVALID_VALUE"));
        }
        match opt.as_str() {
            "nsqlookupd_http_addresses" => {
                let addrs: Vec<String> = serde_json::from_slice(&value)
                    .map_err(|_| err(StatusCode::BAD_REQUEST, "INVALID_VALUE"))?;
                state.cluster.set_lookupds(addrs);
            }
            "log_level" => {
                let level = std::str::from_utf8(&value)
                    .ok()
                    .and_then(LogLevel::parse)
                    .ok_or(err(StatusCode::BAD_REQUEST, "INVALID_VALUE"))?;
                *state.log_level.lock() = level;
                if let Some(hook) = &state.log_level_hook {
                    hook(level);
                }
            }
            _ => return Err(err(StatusCode::BAD_REQUEST, "INVALID_OPTION")),
        }
    }
    let mut options = opts.to_cfg_map();
    options.insert(
        "nsqlookupd_http_addresses".into(),
        serde_json::json!(state.cluster.lookupds()),
    );
    options.insert(
        "nsqd_http_addresses".into(),
        serde_json::json!(state.cluster.nsqds()),
    );
    options.insert(
        "log_level".into(),
        serde_json::json!(*state.log_level.lock() as i32),
    );
    config_option(options, &opt)
}

/// `/render`, proxied to graphite with the URL's basic auth (`--proxy-graphite`).
async fn graphite_proxy(ctx: &Ctx) -> Response {
    if !ctx.state.opts.proxy_graphite {
        return err(StatusCode::NOT_FOUND, "NOT_FOUND").into_response();
    }
    crate::graphite::proxy(ctx).await
}
