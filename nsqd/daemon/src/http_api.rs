//! The HTTP conventions NSQ's daemons share, as upstream's `http_api` package
//! and httprouter have them: "V1" answers (`X-NSQ-Content-Type`, raw text or
//! JSON, `{"message": ...}` errors), query parameters read like Go's
//! `url.ParseQuery`, and routing that answers unknown paths, wrong methods,
//! `OPTIONS`, stray trailing slashes and odd letter case the way httprouter does.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use nsq::api::{CONTENT_TYPE_HEADER, CONTENT_TYPE_VALUE};

/// A V1 answer: raw text, empty, JSON, or `{"message": ...}` with a status.
pub enum V1 {
    Text(String),
    Empty,
    /// Serialized JSON, in the field order of its type.
    Json(Vec<u8>),
    Error(StatusCode, String),
}

impl V1 {
    pub fn json<T: serde::Serialize>(value: &T) -> V1 {
        V1::Json(serde_json::to_vec(value).expect("API types serialize"))
    }
}

/// A handler's result: both arms are answers.
pub type Answer = Result<V1, V1>;

/// An error answer, `{"message":"<message>"}`.
pub fn err(status: StatusCode, message: impl Into<String>) -> V1 {
    V1::Error(status, message.into())
}

impl IntoResponse for V1 {
    fn into_response(self) -> Response {
        let (status, body, json) = match self {
            V1::Text(text) => (StatusCode::OK, text.into_bytes(), false),
            V1::Empty => (StatusCode::OK, Vec::new(), false),
            V1::Json(body) => (StatusCode::OK, body, true),
            V1::Error(status, message) => (
                status,
                serde_json::to_vec(&serde_json::json!({ "message": message }))
                    .expect("string serializes"),
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

pub const GET: &[Method] = &[Method::GET];
pub const POST: &[Method] = &[Method::POST];
pub const PUT: &[Method] = &[Method::PUT];
pub const DELETE: &[Method] = &[Method::DELETE];
pub const GET_PUT: &[Method] = &[Method::GET, Method::PUT];
pub const GET_POST: &[Method] = &[Method::GET, Method::POST];

/// A route: a path whose `:name` segments match any non-empty segment.
pub type Route = (&'static str, &'static [Method]);

/// A request matched to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The route's pattern, e.g. `/config/:opt`.
    pub pattern: &'static str,
    /// The decoded path.
    pub path: String,
    /// Values of the `:name` segments, in order.
    pub params: Vec<String>,
}

/// Matches a request against `routes` the way httprouter does, or gives the
/// answer for a request that matches none: 400 for a bad path escape, a
/// redirect, 200 to `OPTIONS` or 405 (with `Allow`), or 404 `NOT_FOUND`.
pub fn resolve(
    routes: &[Route],
    method: &Method,
    raw_path: &str,
    query: &str,
) -> Result<Matched, Box<Response>> {
    // Handlers see the decoded path, as Go's `URL.Path`; a bad escape there
    // is refused by Go's server before any handler runs.
    let Some(path) = unescape_path(raw_path) else {
        let bad_request = (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "400 Bad Request",
        );
        return Err(Box::new(bad_request.into_response()));
    };
    let found = routes.iter().find_map(|(pattern, methods)| {
        match_pattern(pattern, &path, false).map(|params| (*pattern, *methods, params))
    });
    if let Some((pattern, methods, params)) = &found {
        if methods.contains(method) {
            return Ok(Matched {
                pattern,
                path,
                params: params.clone(),
            });
        }
    }
    if let Some(fixed) = redirect_target(routes, &path, method) {
        return Err(Box::new(redirect(method, &fixed, query)));
    }
    Err(Box::new(match found {
        Some((_, methods, _)) => not_allowed(method, methods),
        None => err(StatusCode::NOT_FOUND, "NOT_FOUND").into_response(),
    }))
}

/// The `:name` values if `path` fits `pattern`; literal segments compare
/// ignoring ASCII case when `fold_case`.
fn match_pattern(pattern: &str, path: &str, fold_case: bool) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(h)) if w.starts_with(':') => {
                if h.is_empty() {
                    return None;
                }
                params.push(h.to_string());
            }
            (Some(w), Some(h)) if w == h || (fold_case && w.eq_ignore_ascii_case(h)) => {}
            _ => return None,
        }
    }
}

/// Rebuilds a path from `pattern` with the given parameter values.
fn fill_pattern(pattern: &str, params: &[String]) -> String {
    let mut values = params.iter();
    pattern
        .split('/')
        .map(|segment| {
            if segment.starts_with(':') {
                values.next().map_or("", |v| v.as_str())
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
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
    names.dedup();
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
fn redirect_target(routes: &[Route], path: &str, method: &Method) -> Option<String> {
    let serves = |p: &str| {
        routes
            .iter()
            .any(|(pattern, m)| m.contains(method) && match_pattern(pattern, p, false).is_some())
    };
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
    routes
        .iter()
        .filter(|(_, m)| m.contains(method))
        .find_map(|(pattern, _)| {
            match_pattern(pattern, candidate, true).map(|params| fill_pattern(pattern, &params))
        })
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
#[derive(Debug, Clone, Default)]
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

    /// Every value of a repeated parameter.
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Upstream's boolean parameters: true/1/false/0, anything else is `default`.
    pub fn flag(&self, key: &str, default: bool) -> bool {
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
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// `GET /config/:opt`'s answer, from the options by config name: upstream
/// writes a string option raw and anything else as JSON; an unknown name
/// is 400 `INVALID_OPTION`.
pub fn config_option(mut options: serde_json::Map<String, serde_json::Value>, opt: &str) -> Answer {
    match options.remove(opt) {
        None => Err(err(StatusCode::BAD_REQUEST, "INVALID_OPTION")),
        Some(serde_json::Value::String(text)) => Ok(V1::Text(text)),
        Some(value) => Ok(V1::json(&value)),
    }
}

/// Reads the body through Go's `io.LimitReader(body, limit + 1)`: a result
/// longer than `limit` means the body was over it.
pub async fn read_limited(mut body: Body, limit: usize) -> Result<bytes::Bytes, V1> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"))?;
        if let Ok(data) = frame.into_data() {
            let room = limit.saturating_add(1) - buf.len();
            buf.extend_from_slice(&data[..data.len().min(room)]);
            if buf.len() > limit {
                break;
            }
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[Route] = &[
        ("/ping", GET),
        ("/topic/create", POST),
        ("/config/:opt", GET_PUT),
        ("/api/topics/:topic/:channel", GET),
    ];

    #[test]
    fn matches_parameters() {
        let m = resolve(ROUTES, &Method::GET, "/api/topics/t1/c%231", "").expect("matches");
        assert_eq!(
            (m.pattern, m.params),
            (
                "/api/topics/:topic/:channel",
                vec!["t1".to_string(), "c#1".to_string()]
            )
        );
        assert!(resolve(ROUTES, &Method::GET, "/config/", "").is_err());
    }

    #[test]
    fn answers_like_httprouter() {
        let status = |m: Method, p: &str| resolve(ROUTES, &m, p, "").unwrap_err().status().as_u16();
        assert_eq!(status(Method::GET, "/nope"), 404);
        assert_eq!(status(Method::GET, "/topic/create"), 405);
        assert_eq!(status(Method::OPTIONS, "/topic/create"), 200);
        assert_eq!(status(Method::GET, "/ping/"), 301);
        assert_eq!(status(Method::POST, "/TOPIC/create"), 307);
        assert_eq!(status(Method::GET, "/CONFIG/x"), 301);
        let allow = resolve(ROUTES, &Method::DELETE, "/config/x", "").unwrap_err();
        assert_eq!(allow.headers()[header::ALLOW], "GET, OPTIONS, PUT");
    }

    #[test]
    fn go_query_rules() {
        let p = Params::parse("topic=a%2Bb&topic=second&x=+1").unwrap();
        assert_eq!((p.get("topic"), p.get("x")), (Some("a+b"), Some(" 1")));
        assert!(Params::parse("a=%zz").is_none());
        assert!(Params::parse("a=1;b=2").is_none());
    }
}
