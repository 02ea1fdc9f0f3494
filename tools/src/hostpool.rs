//! `--mode` of the relays (`nsq_to_http`, `nsq_to_nsq`): which destination
//! takes the next message.
//!
//! * `round-robin`: strictly in turn, whatever happens.
//! * `hostpool` (the default): in turn among the destinations that work. A
//!   destination that fails is left out, then tried again after 30s, with the
//!   wait doubling up to 15 minutes while it keeps failing; if all have
//!   failed, all are tried again.
//! * `epsilon-greedy`: as `hostpool`, but usually picks a destination at
//!   random weighted by how fast it has been answering, exploring in turn a
//!   fraction of the time (30% at first, shrinking to 1%).
//!
//! These follow upstream (go-hostpool); the response times here are a moving
//! average rather than go-hostpool's five-minute buckets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    RoundRobin,
    HostPool,
    EpsilonGreedy,
    /// Every destination gets every message (`nsq_to_http` only).
    Multicast,
}

impl Mode {
    /// Parses `--mode`. `fan-out` is our alias of upstream's `multicast`.
    pub fn parse(text: &str, multicast_allowed: bool) -> Result<Mode, String> {
        match text {
            "round-robin" => Ok(Mode::RoundRobin),
            "hostpool" => Ok(Mode::HostPool),
            "epsilon-greedy" => Ok(Mode::EpsilonGreedy),
            "multicast" | "fan-out" if multicast_allowed => Ok(Mode::Multicast),
            _ => {
                let extra = if multicast_allowed { ", multicast" } else { "" };
                Err(format!(
                    "invalid --mode {text:?}: use round-robin, hostpool, epsilon-greedy{extra}"
                ))
            }
        }
    }
}

const INITIAL_RETRY_DELAY: Duration = Duration::from_secs(30);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(900);
const INITIAL_EPSILON: f64 = 0.3;
const EPSILON_DECAY: f64 = 0.9;
const MIN_EPSILON: f64 = 0.01;
/// Weight of the newest response time in the moving average.
const AVERAGE_WEIGHT: f64 = 0.1;

/// Picks destinations by index for one of the single-destination modes.
pub struct Balancer {
    mode: Mode,
    count: usize,
    turn: AtomicU64,
    pool: Mutex<Pool>,
}

struct Pool {
    hosts: Vec<Host>,
    next: usize,
    epsilon: f64,
}

#[derive(Clone)]
struct Host {
    dead: bool,
    retry_at: Instant,
    retry_delay: Duration,
    /// Moving average of successful response times in ms; 0 = none yet.
    average_ms: f64,
}

impl Balancer {
    /// A balancer over `count` destinations (at least one).
    pub fn new(mode: Mode, count: usize) -> Balancer {
        let now = Instant::now();
        let host = Host {
            dead: false,
            retry_at: now,
            retry_delay: INITIAL_RETRY_DELAY,
            average_ms: 0.0,
        };
        Balancer {
            mode,
            count: count.max(1),
            turn: AtomicU64::new(0),
            pool: Mutex::new(Pool {
                hosts: vec![host; count.max(1)],
                next: 0,
                epsilon: INITIAL_EPSILON,
            }),
        }
    }

    /// The destination for the next message.
    pub fn pick(&self) -> usize {
        match self.mode {
            Mode::RoundRobin | Mode::Multicast => {
                // As upstream, the counter is bumped first: the first message
                // goes to the second destination.
                let turn = self.turn.fetch_add(1, Ordering::Relaxed) + 1;
                (turn % self.count as u64) as usize
            }
            Mode::HostPool => self
                .pool
                .lock()
                .expect("pool lock")
                .round_robin(Instant::now()),
            Mode::EpsilonGreedy => self.pool.lock().expect("pool lock").epsilon_greedy(
                Instant::now(),
                rand::random(),
                rand::random(),
            ),
        }
    }

    /// Reports how a request to destination `index`, begun at `started`, went.
    pub fn mark(&self, index: usize, started: Instant, ok: bool) {
        if matches!(self.mode, Mode::RoundRobin | Mode::Multicast) {
            return;
        }
        let mut pool = self.pool.lock().expect("pool lock");
        let Some(host) = pool.hosts.get_mut(index) else {
            return;
        };
        if ok {
            host.dead = false;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            host.average_ms = if host.average_ms == 0.0 {
                ms.max(f64::MIN_POSITIVE)
            } else {
                host.average_ms + (ms - host.average_ms) * AVERAGE_WEIGHT
            };
        } else if !host.dead {
            tracing::warn!(index, "destination failed; leaving it out for a while");
            host.dead = true;
            host.retry_delay = INITIAL_RETRY_DELAY;
            host.retry_at = Instant::now() + INITIAL_RETRY_DELAY;
        }
    }
}

impl Pool {
    fn round_robin(&mut self, now: Instant) -> usize {
        let n = self.hosts.len();
        for i in 0..n {
            let index = (self.next + i) % n;
            let host = &mut self.hosts[index];
            if !host.dead || host.retry_at <= now {
                if host.dead {
                    host.retry(now);
                }
                self.next = index + 1;
                return index;
            }
        }
        // Everything is down: try them all again.
        for host in &mut self.hosts {
            host.dead = false;
        }
        self.next = 1;
        0
    }

    /// `explore` and `pick` are uniform in [0, 1).
    fn epsilon_greedy(&mut self, now: Instant, explore: f64, pick: f64) -> usize {
        if explore < self.epsilon {
            self.epsilon = (self.epsilon * EPSILON_DECAY).max(MIN_EPSILON);
            return self.round_robin(now);
        }
        let usable = |h: &Host| (!h.dead || h.retry_at <= now) && h.average_ms > 0.0;
        let total: f64 = self
            .hosts
            .iter()
            .filter(|h| usable(h))
            .map(|h| 1.0 / h.average_ms)
            .sum();
        if total <= 0.0 {
            return self.round_robin(now);
        }
        let mut ceiling = 0.0;
        for (index, host) in self.hosts.iter_mut().enumerate() {
            if !usable(host) {
                continue;
            }
            ceiling += (1.0 / host.average_ms) / total;
            if pick <= ceiling {
                if host.dead {
                    host.retry(now);
                }
                return index;
            }
        }
        self.round_robin(now)
    }
}

impl Host {
    /// Lets one request through to a dead host and waits longer before the next.
    fn retry(&mut self, now: Instant) {
        self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY_DELAY);
        self.retry_at = now + self.retry_delay;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("hostpool", false), Ok(Mode::HostPool));
        assert_eq!(Mode::parse("multicast", true), Ok(Mode::Multicast));
        assert_eq!(Mode::parse("fan-out", true), Ok(Mode::Multicast));
        assert!(Mode::parse("multicast", false).is_err());
        assert!(Mode::parse("random", true).is_err());
    }

    #[test]
    fn round_robin_starts_at_the_second() {
        let b = Balancer::new(Mode::RoundRobin, 3);
        let picks: Vec<usize> = (0..6).map(|_| b.pick()).collect();
        assert_eq!(picks, [1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn hostpool_skips_a_failed_host_until_its_retry() {
        let b = Balancer::new(Mode::HostPool, 2);
        assert_eq!(b.pick(), 0);
        b.mark(0, Instant::now(), false);
        assert_eq!((b.pick(), b.pick(), b.pick()), (1, 1, 1));
        b.mark(0, Instant::now(), true);
        let picks = [b.pick(), b.pick()];
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
    }

    #[test]
    fn hostpool_revives_all_when_all_failed() {
        let b = Balancer::new(Mode::HostPool, 2);
        b.mark(0, Instant::now(), false);
        b.mark(1, Instant::now(), false);
        assert_eq!(b.pick(), 0);
        assert_eq!(b.pick(), 1);
    }

    #[test]
    fn epsilon_greedy_prefers_the_faster_host() {
        let now = Instant::now();
        let mut pool = Pool {
            hosts: vec![
                Host {
                    dead: false,
                    retry_at: now,
                    retry_delay: INITIAL_RETRY_DELAY,
                    average_ms: 1.0,
                },
                Host {
                    dead: false,
                    retry_at: now,
                    retry_delay: INITIAL_RETRY_DELAY,
                    average_ms: 9.0,
                },
            ],
            next: 0,
            epsilon: MIN_EPSILON,
        };
        // Weights 0.9 and 0.1: picks below 0.9 go to the fast host.
        assert_eq!(pool.epsilon_greedy(now, 0.5, 0.85), 0);
        assert_eq!(pool.epsilon_greedy(now, 0.5, 0.95), 1);
        // Exploring goes in turn and shrinks epsilon toward its floor.
        pool.epsilon = 0.3;
        pool.epsilon_greedy(now, 0.0, 0.0);
        assert!((pool.epsilon - 0.27).abs() < 1e-9);
    }
}
