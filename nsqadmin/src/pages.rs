//! The web UI: server-rendered pages (maud), one per upstream route, with a
//! little JavaScript of ours (assets/app.js) for refresh and actions.

use crate::charts;
use crate::ctx::Ctx;
use crate::history::Key;
use crate::messages::Listing;
use crate::model::{ChannelStats, ClientStats, Producer, TopicStats};
use crate::replication::unsynced;
use crate::views::{self, age, ago, Partial};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use dead_letters::{dead_letters, max_attempts, settings, ttl};
use maud::{html, Markup, PreEscaped, DOCTYPE};

mod dead_letters;
mod replication;

/// Renders the page for a matched route.
pub async fn render(ctx: &Ctx, pattern: &str) -> Response {
    let cluster = &ctx.state.cluster;
    let page = match pattern {
        "/" | "/topics" => views::all_topics(cluster)
            .await
            .map(|p| p.map(|topics| ("Topics".to_string(), topics_page(ctx, &topics)))),
        "/topics/:topic" => {
            let topic = ctx.params[0].clone();
            views::topic(cluster, &topic)
                .await
                .map(|p| p.map(|t| (topic.clone(), topic_page(ctx, &t))))
        }
        "/topics/:topic/:channel" => {
            let (topic, channel) = (ctx.params[0].clone(), ctx.params[1].clone());
            views::channel_page(cluster, &topic, &channel)
                .await
                .map(|p| {
                    p.map(|(c, dead)| {
                        (
                            format!("{topic} / {channel}"),
                            channel_page(ctx, &topic, &channel, c.as_ref(), &dead),
                        )
                    })
                })
        }
        "/nodes" => {
            let pings = cluster.last_pings().await;
            views::nodes(cluster)
                .await
                .map(|p| p.map(|nodes| ("Nodes".to_string(), nodes_page(ctx, &nodes, &pings))))
        }
        "/nodes/:node" => {
            let node = ctx.params[0].clone();
            views::node(cluster, &node)
                .await
                .map(|p| p.map(|n| (node.clone(), node_page(ctx, &node, n.as_ref()))))
        }
        "/counter" => Ok(Partial {
            data: ("Counter".to_string(), counter_page()),
            warnings: Vec::new(),
        }),
        "/lookup" => views::lookup(cluster)
            .await
            .map(|p| p.map(|l| ("Lookup".to_string(), lookup_page(ctx, &l)))),
        _ => Err("no such page".into()),
    };
    match page {
        Ok(Partial {
            data: (title, body),
            warnings,
        }) => Html(layout(ctx, &title, &warnings, body).into_string()).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page: no node answered");
            let body = html! {
                div.error {
                    h2 { "No node answered" }
                    pre { (e) }
                }
            };
            (
                StatusCode::BAD_GATEWAY,
                Html(layout(ctx, "Error", &[], body).into_string()),
            )
                .into_response()
        }
    }
}

/// Percent-encodes a path segment (topic names may hold `#`).
pub fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// 1234567 → "1,234,567".
pub fn num<N: Into<i128>>(n: N) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn rate(r: Option<f64>) -> String {
    match r {
        None => "–".into(),
        Some(r) if r >= 100.0 => format!("{r:.0}"),
        Some(r) => format!("{r:.1}"),
    }
}

fn layout(ctx: &Ctx, title: &str, warnings: &[String], body: Markup) -> Markup {
    let opts = &ctx.state.opts;
    let base = opts.prefix();
    let cluster = &ctx.state.cluster;
    let (mode, addrs) = if cluster.lookupd_mode() {
        ("nsqlookupd", cluster.lookupds())
    } else {
        ("nsqd", cluster.nsqds().to_vec())
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · nsqadmin" }
                link rel="stylesheet" href={ (base) "/static/style.css" };
                script src={ (base) "/static/app.js" } defer {}
            }
            body data-base=(base) data-admin=(ctx.is_admin())
                data-refresh=(ctx.state.history.interval.as_millis()) {
                header.bar {
                    a.brand href={ (base) "/" } { "nsq" span { "admin" } }
                    nav {
                        a href={ (base) "/topics" } { "Topics" }
                        a href={ (base) "/nodes" } { "Nodes" }
                        a href={ (base) "/counter" } { "Counter" }
                        a href={ (base) "/lookup" } { "Lookup" }
                    }
                    span.mode title=(addrs.join(", ")) { (mode) ": " (addrs.join(", ")) }
                    label.refresh {
                        input #autorefresh type="checkbox" checked;
                        " live"
                    }
                }
                div #flash {}
                main #content {
                    @if !warnings.is_empty() {
                        div.warning {
                            strong { "Some nodes did not answer; showing the rest." }
                            ul { @for w in warnings { li { (w) } } }
                        }
                    }
                    (body)
                }
                footer {
                    "nsqadmin v" (nsq_daemon::VERSION) " (rust) · history: every "
                    (nsq_daemon::flags::format_duration(ctx.state.history.interval))
                    " for " (nsq_daemon::flags::format_duration(opts.history_retention))
                }
            }
        }
    }
}

/// A button that asks, then calls the API (see app.js).
fn action(
    ctx: &Ctx,
    label: &str,
    method: &str,
    url: &str,
    body: &str,
    confirm: &str,
    after: Option<&str>,
) -> Markup {
    html! {
        @if ctx.is_admin() {
            button.action data-method=(method) data-url=(url) data-body=(body)
                data-confirm=(confirm) data-after=[after] { (label) }
        }
    }
}

/// Pause or unpause, empty and delete for a topic or channel (`what` names
/// it in the questions); after a delete the browser goes to `after`.
fn lifecycle(
    ctx: &Ctx,
    what: &str,
    api: &str,
    paused: bool,
    pause_note: &str,
    after: &str,
) -> Markup {
    html! {
        @if paused {
            (action(ctx, "Unpause", "POST", api, r#"{"action":"unpause"}"#, &format!("Unpause {what}?"), None))
        } @else {
            (action(ctx, "Pause", "POST", api, r#"{"action":"pause"}"#, &format!("Pause {what}? {pause_note}"), None))
        }
        (action(ctx, "Empty", "POST", api, r#"{"action":"empty"}"#, &format!("Empty {what}? Its queued messages are deleted."), None))
        (action(ctx, "Delete", "DELETE", api, "", &format!("Delete {what}?"), Some(after)))
    }
}

fn topics_page(ctx: &Ctx, topics: &[TopicStats]) -> Markup {
    let base = ctx.state.opts.prefix();
    let history = &ctx.state.history;
    html! {
        h1 { "Topics " span.count { (topics.len()) } }
        @if topics.is_empty() {
            p.empty { "No topics yet. Publish one with "
                code { "curl -d 'hello' 'http://127.0.0.1:4151/pub?topic=test'" } }
        } @else {
            table.stats #topics {
                thead { tr {
                    th { "Topic" } th.n { "Depth" } th.n { "Channel depth" } th.n { "In-flight" }
                    th.n { "Messages" } th.n { "msg/s" } th.n { "Channels" } th.n { "Nodes" }
                    th { "Backlog, last hour" }
                } }
                tbody {
                    @for t in topics {
                        @let key = Key::Topic(t.topic_name.clone());
                        @let channels = t.channels.as_deref().unwrap_or_default();
                        @let backlog: i64 = channels.iter().map(|c| c.depth).sum();
                        tr data-topic=(t.topic_name) {
                            td { a href={ (base) "/topics/" (enc(&t.topic_name)) } { (t.topic_name) }
                                @if t.paused { " " span.badge.paused { "paused" } } }
                            td.n.depth { (num(t.depth)) }
                            td.n.channel-depth { (num(backlog)) }
                            td.n.in-flight { (num(t.in_flight())) }
                            td.n.messages { (num(t.message_count)) }
                            td.n { (rate(history.rate(&key))) }
                            td.n { (channels.len()) }
                            td.n { (t.nodes.as_ref().map_or(0, Vec::len)) }
                            td.spark { (charts::sparkline(&history.chart(&key), 1)) }
                        }
                    }
                }
            }
        }
    }
}

fn e2e(stats: Option<&crate::model::E2eLatency>) -> Markup {
    let Some(p) = stats.and_then(|e| e.percentiles.as_ref()) else {
        return html! { "–" };
    };
    html! {
        @for q in p {
            span.e2e { "p" (q["quantile"] * 100.0) " " (ms(q["average"])) } " "
        }
    }
}

fn ms(nanos: f64) -> String {
    if nanos >= 1e9 {
        format!("{:.1}s", nanos / 1e9)
    } else {
        format!("{:.1}ms", nanos / 1e6)
    }
}

fn topic_page(ctx: &Ctx, t: &TopicStats) -> Markup {
    let base = ctx.state.opts.prefix();
    let topic = &t.topic_name;
    let api = format!("/api/topics/{}", enc(topic));
    let history = &ctx.state.history;
    let channels = t.channels.as_deref().unwrap_or_default();
    let nodes = t.nodes.as_deref().unwrap_or_default();
    html! {
        p.crumbs { a href={ (base) "/topics" } { "Topics" } " / " }
        h1 { "Topic " strong { (topic) }
            @if t.paused { " " span.badge.paused { "paused" } } }
        div.actions {
            (lifecycle(ctx, &format!("topic {topic}"), &api, t.paused,
                "Channels stop receiving new messages.", "/topics"))
        }
        @if nodes.is_empty() {
            p.empty { "No nsqd has this topic." }
        }
        div.charts {
            (charts::chart(&history.chart(&Key::Topic(topic.clone())), "Depth: topic and its channels", &[(0, "topic"), (1, "channels")], false))
            (charts::chart(&history.chart(&Key::Topic(topic.clone())), "Published, msg/s", &[(2, "msg/s")], true))
        }
        h2 { "Nodes" }
        table.stats #topic-nodes {
            thead { tr {
                th { "Node" } th { "Hostname" } th.n { "Depth" } th.n { "Memory + Disk" }
                th.n { "Messages" } th.n { "Channels" } th { "E2E latency" } th { "" }
            } }
            tbody {
                @for n in nodes {
                    tr data-node=(n.node) {
                        td { a href={ (base) "/nodes/" (enc(&n.node)) } { (n.node) } }
                        td { (n.hostname) }
                        td.n { (num(n.depth)) }
                        td.n { (num(n.memory_depth)) " + " (num(n.backend_depth)) }
                        td.n { (num(n.message_count)) }
                        td.n { (n.channels.as_ref().map_or(0, Vec::len)) }
                        td { (e2e(n.e2e_processing_latency.as_ref())) }
                        td {
                            @if n.paused { span.badge.paused { "paused" } " " }
                            @if ctx.state.cluster.lookupd_mode() {
                                (action(ctx, "Tombstone", "DELETE", &format!("/api/nodes/{}", enc(&n.node)),
                                    &serde_json::json!({"topic": topic}).to_string(),
                                    &format!("Tombstone {} for topic {topic}? lookupd stops listing it and the topic is deleted there.", n.node), None))
                            }
                        }
                    }
                }
            }
            tfoot { tr.total {
                td { "Total" } td {}
                td.n.depth { (num(t.depth)) }
                td.n { (num(t.memory_depth)) " + " (num(t.backend_depth)) }
                td.n.messages { (num(t.message_count)) }
                td.n { (channels.len()) }
                td { (e2e(t.e2e_processing_latency.as_ref())) }
                td {}
            } }
        }
        h2 { "Channels" }
        @if channels.is_empty() {
            p.empty { "No channels: messages wait in the topic until a consumer subscribes." }
        } @else {
            (channel_table(ctx, topic, channels))
        }
    }
}

fn channel_table(ctx: &Ctx, topic: &str, channels: &[ChannelStats]) -> Markup {
    let base = ctx.state.opts.prefix();
    let history = &ctx.state.history;
    html! {
        table.stats #channels {
            thead { tr {
                th { "Channel" } th.n { "Depth" } th.n { "Memory + Disk" } th.n { "In-flight" }
                th.n { "Deferred" } th.n { "Requeued" } th.n { "Timed out" } th.n { "Messages" }
                th.n { "msg/s" } th.n { "Clients" } th.n { "Dead letters" } th { "Depth, last hour" }
            } }
            tbody {
                @for c in channels {
                    @let key = Key::Channel(topic.to_string(), c.channel_name.clone());
                    tr data-channel=(c.channel_name) {
                        td { a href={ (base) "/topics/" (enc(topic)) "/" (enc(&c.channel_name)) } { (c.channel_name) }
                            @if c.paused { " " span.badge.paused { "paused" } } }
                        td.n.depth { (num(c.depth)) }
                        td.n { (num(c.memory_depth)) " + " (num(c.backend_depth)) }
                        td.n.in-flight { (num(c.in_flight_count)) }
                        td.n { (num(c.deferred_count)) }
                        td.n { (num(c.requeue_count)) }
                        td.n { (num(c.timeout_count)) }
                        td.n.messages { (num(c.message_count)) }
                        td.n { (rate(history.rate(&key))) }
                        td.n { (num(c.client_count)) }
                        td.n.dead { (num(c.dead_count)) }
                        td.spark { (charts::sparkline(&history.chart(&key), 0)) }
                    }
                }
            }
        }
    }
}

fn channel_page(
    ctx: &Ctx,
    topic: &str,
    channel: &str,
    c: Option<&ChannelStats>,
    dead: &Listing,
) -> Markup {
    let base = ctx.state.opts.prefix();
    let api = format!("/api/topics/{}/{}", enc(topic), enc(channel));
    let key = Key::Channel(topic.to_string(), channel.to_string());
    let history = &ctx.state.history;
    html! {
        p.crumbs { a href={ (base) "/topics" } { "Topics" } " / "
            a href={ (base) "/topics/" (enc(topic)) } { (topic) } " / " }
        h1 { "Channel " strong { (channel) }
            @if c.is_some_and(|c| c.paused) { " " span.badge.paused #paused { "paused" } } }
        @match c {
            None => p.empty { "No nsqd has this channel." },
            Some(c) => {
                div.actions {
                    (lifecycle(ctx, &format!("channel {channel}"), &api, c.paused,
                        "Its consumers stop getting messages.", &format!("/topics/{}", enc(topic))))
                }
                (settings(c))
                div.charts {
                    (charts::chart(&history.chart(&key), "Depth and in-flight", &[(0, "depth"), (1, "in-flight")], false))
                    (charts::chart(&history.chart(&key), "Received, msg/s", &[(2, "msg/s")], true))
                }
                h2 { "Nodes" }
                table.stats #channel-nodes {
                    thead { tr {
                        th { "Node" } th.n { "Depth" } th.n { "Memory + Disk" } th.n { "In-flight" }
                        th.n { "Deferred" } th.n { "Requeued" } th.n { "Timed out" } th.n { "Messages" }
                        th.n { "Clients" } th.n { "Dead letters" } th.n { "Expired" }
                        th.n { "Max attempts" } th.n { "TTL" } th { "E2E latency" }
                    } }
                    tbody {
                        @for n in c.nodes.as_deref().unwrap_or_default() {
                            tr data-node=(n.node) {
                                td { a href={ (base) "/nodes/" (enc(&n.node)) } { (n.node) }
                                    @if n.paused { " " span.badge.paused { "paused" } } }
                                td.n { (num(n.depth)) }
                                td.n { (num(n.memory_depth)) " + " (num(n.backend_depth)) }
                                td.n { (num(n.in_flight_count)) }
                                td.n { (num(n.deferred_count)) }
                                td.n { (num(n.requeue_count)) }
                                td.n { (num(n.timeout_count)) }
                                td.n { (num(n.message_count)) }
                                td.n { (num(n.client_count)) }
                                td.n.dead { (num(n.dead_count)) }
                                td.n.expired { (num(n.expired_count)) }
                                td.n.max-attempts { (max_attempts(n.max_attempts)) }
                                td.n.ttl { (ttl(n.msg_ttl_ms)) }
                                td { (e2e(n.e2e_processing_latency.as_ref())) }
                            }
                        }
                    }
                    tfoot { tr.total {
                        td { "Total" }
                        td.n.depth { (num(c.depth)) }
                        td.n { (num(c.memory_depth)) " + " (num(c.backend_depth)) }
                        td.n.in-flight { (num(c.in_flight_count)) }
                        td.n { (num(c.deferred_count)) }
                        td.n { (num(c.requeue_count)) }
                        td.n { (num(c.timeout_count)) }
                        td.n.messages { (num(c.message_count)) }
                        td.n { (num(c.client_count)) }
                        td.n.dead { (num(c.dead_count)) }
                        td.n.expired { (num(c.expired_count)) }
                        td {} td {}
                        td { (e2e(c.e2e_processing_latency.as_ref())) }
                    } }
                }
                (dead_letters(ctx, topic, channel, c, dead))
                h2 { "Next messages" }
                div.actions {
                    button.peek data-topic=(topic) data-channel=(channel)
                        title="shows the next messages each nsqd would deliver, without taking them"
                        { "Peek" }
                }
                div #peek {}
                h2 { "Clients" }
                (clients_table(c.clients.as_deref().unwrap_or_default()))
            }
        }
    }
}

fn clients_table(clients: &[ClientStats]) -> Markup {
    html! {
        @if clients.is_empty() {
            p.empty { "No consumers connected." }
        } @else {
            table.stats #clients {
                thead { tr {
                    th { "Client host" } th { "Client ID" } th { "User agent" } th { "Node" }
                    th { "Attributes" } th.n { "Ready" } th.n { "In-flight" } th.n { "Finished" }
                    th.n { "Requeued" } th.n { "Messages" } th { "Connected" }
                } }
                tbody {
                    @for c in clients {
                        tr data-client=(c.remote_address) {
                            td { (c.hostname) br; small { (c.remote_address) } }
                            td { (c.client_id) }
                            td { (c.user_agent) }
                            td { (c.node) }
                            td {
                                span.badge { (c.version) }
                                @if c.tls { " " span.badge.tls title=(format!("{} {}", c.tls_version, c.tls_cipher_suite)) { "TLS" } }
                                @if c.snappy { " " span.badge { "snappy" } }
                                @if c.deflate { " " span.badge { "deflate" } }
                                @if c.sample_rate > 0 { " " span.badge { "sampled " (c.sample_rate) "%" } }
                                @if c.authed { " " span.badge title=(c.auth_identity_url) { "authed: " (c.auth_identity) } }
                            }
                            td.n { (num(c.ready_count)) }
                            td.n { (num(c.in_flight_count)) }
                            td.n { (num(c.finish_count)) }
                            td.n { (num(c.requeue_count)) }
                            td.n { (num(c.message_count)) }
                            td { (ago(age(c.connect_ts))) }
                        }
                    }
                }
            }
        }
    }
}

fn nodes_page(
    ctx: &Ctx,
    nodes: &[Producer],
    pings: &std::collections::BTreeMap<String, i64>,
) -> Markup {
    let base = ctx.state.opts.prefix();
    html! {
        h1 { "Nodes " span.count { (nodes.len()) } }
        table.stats #nodes {
            thead { tr {
                th { "Hostname" } th { "Broadcast address" } th.n { "TCP" } th.n { "HTTP" }
                th { "Version" } th.n { "Topics" } th { "lookupd connections" } th { "Last ping" }
            } }
            tbody {
                @for n in nodes {
                    tr data-node=(n.http_address()) {
                        td { a href={ (base) "/nodes/" (enc(&n.http_address())) } { (n.hostname) }
                            (replication::degraded_badge(&n.unsynced_peers)) }
                        td { (n.broadcast_address) }
                        td.n { (n.tcp_port) }
                        td.n { (n.http_port) }
                        td { (n.version) @if n.out_of_date { " " span.badge.paused title="older than the newest nsqd in the cluster" { "out of date" } } }
                        td.n { (n.topics.len()) }
                        td { @for r in n.remote_addresses.iter().flatten() { div { small { (r) } } } }
                        td { @match pings.get(&n.http_address()) {
                            Some(ns) => { (ago(age(ns / 1_000_000_000))) " ago" },
                            None => "–",
                        } }
                    }
                }
            }
        }
    }
}

fn node_page(ctx: &Ctx, node: &str, view: Option<&views::NodeView>) -> Markup {
    let base = ctx.state.opts.prefix();
    html! {
        p.crumbs { a href={ (base) "/nodes" } { "Nodes" } " / " }
        h1 { "Node " strong { (node) }
            @if let Some(v) = view { (replication::degraded_badge(&unsynced(&v.peers))) } }
        @match view {
            None => p.empty { "No such nsqd in the cluster." },
            Some(v) => {
                p.summary {
                    (v.producer.hostname) " · version " (v.producer.version)
                    " · TCP " (v.producer.tcp_port) " · HTTP " (v.producer.http_port)
                    " · " strong { (num(v.total_messages)) } " messages · "
                    strong { (v.total_clients) } " clients"
                }
                (replication::section(ctx, v))
                @for t in &v.topics {
                    h2 { a href={ (base) "/topics/" (enc(&t.topic_name)) } { (t.topic_name) }
                        small { " depth " (num(t.depth)) " · " (num(t.message_count)) " messages" }
                        @if t.paused { " " span.badge.paused { "paused" } } }
                    @let channels = t.channels.as_deref().unwrap_or_default();
                    @if channels.is_empty() { p.empty { "No channels." } }
                    @else { (channel_table(ctx, &t.topic_name, channels)) }
                }
            }
        }
    }
}

fn lookup_page(ctx: &Ctx, topics: &[views::LookupTopic]) -> Markup {
    let base = ctx.state.opts.prefix();
    let lookupd = ctx.state.cluster.lookupd_mode();
    html! {
        h1 { "Lookup" }
        @if !lookupd {
            p.empty { "nsqadmin watches nsqd directly (--nsqd-http-address); there is no lookupd to show." }
        } @else {
            @if ctx.is_admin() {
                form.create #create data-url="/api/topics" {
                    "Create in lookupd: "
                    input name="topic" placeholder="topic" required;
                    input name="channel" placeholder="channel (optional)";
                    button type="submit" { "Create" }
                }
            }
            table.stats #lookup {
                thead { tr { th { "Topic" } th { "Channels" } th.n { "Producers" } } }
                tbody {
                    @for t in topics {
                        tr data-topic=(t.topic) {
                            td { a href={ (base) "/topics/" (enc(&t.topic)) } { (t.topic) }
                                @if t.producers == 0 { " " span.badge.paused title="registered in lookupd but no nsqd has it" { "inactive" } } }
                            td { (t.channels.join(", ")) }
                            td.n { (t.producers) }
                        }
                    }
                }
            }
        }
    }
}

fn counter_page() -> Markup {
    html! {
        h1 { "Messages processed" }
        div.counter #counter data-url="/api/counter" { "…" }
        p.counter-rate #counter-rate { (PreEscaped("&nbsp;")) }
        p.empty { "Total of every channel's message count across the cluster, live." }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(num(0u64), "0");
        assert_eq!(num(1234567u64), "1,234,567");
        assert_eq!(num(-1000i64), "-1,000");
        assert_eq!(enc("a#ephemeral"), "a%23ephemeral");
        assert_eq!(enc("127.0.0.1:4151"), "127.0.0.1:4151");
    }
}
