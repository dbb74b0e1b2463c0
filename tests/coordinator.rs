//! Three real `sluice coordinator` processes on loopback.
//!
//! * kill -9 the leader while a client keeps proposing: a new leader is
//!   elected, every proposal is applied exactly once (producer-id blocks
//!   stay contiguous: a proposal applied twice would leave a gap), nothing
//!   committed is lost;
//! * a follower down while the log moves on by several snapshots catches up
//!   (by snapshot) when it returns;
//! * all three restarted: the same state everywhere, as before.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_replication::metadata::{Command as Meta, Outcome};
use sluice_replication::raft::client::Client;
use sluice_replication::raft::network::Status;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(id: u64, peers: &BTreeMap<u64, String>, dir: &Path) -> Proc {
    let peer_list: Vec<String> = peers.iter().map(|(i, a)| format!("{i}={a}")).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "coordinator",
            "--node-id",
            &id.to_string(),
            "--snapshot-every",
            "20",
            "--peers",
        ])
        .arg(peer_list.join(","))
        .arg("--data-dir")
        .arg(dir.join(id.to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn statuses(peers: &BTreeMap<u64, String>, ids: &[u64]) -> Option<Vec<Status>> {
    ids.iter()
        .map(|id| Client::status(&peers[id]).ok())
        .collect()
}

/// Waits until the given nodes agree on one leader and one state.
fn converged(peers: &BTreeMap<u64, String>, ids: &[u64]) -> Vec<Status> {
    wait_for("the nodes to converge", || {
        let s = statuses(peers, ids)?;
        let leader = s[0].leader?;
        let same = s.iter().all(|x| {
            x.leader == Some(leader)
                && x.state_digest == s[0].state_digest
                && x.last_applied == s[0].last_applied
        });
        same.then_some(s)
    })
}

fn allocate(client: &mut Client, epoch: u64, expect_first: &mut i64) {
    let out = client
        .propose(Meta::AllocateProducerIds {
            broker: 1,
            broker_epoch: epoch,
            count: 7,
        })
        .unwrap();
    // Exactly once: each block starts where the previous acknowledged one
    // ended. A retried proposal applied twice would skip a block.
    assert_eq!(
        out,
        Outcome::ProducerIds {
            first: *expect_first,
            count: 7
        }
    );
    *expect_first += 7;
}

#[test]
fn given_three_coordinator_processes_failover_catch_up_and_restart_keep_every_committed_record() {
    let dir = tempfile::tempdir().unwrap();
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let all = [1u64, 2, 3];
    let mut procs: BTreeMap<u64, Proc> = all
        .iter()
        .map(|id| (*id, spawn(*id, &peers, dir.path())))
        .collect();
    converged(&peers, &all);

    let mut client = Client::new(peers.values().cloned().collect());
    let epoch = match client
        .propose(Meta::RegisterBroker {
            id: 1,
            incarnation: [9; 16],
            endpoints: vec![],
            rack: None,
        })
        .unwrap()
    {
        Outcome::BrokerRegistered { epoch } => epoch,
        o => panic!("{o:?}"),
    };
    let mut next_id = 0i64;
    for _ in 0..10 {
        allocate(&mut client, epoch, &mut next_id);
    }

    // kill -9 the leader while proposing.
    let leader = converged(&peers, &all)[0].leader.unwrap();
    let mut victim = procs.remove(&leader).unwrap();
    victim.0.kill().unwrap(); // SIGKILL
    victim.0.wait().unwrap();
    for _ in 0..30 {
        allocate(&mut client, epoch, &mut next_id);
    }
    let rest: Vec<u64> = all.iter().copied().filter(|i| *i != leader).collect();
    let s = converged(&peers, &rest);
    assert_ne!(s[0].leader, Some(leader), "a new leader was elected");

    // The old leader comes back and catches up.
    procs.insert(leader, spawn(leader, &peers, dir.path()));
    converged(&peers, &all);

    // A follower misses several snapshots' worth of log, then returns.
    let leader = converged(&peers, &all)[0].leader.unwrap();
    let follower = *all.iter().find(|i| **i != leader).unwrap();
    let follower_last = Client::status(&peers[&follower])
        .unwrap()
        .last_log_index
        .unwrap();
    drop(procs.remove(&follower));
    for _ in 0..120 {
        allocate(&mut client, epoch, &mut next_id);
    }
    let others: Vec<u64> = all.iter().copied().filter(|i| *i != follower).collect();
    let ahead = converged(&peers, &others);
    assert!(
        ahead[0].snapshot_index.is_some(),
        "the leader took snapshots"
    );
    let purged = wait_for("the leader to purge past the follower", || {
        let s = Client::status(&peers[&leader]).ok()?;
        s.purged_index.filter(|p| *p > follower_last)
    });
    assert!(
        purged > follower_last,
        "only a snapshot can bring the follower back"
    );
    procs.insert(follower, spawn(follower, &peers, dir.path()));
    let s = converged(&peers, &all);
    let back = s.iter().find(|x| x.id == follower).unwrap();
    assert!(
        back.snapshot_index.is_some_and(|i| i > follower_last),
        "the follower installed a snapshot"
    );
    let before = s[0].state_digest;

    // Restart all three: same state everywhere, as before.
    procs.clear();
    let procs: BTreeMap<u64, Proc> = all
        .iter()
        .map(|id| (*id, spawn(*id, &peers, dir.path())))
        .collect();
    let s = converged(&peers, &all);
    assert_eq!(s[0].state_digest, before);
    allocate(&mut client, epoch, &mut next_id);
    drop(procs);
}
