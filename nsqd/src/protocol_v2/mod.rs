//! Protocol V2: one task per connection reads commands, has them parsed
//! once ([`crate::command`]) and applies each in [`Session::apply`]; the
//! message pump and heartbeats write beside it through the shared [`Output`].
//!
//! What each command does lives beside its kin: [`identify`] (IDENTIFY, the
//! TLS upgrade, compression), [`authorize`] (AUTH and the checks publishes
//! and SUB make), [`subscribe`] (SUB, RDY, FIN, REQ, TOUCH, CLS).

mod authorize;
mod identify;
mod replicate;
mod subscribe;

use crate::channel::Channel;
use crate::client_conn::{
    ClientConn, ClientSettings, Refill, LAZY_READ_MIN_RDY, QUIET_READ_WINDOW, REFILL_DELAY,
};
use crate::coalesce;
use crate::command::{self, ClientError, ConnState, Limits, Request};
use crate::guid::unix_nanos;
use crate::message::{Message, Run};
use crate::node::Node;
use crate::options::{
    TlsRequired, CLIENT_TIMEOUT, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_OUTPUT_BUFFER_SIZE,
};
use crate::output::Output;
use crate::pump;
use crate::queue::Item;
use crate::stream::{ReadHalf, WriteHalf};
use bytes::{Bytes, BytesMut};
use nsq::protocol::compress::Decoder;
use nsq::protocol::{FrameType, MAGIC_V2, OK};
use nsq::transport::SPIN_WINDOW;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Plain bytes decoded per step from a compressed stream; bounds what a tiny
/// compressed input can make us allocate before commands are consumed.
const DECODE_STEP: usize = 256 * 1024;

/// Why the read loop ended.
enum Closed {
    /// EOF, I/O error, read timeout, shutdown: close without a word.
    Quietly,
    /// A fatal protocol error, already sent.
    AfterError,
}

/// Who is at the other end of a connection.
pub struct Remote {
    /// As stats show it: `ip:port`, or `@` for a unix socket peer.
    pub address: String,
    /// The IP, the default client ID and hostname; empty over a unix socket.
    pub host: String,
}

pub async fn serve_connection(
    node: Arc<Node>,
    (mut reader, writer): (ReadHalf, WriteHalf),
    remote: Remote,
) {
    let mut input = BytesMut::with_capacity(16 * 1024);
    let read_magic = async {
        while input.len() < MAGIC_V2.len() {
            if !matches!(reader.read_buf(&mut input).await, Ok(1..)) {
                return false;
            }
        }
        true
    };
    tokio::select! {
        _ = node.stopping() => return,
        read = tokio::time::timeout(CLIENT_TIMEOUT, read_magic) => {
            if !matches!(read, Ok(true)) {
                return;
            }
        }
    }
    let out = Arc::new(Output::new(writer, Some(DEFAULT_HEARTBEAT_INTERVAL)));
    let magic = input.split_to(MAGIC_V2.len());
    if &magic[..] != MAGIC_V2 {
        tracing::debug!(peer = %remote.address, ?magic, "bad protocol magic");
        let _ = out.send(FrameType::Error, b"E_BAD_PROTOCOL").await;
        out.shutdown().await;
        return;
    }
    let opts = &node.opts;
    let host = remote.host.clone();
    let settings = ClientSettings {
        client_id: host.clone(),
        hostname: host,
        user_agent: String::new(),
        heartbeat_interval: Some(DEFAULT_HEARTBEAT_INTERVAL),
        output_buffer_size: DEFAULT_OUTPUT_BUFFER_SIZE as usize,
        output_buffer_timeout: Some(opts.output_buffer_timeout),
        msg_timeout: opts.msg_timeout,
        sample_rate: 0,
        deflate: false,
        snappy: false,
    };
    let connect_ts = unix_nanos() / 1_000_000_000;
    let client = Arc::new(ClientConn::new(
        node.new_client_id(),
        remote.address.clone(),
        settings,
        connect_ts,
    ));
    node.add_client(client.clone());
    tracing::debug!(client = client.id, peer = %remote.address, "client connected");

    let heartbeat = tokio::spawn(pump::heartbeats(
        client.clone(),
        out.clone(),
        DEFAULT_HEARTBEAT_INTERVAL,
    ));
    let mut session = Session {
        limits: Limits {
            max_msg_size: opts.max_msg_size,
            max_body_size: opts.max_body_size,
            max_req_timeout_ms: opts.max_req_timeout.as_millis() as u64,
            max_rdy_count: opts.max_rdy_count,
        },
        must_upgrade: node.opts.tls_required != TlsRequired::No,
        node: node.clone(),
        client: client.clone(),
        remote,
        reader,
        heartbeat_interval: Some(DEFAULT_HEARTBEAT_INTERVAL),
        auth_secret: None,
        input,
        raw: BytesMut::new(),
        decoder: None,
        out: out.clone(),
        channel: None,
        heartbeat: Some(heartbeat),
        pump: None,
        last_wait: Duration::MAX,
        answered: false,
        spin: false,
        refill: Refill::No,
        refill_by: None,
        quiet_window_empty: false,
        published: false,
    };
    let closed = session.run().await;
    if let Closed::AfterError = closed {
        tracing::debug!(client = client.id, "closing after fatal error");
    }
    session.close().await;
}

/// One client's session: what its reader task holds.
struct Session {
    node: Arc<Node>,
    client: Arc<ClientConn>,
    remote: Remote,
    limits: Limits,
    reader: ReadHalf,
    /// `--tls-required` and not yet upgraded: only IDENTIFY is allowed.
    must_upgrade: bool,
    /// As IDENTIFY last set it; reads time out after twice this.
    heartbeat_interval: Option<Duration>,
    /// The secret of the last AUTH, to ask the auth server again on expiry.
    auth_secret: Option<String>,
    /// Plain command bytes.
    input: BytesMut,
    /// Compressed bytes not yet decoded (only with a compression layer).
    raw: BytesMut,
    decoder: Option<Decoder>,
    out: Arc<Output>,
    channel: Option<Arc<Channel>>,
    heartbeat: Option<JoinHandle<()>>,
    pump: Option<JoinHandle<()>>,
    /// How long the last read waited for data.
    last_wait: Duration,
    /// Whether the last command was answered (see [`Request::is_answered`]).
    answered: bool,
    /// Whether the last command was answered and carried at most one
    /// message: a client waiting for that answer before its next request
    /// is worth polling for (see [`Session::fill`]).
    spin: bool,
    /// What the FINs and REQs read since the last look ask of the pump.
    refill: Refill,
    /// When room freed without waking the pump must wake it at the latest.
    refill_by: Option<Instant>,
    /// The last quiet window passed with no input: the next read wakes on
    /// any, so that a consumer with nothing to say costs no timer.
    quiet_window_empty: bool,
    /// The connection has published: its reads never go quiet, or a
    /// publish after a FIN would wait for the window before its OK.
    published: bool,
}

impl Session {
    async fn run(&mut self) -> Closed {
        loop {
            let state = self.state();
            let result = match command::parse(&mut self.input, &self.limits, state) {
                Ok(None) => {
                    self.refill_pump();
                    if !self.fill().await {
                        return Closed::Quietly;
                    }
                    continue;
                }
                // The connection becomes a replication link for good.
                Ok(Some(Request::Repl { version, hello })) => {
                    return self.repl(version, hello).await;
                }
                Ok(Some(request)) => {
                    // Unanswered commands (FIN above all) neither wait nor
                    // block, so the refill they ask for can wait for the
                    // rest of what was read: one wake-up and one write of
                    // the pump for all of it, not one per FIN.
                    self.answered = request.is_answered();
                    self.spin = self.answered && !request.is_batch();
                    if self.answered {
                        self.refill_pump();
                    }
                    self.apply(request).await
                }
                Err(err) => Err(err),
            };
            if let Err(err) = result {
                self.refill_pump();
                self.answered = true;
                if let Some(closed) = self.send_error(err).await {
                    return closed;
                }
            }
        }
    }

    /// What the parser checks commands against.
    fn state(&self) -> ConnState {
        ConnState {
            client: self.client.state(),
            tls_pending: self.must_upgrade,
            heartbeats: self.heartbeat_interval.is_some(),
        }
    }

    /// Executes one command: the one place where requests take effect.
    async fn apply(&mut self, request: Request) -> Result<(), ClientError> {
        self.published |= matches!(
            request,
            Request::Pub { .. } | Request::Dpub { .. } | Request::Mpub { .. }
        );
        match request {
            Request::Identify(body) => self.identify(&body).await,
            Request::Auth(secret) => self.auth(&secret).await,
            Request::Pub { topic, body } => {
                self.check_auth("PUB", &topic, "").await?;
                let item = Item::One(self.new_message(body));
                self.publish(&topic, item, "E_PUB_FAILED", "PUB").await
            }
            Request::Dpub {
                topic,
                defer_ms,
                body,
            } => {
                self.check_auth("DPUB", &topic, "").await?;
                let msg = self.new_message(body);
                let item = match defer_ms {
                    0 => Item::One(msg),
                    ms => Item::Deferred(msg, Instant::now() + Duration::from_millis(ms)),
                };
                self.publish(&topic, item, "E_DPUB_FAILED", "DPUB").await
            }
            Request::Mpub {
                topic,
                records,
                count,
            } => {
                self.check_auth("MPUB", &topic, "").await?;
                let first_id = self.node.ids.reserve(count as u64);
                let item = Item::Run(Run::new(records, count, first_id, unix_nanos()));
                self.publish(&topic, item, "E_MPUB_FAILED", "MPUB").await
            }
            Request::Sub { topic, channel } => self.sub(&topic, &channel).await,
            Request::Rdy(count) => {
                self.client.set_ready_count(count);
                Ok(())
            }
            Request::Fin(id) => self.fin(id),
            Request::Req { id, timeout_ms } => self.req(id, timeout_ms),
            Request::Touch(id) => self.touch(id),
            Request::Cls => self.cls().await,
            Request::Nop => Ok(()),
            Request::Repl { .. } => unreachable!("run() hands REPL to Session::repl"),
        }
    }

    /// Sends an error frame; returns how to close when the error is fatal or
    /// the write failed.
    async fn send_error(&mut self, err: ClientError) -> Option<Closed> {
        tracing::debug!(client = self.client.id, error = %err.text(), fatal = err.fatal, "client error");
        if self
            .out
            .send(FrameType::Error, err.text().as_bytes())
            .await
            .is_err()
        {
            return Some(Closed::Quietly);
        }
        err.fatal.then_some(Closed::AfterError)
    }

    /// Wakes the pump if FINs or REQs made room it may be waiting for, or
    /// sets when it must be woken if they made only a little.
    fn refill_pump(&mut self) {
        match std::mem::take(&mut self.refill) {
            Refill::Now => {
                self.refill_by = None;
                self.client.wake_pump();
            }
            Refill::Soon if self.refill_by.is_none() => {
                self.refill_by = Some(Instant::now() + REFILL_DELAY);
            }
            // Past its deadline (input kept coming, so the read never
            // waited for it): now.
            _ if self.refill_by.is_some_and(|at| at <= Instant::now()) => {
                self.refill_by = None;
                self.client.wake_pump();
            }
            _ => {}
        }
    }

    /// Whether this read lets FINs gather ([`QUIET_READ_WINDOW`]): the end of
    /// the quiet window, or `None` for a read that wakes on any input.
    fn quiet_reads(&self) -> Option<tokio::time::Instant> {
        let socket = self.reader.tcp()?;
        let quiet = !self.quiet_window_empty && !self.published && self.client.wants_quiet_reads();
        if quiet != self.client.quiet_reads() {
            self.client.set_quiet_reads(socket, quiet);
            // A delivery since the check may have used the room up; it
            // lowers the mark only once it sees the mark raised.
            if quiet && !self.client.wants_quiet_reads() {
                self.client.set_quiet_reads(socket, false);
            }
        }
        self.client
            .quiet_reads()
            .then(|| coalesce::on_grid(QUIET_READ_WINDOW, QUIET_READ_WINDOW))
    }

    /// Reads more input; false when the connection is done.
    async fn fill(&mut self) -> bool {
        if self.decoder.is_some() {
            match self.decode() {
                Some(true) => return true,
                Some(false) => {}
                None => return false,
            }
        }
        let deadline = self.heartbeat_interval.map(|hb| hb * 2);
        let quiet_until = self.quiet_reads();
        let target = if self.decoder.is_some() {
            &mut self.raw
        } else {
            &mut self.input
        };
        if target.capacity() - target.len() < 4096 {
            target.reserve(16 * 1024);
        }
        // A client in a tight request/response loop (its last request was
        // answered, carried one message at most and came within the spin
        // window) is polled briefly before the task parks. A consumer's
        // stream of FINs is not such a loop, and an MPUB's answer is worth
        // a park: polling for them costs more than it saves.
        let spin = match self.spin && self.last_wait < SPIN_WINDOW {
            true => SPIN_WINDOW,
            false => Duration::ZERO,
        };
        // A consumer at a deep RDY that freed less than a refill step
        // will only be refilled once it frees more, so its FINs are read
        // together at the refill deadline, not as each of its writes lands:
        // each read costs a syscall and the kernel's work on every small
        // segment (go-nsq writes every FIN by itself). Below
        // LAZY_READ_MIN_RDY the wait could idle a fast consumer.
        if let Some(at) = self.refill_by {
            if self.client.ready_count() >= LAZY_READ_MIN_RDY {
                tokio::select! {
                    _ = self.client.closed() => return false,
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
        }
        let waited = Instant::now();
        let read = self.reader.read_buf_spinning(target, spin);
        let refill_by = self.refill_by;
        let refill_due = async move {
            match refill_by {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let quiet_over = async move {
            match quiet_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // FINs already there are read before a due refill: the pump then
        // refills once, for them too.
        let n = tokio::select! {
            biased;
            _ = self.client.closed() => return false,
            n = async {
                match deadline {
                    Some(limit) => tokio::time::timeout(limit, read).await.unwrap_or(Ok(0)),
                    None => read.await,
                }
            } => Some(n),
            _ = refill_due => {
                self.refill_by = None;
                self.client.wake_pump();
                return true;
            }
            _ = quiet_over => None,
        };
        // None: a quiet window ended; take what came below the low-water mark.
        let n = match n {
            Some(n) => n,
            None => {
                let target = match self.decoder.is_some() {
                    true => &mut self.raw,
                    false => &mut self.input,
                };
                let socket = self.reader.tcp().expect("quiet reads are plain TCP");
                match nsq_daemon::sockopt::recv_now(socket, target) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        self.quiet_window_empty = true;
                        return true;
                    }
                    read => read,
                }
            }
        };
        self.quiet_window_empty = false;
        self.last_wait = waited.elapsed();
        match n {
            Ok(0) | Err(_) => false,
            // Bad compressed input ends the session before the parser runs.
            Ok(_) => self.decoder.is_none() || self.decode().is_some(),
        }
    }

    /// Decodes buffered compressed input: whether plain input grew, or `None`
    /// when the input is bad and the connection is closing (the decoder
    /// then adds nothing to the plain input).
    fn decode(&mut self) -> Option<bool> {
        let decoder = self.decoder.as_mut()?;
        let before = self.input.len();
        match decoder.decode(&mut self.raw, &mut self.input, before + DECODE_STEP) {
            Ok(()) => Some(self.input.len() > before),
            Err(e) => {
                tracing::debug!(client = self.client.id, error = %e, "bad compressed input");
                self.client.close();
                None
            }
        }
    }

    async fn respond(&self, data: &[u8]) -> Result<(), ClientError> {
        self.out.send(FrameType::Response, data).await.map_err(|_| {
            self.client.close();
            ClientError::fatal("E_INVALID", "write failed")
        })
    }

    fn new_message(&self, body: Bytes) -> Message {
        Message {
            id: self.node.ids.reserve(1),
            timestamp: unix_nanos(),
            attempts: 0,
            body,
        }
    }

    async fn publish(
        &self,
        topic: &str,
        item: Item,
        fail_code: &'static str,
        cmd: &str,
    ) -> Result<(), ClientError> {
        let count = item.len() as u64;
        let bytes = match &item {
            Item::Run(run) => run.body_bytes(),
            Item::One(m) | Item::Deferred(m, _) => m.body.len(),
        };
        self.node
            .publish(topic, item, bytes)
            .await
            .map_err(|e| ClientError::fatal(fail_code, format!("{cmd} failed {e}")))?;
        self.client.published(topic, count);
        self.respond(OK).await
    }

    async fn close(mut self) {
        self.client.close();
        for task in [self.pump.take(), self.heartbeat.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
            let _ = task.await;
        }
        self.out.shutdown().await;
        if let Some(channel) = self.channel.take() {
            self.node.consumer_left(&channel, self.client.id);
        }
        self.node.remove_client(self.client.id);
        tracing::debug!(client = self.client.id, "client disconnected");
    }
}
