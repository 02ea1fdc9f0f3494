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

    #[tokio::test]
    async fn deadlines_due_in_the_same_step_meet() {
        let grid = Duration::from_millis(100);
        let a = on_grid(Duration::from_millis(1_000), grid);
        tokio::time::sleep(Duration::from_millis(3)).await;
        let b = on_grid(Duration::from_millis(1_000), grid);
        let now = Instant::now();
        for at in [a, b] {
            let ahead = at - now;
            assert!(
                ahead >= Duration::from_millis(990) && ahead <= Duration::from_millis(1_100),
                "{ahead:?}"
            );
        }
        // Both fall on the grid: 3 ms apart, they meet unless a step
        // boundary fell between them.
        let apart = b.saturating_duration_since(a);
        assert!(apart == Duration::ZERO || apart == grid, "{apart:?}");
    }
}
