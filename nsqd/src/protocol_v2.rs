//! Protocol V2: one task per connection reads and executes commands; the
//! message pump and heartbeats write beside it through the shared [`Output`].

use crate::auth::{AuthState, Credentials};
use crate::channel::{Channel, InFlightError, SubscribeError};
use crate::client_conn::{ClientConn, ClientSettings, ClientState};
use crate::command::{self, go_quote, lossy, parse_base10, ClientError, Limits, Request};
use crate::guid::unix_nanos;
use crate::message::{Message, Run};
use crate::node::Node;
use crate::options::{
    TlsRequired, CLIENT_TIMEOUT, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_OUTPUT_BUFFER_SIZE,
};
use crate::output::Output;
use crate::pump;
use crate::queue::Item;
use crate::stream::{self, ReadHalf, WriteHalf};
use crate::topic::PutError;
use bytes::{Bytes, BytesMut};
use nsq::protocol::compress::{Decoder, Encoder};
use nsq::protocol::{
    is_valid_channel_name, is_valid_topic_name, FrameType, IdentifyRequest, IdentifyResponse,
    MessageId,
};
use nsq::protocol::{split_params, CLOSE_WAIT, MAGIC_V2, OK};
use nsq_daemon::VERSION;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Plain bytes decoded per step from a compressed stream; bounds what a tiny
/// compressed input can make us allocate before commands are consumed.
const DECODE_STEP: usize = 256 * 1024;

/// How long a busy connection polls for its next command before parking.
const SPIN_WINDOW: Duration = Duration::from_micros(50);

/// Why the read loop ended.
enum Closed {
    /// EOF, I/O error, read timeout, shutdown: close without a word.
    Quietly,
    /// A fatal protocol error, already sent.
    AfterError,
}

pub async fn serve_connection(node: Arc<Node>, stream: TcpStream, peer: SocketAddr) {
    let (mut reader, writer) = stream.into_split();
    let mut magic = [0u8; 4];
    tokio::select! {
        _ = node.stopping() => return,
        read = tokio::time::timeout(CLIENT_TIMEOUT, reader.read_exact(&mut magic)) => {
            if !matches!(read, Ok(Ok(_))) {
                return;
            }
        }
    }
    let out = Arc::new(Output::new(
        WriteHalf::Plain(writer),
        Some(DEFAULT_HEARTBEAT_INTERVAL),
    ));
    if &magic != MAGIC_V2 {
        tracing::debug!(%peer, ?magic, "bad protocol magic");
        let _ = out.send(FrameType::Error, b"E_BAD_PROTOCOL").await;
        out.shutdown().await;
        return;
    }
    let opts = &node.opts;
    let host = peer.ip().to_string();
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
        peer.to_string(),
        settings,
        connect_ts,
    ));
    node.add_client(client.clone());
    tracing::debug!(client = client.id, %peer, "client connected");

    let heartbeat = tokio::spawn(pump::heartbeats(
        client.clone(),
        out.clone(),
        DEFAULT_HEARTBEAT_INTERVAL,
    ));
    let mut conn = Connection {
        limits: Limits {
            max_msg_size: opts.max_msg_size,
            max_body_size: opts.max_body_size,
            max_req_timeout_ms: opts.max_req_timeout.as_millis() as u64,
        },
        must_upgrade: node.opts.tls_required != TlsRequired::No,
        node: node.clone(),
        client: client.clone(),
        peer,
        reader: ReadHalf::Plain(reader),
        auth_secret: None,
        input: BytesMut::with_capacity(16 * 1024),
        raw: BytesMut::new(),
        decoder: None,
        out: out.clone(),
        channel: None,
        heartbeat: Some(heartbeat),
        pump: None,
        last_wait: Duration::MAX,
    };
    let closed = conn.run().await;
    if let Closed::AfterError = closed {
        tracing::debug!(client = client.id, "closing after fatal error");
    }
    conn.close().await;
}

struct Connection {
    node: Arc<Node>,
    client: Arc<ClientConn>,
    peer: SocketAddr,
    limits: Limits,
    reader: ReadHalf,
    /// `--tls-required` and not yet upgraded: only IDENTIFY is allowed.
    must_upgrade: bool,
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
}

impl Connection {
    async fn run(&mut self) -> Closed {
        loop {
            if self.must_upgrade {
                if let Some(name) = next_command_name(&self.input) {
                    if name != b"IDENTIFY" {
                        let err = ClientError::invalid(format!(
                            "cannot {} in current state (TLS required)",
                            lossy(name)
                        ));
                        if let Some(closed) = self.send_error(err).await {
                            return closed;
                        }
                    }
                }
            }
            let state_is_init = self.client.state() == ClientState::Init;
            match command::parse(&mut self.input, &self.limits, state_is_init) {
                Ok(None) => {
                    if !self.fill().await {
                        return Closed::Quietly;
                    }
                }
                Ok(Some(request)) => match self.exec(request).await {
                    Ok(()) => {}
                    Err(err) => {
                        if let Some(closed) = self.send_error(err).await {
                            return closed;
                        }
                    }
                },
                Err(err) => {
                    if let Some(closed) = self.send_error(err).await {
                        return closed;
                    }
                }
            }
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

    /// Reads more input; false when the connection is done.
    async fn fill(&mut self) -> bool {
        if self.decoder.is_some() && self.decode() {
            return true;
        }
        let deadline = self.client.heartbeat_interval().map(|hb| hb * 2);
        let target = if self.decoder.is_some() {
            &mut self.raw
        } else {
            &mut self.input
        };
        if target.capacity() - target.len() < 4096 {
            target.reserve(16 * 1024);
        }
        // A client in a tight request/response loop (its last request came
        // within the spin window) is polled briefly before the task parks:
        // waking a parked thread costs more than the wait itself.
        let mut n = None;
        if self.last_wait < SPIN_WINDOW && self.reader.can_poll() {
            let until = Instant::now() + SPIN_WINDOW;
            while Instant::now() < until {
                match self.reader.try_read_buf(target) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        tokio::task::yield_now().await
                    }
                    result => {
                        n = Some(result);
                        break;
                    }
                }
            }
        }
        let waited = Instant::now();
        let n = match n {
            Some(n) => n,
            None => {
                let read = self.reader.read_buf(target);
                tokio::select! {
                    _ = self.client.closed() => return false,
                    n = async {
                        match deadline {
                            Some(limit) => tokio::time::timeout(limit, read).await.unwrap_or(Ok(0)),
                            None => read.await,
                        }
                    } => n,
                }
            }
        };
        self.last_wait = waited.elapsed();
        match n {
            Ok(0) | Err(_) => false,
            Ok(_) => {
                if self.decoder.is_some() {
                    self.decode();
                }
                true
            }
        }
    }

    /// Decodes buffered compressed input; true if plain input grew.
    fn decode(&mut self) -> bool {
        let Some(decoder) = self.decoder.as_mut() else {
            return false;
        };
        let before = self.input.len();
        match decoder.decode(&mut self.raw, &mut self.input, before + DECODE_STEP) {
            Ok(()) => self.input.len() > before,
            Err(e) => {
                tracing::debug!(client = self.client.id, error = %e, "bad compressed input");
                self.client.close();
                false
            }
        }
    }

    async fn respond(&self, data: &[u8]) -> Result<(), ClientError> {
        self.out.send(FrameType::Response, data).await.map_err(|_| {
            self.client.close();
            ClientError::fatal("E_INVALID", "write failed")
        })
    }

    async fn exec(&mut self, request: Request) -> Result<(), ClientError> {
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
            Request::Line(line) => {
                let params = split_params(&line);
                match params[0] {
                    b"RDY" => self.rdy(&params),
                    b"FIN" => self.fin(&params),
                    b"REQ" => self.req(&params),
                    b"TOUCH" => self.touch(&params),
                    b"NOP" => Ok(()),
                    b"SUB" => self.sub(&params).await,
                    b"CLS" => self.cls().await,
                    name => Err(ClientError::invalid(format!(
                        "invalid command {}",
                        lossy(name)
                    ))),
                }
            }
        }
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
            .map_err(|e| ClientError::fatal(fail_code, format!("{cmd} failed {e}")))?;
        self.client.published(topic, count);
        self.respond(OK).await
    }

    async fn identify(&mut self, body: &[u8]) -> Result<(), ClientError> {
        let opts = &self.node.opts;
        let req = IdentifyRequest::from_json(body)
            .map_err(|_| ClientError::fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body"))?;
        let mut s = self.client.settings();
        apply_identify(&mut s, &req, opts)
            .map_err(|e| ClientError::fatal("E_BAD_BODY", format!("IDENTIFY {e}")))?;
        let heartbeat_changed = s.heartbeat_interval != Some(DEFAULT_HEARTBEAT_INTERVAL);
        self.client.set_settings(s.clone());
        self.out.lock().await.write_timeout = s.heartbeat_interval;
        if heartbeat_changed {
            if let Some(old) = self.heartbeat.take() {
                old.abort();
            }
            if let Some(interval) = s.heartbeat_interval {
                self.heartbeat = Some(tokio::spawn(pump::heartbeats(
                    self.client.clone(),
                    self.out.clone(),
                    interval,
                )));
            }
        }
        tracing::debug!(client = self.client.id, client_id = %s.client_id, user_agent = %s.user_agent, "IDENTIFY");
        if !req.feature_negotiation {
            return self.respond(OK).await;
        }
        let deflate = opts.deflate && req.deflate;
        let mut deflate_level = 6;
        if deflate && req.deflate_level > 0 {
            deflate_level = req.deflate_level;
        }
        deflate_level = deflate_level.min(opts.max_deflate_level);
        let snappy = opts.snappy && req.snappy;
        if deflate && snappy {
            return Err(ClientError::fatal(
                "E_IDENTIFY_FAILED",
                "cannot enable both deflate and snappy compression",
            ));
        }
        // A connection upgrades once; a repeated IDENTIFY does not ask again.
        let tls_v1 = req.tls_v1 && self.node.tls.is_some() && self.client.tls().is_none();
        let response = IdentifyResponse {
            max_rdy_count: opts.max_rdy_count,
            version: VERSION.into(),
            max_msg_timeout: opts.max_msg_timeout.as_millis() as i64,
            msg_timeout: s.msg_timeout.as_millis() as i64,
            tls_v1,
            deflate,
            deflate_level,
            max_deflate_level: opts.max_deflate_level,
            snappy,
            sample_rate: s.sample_rate as i64,
            auth_required: self.node.auth.is_some(),
            output_buffer_size: s.output_buffer_size as i64,
            output_buffer_timeout: s.output_buffer_timeout.map_or(0, |t| t.as_millis() as i64),
        };
        let json = serde_json::to_vec(&response).expect("plain struct serializes");
        self.respond(&json).await?;
        if tls_v1 {
            self.upgrade_tls().await?;
            self.respond(OK).await?;
        }
        let layers = [
            (snappy, Encoder::snappy(), Decoder::snappy()),
            (
                deflate,
                Encoder::deflate(deflate_level as u32),
                Decoder::deflate(),
            ),
        ];
        for (wanted, encoder, decoder) in layers {
            if !wanted {
                continue;
            }
            // Whatever the client sent after IDENTIFY is already compressed.
            self.raw = self.input.split();
            self.decoder = Some(decoder);
            self.out.lock().await.set_encoder(encoder);
            self.respond(OK).await?;
        }
        self.client.set_settings(ClientSettings {
            snappy,
            deflate,
            ..self.client.settings()
        });
        Ok(())
    }

    /// Switches the connection to TLS right after the IDENTIFY answer; the
    /// client has sent nothing since, as it waits for that answer.
    async fn upgrade_tls(&mut self) -> Result<(), ClientError> {
        let failed = |e: &dyn std::fmt::Display| {
            ClientError::fatal("E_IDENTIFY_FAILED", format!("IDENTIFY failed {e}"))
        };
        if !self.input.is_empty() {
            return Err(failed(&"data arrived before the TLS handshake"));
        }
        let Some(acceptor) = self.node.tls.clone() else {
            return Err(failed(&"TLS is not configured"));
        };
        // Holding the writer keeps heartbeats off the socket meanwhile.
        let mut writer = self.out.lock().await;
        let read = std::mem::replace(&mut self.reader, ReadHalf::Detached);
        match stream::upgrade(read, writer.take_sink(), &acceptor).await {
            Ok((read, write, info)) => {
                self.reader = read;
                writer.set_sink(write);
                tracing::debug!(client = self.client.id, version = %info.version, cipher_suite = %info.cipher_suite, common_name = %info.peer_common_name, "upgraded to TLS");
                self.client.set_tls(info);
                self.must_upgrade = false;
                Ok(())
            }
            Err(upgrade) => {
                if let Some((read, write)) = upgrade.halves {
                    self.reader = read;
                    writer.set_sink(write);
                }
                Err(failed(&upgrade.error))
            }
        }
    }

    /// AUTH: asks the auth server what `secret` allows. Upstream reads the
    /// body before its checks, as the parser has.
    async fn auth(&mut self, secret: &[u8]) -> Result<(), ClientError> {
        let authed = self.client.auth().is_some_and(|a| a.has_authorizations());
        if authed {
            return Err(ClientError::invalid("AUTH already set"));
        }
        if self.node.auth.is_none() {
            return Err(ClientError::fatal("E_AUTH_DISABLED", "AUTH disabled"));
        }
        let secret = String::from_utf8_lossy(secret).into_owned();
        let state = self.query_auth(&secret).await?;
        self.auth_secret = Some(secret);
        if !state.has_authorizations() {
            return Err(ClientError::fatal(
                "E_UNAUTHORIZED",
                "AUTH no authorizations found",
            ));
        }
        #[derive(serde::Serialize)]
        struct AuthResponse<'a> {
            identity: &'a str,
            identity_url: &'a str,
            permission_count: usize,
        }
        let json = serde_json::to_vec(&AuthResponse {
            identity: &state.identity,
            identity_url: &state.identity_url,
            permission_count: state.authorizations.len(),
        })
        .expect("plain struct serializes");
        self.respond(&json)
            .await
            .map_err(|_| ClientError::fatal("E_AUTH_ERROR", "AUTH error write failed"))
    }

    /// Asks the auth servers and keeps the answer on the client. Why it
    /// failed is logged; the client only learns that it did.
    async fn query_auth(&self, secret: &str) -> Result<Arc<AuthState>, ClientError> {
        let authorizer = self
            .node
            .auth
            .as_ref()
            .ok_or_else(|| ClientError::fatal("E_AUTH_DISABLED", "AUTH disabled"))?;
        let tls = self.client.tls();
        let remote_ip = self.peer.ip().to_string();
        let credentials = Credentials {
            remote_ip: &remote_ip,
            tls: tls.is_some(),
            common_name: tls.map_or("", |t| t.peer_common_name.as_str()),
            secret,
        };
        match authorizer.query(&credentials).await {
            Ok(state) => {
                let state = Arc::new(state);
                self.client.set_auth(state.clone());
                Ok(state)
            }
            Err(e) => {
                tracing::warn!(client = self.client.id, error = %e, "AUTH failed");
                Err(ClientError::fatal("E_AUTH_FAILED", "AUTH failed"))
            }
        }
    }

    /// With auth enabled, whether this client may `cmd` the topic (and
    /// channel; empty for publishes), asking the auth server again once the
    /// last answer's TTL has passed.
    async fn check_auth(&self, cmd: &str, topic: &str, channel: &str) -> Result<(), ClientError> {
        if self.node.auth.is_none() {
            return Ok(());
        }
        let state = self.client.auth();
        let state = match state {
            Some(state) if state.has_authorizations() => state,
            _ => {
                return Err(ClientError::fatal(
                    "E_AUTH_FIRST",
                    format!("AUTH required before {cmd}"),
                ))
            }
        };
        let state = if state.is_expired() {
            let secret = self.auth_secret.clone().unwrap_or_default();
            self.query_auth(&secret).await?
        } else {
            state
        };
        if state.allows(topic, channel) {
            Ok(())
        } else {
            Err(ClientError::fatal(
                "E_UNAUTHORIZED",
                format!(
                    "AUTH failed for {cmd} on {} {}",
                    go_quote(topic.as_bytes()),
                    go_quote(channel.as_bytes())
                ),
            ))
        }
    }

    async fn sub(&mut self, params: &[&[u8]]) -> Result<(), ClientError> {
        if self.client.state() != ClientState::Init {
            return Err(ClientError::invalid("cannot SUB in current state"));
        }
        if self.client.heartbeat_interval().is_none() {
            return Err(ClientError::invalid("cannot SUB with heartbeats disabled"));
        }
        if params.len() < 3 {
            return Err(ClientError::invalid(
                "SUB insufficient number of parameters",
            ));
        }
        let topic_name = std::str::from_utf8(params[1])
            .ok()
            .filter(|t| is_valid_topic_name(t))
            .ok_or_else(|| {
                ClientError::fatal(
                    "E_BAD_TOPIC",
                    format!("SUB topic name {} is not valid", go_quote(params[1])),
                )
            })?;
        let channel_name = std::str::from_utf8(params[2])
            .ok()
            .filter(|c| is_valid_channel_name(c))
            .ok_or_else(|| {
                ClientError::fatal(
                    "E_BAD_CHANNEL",
                    format!("SUB channel name {} is not valid", go_quote(params[2])),
                )
            })?;
        self.check_auth("SUB", topic_name, channel_name).await?;
        // An ephemeral topic or channel may be going away just now: retry once.
        let mut channel = None;
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let created = self
                .node
                .get_or_create_topic(topic_name)
                .and_then(|topic| self.node.get_or_create_channel(&topic, channel_name));
            let candidate = match created {
                Ok(channel) => channel,
                Err(PutError::Exiting) => continue,
                Err(PutError::Backend(e)) => {
                    return Err(ClientError::fatal(
                        "E_SUB_FAILED",
                        format!("SUB failed {e}"),
                    ))
                }
            };
            match candidate.add_client(self.client.clone()) {
                Ok(()) => {
                    channel = Some(candidate);
                    break;
                }
                Err(SubscribeError::Exiting) => continue,
                Err(SubscribeError::TooManyConsumers) => {
                    return Err(ClientError::fatal(
                        "E_SUB_FAILED",
                        format!(
                        "SUB failed consumers for {topic_name}:{channel_name} exceeds limit of {}",
                        self.node.opts.max_channel_consumers
                    ),
                    ))
                }
            }
        }
        let channel = channel.ok_or_else(|| {
            ClientError::fatal("E_SUB_FAILED", "SUB failed to deleted topic/channel")
        })?;
        self.client.subscribed();
        self.channel = Some(channel.clone());
        self.respond(OK).await?;
        self.pump = Some(tokio::spawn(pump::message_pump(
            self.client.clone(),
            channel,
            self.out.clone(),
        )));
        Ok(())
    }

    fn rdy(&self, params: &[&[u8]]) -> Result<(), ClientError> {
        let state = self.client.state();
        if state == ClientState::Closing {
            return Ok(());
        }
        if state != ClientState::Subscribed {
            return Err(ClientError::invalid("cannot RDY in current state"));
        }
        let count = match params.get(1) {
            None => 1,
            Some(raw) => parse_base10(raw).ok_or_else(|| {
                ClientError::invalid(format!("RDY could not parse count {}", lossy(raw)))
            })? as i64,
        };
        let max = self.node.opts.max_rdy_count;
        if !(0..=max).contains(&count) {
            return Err(ClientError::invalid(format!(
                "RDY count {count} out of range 0-{max}"
            )));
        }
        self.client.set_ready_count(count);
        Ok(())
    }

    /// The channel and message ID of FIN, REQ and TOUCH, after upstream's checks.
    fn in_flight_target(
        &self,
        params: &[&[u8]],
        cmd: &str,
        min_params: usize,
    ) -> Result<(&Arc<Channel>, MessageId), ClientError> {
        let state = self.client.state();
        let channel = match &self.channel {
            Some(channel) if state != ClientState::Init => channel,
            _ => {
                return Err(ClientError::invalid(format!(
                    "cannot {cmd} in current state"
                )))
            }
        };
        if params.len() < min_params {
            return Err(ClientError::invalid(format!(
                "{cmd} insufficient number of params"
            )));
        }
        let id = MessageId::from_slice(params[1])
            .ok_or_else(|| ClientError::invalid("invalid message ID"))?;
        Ok((channel, id))
    }

    fn fin(&self, params: &[&[u8]]) -> Result<(), ClientError> {
        let (channel, id) = self.in_flight_target(params, "FIN", 2)?;
        let result = id
            .to_u64()
            .ok_or(InFlightError::NotInFlight)
            .and_then(|n| channel.finish(self.client.id, n));
        result
            .map_err(|e| ClientError::non_fatal("E_FIN_FAILED", format!("FIN {id} failed {e}")))?;
        self.client.finished();
        Ok(())
    }

    fn req(&self, params: &[&[u8]]) -> Result<(), ClientError> {
        let (channel, id) = self.in_flight_target(params, "REQ", 3)?;
        let ms = parse_base10(params[2]).ok_or_else(|| {
            ClientError::invalid(format!("REQ could not parse timeout {}", lossy(params[2])))
        })?;
        let max = self.node.opts.max_req_timeout;
        let delay = Duration::from_millis(ms).min(max);
        if delay.as_millis() as u64 != ms {
            tracing::debug!(
                client = self.client.id,
                requested_ms = ms,
                "REQ timeout clamped to --max-req-timeout"
            );
        }
        let result = id
            .to_u64()
            .ok_or(InFlightError::NotInFlight)
            .and_then(|n| channel.requeue(self.client.id, n, delay));
        result
            .map_err(|e| ClientError::non_fatal("E_REQ_FAILED", format!("REQ {id} failed {e}")))?;
        self.client.requeued();
        Ok(())
    }

    fn touch(&self, params: &[&[u8]]) -> Result<(), ClientError> {
        let (channel, id) = self.in_flight_target(params, "TOUCH", 2)?;
        let msg_timeout = self.client.msg_timeout();
        let result = id
            .to_u64()
            .ok_or(InFlightError::NotInFlight)
            .and_then(|n| channel.touch(self.client.id, n, msg_timeout));
        result
            .map_err(|e| ClientError::non_fatal("E_TOUCH_FAILED", format!("TOUCH {id} failed {e}")))
    }

    async fn cls(&self) -> Result<(), ClientError> {
        if self.client.state() != ClientState::Subscribed {
            return Err(ClientError::invalid("cannot CLS in current state"));
        }
        self.client.start_closing();
        self.respond(CLOSE_WAIT).await
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

/// The name of the command at the start of `input`, once its line is complete.
fn next_command_name(input: &[u8]) -> Option<&[u8]> {
    let line = &input[..input.iter().position(|&b| b == b'\n')?];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.split(|&b| b == b' ').next()
}

/// Applies IDENTIFY's requests in upstream's order, with its messages.
fn apply_identify(
    s: &mut ClientSettings,
    req: &IdentifyRequest,
    opts: &crate::options::Options,
) -> Result<(), String> {
    s.client_id = req.client_id.clone();
    s.hostname = req.hostname.clone();
    s.user_agent = req.user_agent.clone();
    let ms = |d: Duration| d.as_millis() as i64;
    s.heartbeat_interval = match req.heartbeat_interval {
        -1 => None,
        0 => s.heartbeat_interval,
        n if (1000..=ms(opts.max_heartbeat_interval)).contains(&n) => {
            Some(Duration::from_millis(n as u64))
        }
        n => return Err(format!("heartbeat interval ({n}) is invalid")),
    };
    match req.output_buffer_timeout {
        -1 => s.output_buffer_timeout = None,
        0 => {}
        n if (ms(opts.min_output_buffer_timeout)..=ms(opts.max_output_buffer_timeout))
            .contains(&n) =>
        {
            s.output_buffer_timeout = Some(Duration::from_millis(n as u64))
        }
        n => return Err(format!("output buffer timeout ({n}) is invalid")),
    }
    match req.output_buffer_size {
        -1 => {
            s.output_buffer_size = 1;
            s.output_buffer_timeout = None;
        }
        0 => {}
        n if (64..=opts.max_output_buffer_size).contains(&n) => s.output_buffer_size = n as usize,
        n => return Err(format!("output buffer size ({n}) is invalid")),
    }
    if !(0..=99).contains(&req.sample_rate) {
        return Err(format!("sample rate ({}) is invalid", req.sample_rate));
    }
    s.sample_rate = req.sample_rate as i32;
    match req.msg_timeout {
        0 => {}
        n if (1000..=ms(opts.max_msg_timeout)).contains(&n) => {
            s.msg_timeout = Duration::from_millis(n as u64)
        }
        n => return Err(format!("msg timeout ({n}) is invalid")),
    }
    Ok(())
}
