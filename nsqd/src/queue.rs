//! What waits in a topic or channel: a bounded memory queue and, behind it,
//! the backend that takes the overflow.

use crate::message::{Message, Run};
use std::collections::VecDeque;
use std::time::Instant;

/// A unit of queued work.
#[derive(Debug, Clone)]
pub enum Item {
    /// Fresh messages published together.
    Run(Run),
    /// One message, possibly delivered before.
    One(Message),
    /// A message to hold back until the given time (DPUB, `/pub?defer=`).
    Deferred(Message, Instant),
}

impl Item {
    pub fn len(&self) -> usize {
        match self {
            Item::Run(run) => run.len(),
            Item::One(_) | Item::Deferred(..) => 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `n` messages and returns the rest, if any.
    fn split_off(&mut self, n: usize) -> Option<Item> {
        match self {
            Item::Run(run) if n < run.len() => Some(Item::Run(run.split_off(n))),
            _ => None,
        }
    }
}

/// FIFO of items, counted in messages.
#[derive(Debug, Default)]
pub struct MemQueue {
    items: VecDeque<Item>,
    len: usize,
}

impl MemQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, item: Item) {
        self.len += item.len();
        self.items.push_back(item);
    }

    pub fn pop(&mut self) -> Option<Message> {
        loop {
            match self.items.front_mut()? {
                Item::Run(run) => {
                    let msg = run.next_message();
                    if run.is_empty() {
                        self.items.pop_front();
                    }
                    if let Some(msg) = msg {
                        self.len -= 1;
                        return Some(msg);
                    }
                }
                Item::One(_) | Item::Deferred(..) => {
                    self.len -= 1;
                    match self.items.pop_front() {
                        Some(Item::One(msg)) | Some(Item::Deferred(msg, _)) => return Some(msg),
                        _ => unreachable!("front was a single message"),
                    }
                }
            }
        }
    }

    /// Takes every queued item, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Item> + '_ {
        self.len = 0;
        self.items.drain(..)
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.len = 0;
    }
}

/// A memory queue with a size limit in front of an overflow backend. Once
/// anything has overflowed, new items queue behind it in the backend until it
/// drains, so that overflow never reorders the stream.
#[derive(Debug)]
pub struct BoundedQueue {
    mem: MemQueue,
    capacity: usize,
    backend: Backend,
}

impl BoundedQueue {
    pub fn new(capacity: usize, backend: Backend) -> Self {
        BoundedQueue {
            mem: MemQueue::default(),
            capacity,
            backend,
        }
    }

    /// Messages waiting, memory and backend together.
    pub fn depth(&self) -> usize {
        self.mem.len() + self.backend.depth()
    }

    pub fn backend_depth(&self) -> usize {
        self.backend.depth()
    }

    pub fn is_empty(&self) -> bool {
        self.depth() == 0
    }

    pub fn push(&mut self, mut item: Item) {
        if self.backend.depth() == 0 {
            let room = self.capacity.saturating_sub(self.mem.len());
            if room >= item.len() {
                self.mem.push(item);
                return;
            }
            if room > 0 {
                if let Some(rest) = item.split_off(room) {
                    self.mem.push(item);
                    item = rest;
                }
            }
        }
        self.backend.push(item);
    }

    pub fn pop(&mut self) -> Option<Message> {
        self.mem.pop().or_else(|| self.backend.pop())
    }

    /// Takes every waiting item, memory first.
    pub fn drain(&mut self) -> Vec<Item> {
        let mut items: Vec<Item> = self.mem.drain().collect();
        items.extend(self.backend.drain());
        items
    }

    pub fn clear(&mut self) {
        self.mem.clear();
        self.backend.clear();
    }

    /// Messages that overflowed where nothing could keep them.
    pub fn dropped(&self) -> u64 {
        match &self.backend {
            Backend::Discard { dropped } => *dropped,
            Backend::Overflow(_) => 0,
        }
    }
}

/// Where messages go past the memory limit.
#[derive(Debug)]
pub enum Backend {
    /// Ephemeral topics and channels: overflow is dropped, and counted.
    Discard { dropped: u64 },
    /// Unbounded memory, until the disk queue takes this place.
    Overflow(MemQueue),
}

impl Backend {
    fn depth(&self) -> usize {
        match self {
            Backend::Discard { .. } => 0,
            Backend::Overflow(q) => q.len(),
        }
    }

    fn push(&mut self, item: Item) {
        match self {
            Backend::Discard { dropped } => *dropped += item.len() as u64,
            Backend::Overflow(q) => q.push(item),
        }
    }

    fn pop(&mut self) -> Option<Message> {
        match self {
            Backend::Discard { .. } => None,
            Backend::Overflow(q) => q.pop(),
        }
    }

    fn drain(&mut self) -> Vec<Item> {
        match self {
            Backend::Discard { .. } => Vec::new(),
            Backend::Overflow(q) => q.drain().collect(),
        }
    }

    fn clear(&mut self) {
        if let Backend::Overflow(q) = self {
            q.clear()
        }
    }
}
