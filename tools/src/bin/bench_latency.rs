//! Measures delivery latency at a steady load: `--producers` publish
//! `--rate` messages a second in all for `--runfor`, while `--consumers`
//! subscribed to one channel with `RDY --rdy` finish every message, one
//! write per FIN as go-nsq does. A message's latency is the time it arrives
//! minus the timestamp nsqd gave it (nanoseconds since the epoch, in its
//! header), so producer and consumer must share the host's clock. With
//! `--pid`, nsqd's CPU per message is reported too. Only the protocol is
//! used, so any nsqd can be measured.

use bytes::{Bytes, BytesMut};
use clap::Parser;
use nsq::protocol::{Command, MESSAGE_HEADER_LEN};
use nsq_daemon::flags::parse_duration;
use nsq_tools::cpu::{nanos_per_message, CpuMeter};
use nsq_tools::latency::{Millis, Samples};
use nsq_tools::{fatal, identify, log, unix_nanos, BenchError, Conn, Progress, MAX_FRAME_SIZE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const PREFIX: &str = "[bench_latency] ";

/// How long the consumers may take, after the last publish, to receive the rest.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "bench_latency",
    about = "Measures publish-to-receipt latency at a fixed publish rate"
)]
struct Opts {
    /// duration of time to publish
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    runfor: Duration,
    /// <addr>:<port> to connect to nsqd
    #[arg(long, default_value = "127.0.0.1:4150")]
    nsqd_tcp_address: String,
    /// topic to publish to and consume from
    #[arg(long, default_value = "bench_latency")]
    topic: String,
    /// channel to consume from
    #[arg(long, default_value = "ch")]
    channel: String,
    /// messages per second, over all producers
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// producer connections, sharing the rate
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    producers: u32,
    /// consumer connections on the channel
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    consumers: u32,
    /// RDY count of each consumer
    #[arg(long, default_value_t = 200)]
    rdy: u32,
    /// size of messages
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// nsqd's process id, to report its CPU time per message (same host only)
    #[arg(long)]
    pid: Option<u32>,
}

#[tokio::main]
async fn main() {
    let opts = nsq_daemon::flags::parse::<Opts>(std::env::args_os());
    if let Err(e) = run(opts).await {
        fatal(PREFIX, e);
    }
}

/// What the consumers counted.
#[derive(Default)]
struct Counters {
    /// Messages published during this run.
    received: AtomicU64,
    /// Messages older than this run (left in the channel by an earlier one):
    /// finished, but not measured.
    stale: AtomicU64,
}

async fn run(opts: Opts) -> Result<(), BenchError> {
    // The consumers subscribe first, so that the channel exists before the
    // first publish and receives every message.
    let max_frame = MAX_FRAME_SIZE.max(opts.size) + 4 + MESSAGE_HEADER_LEN;
    let mut setup = BytesMut::new();
    identify("latency", "bench_latency").encode(&mut setup);
    Command::Sub {
        topic: opts.topic.clone(),
        channel: opts.channel.clone(),
    }
    .encode(&mut setup);
    let mut consumers = Vec::new();
    for _ in 0..opts.consumers {
        let mut conn = Conn::connect(&opts.nsqd_tcp_address, max_frame).await?;
        conn.write(&setup).await?;
        conn.expect_ok().await?;
        conn.expect_ok().await?;
        consumers.push(conn);
    }
    let mut producers = Vec::new();
    for _ in 0..opts.producers {
        let mut conn = Conn::connect(&opts.nsqd_tcp_address, MAX_FRAME_SIZE).await?;
        conn.write(&identify("latency", "bench_latency").to_bytes())
            .await?;
        conn.expect_ok().await?;
        producers.push(conn);
    }

    let meter = opts.pid.map(CpuMeter::start).transpose()?;
    let counters = Arc::new(Counters::default());
    let (stop, stopped) = watch::channel(false);
    let since = unix_nanos();
    let consumer_tasks: Vec<_> = consumers
        .into_iter()
        .map(|conn| {
            tokio::spawn(consume(
                conn,
                opts.rdy,
                since,
                counters.clone(),
                stopped.clone(),
            ))
        })
        .collect();

    let published = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(PREFIX, published.clone());
    let pub_cmd = Command::Pub {
        topic: opts.topic.clone(),
        body: Bytes::from(vec![b'x'; opts.size]),
    }
    .to_bytes();
    let start = Instant::now();
    let end = start + opts.runfor;
    let producer_tasks: Vec<_> = producers
        .into_iter()
        .zip(share(opts.rate, opts.producers))
        .map(|(conn, rate)| {
            tokio::spawn(produce(
                conn,
                pub_cmd.clone(),
                rate,
                start,
                end,
                published.clone(),
            ))
        })
        .collect();
    for task in producer_tasks {
        task.await
            .map_err(|e| BenchError::Worker(e.to_string()))??;
    }
    let publish_time = start.elapsed();
    progress.finish();
    let total = published.load(Ordering::Relaxed);

    let drain_until = Instant::now() + DRAIN;
    while counters.received.load(Ordering::Relaxed) < total && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(true);
    let mut samples = Samples::default();
    for task in consumer_tasks {
        samples.merge(
            task.await
                .map_err(|e| BenchError::Worker(e.to_string()))??,
        );
    }
    let cpu = meter.map(CpuMeter::finish).transpose()?;

    let received = counters.received.load(Ordering::Relaxed);
    if received < total {
        log(
            PREFIX,
            format_args!(
                "{} of {total} messages not received within {DRAIN:?}",
                total - received
            ),
        );
    }
    let latencies = samples.into_sorted();
    println!("published: {total}");
    println!("received: {received}");
    let stale = counters.stale.load(Ordering::Relaxed);
    if stale > 0 {
        println!("stale: {stale}");
    }
    println!(
        "msgs/s: {:.1}",
        total as f64 / publish_time.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    for p in [50.0, 90.0, 99.0, 99.9] {
        println!("latency p{p}: {}", Millis(latencies.percentile(p)));
    }
    println!("latency max: {}", Millis(latencies.max()));
    if let Some(cpu) = cpu {
        match nanos_per_message(cpu, received) {
            Some(ns) => println!("nsqd cpu/msg: {ns:.0} ns"),
            None => println!("nsqd cpu/msg: -"),
        }
    }
    Ok(())
}

/// `rate` split over `n` producers, the remainder going to the first ones.
fn share(rate: u64, n: u32) -> Vec<u64> {
    let n = u64::from(n);
    (0..n).map(|i| rate / n + u64::from(i < rate % n)).collect()
}

/// Publishes message `i` at `start + i / rate` until `end`. The timer wakes
/// at most once a millisecond, so the messages that fell due meanwhile go
/// out together, pipelined, and then their OKs are read. If nsqd cannot keep
/// up the producer falls behind, and the reported rate shows it.
async fn produce(
    mut conn: Conn,
    pub_cmd: Bytes,
    rate: u64,
    start: Instant,
    end: Instant,
    published: Arc<AtomicU64>,
) -> Result<(), BenchError> {
    if rate == 0 {
        return Ok(());
    }
    let mut out = BytesMut::new();
    let mut sent: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        let due = ((now - start).as_secs_f64() * rate as f64) as u64 + 1;
        if due > sent {
            for _ in sent..due {
                out.extend_from_slice(&pub_cmd);
            }
            conn.write(&out).await?;
            out.clear();
            for _ in sent..due {
                conn.expect_ok().await?;
            }
            published.fetch_add(due - sent, Ordering::Relaxed);
            sent = due;
        }
        let next = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        tokio::time::sleep_until(next.min(end).into()).await;
    }
}

/// Receives, times and finishes messages until told to stop; returns the
/// latencies of the messages published during this run.
async fn consume(
    mut conn: Conn,
    rdy: u32,
    since: i64,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
) -> Result<Samples, BenchError> {
    let mut samples = Samples::default();
    conn.consume_each(rdy, stop, |msg, arrived| {
        if msg.timestamp < since {
            counters.stale.fetch_add(1, Ordering::Relaxed);
        } else {
            samples.record_nanos(arrived.saturating_sub(msg.timestamp).max(0) as u64);
            counters.received.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await?;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_shared_out_exactly() {
        assert_eq!(share(10_000, 1), vec![10_000]);
        assert_eq!(share(10, 3), vec![4, 3, 3]);
        assert_eq!(share(2, 4), vec![1, 1, 0, 0]);
    }
}
