//! Consumes as fast as nsqd delivers: one connection per CPU, each subscribed
//! with `RDY --rdy`, finishing every message, for `--runfor`, as upstream's
//! `bench/bench_reader` does. FINs are written in one batch per read, or with
//! `--fin-each` one write per FIN, as go-nsq does (a handler finishes its
//! message on its own), which is what most consumers in the field cost nsqd.

use bytes::BytesMut;
use clap::Parser;
use nsq::protocol::{Command, FrameType, WireMessage, HEARTBEAT, MESSAGE_HEADER_LEN};
use nsq_daemon::flags::parse_duration;
use nsq_tools::{
    fatal, identify, join_all, log, summary, text, workers, BenchError, Conn, Deadline, Progress,
    MAX_FRAME_SIZE,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PREFIX: &str = "[bench_reader] ";

#[derive(Debug, Parser)]
#[command(
    name = "bench_reader",
    about = "Measures how fast nsqd delivers messages"
)]
struct Opts {
    /// duration of time to run
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    runfor: Duration,
    /// <addr>:<port> to connect to nsqd
    #[arg(long, default_value = "127.0.0.1:4150")]
    nsqd_tcp_address: String,
    /// size of messages
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// topic to receive messages on
    #[arg(long, default_value = "sub_bench")]
    topic: String,
    /// channel to receive messages on
    #[arg(long, default_value = "ch")]
    channel: String,
    /// deadline to start the benchmark run
    #[arg(long, default_value = "")]
    deadline: String,
    /// RDY count to use
    #[arg(long, default_value_t = 2500)]
    rdy: u32,
    /// consume through the nsq crate's full Consumer (a handler per message,
    /// auto-FIN, RDY managed for --rdy in flight) instead of the raw protocol
    #[arg(long)]
    consumer: bool,
    /// write every FIN on its own (one write per message, as go-nsq does)
    /// instead of one write for all the FINs of a read
    #[arg(long)]
    fin_each: bool,
}

#[tokio::main]
async fn main() {
    let opts = nsq_daemon::flags::parse::<Opts>(std::env::args_os());
    if let Err(e) = run(opts).await {
        fatal(PREFIX, e);
    }
}

async fn run(opts: Opts) -> Result<(), BenchError> {
    let deadline = match opts.deadline.as_str() {
        "" => None,
        text => Some(Deadline::parse(text)?),
    };
    if opts.consumer {
        return run_consumer(opts, deadline).await;
    }
    let max_frame = MAX_FRAME_SIZE.max(opts.size) + 4 + MESSAGE_HEADER_LEN;
    let mut setup = BytesMut::new();
    identify("reader", "bench_reader").encode(&mut setup);
    Command::Sub {
        topic: opts.topic.clone(),
        channel: opts.channel.clone(),
    }
    .encode(&mut setup);

    let mut conns = Vec::new();
    for _ in 0..workers() {
        let mut conn = Conn::connect(&opts.nsqd_tcp_address, max_frame).await?;
        conn.write(&setup).await?;
        conn.expect_ok().await?;
        conn.expect_ok().await?;
        conns.push(conn);
    }
    if let Some(deadline) = deadline {
        deadline.wait(PREFIX).await;
    }

    let received = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let progress = Progress::start(PREFIX, received.clone());
    let end = start + opts.runfor;
    let handles = conns
        .into_iter()
        .map(|conn| {
            tokio::spawn(consume(
                conn,
                opts.rdy,
                opts.fin_each,
                end,
                received.clone(),
            ))
        })
        .collect();
    let result = join_all(handles).await;
    let duration = start.elapsed();
    progress.finish();
    let total = result?;
    log(
        PREFIX,
        format_args!("{}", summary(duration, total, opts.size)),
    );
    Ok(())
}

/// Reads and finishes messages until `end`; returns how many arrived. The
/// connection is then dropped and nsqd requeues whatever was still in flight.
/// RDY is sent once: in steady state in-flight equals RDY and every FIN lets
/// nsqd send one more, as with go-nsq.
async fn consume(
    mut conn: Conn,
    rdy: u32,
    fin_each: bool,
    end: Instant,
    received: Arc<AtomicU64>,
) -> Result<u64, BenchError> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    conn.write(&Command::Rdy(rdy).to_bytes()).await?;
    let stop = tokio::time::sleep_until(end.into());
    tokio::pin!(stop);
    let mut count = 0;
    loop {
        let mut batch = 0;
        while let Some(frame) = conn.buffered_frame()? {
            match frame.frame_type {
                FrameType::Message => {
                    let msg = WireMessage::decode(frame.data)?;
                    Command::Fin(msg.id).encode(&mut out);
                    if fin_each {
                        conn.write(&out).await?;
                        out.clear();
                    }
                    batch += 1;
                }
                FrameType::Response if frame.data == HEARTBEAT => Command::Nop.encode(&mut out),
                FrameType::Response => {}
                FrameType::Error => return Err(BenchError::Nsqd(text(&frame.data))),
            }
        }
        if !out.is_empty() {
            conn.write(&out).await?;
            out.clear();
        }
        count += batch;
        received.fetch_add(batch, Ordering::Relaxed);
        tokio::select! {
            biased;
            _ = &mut stop => return Ok(count),
            filled = conn.fill() => filled?,
        }
    }
}

/// The same measurement through `nsq::Consumer`: what an application gets.
async fn run_consumer(opts: Opts, deadline: Option<Deadline>) -> Result<(), BenchError> {
    let config = nsq::Config {
        max_in_flight: opts.rdy * workers() as u32,
        ..nsq::Config::default()
    };
    let consumer = nsq::Consumer::new(&opts.topic, &opts.channel, config)
        .map_err(|e| BenchError::Nsqd(e.to_string()))?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    consumer
        .add_handler(move |_msg: nsq::Message| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, std::convert::Infallible>(()) }
        })
        .map_err(|e| BenchError::Nsqd(e.to_string()))?;
    if let Some(deadline) = deadline {
        deadline.wait(PREFIX).await;
    }
    let start = Instant::now();
    let progress = Progress::start(PREFIX, received.clone());
    let addrs = vec![opts.nsqd_tcp_address.clone(); workers()];
    consumer
        .connect_to_nsqds(addrs)
        .await
        .map_err(|e| BenchError::Nsqd(e.to_string()))?;
    tokio::time::sleep_until((start + opts.runfor).into()).await;
    let total = received.load(Ordering::Relaxed);
    let duration = start.elapsed();
    progress.finish();
    log(
        PREFIX,
        format_args!("{}", summary(duration, total, opts.size)),
    );
    consumer.stop().await;
    Ok(())
}
