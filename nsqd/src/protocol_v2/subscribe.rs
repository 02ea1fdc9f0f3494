//! A consumer's commands: SUB, RDY's effect aside (a store on the
//! connection), FIN, REQ, TOUCH and CLS. The parser has checked the state
//! and the parameters; what is left can only fail against the channel.

use super::Session;
use crate::channel::{Channel, InFlightError, SubscribeError};
use crate::command::ClientError;
use crate::pump;
use crate::topic::PutError;
use nsq::protocol::{MessageId, CLOSE_WAIT, OK};
use std::sync::Arc;
use std::time::Duration;

impl Session {
    pub(super) async fn sub(&mut self, topic: &str, channel: &str) -> Result<(), ClientError> {
        self.check_auth("SUB", topic, channel).await?;
        // An ephemeral topic or channel may be going away just now: retry once.
        let mut joined = None;
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let created = self
                .node
                .get_or_create_topic(topic)
                .and_then(|t| self.node.get_or_create_channel(&t, channel));
            let candidate = match created {
                Ok(candidate) => candidate,
                Err(PutError::Exiting) => continue,
                Err(e @ (PutError::Backend(_) | PutError::Unreplicated(_))) => {
                    return Err(ClientError::fatal(
                        "E_SUB_FAILED",
                        format!("SUB failed {e}"),
                    ))
                }
            };
            match candidate.add_client(self.client.clone()) {
                Ok(()) => {
                    joined = Some(candidate);
                    break;
                }
                Err(SubscribeError::Exiting) => continue,
                Err(SubscribeError::TooManyConsumers) => {
                    return Err(ClientError::fatal(
                        "E_SUB_FAILED",
                        format!(
                            "SUB failed consumers for {topic}:{channel} exceeds limit of {}",
                            self.node.opts.max_channel_consumers
                        ),
                    ))
                }
            }
        }
        let joined = joined.ok_or_else(|| {
            ClientError::fatal("E_SUB_FAILED", "SUB failed to deleted topic/channel")
        })?;
        self.client.subscribed(self.out.clone());
        self.channel = Some(joined.clone());
        self.respond(OK).await?;
        self.pump = Some(tokio::spawn(pump::message_pump(
            self.client.clone(),
            joined,
            self.out.clone(),
        )));
        Ok(())
    }

    /// The channel of a subscribed (or closing) connection, which the parser
    /// has made sure this is.
    fn subscribed_to(&self, cmd: &str) -> Result<&Arc<Channel>, ClientError> {
        self.channel
            .as_ref()
            .ok_or_else(|| ClientError::invalid(format!("cannot {cmd} in current state")))
    }

    pub(super) fn fin(&mut self, id: MessageId) -> Result<(), ClientError> {
        let channel = self.subscribed_to("FIN")?;
        let result = id
            .to_u64()
            .ok_or(InFlightError::NotInFlight)
            .and_then(|n| channel.finish(self.client.id, n));
        result
            .map_err(|e| ClientError::non_fatal("E_FIN_FAILED", format!("FIN {id} failed {e}")))?;
        self.refill = self.refill.max(self.client.finished());
        Ok(())
    }

    /// REQ: back in line after `timeout_ms`, at most `--max-req-timeout`.
    pub(super) fn req(&mut self, id: MessageId, timeout_ms: u64) -> Result<(), ClientError> {
        let channel = self.subscribed_to("REQ")?;
        let max = self.node.opts.max_req_timeout;
        let delay = Duration::from_millis(timeout_ms).min(max);
        if delay.as_millis() as u64 != timeout_ms {
            tracing::debug!(
                client = self.client.id,
                requested_ms = timeout_ms,
                "REQ timeout clamped to --max-req-timeout"
            );
        }
        let result = id
            .to_u64()
            .ok_or(InFlightError::NotInFlight)
            .and_then(|n| channel.requeue(self.client.id, n, delay));
        result
            .map_err(|e| ClientError::non_fatal("E_REQ_FAILED", format!("REQ {id} failed {e}")))?;
        self.refill = self.refill.max(self.client.requeued());
        Ok(())
    }

    pub(super) fn touch(&self, id: MessageId) -> Result<(), ClientError> {
        let channel = self.subscribed_to("TOUCH")?;
        let msg_timeout = self.client.msg_timeout();
        let result = id
            .to_u64()
            .ok_or(InFlightError::NotInFlight)
            .and_then(|n| channel.touch(self.client.id, n, msg_timeout));
        result
            .map_err(|e| ClientError::non_fatal("E_TOUCH_FAILED", format!("TOUCH {id} failed {e}")))
    }

    /// CLS: no more messages; the client finishes what it holds, then closes.
    pub(super) async fn cls(&self) -> Result<(), ClientError> {
        self.client.start_closing();
        self.respond(CLOSE_WAIT).await
    }
}
