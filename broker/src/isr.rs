//! A leader's view of its followers: their positions, the in-sync replica
//! set (ISR) and the high watermark. A pure state machine: no I/O, no
//! clock (times are passed in), so it is tested against a model.
//!
//! ## What it decides
//! * **The high watermark** is the smallest durable position among the
//!   leader and every member of the ISR it may count (the committed ISR
//!   and members being added, KIP-497's "maximal ISR"); it never moves
//!   backwards.
//! * **Caught up** (Kafka's `lastCaughtUpTimeMs`): a follower whose fetch
//!   reached the leader's log end is caught up at that fetch; one whose
//!   fetch reached the log end the leader had at its previous fetch was
//!   caught up at that previous fetch.
//! * **Shrink**: an ISR member not caught up for `replica.lag.time.max.ms`
//!   leaves the ISR. **Expand**: a follower outside it whose durable
//!   position reached the high watermark and the start of the leader's
//!   epoch joins it. Changes are proposals: they take effect only when the
//!   coordinator commits them (AlterPartition, checked against the
//!   partition epoch) and the new metadata arrives ([`Leader::isr_committed`]);
//!   one proposal is in flight at a time.
//!
//! ## Invariants (asserted)
//! * `high_watermark` never decreases and never exceeds the leader's
//!   durable position;
//! * the high watermark never passes the durable position of a member of
//!   the committed ISR;
//! * the leader is always in the ISR it proposes.

use std::collections::BTreeMap;

use sluice_engine::Offset;

/// A follower as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Follower {
    /// Its log end (the offset of its last fetch).
    pub log_end: Offset,
    /// Everything below is durable on it.
    pub durable: Offset,
    /// When it was last caught up with the leader's log end.
    pub caught_up_ms: i64,
    /// The leader's log end when it last answered this follower, and when.
    last_fetch_leader_end: Offset,
    last_fetch_ms: i64,
}

/// A change of the ISR the leader wants the coordinator to commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    pub isr: Vec<i32>,
    /// The partition epoch it is based on (AlterPartition checks it).
    pub partition_epoch: i32,
}

/// A partition as the metadata assigns it, seen from its leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// This broker, the leader.
    pub me: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub partition_epoch: i32,
}

/// A partition's leader: its followers and its ISR.
#[derive(Clone, Debug)]
pub struct Leader {
    me: i32,
    replicas: Vec<i32>,
    /// The ISR as the coordinator last committed it.
    isr: Vec<i32>,
    partition_epoch: i32,
    /// A change proposed and not yet committed (or refused).
    pending: Option<IsrChange>,
    followers: BTreeMap<i32, Follower>,
    /// The leader's log end when it became leader: a follower joins the
    /// ISR only once it has the leader's whole epoch start.
    epoch_start: Offset,
    high_watermark: Offset,
    /// `replica.lag.time.max.ms`.
    lag_max_ms: i64,
}

impl Leader {
    /// A leader that just took over, with its log end, its high watermark
    /// (never lowered) and the partition as the metadata has it.
    pub fn new(
        a: Assignment,
        log_end: Offset,
        high_watermark: Offset,
        lag_max_ms: i64,
        now_ms: i64,
    ) -> Self {
        let Assignment {
            me,
            replicas,
            isr,
            partition_epoch,
        } = a;
        assert!(isr.contains(&me), "a leader is in its ISR");
        assert!(
            high_watermark <= log_end,
            "the high watermark within the log"
        );
        // An ISR member had the high watermark durably when it got there;
        // of the others nothing is known until they fetch.
        let known = |r: i32| {
            if isr.contains(&r) {
                high_watermark
            } else {
                Offset::ZERO
            }
        };
        let followers = replicas
            .iter()
            .filter(|&&r| r != me)
            .map(|&r| {
                (
                    r,
                    Follower {
                        log_end: known(r),
                        durable: known(r),
                        // A new leader gives every follower a full lag
                        // period to show up (Kafka does the same).
                        caught_up_ms: now_ms,
                        last_fetch_leader_end: Offset::ZERO,
                        last_fetch_ms: now_ms,
                    },
                )
            })
            .collect();
        Self {
            me,
            replicas,
            isr,
            partition_epoch,
            pending: None,
            followers,
            epoch_start: log_end,
            high_watermark,
            lag_max_ms,
        }
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The ISR as committed.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn follower(&self, id: i32) -> Option<&Follower> {
        self.followers.get(&id)
    }

    /// The ISR the high watermark must wait for: the committed one and any
    /// member a pending change adds.
    fn maximal_isr(&self) -> impl Iterator<Item = i32> + '_ {
        let adding = self
            .pending
            .iter()
            .flat_map(|p| p.isr.iter().copied())
            .filter(|r| !self.isr.contains(r));
        self.isr.iter().copied().chain(adding)
    }

    /// Records a follower's fetch at `now_ms`: its log end and durable
    /// position, against the leader's log end and durable position.
    /// Returns the new high watermark if it moved.
    pub fn fetched(
        &mut self,
        id: i32,
        log_end: Offset,
        durable: Offset,
        leader_end: Offset,
        leader_durable: Offset,
        now_ms: i64,
    ) -> Option<Offset> {
        let f = self.followers.get_mut(&id)?;
        // A follower's durable position is within its log.
        let durable = durable.min(log_end);
        if log_end >= leader_end {
            f.caught_up_ms = now_ms;
        } else if log_end >= f.last_fetch_leader_end {
            f.caught_up_ms = f.caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end = log_end;
        f.durable = durable;
        f.last_fetch_leader_end = leader_end;
        f.last_fetch_ms = now_ms;
        self.advance(leader_durable)
    }

    /// Moves the high watermark to what every member of the maximal ISR
    /// and the leader have durably; the new one if it moved.
    pub fn advance(&mut self, leader_durable: Offset) -> Option<Offset> {
        let mut hw = leader_durable;
        for r in self.maximal_isr().filter(|&r| r != self.me) {
            let d = self.followers.get(&r).map_or(Offset::ZERO, |f| f.durable);
            hw = hw.min(d);
        }
        if hw <= self.high_watermark {
            return None;
        }
        self.high_watermark = hw;
        debug_assert!(self.hw_holds(leader_durable));
        Some(hw)
    }

    /// The invariants of the module docs, for `leader_durable`.
    fn hw_holds(&self, leader_durable: Offset) -> bool {
        self.high_watermark <= leader_durable
            && self.isr.iter().filter(|&&r| r != self.me).all(|r| {
                self.followers
                    .get(r)
                    .is_some_and(|f| f.durable >= self.high_watermark)
            })
    }

    /// The ISR change due at `now_ms`, if any and if none is in flight:
    /// laggards out, or caught-up followers in. The caller proposes it and
    /// reports the outcome with [`Leader::isr_committed`] or
    /// [`Leader::isr_refused`].
    pub fn isr_change_due(&mut self, now_ms: i64) -> Option<IsrChange> {
        if self.pending.is_some() {
            return None;
        }
        let lagging = |r: &i32| {
            self.followers
                .get(r)
                .is_some_and(|f| now_ms - f.caught_up_ms > self.lag_max_ms)
        };
        let joining = |r: &i32| {
            !self.isr.contains(r)
                && self.followers.get(r).is_some_and(|f| {
                    f.durable >= self.high_watermark
                        && f.log_end >= self.epoch_start
                        && now_ms - f.caught_up_ms <= self.lag_max_ms
                })
        };
        let mut isr: Vec<i32> = self.isr.iter().copied().filter(|r| !lagging(r)).collect();
        isr.extend(self.replicas.iter().copied().filter(joining));
        isr.sort_unstable();
        isr.dedup();
        let mut now = self.isr.clone();
        now.sort_unstable();
        if isr == now {
            return None;
        }
        assert!(
            isr.contains(&self.me),
            "the leader is in the ISR it proposes"
        );
        let change = IsrChange {
            isr,
            partition_epoch: self.partition_epoch,
        };
        self.pending = Some(change.clone());
        Some(change)
    }

    /// New metadata for the partition: the committed ISR and epoch. A
    /// pending change is done (committed, or overtaken by another).
    pub fn isr_committed(&mut self, isr: Vec<i32>, partition_epoch: i32, leader_durable: Offset) {
        // Metadata in which the leader left its ISR comes with a new
        // leader epoch, and so a new `Leader`; anything else is ignored.
        if partition_epoch < self.partition_epoch || !isr.contains(&self.me) {
            return;
        }
        self.isr = isr;
        self.partition_epoch = partition_epoch;
        self.pending = None;
        self.advance(leader_durable);
    }

    /// The coordinator refused the pending change (a stale epoch, say):
    /// forget it; the next check proposes again from fresh metadata.
    pub fn isr_refused(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LAG: i64 = 30_000;

    fn leader(hw: i64) -> Leader {
        let a = Assignment {
            me: 1,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            partition_epoch: 0,
        };
        Leader::new(a, Offset(10), Offset(hw), LAG, 0)
    }

    #[test]
    fn the_high_watermark_waits_for_every_isr_member_durably() {
        let mut l = leader(0);
        assert_eq!(
            l.fetched(2, Offset(10), Offset(10), Offset(10), Offset(10), 1),
            None
        );
        // Follower 3 has it written, not yet durable.
        assert_eq!(
            l.fetched(3, Offset(10), Offset(4), Offset(10), Offset(10), 1),
            Some(Offset(4))
        );
        assert_eq!(
            l.fetched(3, Offset(10), Offset(10), Offset(10), Offset(10), 2),
            Some(Offset(10))
        );
        // Never past the leader's own durable position.
        l.fetched(2, Offset(20), Offset(20), Offset(20), Offset(12), 3);
        l.fetched(3, Offset(20), Offset(20), Offset(20), Offset(12), 3);
        assert_eq!(l.high_watermark(), Offset(12));
    }

    #[test]
    fn a_lagging_member_leaves_and_a_caught_up_one_rejoins() {
        let mut l = leader(10);
        l.fetched(2, Offset(10), Offset(10), Offset(10), Offset(10), 1);
        l.fetched(3, Offset(5), Offset(5), Offset(10), Offset(10), 1);
        assert_eq!(l.isr_change_due(LAG), None);
        l.fetched(2, Offset(10), Offset(10), Offset(10), Offset(10), LAG + 1);
        let out = l.isr_change_due(LAG + 2).expect("3 lags");
        assert_eq!(out.isr, vec![1, 2]);
        // One change at a time.
        assert_eq!(l.isr_change_due(LAG + 3), None);
        l.isr_committed(vec![1, 2], 1, Offset(10));
        // Without 3 the high watermark moves on.
        assert_eq!(
            l.fetched(2, Offset(15), Offset(15), Offset(15), Offset(15), LAG + 4),
            Some(Offset(15))
        );
        l.fetched(3, Offset(15), Offset(15), Offset(15), Offset(15), LAG + 5);
        let back = l.isr_change_due(LAG + 6).expect("3 caught up");
        assert_eq!((back.isr, back.partition_epoch), (vec![1, 2, 3], 1));
    }

    #[test]
    fn a_refused_change_is_proposed_again() {
        let mut l = leader(10);
        l.fetched(3, Offset(0), Offset(0), Offset(10), Offset(10), 0);
        assert!(l.isr_change_due(LAG + 1).is_some());
        l.isr_refused();
        assert!(l.isr_change_due(LAG + 1).is_some());
    }

    /// A step of a random run.
    #[derive(Clone, Debug)]
    enum Step {
        Append(u8),
        Sync,
        Fetch {
            follower: i32,
            behind: u8,
            undurable: u8,
        },
        Check,
        Commit,
        Refuse,
        Tick(u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1u8..20).prop_map(Step::Append),
            Just(Step::Sync),
            (2i32..=3, 0u8..30, 0u8..10).prop_map(|(follower, behind, undurable)| Step::Fetch {
                follower,
                behind,
                undurable
            }),
            Just(Step::Check),
            Just(Step::Commit),
            Just(Step::Refuse),
            (0u16..20_000).prop_map(Step::Tick),
        ]
    }

    proptest! {
        /// Against a model of the leader's log: the high watermark never
        /// moves backwards, never passes the leader's durable end, and never
        /// passes what a committed ISR member has durably.
        #[test]
        fn the_high_watermark_is_monotonic_and_never_passes_the_isr(steps in prop::collection::vec(step(), 1..200)) {
            let (mut end, mut durable, mut now) = (10i64, 10i64, 0i64);
            let mut l = leader(10);
            let mut proposed: Option<IsrChange> = None;
            let mut epoch = 0;
            let mut last_hw = l.high_watermark();
            // A follower's log only grows within a leader's epoch.
            // Members of the ISR had the high watermark (10) at the start.
            let mut seen: BTreeMap<i32, (i64, i64)> = [(2, (10, 10)), (3, (10, 10))].into();
            for s in steps {
                match s {
                    Step::Append(n) => end += i64::from(n),
                    Step::Sync => durable = end,
                    Step::Fetch { follower, behind, undurable } => {
                        let prev = seen.get(&follower).copied().unwrap_or((0, 0));
                        let log_end = (end - i64::from(behind)).max(prev.0);
                        let d = (log_end - i64::from(undurable)).max(prev.1);
                        seen.insert(follower, (log_end, d));
                        l.fetched(follower, Offset(log_end), Offset(d), Offset(end), Offset(durable), now);
                    }
                    Step::Check => {
                        if let Some(c) = l.isr_change_due(now) {
                            prop_assert!(c.isr.contains(&1));
                            proposed = Some(c);
                        }
                    }
                    Step::Commit => {
                        if let Some(c) = proposed.take() {
                            epoch += 1;
                            l.isr_committed(c.isr, epoch, Offset(durable));
                        }
                    }
                    Step::Refuse => {
                        if proposed.take().is_some() {
                            l.isr_refused();
                        }
                    }
                    Step::Tick(ms) => now += i64::from(ms),
                }
                l.advance(Offset(durable));
                let hw = l.high_watermark();
                prop_assert!(hw >= last_hw, "backwards: {last_hw:?} -> {hw:?}");
                prop_assert!(hw.0 <= durable, "{hw:?} past the leader's durable {durable}");
                for r in l.isr().iter().filter(|&&r| r != 1) {
                    let f = l.follower(*r).unwrap();
                    prop_assert!(f.durable >= hw, "{hw:?} past member {r}'s {:?}", f.durable);
                }
                last_hw = hw;
            }
        }
    }
}
