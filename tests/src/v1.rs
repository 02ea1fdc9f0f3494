//! What every answer of the daemons' V1 HTTP API looks like, as upstream's
//! `http_api.V1` writes it: the `X-NSQ-Content-Type: nsq; version=1.0`
//! header, errors as `{"message":"..."}` JSON, and no Content-Type on an
//! empty success.

use crate::Reply;

/// The header that marks a V1 answer, and its value.
pub const NSQ_HEADER: &str = "x-nsq-content-type";
pub const NSQ_HEADER_VALUE: &str = "nsq; version=1.0";
pub const JSON: &str = "application/json; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A V1 error: `status`, the NSQ header, JSON, and `{"message":...}`.
#[track_caller]
pub fn assert_v1_error(reply: &Reply, status: u16, message: &str) {
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (status, format!("{{\"message\":\"{message}\"}}").as_str()),
        "{reply:?}"
    );
    assert_v1_head(reply, Some(JSON));
}

/// A V1 success with no body: no Content-Type at all.
#[track_caller]
pub fn assert_v1_empty(reply: &Reply) {
    assert_eq!((reply.status, reply.body.as_str()), (200, ""), "{reply:?}");
    assert_v1_head(reply, None);
}

/// A V1 success carrying raw text.
#[track_caller]
pub fn assert_v1_text(reply: &Reply, body: &str) {
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, body),
        "{reply:?}"
    );
    assert_v1_head(reply, Some(TEXT));
}

/// A V1 success carrying JSON, which it returns.
#[track_caller]
pub fn assert_v1_json(reply: &Reply) -> serde_json::Value {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_v1_head(reply, Some(JSON));
    reply.json()
}

#[track_caller]
fn assert_v1_head(reply: &Reply, content_type: Option<&str>) {
    assert_eq!(
        reply.header(NSQ_HEADER),
        Some(NSQ_HEADER_VALUE),
        "{reply:?}"
    );
    assert_eq!(reply.header("content-type"), content_type, "{reply:?}");
}
