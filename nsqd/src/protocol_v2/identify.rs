//! IDENTIFY: the client's settings, then the upgrades it asked for and nsqd
//! allows, in upstream's order: TLS first, then snappy or deflate on top.

use super::Session;
use crate::client_conn::ClientSettings;
use crate::command::ClientError;
use crate::options::{Options, DEFAULT_HEARTBEAT_INTERVAL};
use crate::pump;
use crate::stream::{self, ReadHalf};
use nsq::protocol::compress::{Decoder, Encoder};
use nsq::protocol::{IdentifyRequest, IdentifyResponse, OK};
use nsq_daemon::VERSION;
use std::time::Duration;

impl Session {
    pub(super) async fn identify(&mut self, body: &[u8]) -> Result<(), ClientError> {
        let opts = &self.node.opts;
        let req = IdentifyRequest::from_json(body)
            .map_err(|_| ClientError::fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body"))?;
        let mut s = self.client.settings();
        apply_identify(&mut s, &req, opts)
            .map_err(|e| ClientError::fatal("E_BAD_BODY", format!("IDENTIFY {e}")))?;
        let heartbeat_changed = s.heartbeat_interval != Some(DEFAULT_HEARTBEAT_INTERVAL);
        self.client.set_settings(s.clone());
        self.heartbeat_interval = s.heartbeat_interval;
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
        // Not over a unix socket: TLS there would protect nothing.
        let over_tcp = matches!(self.reader, ReadHalf::Plain(_));
        let tls_v1 =
            req.tls_v1 && over_tcp && self.node.tls.is_some() && self.client.tls().is_none();
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
}

/// Applies IDENTIFY's requests in upstream's order, with its messages.
fn apply_identify(
    s: &mut ClientSettings,
    req: &IdentifyRequest,
    opts: &Options,
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
