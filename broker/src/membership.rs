//! How a broker belongs to the cluster: registered with the coordinator
//! quorum (embedded in this process for `sluice start`, remote for `sluice
//! broker`), heartbeating, following its metadata, and leaving it with a
//! controlled shutdown.
//!
//! Invariant: a broker serves only once its own image shows it registered
//! with the epoch it was given and unfenced; that image then holds
//! everything applied before the registration (whose log index is the
//! epoch), so a client's first Metadata already lists it and every topic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_replication::metadata::{
    Command, Endpoint, ErrorCode, Outcome, CLIENT_LISTENER, REPLICATION_LISTENER,
};
use sluice_replication::raft::client::Client;
use sluice_replication::raft::node::{self, NodeConfig, NodeHandle};
use sluice_replication::raft::subscriber::{Image, Subscriber};

/// The longest a controlled shutdown waits for its fence to reach this
/// broker's metadata.
pub const STEP_DOWN_WAIT: Duration = Duration::from_secs(5);

/// How this broker joins the cluster.
pub struct Membership {
    pub broker_id: i32,
    /// The host and port clients are told (`advertised.listeners`).
    pub advertised: (String, u16),
    /// The host and port followers fetch from (`replication.listener`).
    pub replication: (String, u16),
    /// The quorum's addresses (the embedded node's own for `start`).
    pub coordinators: Vec<String>,
    /// `start`: run a one-member quorum here, listening there with its log
    /// in that directory.
    pub embedded: Option<(SocketAddr, PathBuf)>,
    /// `broker.session.timeout.ms`: heartbeats go out three times per session.
    pub session: Duration,
}

/// A broker registered in the cluster, until [`Member::leave`].
pub struct Member {
    subscriber: Subscriber,
    /// Running until [`Member::step_down`].
    heartbeats: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    node: Option<NodeHandle>,
    broker_id: i32,
    epoch: u64,
    coordinators: Vec<String>,
}

/// A process's incarnation id: the time it started and its pid.
fn incarnation() -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut id = [0u8; 16];
    id[..12].copy_from_slice(&nanos.to_le_bytes()[..12]);
    id[12..].copy_from_slice(&std::process::id().to_le_bytes());
    id
}

impl Membership {
    /// Starts the embedded quorum if there is one, registers, starts the
    /// heartbeats and the metadata subscriber, and waits until this
    /// broker's image shows it registered. `say` gets the lines an operator
    /// should see. Errors are for the user.
    pub fn join(&self, say: &dyn Fn(String)) -> Result<Member, String> {
        let node = self.start_embedded(say)?;
        let mut client = Client::new(self.coordinators.clone());
        let epoch = self.register(&mut client, say)?;
        say(format!(
            "broker {} registered with the coordinators at {}, epoch {epoch}",
            self.broker_id,
            self.coordinators.join(",")
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let (id, st, session) = (self.broker_id, stop.clone(), self.session);
        let heartbeats = std::thread::spawn(move || {
            while !st.load(Ordering::Acquire) {
                if let Err(e) = client.heartbeat(id, epoch) {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
                std::thread::sleep(session / 3);
            }
        });
        let subscriber = Subscriber::start(self.coordinators.clone())
            .map_err(|e| format!("cannot follow metadata: {e}"))?;
        self.wait_registered(&subscriber, epoch)?;
        Ok(Member {
            subscriber,
            heartbeats: Some(heartbeats),
            stop,
            node,
            broker_id: self.broker_id,
            epoch,
            coordinators: self.coordinators.clone(),
        })
    }

    fn start_embedded(&self, say: &dyn Fn(String)) -> Result<Option<NodeHandle>, String> {
        let Some((listen, dir)) = &self.embedded else {
            return Ok(None);
        };
        let peers = BTreeMap::from([(1u64, listen.to_string())]);
        let mut config = NodeConfig::new(1, *listen, peers, dir.clone());
        config.session_timeout = self.session;
        let node = node::start(config)
            .map_err(|e| format!("cannot start the embedded coordinator: {e}"))?;
        say(format!(
            "embedded coordinator (one-member quorum) on {listen}, data in {}",
            dir.display()
        ));
        Ok(Some(node))
    }

    /// Registers this broker; its epoch. After a crash the previous
    /// incarnation counts as live until its session expires and the leader
    /// fences it; registration waits.
    fn register(&self, client: &mut Client, say: &dyn Fn(String)) -> Result<u64, String> {
        let register = Command::RegisterBroker {
            id: self.broker_id,
            incarnation: incarnation(),
            // The client listener first: older readers take the first.
            endpoints: vec![
                Endpoint {
                    listener: CLIENT_LISTENER.into(),
                    host: self.advertised.0.clone(),
                    port: self.advertised.1,
                    security_protocol: "PLAINTEXT".into(),
                },
                Endpoint {
                    listener: REPLICATION_LISTENER.into(),
                    host: self.replication.0.clone(),
                    port: self.replication.1,
                    security_protocol: "PLAINTEXT".into(),
                },
            ],
            rack: None,
        };
        let deadline = Instant::now() + self.session * 3;
        let mut told = false;
        loop {
            let outcome = client
                .propose(register.clone())
                .map_err(|e| format!("cannot register with the coordinator: {e}"))?;
            match outcome {
                Outcome::BrokerRegistered { epoch } => return Ok(epoch),
                Outcome::Refused(e)
                    if e.code == ErrorCode::DuplicateBrokerRegistration
                        && Instant::now() < deadline =>
                {
                    if !told {
                        say(format!(
                            "broker {} is still registered by a previous process; waiting for its session ({} ms) to expire",
                            self.broker_id,
                            self.session.as_millis()
                        ));
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => {
                    return Err(format!(
                        "the coordinator refused the registration: {other:?}"
                    ))
                }
            }
        }
    }

    /// Waits until the image shows this broker registered at `epoch` and
    /// unfenced (see the module docs).
    fn wait_registered(&self, subscriber: &Subscriber, epoch: u64) -> Result<(), String> {
        let deadline = Instant::now() + self.session * 2;
        loop {
            let image = subscriber.current();
            let ready = image.last_applied >= epoch
                && image
                    .brokers
                    .get(&self.broker_id)
                    .is_some_and(|b| b.epoch == epoch && !b.fenced);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("this broker's metadata did not catch up with the coordinator".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Member {
    /// The metadata image this broker follows.
    pub fn image(&self) -> Image {
        self.subscriber.image.clone()
    }

    /// This broker's epoch: the log index of its registration.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The first half of a controlled shutdown, while the broker still
    /// serves: stops heartbeating (a heartbeat would unfence it again) and
    /// has the coordinator fence this incarnation, which moves the
    /// leadership of every partition it leads to another live member of
    /// the partition's ISR and takes it out of the ISRs. Waits (at most
    /// [`STEP_DOWN_WAIT`]) until this broker's own image shows it, so that
    /// its shards step down and clients asking it are pointed at the new
    /// leaders before it stops. The next process registers at once
    /// instead of waiting for the session.
    pub fn step_down(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.heartbeats.take() {
            if h.join().is_err() {
                tracing::error!("the heartbeat thread panicked");
            }
        }
        let mut client = Client::new(self.coordinators.clone());
        client.timeout = Duration::from_secs(5);
        let fence = Command::FenceBroker {
            id: self.broker_id,
            epoch: self.epoch,
        };
        if let Err(e) = client.propose(fence) {
            tracing::warn!(error = %e, "could not fence this broker on shutdown");
            return;
        }
        let deadline = Instant::now() + STEP_DOWN_WAIT;
        while Instant::now() < deadline {
            let image = self.subscriber.current();
            if image.brokers.get(&self.broker_id).is_none_or(|b| b.fenced) {
                // The shards follow the image every few milliseconds.
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!("the coordinator's fence did not reach this broker's metadata in time");
    }

    /// Stops following the metadata and the embedded quorum, if any; after
    /// [`Member::step_down`] and after the shards have stopped.
    pub fn leave(mut self) {
        if self.heartbeats.is_some() {
            self.step_down();
        }
        drop(self.subscriber);
        if let Some(node) = self.node {
            node.stop();
        }
    }
}
