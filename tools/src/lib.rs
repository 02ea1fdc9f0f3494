//! Helpers shared by the command-line tools.
//!
//! * [`stat`]: `nsq_stat`'s per-channel totals and row format.
//! * [`throttle`]: `to_nsq --rate`.
//! * [`Progress`]: a live count on a terminal.
//! * [`cpu`] and [`latency`]: nsqd's CPU per message and latency percentiles,
//!   for `bench_durable` and `bench_latency`.
//!
//! The benchmark programs (`bench_writer`, `bench_reader`, `bench_durable`,
//! `bench_latency`) measure nsqd, so the client side here stays lean: one
//! buffered read half per connection decoded in place with the `nsq` crate's
//! codec, commands encoded once or in batches, and nothing else on the path.

use bytes::BytesMut;
use nsq::protocol::message::ShortMessage;
use nsq::protocol::{
    decode_frame, Command, Frame, FrameError, FrameType, IdentifyRequest, WireMessage, HEARTBEAT,
    MAGIC_V2, OK,
};
use nsq::transport;
use nsq_daemon::flags::format_duration;
use std::fmt;
use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub mod archive;
pub mod consume;
pub mod cpu;
pub mod hostpool;
pub mod json_filter;
pub mod latency;
pub mod stat;
pub mod strftime;
pub mod throttle;
pub mod timer_metrics;

/// This workspace's version: the tools' and the client library's, in `user_agent`.
const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `user_agent` a tool identifies itself with to nsqd.
pub fn user_agent(program: &str) -> String {
    format!("{program}/{PACKAGE_VERSION} nsq-rs/{PACKAGE_VERSION}")
}

/// Upstream's tools take either nsqd or lookupd addresses, never both.
pub fn check_sources(nsqd_flag: &str, nsqds: &[String], lookupds: &[String]) -> Result<(), String> {
    match (nsqds.is_empty(), lookupds.is_empty()) {
        (true, true) => Err(format!("{nsqd_flag} or --lookupd-http-address required")),
        (false, false) => Err(format!(
            "use {nsqd_flag} or --lookupd-http-address not both"
        )),
        _ => Ok(()),
    }
}

/// Upstream's bench tools refuse frames above 1 MiB of data.
pub const MAX_FRAME_SIZE: usize = 1024 * 1024;

/// How much the read buffer grows by; one read takes up to this many bytes.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Message(#[from] ShortMessage),
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    #[error("nsqd closed the connection")]
    Closed,
    #[error("nsqd answered {0}")]
    Nsqd(String),
    #[error("unexpected {0:?} frame: {1}")]
    Unexpected(FrameType, String),
    #[error("worker failed: {0}")]
    Worker(String),
    #[error("{0}")]
    Deadline(String),
}

/// One protocol-V2 connection to nsqd (TCP, or a unix socket when the
/// address is a path) with its read buffer. Never TLS: the bench tools, as
/// upstream's, speak the plain protocol.
/// Connects to nsqd over TCP (Nagle off, as Go does by default) or a unix
/// socket when the address is a path, giving up after a second as upstream's
/// tools do.
pub async fn dial(
    addr: &str,
) -> Result<
    (
        transport::ReadHalf<TcpStream>,
        transport::WriteHalf<TcpStream>,
    ),
    BenchError,
> {
    let timed_out = |_| BenchError::ConnectTimeout(addr.to_string());
    let limit = Duration::from_secs(1);
    Ok(match transport::is_unix_socket_path(addr) {
        true => {
            let connect = tokio::net::UnixStream::connect(addr);
            transport::split_unix(
                tokio::time::timeout(limit, connect)
                    .await
                    .map_err(timed_out)??,
            )
        }
        false => {
            let connect = TcpStream::connect(addr);
            let stream = tokio::time::timeout(limit, connect)
                .await
                .map_err(timed_out)??;
            stream.set_nodelay(true)?;
            transport::split(stream)
        }
    })
}

pub struct Conn {
    read: transport::ReadHalf<TcpStream>,
    write: transport::WriteHalf<TcpStream>,
    buf: BytesMut,
    max_frame: usize,
}

/// Now, in nanoseconds since the Unix epoch, as nsqd stamps messages.
pub fn unix_nanos() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}

impl Conn {
    /// Connects (giving up after a second, as upstream does), turns off Nagle
    /// as Go does by default and sends the protocol magic.
    pub async fn connect(addr: &str, max_frame: usize) -> Result<Conn, BenchError> {
        let (read, write) = dial(addr).await?;
        let mut conn = Conn {
            read,
            write,
            buf: BytesMut::with_capacity(READ_CHUNK),
            max_frame,
        };
        conn.write(MAGIC_V2).await?;
        Ok(conn)
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write.write_all(bytes).await
    }

    /// The next frame already in the buffer, if a whole one is there.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        decode_frame(&mut self.buf, self.max_frame)
    }

    /// Consumes as go-nsq does: sends `RDY rdy`, then hands every message to
    /// `on_message` with the time its read arrived (one clock reading per
    /// read: its frames came together) and finishes it with a write of its
    /// own; answers heartbeats; returns once `stop` turns true.
    pub async fn consume_each(
        &mut self,
        rdy: u32,
        mut stop: tokio::sync::watch::Receiver<bool>,
        mut on_message: impl FnMut(&WireMessage, i64),
    ) -> Result<(), BenchError> {
        self.write(&Command::Rdy(rdy).to_bytes()).await?;
        let mut fin = BytesMut::new();
        loop {
            let arrived = unix_nanos();
            while let Some(frame) = self.buffered_frame()? {
                match frame.frame_type {
                    FrameType::Message => {
                        let msg = WireMessage::decode(frame.data)?;
                        on_message(&msg, arrived);
                        Command::Fin(msg.id).encode(&mut fin);
                        self.write(&fin).await?;
                        fin.clear();
                    }
                    FrameType::Response if frame.data == HEARTBEAT => {
                        self.write(&Command::Nop.to_bytes()).await?
                    }
                    FrameType::Response => {}
                    FrameType::Error => return Err(BenchError::Nsqd(text(&frame.data))),
                }
            }
            tokio::select! {
                biased;
                _ = stop.wait_for(|&stop| stop) => return Ok(()),
                filled = self.fill() => filled?,
            }
        }
    }

    /// Reads whatever nsqd has sent next. Cancel-safe: nothing is lost if the
    /// future is dropped before it completes.
    pub async fn fill(&mut self) -> Result<(), BenchError> {
        // Decoded frames share this allocation until they are dropped; asking
        // for room only when little is left lets `reserve` reclaim it.
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        // Poll briefly before parking, as Go's scheduler spins before it
        // sleeps: on a round-trip-bound run, waking a parked thread costs more
        // than the answer takes to come.
        let n = self
            .read
            .read_buf_spinning(&mut self.buf, transport::SPIN_WINDOW)
            .await?;
        match n {
            0 => Err(BenchError::Closed),
            _ => Ok(()),
        }
    }

    pub async fn read_frame(&mut self) -> Result<Frame, BenchError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// Waits for the `OK` that answers a command, answering heartbeats meanwhile.
    pub async fn expect_ok(&mut self) -> Result<(), BenchError> {
        loop {
            let frame = self.read_frame().await?;
            match frame.frame_type {
                FrameType::Response if frame.data == OK => return Ok(()),
                FrameType::Response if frame.data == HEARTBEAT => {
                    self.write(&Command::Nop.to_bytes()).await?
                }
                FrameType::Error => return Err(BenchError::Nsqd(text(&frame.data))),
                other => return Err(BenchError::Unexpected(other, text(&frame.data))),
            }
        }
    }
}

pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The IDENTIFY upstream's bench tools send: `client_id` and `hostname` set
/// to the role, everything else left to the server's defaults.
pub fn identify(role: &str, program: &str) -> Command {
    let request = IdentifyRequest {
        client_id: role.into(),
        hostname: role.into(),
        user_agent: format!("{program}/{PACKAGE_VERSION}"),
        ..IdentifyRequest::default()
    };
    let json = serde_json::to_vec(&request).expect("IDENTIFY body serializes");
    Command::Identify(json.into())
}

/// Connections to open: one per CPU, like upstream's one per `GOMAXPROCS`.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Waits for every worker and adds up the messages they counted.
pub async fn join_all(
    handles: Vec<JoinHandle<Result<u64, BenchError>>>,
) -> Result<u64, BenchError> {
    let mut total = 0;
    for handle in handles {
        total += handle
            .await
            .map_err(|e| BenchError::Worker(e.to_string()))??;
    }
    Ok(total)
}

/// Writes a line the way Go's standard logger does: prefix, time, message,
/// on stderr; the time as the log lines of [`nsq_daemon::logging`] have it,
/// so that one stream carries one format.
pub fn log(prefix: &str, message: fmt::Arguments) {
    let now = nsq_daemon::logging::timestamp();
    eprintln!("{prefix}{now} {message}");
}

/// Logs the error and exits with status 1, like Go's `log.Fatal`.
pub fn fatal(prefix: &str, error: impl fmt::Display) -> ! {
    log(prefix, format_args!("{error}"));
    std::process::exit(1)
}

/// Upstream's closing line: `duration: 10.0001s - 38.147mb/s - 200000.000ops/s
/// - 5.000us/op`, with MB counted as `messages × size`.
pub fn summary(duration: Duration, messages: u64, size: usize) -> String {
    let secs = duration.as_secs_f64();
    let mb = messages as f64 * size as f64 / secs / 1024.0 / 1024.0;
    let ops = messages as f64 / secs;
    // Go divides whole microseconds by the count.
    let us_per_op = duration.as_micros() as f64 / messages as f64;
    format!(
        "duration: {} - {}mb/s - {}ops/s - {}us/op",
        format_duration(duration),
        go_float3(mb),
        go_float3(ops),
        go_float3(us_per_op)
    )
}

/// `%.03f` as Go prints it, including `+Inf` and `NaN`.
fn go_float3(x: f64) -> String {
    match x {
        x if x.is_nan() => "NaN".into(),
        f64::INFINITY => "+Inf".into(),
        f64::NEG_INFINITY => "-Inf".into(),
        x => format!("{x:.3}"),
    }
}

/// A `--deadline` value: `2006-01-02 15:04:05`, read as UTC like Go's `time.Parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// Seconds since the Unix epoch.
    pub unix: i64,
}

impl Deadline {
    pub fn parse(text: &str) -> Result<Deadline, BenchError> {
        let bad = |why: &str| {
            BenchError::Deadline(format!(
                "parsing time {text:?} as \"2006-01-02 15:04:05\": {why}"
            ))
        };
        let b = text.as_bytes();
        let layout_ok = b.len() == 19
            && b.iter().enumerate().all(|(i, &c)| match i {
                4 | 7 => c == b'-',
                10 => c == b' ',
                13 | 16 => c == b':',
                _ => c.is_ascii_digit(),
            });
        if !layout_ok {
            return Err(bad("does not match the layout"));
        }
        let num = |from: usize, to: usize| text[from..to].parse::<u32>().expect("ASCII digits");
        let (year, month, day) = (num(0, 4) as i32, num(5, 7), num(8, 10));
        let (hour, minute, second) = (num(11, 13), num(14, 16), num(17, 19));
        if !(1..=12).contains(&month) {
            return Err(bad("month out of range"));
        }
        let date =
            chrono::NaiveDate::from_ymd_opt(year, month, day).ok_or(bad("day out of range"))?;
        let time = chrono::NaiveTime::from_hms_opt(hour, minute, second)
            .ok_or(bad("time out of range"))?;
        Ok(Deadline {
            unix: date.and_time(time).and_utc().timestamp(),
        })
    }

    /// Sleeps until the deadline (not at all if it has passed), saying so first.
    pub async fn wait(self, prefix: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let target = Duration::from_secs(self.unix.max(0) as u64);
        let (sign, gap) = match target.checked_sub(now) {
            Some(ahead) => ("", ahead),
            None => ("-", now - target),
        };
        let until = chrono::DateTime::from_timestamp(self.unix, 0).unwrap_or_default();
        log(
            prefix,
            format_args!(
                "sleeping until {} +0000 UTC ({sign}{})",
                until.format("%Y-%m-%d %H:%M:%S"),
                format_duration(gap)
            ),
        );
        if sign.is_empty() {
            tokio::time::sleep(gap).await;
        }
    }
}

/// A live `count, rate` line on stderr once a second, only when stderr is a
/// terminal so that logs and pipes get just the summary.
pub struct Progress {
    task: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(prefix: &'static str, counter: Arc<AtomicU64>) -> Progress {
        if !io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let second = Duration::from_secs(1);
            let mut ticks = tokio::time::interval_at((start + second).into(), second);
            let (mut last_count, mut last_at) = (0, start);
            loop {
                let at = ticks.tick().await.into_std();
                let count = counter.load(Ordering::Relaxed);
                let rate = (count - last_count) as f64 / (at - last_at).as_secs_f64();
                eprint!(
                    "\r{prefix}{:.0}s: {count} msgs, {rate:.0} msgs/s\x1b[K",
                    (at - start).as_secs_f64()
                );
                (last_count, last_at) = (count, at);
            }
        });
        Progress { task: Some(task) }
    }

    /// Stops the line and clears it.
    pub fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
            eprint!("\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_upstream_format() {
        let line = summary(Duration::from_millis(10_000), 2_000_000, 200);
        assert_eq!(
            line,
            "duration: 10s - 38.147mb/s - 200000.000ops/s - 5.000us/op"
        );
        let none = summary(Duration::from_secs(1), 0, 200);
        assert_eq!(none, "duration: 1s - 0.000mb/s - 0.000ops/s - +Infus/op");
    }

    #[test]
    fn deadlines_parse_as_utc() {
        let d = Deadline::parse("2024-02-29 13:45:07").unwrap();
        assert_eq!(d.unix, 1_709_214_307);
        assert_eq!(Deadline::parse("1970-01-01 00:00:00").unwrap().unix, 0);
        for bad in [
            "2023-02-29 00:00:00",
            "2024-13-01 00:00:00",
            "2024-01-01T00:00:00",
            "2024-01-01 24:00:00",
            "2024-1-01 00:00:00",
            "",
        ] {
            assert!(Deadline::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identify_names_the_role() {
        let Command::Identify(json) = identify("writer", "bench_writer") else {
            panic!("not an IDENTIFY");
        };
        let request = IdentifyRequest::from_json(&json).unwrap();
        assert_eq!(request.client_id, "writer");
        assert_eq!(request.hostname, "writer");
        assert!(request.user_agent.starts_with("bench_writer/"));
    }
}
