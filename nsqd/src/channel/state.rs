//! A channel's state behind its one lock: what waits (its own queue, or a
//! cursor over the topic's log), what is in flight with its deadlines, what
//! is deferred, and its consumers.

use super::cursor::Cursor;
use super::dead::{DeadLetters, REVIVED};
use super::in_flight::InFlightTable;
use super::InFlightError;
use crate::client_conn::ClientConn;
use crate::e2e::E2eLatency;
use crate::message::Message;
use crate::queue::{BoundedQueue, Item};
use rustc_hash::FxHashMap;
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

pub(super) struct InFlight {
    pub(super) msg: Message,
    /// The message's seq in the topic log (log mode; 0 otherwise).
    pub(super) seq: u64,
    pub(super) client_id: u64,
    pub(super) deadline: Instant,
    pub(super) delivered_at: Instant,
}

pub(super) struct Deferred {
    pub(super) due: Instant,
    /// Ties broken in deferral order.
    pub(super) order: u64,
    /// As `InFlight::seq`.
    pub(super) seq: u64,
    pub(super) msg: Message,
}

impl PartialEq for Deferred {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Deferred {}
impl PartialOrd for Deferred {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deferred {
    /// Reversed, so that the max-heap pops the earliest due first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.order).cmp(&(self.due, self.order))
    }
}

/// What waits to be delivered: a queue of the channel's own, or (log mode)
/// a cursor over the topic's log.
pub(super) enum Queue {
    Memory(BoundedQueue),
    Log(Box<Cursor>),
}

pub(super) struct State {
    pub(super) queue: Queue,
    /// Requeued dead letters (seqs with [`REVIVED`]), served first.
    pub(super) revived: VecDeque<(u64, Message)>,
    pub(super) dead: Arc<DeadLetters>,
    pub(super) in_flight: InFlightTable,
    /// (deadline, id) of in-flight messages. FIN leaves stale entries behind;
    /// they are skipped when popped and purged when they outnumber the live ones.
    pub(super) timeouts: BinaryHeap<Reverse<(Instant, u64)>>,
    pub(super) deferred: BinaryHeap<Deferred>,
    pub(super) deferred_order: u64,
    pub(super) clients: FxHashMap<u64, Arc<ClientConn>>,
    /// When the timer task will next wake by itself; `None` if it waits for a nudge.
    pub(super) timer_wake: Option<Instant>,
    pub(super) e2e: Option<E2eLatency>,
    pub(super) exiting: bool,
}

impl State {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.timeouts.peek().map(|Reverse((t, _))| *t);
        let deferred = self.deferred.peek().map(|d| d.due);
        match (timeout, deferred) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when the timer task must be woken to honour `deadline`.
    pub(super) fn deadline_needs_timer(&self, deadline: Instant) -> bool {
        self.timer_wake.is_none_or(|wake| deadline < wake)
    }

    pub(super) fn defer(&mut self, seq: u64, msg: Message, due: Instant) -> bool {
        self.deferred_order += 1;
        self.deferred.push(Deferred {
            due,
            order: self.deferred_order,
            seq,
            msg,
        });
        self.deadline_needs_timer(due)
    }

    /// Puts a message back in line (REQ 0, timeout, a consumer gone, a
    /// deferral due); true when the line was empty. `record`: the journal
    /// learns the attempts (log mode). If the disk refuses it, it stays in
    /// memory rather than being lost.
    pub(super) fn requeue_now(&mut self, seq: u64, msg: Message, record: bool) -> bool {
        if seq & REVIVED != 0 {
            if record {
                self.dead.requeue_revived(seq, msg.attempts, None);
            }
            self.revived.push_back((seq, msg));
            return self.revived.len() == 1;
        }
        match &mut self.queue {
            Queue::Memory(queue) => {
                let was_empty = queue.is_empty();
                if let Err(e) = queue.push(Item::One(msg.clone())) {
                    tracing::error!(error = %e, "requeue to disk failed; keeping the message in memory");
                    queue.push_front(Item::One(msg));
                }
                was_empty
            }
            Queue::Log(cursor) => {
                let was_empty = !cursor.has_ready();
                cursor.requeue(seq, msg, record);
                was_empty
            }
        }
    }

    pub(super) fn depth(&self) -> usize {
        self.revived.len()
            + match &self.queue {
                Queue::Memory(queue) => queue.depth(),
                Queue::Log(cursor) => cursor.depth(),
            }
    }

    /// A message taken for delivery is finished without one (`sample_rate`).
    pub(super) fn finish_seq(&self, seq: u64) {
        if seq & REVIVED != 0 {
            self.dead.finish_revived(seq);
        } else if let Queue::Log(cursor) = &self.queue {
            cursor.finish(seq);
        }
    }

    /// A message taken for delivery becomes a dead letter instead. In log
    /// mode its seq is finished once the dead letter is on disk.
    pub(super) fn bury(&self, seq: u64, msg: Message) {
        if seq & REVIVED != 0 {
            self.dead.kill_revived(seq, msg.attempts);
            return;
        }
        let finish = match &self.queue {
            Queue::Log(cursor) => Some((cursor.journal().clone(), seq)),
            Queue::Memory(_) => None,
        };
        self.dead.kill(msg, finish);
    }

    pub(super) fn take_in_flight(
        &mut self,
        client_id: u64,
        id: u64,
    ) -> Result<InFlight, InFlightError> {
        let entry = match self.in_flight.remove_if(id, |e| e.client_id == client_id) {
            None => return Err(InFlightError::NotInFlight),
            Some(Err(())) => return Err(InFlightError::NotOwner),
            Some(Ok(entry)) => entry,
        };
        // Purging the stale entries costs a pass over those in flight: with
        // four stale to one live it is a third of an entry per FIN.
        if self.timeouts.len() > 4 * self.in_flight.len() + 1024 {
            let mut heap = std::mem::take(&mut self.timeouts).into_vec();
            heap.clear();
            heap.extend(
                self.in_flight
                    .iter()
                    .map(|e| Reverse((e.deadline, e.msg.id))),
            );
            self.timeouts = BinaryHeap::from(heap);
        }
        Ok(entry)
    }
}
