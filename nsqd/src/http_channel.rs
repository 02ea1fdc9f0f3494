//! Our additions to nsqd's `/channel/*` endpoints: dead letters, peek and a
//! channel's own dead-letter settings. Upstream has none of them; errors
//! follow its style (`TOPIC_NOT_FOUND`, `MISSING_ARG_*`, `INVALID_ARG_*`).

use crate::channel::Channel;
use crate::message::Message;
use crate::node::Node;
use axum::http::StatusCode;
use nsq::api::{ChannelSettings, Requeued, ShownMessage, ShownMessages};
use nsq_daemon::http_api::{err, Answer, Params, V1};
use std::sync::Arc;

/// `/channel/peek` shows at most this many messages.
pub const MAX_PEEK: usize = 100;
/// `/channel/dead` lists at most this many at once.
pub const MAX_DEAD_LISTED: usize = 1000;
/// How many each lists without `?n=`.
const DEFAULT_N: usize = 10;

/// The paths this module answers.
pub fn handles(path: &str) -> bool {
    matches!(
        path,
        "/channel/dead"
            | "/channel/dead/requeue"
            | "/channel/dead/empty"
            | "/channel/peek"
            | "/channel/config"
    )
}

pub async fn answer(node: &Arc<Node>, path: &str, params: &Params, post: bool) -> Answer {
    let channel = existing_channel(node, params)?;
    match path {
        "/channel/dead" => {
            let n = count_arg(params, MAX_DEAD_LISTED)?;
            let (messages, total) = blocking(move || channel.dead_letters(n)).await?;
            Ok(shown(messages, total))
        }
        "/channel/dead/requeue" => {
            let requeued = blocking(move || channel.requeue_dead()).await?;
            Ok(V1::json(&Requeued { requeued }))
        }
        "/channel/dead/empty" => {
            blocking(move || channel.empty_dead()).await?;
            Ok(V1::Empty)
        }
        "/channel/peek" => {
            let n = count_arg(params, MAX_PEEK)?;
            let peeked = channel.clone();
            let messages = blocking(move || peeked.peek(n)).await?;
            let depth = channel.depth() as u64;
            Ok(shown(messages, depth))
        }
        _ => configure(node, &channel, params, post),
    }
}

/// `/channel/config`: with `max_attempts` and/or `msg_ttl` (POST), sets the
/// channel's own values and writes them to `nsqd.dat`; answers the values
/// in force.
fn configure(node: &Node, channel: &Channel, params: &Params, post: bool) -> Answer {
    let mut overrides = channel.overrides();
    let max_attempts = params.get("max_attempts");
    let msg_ttl = params.get("msg_ttl");
    if (max_attempts.is_some() || msg_ttl.is_some()) && !post {
        return Err(err(StatusCode::METHOD_NOT_ALLOWED, "MUST_POST_TO_CHANGE"));
    }
    if let Some(text) = max_attempts {
        let n = text
            .parse::<u16>()
            .map_err(|_| err(StatusCode::BAD_REQUEST, "INVALID_ARG_MAX_ATTEMPTS"))?;
        overrides.max_attempts = Some(n);
    }
    if let Some(text) = msg_ttl {
        let ttl = nsq_daemon::flags::parse_duration(text)
            .map_err(|_| err(StatusCode::BAD_REQUEST, "INVALID_ARG_MSG_TTL"))?;
        overrides.msg_ttl = Some(ttl);
    }
    if overrides != channel.overrides() {
        channel.set_overrides(overrides);
        node.note_metadata_change(&channel.name);
        if let Err(e) = node.persist_metadata() {
            tracing::error!(error = %e, "failed to write nsqd.dat");
            return Err(err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"));
        }
    }
    let (max_attempts, ttl) = channel.limits();
    Ok(V1::json(&ChannelSettings {
        max_attempts,
        msg_ttl_ms: ttl.as_millis() as u64,
    }))
}

fn existing_channel(node: &Node, params: &Params) -> Result<Arc<Channel>, V1> {
    let (topic, channel) = crate::http::existing_topic_and_channel_arg(node, params)?;
    topic
        .channel(channel)
        .ok_or(err(StatusCode::NOT_FOUND, "CHANNEL_NOT_FOUND"))
}

/// `?n=`: how many to show, at most `max`.
fn count_arg(params: &Params, max: usize) -> Result<usize, V1> {
    let Some(text) = params.get("n") else {
        return Ok(DEFAULT_N.min(max));
    };
    match text.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(err(StatusCode::BAD_REQUEST, "INVALID_ARG_N")),
    }
}

fn shown(messages: Vec<Message>, total: u64) -> V1 {
    let messages = messages
        .iter()
        .map(|m| ShownMessage::new(m.wire_id().0, m.timestamp, m.attempts, &m.body))
        .collect();
    V1::json(&ShownMessages { messages, total })
}

/// Runs file work off the async workers; an I/O error is a 500.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, V1> {
    off_async(f).await?.map_err(|e| {
        tracing::error!(error = %e, "dead letters or peek failed");
        err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
    })
}

/// Runs blocking work off the async workers; a panic in it is a 500.
pub(crate) async fn off_async<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, V1> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"))
}
