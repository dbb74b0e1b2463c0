//! Three coordinator nodes in one process: a quorum forms, proposals are
//! applied on every node, and stopping the leader elects another.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_replication::metadata::{Command, Outcome};
use sluice_replication::raft::client::Client;
use sluice_replication::raft::node::{self, NodeConfig};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn given_three_nodes_a_leader_is_elected_and_commands_reach_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let mut nodes: BTreeMap<u64, _> = peers
        .iter()
        .map(|(id, addr)| {
            let cfg = NodeConfig::new(
                *id,
                addr.parse().unwrap(),
                peers.clone(),
                dir.path().join(id.to_string()),
            );
            (*id, node::start(cfg).unwrap())
        })
        .collect();
    let mut client = Client::new(peers.values().cloned().collect());
    let out = client
        .propose(Command::RegisterBroker {
            id: 7,
            incarnation: [1; 16],
            endpoints: vec![],
            rack: None,
        })
        .unwrap();
    assert!(matches!(out, Outcome::BrokerRegistered { .. }), "{out:?}");
    for n in nodes.values() {
        let mut rx = n.state.clone();
        wait_for("the broker on every node", || {
            rx.borrow_and_update()
                .brokers
                .contains_key(&7)
                .then_some(())
        });
    }
    let leader = wait_for("a leader", || {
        Client::status(&peers[&1]).ok().and_then(|s| s.leader)
    });
    nodes.remove(&leader).unwrap().stop();
    let out = client
        .propose(Command::AllocateProducerIds {
            broker: 7,
            broker_epoch: match out {
                Outcome::BrokerRegistered { epoch } => epoch,
                _ => unreachable!(),
            },
            count: 10,
        })
        .unwrap();
    assert_eq!(
        out,
        Outcome::ProducerIds {
            first: 0,
            count: 10
        }
    );
    let new_leader = wait_for("a new leader", || {
        nodes.keys().find_map(|id| {
            Client::status(&peers[id])
                .ok()
                .and_then(|s| s.leader)
                .filter(|l| *l != leader)
        })
    });
    assert_ne!(new_leader, leader);
}
