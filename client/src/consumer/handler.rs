//! What the application plugs into a consumer, and the workers that run it.

use super::link::Finishes;
use super::{Inner, Message};
use bytes::BytesMut;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;

/// The error a handler returns; the message is then requeued.
///
/// ```
/// let err: nsq::consumer::BoxError = "malformed order".into();
/// assert_eq!(err.to_string(), "malformed order");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Handles the messages of a [`Consumer`](super::Consumer).
///
/// Any `Fn(Message) -> impl Future<Output = Result<(), E>>` closure is a
/// handler; implement the trait yourself to also get the failure hook.
///
/// ```no_run
/// use nsq::consumer::BoxError;
/// use nsq::{Handler, Message};
///
/// /// Stores orders; gives up on the ones that keep failing.
/// struct Orders {
///     dead_letters: std::sync::Mutex<Vec<bytes::Bytes>>,
/// }
///
/// impl Handler for Orders {
///     async fn handle(&self, message: Message) -> Result<(), BoxError> {
///         let order = std::str::from_utf8(message.body())?;
///         println!("storing {order}");
///         Ok(())
///     }
///
///     fn failed(&self, message: &Message) {
///         self.dead_letters.lock().unwrap().push(message.body().clone());
///     }
/// }
///
/// # fn run(consumer: &nsq::Consumer) -> nsq::Result<()> {
/// consumer.add_handler(Orders { dead_letters: Default::default() })?;
/// # Ok(())
/// # }
/// ```
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

/// Starts a consumer's handler workers. Made where the handler's type is
/// known, so that workers call it directly: no boxed future per message.
pub(crate) type SpawnWorkers = Arc<dyn Fn(&Arc<Inner>) -> Vec<JoinHandle<()>> + Send + Sync>;

pub(crate) fn spawner<H: Handler>(handler: H, concurrency: usize) -> SpawnWorkers {
    let handler = Arc::new(handler);
    Arc::new(move |inner: &Arc<Inner>| {
        (0..concurrency)
            .map(|_| tokio::spawn(work(inner.clone(), handler.clone(), concurrency)))
            .collect()
    })
}

/// One handler worker: takes messages off the queue until it ends. A lone
/// worker takes all that are waiting; with several, each takes one at a
/// time so that a slow handler never sits on messages another worker could
/// be handling.
async fn work<H: Handler>(inner: Arc<Inner>, handler: Arc<H>, concurrency: usize) {
    let max = if concurrency == 1 { usize::MAX } else { 1 };
    let mut fins = BytesMut::new();
    while let Some(batch) = inner.queue.take(max).await {
        let mut finishes = Finishes::new(&batch.link, &mut fins);
        let mut done = None;
        for message in batch.messages {
            let msg = Message::reuse(done.take(), message, &batch.link);
            handle(&inner, handler.as_ref(), &msg, &mut finishes).await;
            done = Some(msg);
        }
    }
}

async fn handle<H: Handler>(
    inner: &Inner,
    handler: &H,
    msg: &Message,
    finishes: &mut Finishes<'_>,
) {
    let max_attempts = inner.config.max_attempts;
    if max_attempts > 0 && msg.attempts() > max_attempts {
        inner.tally.given_up.fetch_add(1, Ordering::Relaxed);
        handler.failed(msg);
        msg.finish_into(finishes);
        return;
    }
    // A closure handler runs its synchronous part when called: catch there too.
    let result = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle(msg.clone()))) {
        Ok(future) => {
            let mut future = CatchUnwind(std::pin::pin!(future));
            match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut future).poll(cx))).await {
                Poll::Ready(result) => result,
                Poll::Pending => {
                    // The handler waits: the FINs gathered so far should not.
                    finishes.send();
                    future.await
                }
            }
        }
        Err(_) => Err(PANICKED.into()),
    };
    if !msg.is_auto_response_enabled() {
        return;
    }
    match result {
        Ok(()) => msg.finish_into(finishes),
        Err(e) => {
            tracing::warn!(id = %msg.id(), attempts = msg.attempts(), error = %e, "handler failed; requeueing");
            msg.requeue(None);
        }
    }
}

const PANICKED: &str = "handler panicked";

/// Turns a panic inside a handler into an error, so that the message is
/// requeued and the worker lives on.
struct CatchUnwind<F>(F);

impl<F: Future<Output = Result<(), BoxError>> + Unpin> Future for CatchUnwind<F> {
    type Output = Result<(), BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx)))
            .unwrap_or_else(|_| Poll::Ready(Err(PANICKED.into())))
    }
}
