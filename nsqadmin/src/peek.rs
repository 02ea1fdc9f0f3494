//! "Peek": the next few messages of a topic, read through a channel of our
//! own (`#ephemeral`, so nsqd forgets it when we leave). Existing channels
//! are not touched: every channel gets its own copy of each message.

use crate::model::Producer;
use nsq::{Config, Consumer, Message};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize)]
pub struct Peeked {
    pub id: String,
    pub node: String,
    /// Unix nanoseconds, as nsqd stamped it.
    pub timestamp: i64,
    pub attempts: u16,
    /// The body as text (invalid UTF-8 shown with replacement characters).
    pub body: String,
    pub size: usize,
}

/// Waits up to `wait` for up to `count` messages arriving on `topic`.
pub async fn peek(
    producers: &[Producer],
    topic: &str,
    count: usize,
    wait: Duration,
) -> Result<Vec<Peeked>, String> {
    let channel = format!(
        "nsqadmin_peek_{:06}#ephemeral",
        rand::random::<u32>() % 1_000_000
    );
    let config = Config {
        max_in_flight: count.max(1) as u32,
        user_agent: format!("nsqadmin/{}", nsq_daemon::VERSION),
        ..Config::default()
    };
    let consumer = Consumer::new(topic, &channel, config).map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::channel::<Peeked>(count.max(1));
    let tx = Arc::new(tx);
    consumer
        .add_handler(move |m: Message| {
            let tx = tx.clone();
            async move {
                let body = m.body();
                let _ = tx.try_send(Peeked {
                    id: m.id().to_string(),
                    node: m.nsqd_address().to_string(),
                    timestamp: m.timestamp(),
                    attempts: m.attempts(),
                    body: String::from_utf8_lossy(body).into_owned(),
                    size: body.len(),
                });
                Ok::<(), std::convert::Infallible>(())
            }
        })
        .map_err(|e| e.to_string())?;
    let addrs: Vec<String> = producers.iter().map(Producer::tcp_address).collect();
    consumer
        .connect_to_nsqds(addrs.iter().map(String::as_str))
        .await
        .map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while seen.len() < count {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => seen.push(m),
            _ => break,
        }
    }
    consumer.stop().await;
    Ok(seen)
}
