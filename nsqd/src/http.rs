//! nsqd's HTTP API, path for path and error for error as upstream's.

use crate::guid::unix_nanos;
use crate::message::{Message, Run};
use crate::node::{Node, VERSION};
use crate::options::LogLevel;
use crate::queue::Item;
use crate::stats;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::{BufMut, BytesMut};
use nsq::api::{NsqdInfo, CONTENT_TYPE_HEADER, CONTENT_TYPE_VALUE};
use nsq::protocol::{is_valid_channel_name, is_valid_topic_name};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let app = Router::new().fallback(route).with_state(node.clone());
    let shutdown = node.shutdown.clone();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// A V1 answer: raw text, empty, JSON, or `{"message": ...}` with a status.
pub enum V1 {
    Text(String),
    Empty,
    /// Serialized JSON, in the field order of its type.
    Json(Vec<u8>),
    Error(StatusCode, &'static str),
}

impl IntoResponse for V1 {
    fn into_response(self) -> Response {
        let (status, body, json) = match self {
            V1::Text(text) => (StatusCode::OK, text.into_bytes(), false),
            V1::Empty => (StatusCode::OK, Vec::new(), false),
            V1::Json(body) => (StatusCode::OK, body, true),
            V1::Error(status, message) => (
                status,
                format!("{{\"message\":\"{message}\"}}").into_bytes(),
                true,
            ),
        };
        let empty = body.is_empty();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE_HEADER,
            HeaderValue::from_static(CONTENT_TYPE_VALUE),
        );
        if json {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
        } else if !empty {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        response
    }
}

impl V1 {
    pub fn json<T: serde::Serialize>(value: &T) -> V1 {
        V1::Json(serde_json::to_vec(value).expect("API types serialize"))
    }
}

type Answer = Result<V1, V1>;

fn err(status: StatusCode, message: &'static str) -> V1 {
    V1::Error(status, message)
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const GET_PUT: &[Method] = &[Method::GET, Method::PUT];

/// Every fixed path and its methods; `/config/:opt` is matched apart.
const ROUTES: &[(&str, &[Method])] = &[
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
];
const CONFIG: &str = "/config/";

/// The methods served at `path`, or `None` when no route matches.
fn route_methods(path: &str) -> Option<&'static [Method]> {
    if let Some((_, methods)) = ROUTES.iter().find(|(p, _)| *p == path) {
        return Some(methods);
    }
    path.strip_prefix(CONFIG)
        .filter(|opt| !opt.is_empty() && !opt.contains('/'))
        .map(|_| GET_PUT)
}

async fn route(State(node): State<Arc<Node>>, req: Request) -> Response {
    // Handlers see the decoded path, as Go's `URL.Path`; a bad escape there
    // is refused by Go's server before any handler runs.
    let Some(path) = unescape_path(req.uri().path()) else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "400 Bad Request",
        )
            .into_response();
    };
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    match route_methods(&path) {
        Some(allowed) if allowed.contains(&method) => {}
        allowed => {
            if let Some(fixed) = redirect_target(&path, &method) {
                return redirect(&method, &fixed, &query);
            }
            let Some(allowed) = allowed else {
                return err(StatusCode::NOT_FOUND, "NOT_FOUND").into_response();
            };
            return not_allowed(&method, allowed);
        }
    }
    if path == "/ping" {
        return ping(&node);
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
            _ => config(&node, &path[CONFIG.len()..], &method, body).await,
        }
    };
    match answer.await {
        Ok(v) | Err(v) => v.into_response(),
    }
}

/// httprouter's answer when the path exists for other methods: OPTIONS gets
/// an empty 200, anything else 405; both list the methods in `Allow`.
fn not_allowed(method: &Method, allowed: &[Method]) -> Response {
    let mut names: Vec<&str> = allowed
        .iter()
        .map(Method::as_str)
        .chain(["OPTIONS"])
        .collect();
    names.sort_unstable();
    let allow = HeaderValue::from_str(&names.join(", ")).expect("ASCII method names");
    let mut response = if method == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        err(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").into_response()
    };
    response.headers_mut().insert(header::ALLOW, allow);
    response
}

/// httprouter's RedirectTrailingSlash and RedirectFixedPath: where `path`
/// names a route of `method` but for a trailing slash, letter case, or `.`,
/// `..` and `//` segments, the route's path.
fn redirect_target(path: &str, method: &Method) -> Option<String> {
    let serves = |p: &str| route_methods(p).is_some_and(|m| m.contains(method));
    if let Some(stripped) = path.strip_suffix('/').filter(|p| !p.is_empty()) {
        if serves(stripped) {
            return Some(stripped.to_string());
        }
    }
    if path == "/" {
        return None;
    }
    let clean = clean_path(path);
    let candidate = clean
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(&clean);
    let fixed = match ROUTES
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(candidate))
    {
        Some((p, _)) => p.to_string(),
        None => {
            let head = candidate.get(..CONFIG.len())?;
            if !head.eq_ignore_ascii_case(CONFIG) {
                return None;
            }
            format!("{CONFIG}{}", &candidate[CONFIG.len()..])
        }
    };
    serves(&fixed).then_some(fixed)
}

/// Go's `http.Redirect`: 301 for GET, 307 (same method again) otherwise.
fn redirect(method: &Method, path: &str, query: &str) -> Response {
    let mut location = escape_path(path);
    if !query.is_empty() {
        location = format!("{location}?{query}");
    }
    let (status, body) = if method == Method::GET {
        let href = location
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;");
        (
            StatusCode::MOVED_PERMANENTLY,
            format!("<a href=\"{href}\">Moved Permanently</a>.\n\n"),
        )
    } else {
        (StatusCode::TEMPORARY_REDIRECT, String::new())
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    if method == Method::GET {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// Go's `path.Clean` for a rooted path, keeping a trailing slash as
/// httprouter's `CleanPath` does.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut clean = format!("/{}", parts.join("/"));
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if trailing && clean.len() > 1 {
        clean.push('/');
    }
    clean
}

/// Percent-escapes what Go's `URL.EscapedPath` would.
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Query parameters as Go's `url.ParseQuery` reads them; the first value wins.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// `None` for a malformed escape, which upstream answers with `INVALID_REQUEST`.
    pub fn parse(query: &str) -> Option<Params> {
        let mut pairs = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            if part.contains(';') {
                return None;
            }
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((unescape(key)?, unescape(value)?));
        }
        Some(Params(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Upstream's boolean parameters: true/1/false/0, anything else is `default`.
    fn flag(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            _ => default,
        }
    }
}

/// Go's `url.QueryUnescape`: `+` is a space and `%` takes two hex digits.
/// Go accepts any bytes; ours become U+FFFD, which no name allows either.
fn unescape(text: &str) -> Option<String> {
    percent_decode(text, true).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Go's `url.PathUnescape`: as [`unescape`], but `+` stays itself.
fn unescape_path(text: &str) -> Option<String> {
    percent_decode(text, false).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn percent_decode(text: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
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
        http_port: node.http_addr.map_or(-1, |a| a.port() as i32),
        tcp_port: node.tcp_addr.port() as i32,
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
        crate::topic::PutError::Backend(_) => {
            err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
        }
    }
}

/// `?topic=` of an existing topic and a valid `?channel=` (the `/channel/*` endpoints).
fn existing_topic_and_channel_arg<'p>(
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

/// Reads the body through Go's `io.LimitReader(body, limit + 1)`: a result
/// longer than `limit` means the body was over it.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, V1> {
    use http_body_util::BodyExt;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"))?;
        if let Ok(data) = frame.into_data() {
            let room = limit + 1 - buf.len();
            buf.extend_from_slice(&data[..data.len().min(room)]);
            if buf.len() > limit {
                break;
            }
        }
    }
    Ok(buf.freeze())
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
    node.publish(&topic.name, item, len).map_err(put_error)?;
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

/// Upstream's `lg.ParseLogLevel`: case-insensitive, with no trimming, so
/// `"debug\n"` is refused.
fn parse_log_level(value: &[u8]) -> Option<LogLevel> {
    match std::str::from_utf8(value)
        .ok()?
        .to_ascii_lowercase()
        .as_str()
    {
        "debug" => Some(LogLevel::Debug),
        "info" => Some(LogLevel::Info),
        "warn" => Some(LogLevel::Warn),
        "error" => Some(LogLevel::Error),
        "fatal" => Some(LogLevel::Fatal),
        _ => None,
    }
}

async fn config(node: &Node, opt: &str, method: &Method, body: Body) -> Answer {
    if method == Method::PUT {
        let limit = node.opts.max_msg_size as usize;
        let value = read_limited(body, limit).await?;
        if value.is_empty() || value.len() > limit {
            return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "INVALID_VALUE"));
        }
        match opt {
            "log_level" => {
                let level =
                    parse_log_level(&value).ok_or(err(StatusCode::BAD_REQUEST, "INVALID_VALUE"))?;
                node.set_log_level(level);
            }
            _ => return Err(err(StatusCode::BAD_REQUEST, "INVALID_OPTION")),
        }
    }
    let mut options = node.opts.to_cfg_map();
    options.insert(
        "log_level".into(),
        serde_json::json!(node.log_level() as i32),
    );
    match options.remove(opt) {
        None => Err(err(StatusCode::BAD_REQUEST, "INVALID_OPTION")),
        // Upstream writes string options raw and everything else as JSON.
        Some(serde_json::Value::String(text)) => Ok(V1::Text(text)),
        Some(value) => Ok(V1::json(&value)),
    }
}
