//! What the application plugs into a consumer.

use super::Message;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The error a handler returns; the message is then requeued.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Handles the messages of a [`Consumer`](super::Consumer).
///
/// Any `Fn(Message) -> impl Future<Output = Result<(), E>>` closure is a
/// handler; implement the trait yourself to also get the failure hook.
pub trait Handler: Send + Sync + 'static {
    /// Processes one message. `Ok` finishes it, `Err` requeues it with a
    /// growing delay and counts toward backoff (unless the handler answered
    /// the message itself).
    fn handle(&self, message: Message) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Called instead of `handle` for a message delivered more than
    /// `max_attempts` times; the consumer then finishes it. This is where
    /// dead-lettering goes.
    fn failed(&self, message: &Message) {
        tracing::warn!(
            id = %message.id(),
            attempts = message.attempts(),
            "message exceeded max_attempts; finishing it"
        );
    }
}

impl<F, Fut, E> Handler for F
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Into<BoxError>,
{
    fn handle(&self, message: Message) -> impl Future<Output = Result<(), BoxError>> + Send {
        let fut = self(message);
        async move { fut.await.map_err(Into::into) }
    }
}

pub(crate) type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// [`Handler`] made object-safe, so that the consumer is not generic.
pub(crate) trait DynHandler: Send + Sync {
    fn handle(&self, message: Message) -> HandlerFuture<'_>;
    fn failed(&self, message: &Message);
}

impl<H: Handler> DynHandler for H {
    fn handle(&self, message: Message) -> HandlerFuture<'_> {
        Box::pin(Handler::handle(self, message))
    }

    fn failed(&self, message: &Message) {
        Handler::failed(self, message)
    }
}

/// Turns a panic inside a handler into an error, so that the message is
/// requeued and the worker lives on.
pub(crate) struct CatchUnwind<'a>(pub(crate) HandlerFuture<'a>);

impl Future for CatchUnwind<'_> {
    type Output = Result<(), BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(_) => Poll::Ready(Err("handler panicked".into())),
        }
    }
}
