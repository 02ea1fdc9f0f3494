//! `--pid`: the CPU a process (nsqd) spends, from `/proc/PID/stat`, so that a
//! benchmark can report nsqd's cost per message. CPU time is steadier than a
//! rate on a shared machine: a busy neighbour slows nsqd down but does not
//! make it do more work per message.

use std::io;
use std::time::Duration;

/// User plus system CPU time of process `pid` so far (all its threads).
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    let ticks = parse_stat_ticks(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected format"),
        )
    })?;
    Ok(ticks_to_duration(ticks, clock_ticks_per_second()))
}

/// `utime + stime` in clock ticks. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`: state is the first after it, utime the 12th.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant and has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    }
}

fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_second)
}

/// The CPU a process spends between [`CpuMeter::start`] and [`CpuMeter::finish`].
pub struct CpuMeter {
    pid: u32,
    at_start: Duration,
}

impl CpuMeter {
    pub fn start(pid: u32) -> io::Result<CpuMeter> {
        Ok(CpuMeter {
            pid,
            at_start: cpu_time(pid)?,
        })
    }

    pub fn finish(self) -> io::Result<Duration> {
        Ok(cpu_time(self.pid)?.saturating_sub(self.at_start))
    }
}

/// `cpu` spread over `messages`, in nanoseconds each; `None` for no messages.
pub fn nanos_per_message(cpu: Duration, messages: u64) -> Option<f64> {
    (messages > 0).then(|| cpu.as_nanos() as f64 / messages as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_past_an_awkward_name() {
        let stat = "4242 (nsqd (x) y) S 1 4242 4242 0 -1 4194560 812 0 0 0 \
                    1500 250 0 0 20 0 9 0 123 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(1750));
        assert_eq!(parse_stat_ticks("4242 (nsqd) S 1 2"), None);
    }

    #[test]
    fn ticks_become_time() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
    }

    /// This process's CPU time by the kernel's own clock (not in ticks).
    fn process_cpu_clock() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec for the call to fill in.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) },
            0
        );
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Spins until the process has spent 50 ms of CPU (not of wall time: on
    /// a loaded machine 50 ms of wall time may hold less than the one clock
    /// tick that `/proc/PID/stat` counts in), then expects the meter to have
    /// seen some of it.
    #[test]
    fn this_process_has_spent_some_cpu() {
        let meter = CpuMeter::start(std::process::id()).unwrap();
        let mut x = 0u64;
        let spent_from = process_cpu_clock();
        while process_cpu_clock() - spent_from < Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(meter.finish().unwrap() > Duration::ZERO);
    }

    #[test]
    fn cost_per_message() {
        assert_eq!(
            nanos_per_message(Duration::from_millis(1), 1000),
            Some(1000.0)
        );
        assert_eq!(nanos_per_message(Duration::from_millis(1), 0), None);
    }
}
