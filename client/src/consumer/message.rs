//! A delivered message and the ways to answer it.

use super::{Inner, Link, Signal};
use crate::protocol::{self, Command, MessageId};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A message delivered to a [`Handler`](super::Handler).
///
/// Cloning is cheap and every clone answers the same delivery. The consumer
/// finishes it when the handler returns `Ok` and requeues it on `Err`, unless the
/// handler called [`Message::disable_auto_response`] to answer it itself with
/// [`finish`](Message::finish), [`requeue`](Message::requeue) or
/// [`touch`](Message::touch). Only the first answer counts; a message dropped
/// unanswered is requeued at once.
#[derive(Clone)]
pub struct Message(Arc<Delivery>);

struct Delivery {
    message: protocol::Message,
    link: Arc<Link>,
    consumer: Weak<Inner>,
    responded: AtomicBool,
    auto_response: AtomicBool,
}

impl Message {
    pub(crate) fn new(message: protocol::Message, link: Arc<Link>, consumer: Weak<Inner>) -> Self {
        Message(Arc::new(Delivery {
            message,
            link,
            consumer,
            responded: AtomicBool::new(false),
            auto_response: AtomicBool::new(true),
        }))
    }

    pub fn id(&self) -> MessageId {
        self.0.message.id
    }

    pub fn body(&self) -> &Bytes {
        &self.0.message.body
    }

    /// Deliveries so far, this one included.
    pub fn attempts(&self) -> u16 {
        self.0.message.attempts
    }

    /// Nanoseconds since the Unix epoch at which nsqd accepted the message.
    pub fn timestamp(&self) -> i64 {
        self.0.message.timestamp
    }

    /// The nsqd (`host:port`) that delivered the message.
    pub fn nsqd_address(&self) -> &str {
        &self.0.link.addr
    }

    /// Leaves answering this message to the handler.
    pub fn disable_auto_response(&self) {
        self.0.auto_response.store(false, Ordering::SeqCst);
    }

    pub fn is_auto_response_enabled(&self) -> bool {
        self.0.auto_response.load(Ordering::SeqCst)
    }

    pub fn has_responded(&self) -> bool {
        self.0.responded.load(Ordering::SeqCst)
    }

    /// Tells nsqd the message is done (FIN). Counts as a success for backoff.
    pub fn finish(&self) {
        self.0.respond(Command::Fin(self.id()), Signal::Resume);
    }

    /// Puts the message back (REQ) after `delay`, or after the configured
    /// `default_requeue_delay × attempts` when `None`; counts as a failure for
    /// backoff.
    pub fn requeue(&self, delay: Option<Duration>) {
        self.0.requeue(delay, Signal::Backoff);
    }

    /// Like [`Message::requeue`] but leaves the consumer's backoff alone.
    pub fn requeue_without_backoff(&self, delay: Option<Duration>) {
        self.0.requeue(delay, Signal::Continue);
    }

    /// Resets the message's timeout in nsqd (TOUCH), for long work.
    pub fn touch(&self) {
        if !self.has_responded() {
            let _ = self.0.link.commands.send(Command::Touch(self.id()));
        }
    }
}

impl Delivery {
    fn requeue(&self, delay: Option<Duration>, signal: Signal) {
        let delay = match (delay, self.consumer.upgrade()) {
            (Some(delay), _) => delay,
            (None, Some(consumer)) => consumer.config.requeue_delay(self.message.attempts),
            (None, None) => Duration::ZERO,
        };
        let id = self.message.id;
        self.respond(Command::Req { id, delay }, signal);
    }

    fn respond(&self, cmd: Command, signal: Signal) {
        if self.responded.swap(true, Ordering::SeqCst) {
            return;
        }
        let finished = matches!(cmd, Command::Fin(_));
        // If the connection is gone nsqd requeues the message itself.
        let _ = self.link.commands.send(cmd);
        self.link.message_done();
        if let Some(consumer) = self.consumer.upgrade() {
            consumer.message_answered(finished, signal);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.responded.load(Ordering::SeqCst) {
            tracing::warn!(id = %self.message.id, "message dropped without an answer; requeueing it");
            self.requeue(Some(Duration::ZERO), Signal::Continue);
        }
    }
}
