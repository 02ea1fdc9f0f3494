//! A channel's end (deletion, shutdown) and what it reports (stats).

use super::dead::REVIVED;
use super::state::Queue;
use super::Channel;
use crate::client_conn::ClientConn;
use crate::diskqueue::{self, DiskConfig};
use crate::e2e::Samples;
use crate::message::Message;
use crate::queue::{instant_to_unix, Backend, BoundedQueue};
use nsq::api::{ChannelStats, ClientStats};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Channel {
    /// Stops the channel and disconnects its consumers.
    pub(super) fn close(&self) {
        let clients: Vec<Arc<ClientConn>> = {
            let mut st = self.state.lock();
            st.exiting = true;
            st.clients.values().cloned().collect()
        };
        self.exit.cancel();
        for client in clients {
            client.close();
        }
    }

    /// The channel was deleted: stop, and remove its messages (or its
    /// journal) from disk. Blocking.
    pub fn delete(&self, disk: &DiskConfig) {
        self.close();
        let mut st = self.state.lock();
        let queue = std::mem::replace(
            &mut st.queue,
            Queue::Memory(BoundedQueue::new(0, Backend::Discard { dropped: 0 })),
        );
        drop(st);
        let removed = match queue {
            Queue::Memory(queue) => match queue.into_backend() {
                Backend::Disk(q) => q.delete(),
                Backend::Discard { .. } => Ok(()),
            },
            Queue::Log(cursor) => cursor.journal().delete(),
        };
        if let Err(e) = removed.and(self.dead.delete()) {
            tracing::warn!(channel = %self.name, error = %e, "failed to remove the channel's files");
        }
        diskqueue::remove_front(&disk.dir, &self.queue_name());
    }

    /// nsqd is stopping: save everything held in memory (queued, in flight,
    /// deferred with its deadline) and make the disk queue durable.
    pub fn shutdown(&self, disk: &DiskConfig) -> std::io::Result<()> {
        self.close();
        // Dead letters, and requeued ones until finished, live in their own
        // file: not saved with the queue below. Their journal FINs come
        // before the journal closes.
        let dead = self.dead.close();
        let mut st = self.state.lock();
        let st = &mut *st;
        let queue = match &mut st.queue {
            // The log and the journal hold everything; the writer flushes them.
            Queue::Log(cursor) => {
                cursor.journal().close();
                return dead;
            }
            Queue::Memory(_) if self.ephemeral => return dead,
            Queue::Memory(queue) => queue,
        };
        // In-flight messages first: they were next in line before anything queued.
        let mut saved: Vec<(Message, Option<i64>)> = st
            .in_flight
            .drain()
            .filter(|e| e.seq & REVIVED == 0)
            .map(|e| (e.msg, None))
            .collect();
        for item in queue.drain_memory() {
            item.for_each_message(|m, at| {
                saved.push((m.clone(), at));
                Ok(())
            })?;
        }
        saved.extend(
            st.deferred
                .drain()
                .filter(|d| d.seq & REVIVED == 0)
                .map(|d| (d.msg, Some(instant_to_unix(d.due)))),
        );
        diskqueue::save_front(&disk.dir, &self.queue_name(), &saved)?;
        queue.backend().sync().and(dead)
    }

    /// Has the disk queue made durable if it has unsynced writes, on the
    /// sync thread (a cursor's journal is the log writer's).
    pub fn sync(&self) -> std::io::Result<()> {
        match &mut self.state.lock().queue {
            Queue::Memory(queue) => queue.backend().sync_soon(),
            Queue::Log(_) => Ok(()),
        }
    }

    pub(super) fn queue_name(&self) -> String {
        format!("{}:{}", self.topic_name, self.name)
    }

    pub fn collect_e2e(&self, into: &mut Samples) {
        if let Some(e2e) = self.state.lock().e2e.as_mut() {
            e2e.collect(into);
        }
    }

    pub fn stats(&self, include_clients: bool, topic_filter: &str) -> ChannelStats {
        let mut samples = Samples::default();
        self.collect_e2e(&mut samples);
        let st = self.state.lock();
        let clients: Option<Vec<ClientStats>> =
            include_clients.then(|| st.clients.values().map(|c| c.stats(topic_filter)).collect());
        let (backend_depth, corrupt, disk_bytes) = match &st.queue {
            Queue::Memory(queue) => (
                queue.backend_depth(),
                queue.corrupt_bytes(),
                queue.backend_bytes(),
            ),
            // The topic's log holds the bytes, and reports them.
            Queue::Log(cursor) => (cursor.disk_depth(), 0, 0),
        };
        ChannelStats {
            channel_name: self.name.clone(),
            depth: st.depth() as i64,
            backend_depth: backend_depth as i64,
            in_flight_count: st.in_flight.len() as i64,
            deferred_count: st.deferred.len() as i64,
            message_count: self.message_count.load(Ordering::Relaxed),
            requeue_count: self.requeue_count.load(Ordering::Relaxed),
            timeout_count: self.timeout_count.load(Ordering::Relaxed),
            client_count: st.clients.len() as i64,
            clients,
            paused: self.is_paused(),
            e2e_processing_latency: samples.report(&self.config.e2e_percentiles),
            backend_corrupt_bytes: corrupt,
            backend_bytes: disk_bytes,
            dead_count: self.dead_count(),
            expired_count: self.expired_count(),
            max_attempts: self.limits().0,
            msg_ttl_ms: self.limits().1.as_millis() as u64,
        }
    }
}
