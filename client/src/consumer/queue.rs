//! The queue between the connections and the handler workers.
//!
//! A connection adds the messages of one read as one batch, so that the lock,
//! the wake-up and the reference to the connection are paid per read rather
//! than per message. The queue ends once the consumer has closed it and every
//! connection has let go of it; workers take what is left before they stop.

use super::Link;
use crate::protocol;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Messages read from one connection. The worker that takes them makes each
/// a [`Message`](super::Message), so that deliveries are allocated on the
/// thread that frees them.
pub(crate) struct Batch {
    pub(crate) link: Arc<Link>,
    pub(crate) messages: VecDeque<protocol::WireMessage>,
}

pub(crate) struct Queue {
    state: Mutex<State>,
    ready: Notify,
}

struct State {
    batches: VecDeque<Batch>,
    /// Connections that may still add messages.
    feeders: usize,
    /// Whether new connections may still start feeding.
    open: bool,
}

impl Queue {
    pub(crate) fn new() -> Queue {
        Queue {
            state: Mutex::new(State {
                batches: VecDeque::new(),
                feeders: 0,
                open: true,
            }),
            ready: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("queue lock")
    }

    /// A handle for one connection to add messages with; `None` once closed.
    pub(crate) fn feeder(&self) -> Option<Feeder<'_>> {
        let mut state = self.state();
        if !state.open {
            return None;
        }
        state.feeders += 1;
        Some(Feeder(self))
    }

    /// No new feeders; the workers stop when the current ones are gone and
    /// the queue is empty.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.open = false;
        if state.feeders == 0 {
            drop(state);
            self.ready.notify_waiters();
        }
    }

    /// Waits for the oldest batch and takes up to `max` of its messages.
    /// Returns `None` when the queue has ended.
    pub(crate) async fn take(&self, max: usize) -> Option<Batch> {
        loop {
            // Registered before looking, so that no wake-up falls in between.
            let notified = self.ready.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state();
                if let Some(oldest) = state.batches.front_mut() {
                    let batch = if oldest.messages.len() > max {
                        Batch {
                            link: oldest.link.clone(),
                            messages: oldest.messages.drain(..max).collect(),
                        }
                    } else {
                        state.batches.pop_front().expect("the oldest batch")
                    };
                    let more = !state.batches.is_empty();
                    drop(state);
                    if more {
                        // Hand the rest to another worker.
                        self.ready.notify_one();
                    }
                    return Some(batch);
                }
                if !state.open && state.feeders == 0 {
                    return None;
                }
            }
            notified.await;
        }
    }
}

/// One connection's right to add messages; the queue cannot end while it lives.
pub(crate) struct Feeder<'a>(&'a Queue);

impl Feeder<'_> {
    pub(crate) fn push(&self, batch: Batch) {
        self.0.state().batches.push_back(batch);
        self.0.ready.notify_one();
    }
}

impl Drop for Feeder<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.feeders -= 1;
        if !state.open && state.feeders == 0 {
            drop(state);
            self.0.ready.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MessageId;
    use std::sync::Weak;
    use std::time::Duration;

    fn batch(link: &Arc<Link>, ids: impl IntoIterator<Item = u64>) -> Batch {
        let messages = ids
            .into_iter()
            .map(|n| protocol::WireMessage {
                id: MessageId::from_u64(n),
                timestamp: 0,
                attempts: 1,
                body: Default::default(),
            })
            .collect();
        Batch {
            link: link.clone(),
            messages,
        }
    }

    fn ids(batch: &Batch) -> Vec<MessageId> {
        batch.messages.iter().map(|m| m.id).collect()
    }

    fn link() -> Arc<Link> {
        Arc::new(Link::new(1, "nsqd:4150", Arc::default(), Weak::new()))
    }

    #[tokio::test]
    async fn workers_take_in_order_and_up_to_their_limit() {
        let link = link();
        let queue = Queue::new();
        let feeder = queue.feeder().unwrap();
        feeder.push(batch(&link, 1..=3));
        feeder.push(batch(&link, [4]));
        let first = queue.take(1).await.unwrap();
        assert_eq!(ids(&first), [MessageId::from_u64(1)]);
        assert!(Arc::ptr_eq(&first.link, &link));
        let rest = queue.take(usize::MAX).await.unwrap();
        assert_eq!(ids(&rest), [MessageId::from_u64(2), MessageId::from_u64(3)]);
        assert_eq!(ids(&queue.take(9).await.unwrap()), [MessageId::from_u64(4)]);
    }

    #[tokio::test]
    async fn a_waiting_worker_wakes_for_a_push_and_ends_with_the_queue() {
        let link = link();
        let queue = Arc::new(Queue::new());
        let worker = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut taken = Vec::new();
                while let Some(batch) = queue.take(1).await {
                    taken.extend(ids(&batch));
                }
                taken
            })
        };
        let feeder = queue.feeder().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        feeder.push(batch(&link, [7]));
        // Closed, but a live feeder may still add messages.
        queue.close();
        assert!(queue.feeder().is_none(), "no new feeders once closed");
        feeder.push(batch(&link, [8]));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!worker.is_finished());
        drop(feeder);
        let taken = tokio::time::timeout(Duration::from_secs(5), worker)
            .await
            .expect("the worker stops once the last feeder is gone")
            .unwrap();
        assert_eq!(taken, [MessageId::from_u64(7), MessageId::from_u64(8)]);
    }
}
