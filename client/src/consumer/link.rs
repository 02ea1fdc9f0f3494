//! A live nsqd connection as its messages and flow control see it: where
//! their commands go.
//!
//! Commands (FIN, REQ, TOUCH, RDY, NOP, CLS) are encoded straight into the
//! link's outbox. Its writer task wakes when the outbox stops being empty
//! and writes everything gathered by then in one go, so that the answers to
//! a whole read usually leave in one write, with one wake-up. A handler
//! worker goes further and gathers the automatic FINs of a batch
//! ([`Finishes`]) before they enter the outbox.

use super::{Inner, Signal, Tally};
use crate::conn::FrameWriter;
use crate::protocol::{Command, MessageId};
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
        self.enqueue(|commands| cmd.encode(commands));
    }

    fn enqueue(&self, encode: impl FnOnce(&mut BytesMut)) {
        let mut outbox = self.outbox();
        if !outbox.open {
            return;
        }
        let was_empty = outbox.commands.is_empty();
        encode(&mut outbox.commands);
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
        if signal == Signal::Backoff || self.backing_off() {
            if let Some(consumer) = self.consumer.upgrade() {
                consumer.apply_signal(signal);
            }
        }
        self.answered_count(1);
    }

    /// `count` fewer messages are in flight.
    fn answered_count(&self, count: usize) {
        if self.in_flight.fetch_sub(count, Ordering::SeqCst) == count {
            self.drained.notify_one();
        }
    }

    /// While backing off every success is a signal for flow control.
    pub(crate) fn backing_off(&self) -> bool {
        self.tally.backoff_level.load(Ordering::SeqCst) > 0
    }

    /// The consumer, while it exists.
    pub(crate) fn consumer(&self) -> Option<Arc<Inner>> {
        self.consumer.upgrade()
    }
}

/// How many FINs a worker gathers at most before sending them.
const FINISHES_PER_SEND: usize = 64;

/// The automatic FINs a worker gathers for one link and sends together: one
/// lock, one count and one wake-up for many messages. They go out when
/// [`FINISHES_PER_SEND`] have gathered, before the worker waits on a
/// handler, and when the worker's batch ends (on drop).
pub(crate) struct Finishes<'a> {
    link: &'a Link,
    commands: &'a mut BytesMut,
    count: usize,
}

impl<'a> Finishes<'a> {
    /// Gathers in `commands`, a buffer the worker keeps between batches.
    pub(crate) fn new(link: &'a Link, commands: &'a mut BytesMut) -> Self {
        commands.clear();
        Finishes {
            link,
            commands,
            count: 0,
        }
    }

    pub(crate) fn link(&self) -> &Link {
        self.link
    }

    /// Adds the FIN of a message of this link that has just been answered.
    pub(crate) fn add(&mut self, id: MessageId) {
        Command::Fin(id).encode(self.commands);
        self.count += 1;
        if self.count == FINISHES_PER_SEND {
            self.send();
        }
    }

    pub(crate) fn send(&mut self) {
        if self.count == 0 {
            return;
        }
        let link = self.link;
        link.tally
            .finished
            .fetch_add(self.count as u64, Ordering::Relaxed);
        link.enqueue(|commands| commands.extend_from_slice(self.commands));
        link.answered_count(self.count);
        self.commands.clear();
        self.count = 0;
    }
}

impl Drop for Finishes<'_> {
    fn drop(&mut self) {
        self.send();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathered_finishes_leave_together_and_settle_the_counts() {
        let tally = Arc::new(Tally::default());
        let link = Link::new(1, "nsqd:4150", tally.clone(), Weak::new());
        link.delivered(3);
        let mut fins = BytesMut::new();
        let mut finishes = Finishes::new(&link, &mut fins);
        for n in 1..=3 {
            finishes.add(MessageId::from_u64(n));
        }
        assert!(link.outbox().commands.is_empty(), "nothing sent yet");
        assert_eq!(link.in_flight.load(Ordering::SeqCst), 3);
        drop(finishes);
        let mut expected = BytesMut::new();
        for n in 1..=3 {
            Command::Fin(MessageId::from_u64(n)).encode(&mut expected);
        }
        assert_eq!(link.outbox().commands, expected);
        assert_eq!(link.in_flight.load(Ordering::SeqCst), 0);
        assert_eq!(tally.finished.load(Ordering::SeqCst), 3);
    }
}
