//! A coordinator node: openraft on its own thread with a tokio
//! current-thread runtime, serving peers and clients on one TCP listener.
//!
//! ## Broker liveness
//! Heartbeats are not logged (as in KRaft): the leader keeps the time of
//! each broker's last heartbeat in memory. A ticker on the leader proposes
//! `FenceBroker` for every unfenced broker silent for longer than the
//! session timeout, and a heartbeat from a fenced broker proposes
//! `UnfenceBroker`. A node that becomes leader starts every broker's clock
//! afresh, so a failover never fences brokers that were heartbeating to
//! the old leader.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};

use super::log_store::LogStore;
use super::network::{self, ClientError, NetworkFactory, Request, Response, Status};
use super::state_machine::{MetadataDelta, StateMachineStore};
use super::TypeConfig;
use crate::metadata::{snapshot, Command, MetadataState, Proposal};

type NodeId = u64;

/// `broker.session.timeout.ms`'s default, as Kafka's.
pub const SESSION_TIMEOUT_DEFAULT: Duration = Duration::from_millis(9_000);

/// How a coordinator node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    /// Every voter of the quorum, this node included: id → address.
    pub peers: BTreeMap<NodeId, String>,
    pub dir: PathBuf,
    /// `broker.session.timeout.ms`.
    pub session_timeout: Duration,
    /// Build a snapshot after this many log entries.
    pub snapshot_every: u64,
    /// Most client and peer connections served at once.
    pub connections_max: usize,
}

impl NodeConfig {
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, String>,
        dir: PathBuf,
    ) -> Self {
        Self {
            id,
            listen,
            peers,
            dir,
            session_timeout: SESSION_TIMEOUT_DEFAULT,
            snapshot_every: 1_000,
            connections_max: 64,
        }
    }
}

struct Shared {
    raft: Raft<TypeConfig>,
    sm: StateMachineStore,
    peers: BTreeMap<NodeId, String>,
    heartbeats: Mutex<HashMap<i32, Instant>>,
}

/// A running node.
pub struct NodeHandle {
    pub addr: SocketAddr,
    pub state: watch::Receiver<Arc<MetadataState>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NodeHandle {
    /// Stops the node and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Blocks until the node stops by itself (it does not, unless asked).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts a node: opens its log and state, joins or forms the quorum of
/// `peers`, and serves on `listen`.
pub fn start(config: NodeConfig) -> io::Result<NodeHandle> {
    std::fs::create_dir_all(&config.dir)?;
    let log = LogStore::open(&config.dir)?;
    let sm = StateMachineStore::open(&config.dir)?;
    let state = sm.subscribe();
    let std_listener = std::net::TcpListener::bind(config.listen)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("sluice-coordinator-{}", config.id))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match run(config, log, sm, std_listener, stop_rx, &ready_tx).await {
                    Ok(()) => {}
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })?;
    ready_rx
        .recv()
        .map_err(|_| io::Error::other("coordinator thread died while starting"))??;
    Ok(NodeHandle {
        addr,
        state,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn run(
    config: NodeConfig,
    log: LogStore,
    sm: StateMachineStore,
    listener: std::net::TcpListener,
    stop: oneshot::Receiver<()>,
    ready: &std::sync::mpsc::Sender<io::Result<()>>,
) -> io::Result<()> {
    let raft_config = Config {
        cluster_name: "sluice-metadata".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.snapshot_every / 2,
        purge_batch_size: 64,
        ..Config::default()
    };
    let raft_config = Arc::new(raft_config.validate().map_err(io::Error::other)?);
    let fresh = log.last_index().is_none();
    let raft = Raft::new(config.id, raft_config, NetworkFactory, log, sm.clone())
        .await
        .map_err(io::Error::other)?;
    if fresh {
        let members: BTreeMap<NodeId, BasicNode> = config
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        // Every node of a new quorum initialises it with the same members;
        // the ones that lose the race are told it is done already.
        if let Err(e) = raft.initialize(members).await {
            tracing::debug!(error = %e, "quorum already initialised");
        }
    }
    let shared = Arc::new(Shared {
        raft: raft.clone(),
        sm,
        peers: config.peers.clone(),
        heartbeats: Mutex::new(HashMap::new()),
    });
    let listener = TcpListener::from_std(listener)?;
    let _ = ready.send(Ok(()));
    let limit = Arc::new(Semaphore::new(config.connections_max));
    let ticker = tokio::spawn(fence_ticker(
        shared.clone(),
        config.id,
        config.session_timeout,
    ));
    let server = async {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                drop(sock); // over the connection limit
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_connection(sock, shared).await {
                    tracing::debug!(error = %e, "connection closed");
                }
                drop(permit);
            });
        }
    };
    tokio::select! {
        _ = server => {}
        _ = stop => {}
    }
    ticker.abort();
    let _ = raft.shutdown().await;
    Ok(())
}

async fn serve_connection(mut sock: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    sock.set_nodelay(true)?;
    let first = network::read_frame(&mut sock).await?;
    match network::decode::<Request>(&first) {
        Ok(Request::Hello { version }) if version == network::PROTOCOL_VERSION => {
            sock.write_all(&network::encode(&Response::Hello { version })?)
                .await?;
        }
        _ => {
            let refusal = Response::Error(format!(
                "expected Hello version {}",
                network::PROTOCOL_VERSION
            ));
            sock.write_all(&network::encode(&refusal)?).await?;
            return Ok(());
        }
    }
    loop {
        let idle = Duration::from_secs(600);
        let frame = match tokio::time::timeout(idle, network::read_frame(&mut sock)).await {
            Ok(f) => f?,
            Err(_) => return Ok(()),
        };
        let response = match network::decode::<Request>(&frame) {
            Ok(req) => handle(req, &shared).await,
            Err(e) => {
                let r = Response::Error(format!("malformed request: {e}"));
                sock.write_all(&network::encode(&r)?).await?;
                return Ok(());
            }
        };
        sock.write_all(&network::encode(&response)?).await?;
    }
}

fn not_leader(shared: &Shared) -> ClientError {
    let leader = shared.raft.metrics().borrow().current_leader;
    ClientError::NotLeader {
        leader: leader.and_then(|id| shared.peers.get(&id).map(|a| (id, a.clone()))),
    }
}

async fn propose(
    shared: &Shared,
    proposal: Proposal,
) -> Result<crate::metadata::Outcome, ClientError> {
    match shared.raft.client_write(proposal).await {
        Ok(r) => Ok(r.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(not_leader(shared)),
        Err(e) => Err(ClientError::Unavailable(e.to_string())),
    }
}

async fn handle(req: Request, shared: &Shared) -> Response {
    match req {
        Request::Hello { version } => Response::Hello { version },
        Request::AppendEntries(r) => Response::AppendEntries(shared.raft.append_entries(r).await),
        Request::Vote(r) => Response::Vote(shared.raft.vote(r).await),
        Request::InstallSnapshot(r) => {
            Response::InstallSnapshot(shared.raft.install_snapshot(r).await)
        }
        Request::ClientWrite(p) => Response::ClientWrite(propose(shared, p).await),
        Request::BrokerHeartbeat { broker, epoch } => {
            Response::BrokerHeartbeat(heartbeat(shared, broker, epoch).await)
        }
        Request::Status => Response::Status(Box::new(status(shared))),
        Request::FetchMetadata { since, wait_ms } => {
            let mut changes = shared.sm.subscribe();
            let mut delta = shared.sm.delta_since(since);
            if matches!(delta, MetadataDelta::UpToDate { .. }) && wait_ms > 0 {
                let wait = Duration::from_millis(u64::from(wait_ms.min(30_000)));
                let _ = tokio::time::timeout(wait, changes.changed()).await;
                delta = shared.sm.delta_since(since);
            }
            Response::Metadata(delta)
        }
    }
}

async fn heartbeat(shared: &Shared, broker: i32, epoch: u64) -> Result<(), ClientError> {
    let is_leader = shared.raft.metrics().borrow().state == ServerState::Leader;
    if !is_leader {
        return Err(not_leader(shared));
    }
    let fenced = {
        let state = shared.sm.state();
        match state.brokers.get(&broker) {
            Some(b) if b.epoch == epoch => b.fenced,
            Some(b) => {
                return Err(ClientError::Refused(format!(
                    "stale broker epoch {epoch}, current {}",
                    b.epoch
                )))
            }
            None => {
                return Err(ClientError::Refused(format!(
                    "broker {broker} is not registered"
                )))
            }
        }
    };
    shared
        .heartbeats
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(broker, Instant::now());
    if fenced {
        let unfence = Proposal {
            client: 0,
            seq: 0,
            command: Command::UnfenceBroker { id: broker, epoch },
        };
        propose(shared, unfence).await?;
    }
    Ok(())
}

/// On the leader: fences brokers whose session expired.
async fn fence_ticker(shared: Arc<Shared>, me: NodeId, timeout: Duration) {
    let mut led_term = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (leading, term) = {
            let m = shared.raft.metrics();
            let m = m.borrow();
            (
                m.current_leader == Some(me) && m.state == ServerState::Leader,
                m.current_term,
            )
        };
        if !leading {
            led_term = None;
            continue;
        }
        let state = shared.sm.state();
        let now = Instant::now();
        let expired: Vec<(i32, u64)> = {
            let mut hb = shared.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
            if led_term != Some(term) {
                // New leadership: every broker's clock starts now.
                hb.clear();
                led_term = Some(term);
            }
            state
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .filter(|b| now.duration_since(*hb.entry(b.id).or_insert(now)) > timeout)
                .map(|b| (b.id, b.epoch))
                .collect()
        };
        for (id, epoch) in expired {
            tracing::info!(broker = id, "session expired: fencing");
            let fence = Proposal {
                client: 0,
                seq: 0,
                command: Command::FenceBroker { id, epoch },
            };
            if let Err(e) = propose(&shared, fence).await {
                tracing::warn!(broker = id, error = ?e, "could not fence");
            }
        }
    }
}

fn status(shared: &Shared) -> Status {
    let m = shared.raft.metrics().borrow().clone();
    let state = shared.sm.state();
    let voters = m.membership_config.membership().voter_ids().collect();
    let replication = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
        .unwrap_or_default();
    Status {
        id: m.id,
        state: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        voters,
        last_log_index: m.last_log_index,
        last_applied: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        replication,
        state_digest: crc32c::crc32c(&snapshot::encode(&state)),
        brokers: state.brokers.len(),
        live_brokers: state.brokers.values().filter(|b| !b.fenced).count(),
        topics: state.topics.len(),
    }
}
