//! What nsqd knows about one client connection, shared between its reader,
//! its message pump, its channel and `/stats`. Counters change only through
//! the methods below, each of which says what happened.

use crate::auth::AuthState;
use crate::output::Output;
use nsq::api::{ClientStats, PubCount};
use nsq_daemon::tls::SessionInfo;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Where a connection is in protocol V2, as `/stats` numbers it (upstream's
/// values; its 1 and 2 are states a V2 connection never reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Connected; IDENTIFY, AUTH and publishes are allowed, and SUB once.
    Init = 0,
    /// SUB succeeded: messages flow while RDY allows.
    Subscribed = 3,
    /// CLS received: no more messages; FIN, REQ and TOUCH still answered.
    Closing = 4,
}

impl ClientState {
    fn from_u8(n: u8) -> ClientState {
        match n {
            3 => ClientState::Subscribed,
            4 => ClientState::Closing,
            _ => ClientState::Init,
        }
    }
}

/// Settings a client negotiates with IDENTIFY, and its identity.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub client_id: String,
    pub hostname: String,
    pub user_agent: String,
    /// `None` disables heartbeats.
    pub heartbeat_interval: Option<Duration>,
    pub output_buffer_size: usize,
    /// `None` when the client asked for no timed flush.
    pub output_buffer_timeout: Option<Duration>,
    pub msg_timeout: Duration,
    pub sample_rate: i32,
    pub deflate: bool,
    pub snappy: bool,
}

/// One client's connection as everything beside its reader sees it.
pub struct ClientConn {
    pub id: u64,
    remote_address: String,
    /// Unix seconds.
    connect_ts: i64,
    state: AtomicU8,
    /// The RDY the client last sent: a cap on its in-flight messages.
    ready_count: AtomicI64,
    in_flight: AtomicI64,
    message_count: AtomicU64,
    finish_count: AtomicU64,
    requeue_count: AtomicU64,
    settings: Mutex<ClientSettings>,
    /// Messages published per topic, for the producer section of `/stats`.
    pub_counts: Mutex<Vec<PubCount>>,
    /// Wakes the message pump: RDY changed, a message left flight, closing.
    wake: Notify,
    /// Fires when the connection must close (shutdown, channel deleted).
    close: CancellationToken,
    /// The TLS session, once IDENTIFY has upgraded the connection.
    tls: OnceLock<SessionInfo>,
    /// What the auth server allows, after AUTH (refreshed when it expires).
    auth: Mutex<Option<Arc<AuthState>>>,
    /// Where a publisher may write this consumer's messages itself, from SUB on.
    direct: OnceLock<Direct>,
    /// Whether the socket's low-water mark is raised for quiet reads (see
    /// [`QUIET_READ_WINDOW`]); changed under this lock, mirrored in
    /// `quiet_hint` for a cheap look.
    quiet_reads: Mutex<bool>,
    quiet_hint: AtomicBool,
}

/// What a publisher needs to deliver to a subscribed consumer without waking
/// its pump (see [`crate::pump::deliver_now`]): its output and the settings
/// IDENTIFY fixed before SUB.
pub struct Direct {
    pub out: Arc<Output>,
    pub output_buffer_size: usize,
    pub msg_timeout: Duration,
    pub sample_rate: i32,
}

/// The most room a consumer at its RDY waits for before the pump refills it.
pub const MAX_REFILL_STEP: i64 = 128;

/// How long room that the pump has not been woken for may wait.
pub const REFILL_DELAY: Duration = Duration::from_millis(1);

/// The RDY from which a consumer's FINs may wait up to [`REFILL_DELAY`] to
/// be read: it then holds at least three refill steps (384 messages) to
/// work on meanwhile.
pub const LAZY_READ_MIN_RDY: i64 = 4 * MAX_REFILL_STEP;

/// How long a consumer with room to spare may have its FINs wait to be read.
/// Its socket then wakes the reader only once [`QUIET_READ_BYTES`] have
/// come (`SO_RCVLOWAT`); the reader also reads at this interval, on a grid
/// shared by all connections. A consumer that FINs each message as it
/// comes (go-nsq) would otherwise wake nsqd once per message; deliveries
/// do not wait for these FINs, since its room was not needed.
pub const QUIET_READ_WINDOW: Duration = Duration::from_millis(2);

/// The input that wakes a quiet reader before its window ends: some 48
/// FINs.
pub const QUIET_READ_BYTES: usize = 1024;

/// The lowest RDY at which reads go quiet: below it a consumer that waits
/// a window for its FINs to be read could run out of room.
pub const QUIET_READ_MIN_RDY: i64 = 8;

/// What a message leaving flight asks of the pump; ordered by urgency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refill {
    #[default]
    No,
    /// Within [`REFILL_DELAY`], unless more room comes first.
    Soon,
    Now,
}

impl ClientConn {
    pub fn new(id: u64, remote_address: String, settings: ClientSettings, connect_ts: i64) -> Self {
        ClientConn {
            id,
            remote_address,
            connect_ts,
            state: AtomicU8::new(ClientState::Init as u8),
            ready_count: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            message_count: AtomicU64::new(0),
            finish_count: AtomicU64::new(0),
            requeue_count: AtomicU64::new(0),
            settings: Mutex::new(settings),
            pub_counts: Mutex::new(Vec::new()),
            wake: Notify::new(),
            close: CancellationToken::new(),
            tls: OnceLock::new(),
            direct: OnceLock::new(),
            quiet_reads: Mutex::new(false),
            quiet_hint: AtomicBool::new(false),
            auth: Mutex::new(None),
        }
    }

    /// Set at SUB: see [`Direct`].
    pub fn direct(&self) -> Option<&Direct> {
        self.direct.get()
    }

    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// SUB succeeded; its messages go out through `out`.
    pub fn subscribed(&self, out: Arc<Output>) {
        let settings = self.settings.lock();
        let _ = self.direct.set(Direct {
            out,
            output_buffer_size: settings.output_buffer_size,
            msg_timeout: settings.msg_timeout,
            sample_rate: settings.sample_rate,
        });
        drop(settings);
        self.state
            .store(ClientState::Subscribed as u8, Ordering::Release);
    }

    /// CLS: no more messages, whatever RDY said.
    pub fn start_closing(&self) {
        self.ready_count.store(0, Ordering::Release);
        self.state
            .store(ClientState::Closing as u8, Ordering::Release);
        self.wake.notify_one();
    }

    /// RDY: the client takes up to `count` messages in flight.
    pub fn set_ready_count(&self, count: i64) {
        self.ready_count.store(count, Ordering::Release);
        self.wake.notify_one();
    }

    pub fn ready_count(&self) -> i64 {
        self.ready_count.load(Ordering::Acquire)
    }

    /// How many more messages the client may have in flight now.
    pub fn capacity(&self) -> i64 {
        self.ready_count.load(Ordering::Acquire) - self.in_flight.load(Ordering::Acquire)
    }

    /// The channel put `n` messages in flight to this client.
    pub fn delivered(&self, n: usize) {
        self.in_flight.fetch_add(n as i64, Ordering::AcqRel);
        self.message_count.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// FIN of one of its messages succeeded. What the pump should make of
    /// the room this freed: the caller wakes it with
    /// [`ClientConn::wake_pump`], once for all the FINs it read together.
    #[must_use]
    pub fn finished(&self) -> Refill {
        self.finish_count.fetch_add(1, Ordering::Relaxed);
        self.leave_flight()
    }

    /// REQ of one of its messages succeeded; the result as [`ClientConn::finished`]'s.
    #[must_use]
    pub fn requeued(&self) -> Refill {
        self.requeue_count.fetch_add(1, Ordering::Relaxed);
        self.leave_flight()
    }

    /// A message of this client timed out of flight.
    pub fn message_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.wake_pump();
    }

    /// One message fewer in flight. A consumer at its RDY that finishes
    /// messages one by one (as go-nsq does) would otherwise get one wake-up
    /// and one write of the pump per FIN: the pump is woken once the room
    /// reaches a quarter of the RDY (at most [`MAX_REFILL_STEP`]), or by the
    /// reader [`REFILL_DELAY`] after the first FIN that freed less.
    fn leave_flight(&self) -> Refill {
        let before = self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let ready = self.ready_count.load(Ordering::Acquire);
        let room = ready - before + 1;
        let step = (ready / 4).clamp(1, MAX_REFILL_STEP);
        match room {
            _ if room == step => Refill::Now,
            1.. if room < step => Refill::Soon,
            // Room enough already (the pump is waiting for messages, not
            // room), or none at all (RDY was lowered).
            _ => Refill::No,
        }
    }

    /// Whether the reader may let FINs gather: subscribed, a RDY of at least
    /// [`QUIET_READ_MIN_RDY`] and at least half of it free.
    pub fn wants_quiet_reads(&self) -> bool {
        let ready = self.ready_count();
        self.state() == ClientState::Subscribed
            && ready >= QUIET_READ_MIN_RDY
            && 2 * self.capacity() >= ready
    }

    /// Whether the low-water mark is raised (a hint: see `quiet_reads`).
    pub fn quiet_reads(&self) -> bool {
        self.quiet_hint.load(Ordering::Acquire)
    }

    /// Raises `socket`'s low-water mark (only the reader does) or lowers it
    /// (anyone, once room runs short: lowering makes FINs already there
    /// readable at once). `socket` must be this client's.
    pub fn set_quiet_reads(&self, socket: &tokio::net::TcpStream, quiet: bool) {
        let mut raised = self.quiet_reads.lock();
        if *raised == quiet {
            return;
        }
        let bytes = if quiet { QUIET_READ_BYTES } else { 1 };
        match nsq_daemon::sockopt::set_receive_low_water(socket, bytes) {
            Ok(()) => {
                *raised = quiet;
                self.quiet_hint.store(quiet, Ordering::Release);
            }
            Err(e) => tracing::debug!(client = self.id, error = %e, "SO_RCVLOWAT failed"),
        }
    }

    /// After messages went out: reads stop being quiet once room runs short.
    pub fn delivered_through(&self, socket: Option<&tokio::net::TcpStream>) {
        if let Some(socket) = socket {
            if self.quiet_reads() && !self.wants_quiet_reads() {
                self.set_quiet_reads(socket, false);
            }
        }
    }

    /// Makes the pump look for room again.
    pub fn wake_pump(&self) {
        self.wake.notify_one();
    }

    /// The channel was emptied: none of its messages is in flight any more.
    pub fn in_flight_dropped(&self) {
        self.in_flight.store(0, Ordering::Release);
        self.wake.notify_one();
    }

    /// A future that completes once the pump should look again (RDY changed,
    /// a message left flight, CLS). Create it before checking.
    pub fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Makes the connection close: its reader, pump and heartbeats stop.
    pub fn close(&self) {
        self.close.cancel();
    }

    /// Whether [`ClientConn::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.close.is_cancelled()
    }

    /// Completes once [`ClientConn::close`] has been called.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.close.cancelled()
    }

    /// What IDENTIFY negotiated (or the defaults before it).
    pub fn settings(&self) -> ClientSettings {
        self.settings.lock().clone()
    }

    pub fn set_settings(&self, settings: ClientSettings) {
        *self.settings.lock() = settings;
    }

    pub fn msg_timeout(&self) -> Duration {
        self.settings.lock().msg_timeout
    }

    /// The TLS session, once IDENTIFY has upgraded the connection.
    pub fn tls(&self) -> Option<&SessionInfo> {
        self.tls.get()
    }

    pub fn set_tls(&self, session: SessionInfo) {
        let _ = self.tls.set(session);
    }

    /// The auth server's last answer for this client.
    pub fn auth(&self) -> Option<Arc<AuthState>> {
        self.auth.lock().clone()
    }

    pub fn set_auth(&self, state: Arc<AuthState>) {
        *self.auth.lock() = Some(state);
    }

    pub fn published(&self, topic: &str, count: u64) {
        let mut counts = self.pub_counts.lock();
        match counts.iter_mut().find(|c| c.topic == topic) {
            Some(c) => c.count += count,
            None => counts.push(PubCount {
                topic: topic.to_string(),
                count,
            }),
        }
    }

    pub fn has_published(&self) -> bool {
        !self.pub_counts.lock().is_empty()
    }

    /// `/stats` view. With a topic filter only that topic's publish count is shown.
    pub fn stats(&self, topic_filter: &str) -> ClientStats {
        let s = self.settings.lock().clone();
        let pub_counts = self
            .pub_counts
            .lock()
            .iter()
            .filter(|c| topic_filter.is_empty() || c.topic == topic_filter)
            .cloned()
            .collect();
        let auth = self.auth.lock().clone();
        let tls = self.tls.get().cloned().unwrap_or_default();
        ClientStats {
            client_id: s.client_id,
            hostname: s.hostname,
            version: "V2".into(),
            remote_address: self.remote_address.clone(),
            state: self.state() as i32,
            ready_count: self.ready_count.load(Ordering::Relaxed),
            in_flight_count: self.in_flight.load(Ordering::Relaxed),
            message_count: self.message_count.load(Ordering::Relaxed),
            finish_count: self.finish_count.load(Ordering::Relaxed),
            requeue_count: self.requeue_count.load(Ordering::Relaxed),
            connect_ts: self.connect_ts,
            sample_rate: s.sample_rate,
            deflate: s.deflate,
            snappy: s.snappy,
            user_agent: s.user_agent,
            pub_counts,
            authed: auth.as_ref().is_some_and(|a| a.has_authorizations()),
            auth_identity: auth
                .as_ref()
                .map(|a| a.identity.clone())
                .unwrap_or_default(),
            auth_identity_url: auth.map(|a| a.identity_url.clone()).unwrap_or_default(),
            tls: self.tls.get().is_some(),
            tls_cipher_suite: tls.cipher_suite,
            tls_version: tls.version,
            tls_negotiated_protocol: tls.negotiated_protocol,
            // Go reports true for every TLS connection (the field is deprecated there).
            tls_negotiated_protocol_is_mutual: self.tls.get().is_some(),
            tls_client_cert_common_name: tls.peer_common_name,
        }
    }
}
