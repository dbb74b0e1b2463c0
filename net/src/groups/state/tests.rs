//! The group state machine driven step by step, as a coordinator would.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn limits() -> Limits {
    Limits {
        initial_rebalance_delay_ms: 0,
        ..Limits::default()
    }
}

fn request(member: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member.into(),
        spec: MemberSpec {
            instance_id: instance.map(Into::into),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: vec![
                ("range".into(), Bytes::from_static(b"r")),
                ("roundrobin".into(), Bytes::from_static(b"rr")),
            ],
        },
        require_known_member_id: true,
    }
}

fn join_result(effects: &[Effect], member: &str) -> Option<JoinResult> {
    effects.iter().find_map(|e| match e {
        Effect::Join(m, r) if m == member => Some(r.clone()),
        _ => None,
    })
}

fn sync_result(effects: &[Effect], member: &str) -> Option<SyncResult> {
    effects.iter().find_map(|e| match e {
        Effect::Sync(m, r) if m == member => Some(r.clone()),
        _ => None,
    })
}

/// KIP-394: the first JoinGroup gets a member id, the second joins.
fn join_new(g: &mut Group, now: i64) -> String {
    let (id, effects) = g.join(request("", None), &limits(), now);
    let r = join_result(&effects, &id).expect("answered");
    assert_eq!(r.error, ResponseError::MemberIdRequired.code());
    assert_eq!(r.member_id, id);
    let (same, effects) = g.join(request(&id, None), &limits(), now);
    assert_eq!(same, id);
    assert!(
        join_result(&effects, &id).is_none(),
        "waits for the rebalance"
    );
    id
}

/// Two members joined generation 1: (leader, follower).
fn joined_pair(g: &mut Group) -> (String, String) {
    let a = join_new(g, 0);
    let b = join_new(g, 0);
    let effects = g.tick(1);
    let ra = join_result(&effects, &a).expect("a answered");
    let rb = join_result(&effects, &b).expect("b answered");
    assert_eq!((ra.error, rb.error), (0, 0));
    assert_eq!(ra.generation, 1);
    assert_eq!(ra.protocol.as_deref(), Some("range"));
    let leader = ra.leader.clone();
    assert_eq!(leader, rb.leader);
    let (lead_r, follow_r) = if leader == a { (&ra, &rb) } else { (&rb, &ra) };
    assert_eq!(lead_r.members.len(), 2, "the leader sees every member");
    assert!(follow_r.members.is_empty(), "a follower sees none");
    if leader == a {
        (a, b)
    } else {
        (b, a)
    }
}

/// Two members joined and synced: a stable generation.
fn stable_pair(g: &mut Group) -> (String, String) {
    let (lead, follow) = joined_pair(g);
    assert!(g
        .sync(&follow, None, 1, None, None, Vec::new(), 2)
        .is_empty());
    let assignments = vec![
        (lead.clone(), Bytes::from_static(b"p0-2")),
        (follow.clone(), Bytes::from_static(b"p3-5")),
    ];
    let effects = g.sync(&lead, None, 1, None, None, assignments, 2);
    assert!(effects.contains(&Effect::Store));
    assert_eq!(sync_result(&effects, &lead).unwrap().assignment, "p0-2");
    assert_eq!(sync_result(&effects, &follow).unwrap().assignment, "p3-5");
    assert_eq!(g.state, GroupState::Stable);
    (lead, follow)
}

#[test]
fn given_two_members_when_both_join_and_the_leader_syncs_then_each_gets_its_assignment() {
    let mut g = Group::new("g", 0, 0);
    let (lead, follow) = stable_pair(&mut g);
    assert_eq!(g.heartbeat(&lead, None, 1, 3), 0);
    assert_eq!(g.heartbeat(&follow, None, 1, 3), 0);
    // A follower's late SyncGroup is answered from the stored assignment.
    let effects = g.sync(&follow, None, 1, None, None, Vec::new(), 4);
    assert_eq!(sync_result(&effects, &follow).unwrap().assignment, "p3-5");
}

#[test]
fn given_a_stable_group_wrong_ids_get_kafkas_errors() {
    let mut g = Group::new("g", 0, 0);
    let (lead, _) = stable_pair(&mut g);
    assert_eq!(
        g.heartbeat("nobody", None, 1, 3),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        g.heartbeat(&lead, None, 7, 3),
        ResponseError::IllegalGeneration.code()
    );
    let effects = g.sync(&lead, None, 0, None, None, Vec::new(), 3);
    assert_eq!(
        sync_result(&effects, &lead).unwrap().error,
        ResponseError::IllegalGeneration.code()
    );
    let effects = g.sync(
        &lead,
        None,
        1,
        Some("consumer"),
        Some("sticky"),
        Vec::new(),
        3,
    );
    assert_eq!(
        sync_result(&effects, &lead).unwrap().error,
        ResponseError::InconsistentGroupProtocol.code()
    );
    assert_eq!(
        g.check_commit("nobody", None, 1),
        Err(ResponseError::UnknownMemberId.code())
    );
    assert_eq!(
        g.check_commit(&lead, None, 2),
        Err(ResponseError::IllegalGeneration.code())
    );
    assert_eq!(g.check_commit(&lead, None, 1), Ok(()));
    // An admin's commit (generation -1) is refused while members are in.
    assert_eq!(
        g.check_commit("", None, -1),
        Err(ResponseError::UnknownMemberId.code())
    );
}

#[test]
fn given_a_join_request_with_bad_timeouts_or_protocols_it_is_refused() {
    let mut g = Group::new("g", 0, 0);
    let mut r = request("", None);
    r.spec.session_timeout_ms = 1;
    let (id, effects) = g.join(r, &limits(), 0);
    assert_eq!(
        join_result(&effects, &id).unwrap().error,
        ResponseError::InvalidSessionTimeout.code()
    );
    let mut r = request("", None);
    r.spec.protocols.clear();
    let (id, effects) = g.join(r, &limits(), 0);
    assert_eq!(
        join_result(&effects, &id).unwrap().error,
        ResponseError::InconsistentGroupProtocol.code()
    );
    stable_pair(&mut g);
    let mut r = request("", None);
    r.spec.protocols = vec![("cooperative-sticky".into(), Bytes::new())];
    let (id, effects) = g.join(r, &limits(), 5);
    assert_eq!(
        join_result(&effects, &id).unwrap().error,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let (id, effects) = g.join(request("made-up", None), &limits(), 5);
    assert_eq!(
        join_result(&effects, &id).unwrap().error,
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn given_a_full_group_a_new_member_gets_group_max_size_reached() {
    let mut g = Group::new("g", 0, 0);
    let small = Limits {
        members_max: 1,
        ..limits()
    };
    let (_, effects) = g.join(request("", None), &small, 0);
    assert!(
        matches!(&effects[0], Effect::Join(_, r) if r.error == ResponseError::MemberIdRequired.code())
    );
    let (id, effects) = g.join(request("", None), &small, 0);
    assert_eq!(
        join_result(&effects, &id).unwrap().error,
        ResponseError::GroupMaxSizeReached.code()
    );
}

#[test]
fn given_a_member_leaves_then_the_other_rejoins_and_gets_a_new_generation() {
    let mut g = Group::new("g", 0, 0);
    let (lead, follow) = stable_pair(&mut g);
    let (code, effects) = g.leave(&follow, None, 10);
    assert_eq!(code, 0);
    assert!(effects.iter().all(|e| !matches!(e, Effect::Join(..))));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&lead, None, 1, 11),
        ResponseError::RebalanceInProgress.code()
    );
    let (_, effects) = g.join(request(&lead, None), &limits(), 12);
    let r = join_result(&effects, &lead).expect("the only member completes the join");
    assert_eq!(
        (r.error, r.generation, r.leader.as_str()),
        (0, 2, lead.as_str())
    );
    assert_eq!(r.members.len(), 1);
    assert_eq!(
        g.leave(&follow, None, 13).0,
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn given_a_member_stops_heartbeating_after_its_session_timeout_it_is_removed() {
    let mut g = Group::new("g", 0, 0);
    let (lead, follow) = stable_pair(&mut g);
    let now = i64::from(SESSION_MS) - 1;
    assert_eq!(g.heartbeat(&lead, None, 1, now), 0);
    assert!(g.tick(now).is_empty());
    let effects = g.tick(i64::from(SESSION_MS) + 2);
    assert!(!g.members.contains_key(&follow));
    assert!(effects.iter().all(|e| !matches!(e, Effect::Join(..))));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    // The survivor rejoins; the expired member is gone for good.
    let (_, effects) = g.join(request(&lead, None), &limits(), 20_000);
    assert_eq!(join_result(&effects, &lead).unwrap().generation, 2);
    assert_eq!(
        g.heartbeat(&follow, None, 2, 20_001),
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn given_a_member_does_not_rejoin_within_the_rebalance_timeout_it_is_dropped() {
    let mut g = Group::new("g", 0, 0);
    let (lead, follow) = stable_pair(&mut g);
    // The leader rejoins with new metadata: a rebalance starts.
    let mut r = request(&lead, None);
    r.spec.protocols[0].1 = Bytes::from_static(b"changed");
    let (_, effects) = g.join(r, &limits(), 100);
    assert!(join_result(&effects, &lead).is_none());
    // The follower keeps heartbeating but never rejoins.
    for t in (1_000..30_000).step_by(1_000) {
        assert_eq!(
            g.heartbeat(&follow, None, 1, t),
            ResponseError::RebalanceInProgress.code()
        );
        assert!(g.tick(t).is_empty());
    }
    let effects = g.tick(100 + i64::from(REBALANCE_MS));
    let r = join_result(&effects, &lead).expect("completed by the timeout");
    assert_eq!((r.generation, r.members.len()), (2, 1));
    assert!(!g.members.contains_key(&follow));
}

#[test]
fn given_a_static_member_restarts_it_gets_its_assignment_and_its_old_id_is_fenced() {
    let mut g = Group::new("g", 0, 0);
    let (a, effects) = g.join(request("", Some("host-1")), &limits(), 0);
    assert!(
        effects.is_empty(),
        "a static member joins without ResponseError::MemberIdRequired.code()"
    );
    let b = join_new(&mut g, 0);
    let effects = g.tick(1);
    let leader = join_result(&effects, &a).unwrap().leader;
    let assignments = vec![
        (a.clone(), Bytes::from_static(b"A")),
        (b.clone(), Bytes::from_static(b"B")),
    ];
    g.sync(&leader, None, 1, None, None, assignments, 2);
    assert_eq!(g.state, GroupState::Stable);
    // host-1 restarts and joins without a member id.
    let (a2, effects) = g.join(request("", Some("host-1")), &limits(), 3);
    assert_ne!(a2, a);
    let r = join_result(&effects, &a2).expect("answered at once");
    assert_eq!((r.error, r.generation), (0, 1), "no rebalance");
    // host-1 joined first and leads: it must not reassign (KIP-814).
    assert_eq!(r.leader, a2);
    assert!(r.skip_assignment);
    assert_eq!(g.state, GroupState::Stable);
    let effects = g.sync(&a2, Some("host-1"), 1, None, None, Vec::new(), 4);
    assert_eq!(sync_result(&effects, &a2).unwrap().assignment, "A");
    assert_eq!(
        g.heartbeat(&a, Some("host-1"), 1, 5),
        ResponseError::FencedInstanceId.code()
    );
    assert_eq!(
        g.check_commit(&a, Some("host-1"), 1),
        Err(ResponseError::FencedInstanceId.code())
    );
    assert_eq!(
        g.leave(&a, Some("host-1"), 6).0,
        ResponseError::FencedInstanceId.code()
    );
    assert_eq!(g.leave("", Some("host-1"), 6).0, 0);
    assert!(!g.static_members.contains_key("host-1"));
}

#[test]
fn given_the_initial_delay_members_joining_during_it_share_the_first_generation() {
    let mut g = Group::new("g", 3_000, 0);
    let a = join_new(&mut g, 0);
    assert!(g.tick(1_000).is_empty());
    let b = join_new(&mut g, 2_000);
    // Extended by b's arrival: not over at the first deadline.
    assert!(g.tick(3_500).is_empty());
    let effects = g.tick(5_000);
    assert_eq!(join_result(&effects, &a).unwrap().generation, 1);
    assert_eq!(join_result(&effects, &b).unwrap().generation, 1);
}

#[test]
fn given_a_rebalance_a_member_waiting_for_sync_is_told_to_rejoin() {
    let mut g = Group::new("g", 0, 0);
    let (leader, follow) = joined_pair(&mut g);
    assert!(g
        .sync(&follow, None, 1, None, None, Vec::new(), 2)
        .is_empty());
    assert_eq!(
        g.check_commit(&follow, None, 1),
        Err(ResponseError::RebalanceInProgress.code())
    );
    // The leader leaves before sending its assignments.
    let (code, effects) = g.leave(&leader, None, 4);
    assert_eq!(code, 0);
    assert_eq!(
        sync_result(&effects, &follow).unwrap().error,
        ResponseError::RebalanceInProgress.code()
    );
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn given_a_member_rejoins_while_the_leader_assigns_it_gets_the_same_answer_again() {
    let mut g = Group::new("g", 0, 0);
    let (leader, follow) = joined_pair(&mut g);
    let (_, effects) = g.join(request(&follow, None), &limits(), 2);
    let r = join_result(&effects, &follow).expect("answered at once");
    assert_eq!((r.error, r.generation), (0, 1));
    assert!(r.members.is_empty(), "only the leader gets the member list");
    let (_, effects) = g.join(request(&leader, None), &limits(), 3);
    assert_eq!(join_result(&effects, &leader).unwrap().members.len(), 2);
    assert_eq!(g.state, GroupState::CompletingRebalance);
}

#[test]
fn given_an_empty_group_offsets_expire_after_the_retention_since_it_emptied() {
    let mut g = Group::new("g", 0, 0);
    let (lead, follow) = stable_pair(&mut g);
    let c = |ts| Committed {
        offset: 5,
        leader_epoch: 0,
        metadata: String::new(),
        commit_timestamp_ms: ts,
    };
    assert!(g.commit("t", 0, c(10), &limits()));
    assert!(
        g.expire_offsets(100, 1_000_000).is_empty(),
        "a live group keeps them"
    );
    g.leave(&follow, None, 20);
    let (_, effects) = g.leave(&lead, None, 1_000);
    assert!(effects.contains(&Effect::Store));
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(
        g.check_commit("", None, -1),
        Ok(()),
        "an admin may reset offsets"
    );
    assert!(g.expire_offsets(100, 1_099).is_empty());
    assert_eq!(g.expire_offsets(100, 1_100), vec![("t".to_string(), 0)]);
    assert!(g.is_disposable());
}

#[test]
fn given_the_offsets_bound_a_new_partition_is_refused_and_a_known_one_updated() {
    let mut g = Group::new("g", 0, 0);
    let one = Limits {
        offsets_max: 1,
        ..limits()
    };
    let c = Committed {
        offset: 1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    };
    assert!(g.commit("t", 0, c.clone(), &one));
    assert!(!g.commit("t", 1, c.clone(), &one));
    assert!(g.commit("t", 0, c, &one));
}
