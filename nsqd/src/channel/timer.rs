//! A channel's timer task: in-flight timeouts and deferrals, each at its
//! time, without a periodic scan.

use super::Channel;
use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl Channel {
    /// Requeues expired in-flight messages and releases due deferred ones;
    /// returns when the next deadline falls.
    pub(super) fn process_deadlines(&self, now: Instant) -> Option<Instant> {
        let mut st = self.state.lock();
        let mut owners = Vec::new();
        let mut notify = false;
        while let Some(&Reverse((deadline, id))) = st.timeouts.peek() {
            if deadline > now {
                break;
            }
            st.timeouts.pop();
            // A stale deadline (FIN, TOUCH) leaves the entry alone.
            if let Some(Ok(entry)) = st.in_flight.remove_if(id, |e| e.deadline == deadline) {
                self.timeout_count.fetch_add(1, Ordering::Relaxed);
                if let Some(owner) = st.clients.get(&entry.client_id) {
                    owners.push(owner.clone());
                }
                notify |= st.requeue_now(entry.seq, entry.msg, true);
            }
        }
        while st.deferred.peek().is_some_and(|d| d.due <= now) {
            let d = st.deferred.pop().expect("peeked");
            notify |= st.requeue_now(d.seq, d.msg, false);
        }
        let next = st.next_deadline();
        st.timer_wake = next;
        drop(st);
        for owner in owners {
            owner.message_done();
        }
        if notify {
            self.available.notify_waiters();
        }
        next
    }

    pub(super) async fn run_timer(self: Arc<Self>) {
        loop {
            let nudged = self.timer.notified();
            let next = self.process_deadlines(Instant::now());
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.exit.cancelled() => return,
                _ = nudged => {}
                _ = sleep => {}
            }
        }
    }
}
