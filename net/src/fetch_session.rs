//! Incremental fetch sessions (KIP-227), one bounded cache per shard.
//!
//! A consumer that fetches many partitions need not name them all in
//! every request: its first (full) fetch creates a session holding, per
//! partition, the fetch offset and byte limit it asked for and what the
//! broker last told it (high watermark, last stable offset, log start).
//! Later (incremental) requests name only the partitions that changed on
//! the client's side and the ones to forget; incremental responses name
//! only the partitions with something new: records, a moved watermark or
//! log start, or an error.
//!
//! ## Request kinds (`session_id`, `session_epoch`)
//! | id | epoch | meaning |
//! |---|---|---|
//! | 0 | 0 | full fetch; create a session if the cache has room |
//! | 0 | -1 | full fetch without a session |
//! | n | -1 | close session n; full fetch without a session |
//! | n | 0 | close session n; full fetch, new session |
//! | n | e>0 | incremental fetch in session n, which expects epoch e |
//!
//! An unknown `n` gets FETCH_SESSION_ID_NOT_FOUND and an unexpected `e`
//! INVALID_FETCH_SESSION_EPOCH; either way the client starts over with a
//! full fetch. Epochs go 1, 2, … and wrap to 1 after `i32::MAX`.
//!
//! ## Shards
//! Sessions live in the shard that serves the connection. A client that
//! reconnects may land on another shard (SO_REUSEPORT): there its session
//! id is unknown, it gets FETCH_SESSION_ID_NOT_FOUND and starts a new
//! session. The low 8 bits of a session id are the shard's number, so an
//! id made by one shard never names a session of another.
//!
//! ## Bounds and eviction
//! The broker-wide `max.incremental.fetch.session.cache.slots` is split
//! evenly over the shards (at least one slot each). A session holds at
//! most [`partitions_max`] partitions: the partitions the cluster has, plus
//! [`PARTITIONS_SLACK`] for topics being created. A full request naming
//! more is served without a session; an incremental one that would grow a
//! session past it closes the session with FETCH_SESSION_ID_NOT_FOUND, and
//! the client starts over with a full request. So the cache's memory
//! follows from the slots and the cluster's size, not from what clients
//! send. When a shard's cache is full, a new session takes the slot of (as
//! Kafka's `FetchSessionCache`):
//! 1. the least recently used session, if it has been idle longer than
//!    `min.incremental.fetch.session.eviction.ms` (120 s); else
//! 2. the session with the fewest partitions, if the new one has more.
//!
//! Otherwise no session is made and the answer carries session id 0 (the
//! client keeps sending full requests). Consumers only: there are no
//! followers yet, so no session is privileged.
//!
//! Incremental responses list partitions in the session's order, and the
//! partitions that returned records move to the end of it (as Kafka does),
//! so that when `max_bytes` cuts a response short, the partitions left out
//! come first next time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;

/// `min.incremental.fetch.session.eviction.ms`.
pub(crate) const EVICTION_IDLE: Duration = Duration::from_millis(120_000);

/// Partitions a session may hold beyond those the cluster has.
pub(crate) const PARTITIONS_SLACK: usize = 1000;

/// The most partitions one session holds, for a cluster of `partitions`.
pub(crate) fn partitions_max(partitions: usize) -> usize {
    partitions + PARTITIONS_SLACK
}

/// A partition of a session: what the client asked, what it was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionPartition {
    pub topic: String,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    /// The leader epoch the client believes current (KIP-320); -1: none.
    pub current_leader_epoch: i32,
    /// Last sent; -1 before anything was sent (or after an error), so the
    /// next answer includes the partition.
    pub high_watermark: i64,
    pub last_stable: i64,
    pub log_start: i64,
}

impl SessionPartition {
    pub(crate) fn new(topic: String, partition: i32, fetch_offset: i64, max_bytes: i32) -> Self {
        Self {
            topic,
            partition,
            fetch_offset,
            max_bytes,
            current_leader_epoch: -1,
            high_watermark: -1,
            last_stable: -1,
            log_start: -1,
        }
    }

    /// Whether an answer with these values must include the partition, as
    /// Kafka's `CachedPartition.maybeUpdateResponseData`; remembers them.
    pub(crate) fn must_respond(
        &mut self,
        records: u64,
        error: i16,
        hw: i64,
        lso: i64,
        ls: i64,
    ) -> bool {
        let mut must = records > 0;
        if error != 0 {
            self.high_watermark = -1;
            return true;
        }
        if self.high_watermark != hw {
            self.high_watermark = hw;
            must = true;
        }
        if self.last_stable != lso {
            self.last_stable = lso;
            must = true;
        }
        if self.log_start != ls {
            self.log_start = ls;
            must = true;
        }
        must
    }
}

type Key = (String, i32);

/// One session.
#[derive(Debug)]
pub(crate) struct Session {
    /// The epoch the next incremental request must carry.
    pub epoch: i32,
    last_used: Instant,
    order: Vec<Key>,
    partitions: HashMap<Key, SessionPartition>,
}

impl Session {
    fn new(parts: Vec<SessionPartition>, now: Instant) -> Self {
        let mut s = Session {
            epoch: 1,
            last_used: now,
            order: Vec::new(),
            partitions: HashMap::new(),
        };
        s.update(parts, &[]);
        s
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Adds or updates `parts` (fetch offset and byte limit), then removes
    /// `forget`.
    pub(crate) fn update(&mut self, parts: Vec<SessionPartition>, forget: &[Key]) {
        for p in parts {
            let key = (p.topic.clone(), p.partition);
            match self.partitions.get_mut(&key) {
                Some(have) => {
                    have.fetch_offset = p.fetch_offset;
                    have.max_bytes = p.max_bytes;
                    have.current_leader_epoch = p.current_leader_epoch;
                }
                None => {
                    self.order.push(key.clone());
                    self.partitions.insert(key, p);
                }
            }
        }
        if !forget.is_empty() {
            for k in forget {
                self.partitions.remove(k);
            }
            let partitions = &self.partitions;
            self.order.retain(|k| partitions.contains_key(k));
        }
    }

    /// Moves `keys` to the end of the session's order, in their order.
    pub(crate) fn move_to_end(&mut self, keys: &[Key]) {
        if keys.is_empty() {
            return;
        }
        let moved: std::collections::HashSet<&Key> = keys.iter().collect();
        self.order.retain(|k| !moved.contains(k));
        self.order.extend(
            keys.iter()
                .filter(|k| self.partitions.contains_key(*k))
                .cloned(),
        );
    }

    /// The partitions, in session order.
    pub(crate) fn partitions(&self) -> impl Iterator<Item = &SessionPartition> {
        self.order.iter().filter_map(|k| self.partitions.get(k))
    }

    pub(crate) fn get_mut(&mut self, topic: &str, partition: i32) -> Option<&mut SessionPartition> {
        self.partitions.get_mut(&(topic.to_string(), partition))
    }
}

/// What a fetch request is, once its session fields are resolved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FetchContext {
    /// Full fetch, no session (answer with session id 0).
    Sessionless,
    /// Full fetch that should create a session once answered.
    Full,
    /// Incremental fetch in this session (updated, epoch advanced).
    Incremental(i32),
    /// Refused with this error code.
    Error(i16),
}

/// The sessions of one shard.
#[derive(Debug)]
pub(crate) struct SessionCache {
    slots: usize,
    shard: u8,
    sessions: HashMap<i32, Session>,
    /// xorshift state for session ids.
    seed: u64,
}

impl SessionCache {
    pub(crate) fn new(slots: usize, shard: usize) -> Self {
        Self {
            slots: slots.max(1),
            shard: shard as u8,
            sessions: HashMap::new(),
            seed: 0x9e37_79b9_7f4a_7c15 ^ ((shard as u64 + 1) << 17) ^ now_nanos(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Resolves a request's session fields: closes, checks, and updates
    /// an incremental session with `parts` and `forget`; a session that
    /// would hold more than `partitions_max` is closed.
    pub(crate) fn context(
        &mut self,
        id: i32,
        epoch: i32,
        parts: Vec<SessionPartition>,
        forget: &[Key],
        partitions_max: usize,
        now: Instant,
    ) -> (FetchContext, Vec<SessionPartition>) {
        if epoch == 0 || epoch == -1 {
            if id != 0 {
                self.sessions.remove(&id);
            }
            let ctx = if epoch == -1 {
                FetchContext::Sessionless
            } else {
                FetchContext::Full
            };
            return (ctx, parts);
        }
        let Some(session) = self.sessions.get_mut(&id) else {
            return (
                FetchContext::Error(ResponseError::FetchSessionIdNotFound.code()),
                Vec::new(),
            );
        };
        if session.epoch != epoch {
            return (
                FetchContext::Error(ResponseError::InvalidFetchSessionEpoch.code()),
                Vec::new(),
            );
        }
        session.update(parts, forget);
        if session.len() > partitions_max {
            self.sessions.remove(&id);
            return (
                FetchContext::Error(ResponseError::FetchSessionIdNotFound.code()),
                Vec::new(),
            );
        }
        if session.is_empty() {
            // Kafka closes a session left with nothing to fetch.
            self.sessions.remove(&id);
            return (FetchContext::Sessionless, Vec::new());
        }
        session.last_used = now;
        session.epoch = if session.epoch == i32::MAX {
            1
        } else {
            session.epoch + 1
        };
        let parts = session.partitions().cloned().collect();
        (FetchContext::Incremental(id), parts)
    }

    pub(crate) fn get_mut(&mut self, id: i32) -> Option<&mut Session> {
        self.sessions.get_mut(&id)
    }

    /// Creates a session for `parts` if there is a slot (after eviction,
    /// see the module docs) and they are at most `partitions_max`; its id,
    /// or 0.
    pub(crate) fn create(
        &mut self,
        parts: Vec<SessionPartition>,
        partitions_max: usize,
        now: Instant,
    ) -> i32 {
        if parts.is_empty() || parts.len() > partitions_max {
            return 0;
        }
        if self.sessions.len() >= self.slots && !self.evict_for(parts.len(), now) {
            return 0;
        }
        let id = loop {
            let id = self.next_id();
            if !self.sessions.contains_key(&id) {
                break id;
            }
        };
        let session = Session::new(parts, now);
        tracing::debug!(
            session = id,
            partitions = session.len(),
            "incremental fetch session created"
        );
        self.sessions.insert(id, session);
        id
    }

    fn evict_for(&mut self, size: usize, now: Instant) -> bool {
        let stale = self
            .sessions
            .iter()
            .min_by_key(|(_, s)| s.last_used)
            .filter(|(_, s)| now.saturating_duration_since(s.last_used) > EVICTION_IDLE)
            .map(|(id, _)| *id);
        let victim = stale.or_else(|| {
            // Fewest partitions first, then the oldest id-wise (stable).
            let by_size: BTreeMap<(usize, i32), ()> = self
                .sessions
                .iter()
                .map(|(id, s)| ((s.len(), *id), ()))
                .collect();
            by_size
                .keys()
                .next()
                .filter(|(len, _)| *len < size)
                .map(|(_, id)| *id)
        });
        match victim {
            Some(id) => {
                self.sessions.remove(&id);
                true
            }
            None => false,
        }
    }

    /// A positive id whose low 8 bits are this shard's number.
    fn next_id(&mut self) -> i32 {
        loop {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            let high = (self.seed >> 33) as u32 & 0x007f_ffff;
            let id = ((high << 8) | u32::from(self.shard)) as i32;
            if id > 0 {
                return id;
            }
        }
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: i32) -> Vec<SessionPartition> {
        (0..n)
            .map(|p| SessionPartition::new("t".into(), p, 0, 1000))
            .collect()
    }

    #[test]
    fn given_a_full_fetch_then_incremental_ones_epochs_advance_and_mismatches_are_refused() {
        let now = Instant::now();
        let mut c = SessionCache::new(10, 3);
        let (ctx, _) = c.context(0, 0, parts(2), &[], 100, now);
        assert_eq!(ctx, FetchContext::Full);
        let id = c.create(parts(2), 100, now);
        assert_eq!(id & 0xff, 3);
        let (ctx, ps) = c.context(id, 1, Vec::new(), &[], 100, now);
        assert_eq!(ctx, FetchContext::Incremental(id));
        assert_eq!(ps.len(), 2);
        // Epoch 1 again: now 2 is expected.
        let (ctx, _) = c.context(id, 1, Vec::new(), &[], 100, now);
        assert_eq!(
            ctx,
            FetchContext::Error(ResponseError::InvalidFetchSessionEpoch.code())
        );
        let (ctx, _) = c.context(id + 256, 2, Vec::new(), &[], 100, now);
        assert_eq!(
            ctx,
            FetchContext::Error(ResponseError::FetchSessionIdNotFound.code())
        );
        // Forgetting one partition, updating the other's offset.
        let mut moved = SessionPartition::new("t".into(), 1, 42, 1000);
        moved.high_watermark = 99;
        let (_, ps) = c.context(id, 2, vec![moved], &[("t".into(), 0)], 100, now);
        assert_eq!(ps.len(), 1);
        assert_eq!(
            (ps[0].partition, ps[0].fetch_offset, ps[0].high_watermark),
            (1, 42, -1)
        );
        // Partitions that returned records go to the back of the order.
        c.get_mut(id).unwrap().update(parts(3), &[]);
        c.get_mut(id).unwrap().move_to_end(&[("t".into(), 0)]);
        let order: Vec<i32> = c
            .get_mut(id)
            .unwrap()
            .partitions()
            .map(|p| p.partition)
            .collect();
        assert_eq!(order, [1, 2, 0]);
        c.get_mut(id)
            .unwrap()
            .update(Vec::new(), &[("t".into(), 0), ("t".into(), 2)]);
        // Forgetting the last one closes the session.
        let (ctx, _) = c.context(id, 3, Vec::new(), &[("t".into(), 1)], 100, now);
        assert_eq!(ctx, FetchContext::Sessionless);
        assert!(c.is_empty());
    }

    #[test]
    fn given_a_full_cache_stale_then_smaller_sessions_make_room_and_nothing_else_does() {
        let now = Instant::now();
        let mut c = SessionCache::new(2, 0);
        let a = c.create(parts(3), 100, now);
        let b = c.create(parts(5), 100, now);
        assert!(a != 0 && b != 0);
        // Not larger than the smallest, nothing stale: no session.
        assert_eq!(c.create(parts(3), 100, now), 0);
        // Larger than the smallest: it takes the 3-partition one's slot.
        let d = c.create(parts(4), 100, now);
        assert!(d != 0 && c.get_mut(a).is_none() && c.len() == 2);
        // Idle past the eviction time: the least recently used goes.
        let later = now + EVICTION_IDLE + Duration::from_secs(1);
        c.context(d, 1, Vec::new(), &[], 100, later);
        let e = c.create(parts(1), 100, later);
        assert!(e != 0 && c.get_mut(b).is_none() && c.get_mut(d).is_some());
    }

    #[test]
    fn given_more_partitions_than_the_bound_no_session_holds_them() {
        let now = Instant::now();
        let mut c = SessionCache::new(4, 0);
        assert_eq!(c.create(parts(6), 5, now), 0);
        let id = c.create(parts(5), 5, now);
        assert_ne!(id, 0);
        let more = vec![SessionPartition::new("u".into(), 0, 0, 10)];
        let (ctx, _) = c.context(id, 1, more, &[], 5, now);
        assert_eq!(
            ctx,
            FetchContext::Error(ResponseError::FetchSessionIdNotFound.code())
        );
        assert!(c.get_mut(id).is_none());
    }

    #[test]
    fn given_unchanged_values_a_partition_is_left_out_until_something_moves() {
        let mut p = SessionPartition::new("t".into(), 0, 0, 10);
        assert!(p.must_respond(0, 0, 5, 5, 0));
        assert!(!p.must_respond(0, 0, 5, 5, 0));
        assert!(p.must_respond(10, 0, 5, 5, 0));
        assert!(p.must_respond(0, 0, 6, 6, 0));
        assert!(p.must_respond(0, 3, -1, -1, -1));
        assert!(p.must_respond(0, 0, 6, 6, 0));
    }
}
