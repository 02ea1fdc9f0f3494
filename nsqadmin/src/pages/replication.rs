//! The node page's replication section (ours, #18): the node's links to
//! its `--replicate-to` peers and the replicas it keeps for other nsqds,
//! with the failover buttons; and the "degraded" badge of a node whose
//! links are not all in sync.

use super::{action, enc, num};
use crate::ctx::Ctx;
use crate::replication::{forgettable, origin_key, promotable, retirable, Unsynced};
use crate::views::{age, ago, NodeView};
use maud::{html, Markup};
use nsq::api::{PeerStats, ReplicaStats};
use std::time::Duration;

/// Marks a node with links not in sync; the title says which.
pub(super) fn degraded_badge(unsynced: &[Unsynced]) -> Markup {
    let links: Vec<String> = unsynced
        .iter()
        .map(|u| format!("{} {}", u.address, u.state))
        .collect();
    html! {
        @if !unsynced.is_empty() {
            " " span.badge.degraded title={ "replication not in sync: " (links.join(", ")) } { "degraded" }
        }
    }
}

/// The section, when the node has links or replicas.
pub(super) fn section(ctx: &Ctx, v: &NodeView) -> Markup {
    html! {
        @if !v.peers.is_empty() || !v.replicas.is_empty() {
            section #replication {
                h2 { "Replication" }
                @if !v.peers.is_empty() { (peers_table(ctx, &v.node, &v.peers)) }
                @if !v.replicas.is_empty() { (replicas_table(ctx, &v.node, &v.replicas)) }
            }
        }
    }
}

fn millis(ms: u64) -> String {
    nsq_daemon::flags::format_duration(Duration::from_millis(ms))
}

/// `synced` reads as healthy, a link on its way there as a warning, the
/// rest as trouble.
fn state_class(state: &str) -> &'static str {
    match state {
        "synced" => "badge synced",
        "connecting" | "catching_up" => "badge paused",
        _ => "badge degraded",
    }
}

fn peers_table(ctx: &Ctx, node: &str, peers: &[PeerStats]) -> Markup {
    let api = format!("/api/nodes/{}", enc(node));
    html! {
        p.summary { "Peers: this nsqd's log-mode topics are stored on each before a publish is acknowledged, while the link is synced." }
        table.stats #peers {
            thead { tr {
                th { "Peer" } th { "State" } th { "Connected" } th.n { "Backlog" }
                th.n { "Progress lag" } th { "Last error" } th { "" }
            } }
            tbody {
                @for p in peers {
                    tr data-peer=(p.address) data-state=(p.state) {
                        td { (p.address) }
                        td.state { span class=(state_class(&p.state)) { (p.state) }
                            " " small { "for " (millis(p.since_ms)) } }
                        td.connected { (yes_no(p.connected)) }
                        td.n.backlog { (num(p.backlog_messages)) }
                        td.n.lag { (millis(p.progress_lag_ms)) }
                        td.last-error { small { (p.last_error) } }
                        td { @if retirable(p) {
                            (action(ctx, "Retire", "POST", &api,
                                &serde_json::json!({"action": "retire", "peer": p.address}).to_string(),
                                &retire_question(&p.address),
                                None))
                        } }
                    }
                }
            }
        }
    }
}

fn replicas_table(ctx: &Ctx, node: &str, replicas: &[ReplicaStats]) -> Markup {
    let api = format!("/api/nodes/{}", enc(node));
    html! {
        p.summary { "Replicas: kept here for other nsqds, not delivered until promoted." }
        table.stats #replicas {
            thead { tr {
                th { "Origin" } th { "Connected" } th.n { "Depth" } th.n { "Lag" }
                th { "Promoted at" } th { "" }
            } }
            tbody {
                @for r in replicas {
                    tr data-origin=(r.origin) data-connected=(r.connected) {
                        td { (r.origin) @if !r.hostname.is_empty() { br; small { (r.hostname) } } }
                        td.connected { (yes_no(r.connected)) " "
                            small title="since the link started (connected) or ended" { "for " (ago(age(r.last_seen))) } }
                        td.n.depth { (num(r.depth)) }
                        td.n.lag { @match r.lag_ms { Some(ms) => (millis(ms)), None => "–" } }
                        td.promoted { @match r.promoted_at.and_then(utc) { Some(at) => (at), None => "–" } }
                        td {
                            @if promotable(r) {
                                (action(ctx, "Promote", "POST", &api,
                                    &serde_json::json!({"action": "promote", "origin": origin_key(r)}).to_string(),
                                    &promote_question(node, r), None))
                            }
                            @if forgettable(r) {
                                " "
                                (action(ctx, "Forget", "POST", &api,
                                    &serde_json::json!({"action": "forget", "origin": origin_key(r)}).to_string(),
                                    &forget_question(node, r), None))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the operator confirms: what moves where, and what it costs the origin.
fn promote_question(node: &str, r: &ReplicaStats) -> String {
    let topics: Vec<&str> = r.topics.iter().map(|t| t.topic_name.as_str()).collect();
    format!(
        "Promote the replicas of {} on {node}? Its {} unfinished messages (topics: {}) become \
         this nsqd's own and are delivered from here. {} is fenced: when it returns, it \
         replicates again only after it retires its copy (or this node forgets it).",
        r.origin,
        num(r.depth),
        if topics.is_empty() {
            "none".to_string()
        } else {
            topics.join(", ")
        },
        r.origin
    )
}

fn forget_question(node: &str, r: &ReplicaStats) -> String {
    match r.promoted_at {
        Some(_) => format!(
            "Forget {} on {node}? Its fence goes: when it returns it replicates here anew \
             without retiring its copy, so the messages this node took over at the promotion \
             are delivered by both.",
            r.origin
        ),
        None => format!(
            "Forget the replicas of {} on {node}? Its {} unfinished messages kept here are \
             dropped: if {} is lost for good, they are lost with it. When it returns it \
             replicates here anew.",
            r.origin,
            num(r.depth),
            r.origin
        ),
    }
}

fn retire_question(peer: &str) -> String {
    format!(
        "Retire this nsqd's copy of what {peer} took over? {peer} promoted its replicas of \
         this node: every channel here passes the messages it took (those published here \
         since stay), then this node replicates to {peer} anew."
    )
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Unix ms as `2026-12-01 10:22:33 UTC`.
fn utc(ms: u64) -> Option<String> {
    let at = chrono::DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)?;
    Some(at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_states_as_shown() {
        assert_eq!(
            utc(1_795_311_805_000).as_deref(),
            Some("2026-11-22 01:43:25 UTC")
        );
        assert_eq!(millis(0), "0s");
        assert_eq!(millis(1_250), "1.25s");
        assert_eq!(state_class("synced"), "badge synced");
        assert_eq!(state_class("catching_up"), "badge paused");
        assert_eq!(state_class("fenced"), "badge degraded");
    }
}
