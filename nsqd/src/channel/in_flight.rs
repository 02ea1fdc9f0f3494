//! A channel's in-flight messages, kept in delivery order.
//!
//! Consumers finish messages in about the order they got them, and thousands
//! may be in flight per channel. A hash map of the entries themselves scatters
//! them over a table far larger than the caches, so with a deep RDY every FIN
//! missed the cache on its entry, and every delivery on the slot it wrote
//! (about a quarter of nsqd's CPU per message delivered from memory). Here entries
//! sit in a ring in delivery order, written and read front to back, and the
//! map from message ID to ring position holds 16 bytes per message.

use super::state::InFlight;
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
use std::collections::VecDeque;

#[derive(Default)]
pub(super) struct InFlightTable {
    /// Slot `i` holds delivery number `first + i`; `None` once it left flight.
    ring: VecDeque<Option<InFlight>>,
    /// The delivery number of `ring[0]`.
    first: u64,
    /// Message ID to delivery number.
    index: FxHashMap<u64, u64>,
}

impl InFlightTable {
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Adds a message delivered now; one already in flight with the same ID
    /// is replaced.
    pub(super) fn insert(&mut self, entry: InFlight) {
        let number = self.first + self.ring.len() as u64;
        if let Some(old) = self.index.insert(entry.msg.id, number) {
            self.ring[(old - self.first) as usize] = None;
        }
        self.ring.push_back(Some(entry));
        // A message held long while others come and go leaves a trail of
        // empty slots behind it: squeeze them out once they dominate.
        if self.ring.len() > 2 * self.index.len() + 1024 {
            self.compact();
        }
    }

    #[cfg(test)]
    pub(super) fn get(&self, id: u64) -> Option<&InFlight> {
        let number = *self.index.get(&id)?;
        self.ring[(number - self.first) as usize].as_ref()
    }

    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut InFlight> {
        let number = *self.index.get(&id)?;
        self.ring[(number - self.first) as usize].as_mut()
    }

    pub(super) fn remove(&mut self, id: u64) -> Option<InFlight> {
        self.remove_if(id, |_| true)?.ok()
    }

    /// Removes message `id` if `accept` agrees, with one lookup: `None` when
    /// it is not in flight, `Some(Err(()))` when `accept` refused it.
    pub(super) fn remove_if(
        &mut self,
        id: u64,
        accept: impl FnOnce(&InFlight) -> bool,
    ) -> Option<Result<InFlight, ()>> {
        let Entry::Occupied(found) = self.index.entry(id) else {
            return None;
        };
        let slot = (*found.get() - self.first) as usize;
        if !self.ring[slot].as_ref().is_some_and(accept) {
            return Some(Err(()));
        }
        found.remove();
        let entry = self.ring[slot].take().expect("checked above");
        while matches!(self.ring.front(), Some(None)) {
            self.ring.pop_front();
            self.first += 1;
        }
        Some(Ok(entry))
    }

    /// In delivery order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &InFlight> {
        self.ring.iter().flatten()
    }

    /// Removes every entry, in delivery order.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = InFlight> + '_ {
        self.index.clear();
        self.first += self.ring.len() as u64;
        self.ring.drain(..).flatten()
    }

    pub(super) fn clear(&mut self) {
        self.drain().for_each(drop);
    }

    fn compact(&mut self) {
        let live: VecDeque<Option<InFlight>> =
            self.ring.drain(..).filter(Option::is_some).collect();
        for (i, entry) in live.iter().flatten().enumerate() {
            self.index.insert(entry.msg.id, self.first + i as u64);
        }
        self.ring = live;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;
    use std::time::Instant;

    fn entry(id: u64) -> InFlight {
        let now = Instant::now();
        InFlight {
            msg: Message {
                id,
                timestamp: 0,
                attempts: 1,
                body: Bytes::new(),
            },
            seq: id,
            client_id: 1,
            deadline: now,
            delivered_at: now,
        }
    }

    fn ids(table: &InFlightTable) -> Vec<u64> {
        table.iter().map(|e| e.msg.id).collect()
    }

    #[test]
    fn finishes_in_any_order_keep_the_rest_in_delivery_order() {
        let mut table = InFlightTable::default();
        (1..=5).for_each(|id| table.insert(entry(id)));
        assert_eq!(table.remove(3).map(|e| e.seq), Some(3));
        assert!(table.remove(3).is_none());
        assert_eq!(table.remove(1).map(|e| e.seq), Some(1));
        assert_eq!((table.len(), ids(&table)), (3, vec![2, 4, 5]));
        table.get_mut(4).expect("in flight").seq = 40;
        assert_eq!(table.get(4).map(|e| e.seq), Some(40));
        assert!(table.get(1).is_none());
        let drained: Vec<u64> = table.drain().map(|e| e.msg.id).collect();
        assert_eq!((drained, table.len()), (vec![2, 4, 5], 0));
        table.insert(entry(9));
        assert_eq!(ids(&table), vec![9]);
    }

    #[test]
    fn a_refused_removal_leaves_the_entry() {
        let mut table = InFlightTable::default();
        table.insert(entry(1));
        assert!(table.remove_if(2, |_| true).is_none());
        assert!(matches!(
            table.remove_if(1, |e| e.client_id == 9),
            Some(Err(()))
        ));
        assert_eq!((table.len(), ids(&table)), (1, vec![1]));
        let taken = table.remove_if(1, |e| e.client_id == 1);
        assert_eq!(taken.and_then(Result::ok).map(|e| e.seq), Some(1));
        assert!(table.ring.is_empty());
    }

    #[test]
    fn a_long_held_message_does_not_grow_the_ring_without_bound() {
        let mut table = InFlightTable::default();
        table.insert(entry(0));
        for id in 1..100_000 {
            table.insert(entry(id));
            assert!(table.remove(id).is_some());
        }
        assert!(table.ring.len() <= 2 * 2 + 1024, "{}", table.ring.len());
        assert_eq!(ids(&table), vec![0]);
        table.insert(entry(7));
        assert_eq!(table.remove(0).map(|e| e.msg.id), Some(0));
        assert_eq!(ids(&table), vec![7]);
        assert_eq!(table.ring.len(), 1);
    }

    #[test]
    fn a_second_delivery_of_an_id_replaces_the_first() {
        let mut table = InFlightTable::default();
        table.insert(entry(1));
        table.insert(entry(2));
        let mut again = entry(1);
        again.seq = 10;
        table.insert(again);
        assert_eq!((table.len(), ids(&table)), (2, vec![2, 1]));
        assert_eq!(table.remove(1).map(|e| e.seq), Some(10));
        assert_eq!(table.remove(2).map(|e| e.seq), Some(2));
        assert!(table.ring.is_empty());
    }
}
