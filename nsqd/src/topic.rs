//! A topic: takes publishes and copies each message into every channel.
//!
//! The copy happens inline on the publishing connection, under the topic's
//! lock, so a publish is acknowledged only once every channel holds it and
//! channels see messages in publish order. Every copy shares the body buffer.
//! With no channel, or while paused, messages wait in the topic itself and
//! the first channel (or the unpause) receives the backlog.

use crate::channel::{Channel, ChannelConfig};
use crate::e2e::Samples;
use crate::queue::{Backend, BoundedQueue, Item};
use nsq::api::TopicStats;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    #[error("exiting")]
    Exiting,
}

struct State {
    channels: BTreeMap<String, Arc<Channel>>,
    queue: BoundedQueue,
    paused: bool,
    exiting: bool,
}

impl State {
    /// Hands the topic's backlog to its channels, unless paused or channel-less.
    fn flush_backlog(&mut self) {
        if self.paused || self.channels.is_empty() || self.queue.is_empty() {
            return;
        }
        for item in self.queue.drain() {
            fan_out(&self.channels, item);
        }
    }
}

fn fan_out(channels: &BTreeMap<String, Arc<Channel>>, item: Item) {
    let last = channels.len() - 1;
    let mut item = Some(item);
    for (i, channel) in channels.values().enumerate() {
        let copy = if i == last {
            item.take().expect("moved once")
        } else {
            item.clone().expect("present")
        };
        channel.put(copy);
    }
}

pub struct Topic {
    pub name: String,
    pub ephemeral: bool,
    channel_config: ChannelConfig,
    state: Mutex<State>,
    paused: AtomicBool,
    message_count: AtomicU64,
    message_bytes: AtomicU64,
}

impl Topic {
    pub fn new(name: &str, channel_config: ChannelConfig) -> Self {
        let ephemeral = nsq::protocol::is_ephemeral(name);
        let backend = if ephemeral {
            Backend::Discard { dropped: 0 }
        } else {
            Backend::Overflow(Default::default())
        };
        Topic {
            name: name.to_string(),
            ephemeral,
            state: Mutex::new(State {
                channels: BTreeMap::new(),
                queue: BoundedQueue::new(channel_config.mem_queue_size, backend),
                paused: false,
                exiting: false,
            }),
            channel_config,
            paused: AtomicBool::new(false),
            message_count: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
        }
    }

    /// Accepts published messages; `body_bytes` feeds `message_bytes`.
    pub fn put(&self, item: Item, body_bytes: usize) -> Result<(), PutError> {
        let mut st = self.state.lock();
        if st.exiting {
            return Err(PutError::Exiting);
        }
        self.message_count
            .fetch_add(item.len() as u64, Ordering::Relaxed);
        self.message_bytes
            .fetch_add(body_bytes as u64, Ordering::Relaxed);
        if st.paused || st.channels.is_empty() {
            st.queue.push(item);
        } else {
            fan_out(&st.channels, item);
        }
        Ok(())
    }

    /// The named channel, created if needed; `true` when it was created.
    pub fn get_or_create_channel(&self, name: &str) -> Result<(Arc<Channel>, bool), PutError> {
        let mut st = self.state.lock();
        if st.exiting {
            return Err(PutError::Exiting);
        }
        if let Some(channel) = st.channels.get(name) {
            return Ok((channel.clone(), false));
        }
        let channel = Channel::new(&self.name, name, self.channel_config.clone());
        st.channels.insert(name.to_string(), channel.clone());
        st.flush_backlog();
        Ok((channel, true))
    }

    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.state.lock().channels.get(name).cloned()
    }

    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.state.lock().channels.values().cloned().collect()
    }

    /// Removes and closes a channel.
    pub fn delete_channel(&self, name: &str) -> Option<Arc<Channel>> {
        let channel = self.state.lock().channels.remove(name)?;
        channel.close();
        Some(channel)
    }

    /// Removes an ephemeral channel that has lost its last consumer; a SUB that
    /// raced in first keeps it alive.
    pub fn retire_channel_if_unused(&self, name: &str) -> bool {
        let mut st = self.state.lock();
        let Some(channel) = st.channels.get(name) else {
            return false;
        };
        if !channel.retire_if_unused() {
            return false;
        }
        let channel = st.channels.remove(name).expect("present");
        drop(st);
        channel.close();
        true
    }

    pub fn channel_count(&self) -> usize {
        self.state.lock().channels.len()
    }

    /// Marks the topic as going away if it has no channel left.
    pub fn retire_if_unused(&self) -> bool {
        let mut st = self.state.lock();
        if st.channels.is_empty() && !st.exiting {
            st.exiting = true;
            true
        } else {
            false
        }
    }

    pub fn pause(&self) {
        self.state.lock().paused = true;
        self.paused.store(true, Ordering::Release);
    }

    pub fn unpause(&self) {
        let mut st = self.state.lock();
        st.paused = false;
        self.paused.store(false, Ordering::Release);
        st.flush_backlog();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Drops the messages waiting in the topic itself; channels keep theirs.
    pub fn empty(&self) {
        self.state.lock().queue.clear();
    }

    /// Stops the topic and every channel.
    pub fn close(&self) {
        let channels = {
            let mut st = self.state.lock();
            st.exiting = true;
            std::mem::take(&mut st.channels)
        };
        for channel in channels.values() {
            channel.close();
        }
    }

    pub fn stats(
        &self,
        channel_filter: &str,
        include_clients: bool,
        topic_filter: &str,
    ) -> Option<TopicStats> {
        let (depth, backend_depth, channels) = {
            let st = self.state.lock();
            let channels: Vec<Arc<Channel>> = if channel_filter.is_empty() {
                st.channels.values().cloned().collect()
            } else {
                st.channels
                    .get(channel_filter)
                    .cloned()
                    .into_iter()
                    .collect()
            };
            (st.queue.depth(), st.queue.backend_depth(), channels)
        };
        if !channel_filter.is_empty() && channels.is_empty() {
            return None;
        }
        let mut samples = Samples::default();
        for channel in &channels {
            channel.collect_e2e(&mut samples);
        }
        // A topic without channels has no latency stream at all.
        let quantiles: &[f64] = if channels.is_empty() {
            &[]
        } else {
            &self.channel_config.e2e_percentiles
        };
        Some(TopicStats {
            topic_name: self.name.clone(),
            channels: channels
                .iter()
                .map(|c| c.stats(include_clients, topic_filter))
                .collect(),
            depth: depth as i64,
            backend_depth: backend_depth as i64,
            message_count: self.message_count.load(Ordering::Relaxed),
            message_bytes: self.message_bytes.load(Ordering::Relaxed),
            paused: self.is_paused(),
            e2e_processing_latency: samples.report(quantiles),
        })
    }
}
