//! Flow control: how `max_in_flight` is spread as RDY over the connections, and
//! the consumer-wide backoff that throttles it after failures.
//!
//! Invariant: the RDY counts sent to all connections never add up to more
//! than `max_in_flight`. Lowering happens before raising, so a new connection
//! takes its share from the others.

use super::{Inner, Link};
use crate::protocol::Command;
use rand::seq::IndexedRandom;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the outcome of a message means for backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// A success: one backoff level down.
    Resume,
    /// A failure: one backoff level up.
    Backoff,
    /// Neither (a requeue without backoff): stay at this level.
    Continue,
}

/// One connection as flow control sees it.
pub(crate) struct Slot {
    pub(crate) link: Arc<Link>,
    /// The RDY last sent.
    rdy: u32,
    /// nsqd's `max_rdy_count` for this connection.
    max_rdy: u32,
    rdy_at: Instant,
}

#[derive(Default)]
pub(crate) struct FlowState {
    pub(crate) conns: HashMap<u64, Slot>,
    pub(crate) max_in_flight: u32,
    pub(crate) backoff_level: u32,
    /// A backoff timer is running; outcomes are ignored until it fires.
    pub(crate) backoff_timer: bool,
}

impl FlowState {
    pub(crate) fn total_rdy(&self) -> u32 {
        self.conns.values().map(|s| s.rdy).sum()
    }

    fn in_backoff(&self) -> bool {
        self.backoff_level > 0 || self.backoff_timer
    }

    /// Each connection's share: `max_in_flight / connections`, at least 1.
    fn per_conn(&self) -> u32 {
        if self.max_in_flight == 0 {
            return 0;
        }
        (self.max_in_flight / self.conns.len().max(1) as u32).max(1)
    }

    pub(crate) fn add(&mut self, link: Arc<Link>, max_rdy: i64) {
        let max_rdy = match max_rdy {
            n if n <= 0 => u32::MAX,
            n => u32::try_from(n).unwrap_or(u32::MAX),
        };
        if max_rdy < self.max_in_flight {
            tracing::warn!(addr = %link.addr, max_rdy, max_in_flight = self.max_in_flight,
                "nsqd's max_rdy_count is below max_in_flight");
        }
        self.conns.insert(
            link.id,
            Slot {
                link,
                rdy: 0,
                max_rdy,
                rdy_at: Instant::now(),
            },
        );
        self.rebalance();
        self.keep_probing();
    }

    pub(crate) fn remove(&mut self, id: u64) {
        if self.conns.remove(&id).is_some() {
            self.rebalance();
            self.keep_probing();
        }
    }

    /// Between backoff timers exactly one connection has RDY 1; if it went
    /// away, another takes its place so that consumption cannot stall.
    fn keep_probing(&mut self) {
        if self.backoff_level > 0 && !self.backoff_timer && self.total_rdy() == 0 {
            self.test_the_waters();
        }
    }

    /// Sends RDY `count` to connection `id`, lowered to its max_rdy_count and
    /// to what the budget leaves.
    fn update(&mut self, id: u64, count: u32) {
        let others = self.total_rdy() - self.conns.get(&id).map_or(0, |s| s.rdy);
        let budget = self.max_in_flight.saturating_sub(others);
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        let count = count.min(slot.max_rdy).min(budget);
        if count != slot.rdy {
            slot.rdy = count;
            slot.rdy_at = Instant::now();
            slot.link.send(&Command::Rdy(count));
        }
    }

    /// Gives every connection its share, unless backing off.
    pub(crate) fn rebalance(&mut self) {
        if self.in_backoff() {
            return;
        }
        let target = self.per_conn();
        let mut ids: Vec<(bool, u64)> = self
            .conns
            .iter()
            .map(|(&id, slot)| (slot.rdy <= target, id))
            .collect();
        // Lower first (false sorts first), then raise.
        ids.sort_unstable();
        for (_, id) in ids {
            self.update(id, target);
        }
    }

    pub(crate) fn set_all(&mut self, count: u32) {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.update(id, count);
        }
    }

    /// When connections outnumber `max_in_flight` (or while backing off with
    /// several), RDY moves around: idle connections give theirs back and the
    /// free budget goes as RDY 1 to connections picked at random.
    pub(crate) fn redistribute(&mut self, idle_timeout: Duration, rdy_timeout: Duration) {
        let n = self.conns.len() as u32;
        if !(n > self.max_in_flight || (self.in_backoff() && n > 1)) {
            return;
        }
        if self.backoff_timer {
            return;
        }
        let now = Instant::now();
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for &id in &ids {
            let slot = &self.conns[&id];
            if slot.rdy > 0
                && (now.duration_since(slot.link.last_message()) > idle_timeout
                    || now.duration_since(slot.rdy_at) > rdy_timeout)
            {
                self.update(id, 0);
            }
        }
        let limit = if self.in_backoff() {
            1
        } else {
            self.max_in_flight
        };
        let mut free = limit.saturating_sub(self.total_rdy());
        let mut candidates: Vec<u64> = ids
            .into_iter()
            .filter(|id| self.conns[id].rdy == 0)
            .collect();
        let mut rng = rand::rng();
        while free > 0 {
            let Some(&id) = candidates.choose(&mut rng) else {
                break;
            };
            candidates.retain(|&c| c != id);
            self.update(id, 1);
            free -= 1;
        }
    }

    /// Applies a message outcome. Returns the backoff to wait, if one starts.
    pub(crate) fn signal(&mut self, signal: Signal, inner: &Inner) -> Option<Duration> {
        if self.backoff_timer {
            return None;
        }
        let config = &inner.config;
        let mut changed = false;
        match signal {
            Signal::Resume if self.backoff_level > 0 => {
                self.backoff_level -= 1;
                changed = true;
            }
            // The level's ceiling, not a jittered draw, decides whether it
            // may grow: with full_jitter the level stays bounded too.
            Signal::Backoff
                if config.backoff_duration(self.backoff_level + 1)
                    <= config.max_backoff_duration =>
            {
                self.backoff_level += 1;
                changed = true;
            }
            _ => {}
        }
        if changed {
            inner
                .tally
                .backoff_level
                .store(self.backoff_level, Ordering::SeqCst);
        }
        if self.backoff_level == 0 {
            if changed {
                tracing::info!("backoff over; resuming full RDY");
                self.rebalance();
            }
            return None;
        }
        let wait = config.backoff_wait(self.backoff_level);
        tracing::info!(level = self.backoff_level, ?wait, "backing off");
        self.backoff_timer = true;
        self.set_all(0);
        Some(wait)
    }

    /// The backoff timer fired: let one message through on a random connection.
    /// Returns false when there is no connection to try.
    pub(crate) fn test_the_waters(&mut self) -> bool {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        let Some(&id) = ids.choose(&mut rand::rng()) else {
            return false;
        };
        self.backoff_timer = false;
        self.update(id, 1);
        true
    }
}
