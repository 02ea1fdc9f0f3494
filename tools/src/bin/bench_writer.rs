//! Publishes as fast as nsqd accepts: one connection per CPU, each sending an
//! MPUB of `--batch-size` messages and waiting for its OK before the next, as
//! upstream's `bench/bench_writer` does.

use bytes::Bytes;
use clap::Parser;
use nsq::protocol::Command;
use nsq_daemon::flags::parse_duration;
use nsq_tools::{
    fatal, identify, join_all, log, summary, workers, BenchError, Conn, Deadline, Progress,
    MAX_FRAME_SIZE,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PREFIX: &str = "[bench_writer] ";

#[derive(Debug, Parser)]
#[command(name = "bench_writer", about = "Measures how fast nsqd accepts MPUB")]
struct Opts {
    /// duration of time to run
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    runfor: Duration,
    /// <addr>:<port> to connect to nsqd
    #[arg(long, default_value = "127.0.0.1:4150")]
    nsqd_tcp_address: String,
    /// topic to receive messages on
    #[arg(long, default_value = "sub_bench")]
    topic: String,
    /// size of messages
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// batch size of messages
    #[arg(long, default_value_t = 200)]
    batch_size: usize,
    /// deadline to start the benchmark run
    #[arg(long, default_value = "")]
    deadline: String,
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
    // Every batch is the same bytes, so the command is encoded once.
    let body = Bytes::from(vec![0u8; opts.size]);
    let mpub = Command::Mpub {
        topic: opts.topic.clone(),
        bodies: vec![body; opts.batch_size],
    }
    .to_bytes();

    let mut conns = Vec::new();
    for _ in 0..workers() {
        let mut conn = Conn::connect(&opts.nsqd_tcp_address, MAX_FRAME_SIZE).await?;
        conn.write(&identify("writer", "bench_writer").to_bytes())
            .await?;
        conn.expect_ok().await?;
        conns.push(conn);
    }
    if let Some(deadline) = deadline {
        deadline.wait(PREFIX).await;
    }

    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let progress = Progress::start(PREFIX, sent.clone());
    let end = start + opts.runfor;
    let batch = opts.batch_size as u64;
    let handles = conns
        .into_iter()
        .map(|conn| tokio::spawn(publish(conn, mpub.clone(), batch, end, sent.clone())))
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

/// Sends MPUBs until `end`; returns the messages nsqd acknowledged.
async fn publish(
    mut conn: Conn,
    mpub: Bytes,
    batch: u64,
    end: Instant,
    sent: Arc<AtomicU64>,
) -> Result<u64, BenchError> {
    let mut count = 0;
    loop {
        conn.write(&mpub).await?;
        conn.expect_ok().await?;
        count += batch;
        sent.fetch_add(batch, Ordering::Relaxed);
        if Instant::now() >= end {
            return Ok(count);
        }
    }
}
