//! The channel page's dead letters: the settings that make them, their
//! count, the oldest few with the buttons that requeue or drop them.

use super::{action, enc, num};
use crate::ctx::Ctx;
use crate::messages::Listing;
use crate::model::ChannelStats;
use crate::views::ago;
use maud::{html, Markup};

pub(super) fn max_attempts(n: u16) -> String {
    if n == 0 {
        "no limit".into()
    } else {
        num(n)
    }
}

pub(super) fn ttl(ms: u64) -> String {
    if ms == 0 {
        "none".into()
    } else {
        nsq_daemon::flags::format_duration(std::time::Duration::from_millis(ms))
    }
}

/// The dead-letter settings in force: one line when every node agrees,
/// else a pointer to the nodes' table.
pub(super) fn settings(c: &ChannelStats) -> Markup {
    let nodes = c.nodes.as_deref().unwrap_or_default();
    let agree = nodes
        .iter()
        .all(|n| (n.max_attempts, n.msg_ttl_ms) == (c.max_attempts, c.msg_ttl_ms));
    html! {
        p.summary #settings {
            "Dead letters " strong #dead-count { (num(c.dead_count)) }
            " · expired " strong #expired-count { (num(c.expired_count)) }
            @if agree {
                " · max attempts " strong #max-attempts { (max_attempts(c.max_attempts)) }
                " · TTL " strong #ttl { (ttl(c.msg_ttl_ms)) }
            } @else {
                " · max attempts and TTL differ between nodes (see below)"
            }
        }
    }
}

pub(super) fn dead_letters(
    ctx: &Ctx,
    topic: &str,
    channel: &str,
    c: &ChannelStats,
    dead: &Listing,
) -> Markup {
    let api = format!("/api/dead/{}/{}", enc(topic), enc(channel));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    html! {
        h2 { "Dead letters " span.count { (num(c.dead_count)) } }
        @if c.dead_count == 0 {
            p.empty {
                "No dead letters. A message becomes one when it was delivered max attempts times "
                "without a FIN, or outlived the TTL (nsqd's --max-attempts and --msg-ttl, or "
                code { "/channel/config" } ")."
            }
        } @else {
            div.actions {
                (action(ctx, "Requeue all", "POST", &api, r#"{"action":"requeue"}"#,
                    &format!("Requeue all {} dead letters of channel {channel}? They go back in line with their attempts reset.", c.dead_count), None))
                (action(ctx, "Empty dead letters", "POST", &api, r#"{"action":"empty"}"#,
                    &format!("Empty the {} dead letters of channel {channel}? They are deleted.", c.dead_count), None))
            }
            @if dead.messages.len() < c.dead_count as usize {
                p.empty { "The oldest " (dead.messages.len()) " of " (num(c.dead_count)) ":" }
            }
            (message_table("dead-letters", dead, now))
        }
    }
}

/// Bodies are cut at this many characters in tables.
const BODY_SHOWN: usize = 500;

fn clip(text: &str) -> String {
    match text.char_indices().nth(BODY_SHOWN) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Messages shown from a channel: dead letters here, peeked ones in app.js
/// (which draws the same columns).
fn message_table(id: &str, listing: &Listing, now_ns: i64) -> Markup {
    html! {
        table.stats.messages id=(id) {
            thead { tr {
                th { "Node" } th { "ID" } th.n { "Attempts" } th.n { "Age" } th { "Body" }
            } }
            tbody {
                @for m in &listing.messages {
                    tr data-id=(m.id) {
                        td { (m.node) }
                        td { code { (m.id) } }
                        td.n.attempts { (m.attempts) }
                        td.n { (ago((now_ns - m.timestamp).max(0) / 1_000_000_000)) }
                        td.body { @match &m.text {
                            Some(text) => pre { (clip(text)) },
                            None => span.badge.binary { "binary, " (num(m.size as u64)) " bytes" },
                        } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_bodies_as_shown() {
        assert_eq!(max_attempts(0), "no limit");
        assert_eq!(max_attempts(3), "3");
        assert_eq!(ttl(0), "none");
        assert_eq!(ttl(90_000), "1m30s");
        assert_eq!(clip("short"), "short");
        assert_eq!(clip(&"é".repeat(600)), format!("{}…", "é".repeat(500)));
    }
}
