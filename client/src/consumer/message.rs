//! A delivered message and the ways to answer it.

use super::link::Finishes;
use super::{Link, Signal};
use crate::protocol::{self, Command, MessageId};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A message delivered to a [`Handler`](super::Handler).
///
/// Cloning is cheap and every clone answers the same delivery. The consumer
/// finishes it when the handler returns `Ok` and requeues it on `Err`, unless the
/// handler called [`Message::disable_auto_response`] to answer it itself with
/// [`finish`](Message::finish), [`requeue`](Message::requeue) or
/// [`touch`](Message::touch). Only the first answer counts; a message dropped
/// unanswered is requeued at once.
///
/// ```no_run
/// use std::time::Duration;
///
/// /// A slow job: keeps nsqd from timing the message out while it works.
/// async fn transcode(msg: nsq::Message) -> Result<(), std::io::Error> {
///     msg.disable_auto_response();
///     for _step in 0..10 {
///         tokio::time::sleep(Duration::from_secs(20)).await;
///         msg.touch();
///     }
///     if msg.attempts() < 3 {
///         msg.finish();
///     } else {
///         msg.requeue(Some(Duration::from_secs(60)));
///     }
///     Ok(())
/// }
/// # fn run(consumer: &nsq::Consumer) -> nsq::Result<()> {
/// consumer.add_handler(transcode)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Message(Arc<Delivery>);

struct Delivery {
    message: protocol::WireMessage,
    link: Arc<Link>,
    responded: AtomicBool,
    auto_response: AtomicBool,
}

impl Message {
    pub(crate) fn new(message: protocol::WireMessage, link: Arc<Link>) -> Self {
        Message(Arc::new(Delivery {
            message,
            link,
            responded: AtomicBool::new(false),
            auto_response: AtomicBool::new(true),
        }))
    }

    /// A message for the next delivery, made in the allocation of `done`
    /// when that one was answered and nothing else holds it: a busy worker
    /// then allocates once per batch rather than once per message.
    pub(crate) fn reuse(
        done: Option<Message>,
        message: protocol::WireMessage,
        link: &Arc<Link>,
    ) -> Self {
        if let Some(mut done) = done {
            if let Some(delivery) = Arc::get_mut(&mut done.0) {
                if *delivery.responded.get_mut() {
                    delivery.message = message;
                    if !Arc::ptr_eq(&delivery.link, link) {
                        delivery.link = link.clone();
                    }
                    *delivery.responded.get_mut() = false;
                    *delivery.auto_response.get_mut() = true;
                    return done;
                }
            }
        }
        Message::new(message, link.clone())
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

    /// [`Message::finish`] with the FIN gathered into the worker's
    /// `finishes`, which belong to this message's link.
    pub(crate) fn finish_into(&self, finishes: &mut Finishes<'_>) {
        debug_assert!(std::ptr::eq(finishes.link(), &*self.0.link));
        if finishes.link().backing_off() {
            self.finish();
        } else if !self.0.responded.swap(true, Ordering::SeqCst) {
            finishes.add(self.id());
        }
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
            self.0.link.send(&Command::Touch(self.id()));
        }
    }
}

impl Delivery {
    fn requeue(&self, delay: Option<Duration>, signal: Signal) {
        let delay = match (delay, self.link.consumer()) {
            (Some(delay), _) => delay,
            (None, Some(consumer)) => consumer.config.requeue_delay(self.message.attempts),
            (None, None) => Duration::ZERO,
        };
        let id = self.message.id;
        self.respond(Command::Req { id, delay }, signal);
    }

    fn respond(&self, cmd: Command, signal: Signal) {
        if !self.responded.swap(true, Ordering::SeqCst) {
            self.link.answered(&cmd, signal);
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
