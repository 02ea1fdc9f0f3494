//! nsqd's HTTP API, path for path and error for error as upstream's.

use crate::guid::unix_nanos;
use crate::message::{Message, Run};
use crate::node::Node;
use crate::options::{LogLevel, TlsRequired};
use crate::queue::Item;
use crate::stats;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::{BufMut, BytesMut};
use nsq::api::NsqdInfo;
use nsq::protocol::{is_valid_channel_name, is_valid_topic_name};
use nsq_daemon::http_api::{
    config_option, err, read_limited, resolve, Answer, Params, Route, GET, GET_POST, GET_PUT, POST,
    V1,
};
use nsq_daemon::tcp::{Listener, LocalAddr};
use nsq_daemon::VERSION;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn serve(node: Arc<Node>, listener: Listener) {
    match listener {
        Listener::Tcp(tcp) => serve_on(node, tcp, false).await,
        Listener::Unix(unix) => serve_on(node, unix, false).await,
    }
}

/// The same API over TLS (`--https-address`).
pub async fn serve_https(node: Arc<Node>, listener: nsq_daemon::tls::HttpsListener) {
    serve_on(node, listener, true).await
}

/// What a request handler knows: the node, and whether it came over HTTPS.
#[derive(Clone)]
struct Served {
    node: Arc<Node>,
    https: bool,
}

async fn serve_on<L>(node: Arc<Node>, listener: L, https: bool)
where
    L: axum::serve::Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let app = Router::new().fallback(route).with_state(Served {
        node: node.clone(),
        https,
    });
    let name = if https { "HTTPS" } else { "HTTP" };
    let timeouts = node.opts.http_timeouts;
    nsq_daemon::http_server::serve(name, listener, app, timeouts, node.shutdown_token()).await
}

/// With `--tls-required=true`, plain HTTP refuses every request and points
/// at the HTTPS port, in upstream's words and spacing.
fn tls_required(node: &Node) -> Response {
    let port = node.https_addr.map_or(0, |a| a.port());
    let body = format!(r#"{{"message": "TLS_REQUIRED", "https_port": {port}}}"#);
    (
        StatusCode::FORBIDDEN,
        [
            (nsq::api::CONTENT_TYPE_HEADER, nsq::api::CONTENT_TYPE_VALUE),
            (
                header::CONTENT_TYPE.as_str(),
                "application/json; charset=utf-8",
            ),
        ],
        body,
    )
        .into_response()
}

const ROUTES: &[Route] = &[
    ("/ping", GET),
    ("/info", GET),
    ("/stats", GET),
    ("/pub", POST),
    ("/mpub", POST),
    ("/topic/create", POST),
    ("/topic/delete", POST),
    ("/topic/empty", POST),
    ("/topic/pause", POST),
    ("/topic/unpause", POST),
    ("/channel/create", POST),
    ("/channel/delete", POST),
    ("/channel/empty", POST),
    ("/channel/pause", POST),
    ("/channel/unpause", POST),
    ("/channel/dead", GET),
    ("/channel/dead/requeue", POST),
    ("/channel/dead/empty", POST),
    ("/channel/peek", GET),
    ("/channel/config", GET_POST),
    ("/replica/promote", POST),
    ("/replica/forget", POST),
    ("/replication/retire", POST),
    ("/config/:opt", GET_PUT),
    ("/metrics", GET),
];
const CONFIG: &str = "/config/";

async fn route(State(served): State<Served>, req: Request) -> Response {
    let node = served.node;
    if !served.https && node.opts.tls_required == TlsRequired::Yes {
        return tls_required(&node);
    }
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let path = match resolve(ROUTES, &method, req.uri().path(), &query) {
        Ok(matched) => matched.path,
        Err(response) => return *response,
    };
    if path == "/ping" {
        return ping(&node);
    }
    if path == "/metrics" {
        let format = nsq_daemon::metrics::Format::for_request(req.headers());
        let body = crate::metrics::render(&node, format);
        return ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    }
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let body = req.into_body();
    // `/info` and `/config` never look at the query; `/pub` and `/mpub`
    // check the body size first, so they parse it themselves.
    let params = || Params::parse(&query).ok_or(err(StatusCode::BAD_REQUEST, "INVALID_REQUEST"));
    let answer = async {
        match path.as_str() {
            "/info" => Ok(info(&node)),
            "/stats" => Ok(stats(&node, &params()?)),
            "/pub" => publish(&node, &query, content_length, body).await,
            "/mpub" => multi_publish(&node, &query, content_length, body).await,
            "/topic/create" => {
                topic_from_query(&node, &params()?)?;
                Ok(V1::Empty)
            }
            "/topic/delete" => {
                let params = params()?;
                let name = params
                    .get("topic")
                    .ok_or(err(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))?;
                node.delete_topic(name)
                    .then_some(V1::Empty)
                    .ok_or(err(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"))
            }
            "/topic/empty" => {
                let params = params()?;
                let name = params
                    .get("topic")
                    .ok_or(err(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))?;
                if !is_valid_topic_name(name) {
                    return Err(err(StatusCode::BAD_REQUEST, "INVALID_TOPIC"));
                }
                node.topic(name)
                    .ok_or(err(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"))?
                    .empty()
                    .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"))?;
                Ok(V1::Empty)
            }
            "/topic/pause" | "/topic/unpause" => {
                let params = params()?;
                let name = params
                    .get("topic")
                    .ok_or(err(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))?;
                let topic = node
                    .topic(name)
                    .ok_or(err(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"))?;
                if path.ends_with("unpause") {
                    topic.unpause()
                } else {
                    topic.pause()
                }
                persist_now(&node);
                Ok(V1::Empty)
            }
            "/channel/create" => {
                let params = params()?;
                let (topic, channel) = existing_topic_and_channel_arg(&node, &params)?;
                node.get_or_create_channel(&topic, channel)
                    .map_err(put_error)?;
                Ok(V1::Empty)
            }
            "/channel/delete" => {
                let params = params()?;
                let (topic, channel) = existing_topic_and_channel_arg(&node, &params)?;
                node.delete_channel(&topic, channel)
                    .then_some(V1::Empty)
                    .ok_or(err(StatusCode::NOT_FOUND, "CHANNEL_NOT_FOUND"))
            }
            "/channel/empty" | "/channel/pause" | "/channel/unpause" => {
                let params = params()?;
                let (topic, channel) = existing_topic_and_channel_arg(&node, &params)?;
                let channel = topic
                    .channel(channel)
                    .ok_or(err(StatusCode::NOT_FOUND, "CHANNEL_NOT_FOUND"))?;
                match path.as_str() {
                    "/channel/empty" => channel
                        .empty()
                        .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"))?,
                    "/channel/pause" => channel.pause(),
                    _ => channel.unpause(),
                }
                if path != "/channel/empty" {
                    persist_now(&node);
                }
                Ok(V1::Empty)
            }
            path if crate::http_replica::handles(path) => {
                crate::http_replica::answer(&node, path, &params()?).await
            }
            path if crate::http_channel::handles(path) => {
                crate::http_channel::answer(&node, path, &params()?, method == Method::POST).await
            }
            _ => config(&node, &path[CONFIG.len()..], &method, body).await,
        }
    };
    match answer.await {
        Ok(v) | Err(v) => v.into_response(),
    }
}

fn ping(node: &Node) -> Response {
    let health = node.health();
    let status = if health == "OK" {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        health,
    )
        .into_response()
}

fn info(node: &Node) -> V1 {
    let opts = &node.opts;
    let info = NsqdInfo {
        version: VERSION.into(),
        broadcast_address: opts.broadcast_address.clone(),
        hostname: crate::options::hostname(),
        // -1 for a unix socket, as upstream.
        http_port: node
            .http_addr
            .as_ref()
            .and_then(LocalAddr::port)
            .map_or(-1, i32::from),
        tcp_port: node.tcp_addr.port().map_or(-1, i32::from),
        start_time: node.start_time,
        max_heartbeat_interval: opts.max_heartbeat_interval.as_nanos() as i64,
        max_output_buffer_size: opts.max_output_buffer_size,
        max_output_buffer_timeout: opts.max_output_buffer_timeout.as_nanos() as i64,
        max_deflate_level: opts.max_deflate_level,
    };
    V1::json(&info)
}

fn stats(node: &Node, params: &Params) -> V1 {
    let topic = params.get("topic").unwrap_or("");
    let channel = params.get("channel").unwrap_or("");
    let include_clients = params.flag("include_clients", true);
    let include_mem = params.flag("include_mem", true);
    let mut stats = node.stats(topic, channel, include_clients);
    if include_mem {
        stats.memory = Some(stats::memory());
    }
    if params.get("format") == Some("json") {
        V1::json(&stats)
    } else {
        V1::Text(stats::render_text(
            &stats,
            Instant::now().duration_since(node.started_at()),
        ))
    }
}

/// The topic named by `?topic=`, created if needed (`/pub`, `/mpub`, `/topic/create`).
fn topic_from_query(node: &Node, params: &Params) -> Result<Arc<crate::topic::Topic>, V1> {
    let name = params
        .get("topic")
        .ok_or(err(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))?;
    if !is_valid_topic_name(name) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_TOPIC"));
    }
    node.get_or_create_topic(name).map_err(put_error)
}

/// Pause states are written to `nsqd.dat` before answering, as upstream does.
fn persist_now(node: &Node) {
    if let Err(e) = node.persist_metadata() {
        tracing::error!(error = %e, "failed to write nsqd.dat");
    }
}

/// A refused publish: 503 `EXITING` while the topic goes away, 500 when the
/// disk refused the write (upstream answers 503 to both).
fn put_error(e: crate::topic::PutError) -> V1 {
    match e {
        crate::topic::PutError::Exiting => err(StatusCode::SERVICE_UNAVAILABLE, "EXITING"),
        crate::topic::PutError::Unreplicated(_) => {
            err(StatusCode::SERVICE_UNAVAILABLE, "REPLICATION_UNAVAILABLE")
        }
        crate::topic::PutError::Backend(_) => {
            err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
        }
    }
}

/// `?topic=` of an existing topic and a valid `?channel=` (the `/channel/*` endpoints).
pub(crate) fn existing_topic_and_channel_arg<'p>(
    node: &Node,
    params: &'p Params,
) -> Result<(Arc<crate::topic::Topic>, &'p str), V1> {
    let topic = params
        .get("topic")
        .ok_or(err(StatusCode::BAD_REQUEST, "MISSING_ARG_TOPIC"))?;
    if !is_valid_topic_name(topic) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_ARG_TOPIC"));
    }
    let channel = params
        .get("channel")
        .ok_or(err(StatusCode::BAD_REQUEST, "MISSING_ARG_CHANNEL"))?;
    if !is_valid_channel_name(channel) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_ARG_CHANNEL"));
    }
    let topic = node
        .topic(topic)
        .ok_or(err(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND"))?;
    Ok((topic, channel))
}

async fn publish(node: &Node, query: &str, content_length: Option<u64>, body: Body) -> Answer {
    let max = node.opts.max_msg_size as usize;
    if content_length.is_some_and(|n| n > max as u64) {
        return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "MSG_TOO_BIG"));
    }
    let body = read_limited(body, max).await?;
    if body.len() > max {
        return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "MSG_TOO_BIG"));
    }
    if body.is_empty() {
        return Err(err(StatusCode::BAD_REQUEST, "MSG_EMPTY"));
    }
    let params = Params::parse(query).ok_or(err(StatusCode::BAD_REQUEST, "INVALID_REQUEST"))?;
    let topic = topic_from_query(node, &params)?;
    let mut defer = Duration::ZERO;
    if let Some(text) = params.get("defer") {
        let ms: i64 = text
            .parse()
            .map_err(|_| err(StatusCode::BAD_REQUEST, "INVALID_DEFER"))?;
        if ms < 0 || ms as u128 > node.opts.max_req_timeout.as_millis() {
            return Err(err(StatusCode::BAD_REQUEST, "INVALID_DEFER"));
        }
        defer = Duration::from_millis(ms as u64);
    }
    let len = body.len();
    let msg = Message {
        id: node.ids.reserve(1),
        timestamp: unix_nanos(),
        attempts: 0,
        body,
    };
    let item = if defer.is_zero() {
        Item::One(msg)
    } else {
        Item::Deferred(msg, Instant::now() + defer)
    };
    node.publish(&topic.name, item, len)
        .await
        .map_err(put_error)?;
    Ok(V1::Text("OK".into()))
}

async fn multi_publish(
    node: &Node,
    query: &str,
    content_length: Option<u64>,
    body: Body,
) -> Answer {
    let max_body = node.opts.max_body_size as usize;
    let max_msg = node.opts.max_msg_size as usize;
    if content_length.is_some_and(|n| n > max_body as u64) {
        return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_BIG"));
    }
    let params = Params::parse(query).ok_or(err(StatusCode::BAD_REQUEST, "INVALID_REQUEST"))?;
    let topic = topic_from_query(node, &params)?;
    let binary = match params.get("binary") {
        None => false,
        Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            tracing::warn!(
                value = other,
                "deprecated value used for /mpub binary param"
            );
            true
        }
    };
    let body = read_limited(body, max_body).await?;
    let (records, count, bytes) = if binary {
        binary_records(&body, max_msg, max_body)?
    } else {
        text_records(&body, max_msg, max_body)?
    };
    if count > 0 {
        let run = Run::new(records, count, node.ids.reserve(count as u64), unix_nanos());
        node.publish(&topic.name, Item::Run(run), bytes)
            .await
            .map_err(put_error)?;
    }
    Ok(V1::Text("OK".into()))
}

/// Text `/mpub`: one message per line, checked line by line in upstream's
/// order, so a long line before the body limit is `MSG_TOO_BIG`. `body` holds
/// at most `max_body + 1` bytes. Returns `[size: u32 BE][body]` records.
fn text_records(body: &[u8], max_msg: usize, max_body: usize) -> Result<(Bytes, u32, usize), V1> {
    let mut records = BytesMut::with_capacity(body.len() + 64);
    let (mut total, mut count, mut bytes) = (0, 0u32, 0);
    for block in body.split_inclusive(|&b| b == b'\n') {
        total += block.len();
        if total > max_body {
            return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_BIG"));
        }
        // Only the `\n` goes; a `\r` stays part of the message, as upstream's.
        let line = block.strip_suffix(b"\n").unwrap_or(block);
        if line.is_empty() {
            continue;
        }
        if line.len() > max_msg {
            return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "MSG_TOO_BIG"));
        }
        records.put_u32(line.len() as u32);
        records.put_slice(line);
        count += 1;
        bytes += line.len();
    }
    Ok((records.freeze(), count, bytes))
}

/// Binary `/mpub`: `[count: u32 BE]([size: u32 BE][body])*`; bytes after the
/// last message are ignored. Errors carry the TCP error code without its
/// `E_`, with status 413, as upstream answers. `body` holds at most
/// `max_body + 1` bytes: running out of it then means the body was too big.
fn binary_records(
    body: &Bytes,
    max_msg: usize,
    max_body: usize,
) -> Result<(Bytes, u32, usize), V1> {
    let truncated = body.len() > max_body;
    let short = |code| {
        if truncated {
            err(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_BIG")
        } else {
            err(StatusCode::PAYLOAD_TOO_LARGE, code)
        }
    };
    let bad_body = || err(StatusCode::PAYLOAD_TOO_LARGE, "BAD_BODY");
    let bad_message = || err(StatusCode::PAYLOAD_TOO_LARGE, "BAD_MESSAGE");
    let read_i32 = |pos: usize| {
        body.get(pos..pos + 4)
            .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
    };
    let count = read_i32(0).ok_or_else(|| short("BAD_BODY"))?;
    if count <= 0 || count as usize > max_body.saturating_sub(4) / 5 {
        return Err(bad_body());
    }
    let mut pos = 4;
    let mut bytes = 0;
    for _ in 0..count {
        let size = read_i32(pos).ok_or_else(|| short("BAD_MESSAGE"))?;
        if size <= 0 || size as usize > max_msg {
            return Err(bad_message());
        }
        if body.len() < pos + 4 + size as usize {
            return Err(short("BAD_MESSAGE"));
        }
        pos += 4 + size as usize;
        bytes += size as usize;
    }
    Ok((body.slice(4..pos), count as u32, bytes))
}

async fn config(node: &Arc<Node>, opt: &str, method: &Method, body: Body) -> Answer {
    if method == Method::PUT {
        let limit = node.opts.max_msg_size as usize;
        let value = read_limited(body, limit).await?;
        if value.is_empty() || value.len() > limit {
            return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "INVALID_VALUE"));
        }
        match opt {
            "log_level" => {
                let level = std::str::from_utf8(&value)
                    .ok()
                    .and_then(LogLevel::parse)
                    .ok_or(err(StatusCode::BAD_REQUEST, "INVALID_VALUE"))?;
                node.set_log_level(level);
            }
            "nsqlookupd_tcp_addresses" => {
                let addresses: Vec<String> = serde_json::from_slice(&value)
                    .map_err(|_| err(StatusCode::BAD_REQUEST, "INVALID_VALUE"))?;
                node.lookup.set_addresses(addresses);
            }
            _ => return Err(err(StatusCode::BAD_REQUEST, "INVALID_OPTION")),
        }
    }
    let mut options = node.opts.to_cfg_map();
    options.insert(
        "nsqlookupd_tcp_addresses".into(),
        serde_json::json!(node.lookup.addresses()),
    );
    options.insert(
        "log_level".into(),
        serde_json::json!(node.log_level() as i32),
    );
    config_option(options, opt)
}
