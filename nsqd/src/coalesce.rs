//! Deadlines rounded up to a grid, so that timers due close together (the
//! retention passes of thousands of idle log-mode topics) fire in one
//! wake-up of the runtime instead of one each. For such timers the wake-up,
//! not the work, is most of what they cost.

use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

/// `after` from now, rounded up to a whole multiple of `grid` since this
/// process first asked.
pub fn on_grid(after: Duration, grid: Duration) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let at = Instant::now() + after;
    let grid_ns = grid.as_nanos().max(1);
    match at.saturating_duration_since(epoch).as_nanos() % grid_ns {
        0 => at,
        into => at + Duration::from_nanos((grid_ns - into) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deadlines asked for at different moments all fall on one grid
    /// (whole steps apart), never sooner than asked nor a step later.
    #[tokio::test]
    async fn deadlines_fall_on_one_grid() {
        let (after, grid) = (Duration::from_secs(1), Duration::from_millis(100));
        let mut deadlines = Vec::new();
        for _ in 0..5 {
            let asked = Instant::now();
            let at = on_grid(after, grid);
            let answered = Instant::now();
            assert!(at >= asked + after, "sooner than asked");
            assert!(at < answered + after + grid, "a whole step late");
            deadlines.push(at);
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
        for pair in deadlines.windows(2) {
            let apart = pair[1].duration_since(pair[0]).as_nanos();
            assert_eq!(apart % grid.as_nanos(), 0, "{apart} ns apart");
        }
    }
}
