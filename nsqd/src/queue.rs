//! What waits in a topic or channel: a bounded memory queue and, behind it,
//! the backend that takes the overflow.

use crate::diskqueue::{DiskPeek, DiskQueue, Stored};
use crate::guid::unix_nanos;
use crate::message::{Message, Run};
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

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

    /// Keeps the first `n` messages and returns the rest, if any.
    fn split_off(&mut self, n: usize) -> Option<Item> {
        match self {
            Item::Run(run) if n < run.len() => Some(Item::Run(run.split_off(n))),
            _ => None,
        }
    }

    /// Each message with its deferral deadline as Unix nanoseconds.
    pub fn for_each_message(
        self,
        mut f: impl FnMut(&Message, Option<i64>) -> io::Result<()>,
    ) -> io::Result<()> {
        match self {
            Item::Run(run) => run.into_iter().try_for_each(|m| f(&m, None)),
            Item::One(m) => f(&m, None),
            Item::Deferred(m, due) => f(&m, Some(instant_to_unix(due))),
        }
    }

    /// The item a stored message becomes again.
    pub fn from_stored(stored: Stored) -> Item {
        match stored.deliver_at {
            Some(at) if at > unix_nanos() => Item::Deferred(stored.msg, unix_to_instant(at)),
            _ => Item::One(stored.msg),
        }
    }
}

pub fn instant_to_unix(at: Instant) -> i64 {
    let now = Instant::now();
    let base = unix_nanos();
    if at >= now {
        base + at.duration_since(now).as_nanos() as i64
    } else {
        base - now.duration_since(at).as_nanos() as i64
    }
}

pub fn unix_to_instant(unix_ns: i64) -> Instant {
    let delta = unix_ns - unix_nanos();
    let now = Instant::now();
    if delta > 0 {
        now + Duration::from_nanos(delta as u64)
    } else {
        now
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

    pub fn push_front(&mut self, item: Item) {
        self.len += item.len();
        self.items.push_front(item);
    }

    /// The next message, as an item of its own.
    pub fn pop(&mut self) -> Option<Item> {
        loop {
            match self.items.front_mut()? {
                Item::Run(run) => {
                    let msg = run.next_message();
                    if run.is_empty() {
                        self.items.pop_front();
                    }
                    if let Some(msg) = msg {
                        self.len -= 1;
                        return Some(Item::One(msg));
                    }
                }
                Item::One(_) | Item::Deferred(..) => {
                    self.len -= 1;
                    return self.items.pop_front();
                }
            }
        }
    }

    /// Appends up to `n` messages in delivery order to `out`, taking none;
    /// passes over deferred ones not due at `now` and those `keep` refuses.
    /// Returns how many it appended.
    pub fn peek(
        &self,
        n: usize,
        now: Instant,
        keep: &dyn Fn(&Message) -> bool,
        out: &mut Vec<Message>,
    ) -> usize {
        let start = out.len();
        for item in &self.items {
            let mut offer = |msg: Message| {
                if keep(&msg) {
                    out.push(msg);
                }
                out.len() - start < n
            };
            let more = match item {
                Item::Run(run) => {
                    let mut run = run.clone();
                    let mut more = true;
                    while let Some(msg) = run.next_message().filter(|_| more) {
                        more = offer(msg);
                    }
                    more
                }
                Item::One(msg) => offer(msg.clone()),
                Item::Deferred(_, due) if *due > now => true,
                Item::Deferred(msg, _) => offer(msg.clone()),
            };
            if !more {
                break;
            }
        }
        out.len() - start
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
        self.mem.is_empty() && self.backend.is_empty()
    }

    pub fn push(&mut self, mut item: Item) -> io::Result<()> {
        if self.backend.is_empty() {
            let room = self.capacity.saturating_sub(self.mem.len());
            if room >= item.len() {
                self.mem.push(item);
                return Ok(());
            }
            if room > 0 {
                if let Some(rest) = item.split_off(room) {
                    self.mem.push(item);
                    item = rest;
                }
            }
        }
        self.backend.push(item)
    }

    /// Puts items back at the head, past the size limit (restoring state saved
    /// at shutdown, in-flight messages of a departed consumer).
    pub fn push_front(&mut self, item: Item) {
        self.mem.push_front(item);
    }

    /// The next message, memory first.
    pub fn pop(&mut self) -> Option<Item> {
        self.mem.pop().or_else(|| self.backend.pop())
    }

    /// Up to `n` messages in delivery order, taking none: those in memory
    /// into `out` (see [`MemQueue::peek`]), and when they are fewer, what
    /// reads the rest from the disk queue, to be read without this queue's
    /// owner locked.
    pub fn peek(
        &mut self,
        n: usize,
        keep: &dyn Fn(&Message) -> bool,
        out: &mut Vec<Message>,
    ) -> io::Result<Option<DiskPeek>> {
        let found = self.mem.peek(n, Instant::now(), keep, out);
        match &mut self.backend {
            Backend::Disk(q) if found < n => q.peek_plan(),
            _ => Ok(None),
        }
    }

    /// Takes what waits in memory, oldest first; the backend keeps its part.
    pub fn drain_memory(&mut self) -> Vec<Item> {
        self.mem.drain().collect()
    }

    pub fn clear(&mut self) -> io::Result<()> {
        self.mem.clear();
        self.backend.clear()
    }

    pub fn corrupt_bytes(&self) -> u64 {
        self.backend.corrupt_bytes()
    }

    /// Bytes waiting in the disk queue.
    pub fn backend_bytes(&self) -> u64 {
        match &self.backend {
            Backend::Discard { .. } => 0,
            Backend::Disk(q) => q.bytes(),
        }
    }

    pub fn backend(&mut self) -> &mut Backend {
        &mut self.backend
    }

    pub fn into_backend(self) -> Backend {
        self.backend
    }
}

/// Where messages go past the memory limit.
pub enum Backend {
    /// Ephemeral topics and channels: overflow is dropped, and counted.
    Discard {
        dropped: u64,
    },
    Disk(Box<DiskQueue>),
}

impl Backend {
    fn depth(&self) -> usize {
        match self {
            Backend::Discard { .. } => 0,
            Backend::Disk(q) => q.depth() as usize,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Backend::Discard { .. } => true,
            Backend::Disk(q) => q.is_empty(),
        }
    }

    fn push(&mut self, item: Item) -> io::Result<()> {
        match self {
            Backend::Discard { dropped } => {
                *dropped += item.len() as u64;
                Ok(())
            }
            // One publish's messages reach the OS before its OK, and a
            // publish the disk refuses leaves none of them behind.
            Backend::Disk(q) => {
                let mark = q.mark();
                let result = item
                    .for_each_message(|m, deliver_at| q.put(m, deliver_at))
                    .and_then(|()| q.hand_to_os());
                if result.is_err() {
                    q.undo_batch(mark);
                }
                result
            }
        }
    }

    fn pop(&mut self) -> Option<Item> {
        match self {
            Backend::Discard { .. } => None,
            Backend::Disk(q) => match q.pop() {
                Ok(stored) => stored.map(Item::from_stored),
                Err(e) => {
                    tracing::error!(error = %e, "disk queue read failed");
                    None
                }
            },
        }
    }

    fn clear(&mut self) -> io::Result<()> {
        match self {
            Backend::Discard { .. } => Ok(()),
            Backend::Disk(q) => q.empty(),
        }
    }

    pub fn corrupt_bytes(&self) -> u64 {
        match self {
            Backend::Discard { .. } => 0,
            Backend::Disk(q) => q.corrupt_bytes(),
        }
    }

    /// Makes the disk queue durable and waits for it. Blocking.
    pub fn sync(&mut self) -> io::Result<()> {
        match self {
            Backend::Discard { .. } => Ok(()),
            Backend::Disk(q) if q.needs_sync() => q.sync(),
            Backend::Disk(q) => q.wait_for_syncs(),
        }
    }

    /// Has the disk queue made durable soon, without waiting (`--sync-timeout`).
    pub fn sync_soon(&mut self) -> io::Result<()> {
        match self {
            Backend::Disk(q) if q.needs_sync() => q.sync_soon(),
            _ => Ok(()),
        }
    }
}
