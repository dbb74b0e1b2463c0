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

#[test]
fn given_a_broker_that_stops_heartbeating_it_is_fenced_and_returns_with_a_new_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let peers: BTreeMap<u64, String> = [(1, addr.clone())].into();
    let mut cfg = NodeConfig::new(1, addr.parse().unwrap(), peers, dir.path().to_path_buf());
    cfg.session_timeout = Duration::from_millis(500);
    let node = node::start(cfg).unwrap();
    let mut client = Client::new(vec![addr]);
    let register = |client: &mut Client, inc: u8| match client
        .propose(Command::RegisterBroker {
            id: 4,
            incarnation: [inc; 16],
            endpoints: vec![],
            rack: None,
        })
        .unwrap()
    {
        Outcome::BrokerRegistered { epoch } => epoch,
        o => panic!("{o:?}"),
    };
    let fenced = |node: &node::NodeHandle| node.state.borrow().brokers.get(&4).map(|b| b.fenced);
    let epoch = register(&mut client, 1);
    assert_eq!(
        fenced(&node),
        Some(true),
        "a new registration starts fenced"
    );
    // Heartbeats unfence it and keep it unfenced past the session timeout.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        client.heartbeat(4, epoch).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(fenced(&node), Some(false));
    // Silence: fenced after the session timeout.
    wait_for("the silent broker to be fenced", || {
        (fenced(&node) == Some(true)).then_some(())
    });
    // The old incarnation's epoch is stale once a new one registers.
    let new_epoch = register(&mut client, 2);
    assert!(new_epoch > epoch);
    let stale = client.heartbeat(4, epoch).unwrap_err();
    assert!(stale.to_string().contains("stale broker epoch"), "{stale}");
    client.heartbeat(4, new_epoch).unwrap();
    wait_for("the new incarnation to be unfenced", || {
        (fenced(&node) == Some(false)).then_some(())
    });
}

#[test]
fn given_a_broker_subscriber_its_image_follows_the_quorum_by_records_and_by_snapshot() {
    use sluice_replication::raft::subscriber::Subscriber;
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let peers: BTreeMap<u64, String> = [(1, addr.clone())].into();
    let config = || {
        let mut c = NodeConfig::new(
            1,
            addr.parse().unwrap(),
            peers.clone(),
            dir.path().to_path_buf(),
        );
        c.snapshot_every = 10;
        c
    };
    let node = node::start(config()).unwrap();
    let sub = Subscriber::start(vec![addr.clone()]).unwrap();
    let mut client = Client::new(vec![addr.clone()]);
    for i in 0..25 {
        client
            .propose(Command::RegisterBroker {
                id: i,
                incarnation: [1; 16],
                endpoints: vec![],
                rack: None,
            })
            .unwrap();
    }
    // Records: the subscriber applies the same proposals to its own copy.
    let want = node.state.borrow().clone();
    wait_for("the image to equal the quorum's state", || {
        (*sub.current() == *want).then_some(())
    });
    drop(sub);
    // Snapshot: after a restart the node holds no recent records, so a new
    // subscriber starting from nothing receives the snapshot, then records.
    node.stop();
    let node = node::start(config()).unwrap();
    client.propose(Command::UnregisterBroker { id: 3 }).unwrap();
    let sub = Subscriber::start(vec![addr]).unwrap();
    wait_for("the restarted node to apply everything", || {
        let s = node.state.borrow().clone();
        (s.brokers.len() == 24).then_some(())
    });
    let want = node.state.borrow().clone();
    wait_for("the new subscriber to catch up", || {
        (*sub.current() == *want).then_some(())
    });
}

#[test]
fn given_malformed_frames_the_node_refuses_them_and_keeps_serving() {
    use sluice_replication::raft::network::{self, Request, Response};
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let peers: BTreeMap<u64, String> = [(1, addr.clone())].into();
    let node = node::start(NodeConfig::new(
        1,
        addr.parse().unwrap(),
        peers,
        dir.path().to_path_buf(),
    ))
    .unwrap();
    wait_for("a leader", || {
        Client::status(&addr).ok().and_then(|s| s.leader)
    });
    let send = |bytes: &[u8]| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        answer
    };
    // A length far beyond the frame limit: closed before allocating.
    assert!(send(&[0xff, 0xff, 0xff, 0xff]).is_empty());
    // Garbage instead of Hello, and a Hello of another version: refused.
    for first in [
        vec![0u8, 0, 0, 3, 9, 9, 9],
        network::encode(&Request::Hello { version: 99 }).unwrap(),
    ] {
        let answer = send(&first);
        let payload = &answer[4..];
        assert!(matches!(
            network::decode::<Response>(payload).unwrap(),
            Response::Error(_)
        ));
    }
    // Random frames after a good Hello, with a deterministic generator.
    let mut x = 0x9e3779b97f4a7c15u64;
    for i in 0..500 {
        let mut frame = network::encode(&Request::Hello {
            version: network::PROTOCOL_VERSION,
        })
        .unwrap();
        let len = (i * 7) % 300;
        let mut body = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push(x as u8);
        }
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        send(&frame);
    }
    // Still serving, with the same state.
    let s = Client::status(&addr).unwrap();
    assert_eq!(s.leader, Some(1));
    let mut client = Client::new(vec![addr]);
    client
        .propose(Command::RegisterBroker {
            id: 1,
            incarnation: [1; 16],
            endpoints: vec![],
            rack: None,
        })
        .unwrap();
    drop(node);
}
