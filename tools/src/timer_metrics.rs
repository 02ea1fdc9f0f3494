//! `--status-every N`: after every N requests, one log line with their 99th
//! and 95th percentile and average duration, in upstream's wording.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Durations of the requests since the last status line.
pub struct TimerMetrics {
    prefix: String,
    every: usize,
    timings: Mutex<Vec<Duration>>,
}

impl TimerMetrics {
    /// Reports every `every` requests; 0 turns it off.
    pub fn new(every: usize, prefix: impl Into<String>) -> TimerMetrics {
        TimerMetrics {
            prefix: prefix.into(),
            every,
            timings: Mutex::new(Vec::with_capacity(every)),
        }
    }

    /// Records a request that began at `started` and logs the status line
    /// when it completes a batch.
    pub fn status(&self, started: Instant) {
        if let Some(line) = self.record(started.elapsed()) {
            tracing::info!("{line}");
        }
    }

    /// Records one duration; returns the status line when it completes a batch.
    pub fn record(&self, took: Duration) -> Option<String> {
        if self.every == 0 {
            return None;
        }
        let mut timings = self.timings.lock().expect("timings lock");
        timings.push(took);
        if timings.len() < self.every {
            return None;
        }
        let line = summary(&self.prefix, &mut timings);
        timings.clear();
        Some(line)
    }
}

/// `<prefix> finished N requests - 99th: Xms - 95th: Yms - avg: Zms`.
fn summary(prefix: &str, timings: &mut [Duration]) -> String {
    timings.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let avg = timings.iter().map(|&d| ms(d)).sum::<f64>() / timings.len() as f64;
    format!(
        "{prefix} finished {} requests - 99th: {:.2}ms - 95th: {:.2}ms - avg: {avg:.2}ms",
        timings.len(),
        ms(percentile(99.0, timings)),
        ms(percentile(95.0, timings)),
    )
}

/// Upstream's nearest-rank pick: index ⌈p/100·n + 0.5⌉, capped at the last.
fn percentile(perc: f64, sorted: &[Duration]) -> Duration {
    let index = ((perc / 100.0) * sorted.len() as f64 + 0.5).ceil() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_n_requests() {
        let m = TimerMetrics::new(4, "[aggregate]:");
        for ms in [40, 10, 30] {
            assert_eq!(m.record(Duration::from_millis(ms)), None);
        }
        assert_eq!(
            m.record(Duration::from_millis(20)).as_deref(),
            Some("[aggregate]: finished 4 requests - 99th: 40.00ms - 95th: 40.00ms - avg: 25.00ms")
        );
        // The next batch starts empty.
        assert_eq!(m.record(Duration::from_millis(1)), None);
    }

    #[test]
    fn zero_disables() {
        let m = TimerMetrics::new(0, "x");
        assert_eq!(m.record(Duration::from_millis(1)), None);
    }

    #[test]
    fn percentiles_of_a_hundred() {
        let mut timings: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let line = summary("p", &mut timings);
        assert_eq!(
            line,
            "p finished 100 requests - 99th: 100.00ms - 95th: 97.00ms - avg: 50.50ms"
        );
    }
}
