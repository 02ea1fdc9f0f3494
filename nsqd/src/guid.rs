//! Message IDs: 64-bit numbers written as 16 hex digits on the wire.
//!
//! `id = sequence << 10 | node_id`. The sequence starts from the clock (in
//! 64 ns steps since 2020) and then counts, so a whole MPUB gets a contiguous
//! range from one atomic add, and a restarted nsqd starts above the IDs it gave
//! out before unless it averaged more than 15 million messages a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const NODE_BITS: u32 = 10;
/// Distance between consecutive IDs of one node.
pub const ID_STEP: u64 = 1 << NODE_BITS;
const EPOCH_2020_NS: u128 = 1_577_836_800_000_000_000;

pub struct IdGenerator {
    next_sequence: AtomicU64,
    node_id: u64,
}

impl IdGenerator {
    pub fn new(node_id: u16) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let start = (now.saturating_sub(EPOCH_2020_NS) >> 6) as u64;
        IdGenerator {
            next_sequence: AtomicU64::new(start),
            node_id: node_id as u64 & (ID_STEP - 1),
        }
    }

    /// Reserves `n` IDs and returns the first; the i-th is `first + i * ID_STEP`.
    pub fn reserve(&self, n: u64) -> u64 {
        let seq = self.next_sequence.fetch_add(n, Ordering::Relaxed);
        (seq << NODE_BITS) | self.node_id
    }
}

/// Nanoseconds since the Unix epoch, the unit of a message's timestamp.
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_do_not_overlap_and_keep_the_node() {
        let ids = IdGenerator::new(7);
        let a = ids.reserve(3);
        let b = ids.reserve(1);
        assert_eq!(b, a + 3 * ID_STEP);
        assert_eq!(a % ID_STEP, 7);
    }
}
