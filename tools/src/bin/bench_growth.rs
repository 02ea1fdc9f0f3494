//! The clients of `tools/bench/growth.sh`, which measures how nsqd's cost
//! grows with channels, topics, connections and queued messages. Each
//! subcommand drives one shape of load over the protocol only (so any nsqd
//! can be measured) and, given nsqd's `--pid`, reads nsqd's CPU time and
//! resident memory from `/proc` around the part that counts. Results are
//! `key: value` lines on stdout; progress goes to stderr.

use bytes::{Bytes, BytesMut};
use clap::{Args, Parser, Subcommand};
use nsq::protocol::{Command, FrameType, IdentifyRequest, HEARTBEAT, MESSAGE_HEADER_LEN};
use nsq_daemon::flags::parse_duration;
use nsq_tools::cpu::{cpu_time, nanos_per_message, CpuMeter};
use nsq_tools::{fatal, identify, log, text, BenchError, Conn, MAX_FRAME_SIZE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

const PREFIX: &str = "[bench_growth] ";

/// How long consumers may take, after the last publish, to receive the rest.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(name = "bench_growth", about = "Loads for tools/bench/growth.sh")]
struct Opts {
    #[command(subcommand)]
    load: Load,
}

#[derive(Debug, Subcommand)]
enum Load {
    /// One producer at --rate to one topic with --channels channels, one
    /// consumer on each (RDY --rdy, one write per FIN as go-nsq does)
    Fanout(Fanout),
    /// One producer at --rate, PUB round-robin over topics PREFIX0..PREFIX{N-1}
    /// (they should exist already); no consumers
    Publish(Publish),
    /// Creates topics PREFIX0.. with channel `ch` each over HTTP/1.1, one
    /// keep-alive connection, and prints the time per 1,000
    Create(Create),
    /// Opens --connections consumers on one channel (SUB, RDY 1), then holds
    /// them idle for --hold, answering heartbeats
    Idle(Idle),
    /// Queues exactly --messages messages (MPUB x --batch-size, or PUB) in a
    /// topic's channel and reports nsqd's resident memory per message
    Fill(Fill),
}

#[derive(Debug, Args)]
struct Target {
    /// <addr>:<port> of nsqd's TCP listener
    #[arg(long, default_value = "127.0.0.1:4150")]
    nsqd_tcp_address: String,
    /// nsqd's process id, to read its CPU time and memory (same host only)
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Debug, Args)]
struct Fanout {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "growth")]
    topic: String,
    /// channels ch0..ch{N-1}, one consumer each
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    channels: u32,
    /// messages published per second
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// how long to publish
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    runfor: Duration,
    /// RDY count of each consumer
    #[arg(long, default_value_t = 200)]
    rdy: u32,
    /// size of messages
    #[arg(long, default_value_t = 200)]
    size: usize,
}

#[derive(Debug, Args)]
struct Publish {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "t")]
    prefix: String,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    topics: u32,
    /// messages per second, over all topics
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    runfor: Duration,
    #[arg(long, default_value_t = 200)]
    size: usize,
}

#[derive(Debug, Args)]
struct Create {
    /// <addr>:<port> of nsqd's HTTP listener
    #[arg(long, default_value = "127.0.0.1:4151")]
    nsqd_http_address: String,
    #[arg(long, default_value = "t")]
    prefix: String,
    #[arg(long, default_value_t = 10_000)]
    topics: u32,
    /// give up after this long, reporting how many were made
    #[arg(long, default_value = "240s", value_parser = parse_duration)]
    cap: Duration,
}

#[derive(Debug, Args)]
struct Idle {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "idle")]
    topic: String,
    #[arg(long, default_value = "ch")]
    channel: String,
    #[arg(long, default_value_t = 1000)]
    connections: u32,
    /// how long to measure nsqd while the connections are idle
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    hold: Duration,
    /// heartbeat interval to ask for in IDENTIFY (default: nsqd's, 30s)
    #[arg(long, value_parser = parse_duration)]
    heartbeat_interval: Option<Duration>,
}

#[derive(Debug, Args)]
struct Fill {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "fill")]
    topic: String,
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// messages per MPUB; 1 publishes with PUB (200 pipelined per write)
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
}

#[tokio::main]
async fn main() {
    let opts = Opts::parse();
    let result = match opts.load {
        Load::Fanout(o) => fanout(o).await,
        Load::Publish(o) => publish(o).await,
        Load::Create(o) => create(o).await,
        Load::Idle(o) => idle(o).await,
        Load::Fill(o) => fill(o).await,
    };
    if let Err(e) = result {
        fatal(PREFIX, e);
    }
}

async fn producer(addr: &str) -> Result<Conn, BenchError> {
    let mut conn = Conn::connect(addr, MAX_FRAME_SIZE).await?;
    conn.write(&identify("growth", "bench_growth").to_bytes())
        .await?;
    conn.expect_ok().await?;
    Ok(conn)
}

/// A subscribed connection; `heartbeat` asks nsqd for that interval instead
/// of its default.
async fn consumer(
    addr: &str,
    topic: &str,
    channel: &str,
    size: usize,
    heartbeat: Option<Duration>,
) -> Result<Conn, BenchError> {
    let mut conn = Conn::connect(addr, MAX_FRAME_SIZE.max(size) + 4 + MESSAGE_HEADER_LEN).await?;
    let mut setup = BytesMut::new();
    match heartbeat {
        None => identify("growth", "bench_growth").encode(&mut setup),
        Some(interval) => {
            let request = IdentifyRequest {
                client_id: "growth".into(),
                hostname: "growth".into(),
                user_agent: "bench_growth".into(),
                heartbeat_interval: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
                ..IdentifyRequest::default()
            };
            let json = serde_json::to_vec(&request).expect("IDENTIFY body serializes");
            Command::Identify(json.into()).encode(&mut setup);
        }
    }
    Command::Sub {
        topic: topic.into(),
        channel: channel.into(),
    }
    .encode(&mut setup);
    conn.write(&setup).await?;
    conn.expect_ok().await?;
    conn.expect_ok().await?;
    Ok(conn)
}

/// Prints nsqd's CPU over the phase, in all and per message, if it was measured.
fn report_cpu(meter: Option<CpuMeter>, messages: u64) -> Result<(), BenchError> {
    if let Some(meter) = meter {
        let cpu = meter.finish()?;
        println!("nsqd cpu: {:.0} ms", cpu.as_secs_f64() * 1e3);
        match nanos_per_message(cpu, messages) {
            Some(ns) => println!("nsqd cpu/msg: {ns:.0} ns"),
            None => println!("nsqd cpu/msg: -"),
        }
    }
    Ok(())
}

async fn fanout(o: Fanout) -> Result<(), BenchError> {
    let addr = &o.target.nsqd_tcp_address;
    // The consumers subscribe first, so that every channel exists before the
    // first publish and receives every message.
    let mut consumers = Vec::new();
    for i in 0..o.channels {
        consumers.push(consumer(addr, &o.topic, &format!("ch{i}"), o.size, None).await?);
    }
    let conn = producer(addr).await?;
    let meter = o.target.pid.map(CpuMeter::start).transpose()?;
    let received = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|conn| tokio::spawn(consume(conn, o.rdy, received.clone(), stopped.clone())))
        .collect();
    let bodies = vec![Command::Pub {
        topic: o.topic.clone(),
        body: Bytes::from(vec![b'x'; o.size]),
    }
    .to_bytes()];
    let start = Instant::now();
    let published = produce(conn, &bodies, o.rate, start + o.runfor).await?;
    let publish_time = start.elapsed();
    let expected = published * u64::from(o.channels);
    let drain_until = Instant::now() + DRAIN;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(true);
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Worker(e.to_string()))??;
    }
    let delivered = received.load(Ordering::Relaxed);
    println!("published: {published}");
    println!("delivered: {delivered}");
    println!(
        "msgs/s: {:.1}",
        published as f64 / publish_time.as_secs_f64()
    );
    report_cpu(meter, published)
}

/// Finishes every message with a write of its own until told to stop.
async fn consume(
    mut conn: Conn,
    rdy: u32,
    received: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> Result<(), BenchError> {
    conn.consume_each(rdy, stop, |_, _| {
        received.fetch_add(1, Ordering::Relaxed);
    })
    .await
}

/// Publishes message `i` at `start + i / rate` until `end`, taking the
/// commands in `pubs` in turn; returns how many nsqd took. The timer wakes
/// at most once a millisecond, so the messages that fell due meanwhile go
/// out together, pipelined, and then their OKs are read.
async fn produce(
    mut conn: Conn,
    pubs: &[Bytes],
    rate: u64,
    end: Instant,
) -> Result<u64, BenchError> {
    let start = Instant::now();
    let mut out = BytesMut::new();
    let mut sent: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(sent);
        }
        let due = ((now - start).as_secs_f64() * rate as f64) as u64 + 1;
        if due > sent {
            for i in sent..due {
                out.extend_from_slice(&pubs[(i % pubs.len() as u64) as usize]);
            }
            conn.write(&out).await?;
            out.clear();
            for _ in sent..due {
                conn.expect_ok().await?;
            }
            sent = due;
        }
        let next = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        tokio::time::sleep_until(next.min(end).into()).await;
    }
}

async fn publish(o: Publish) -> Result<(), BenchError> {
    let conn = producer(&o.target.nsqd_tcp_address).await?;
    let body = Bytes::from(vec![b'x'; o.size]);
    let pubs: Vec<Bytes> = (0..o.topics)
        .map(|i| {
            Command::Pub {
                topic: format!("{}{i}", o.prefix),
                body: body.clone(),
            }
            .to_bytes()
        })
        .collect();
    let meter = o.target.pid.map(CpuMeter::start).transpose()?;
    let start = Instant::now();
    let published = produce(conn, &pubs, o.rate, start + o.runfor).await?;
    let publish_time = start.elapsed();
    println!("published: {published}");
    println!(
        "msgs/s: {:.1}",
        published as f64 / publish_time.as_secs_f64()
    );
    report_cpu(meter, published)
}

async fn create(o: Create) -> Result<(), BenchError> {
    let mut http = KeepAlive::connect(&o.nsqd_http_address).await?;
    let start = Instant::now();
    let mut lap = start;
    let mut made = 0;
    while made < o.topics && start.elapsed() < o.cap {
        let topic = format!("{}{made}", o.prefix);
        http.post(&format!("/topic/create?topic={topic}")).await?;
        http.post(&format!("/channel/create?topic={topic}&channel=ch"))
            .await?;
        made += 1;
        if made % 1000 == 0 {
            let ms = lap.elapsed().as_secs_f64() * 1e3;
            println!("per 1000 at {made}: {ms:.0} ms");
            log(
                PREFIX,
                format_args!("{made} topics, the last 1000 in {ms:.0} ms"),
            );
            lap = Instant::now();
        }
    }
    println!("created: {made}");
    println!("seconds: {:.2}", start.elapsed().as_secs_f64());
    if made < o.topics {
        println!("capped: yes");
    }
    Ok(())
}

/// HTTP/1.1 requests one after another on one connection. A pooling client
/// (reqwest) may open a new connection when the last one has not yet gone
/// back to its pool; this measurement must not pay for connects.
struct KeepAlive {
    stream: BufReader<TcpStream>,
    host: String,
}

impl KeepAlive {
    async fn connect(addr: &str) -> Result<KeepAlive, BenchError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive {
            stream: BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    /// POSTs with an empty body; fails on anything but a 2xx answer.
    async fn post(&mut self, path: &str) -> Result<(), BenchError> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            self.host
        );
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status = line.split(' ').nth(1).unwrap_or("").to_string();
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(BenchError::Closed);
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length
            .ok_or_else(|| BenchError::Nsqd(format!("{path}: an answer without Content-Length")))?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        match status.starts_with('2') {
            true => Ok(()),
            false => Err(BenchError::Nsqd(format!(
                "{path}: HTTP {status} {}",
                text(&body)
            ))),
        }
    }
}

/// nsqd's resident memory in KiB, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> Result<u64, BenchError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| BenchError::Nsqd(format!("no VmRSS in /proc/{pid}/status")))
}

async fn idle(o: Idle) -> Result<(), BenchError> {
    let pid = o.target.pid;
    let before = pid.map(rss_kib).transpose()?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let opened = Instant::now();
    // A few hundred handshakes at a time: nsqd's accept backlog is finite.
    for chunk in (0..o.connections).collect::<Vec<_>>().chunks(200) {
        let conns: Vec<_> = chunk
            .iter()
            .map(|_| {
                let addr = o.target.nsqd_tcp_address.clone();
                let (topic, channel, heartbeat) =
                    (o.topic.clone(), o.channel.clone(), o.heartbeat_interval);
                tokio::spawn(async move { consumer(&addr, &topic, &channel, 0, heartbeat).await })
            })
            .collect();
        for conn in conns {
            let conn = conn
                .await
                .map_err(|e| BenchError::Worker(e.to_string()))??;
            tasks.push(tokio::spawn(hold(conn, stopped.clone())));
        }
    }
    log(
        PREFIX,
        format_args!(
            "{} connections subscribed in {:.1} s",
            o.connections,
            opened.elapsed().as_secs_f64()
        ),
    );
    // Let nsqd settle (RDY handled, buffers shrunk) before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = pid.map(rss_kib).transpose()?;
    let cpu_before = pid.map(cpu_time).transpose()?;
    tokio::time::sleep(o.hold).await;
    let cpu_after = pid.map(cpu_time).transpose()?;
    let _ = stop.send(true);
    let mut heartbeats = 0;
    for task in tasks {
        heartbeats += task
            .await
            .map_err(|e| BenchError::Worker(e.to_string()))??;
    }
    println!("connections: {}", o.connections);
    println!("heartbeats: {heartbeats}");
    if let (Some(before), Some(after)) = (before, after) {
        println!("rss before: {before} KiB");
        println!("rss after: {after} KiB");
        println!(
            "rss/conn: {:.0} B",
            after.saturating_sub(before) as f64 * 1024.0 / f64::from(o.connections.max(1))
        );
    }
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        println!(
            "idle cpu: {:.2} %",
            (b - a).as_secs_f64() * 100.0 / o.hold.as_secs_f64()
        );
    }
    Ok(())
}

/// Says RDY 1 and answers heartbeats until told to stop; returns how many came.
async fn hold(mut conn: Conn, mut stop: watch::Receiver<bool>) -> Result<u64, BenchError> {
    conn.write(&Command::Rdy(1).to_bytes()).await?;
    let mut heartbeats = 0;
    loop {
        while let Some(frame) = conn.buffered_frame()? {
            match frame.frame_type {
                FrameType::Response if frame.data == HEARTBEAT => {
                    heartbeats += 1;
                    conn.write(&Command::Nop.to_bytes()).await?
                }
                FrameType::Error => return Err(BenchError::Nsqd(text(&frame.data))),
                _ => {}
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|&stop| stop) => return Ok(heartbeats),
            filled = conn.fill() => filled?,
        }
    }
}

async fn fill(o: Fill) -> Result<(), BenchError> {
    const PIPELINE: u64 = 200;
    let addr = &o.target.nsqd_tcp_address;
    // A consumer that leaves at once creates the channel that holds the messages.
    drop(consumer(addr, &o.topic, "ch", o.size, None).await?);
    let mut conn = producer(addr).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = o.target.pid.map(rss_kib).transpose()?;
    let body = Bytes::from(vec![b'x'; o.size]);
    let pub_cmd = Command::Pub {
        topic: o.topic.clone(),
        body: body.clone(),
    }
    .to_bytes();
    let mut out = BytesMut::new();
    let mut queued = 0;
    while queued < o.messages {
        let n = match o.batch_size {
            1 => PIPELINE,
            b => u64::from(b),
        }
        .min(o.messages - queued);
        // MPUB x n, or n PUBs pipelined in one write: then n answers.
        let answers = match o.batch_size {
            1 => {
                for _ in 0..n {
                    out.extend_from_slice(&pub_cmd);
                }
                n
            }
            _ => {
                Command::Mpub {
                    topic: o.topic.clone(),
                    bodies: vec![body.clone(); n as usize],
                }
                .encode(&mut out);
                1
            }
        };
        conn.write(&out).await?;
        out.clear();
        for _ in 0..answers {
            conn.expect_ok().await?;
        }
        queued += n;
    }
    // Let nsqd move the messages from topic to channel and settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = o.target.pid.map(rss_kib).transpose()?;
    println!("queued: {queued}");
    if let (Some(before), Some(after)) = (before, after) {
        println!("rss before: {before} KiB");
        println!("rss after: {after} KiB");
        println!(
            "rss/msg: {:.0} B",
            after.saturating_sub(before) as f64 * 1024.0 / queued.max(1) as f64
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// Answers requests on the first connection only, as a keep-alive server
    /// would: 200 twice, then 404 with a body.
    async fn server() -> (String, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            let answers: [&[u8]; 3] = [
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK",
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nNOT_FOUND",
            ];
            let mut served = 0;
            for answer in answers {
                let mut line = String::new();
                loop {
                    line.clear();
                    stream.read_line(&mut line).await.unwrap();
                    if line == "\r\n" {
                        break;
                    }
                }
                stream.get_mut().write_all(answer).await.unwrap();
                served += 1;
            }
            served
        });
        (addr, task)
    }

    #[tokio::test]
    async fn requests_share_one_connection_and_errors_carry_the_body() {
        let (addr, server) = server().await;
        let mut http = KeepAlive::connect(&addr).await.unwrap();
        http.post("/topic/create?topic=a").await.unwrap();
        http.post("/channel/create?topic=a&channel=ch")
            .await
            .unwrap();
        let error = http.post("/nope").await.unwrap_err().to_string();
        assert!(
            error.contains("404") && error.contains("NOT_FOUND"),
            "{error}"
        );
        assert_eq!(server.await.unwrap(), 3);
    }
}
