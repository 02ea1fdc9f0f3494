//! Polls `/stats` of every nsqd that has a topic and prints one channel's
//! figures summed across them, every `--interval`, as upstream's `nsq_stat`.
//! The first poll is the baseline for the rates, so `--count=N` polls N+1
//! times and prints N rows.

use clap::Parser;
use nsq::{HttpPool, NsqdHttp};
use nsq_daemon::flags::parse_duration;
use nsq_daemon::signals::wait_for_signal;
use nsq_daemon::version_line;
use nsq_tools::consume::lookupd_producers;
use nsq_tools::stat::{header, row, ChannelTotals, HEADER_EVERY};
use nsq_tools::{check_sources, fatal};
use std::time::Duration;

const PREFIX: &str = "[nsq_stat] ";

#[derive(Debug, Parser)]
#[command(name = "nsq_stat", about = "Prints a channel's stats across nsqds")]
struct Opts {
    /// NSQ topic
    #[arg(long, default_value = "")]
    topic: String,
    /// NSQ channel
    #[arg(long, default_value = "")]
    channel: String,
    /// duration of time between polling/printing output
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    interval: Duration,
    /// number of reports (default: forever)
    #[arg(long)]
    count: Option<i32>,
    /// nsqd HTTP address (may be given multiple times)
    #[arg(long)]
    nsqd_http_address: Vec<String>,
    /// lookupd HTTP address (may be given multiple times)
    #[arg(long)]
    lookupd_http_address: Vec<String>,
    /// timeout for HTTP connect
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    http_client_connect_timeout: Duration,
    /// timeout for HTTP request
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    http_client_request_timeout: Duration,
    /// print version
    #[arg(long)]
    version: bool,
}

#[tokio::main]
async fn main() {
    let opts = nsq_daemon::flags::parse::<Opts>(std::env::args_os());
    if opts.version {
        println!("{}", version_line("nsq_stat"));
        return;
    }
    if let Err(e) = validate(&opts) {
        fatal(PREFIX, e);
    }
    let pool = HttpPool::new(
        opts.http_client_connect_timeout,
        opts.http_client_request_timeout,
    );
    tokio::select! {
        _ = stat_loop(&pool, &opts) => {}
        _ = wait_for_signal() => {}
    }
}

fn validate(opts: &Opts) -> Result<(), String> {
    if opts.topic.is_empty() || opts.channel.is_empty() {
        return Err("--topic and --channel are required".into());
    }
    if opts.interval.is_zero() {
        return Err("--interval should be positive".into());
    }
    if opts.http_client_connect_timeout.is_zero() {
        return Err("--http-client-connect-timeout should be positive".into());
    }
    if opts.http_client_request_timeout.is_zero() {
        return Err("--http-client-request-timeout should be positive".into());
    }
    if opts.count.is_some_and(|n| n <= 0) {
        return Err("--count should be positive".into());
    }
    check_sources(
        "--nsqd-http-address",
        &opts.nsqd_http_address,
        &opts.lookupd_http_address,
    )?;
    for (flag, addrs) in [
        ("--nsqd-http-address", &opts.nsqd_http_address),
        ("--lookupd-http-address", &opts.lookupd_http_address),
    ] {
        if addrs.iter().any(|a| a.starts_with("http")) {
            return Err(format!("{flag} error - address should not contain scheme"));
        }
    }
    Ok(())
}

async fn stat_loop(pool: &HttpPool, opts: &Opts) {
    let mut previous: Option<ChannelTotals> = None;
    let mut i: u64 = 0;
    loop {
        let nsqds = match opts.lookupd_http_address.is_empty() {
            true => opts.nsqd_http_address.clone(),
            false => lookupd_producers(pool, &opts.lookupd_http_address, &opts.topic)
                .await
                .unwrap_or_else(|e| {
                    fatal(
                        PREFIX,
                        format_args!("ERROR: failed to get topic producers - {e}"),
                    )
                }),
        };
        let totals = channel_totals(pool, &nsqds, &opts.topic, &opts.channel)
            .await
            .unwrap_or_else(|e| fatal(PREFIX, e));
        if i % HEADER_EVERY == 0 {
            println!("{}", header());
        }
        if let Some(previous) = &previous {
            println!("{}", row(previous, &totals, opts.interval));
        }
        previous = Some(totals);
        if opts.count.is_some_and(|n| i >= n as u64) {
            return;
        }
        i += 1;
        tokio::time::sleep(opts.interval).await;
    }
}

/// The channel summed over `nsqds`; an error if none of them has it.
async fn channel_totals(
    pool: &HttpPool,
    nsqds: &[String],
    topic: &str,
    channel: &str,
) -> Result<ChannelTotals, String> {
    let mut totals = ChannelTotals::default();
    let mut found = false;
    for nsqd in nsqds {
        let stats = NsqdHttp::with_pool(nsqd, pool)
            .stats(Some(topic), Some(channel), false)
            .await
            .map_err(|e| format!("ERROR: failed to get nsqd stats - {nsqd}: {e}"))?;
        found |= totals.add(&stats, topic, channel);
    }
    if !found {
        return Err(format!(
            "ERROR: failed to find channel({channel}) in stats metadata for topic({topic})"
        ));
    }
    Ok(totals)
}
