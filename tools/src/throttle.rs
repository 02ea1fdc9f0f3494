//! `--rate`: at most N messages a second, as a token bucket that holds up to
//! one second of unused capacity (upstream's `to_nsq` caps its balance the
//! same way, so a pause is followed by at most a second's burst).

use std::time::{Duration, Instant};

pub struct Throttle {
    per_second: f64,
    /// Messages that may go now; negative while callers wait for capacity.
    tokens: f64,
    refilled_at: Instant,
}

impl Throttle {
    /// `None` for a rate of 0, which means unthrottled.
    pub fn new(per_second: u64, now: Instant) -> Option<Throttle> {
        // The first message goes at once.
        (per_second > 0).then_some(Throttle {
            per_second: per_second as f64,
            tokens: 1.0,
            refilled_at: now,
        })
    }

    /// Takes one message's worth of capacity and says how long to wait
    /// before sending it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.refilled_at = now;
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.per_second.max(1.0));
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }

    pub async fn wait(&mut self) {
        let delay = self.reserve(Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_unthrottled() {
        assert!(Throttle::new(0, Instant::now()).is_none());
    }

    #[test]
    fn spaces_messages_at_the_rate() {
        let start = Instant::now();
        let mut t = Throttle::new(10, start).unwrap();
        assert_eq!(t.reserve(start), Duration::ZERO);
        // Back to back, each further message waits one more tenth of a second.
        for n in 1..=5u32 {
            let wait = t.reserve(start);
            assert!(
                (wait.as_secs_f64() - f64::from(n) / 10.0).abs() < 1e-9,
                "{wait:?}"
            );
        }
    }

    #[test]
    fn idle_time_buys_at_most_one_second_of_burst() {
        let start = Instant::now();
        let mut t = Throttle::new(4, start).unwrap();
        let later = start + Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(t.reserve(later), Duration::ZERO);
        }
        assert!(t.reserve(later) > Duration::ZERO);
    }
}
