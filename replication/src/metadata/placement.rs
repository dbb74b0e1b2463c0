//! Replica placement for new partitions: spread replicas and leaders evenly
//! over the live brokers, and over racks when brokers have them.
//!
//! For each new partition, in order:
//! 1. the leader (first replica, the preferred leader) is the live broker
//!    leading the fewest partitions, then holding the fewest replicas, then
//!    with the lowest id;
//! 2. each further replica is the live broker holding the fewest replicas,
//!    preferring brokers on a rack the partition does not use yet, then the
//!    lowest id.
//!
//! Counts include every existing partition, so topics created one after
//! another stay balanced too. Deterministic: a function of the state only.

use std::collections::{BTreeMap, BTreeSet};

/// What placement knows of a live broker.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
    pub replicas: usize,
    pub leaders: usize,
}

/// Chooses `count` replica lists of `replication_factor` brokers each.
/// `candidates` must hold at least `replication_factor` live brokers.
pub fn place(candidates: &[Candidate], count: usize, replication_factor: usize) -> Vec<Vec<i32>> {
    assert!(
        replication_factor <= candidates.len(),
        "checked by the caller"
    );
    let mut load: BTreeMap<i32, Candidate> = candidates.iter().map(|c| (c.id, c.clone())).collect();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let leader = load
            .values()
            .min_by_key(|c| (c.leaders, c.replicas, c.id))
            .expect("at least one candidate")
            .id;
        let mut replicas = vec![leader];
        let mut racks: BTreeSet<Option<String>> = BTreeSet::new();
        racks.insert(load[&leader].rack.clone());
        while replicas.len() < replication_factor {
            let next = load
                .values()
                .filter(|c| !replicas.contains(&c.id))
                .min_by_key(|c| {
                    let rack_used = c.rack.is_some() && racks.contains(&c.rack);
                    (rack_used, c.replicas, c.id)
                })
                .expect("enough candidates")
                .id;
            racks.insert(load[&next].rack.clone());
            replicas.push(next);
        }
        for (i, id) in replicas.iter().enumerate() {
            let c = load.get_mut(id).expect("a candidate");
            c.replicas += 1;
            if i == 0 {
                c.leaders += 1;
            }
        }
        out.push(replicas);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[Option<&str>]) -> Vec<Candidate> {
        racks
            .iter()
            .enumerate()
            .map(|(i, r)| Candidate {
                id: i as i32 + 1,
                rack: r.map(str::to_string),
                replicas: 0,
                leaders: 0,
            })
            .collect()
    }

    #[test]
    fn given_equal_brokers_replicas_and_leaders_are_spread_evenly() {
        let placed = place(&brokers(&[None, None, None]), 6, 2);
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for p in &placed {
            assert_eq!(p.len(), 2);
            assert_ne!(p[0], p[1]);
            *leaders.entry(p[0]).or_insert(0) += 1;
            for r in p {
                *replicas.entry(*r).or_insert(0) += 1;
            }
        }
        assert!(leaders.values().all(|&n| n == 2), "{leaders:?}");
        assert!(replicas.values().all(|&n| n == 4), "{replicas:?}");
    }

    #[test]
    fn given_racks_replicas_of_a_partition_land_on_different_racks() {
        let cands = brokers(&[Some("a"), Some("a"), Some("b"), Some("b")]);
        for p in place(&cands, 8, 2) {
            let rack = |id: i32| cands.iter().find(|c| c.id == id).unwrap().rack.clone();
            assert_ne!(rack(p[0]), rack(p[1]), "{p:?}");
        }
    }

    #[test]
    fn existing_load_is_taken_into_account() {
        let mut cands = brokers(&[None, None]);
        cands[0].leaders = 5;
        cands[0].replicas = 5;
        let placed = place(&cands, 2, 1);
        assert_eq!(placed, vec![vec![2], vec![2]]);
    }
}
