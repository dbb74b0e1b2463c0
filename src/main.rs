//! The `sluice` command line.

use std::path::PathBuf;

use std::collections::BTreeMap;

use clap::{Parser, Subcommand};
use sluice_engine::shard::{Engine, EngineConfig};
use sluice_replication::metadata::{Command as MetaCommand, Endpoint, ErrorCode, Outcome};
use sluice_replication::raft::client::Client;
use sluice_replication::raft::node::{self, NodeConfig};
use sluice_replication::raft::subscriber::Subscriber;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-wire-compatible streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Consumer group settings of `sluice start`, with Kafka's names.
#[derive(clap::Args)]
struct GroupArgs {
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`
    /// when it is created.
    #[arg(long, default_value_t = 50)]
    offsets_topic_num_partitions: i32,
    /// `offsets.retention.minutes`.
    #[arg(long, default_value_t = 10_080)]
    offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`.
    #[arg(long, default_value_t = 600_000)]
    offsets_retention_check_interval_ms: u64,
    /// `group.initial.rebalance.delay.ms`.
    #[arg(long, default_value_t = 3_000)]
    group_initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms`.
    #[arg(long, default_value_t = 6_000)]
    group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    #[arg(long, default_value_t = 1_800_000)]
    group_max_session_timeout_ms: i32,
    /// `group.max.size` (Kafka: unlimited).
    #[arg(long, default_value_t = 1_000)]
    group_max_size: usize,
}

impl GroupArgs {
    fn apply(&self, broker: &mut sluice_net::BrokerConfig) {
        broker.offsets_topic_num_partitions = self.offsets_topic_num_partitions.max(1);
        broker.offsets_retention_minutes = self.offsets_retention_minutes;
        broker.offsets_retention_check_interval_ms = self.offsets_retention_check_interval_ms;
        broker.group_initial_rebalance_delay_ms = self.group_initial_rebalance_delay_ms;
        broker.group_min_session_timeout_ms = self.group_min_session_timeout_ms;
        broker.group_max_session_timeout_ms = self.group_max_session_timeout_ms;
        broker.group_max_size = self.group_max_size.max(1);
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a single node with zero configuration (the embedded default).
    ///
    /// Example: `sluice start --data-dir /var/lib/sluice`
    Start {
        /// Where data lives when --log-dirs is not given.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// `log.dirs`: comma-separated log directories, one per disk.
        #[arg(long, value_delimiter = ',')]
        log_dirs: Vec<PathBuf>,
        /// Number of shards (pinned cores); 0 for one per core.
        #[arg(long, default_value_t = 0)]
        shards: usize,
        /// `log.retention.check.interval.ms`.
        #[arg(long, default_value_t = 300_000)]
        retention_check_interval_ms: u64,
        /// `broker.id`.
        #[arg(long, default_value_t = 1)]
        broker_id: i32,
        /// `listeners`: where Kafka clients connect. Loopback by default;
        /// give 0.0.0.0:9092 to serve other hosts.
        #[arg(long, default_value = "127.0.0.1:9092")]
        listeners: std::net::SocketAddr,
        /// `advertised.listeners`: the host:port clients are told to use;
        /// defaults to --listeners.
        #[arg(long)]
        advertised_listeners: Option<String>,
        /// `auto.create.topics.enable`.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        auto_create_topics_enable: bool,
        /// `fetch.max.bytes`: the most one fetch response carries.
        #[arg(long, default_value_t = 57_671_680)]
        fetch_max_bytes: usize,
        /// `socket.request.max.bytes`: the largest request accepted.
        #[arg(long, default_value_t = 104_857_600)]
        socket_request_max_bytes: usize,
        /// `queued.max.request.bytes`: request bytes one shard holds at once.
        #[arg(long, default_value_t = 256 << 20)]
        queued_max_request_bytes: usize,
        /// Where the embedded one-member coordinator quorum listens.
        #[arg(long, default_value = "127.0.0.1:9093")]
        coordinator_listen: std::net::SocketAddr,
        /// Where the embedded coordinator keeps its log; default
        /// <data-dir>/coordinator.
        #[arg(long)]
        coordinator_dir: Option<PathBuf>,
        #[command(flatten)]
        groups: GroupArgs,
    },
    /// Run one node of the metadata coordinator quorum (3 or 5 in production).
    ///
    /// Example, on three hosts:
    /// `sluice coordinator --node-id 1 --peers 1=10.0.0.1:9093,2=10.0.0.2:9093,3=10.0.0.3:9093`
    Coordinator {
        /// This node's id; must be one of --peers.
        #[arg(long)]
        node_id: u64,
        /// Every voter: id=host:port, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        peers: Vec<String>,
        /// Where to listen; defaults to this node's address in --peers.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        #[arg(long, default_value = "coordinator-data")]
        data_dir: PathBuf,
        /// `broker.session.timeout.ms`.
        #[arg(long, default_value_t = 9_000)]
        session_timeout_ms: u64,
        /// Snapshot the metadata after this many log entries.
        #[arg(long, default_value_t = 1_000)]
        snapshot_every: u64,
    },
    /// Inspect the metadata quorum (like Kafka's DescribeQuorum).
    Quorum {
        /// Coordinator addresses, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        coordinators: Vec<String>,
    },
}

fn parse_peers(peers: &[String]) -> Result<BTreeMap<u64, String>, String> {
    peers
        .iter()
        .map(|p| {
            let (id, addr) = p
                .split_once('=')
                .ok_or_else(|| format!("peer {p:?} is not id=host:port"))?;
            let id = id
                .parse()
                .map_err(|_| format!("peer id {id:?} is not a number"))?;
            Ok((id, addr.to_string()))
        })
        .collect()
}

fn coordinator(config: NodeConfig) -> std::process::ExitCode {
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice: cannot install signal handlers: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let id = config.id;
    let dir = config.dir.clone();
    let handle = match node::start(config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("sluice: cannot start coordinator {id}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "sluice: coordinator {id} listening on {}, data in {}",
        handle.addr,
        dir.display()
    );
    let mut signals = signals;
    if let Some(sig) = signals.forever().next() {
        println!("sluice: signal {sig}: stopping");
    }
    handle.stop();
    std::process::ExitCode::SUCCESS
}

fn quorum(coordinators: &[String]) -> std::process::ExitCode {
    println!(
        "{:<6} {:<10} {:>6} {:>7} {:>9} {:>9} {:>9} {:>8}  voters",
        "node", "state", "term", "leader", "last-log", "applied", "snapshot", "digest"
    );
    let mut failed = false;
    for addr in coordinators {
        match Client::status(addr) {
            Ok(s) => {
                let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
                println!(
                    "{:<6} {:<10} {:>6} {:>7} {:>9} {:>9} {:>9} {:08x}  {:?}",
                    s.id,
                    s.state,
                    s.term,
                    opt(s.leader),
                    opt(s.last_log_index),
                    opt(s.last_applied),
                    opt(s.snapshot_index),
                    s.state_digest,
                    s.voters
                );
                for (node, idx) in &s.replication {
                    println!("         replication to {node}: {}", opt(*idx));
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("{addr}: unreachable: {e}");
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Start {
            data_dir,
            log_dirs,
            shards,
            retention_check_interval_ms,
            broker_id,
            listeners,
            advertised_listeners,
            auto_create_topics_enable,
            fetch_max_bytes,
            socket_request_max_bytes,
            queued_max_request_bytes,
            coordinator_listen,
            coordinator_dir,
            groups,
        } => {
            let coordinator_dir = coordinator_dir.unwrap_or_else(|| data_dir.join("coordinator"));
            let log_dirs = if log_dirs.is_empty() {
                vec![data_dir]
            } else {
                log_dirs
            };
            let advertised = advertised_listeners.unwrap_or_else(|| listeners.to_string());
            let Some((host, port)) = advertised
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            else {
                eprintln!("sluice: --advertised-listeners {advertised:?} is not host:port");
                return std::process::ExitCode::FAILURE;
            };
            let embedded = Embedded {
                broker_id,
                listen: coordinator_listen,
                dir: coordinator_dir,
                advertised: (host, port),
            };
            let mut broker = sluice_net::BrokerConfig::new(
                broker_id,
                listeners,
                vec![coordinator_listen.to_string()],
            );
            broker.auto_create_topics = auto_create_topics_enable;
            broker.fetch_max_bytes = fetch_max_bytes;
            broker.socket_request_max_bytes = socket_request_max_bytes;
            broker.queued_max_request_bytes = queued_max_request_bytes;
            broker.advertised = embedded.advertised.clone();
            groups.apply(&mut broker);
            let config = EngineConfig {
                log_dirs,
                shards,
                retention_check_interval_ms,
                ..EngineConfig::default()
            };
            start(config, embedded, broker)
        }
        Command::Coordinator {
            node_id,
            peers,
            listen,
            data_dir,
            session_timeout_ms,
            snapshot_every,
        } => {
            let peers = match parse_peers(&peers) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("sluice: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let Some(own) = peers.get(&node_id) else {
                eprintln!("sluice: node id {node_id} is not in --peers");
                return std::process::ExitCode::FAILURE;
            };
            let listen = match listen.map(Ok).unwrap_or_else(|| own.parse()) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("sluice: cannot listen on {own}: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let mut config = NodeConfig::new(node_id, listen, peers, data_dir);
            config.session_timeout = std::time::Duration::from_millis(session_timeout_ms);
            config.snapshot_every = snapshot_every;
            coordinator(config)
        }
        Command::Quorum { coordinators } => quorum(&coordinators),
    }
}

/// The embedded default: a one-member coordinator quorum in the broker's
/// process, with the broker registered, heartbeating and following it.
struct Embedded {
    broker_id: i32,
    listen: std::net::SocketAddr,
    dir: PathBuf,
    advertised: (String, u16),
}

struct Running {
    subscriber: Subscriber,
    heartbeats: std::thread::JoinHandle<()>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    node: node::NodeHandle,
    /// This broker's id and epoch, and the coordinator it registered with.
    broker: (i32, u64),
    coordinator: String,
}

fn incarnation() -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut id = [0u8; 16];
    id[..12].copy_from_slice(&nanos.to_le_bytes()[..12]);
    id[12..].copy_from_slice(&std::process::id().to_le_bytes());
    id
}

impl Embedded {
    fn start(&self) -> Result<Running, String> {
        let addr = self.listen.to_string();
        let peers = BTreeMap::from([(1u64, addr.clone())]);
        let config = NodeConfig::new(1, self.listen, peers, self.dir.clone());
        let session = config.session_timeout;
        let node = node::start(config)
            .map_err(|e| format!("cannot start the embedded coordinator: {e}"))?;
        let mut client = Client::new(vec![addr.clone()]);
        let register = MetaCommand::RegisterBroker {
            id: self.broker_id,
            incarnation: incarnation(),
            endpoints: vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host: self.advertised.0.clone(),
                port: self.advertised.1,
                security_protocol: "PLAINTEXT".into(),
            }],
            rack: None,
        };
        // After a crash the previous incarnation counts as live until its
        // session expires and the leader fences it; registration waits.
        let deadline = std::time::Instant::now() + session * 3;
        let mut told = false;
        let epoch = loop {
            let outcome = client
                .propose(register.clone())
                .map_err(|e| format!("cannot register with the coordinator: {e}"))?;
            match outcome {
                Outcome::BrokerRegistered { epoch } => break epoch,
                Outcome::Refused(e)
                    if e.code == ErrorCode::DuplicateBrokerRegistration
                        && std::time::Instant::now() < deadline =>
                {
                    if !told {
                        println!(
                            "sluice: broker {} is still registered by a previous process; waiting for its session ({} ms) to expire",
                            self.broker_id,
                            session.as_millis()
                        );
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                other => {
                    return Err(format!(
                        "the coordinator refused the registration: {other:?}"
                    ))
                }
            }
        };
        println!(
            "sluice: embedded coordinator (one-member quorum) on {addr}, data in {}; broker {} registered, epoch {epoch}",
            self.dir.display(),
            self.broker_id
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (id, st) = (self.broker_id, stop.clone());
        let heartbeats = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Acquire) {
                if let Err(e) = client.heartbeat(id, epoch) {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
                std::thread::sleep(session / 3);
            }
        });
        let addr_for_stop = addr.clone();
        let want_applied = node.state.borrow().last_applied;
        let subscriber =
            Subscriber::start(vec![addr]).map_err(|e| format!("cannot follow metadata: {e}"))?;
        // Serve only once this broker's image shows it registered and
        // unfenced, and has caught up with what the quorum had applied: a
        // client's first Metadata must already list it and every topic.
        let deadline = std::time::Instant::now() + session * 2;
        loop {
            let image = subscriber.current();
            let ready = image.last_applied >= want_applied
                && image
                    .brokers
                    .get(&self.broker_id)
                    .is_some_and(|b| b.epoch == epoch && !b.fenced);
            if ready {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err("this broker's metadata did not catch up with the coordinator".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(Running {
            subscriber,
            heartbeats,
            stop,
            node,
            broker: (self.broker_id, epoch),
            coordinator: addr_for_stop,
        })
    }
}

impl Running {
    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let _ = self.heartbeats.join();
        // Controlled shutdown: fence this incarnation now, so that the next
        // process registers at once instead of waiting for the session.
        let mut client = Client::new(vec![self.coordinator.clone()]);
        client.timeout = std::time::Duration::from_secs(5);
        let (id, epoch) = self.broker;
        if let Err(e) = client.propose(MetaCommand::FenceBroker { id, epoch }) {
            tracing::warn!(error = %e, "could not fence this broker on shutdown");
        }
        drop(self.subscriber);
        self.node.stop();
    }
}

fn start(
    mut config: EngineConfig,
    embedded: Embedded,
    broker: sluice_net::BrokerConfig,
) -> std::process::ExitCode {
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice: cannot install signal handlers: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let coordinator = match embedded.start() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if config.shards == 0 {
        config.shards = std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    let listen = broker.listen;
    let (server, listening) =
        sluice_net::shard_main(broker, coordinator.subscriber.image.clone(), config.shards);
    let engine = match Engine::start_with(config.clone(), Some(server)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("sluice: cannot start the storage engine: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for d in &config.log_dirs {
        let shown = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
        println!("sluice: data in {}", shown.display());
    }
    if !listening.wait(config.shards, std::time::Duration::from_secs(30)) {
        eprintln!("sluice: cannot listen for Kafka clients on {listen} (see the log)");
        engine.stop();
        coordinator.stop();
        return std::process::ExitCode::FAILURE;
    }
    let mut failed = 0;
    for o in &engine.opened {
        match &o.watermarks {
            Ok(w) => println!(
                "sluice: shard {} recovered {} (offsets {}..{})",
                o.shard, o.partition, w.log_start, w.log_end
            ),
            Err(e) => {
                failed += 1;
                eprintln!("sluice: shard {} cannot open {}: {e}", o.shard, o.partition);
            }
        }
    }
    println!(
        "sluice: serving Kafka clients on {listen} with {} shards, {} partitions ({} offline). Ctrl-C to stop.",
        config.shards,
        engine.opened.len(),
        failed
    );
    let mut signals = signals;
    if let Some(sig) = signals.forever().next() {
        println!("sluice: signal {sig}: syncing and stopping");
    }
    engine.stop();
    coordinator.stop();
    println!("sluice: stopped cleanly");
    std::process::ExitCode::SUCCESS
}
