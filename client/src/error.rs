//! The errors of the producer and consumer.

use crate::config::ConfigError;
use crate::protocol::FrameError;
use std::fmt;
use std::io;
use std::sync::Arc;

/// An error frame from nsqd: `<CODE> <text>`, e.g. `E_BAD_TOPIC PUB topic name "a b" is not valid`.
///
/// ```
/// let e = nsq::ProtocolError::parse(b"E_FIN_FAILED FIN 0a1b failed");
/// assert_eq!((e.code.as_str(), e.text.as_str()), ("E_FIN_FAILED", "FIN 0a1b failed"));
/// assert!(!e.is_fatal(), "the connection stays open");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// `E_INVALID`, `E_BAD_TOPIC`, `E_PUB_FAILED`, ...
    pub code: String,
    /// The rest of the frame after the code, possibly empty.
    pub text: String,
}

impl ProtocolError {
    pub fn parse(data: &[u8]) -> Self {
        let data = String::from_utf8_lossy(data);
        let (code, text) = data.split_once(' ').unwrap_or((&data, ""));
        ProtocolError {
            code: code.to_string(),
            text: text.to_string(),
        }
    }

    /// Only these leave the connection open; every other error frame means nsqd
    /// is about to close it.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self.code.as_str(),
            "E_FIN_FAILED" | "E_REQ_FAILED" | "E_TOUCH_FAILED"
        )
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            f.write_str(&self.code)
        } else {
            write!(f, "{} {}", self.code, self.text)
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Everything the producer and consumer can fail with.
///
/// ```no_run
/// # async fn run(producer: nsq::Producer) {
/// match producer.publish("events", "hello").await {
///     Ok(()) => {}
///     Err(e) if e.protocol().is_some_and(|p| p.code == "E_PUB_FAILED") => {
///         // nsqd could not take it (e.g. its disk is full): try another.
///     }
///     Err(nsq::Error::Io { addr, source }) => eprintln!("{addr}: {source}"),
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// nsqd answered with an error frame.
    #[error("nsqd: {0}")]
    Protocol(#[from] ProtocolError),
    /// The socket failed; shared because one failure fails every command that
    /// was outstanding on the connection.
    #[error("I/O error talking to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("{addr} sent a malformed frame: {source}")]
    Frame {
        addr: String,
        #[source]
        source: Arc<FrameError>,
    },
    /// nsqd broke the protocol in a way that is not a malformed frame.
    #[error("{addr}: unexpected response: {what}")]
    Unexpected { addr: String, what: String },
    /// The TLS upgrade failed: a bad setting, or the handshake itself.
    #[error("TLS with {addr}: {message}")]
    Tls { addr: String, message: String },
    #[error("{what} to {addr} timed out")]
    Timeout { addr: String, what: &'static str },
    /// The connection closed before nsqd answered.
    #[error("connection to {0} closed")]
    Closed(String),
    /// A topic name nsqd would reject; checked before sending so that a
    /// name can never smuggle protocol bytes.
    #[error("invalid topic name {0:?}")]
    InvalidTopic(String),
    /// The producer or consumer was stopped.
    #[error("stopped")]
    Stopped,
    /// A consumer is in the wrong state for the call, e.g. connecting without a handler.
    #[error("{0}")]
    Usage(&'static str),
    #[error("lookupd {addr}: {message}")]
    Lookupd { addr: String, message: String },
    /// An HTTP API call failed: the daemon's status and its `{"message":...}`
    /// (e.g. 404 `TOPIC_NOT_FOUND`), or no status when the request itself failed.
    #[error("{url}: {message}")]
    Http {
        url: String,
        status: Option<u16>,
        message: String,
    },
}

impl Error {
    pub(crate) fn io(addr: &str, source: io::Error) -> Self {
        Error::Io {
            addr: addr.to_string(),
            source: Arc::new(source),
        }
    }

    /// The error frame from nsqd, if this is one.
    pub fn protocol(&self) -> Option<&ProtocolError> {
        match self {
            Error::Protocol(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the daemon has no such endpoint: its router's 404 `NOT_FOUND`,
    /// which is how an nsqd without our additions (upstream's, or an older
    /// one of ours) answers `/channel/peek` or `/channel/dead`. A missing
    /// topic or channel is a different 404 (`TOPIC_NOT_FOUND`, ...).
    ///
    /// ```
    /// let e = nsq::Error::Http { url: "http://127.0.0.1:4151/channel/peek".into(), status: Some(404), message: "NOT_FOUND".into() };
    /// assert!(e.is_unknown_endpoint());
    /// ```
    pub fn is_unknown_endpoint(&self) -> bool {
        matches!(self, Error::Http { status: Some(404), message, .. } if message == "NOT_FOUND")
    }

    /// Whether nsqd answered 404 `TOPIC_NOT_FOUND` or `CHANNEL_NOT_FOUND`:
    /// the node does not have what was asked for.
    pub fn is_missing_topic_or_channel(&self) -> bool {
        matches!(self, Error::Http { status: Some(404), message, .. }
            if message == "TOPIC_NOT_FOUND" || message == "CHANNEL_NOT_FOUND")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_code_and_text() {
        let e = ProtocolError::parse(b"E_BAD_TOPIC PUB topic name \"a b\" is not valid");
        assert_eq!(e.code, "E_BAD_TOPIC");
        assert_eq!(e.text, "PUB topic name \"a b\" is not valid");
        assert!(e.is_fatal());
        let e = ProtocolError::parse(b"E_FIN_FAILED");
        assert_eq!((e.code.as_str(), e.text.as_str()), ("E_FIN_FAILED", ""));
        assert!(!e.is_fatal());
        assert_eq!(e.to_string(), "E_FIN_FAILED");
    }

    #[test]
    fn a_missing_endpoint_is_not_a_missing_channel() {
        let http = |status, message: &str| Error::Http {
            url: "http://127.0.0.1:4151/channel/peek".into(),
            status,
            message: message.into(),
        };
        assert!(http(Some(404), "NOT_FOUND").is_unknown_endpoint());
        assert!(!http(Some(404), "CHANNEL_NOT_FOUND").is_unknown_endpoint());
        assert!(http(Some(404), "CHANNEL_NOT_FOUND").is_missing_topic_or_channel());
        assert!(http(Some(404), "TOPIC_NOT_FOUND").is_missing_topic_or_channel());
        assert!(!http(Some(404), "NOT_FOUND").is_missing_topic_or_channel());
        assert!(!http(Some(405), "METHOD_NOT_ALLOWED").is_unknown_endpoint());
        assert!(!http(None, "NOT_FOUND").is_unknown_endpoint());
    }
}
