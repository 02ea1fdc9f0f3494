//! The per-consumer tasks: the message pump, which moves messages from the
//! channel into the client's output while its RDY allows, and heartbeats.

use crate::channel::Channel;
use crate::client_conn::{ClientConn, ClientState};
use crate::message::Message;
use crate::output::Output;
use bytes::BytesMut;
use nsq::protocol::{FrameType, HEARTBEAT};
use std::sync::Arc;
use std::time::Duration;

/// Messages taken per lock of the channel, so publishers are never held long.
const TAKE_BATCH: usize = 128;

/// Output buffers' worth of messages taken before a flush: with large messages
/// the batch shrinks, so a client that does not read holds a few buffers, not
/// `TAKE_BATCH` messages of up to `--max-msg-size` each.
const BUFFERS_PER_BATCH: usize = 8;

/// Bytes of encoded messages one take may add to a client's output.
fn batch_budget(output_buffer_size: usize) -> usize {
    BUFFERS_PER_BATCH * output_buffer_size.max(1)
}

/// Encodes `msg` into `pending`; whether another message of its size still
/// fits in `budget` bytes counted from `start` (a take always hands out one
/// message, however large).
fn encode_within(msg: &Message, pending: &mut BytesMut, start: usize, budget: usize) -> bool {
    let at = pending.len();
    msg.encode_frame(pending);
    let size = pending.len() - at;
    pending.len() - start + size <= budget
}

/// Delivers while `in_flight < RDY` and the channel is not paused. Output is
/// flushed when the buffer fills or when there is nothing more to send right
/// now, so a busy consumer gets large writes and an idle one no delay.
pub async fn message_pump(client: Arc<ClientConn>, channel: Arc<Channel>, out: Arc<Output>) {
    let settings = client.settings();
    let flush_at = settings.output_buffer_size.max(1);
    let budget = batch_budget(flush_at);
    loop {
        let woken = client.woken();
        let available = channel.available();
        tokio::pin!(available);
        available.as_mut().enable();

        let mut writer = out.lock().await;
        let room = client.capacity().clamp(0, TAKE_BATCH as i64) as usize;
        let before = writer.pending.len();
        let taken = if room > 0 && client.state() == ClientState::Subscribed {
            let pending = &mut writer.pending;
            channel.take(
                &client,
                room,
                settings.msg_timeout,
                settings.sample_rate,
                |msg| encode_within(msg, pending, before, budget),
            )
        } else {
            0
        };
        if taken > 0 {
            client.delivered_through(writer.tcp());
        }
        let must_flush =
            writer.pending.len() >= flush_at || (taken == 0 && !writer.pending.is_empty());
        if must_flush && writer.flush().await.is_err() {
            client.close();
            return;
        }
        drop(writer);
        if taken > 0 {
            continue;
        }
        tokio::select! {
            _ = woken => {}
            _ = &mut available => {}
            _ = client.closed() => return,
        }
    }
}

/// What [`deliver_now`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handed {
    /// The client took all there was.
    All,
    /// The client took its whole share; more may be left.
    Share,
    /// The client's room or the batch's budget ran out first.
    Full,
}

/// Delivers what `channel` holds to `client` from the publisher's own task,
/// so that a consumer waiting for messages gets them without a wake-up of
/// its pump: at a low rate that wake-up, often onto the other worker, costs
/// more than the write. It takes at most `share` messages. `None` when it
/// could not take now (closed or closing, no room, its output busy or not a
/// plain socket), so that its pump must be woken.
pub fn deliver_now(client: &ClientConn, channel: &Channel, share: usize) -> Option<Handed> {
    let direct = client.direct()?;
    let mut writer = direct.out.try_lock()?;
    // Checked under the output lock, as the pump checks them: so that two
    // deliverers cannot both spend the same room, nothing follows
    // CLOSE_WAIT, and nothing goes in flight to a consumer whose session
    // has closed (it shuts the output down, under this lock, before it
    // gives its messages back).
    if client.is_closed() || client.state() != ClientState::Subscribed || !writer.writes_now() {
        return None;
    }
    let room = client.capacity().clamp(0, TAKE_BATCH.min(share) as i64) as usize;
    if room == 0 {
        return None;
    }
    let budget = batch_budget(direct.output_buffer_size);
    let pending = &mut writer.pending;
    let mut full = false;
    let taken = channel.take(
        client,
        room,
        direct.msg_timeout,
        direct.sample_rate,
        |msg| {
            full = !encode_within(msg, pending, 0, budget);
            !full
        },
    );
    if taken > 0 {
        client.delivered_through(writer.tcp());
    }
    match writer.try_flush() {
        Ok(true) => {}
        // The pump writes the rest, with its timeout.
        Ok(false) => client.wake_pump(),
        Err(_) => client.close(),
    }
    Some(if !full && taken < room {
        Handed::All
    } else if !full && room == share {
        Handed::Share
    } else {
        Handed::Full
    })
}

/// Sends `_heartbeat_` every `interval`; a failed write closes the connection.
pub async fn heartbeats(client: Arc<ClientConn>, out: Arc<Output>, interval: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {
                if out.send(FrameType::Response, HEARTBEAT).await.is_err() {
                    client.close();
                    return;
                }
            }
            _ = client.closed() => return,
        }
    }
}
