//! A live nsqd connection as its messages and flow control see it: where
//! their commands go.
//!
//! Commands (FIN, REQ, TOUCH, RDY, NOP, CLS) are encoded straight into the
//! link's outbox. Its writer task wakes when the outbox stops being empty
//! and writes everything gathered by then in one go, so that the answers to
//! a whole read usually leave in one write, with one wake-up.

use super::{Inner, Signal, Tally};
use crate::conn::FrameWriter;
use crate::protocol::Command;
use bytes::BytesMut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(crate) struct Link {
    pub(crate) id: u64,
    pub(crate) addr: String,
    outbox: Mutex<Outbox>,
    /// The outbox stopped being empty.
    ready: Notify,
    pub(crate) in_flight: AtomicUsize,
    last_message: Mutex<Instant>,
    /// `in_flight` dropped to 0.
    pub(crate) drained: Notify,
    tally: Arc<Tally>,
    consumer: Weak<Inner>,
}

struct Outbox {
    commands: BytesMut,
    /// False once the writer has stopped: commands are then dropped, since
    /// nsqd requeues the in-flight messages of a closed connection itself.
    open: bool,
}

impl Link {
    pub(crate) fn new(id: u64, addr: &str, tally: Arc<Tally>, consumer: Weak<Inner>) -> Link {
        Link {
            id,
            addr: addr.to_string(),
            outbox: Mutex::new(Outbox {
                commands: BytesMut::with_capacity(4096),
                open: true,
            }),
            ready: Notify::new(),
            in_flight: AtomicUsize::new(0),
            last_message: Mutex::new(Instant::now()),
            drained: Notify::new(),
            tally,
            consumer,
        }
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().expect("outbox lock")
    }

    /// Queues `cmd` for the writer.
    pub(crate) fn send(&self, cmd: &Command) {
        let mut outbox = self.outbox();
        if !outbox.open {
            return;
        }
        let was_empty = outbox.commands.is_empty();
        cmd.encode(&mut outbox.commands);
        drop(outbox);
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// `count` more messages are in flight.
    pub(crate) fn delivered(&self, count: usize) {
        self.in_flight.fetch_add(count, Ordering::SeqCst);
        self.tally
            .received
            .fetch_add(count as u64, Ordering::Relaxed);
        *self.last_message.lock().expect("link lock") = Instant::now();
    }

    pub(crate) fn last_message(&self) -> Instant {
        *self.last_message.lock().expect("link lock")
    }

    /// A message was answered with `cmd` (FIN or REQ): counts it, sends it,
    /// and applies its backoff signal.
    pub(crate) fn answered(&self, cmd: &Command, signal: Signal) {
        let counter = match cmd {
            Command::Fin(_) => &self.tally.finished,
            _ => &self.tally.requeued,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.send(cmd);
        // Outside backoff only a failure changes flow control: the common
        // success skips the consumer-wide lock.
        if signal == Signal::Backoff || self.tally.backoff_level.load(Ordering::SeqCst) > 0 {
            if let Some(consumer) = self.consumer.upgrade() {
                consumer.apply_signal(signal);
            }
        }
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.drained.notify_one();
        }
    }

    /// The consumer, while it exists.
    pub(crate) fn consumer(&self) -> Option<Arc<Inner>> {
        self.consumer.upgrade()
    }
}

/// Writes the link's commands as they come. When `dead` fires it writes what
/// is still queued (the last FINs) and closes its side.
pub(crate) async fn write_loop(mut writer: FrameWriter, link: Arc<Link>, dead: CancellationToken) {
    let mut batch = BytesMut::with_capacity(4096);
    loop {
        let closing = tokio::select! {
            _ = link.ready.notified() => false,
            _ = dead.cancelled() => true,
        };
        {
            let mut outbox = link.outbox();
            outbox.open = !closing;
            std::mem::swap(&mut outbox.commands, &mut batch);
        }
        if !batch.is_empty() {
            writer.push_encoded(&batch);
            batch.clear();
            if let Err(e) = writer.flush().await {
                tracing::warn!(addr = %link.addr, error = %e, "write failed");
                link.outbox().open = false;
                break;
            }
        }
        if closing {
            break;
        }
    }
    dead.cancel();
    writer.shutdown().await;
}
