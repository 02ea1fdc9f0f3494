//! Messages shown without being consumed, gathered from every nsqd that has
//! the channel: its next ones (nsqd's `/channel/peek`) and its dead letters
//! (`/channel/dead`). Both are ours; upstream's nsqd answers them 404
//! `NOT_FOUND`, which the cluster reports in plain words.

use nsq::api::{ShownMessage, ShownMessages};
use serde::Serialize;

/// One message as nsqadmin shows it: where it is, and its body both as nsqd
/// sent it (base64) and as text when it reads as text.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    /// The nsqd that holds it, `broadcast_address:http_port`.
    pub node: String,
    pub id: String,
    /// When it was published, Unix nanoseconds.
    pub timestamp: i64,
    pub attempts: u16,
    /// Bytes of the body.
    pub size: usize,
    /// The body, base64 (standard alphabet, padded).
    pub body: String,
    /// The body when it is printable text; `null` when it is binary.
    pub text: Option<String>,
}

impl Shown {
    fn new(node: &str, m: ShownMessage) -> Shown {
        Shown {
            node: node.to_string(),
            size: m.body_bytes().map_or(0, |b| b.len()),
            text: m.body_text(),
            id: m.id,
            timestamp: m.timestamp,
            attempts: m.attempts,
            body: m.body,
        }
    }
}

/// Messages from several nodes, and how many there are in all (dead letters
/// held, or messages queued, summed over the nodes).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    pub messages: Vec<Shown>,
    pub total: u64,
}

impl Listing {
    /// Each node's next messages, node after node: the nodes' queues are
    /// independent, so there is no order across them.
    pub fn queued(answers: Vec<(String, ShownMessages)>) -> Listing {
        let mut listing = Listing::default();
        for (node, answer) in answers {
            listing.total += answer.total;
            listing
                .messages
                .extend(answer.messages.into_iter().map(|m| Shown::new(&node, m)));
        }
        listing
    }

    /// The oldest `n` dead letters over all nodes.
    pub fn oldest(answers: Vec<(String, ShownMessages)>, n: usize) -> Listing {
        let mut listing = Listing::queued(answers);
        listing
            .messages
            .sort_by(|a, b| (a.timestamp, &a.node).cmp(&(b.timestamp, &b.node)));
        listing.messages.truncate(n);
        listing
    }
}

/// What the dead-letter buttons do, on every nsqd that has the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadAction {
    /// Back to the channel's queue, attempts reset.
    Requeue,
    /// Dropped.
    Empty,
}

impl DeadAction {
    /// From `/api/dead`'s `{"action": ...}`.
    pub fn parse(action: &str) -> Option<DeadAction> {
        match action {
            "requeue" => Some(DeadAction::Requeue),
            "empty" => Some(DeadAction::Empty),
            _ => None,
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            DeadAction::Requeue => "/channel/dead/requeue",
            DeadAction::Empty => "/channel/dead/empty",
        }
    }

    /// The action's name in `--notification-http-endpoint`'s JSON.
    pub fn notification(self) -> &'static str {
        match self {
            DeadAction::Requeue => "requeue_dead_letters",
            DeadAction::Empty => "empty_dead_letters",
        }
    }
}

/// What an nsqd that lacks one of our endpoints is said to be.
pub fn unknown_endpoint(node: &str, endpoint: &str) -> String {
    format!(
        "nsqd {node} has no {endpoint}: it runs upstream's NSQ (or an older nsqd of ours), \
         which has no peek and no dead letters"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(total: u64, messages: &[(i64, &[u8])]) -> ShownMessages {
        ShownMessages {
            messages: messages
                .iter()
                .map(|(ts, body)| ShownMessage::new(*b"0123456789abcdef", *ts, 1, body))
                .collect(),
            total,
        }
    }

    #[test]
    fn dead_letters_merge_oldest_first() {
        let listing = Listing::oldest(
            vec![
                ("a:4151".into(), answer(5, &[(10, b"a10"), (30, b"a30")])),
                ("b:4151".into(), answer(2, &[(20, b"b20"), (40, b"b40")])),
            ],
            3,
        );
        assert_eq!(listing.total, 7);
        let shown: Vec<(&str, Option<&str>)> = listing
            .messages
            .iter()
            .map(|m| (m.node.as_str(), m.text.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                ("a:4151", Some("a10")),
                ("b:4151", Some("b20")),
                ("a:4151", Some("a30"))
            ]
        );
    }

    #[test]
    fn binary_bodies_have_no_text() {
        let listing = Listing::queued(vec![(
            "a:4151".into(),
            answer(2, &[(1, b"\x00\x01\xff"), (2, b"line\n")]),
        )]);
        assert_eq!(listing.messages[0].text, None);
        assert_eq!(listing.messages[0].size, 3);
        assert_eq!(listing.messages[0].body, "AAH/");
        assert_eq!(listing.messages[1].text.as_deref(), Some("line\n"));
    }
}
