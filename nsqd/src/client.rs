//! What nsqd knows about one TCP connection, shared between its reader, its
//! message pump, its channel and `/stats`.

use crate::auth::AuthState;
use nsq::api::{ClientStats, PubCount};
use nsq_daemon::tls::SessionInfo;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const STATE_INIT: i32 = 0;
pub const STATE_SUBSCRIBED: i32 = 3;
pub const STATE_CLOSING: i32 = 4;

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

pub struct Client {
    pub id: u64,
    pub remote_address: String,
    /// Unix seconds.
    pub connect_ts: i64,
    pub state: AtomicI32,
    /// The RDY the client last sent: a cap on its in-flight messages.
    pub ready_count: AtomicI64,
    pub in_flight: AtomicI64,
    pub message_count: AtomicU64,
    pub finish_count: AtomicU64,
    pub requeue_count: AtomicU64,
    pub settings: Mutex<ClientSettings>,
    /// Messages published per topic, for the producer section of `/stats`.
    pub_counts: Mutex<Vec<PubCount>>,
    /// Wakes the message pump: RDY changed, a message left flight, closing.
    pub wake: Notify,
    /// Fires when the connection must close (shutdown, channel deleted).
    pub close: CancellationToken,
    /// The TLS session, once IDENTIFY has upgraded the connection.
    pub tls: OnceLock<SessionInfo>,
    /// What the auth server allows, after AUTH (refreshed when it expires).
    pub auth: Mutex<Option<Arc<AuthState>>>,
}

impl Client {
    pub fn new(id: u64, remote_address: String, settings: ClientSettings, connect_ts: i64) -> Self {
        Client {
            id,
            remote_address,
            connect_ts,
            state: AtomicI32::new(STATE_INIT),
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
            auth: Mutex::new(None),
        }
    }

    pub fn state(&self) -> i32 {
        self.state.load(Ordering::Acquire)
    }

    /// How many more messages the client may have in flight now.
    pub fn capacity(&self) -> i64 {
        self.ready_count.load(Ordering::Acquire) - self.in_flight.load(Ordering::Acquire)
    }

    /// A message of this client left flight (FIN, REQ, timeout).
    pub fn message_done(&self) {
        let before = self.in_flight.fetch_sub(1, Ordering::AcqRel);
        // Below capacity the pump is not waiting for room, so a wake-up would
        // only cost a context switch.
        if before >= self.ready_count.load(Ordering::Acquire) {
            self.wake.notify_one();
        }
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
            state: self.state(),
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
