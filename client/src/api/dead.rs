//! Dead letters, peek and per-channel settings: our additions to nsqd's HTTP
//! API (`/channel/dead`, `/channel/peek`, `/channel/config`). Upstream has no
//! such endpoints; a client that does not call them sees NSQ v1.3.

use base64::Engine;
use serde::{Deserialize, Serialize};

/// A message as `/channel/dead` and `/channel/peek` show it.
///
/// ```
/// let msg = nsq::api::ShownMessage::new(*b"0123456789abcdef", 1_700_000_000_000_000_000, 3, b"hi");
/// assert_eq!(msg.body_bytes().unwrap(), b"hi");
/// assert_eq!(msg.body_text(), Some("hi".to_string()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShownMessage {
    /// The 16 hex characters of the message ID, as in a FIN.
    pub id: String,
    /// When it was published, Unix nanoseconds.
    pub timestamp: i64,
    /// Deliveries so far.
    pub attempts: u16,
    /// The body, base64 (standard alphabet, padded).
    pub body: String,
}

impl ShownMessage {
    pub fn new(id: [u8; 16], timestamp: i64, attempts: u16, body: &[u8]) -> ShownMessage {
        ShownMessage {
            id: String::from_utf8_lossy(&id).into_owned(),
            timestamp,
            attempts,
            body: base64::engine::general_purpose::STANDARD.encode(body),
        }
    }

    pub fn body_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.body)
    }

    /// The body as text, when it is UTF-8 without control characters
    /// other than tabs and line breaks.
    pub fn body_text(&self) -> Option<String> {
        let text = String::from_utf8(self.body_bytes().ok()?).ok()?;
        let printable = text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
        printable.then_some(text)
    }
}

/// The answer of `/channel/dead` (the oldest dead letters; `total`: how many
/// the channel holds) and of `/channel/peek` (the next messages to deliver;
/// `total`: the channel's depth).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShownMessages {
    pub messages: Vec<ShownMessage>,
    pub total: u64,
}

/// The answer of `/channel/dead/requeue`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Requeued {
    pub requeued: u64,
}

/// A channel's dead-letter settings, as `/channel/config` answers them: the
/// values in force, whether set on the channel or taken from the node's flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelSettings {
    /// Deliveries before a message becomes a dead letter; 0: no limit.
    pub max_attempts: u16,
    /// Age in milliseconds past which a message is not delivered; 0: none.
    pub msg_ttl_ms: u64,
}
