//! End-to-end processing latency: time from publish to FIN, reported as
//! quantiles over a sliding window (`--e2e-processing-latency-window-time`).
//!
//! Like upstream, two half-window buckets rotate so that the report covers
//! between one half and one whole window. Each bucket keeps a uniform reservoir
//! of at most `RESERVOIR` samples, so memory is fixed and quantiles are
//! estimated from a fair sample of everything FINished in the window.

use nsq::api::{E2eProcessingLatency, Percentile};
use rand::Rng;
use std::time::{Duration, Instant};

const RESERVOIR: usize = 2048;

#[derive(Debug, Default, Clone)]
struct Bucket {
    samples: Vec<u64>,
    seen: u64,
}

impl Bucket {
    fn record(&mut self, value: u64) {
        self.seen += 1;
        if self.samples.len() < RESERVOIR {
            self.samples.push(value);
        } else {
            let slot = rand::rng().random_range(0..self.seen);
            if (slot as usize) < RESERVOIR {
                self.samples[slot as usize] = value;
            }
        }
    }
}

#[derive(Debug)]
pub struct E2eLatency {
    half_window: Duration,
    started: Instant,
    current: Bucket,
    previous: Bucket,
}

impl E2eLatency {
    pub fn new(window: Duration) -> Self {
        E2eLatency {
            half_window: (window / 2).max(Duration::from_millis(1)),
            started: Instant::now(),
            current: Bucket::default(),
            previous: Bucket::default(),
        }
    }

    fn rotate(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.started);
        if age >= self.half_window {
            self.previous = if age >= 2 * self.half_window {
                Bucket::default()
            } else {
                std::mem::take(&mut self.current)
            };
            self.current = Bucket::default();
            self.started = now;
        }
    }

    pub fn record(&mut self, latency_ns: u64, now: Instant) {
        self.rotate(now);
        self.current.record(latency_ns);
    }

    /// Adds this window's samples to `into` (for a topic-wide report).
    pub fn collect(&mut self, into: &mut Samples) {
        self.rotate(Instant::now());
        for bucket in [&self.previous, &self.current] {
            into.count += bucket.seen;
            into.values.extend_from_slice(&bucket.samples);
        }
    }
}

/// Samples gathered from one or more windows.
#[derive(Debug, Default)]
pub struct Samples {
    count: u64,
    values: Vec<u64>,
}

impl Samples {
    /// The report for `quantiles`; `percentiles` is null when none are configured.
    pub fn report(mut self, quantiles: &[f64]) -> E2eProcessingLatency {
        if quantiles.is_empty() {
            return E2eProcessingLatency {
                count: 0,
                percentiles: None,
            };
        }
        self.values.sort_unstable();
        // An empty window reports 0 for every quantile, as upstream's streams do.
        let percentiles = quantiles
            .iter()
            .map(|&q| {
                let rank = ((q * self.values.len() as f64).ceil() as usize)
                    .clamp(1, self.values.len().max(1));
                Percentile {
                    quantile: q,
                    value: self.values.get(rank - 1).copied().unwrap_or(0) as f64,
                }
            })
            .collect();
        E2eProcessingLatency {
            count: self.count,
            percentiles: Some(percentiles),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut e2e = E2eLatency::new(Duration::from_secs(600));
        let now = Instant::now();
        for v in 1..=1000 {
            e2e.record(v, now);
        }
        let mut samples = Samples::default();
        e2e.collect(&mut samples);
        let report = samples.report(&[0.5, 0.99]);
        assert_eq!(report.count, 1000);
        let p = report.percentiles.unwrap();
        assert_eq!(p[0].value, 500.0);
        assert_eq!(p[1].value, 990.0);
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut e2e = E2eLatency::new(Duration::from_millis(100));
        let start = Instant::now();
        e2e.record(5, start);
        e2e.record(7, start + Duration::from_millis(60));
        let mut samples = Samples::default();
        e2e.rotate(start + Duration::from_millis(250));
        e2e.collect(&mut samples);
        assert_eq!(samples.count, 0);
    }
}
