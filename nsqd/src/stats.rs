//! The human-readable `/stats` text, and process memory figures.

use nsq::api::{ClientStats, E2eProcessingLatency, MemStats, Stats};
use nsq_daemon::flags::format_duration;
use std::fmt::Write as _;
use std::time::Duration;

/// Upstream fills Go heap figures; we report the resident set as
/// `heap_in_use_bytes` and leave the garbage-collector figures at zero.
pub fn memory() -> MemStats {
    MemStats {
        heap_in_use_bytes: nsq_daemon::metrics::resident_bytes(),
        ..MemStats::default()
    }
}

fn human_nanos(v: f64) -> String {
    if v > 1e9 {
        format!("{:.1}s", v / 1e9)
    } else if v > 1e6 {
        format!("{:.1}ms", v / 1e6)
    } else if v > 1e3 {
        format!("{:.1}us", v / 1e3)
    } else {
        format!("{v:.1}ns")
    }
}

fn e2e_text(e2e: &E2eProcessingLatency) -> String {
    let values = e2e
        .percentiles
        .iter()
        .flatten()
        .map(|p| human_nanos(p.value));
    values.collect::<Vec<_>>().join(", ")
}

fn client_line(c: &ClientStats) -> String {
    let port = c.remote_address.rsplit(':').next().unwrap_or("");
    let id = format!("{}:{} {}", c.hostname, port, c.user_agent);
    let connected = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|now| Duration::from_secs(now.as_secs().saturating_sub(c.connect_ts.max(0) as u64)))
        .unwrap_or_default();
    let connected = format_duration(connected);
    if c.pub_counts.is_empty() {
        format!(
            "[{} {:<21}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8} connected: {}",
            c.version,
            id,
            c.state,
            c.in_flight_count,
            c.ready_count,
            c.finish_count,
            c.requeue_count,
            c.message_count,
            connected
        )
    } else {
        let total: u64 = c.pub_counts.iter().map(|p| p.count).sum();
        let topics: Vec<String> = c
            .pub_counts
            .iter()
            .map(|p| format!("{}={}", p.topic, p.count))
            .collect();
        format!(
            "[{} {:<21}] msgs: {:<8} topics: {} connected: {}",
            c.version,
            id,
            total,
            topics.join(","),
            connected
        )
    }
}

/// The text `/stats` answers without `format=json`, laid out as upstream's.
pub fn render_text(stats: &Stats, uptime: Duration) -> String {
    let mut out = String::new();
    let start = rfc3339_utc(stats.start_time);
    let _ = write!(
        out,
        "nsqd v{} (rust)\nstart_time {start}\nuptime {}\n",
        stats.version,
        format_duration(uptime)
    );
    let _ = writeln!(out, "\nHealth: {}", stats.health);
    if let Some(m) = &stats.memory {
        out.push_str("\nMemory:\n");
        let rows: [(&str, String); 9] = [
            ("heap_objects", m.heap_objects.to_string()),
            ("heap_idle_bytes", m.heap_idle_bytes.to_string()),
            ("heap_in_use_bytes", m.heap_in_use_bytes.to_string()),
            ("heap_released_bytes", m.heap_released_bytes.to_string()),
            ("gc_pause_usec_100", m.gc_pause_usec_100.to_string()),
            ("gc_pause_usec_99", m.gc_pause_usec_99.to_string()),
            ("gc_pause_usec_95", m.gc_pause_usec_95.to_string()),
            ("next_gc_bytes", m.next_gc_bytes.to_string()),
            ("gc_total_runs", m.gc_total_runs.to_string()),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "   {name:<25}\t{value}");
        }
    }
    let topics = stats.topics.as_deref().unwrap_or_default();
    if topics.is_empty() {
        out.push_str("\nTopics: None\n");
    } else {
        out.push_str("\nTopics:");
    }
    for t in topics {
        let prefix = if t.paused { "*P " } else { "   " };
        let _ = writeln!(
            out,
            "\n{prefix}[{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8} e2e%: {}",
            t.topic_name,
            t.depth,
            t.backend_depth,
            t.message_count,
            e2e_text(&t.e2e_processing_latency)
        );
        for c in &t.channels {
            let prefix = if c.paused { "   *P " } else { "      " };
            let _ = writeln!(
                out,
                "{prefix}[{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8} e2e%: {}",
                c.channel_name,
                c.depth,
                c.backend_depth,
                c.in_flight_count,
                c.deferred_count,
                c.requeue_count,
                c.timeout_count,
                c.message_count,
                e2e_text(&c.e2e_processing_latency)
            );
            for client in c.clients.iter().flatten() {
                let _ = writeln!(out, "        {}", client_line(client));
            }
        }
    }
    match stats.producers.as_deref() {
        None | Some([]) => out.push_str("\nProducers: None\n"),
        Some(producers) => {
            out.push_str("\nProducers:\n");
            for p in producers {
                let _ = writeln!(out, "   {}", client_line(p));
            }
        }
    }
    if let Some(peers) = &stats.peers {
        out.push_str("\nPeers:\n");
        for p in peers {
            let _ = writeln!(
                out,
                "   peer {} {} backlog: {} progress lag: {}ms{}",
                p.address,
                p.state,
                p.backlog_messages,
                p.progress_lag_ms,
                match p.last_error.as_str() {
                    "" => String::new(),
                    e => format!(" ({e})"),
                }
            );
        }
    }
    if let Some(replicas) = &stats.replicas {
        out.push_str("\nReplicas:\n");
        for r in replicas {
            let lag = r.lag_ms.map_or("-".to_string(), |ms| format!("{ms}ms"));
            let link = if r.promoted_at.is_some() {
                "promoted"
            } else if r.connected {
                "connected"
            } else {
                "disconnected"
            };
            let _ = writeln!(
                out,
                "   origin {} ({}) {link} depth: {} lag: {lag}",
                r.origin, r.origin_id, r.depth
            );
            for t in &r.topics {
                let _ = writeln!(
                    out,
                    "      [{:<15}] depth: {:<5} backlog: {:<5} stored: {}",
                    t.topic_name, t.depth, t.backlog, t.stored_seq
                );
                for c in &t.channels {
                    let _ = writeln!(out, "         [{:<25}] depth: {}", c.channel_name, c.depth);
                }
            }
        }
    }
    out
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_utc(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_latencies() {
        assert_eq!(rfc3339_utc(1_795_311_791), "2026-11-22T01:43:11Z");
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(human_nanos(1_500_000.0), "1.5ms");
        assert_eq!(human_nanos(2e9 + 1.0), "2.0s");
    }
}
