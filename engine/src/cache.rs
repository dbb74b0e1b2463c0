//! The per-shard tail cache: the most recently appended batches of every
//! partition on the shard, so that consumers keeping up with producers are
//! served from memory without touching the disk.
//!
//! Bounded by one byte budget for the whole shard (its share of `tail.cache.bytes`),
//! evicting the oldest batch of the shard first. Each partition's entries
//! are a contiguous run of its newest batches, so a read either starts
//! inside that run or goes to the files.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use bytes::Bytes;

use crate::types::Offset;

/// One cached batch.
#[derive(Clone, Debug)]
pub struct Cached {
    pub base: Offset,
    pub last: Offset,
    pub bytes: Bytes,
}

/// A partition's cached batches, oldest first.
#[derive(Debug, Default)]
pub struct PartitionCache {
    entries: VecDeque<Cached>,
}

impl PartitionCache {
    /// The cached batches from the one containing `from` on, if `from` is at
    /// or after the oldest cached batch's base offset.
    pub fn from(&self, from: Offset) -> Option<impl Iterator<Item = &Cached>> {
        let first = self.entries.front()?;
        if from < first.base {
            return None;
        }
        let i = self.entries.partition_point(|c| c.last < from);
        Some(self.entries.range(i..))
    }
}

/// The shard-wide budget and eviction order.
///
/// `order` holds one record per inserted batch, oldest first. Batches
/// removed other than by eviction (truncation, retention, a closed
/// partition) leave their record behind as stale; `stale` counts them so
/// that the queue is compacted only when they are a large share of it.
pub struct TailCache {
    bytes_max: usize,
    bytes: Cell<usize>,
    order: RefCell<VecDeque<(Weak<RefCell<PartitionCache>>, Offset)>>,
    stale: Cell<usize>,
}

impl TailCache {
    pub fn new(bytes_max: usize) -> Self {
        Self {
            bytes_max,
            bytes: Cell::new(0),
            order: RefCell::new(VecDeque::new()),
            stale: Cell::new(0),
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }

    /// Adds a partition's newest batch and evicts the shard's oldest ones
    /// until the budget holds.
    pub fn insert(&self, part: &Rc<RefCell<PartitionCache>>, batch: Cached) {
        if batch.bytes.len() > self.bytes_max {
            return;
        }
        self.bytes.set(self.bytes.get() + batch.bytes.len());
        self.order
            .borrow_mut()
            .push_back((Rc::downgrade(part), batch.base));
        part.borrow_mut().entries.push_back(batch);
        while self.bytes.get() > self.bytes_max {
            let Some((weak, base)) = self.order.borrow_mut().pop_front() else {
                break;
            };
            let Some(p) = weak.upgrade() else {
                self.stale.set(self.stale.get().saturating_sub(1));
                continue;
            };
            let mut p = p.borrow_mut();
            // Entries already removed (truncation, a dropped partition) were
            // subtracted then; only the oldest entry is evicted here.
            if p.entries.front().is_some_and(|c| c.base == base) {
                let c = p.entries.pop_front().expect("front exists");
                self.bytes.set(self.bytes.get() - c.bytes.len());
            } else {
                self.stale.set(self.stale.get().saturating_sub(1));
            }
        }
        self.compact_order();
    }

    /// Removes a partition's entries with offsets at or after `from`.
    pub fn truncate(&self, part: &RefCell<PartitionCache>, from: Offset) {
        let mut p = part.borrow_mut();
        while p.entries.back().is_some_and(|c| c.last >= from) {
            let c = p.entries.pop_back().expect("back exists");
            self.bytes.set(self.bytes.get() - c.bytes.len());
            self.stale.set(self.stale.get() + 1);
        }
    }

    /// Removes a partition's entries wholly below `start`.
    pub fn drop_below(&self, part: &RefCell<PartitionCache>, start: Offset) {
        let mut p = part.borrow_mut();
        while p.entries.front().is_some_and(|c| c.last < start) {
            let c = p.entries.pop_front().expect("front exists");
            self.bytes.set(self.bytes.get() - c.bytes.len());
            self.stale.set(self.stale.get() + 1);
        }
    }

    /// Removes all of a partition's entries (it is closed or deleted).
    pub fn clear(&self, part: &RefCell<PartitionCache>) {
        self.truncate(part, Offset(i64::MIN));
    }

    /// Keeps the eviction queue from growing with stale records: once they
    /// are more than half of it (and more than 1024), drop them in one pass,
    /// telling a live record by a binary search of its partition's entries.
    /// Amortised constant time per insert.
    fn compact_order(&self) {
        let mut order = self.order.borrow_mut();
        let stale = self.stale.get();
        if stale < 1024 || stale * 2 < order.len() {
            return;
        }
        order.retain(|(w, base)| {
            w.upgrade().is_some_and(|p| {
                let p = p.borrow();
                let i = p.entries.partition_point(|c| c.base < *base);
                p.entries.get(i).is_some_and(|c| c.base == *base)
            })
        });
        self.stale.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, len: usize) -> Cached {
        Cached {
            base: Offset(base),
            last: Offset(base + 9),
            bytes: Bytes::from(vec![0u8; len]),
        }
    }

    #[test]
    fn given_budget_exceeded_should_evict_oldest_across_partitions() {
        let cache = TailCache::new(300);
        let a = Rc::new(RefCell::new(PartitionCache::default()));
        let b = Rc::new(RefCell::new(PartitionCache::default()));
        cache.insert(&a, batch(0, 100));
        cache.insert(&b, batch(0, 100));
        cache.insert(&a, batch(10, 100));
        assert_eq!(cache.bytes(), 300);
        cache.insert(&b, batch(10, 100));
        assert_eq!(cache.bytes(), 300);
        assert!(
            a.borrow().from(Offset(5)).is_none(),
            "a's oldest was evicted"
        );
        let got: Vec<i64> = a
            .borrow()
            .from(Offset(12))
            .unwrap()
            .map(|c| c.base.0)
            .collect();
        assert_eq!(got, vec![10]);
        let got: Vec<i64> = b
            .borrow()
            .from(Offset(0))
            .unwrap()
            .map(|c| c.base.0)
            .collect();
        assert_eq!(got, vec![0, 10]);
    }

    #[test]
    fn given_many_truncations_the_eviction_queue_stays_bounded() {
        let cache = TailCache::new(1 << 30);
        let a = Rc::new(RefCell::new(PartitionCache::default()));
        for round in 0..100i64 {
            for i in 0..100 {
                cache.insert(&a, batch(round * 1000 + i * 10, 10));
            }
            cache.truncate(&a, Offset(round * 1000));
        }
        assert_eq!(cache.bytes(), 0);
        assert!(
            cache.order.borrow().len() <= 2 * 1024 + 100,
            "{}",
            cache.order.borrow().len()
        );
    }

    #[test]
    fn given_truncation_should_release_budget_once() {
        let cache = TailCache::new(1000);
        let a = Rc::new(RefCell::new(PartitionCache::default()));
        for i in 0..5 {
            cache.insert(&a, batch(i * 10, 100));
        }
        cache.truncate(&a, Offset(25));
        assert_eq!(cache.bytes(), 200);
        cache.drop_below(&a, Offset(10));
        assert_eq!(cache.bytes(), 100);
        for i in 0..20 {
            cache.insert(&a, batch(100 + i * 10, 100));
        }
        assert!(cache.bytes() <= 1000);
        cache.clear(&a);
        assert_eq!(cache.bytes(), 0);
    }
}
