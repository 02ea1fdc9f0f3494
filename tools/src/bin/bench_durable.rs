//! Measures publishes that wait for their OK: each of `--connections` sends a
//! PUB (an MPUB of `--batch-size` when above 1) and waits for nsqd's answer
//! before the next. Against nsqd run with `--mem-queue-size=0
//! --sync-every=1` an OK means the message is on disk, so this is what a
//! producer that needs durability gets: the rate, the time to each OK, and
//! with `--pid` nsqd's CPU per message. Only the protocol is used, so any
//! nsqd can be measured.
//!
//! Unlike the other bench tools' connections, these park at once while
//! they wait: every answer waits for an fsync (hundreds of microseconds),
//! so polling for it would only take CPU from the nsqd under test.

use bytes::{Bytes, BytesMut};
use clap::Parser;
use nsq::protocol::{decode_frame, Command, FrameType, HEARTBEAT, MAGIC_V2, OK};
use nsq::transport::{ReadHalf, WriteHalf};
use nsq_daemon::flags::parse_duration;
use nsq_tools::cpu::{nanos_per_message, CpuMeter};
use nsq_tools::latency::{Millis, Samples};
use nsq_tools::{fatal, identify, text, BenchError, Progress, MAX_FRAME_SIZE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const PREFIX: &str = "[bench_durable] ";

#[derive(Debug, Parser)]
#[command(
    name = "bench_durable",
    about = "Measures synchronous publishes: the rate and the time to each OK"
)]
struct Opts {
    /// duration of time to run
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    runfor: Duration,
    /// <addr>:<port> to connect to nsqd
    #[arg(long, default_value = "127.0.0.1:4150")]
    nsqd_tcp_address: String,
    /// topic to publish to
    #[arg(long, default_value = "bench_durable")]
    topic: String,
    /// connections publishing at once, each waiting for its OK before the next publish
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// messages per publish: 1 sends PUB, more send an MPUB of that many
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
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

async fn run(opts: Opts) -> Result<(), BenchError> {
    let body = Bytes::from(vec![b'x'; opts.size]);
    // Every publish is the same bytes, so the command is encoded once.
    let command = match opts.batch_size {
        1 => Command::Pub {
            topic: opts.topic.clone(),
            body,
        },
        n => Command::Mpub {
            topic: opts.topic.clone(),
            bodies: vec![body; n as usize],
        },
    }
    .to_bytes();

    let mut conns = Vec::new();
    for _ in 0..opts.connections {
        let mut conn = Publisher::connect(&opts.nsqd_tcp_address).await?;
        conn.request(&identify("durable", "bench_durable").to_bytes())
            .await?;
        conns.push(conn);
    }

    let meter = opts.pid.map(CpuMeter::start).transpose()?;
    let acked = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let progress = Progress::start(PREFIX, acked.clone());
    let end = start + opts.runfor;
    let batch = u64::from(opts.batch_size);
    let handles: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(publish(conn, command.clone(), batch, end, acked.clone())))
        .collect();
    let mut samples = Samples::default();
    for handle in handles {
        let worker = handle
            .await
            .map_err(|e| BenchError::Worker(e.to_string()))??;
        samples.merge(worker);
    }
    let duration = start.elapsed();
    let cpu = meter.map(CpuMeter::finish).transpose()?;
    progress.finish();

    let messages = acked.load(Ordering::Relaxed);
    let requests = samples.len();
    let acks = samples.into_sorted();
    println!("messages: {messages}");
    println!("requests: {requests}");
    println!(
        "msgs/s: {:.1}",
        messages as f64 / duration.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    println!("ack p50: {}", Millis(acks.percentile(50.0)));
    println!("ack p99: {}", Millis(acks.percentile(99.0)));
    println!("ack max: {}", Millis(acks.max()));
    if let Some(cpu) = cpu {
        match nanos_per_message(cpu, messages) {
            Some(ns) => println!("nsqd cpu/msg: {ns:.0} ns"),
            None => println!("nsqd cpu/msg: -"),
        }
    }
    Ok(())
}

/// Publishes until `end`, one request at a time; returns the time each
/// request took to be acknowledged.
async fn publish(
    mut conn: Publisher,
    command: Bytes,
    batch: u64,
    end: Instant,
    acked: Arc<AtomicU64>,
) -> Result<Samples, BenchError> {
    let mut samples = Samples::default();
    loop {
        let sent = Instant::now();
        conn.request(&command).await?;
        let now = Instant::now();
        samples.record(now - sent);
        acked.fetch_add(batch, Ordering::Relaxed);
        if now >= end {
            return Ok(samples);
        }
    }
}

/// A plain connection (TCP, or a unix socket when the address is a path)
/// that sends one request at a time and waits for its `OK`.
struct Publisher {
    read: ReadHalf<TcpStream>,
    write: WriteHalf<TcpStream>,
    buf: BytesMut,
}

impl Publisher {
    async fn connect(addr: &str) -> Result<Publisher, BenchError> {
        let (read, write) = nsq_tools::dial(addr).await?;
        let mut conn = Publisher {
            read,
            write,
            buf: BytesMut::with_capacity(4096),
        };
        conn.write.write_all(MAGIC_V2).await?;
        Ok(conn)
    }

    /// Sends `command` and waits for its `OK`, answering heartbeats meanwhile.
    async fn request(&mut self, command: &[u8]) -> Result<(), BenchError> {
        self.write.write_all(command).await?;
        loop {
            let Some(frame) = decode_frame(&mut self.buf, MAX_FRAME_SIZE)? else {
                if self.buf.capacity() - self.buf.len() < 1024 {
                    self.buf.reserve(4096);
                }
                if self.read.read_buf(&mut self.buf).await? == 0 {
                    return Err(BenchError::Closed);
                }
                continue;
            };
            match frame.frame_type {
                FrameType::Response if frame.data == OK => return Ok(()),
                FrameType::Response if frame.data == HEARTBEAT => {
                    self.write.write_all(&Command::Nop.to_bytes()).await?
                }
                FrameType::Error => return Err(BenchError::Nsqd(text(&frame.data))),
                other => return Err(BenchError::Unexpected(other, text(&frame.data))),
            }
        }
    }
}
