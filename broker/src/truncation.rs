//! Where a follower's log diverges from its new leader's (KIP-101, KIP-279).
//!
//! A follower that starts following a new leader asks for the end offset,
//! in the leader's log, of the latest epoch in its own log
//! (OffsetForLeaderEpoch). The leader answers with the largest epoch it has
//! at most the one asked and where that epoch ends in its log. Records
//! with the same offset and epoch are the same records (each epoch has one
//! leader), so the two logs agree exactly up to the first offset whose
//! epoch differs, and [`step`] finds it:
//! * the leader has the epoch the follower's log has (`E`): both logs
//!   hold `E`'s records up to the end of `E` in the shorter one; the
//!   follower keeps up to there and is done;
//! * the leader's largest epoch is below what the follower has: the
//!   follower keeps what it has up to the end of its own epochs at most
//!   the leader's, and asks again about its then-latest epoch;
//! * the leader has no epoch at most the one asked: nothing the follower
//!   has past its log start is known to the leader; it keeps its log start.
//!
//! Invariant (property-tested below against a model of two logs): the
//! rounds end, and the follower is truncated to exactly the longest common
//! prefix of the two logs — no more, no less.

use sluice_engine::checkpoint::LeaderEpochs;
use sluice_engine::{LeaderEpoch, Offset};

/// A round of reconciliation: truncate to the offset, then stop or ask again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Truncate to this offset; the log then agrees with the leader's.
    Done(Offset),
    /// Truncate to this offset, then ask about the latest epoch left.
    Again(Offset),
}

/// The follower's next step, given its epochs, its log start and end, and
/// the leader's answer for the follower's latest epoch: the leader's
/// largest epoch at most that one with its end offset, or `None`.
pub fn step(
    epochs: &LeaderEpochs,
    log_start: Offset,
    log_end: Offset,
    answer: Option<(LeaderEpoch, Offset)>,
) -> Step {
    let Some((leader_epoch, leader_end)) = answer else {
        return Step::Done(log_start.min(log_end));
    };
    match epochs.end_offset(leader_epoch, log_end) {
        Some((e, end)) if e == leader_epoch => Step::Done(end.min(leader_end).min(log_end)),
        Some((_, end)) => Step::Again(end.min(log_end)),
        None => Step::Done(log_start.min(log_end)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A log as the epoch of each offset from 0.
    fn epochs_of(log: &[i32]) -> LeaderEpochs {
        let mut e = LeaderEpochs::default();
        for (o, &epoch) in log.iter().enumerate() {
            e.assign(LeaderEpoch(epoch), Offset(o as i64));
        }
        e
    }

    /// What the leader answers about `epoch`.
    fn answer(leader: &[i32], epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        epochs_of(leader).end_offset(epoch, Offset(leader.len() as i64))
    }

    /// Runs the rounds; the offset the follower ends truncated to.
    fn reconcile(follower: &[i32], leader: &[i32]) -> usize {
        let mut log = follower.to_vec();
        for _ in 0..=follower.len() + 1 {
            let epochs = epochs_of(&log);
            let Some(latest) = epochs.latest() else {
                return 0;
            };
            let end = Offset(log.len() as i64);
            match step(&epochs, Offset::ZERO, end, answer(leader, latest)) {
                Step::Done(o) => return o.0 as usize,
                Step::Again(o) => log.truncate(o.0 as usize),
            }
        }
        panic!("reconciliation did not end");
    }

    #[test]
    fn a_follower_with_an_old_leaders_tail_drops_exactly_that_tail() {
        // Both had epoch 1 to offset 4; the follower got 2 more from the
        // old leader (epoch 2) that the new leader never saw; the new
        // leader wrote epoch 3.
        let follower = [1, 1, 1, 1, 2, 2];
        let leader = [1, 1, 1, 1, 3, 3, 3];
        assert_eq!(reconcile(&follower, &leader), 4);
        // A follower behind in the same epoch keeps everything.
        assert_eq!(reconcile(&[1, 1], &leader), 2);
        // A leader that has nothing the follower has.
        assert_eq!(reconcile(&[5, 5], &[6]), 0);
    }

    /// Two logs from one history: a common prefix of epochs, then each
    /// goes on with epochs of its own (the leader's later and distinct),
    /// as leaders that never saw each other's tails.
    fn histories() -> impl Strategy<Value = (Vec<i32>, Vec<i32>)> {
        (
            prop::collection::vec(0i32..3, 0..12),
            prop::collection::vec(0i32..3, 0..8),
            prop::collection::vec(0i32..3, 0..8),
        )
            .prop_map(|(common, f_tail, l_tail)| {
                let prefix = grow(&common, 0, 0);
                let at = prefix.last().copied().unwrap_or(0);
                let follower = prefix.iter().copied().chain(grow(&f_tail, at, 1)).collect();
                let leader = prefix.iter().copied().chain(grow(&l_tail, at, 2)).collect();
                (follower, leader)
            })
    }

    /// Epochs along a log from `epoch`: each 0 step starts a new epoch of
    /// `parity` (mod 3), so that two tails never share a new epoch.
    fn grow(steps: &[i32], mut epoch: i32, parity: i32) -> Vec<i32> {
        steps
            .iter()
            .map(|s| {
                if *s == 0 {
                    epoch += 1;
                    while epoch % 3 != parity {
                        epoch += 1;
                    }
                }
                epoch
            })
            .collect()
    }

    proptest! {
        #[test]
        fn truncation_removes_exactly_the_divergent_suffix((follower, leader) in histories()) {
            let common = follower
                .iter()
                .zip(&leader)
                .take_while(|(a, b)| a == b)
                .count();
            prop_assert_eq!(reconcile(&follower, &leader), common, "{:?} / {:?}", follower, leader);
        }
    }
}
