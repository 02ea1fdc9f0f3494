//! The statsd push (`--statsd-address`): every `--statsd-interval`, the
//! figures of `/stats` as statsd lines over UDP, with upstream's key names
//! so that existing dashboards (and nsqadmin's graphite graphs) keep working.
//!
//! Counters (`|c`) are deltas since the previous push; gauges (`|g`) are the
//! current value. Lines are packed into datagrams of at most
//! `--statsd-udp-packet-size` bytes, never split across two.

use crate::node::Node;
use nsq::api::{E2eProcessingLatency, MemStats, Stats};
use nsq::protocol::is_ephemeral;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// `--statsd-prefix` with `%s` replaced by `<broadcast address>_<http port>`
/// (dots and colons as `_`) and a trailing `.`, as upstream expands it at start.
pub fn expand_prefix(prefix: &str, broadcast_address: &str, http_port: u16) -> String {
    if prefix.is_empty() {
        return String::new();
    }
    let host = if broadcast_address.contains(':') {
        format!("[{broadcast_address}]:{http_port}")
    } else {
        format!("{broadcast_address}:{http_port}")
    };
    let mut expanded = prefix.replace("%s", &host.replace(['.', ':'], "_"));
    if !expanded.ends_with('.') {
        expanded.push('.');
    }
    expanded
}

/// Counters of one topic or channel at the previous push.
#[derive(Default, Clone, Copy)]
struct Counts {
    messages: u64,
    bytes: u64,
    requeues: u64,
    timeouts: u64,
}

/// What the previous push saw, keyed by topic and channel ("" for the topic).
#[derive(Default)]
pub struct Previous {
    counts: HashMap<(String, String), Counts>,
    gc_runs: u32,
}

/// `host:port` as one part of a key, as the prefix names this host: dots
/// and colons as `_`.
fn key_part(address: &str) -> String {
    address.replace(['.', ':'], "_")
}

/// A delta as upstream sends it: the unsigned difference read as signed, so a
/// counter that went back (a topic deleted and recreated) shows as negative.
fn delta(now: u64, before: u64) -> i64 {
    now.wrapping_sub(before) as i64
}

/// The statsd lines for one push, remembering this push's counters in `previous`.
pub fn lines(
    stats: &Stats,
    mem: Option<&MemStats>,
    exclude_ephemeral: bool,
    previous: &mut Previous,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    let counter = |out: &mut Vec<String>, key: String, value: i64| {
        out.push(format!("{key}:{value}|c"));
    };
    let gauge = |out: &mut Vec<String>, key: String, value: i64| {
        out.push(format!("{key}:{value}|g"));
    };
    let e2e = |out: &mut Vec<String>, key: &str, latency: &E2eProcessingLatency| {
        for p in latency.percentiles.iter().flatten() {
            // Nanoseconds; whole numbers are upstream's resolution too.
            let name = format!("{key}.e2e_processing_latency_{:.0}", p.quantile * 100.0);
            out.push(format!("{name}:{}|g", p.value as i64));
        }
    };
    for topic in stats.topics.iter().flatten() {
        let t = &topic.topic_name;
        if exclude_ephemeral && is_ephemeral(t) {
            continue;
        }
        let key = (t.clone(), String::new());
        let last = previous.counts.get(&key).copied().unwrap_or_default();
        let prefix = format!("topic.{t}");
        counter(
            &mut out,
            format!("{prefix}.message_count"),
            delta(topic.message_count, last.messages),
        );
        counter(
            &mut out,
            format!("{prefix}.message_bytes"),
            delta(topic.message_bytes, last.bytes),
        );
        gauge(&mut out, format!("{prefix}.depth"), topic.depth);
        gauge(
            &mut out,
            format!("{prefix}.backend_depth"),
            topic.backend_depth,
        );
        e2e(&mut out, &prefix, &topic.e2e_processing_latency);
        seen.insert(
            key,
            Counts {
                messages: topic.message_count,
                bytes: topic.message_bytes,
                ..Counts::default()
            },
        );
        for channel in &topic.channels {
            let c = &channel.channel_name;
            if exclude_ephemeral && is_ephemeral(c) {
                continue;
            }
            let key = (t.clone(), c.clone());
            let last = previous.counts.get(&key).copied().unwrap_or_default();
            let prefix = format!("topic.{t}.channel.{c}");
            counter(
                &mut out,
                format!("{prefix}.message_count"),
                delta(channel.message_count, last.messages),
            );
            gauge(&mut out, format!("{prefix}.depth"), channel.depth);
            gauge(
                &mut out,
                format!("{prefix}.backend_depth"),
                channel.backend_depth,
            );
            gauge(
                &mut out,
                format!("{prefix}.in_flight_count"),
                channel.in_flight_count,
            );
            gauge(
                &mut out,
                format!("{prefix}.deferred_count"),
                channel.deferred_count,
            );
            counter(
                &mut out,
                format!("{prefix}.requeue_count"),
                delta(channel.requeue_count, last.requeues),
            );
            counter(
                &mut out,
                format!("{prefix}.timeout_count"),
                delta(channel.timeout_count, last.timeouts),
            );
            gauge(&mut out, format!("{prefix}.clients"), channel.client_count);
            gauge(
                &mut out,
                format!("{prefix}.dead_count"),
                channel.dead_count as i64,
            );
            e2e(&mut out, &prefix, &channel.e2e_processing_latency);
            seen.insert(
                key,
                Counts {
                    messages: channel.message_count,
                    requeues: channel.requeue_count,
                    timeouts: channel.timeout_count,
                    ..Counts::default()
                },
            );
        }
    }
    previous.counts = seen;
    // Ours: replication, as /metrics has it.
    for peer in stats.peers.iter().flatten() {
        let prefix = format!("replication.peer.{}", key_part(&peer.address));
        let synced = i64::from(peer.state == "synced");
        gauge(&mut out, format!("{prefix}.synced"), synced);
        gauge(
            &mut out,
            format!("{prefix}.connected"),
            i64::from(peer.connected),
        );
        gauge(
            &mut out,
            format!("{prefix}.backlog_messages"),
            peer.backlog_messages as i64,
        );
        gauge(
            &mut out,
            format!("{prefix}.progress_lag_ms"),
            peer.progress_lag_ms as i64,
        );
    }
    for replica in stats.replicas.iter().flatten() {
        let prefix = format!("replica.{}", key_part(&replica.origin));
        gauge(
            &mut out,
            format!("{prefix}.connected"),
            i64::from(replica.connected),
        );
        gauge(&mut out, format!("{prefix}.depth"), replica.depth as i64);
        if let Some(lag) = replica.lag_ms {
            gauge(&mut out, format!("{prefix}.lag_ms"), lag as i64);
        }
    }
    if let Some(m) = mem {
        let gauges: [(&str, u64); 8] = [
            ("heap_objects", m.heap_objects),
            ("heap_idle_bytes", m.heap_idle_bytes),
            ("heap_in_use_bytes", m.heap_in_use_bytes),
            ("heap_released_bytes", m.heap_released_bytes),
            ("gc_pause_usec_100", m.gc_pause_usec_100),
            ("gc_pause_usec_99", m.gc_pause_usec_99),
            ("gc_pause_usec_95", m.gc_pause_usec_95),
            ("next_gc_bytes", m.next_gc_bytes),
        ];
        for (name, value) in gauges {
            gauge(&mut out, format!("mem.{name}"), value as i64);
        }
        let runs = i64::from(m.gc_total_runs) - i64::from(previous.gc_runs);
        counter(&mut out, "mem.gc_runs".into(), runs);
        previous.gc_runs = m.gc_total_runs;
    }
    out
}

/// Packs `prefix`ed lines into datagrams of at most `size` bytes; a line
/// longer than that goes alone, as upstream's boundary writer does.
pub fn packets(prefix: &str, lines: &[String], size: usize) -> Vec<String> {
    let mut packets = Vec::new();
    let mut packet = String::new();
    for line in lines {
        let len = prefix.len() + line.len() + 1;
        if !packet.is_empty() && packet.len() + len > size {
            packets.push(std::mem::take(&mut packet));
        }
        let _ = writeln!(packet, "{prefix}{line}");
    }
    if !packet.is_empty() {
        packets.push(packet);
    }
    packets
}

/// Pushes every `--statsd-interval` until the node shuts down.
///
/// Memory figures are [`crate::stats::memory`]: there is no Go heap or
/// garbage collector here, so `mem.heap_in_use_bytes` carries the resident
/// set and the other `mem.*` keys (and `mem.gc_runs`) are 0, sent so that
/// the key set matches upstream's.
pub async fn run(node: Arc<Node>) {
    let opts = &node.opts;
    let interval = opts.statsd_interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous = Previous::default();
    loop {
        tokio::select! {
            _ = node.stopping() => break,
            _ = ticker.tick() => {}
        }
        let stats = node.stats("", "", false);
        let mem = opts.statsd_mem_stats.then(crate::stats::memory);
        let lines = lines(
            &stats,
            mem.as_ref(),
            opts.statsd_exclude_ephemeral,
            &mut previous,
        );
        let size = opts.statsd_udp_packet_size.max(1) as usize;
        let packets = packets(&opts.statsd_prefix, &lines, size);
        tracing::debug!(address = %opts.statsd_address, packets = packets.len(), "STATSD: pushing stats");
        if let Err(e) = send(&node, &packets, interval).await {
            tracing::error!(address = %opts.statsd_address, error = %e, "STATSD: push failed");
        }
    }
    tracing::info!("STATSD: closing");
}

/// Sends the packets from a fresh socket, spread over the interval less a
/// second (all at once for intervals of a second or less), as upstream.
async fn send(node: &Node, packets: &[String], interval: Duration) -> std::io::Result<()> {
    let target: SocketAddr = tokio::net::lookup_host(&node.opts.statsd_address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("address resolves to nothing"))?;
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    let pause = interval
        .checked_sub(Duration::from_secs(1))
        .filter(|d| !d.is_zero())
        .map(|d| d / packets.len().max(1) as u32);
    for (i, packet) in packets.iter().enumerate() {
        if let (Some(pause), true) = (pause, i > 0) {
            tokio::select! {
                _ = node.stopping() => return Ok(()),
                _ = tokio::time::sleep(pause) => {}
            }
        }
        socket.send(packet.as_bytes()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_host_replacement() {
        assert_eq!(
            expand_prefix("nsq.%s", "host.example.com", 4151),
            "nsq.host_example_com_4151."
        );
        assert_eq!(expand_prefix("a.%s.b.", "10.0.0.1", 1), "a.10_0_0_1_1.b.");
        assert_eq!(expand_prefix("plain", "h", 1), "plain.");
        assert_eq!(expand_prefix("", "h", 1), "");
        assert_eq!(expand_prefix("%s", "::1", 2), "[__1]_2.");
        assert_eq!(key_part("10.0.0.2:4150"), "10_0_0_2_4150");
    }

    #[test]
    fn packets_respect_the_size() {
        let lines: Vec<String> = (0..50).map(|i| format!("topic.t{i}.depth:{i}|g")).collect();
        let packed = packets("p.", &lines, 64);
        assert!(packed.len() > 1);
        assert!(packed.iter().all(|p| p.len() <= 64));
        let joined: Vec<&str> = packed.iter().flat_map(|p| p.lines()).collect();
        let expected: Vec<String> = lines.iter().map(|l| format!("p.{l}")).collect();
        assert_eq!(joined, expected);
        let long = vec!["x".repeat(100), "y".into()];
        assert_eq!(packets("", &long, 10).len(), 2);
    }

    #[test]
    fn counters_are_deltas() {
        let mut stats: Stats = serde_json::from_value(serde_json::json!({
            "version": "1.3.0", "health": "OK", "start_time": 0,
            "topics": [{"topic_name": "t", "channels": [{"channel_name": "c",
                "depth": 1, "backend_depth": 0, "in_flight_count": 2, "deferred_count": 0,
                "message_count": 5, "requeue_count": 1, "timeout_count": 0, "client_count": 1,
                "paused": false, "e2e_processing_latency": {"count": 0, "percentiles": null},
                "dead_count": 4}],
              "depth": 3, "backend_depth": 0, "message_count": 5, "message_bytes": 50,
              "paused": false, "e2e_processing_latency": {"count": 0, "percentiles": null}}],
            "memory": null, "producers": null
        }))
        .expect("stats JSON");
        let mut previous = Previous::default();
        let first = lines(&stats, None, false, &mut previous);
        assert!(first.contains(&"topic.t.message_count:5|c".to_string()));
        assert!(first.contains(&"topic.t.channel.c.in_flight_count:2|g".to_string()));
        assert!(first.contains(&"topic.t.channel.c.dead_count:4|g".to_string()));
        let topics = stats.topics.as_mut().expect("topics");
        topics[0].message_count = 8;
        topics[0].channels[0].message_count = 6;
        let second = lines(&stats, None, false, &mut previous);
        assert!(second.contains(&"topic.t.message_count:3|c".to_string()));
        assert!(second.contains(&"topic.t.channel.c.message_count:1|c".to_string()));
        assert!(second.contains(&"topic.t.channel.c.requeue_count:0|c".to_string()));
        assert!(second.contains(&"topic.t.depth:3|g".to_string()));
    }
}
