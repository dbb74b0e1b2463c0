use proptest::prelude::*;
use sluice_replication::metadata::snapshot;
use sluice_replication::metadata::*;

fn register(id: i32, inc: u8) -> Command {
    Command::RegisterBroker {
        id,
        incarnation: [inc; 16],
        endpoints: vec![Endpoint {
            listener: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9092 + id as u16,
            security_protocol: "PLAINTEXT".into(),
        }],
        rack: None,
    }
}

fn topic(name: &str, id: u8, partitions: i32, rf: i16) -> Command {
    Command::CreateTopic {
        name: name.into(),
        id: [id; 16],
        partitions,
        replication_factor: rf,
        assignment: vec![],
        configs: vec![],
    }
}

/// Applies commands at indexes 1, 2, … and returns the outcomes.
fn run(state: &mut MetadataState, cmds: &[Command]) -> Vec<Outcome> {
    let start = state.last_applied;
    cmds.iter()
        .enumerate()
        .map(|(i, c)| state.apply(start + 1 + i as u64, c))
        .collect()
}

fn code(o: &Outcome) -> Option<ErrorCode> {
    match o {
        Outcome::Refused(e) => Some(e.code),
        _ => None,
    }
}

/// Three live brokers.
fn cluster() -> MetadataState {
    let mut s = MetadataState::default();
    for id in 1..=3 {
        let o = s.apply(s.last_applied + 1, &register(id, id as u8));
        let Outcome::BrokerRegistered { epoch } = o else {
            panic!("{o:?}")
        };
        s.apply(s.last_applied + 1, &Command::UnfenceBroker { id, epoch });
    }
    s
}

#[test]
fn topics_are_validated_as_kafka_validates_them() {
    let mut s = cluster();
    let out = run(
        &mut s,
        &[
            topic("orders", 1, 6, 3),
            topic("orders", 2, 1, 1),
            topic("big", 3, 1, 4),
            topic("bad name", 4, 1, 1),
            topic("a.b", 5, 1, 1),
            topic("a_b", 6, 1, 1),
            topic("zero", 7, 0, 1),
            topic("rf0", 8, 1, 0),
            Command::CreateTopic {
                name: "cfg".into(),
                id: [9; 16],
                partitions: 1,
                replication_factor: 1,
                assignment: vec![],
                configs: vec![("retention.ms".into(), "soon".into())],
            },
            Command::DeleteTopic {
                name: "nope".into(),
            },
        ],
    );
    assert!(matches!(
        out[0],
        Outcome::TopicCreated {
            partitions: 6,
            replication_factor: 3,
            ..
        }
    ));
    let codes: Vec<_> = out[1..].iter().map(code).collect();
    assert_eq!(
        codes,
        vec![
            Some(ErrorCode::TopicAlreadyExists),
            Some(ErrorCode::InvalidReplicationFactor),
            Some(ErrorCode::InvalidTopic),
            None,
            Some(ErrorCode::InvalidTopic), // collides with a.b
            Some(ErrorCode::InvalidPartitions),
            Some(ErrorCode::InvalidReplicationFactor),
            Some(ErrorCode::InvalidConfig),
            Some(ErrorCode::UnknownTopicOrPartition),
        ]
    );
    let Outcome::Refused(e) = &out[2] else {
        unreachable!()
    };
    assert!(
        e.message.contains("larger than the 3 live brokers"),
        "{}",
        e.message
    );
}

#[test]
fn placement_spreads_leaders_and_the_first_replica_leads() {
    let mut s = cluster();
    run(&mut s, &[topic("t", 1, 6, 2)]);
    let t = &s.topics["t"];
    let mut leaders = [0; 4];
    for p in &t.partitions {
        assert_eq!(p.leader, p.replicas[0]);
        assert_eq!(p.isr, p.replicas);
        leaders[p.leader as usize] += 1;
    }
    assert_eq!(&leaders[1..], &[2, 2, 2]);
}

#[test]
fn fencing_moves_leadership_and_a_new_incarnation_comes_back() {
    let mut s = cluster();
    run(&mut s, &[topic("t", 1, 3, 3)]);
    let epoch = s.brokers[&1].epoch;
    let before: Vec<_> = s.topics["t"].partitions.clone();
    run(&mut s, &[Command::FenceBroker { id: 1, epoch }]);
    for (old, p) in before.iter().zip(&s.topics["t"].partitions) {
        assert_ne!(p.leader, 1);
        assert!(!p.isr.contains(&1));
        if old.leader == 1 {
            assert_eq!(p.leader_epoch, old.leader_epoch + 1);
        }
        assert!(p.partition_epoch > old.partition_epoch);
    }
    // The same id with a different incarnation may register once fenced,
    // and gets a larger epoch; the old epoch is then stale.
    let out = run(
        &mut s,
        &[register(1, 99), Command::UnfenceBroker { id: 1, epoch }],
    );
    let Outcome::BrokerRegistered { epoch: new_epoch } = out[0] else {
        panic!("{out:?}")
    };
    assert!(new_epoch > epoch);
    assert_eq!(code(&out[1]), Some(ErrorCode::StaleBrokerEpoch));
    // A live broker cannot be taken over by another process.
    let out = run(&mut s, &[register(2, 42)]);
    assert_eq!(code(&out[0]), Some(ErrorCode::DuplicateBrokerRegistration));
}

/// A partition whose ISR has shrunk to its leader: when the leader is
/// fenced, it is left without a leader unless the topic allows an unclean
/// election, which picks a live replica outside the ISR and makes it the
/// whole ISR.
#[test]
fn only_an_unclean_election_picks_a_leader_outside_the_isr() {
    for (unclean, want_leader) in [(false, false), (true, true)] {
        let mut s = cluster();
        let mut create = topic("t", 1, 1, 2);
        if let Command::CreateTopic { configs, .. } = &mut create {
            configs.push(("unclean.leader.election.enable".into(), unclean.to_string()));
        }
        run(&mut s, &[create]);
        let p = s.topics["t"].partitions[0].clone();
        let (leader, other) = (
            p.leader,
            *p.replicas.iter().find(|r| **r != p.leader).unwrap(),
        );
        // The leader shrinks the ISR to itself.
        let shrink = Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            broker: leader,
            broker_epoch: s.brokers[&leader].epoch,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![leader],
        };
        let fence = Command::FenceBroker {
            id: leader,
            epoch: s.brokers[&leader].epoch,
        };
        run(&mut s, &[shrink, fence]);
        let p = &s.topics["t"].partitions[0];
        if want_leader {
            assert_eq!((p.leader, p.isr.clone()), (other, vec![other]), "unclean");
        } else {
            assert_eq!(p.leader, -1, "a clean election only");
            assert_eq!(p.isr, vec![leader]);
        }
        check_invariants(&s);
    }
}

#[test]
fn alter_partition_checks_epochs_and_eligibility() {
    let mut s = cluster();
    run(&mut s, &[topic("t", 1, 1, 3)]);
    let p = s.topics["t"].partitions[0].clone();
    let leader = p.leader;
    let be = s.brokers[&leader].epoch;
    let other = *p.replicas.iter().find(|r| **r != leader).unwrap();
    let alter = |isr: Vec<i32>, le: i32, pe: i32| Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        broker: leader,
        broker_epoch: be,
        leader_epoch: le,
        partition_epoch: pe,
        isr,
    };
    let out = run(
        &mut s,
        &[
            alter(vec![leader, other], p.leader_epoch + 1, p.partition_epoch),
            alter(vec![leader, other], p.leader_epoch, p.partition_epoch + 5),
            alter(vec![other], p.leader_epoch, p.partition_epoch),
            alter(vec![leader, 77], p.leader_epoch, p.partition_epoch),
            alter(vec![leader, other], p.leader_epoch, p.partition_epoch),
        ],
    );
    let codes: Vec<_> = out.iter().map(code).collect();
    assert_eq!(
        codes,
        vec![
            Some(ErrorCode::FencedLeaderEpoch),
            Some(ErrorCode::InvalidUpdateVersion),
            Some(ErrorCode::IneligibleReplica),
            Some(ErrorCode::IneligibleReplica),
            None
        ]
    );
    assert_eq!(s.topics["t"].partitions[0].isr, vec![leader, other]);
    assert_eq!(
        s.topics["t"].partitions[0].partition_epoch,
        p.partition_epoch + 1
    );
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut s = cluster();
    let e1 = s.brokers[&1].epoch;
    let e2 = s.brokers[&2].epoch;
    let out = run(
        &mut s,
        &[
            Command::AllocateProducerIds {
                broker: 1,
                broker_epoch: e1,
                count: 1000,
            },
            Command::AllocateProducerIds {
                broker: 2,
                broker_epoch: e2,
                count: 1000,
            },
            Command::AllocateProducerIds {
                broker: 2,
                broker_epoch: e2,
                count: 0,
            },
            Command::AllocateProducerIds {
                broker: 2,
                broker_epoch: e1,
                count: 10,
            },
        ],
    );
    assert_eq!(
        out[0],
        Outcome::ProducerIds {
            first: 0,
            count: 1000
        }
    );
    assert_eq!(
        out[1],
        Outcome::ProducerIds {
            first: 1000,
            count: 1000
        }
    );
    assert_eq!(code(&out[2]), Some(ErrorCode::InvalidRequest));
    assert_eq!(code(&out[3]), Some(ErrorCode::StaleBrokerEpoch));
}

#[test]
fn damaged_snapshots_are_refused_not_panicked_on() {
    let mut s = cluster();
    run(&mut s, &[topic("t", 1, 3, 2)]);
    let bytes = snapshot::encode(&s);
    assert_eq!(snapshot::decode(&bytes).unwrap(), s);
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert!(snapshot::decode(&b).is_err(), "flip at {i} accepted");
    }
    for cut in 0..bytes.len() {
        assert!(snapshot::decode(&bytes[..cut]).is_err());
    }
}

fn command() -> impl Strategy<Value = Command> {
    let name = prop_oneof![Just("a"), Just("b"), Just("c.d"), Just("c_d"), Just("bad/")]
        .prop_map(String::from);
    prop_oneof![
        (0i32..5, 0u8..3).prop_map(|(id, inc)| register(id, inc)),
        (0i32..5, 0u64..40).prop_map(|(id, epoch)| Command::FenceBroker { id, epoch }),
        (0i32..5, 0u64..40).prop_map(|(id, epoch)| Command::UnfenceBroker { id, epoch }),
        (0i32..5).prop_map(|id| Command::UnregisterBroker { id }),
        (name.clone(), 1u8..20, -1i32..5, -1i16..4).prop_map(|(n, id, p, rf)| {
            Command::CreateTopic {
                name: n,
                id: [id; 16],
                partitions: p,
                replication_factor: rf,
                assignment: vec![],
                configs: vec![],
            }
        }),
        name.clone().prop_map(|n| Command::DeleteTopic { name: n }),
        (name.clone(), 1i32..8).prop_map(|(n, c)| Command::CreatePartitions {
            name: n,
            count: c,
            assignment: vec![]
        }),
        (
            name.clone(),
            0i32..4,
            0i32..5,
            0u64..40,
            0i32..3,
            0i32..5,
            proptest::collection::vec(0i32..5, 0..4)
        )
            .prop_map(
                |(topic, partition, broker, broker_epoch, leader_epoch, partition_epoch, isr)| {
                    Command::AlterPartition {
                        topic,
                        partition,
                        broker,
                        broker_epoch,
                        leader_epoch,
                        partition_epoch,
                        isr,
                    }
                }
            ),
        (0i32..5, 0u64..40, -5i32..20_000).prop_map(|(broker, broker_epoch, count)| {
            Command::AllocateProducerIds {
                broker,
                broker_epoch,
                count,
            }
        }),
        (
            name,
            prop_oneof![Just("retention.ms"), Just("bogus")],
            prop_oneof![Just("100"), Just("x")]
        )
            .prop_map(|(n, k, v)| {
                Command::AlterConfigs {
                    resource: ConfigResource::Topic(n),
                    ops: vec![ConfigOp::Set(k.into(), v.into())],
                }
            }),
    ]
}

fn check_invariants(s: &MetadataState) {
    for t in s.topics.values() {
        let rf = t.partitions[0].replicas.len();
        for p in &t.partitions {
            assert_eq!(p.replicas.len(), rf);
            assert!(!p.isr.is_empty());
            assert!(p.isr.iter().all(|r| p.replicas.contains(r)));
            if p.leader != NO_LEADER {
                assert!(p.isr.contains(&p.leader));
                assert!(!s.brokers[&p.leader].fenced, "fenced leader");
            }
        }
    }
}

proptest! {
    #[test]
    fn the_state_is_a_pure_function_of_the_log(
        log in proptest::collection::vec(command(), 0..80),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut a = MetadataState::default();
        let mut b = MetadataState::default();
        let out_a = run(&mut a, &log);
        let out_b = run(&mut b, &log);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(out_a, out_b);
        check_invariants(&a);
        // Replaying the log changes nothing.
        let mut again = a.clone();
        for (i, c) in log.iter().enumerate() {
            again.apply(i as u64 + 1, c);
        }
        prop_assert_eq!(&again, &a);
        // A snapshot at any point plus the rest of the log gives the same.
        let k = if log.is_empty() { 0 } else { cut.index(log.len() + 1) };
        let mut prefix = MetadataState::default();
        run(&mut prefix, &log[..k]);
        let mut restored = snapshot::decode(&snapshot::encode(&prefix)).unwrap();
        run(&mut restored, &log[k..]);
        prop_assert_eq!(&restored, &a);
    }
}
