//! Publishing to one nsqd over one pipelined TCP connection.
//!
//! Any number of publishes may be outstanding: a writer task sends commands in
//! the order callers submit them and a reader task matches nsqd's answers to
//! them strictly first-in first-out, which nsqd guarantees per connection.

use crate::config::Config;
use crate::conn::{Connection, FrameReader, FrameWriter};
use crate::error::{Error, ProtocolError, Result};
use crate::protocol::{Command, FrameType, HEARTBEAT, OK};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Commands the writer takes in one batch before flushing.
const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<()>>;
/// A command and, if nsqd answers it, where the answer goes.
type Request = (Command, Option<Reply>);

/// Publishes messages to one nsqd.
///
/// Cheap to share behind an `Arc`; every method takes `&self`. The connection is
/// made on first use and remade on the next publish after it fails.
///
/// ```no_run
/// # async fn run() -> Result<(), nsq::Error> {
/// let producer = nsq::Producer::new("127.0.0.1:4150", nsq::Config::default())?;
/// match producer.publish("events", "hello").await {
///     Ok(()) => {}
///     // nsqd refused it: E_BAD_TOPIC, E_BAD_MESSAGE, ...
///     Err(nsq::Error::Protocol(e)) => eprintln!("refused: {}", e.code),
///     Err(e) => return Err(e),
/// }
/// producer.stop().await;
/// # Ok(())
/// # }
/// ```
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    config: Config,
    conn: tokio::sync::Mutex<Option<Pipeline>>,
    stopped: AtomicBool,
    outstanding: AtomicUsize,
    idle: Notify,
}

/// The live connection as a pipeline: its request queue and the two tasks
/// that write requests and match answers to them.
struct Pipeline {
    requests: mpsc::UnboundedSender<Request>,
    dead: CancellationToken,
    tasks: [JoinHandle<()>; 2],
}

impl Producer {
    /// A producer for the nsqd at `addr` (`host:port` of its TCP listener).
    /// Nothing is connected until the first publish or [`Producer::ping`].
    pub fn new(addr: impl Into<String>, config: Config) -> Result<Producer> {
        config.validate()?;
        Ok(Producer {
            inner: Arc::new(Inner {
                addr: addr.into(),
                config,
                conn: tokio::sync::Mutex::new(None),
                stopped: AtomicBool::new(false),
                outstanding: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        })
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Publishes one message and waits for nsqd's OK.
    pub async fn publish(&self, topic: &str, body: impl Into<Bytes>) -> Result<()> {
        self.request(Command::Pub {
            topic: valid_topic(topic)?,
            body: body.into(),
        })
        .await
    }

    /// Publishes several messages atomically (MPUB) and waits for nsqd's OK.
    pub async fn multi_publish<I, B>(&self, topic: &str, bodies: I) -> Result<()>
    where
        I: IntoIterator<Item = B>,
        B: Into<Bytes>,
    {
        self.request(Command::Mpub {
            topic: valid_topic(topic)?,
            bodies: bodies.into_iter().map(Into::into).collect(),
        })
        .await
    }

    /// Publishes one message that nsqd delivers after `delay` (DPUB).
    pub async fn deferred_publish(
        &self,
        topic: &str,
        delay: Duration,
        body: impl Into<Bytes>,
    ) -> Result<()> {
        self.request(Command::Dpub {
            topic: valid_topic(topic)?,
            delay,
            body: body.into(),
        })
        .await
    }

    /// Connects if needed and sends a NOP, to learn early that nsqd is reachable.
    pub async fn ping(&self) -> Result<()> {
        let _guard = self.enter()?;
        let requests = self.pipeline().await?;
        requests
            .send((Command::Nop, None))
            .map_err(|_| Error::Closed(self.inner.addr.clone()))
    }

    /// Refuses new publishes, waits for the outstanding ones to be answered,
    /// then closes the connection.
    pub async fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inner.outstanding.load(Ordering::SeqCst) == 0 {
                break;
            }
            idle.await;
        }
        if let Some(pipeline) = self.inner.conn.lock().await.take() {
            pipeline.dead.cancel();
            for task in pipeline.tasks {
                let _ = task.await;
            }
        }
    }

    async fn request(&self, cmd: Command) -> Result<()> {
        let _guard = self.enter()?;
        let requests = self.pipeline().await?;
        let (reply, answer) = oneshot::channel();
        requests
            .send((cmd, Some(reply)))
            .map_err(|_| Error::Closed(self.inner.addr.clone()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Error::Closed(self.inner.addr.clone())))
    }

    /// Counts the caller as outstanding unless the producer is stopped.
    fn enter(&self) -> Result<Outstanding<'_>> {
        self.inner.outstanding.fetch_add(1, Ordering::SeqCst);
        let guard = Outstanding(&self.inner);
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        Ok(guard)
    }

    /// The request queue of the live connection, connecting first if there is none.
    async fn pipeline(&self) -> Result<mpsc::UnboundedSender<Request>> {
        let mut conn = self.inner.conn.lock().await;
        if let Some(pipeline) = conn.as_ref() {
            if !pipeline.requests.is_closed() {
                return Ok(pipeline.requests.clone());
            }
        }
        let Connection { reader, writer, .. } =
            Connection::connect(&self.inner.addr, &self.inner.config).await?;
        tracing::debug!(addr = %self.inner.addr, "producer connected");
        let (requests, queue) = mpsc::unbounded_channel();
        let pending = Arc::new(Mutex::new(VecDeque::new()));
        let dead = CancellationToken::new();
        let tasks = [
            tokio::spawn(write_loop(writer, queue, pending.clone(), dead.clone())),
            tokio::spawn(read_loop(
                reader,
                requests.downgrade(),
                pending,
                dead.clone(),
                self.inner.config.read_timeout,
            )),
        ];
        *conn = Some(Pipeline {
            requests: requests.clone(),
            dead,
            tasks,
        });
        Ok(requests)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Ok(mut conn) = self.inner.conn.try_lock() {
            if let Some(pipeline) = conn.take() {
                pipeline.dead.cancel();
            }
        }
    }
}

fn valid_topic(topic: &str) -> Result<String> {
    if crate::protocol::is_valid_topic_name(topic) {
        Ok(topic.to_string())
    } else {
        Err(Error::InvalidTopic(topic.to_string()))
    }
}

struct Outstanding<'a>(&'a Inner);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        if self.0.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

type Pending = Arc<Mutex<VecDeque<Reply>>>;

/// Sends queued commands in batches. A reply slot joins `pending` before its
/// command is written, so the reader always finds it.
async fn write_loop(
    mut writer: FrameWriter,
    mut queue: mpsc::UnboundedReceiver<Request>,
    pending: Pending,
    dead: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            n = queue.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
            _ = dead.cancelled() => break,
        }
        {
            let mut pending = pending.lock().expect("pending lock");
            for (cmd, reply) in batch.drain(..) {
                writer.push(&cmd);
                if let Some(reply) = reply {
                    pending.push_back(reply);
                }
            }
        }
        if let Err(e) = writer.flush().await {
            tracing::warn!(error = %e, "producer connection failed");
            break;
        }
    }
    dead.cancel();
    writer.shutdown().await;
}

/// Matches nsqd's answers to the pending replies and answers heartbeats. When
/// the connection ends, every pending publish fails with the reason.
async fn read_loop(
    mut reader: FrameReader,
    requests: mpsc::WeakUnboundedSender<Request>,
    pending: Pending,
    dead: CancellationToken,
    read_timeout: Duration,
) {
    let addr = reader.addr().to_string();
    let failure = loop {
        let frame = tokio::select! {
            frame = reader.read_frame_within(read_timeout) => frame,
            _ = dead.cancelled() => break None,
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => break Some(e),
        };
        let answer = match frame.frame_type {
            FrameType::Response if frame.data == HEARTBEAT => {
                if let Some(requests) = requests.upgrade() {
                    let _ = requests.send((Command::Nop, None));
                }
                continue;
            }
            FrameType::Response if frame.data == OK => Ok(()),
            FrameType::Error => Err(Error::Protocol(ProtocolError::parse(&frame.data))),
            _ => {
                break Some(Error::Unexpected {
                    addr: addr.clone(),
                    what: format!("{:?} frame on a producer connection", frame.frame_type),
                })
            }
        };
        let Some(reply) = pending.lock().expect("pending lock").pop_front() else {
            break Some(Error::Unexpected {
                addr: addr.clone(),
                what: "an answer to no command".into(),
            });
        };
        let _ = reply.send(answer);
    };
    dead.cancel();
    if let Some(e) = &failure {
        tracing::warn!(addr = %addr, error = %e, "producer connection closed");
    }
    let failure = failure.unwrap_or(Error::Stopped);
    for reply in pending.lock().expect("pending lock").drain(..) {
        let _ = reply.send(Err(failure.clone()));
    }
}
