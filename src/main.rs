//! The `sluice` command line.

use std::path::PathBuf;

use std::collections::BTreeMap;

use clap::{Parser, Subcommand};

mod cli;
mod settings;
use sluice_engine::shard::{Engine, EngineConfig};
use sluice_replication::raft::client::Client;
use sluice_replication::raft::node::{self, NodeConfig};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-wire-compatible streaming broker",
    after_help = "Examples:
  sluice start                           (a broker on 127.0.0.1:9092, data in ./data)
  sluice topic create orders -p 3
  seq 1 100 | sluice produce orders
  sluice consume orders -e
  sluice group describe billing -b 10.0.0.1:9092"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a single node with zero configuration (the embedded default).
    ///
    /// Example: `sluice start --data-dir /var/lib/sluice`
    Start(Box<StartArgs>),
    /// Run a broker that joins a separate coordinator quorum.
    ///
    /// Example: `sluice broker --broker-id 2 --coordinators 10.0.0.1:9093,10.0.0.2:9093,10.0.0.3:9093
    /// --listeners 0.0.0.0:9092 --advertised-listeners kafka2.example:9092`
    Broker(Box<RemoteArgs>),
    /// Create, list, describe, alter, grow, trim and delete topics.
    #[command(after_help = "Examples:
  sluice topic list
  sluice topic create orders -p 6
  sluice topic describe orders --format json")]
    Topic {
        #[command(flatten)]
        conn: cli::Conn,
        #[command(subcommand)]
        cmd: cli::topic::TopicCmd,
    },
    /// Produce messages: lines of stdin or files.
    Produce {
        #[command(flatten)]
        conn: cli::Conn,
        #[command(flatten)]
        args: cli::produce::ProduceArgs,
    },
    /// Consume messages, from the beginning by default.
    Consume {
        #[command(flatten)]
        conn: cli::Conn,
        #[command(flatten)]
        args: cli::consume::ConsumeArgs,
    },
    /// Consumer groups: list, describe with lag, delete, reset offsets.
    #[command(after_help = "Examples:
  sluice group list
  sluice group describe billing
  sluice group reset-offsets billing --topic orders --to-latest --execute")]
    Group {
        #[command(flatten)]
        conn: cli::Conn,
        #[command(subcommand)]
        cmd: cli::group::GroupCmd,
    },
    /// Cluster info, health check, and cluster-wide configs.
    #[command(after_help = "Examples:
  sluice cluster info
  sluice cluster health && echo healthy
  sluice cluster config get log.retention.hours")]
    Cluster {
        #[command(flatten)]
        conn: cli::Conn,
        #[command(subcommand)]
        cmd: cli::cluster::ClusterCmd,
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
    ///
    /// Example: `sluice quorum --coordinators 10.0.0.1:9093,10.0.0.2:9093,10.0.0.3:9093`
    Quorum {
        /// Coordinator addresses, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        coordinators: Vec<String>,
    },
}

/// A broker's settings, shared by `start` and `broker`.
#[derive(clap::Args)]
struct BrokerArgs {
    /// A properties file with Kafka's broker keys (server.properties
    /// format): listeners, advertised.listeners, log.dirs,
    /// num.partitions, message.max.bytes, log.retention.hours, ...
    #[arg(long)]
    config: Option<PathBuf>,
    /// `key=value` over the config file, like kafka-server-start.sh's
    /// --override; repeatable.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Where data lives when log.dirs is not given.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// `log.dirs`: comma-separated log directories, one per disk.
    #[arg(long)]
    log_dirs: Option<String>,
    /// Number of shards (pinned cores); 0 for one per core.
    #[arg(long, default_value_t = 0)]
    shards: usize,
    /// `log.retention.check.interval.ms` (default 300000).
    #[arg(long)]
    retention_check_interval_ms: Option<u64>,
    /// `broker.id` (default 1).
    #[arg(long)]
    broker_id: Option<i32>,
    /// `listeners`: where Kafka clients connect, host:port or
    /// PLAINTEXT://host:port. Default 127.0.0.1:9092; give 0.0.0.0:9092
    /// to serve other hosts.
    #[arg(long)]
    listeners: Option<String>,
    /// `advertised.listeners`: the host:port clients are told to use;
    /// defaults to the listener.
    #[arg(long)]
    advertised_listeners: Option<String>,
    /// `replication.listener` (Sluice's own): host:port where followers
    /// fetch partitions from this broker; default, the Kafka listener's
    /// host on a free port.
    #[arg(long)]
    replication_listener: Option<String>,
    /// `replica.lag.time.max.ms`: an in-sync follower not caught up for
    /// this long leaves the ISR (default 30000).
    #[arg(long)]
    replica_lag_time_max_ms: Option<u64>,
    /// `auto.create.topics.enable` (default true).
    #[arg(long)]
    auto_create_topics_enable: Option<bool>,
    /// `num.partitions` for topics created without a count (default 1).
    #[arg(long)]
    num_partitions: Option<i32>,
    /// `default.replication.factor` (default 1).
    #[arg(long)]
    default_replication_factor: Option<i16>,
    /// `message.max.bytes`: the largest record batch (default 1048588).
    #[arg(long)]
    message_max_bytes: Option<u64>,
    /// `fetch.max.bytes`: the most one fetch response carries
    /// (default 57671680).
    #[arg(long)]
    fetch_max_bytes: Option<usize>,
    /// `socket.request.max.bytes`: the largest request accepted
    /// (default 104857600).
    #[arg(long)]
    socket_request_max_bytes: Option<usize>,
    /// `queued.max.request.bytes`: request bytes one shard holds at once
    /// (default 268435456).
    #[arg(long)]
    queued_max_request_bytes: Option<usize>,
    /// `tail.cache.bytes` (Sluice's own): the most recently written batches
    /// kept in memory for consumers near the end of the log, split evenly
    /// among the shards (default 1073741824). Kafka leaves this to the page
    /// cache; Sluice writes with O_DIRECT.
    #[arg(long)]
    tail_cache_bytes: Option<usize>,
    /// `connections.max.idle.ms` (default 600000).
    #[arg(long)]
    connections_max_idle_ms: Option<u64>,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`
    /// when it is created (default 50).
    #[arg(long)]
    offsets_topic_num_partitions: Option<i32>,
    /// `offsets.retention.minutes` (default 10080).
    #[arg(long)]
    offsets_retention_minutes: Option<i64>,
    /// `offsets.retention.check.interval.ms` (default 600000).
    #[arg(long)]
    offsets_retention_check_interval_ms: Option<u64>,
    /// `group.initial.rebalance.delay.ms` (default 3000).
    #[arg(long)]
    group_initial_rebalance_delay_ms: Option<i32>,
    /// `group.min.session.timeout.ms` (default 6000).
    #[arg(long)]
    group_min_session_timeout_ms: Option<i32>,
    /// `group.max.session.timeout.ms` (default 1800000).
    #[arg(long)]
    group_max_session_timeout_ms: Option<i32>,
    /// `group.max.size` (default 1000; Kafka: unlimited).
    #[arg(long)]
    group_max_size: Option<usize>,
}

/// `sluice start`'s flags.
#[derive(clap::Args)]
struct StartArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Where the embedded one-member coordinator quorum listens.
    #[arg(long, default_value = "127.0.0.1:9093")]
    coordinator_listen: std::net::SocketAddr,
    /// Where the embedded coordinator keeps its log; default
    /// <data-dir>/coordinator.
    #[arg(long)]
    coordinator_dir: Option<PathBuf>,
}

/// `sluice broker`'s flags.
#[derive(clap::Args)]
struct RemoteArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// The coordinator quorum, host:port,host:port,...
    #[arg(long, value_delimiter = ',', required = true)]
    coordinators: Vec<String>,
    /// `broker.session.timeout.ms`: must match the coordinators'.
    #[arg(long, default_value_t = 9_000)]
    broker_session_timeout_ms: u64,
}

impl BrokerArgs {
    /// The Kafka keys the flags set, with their values (`None`: the flag
    /// was not given). Every field is named, so that a new flag does not
    /// compile until it is placed here or in `broker_settings`.
    fn flag_properties(&self) -> [(&'static str, Option<String>); 23] {
        let BrokerArgs {
            config: _,
            overrides: _,
            data_dir: _,
            shards: _,
            log_dirs,
            retention_check_interval_ms,
            broker_id,
            listeners,
            advertised_listeners,
            replication_listener,
            replica_lag_time_max_ms,
            auto_create_topics_enable,
            num_partitions,
            default_replication_factor,
            message_max_bytes,
            fetch_max_bytes,
            socket_request_max_bytes,
            queued_max_request_bytes,
            tail_cache_bytes,
            connections_max_idle_ms,
            offsets_topic_num_partitions,
            offsets_retention_minutes,
            offsets_retention_check_interval_ms,
            group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            group_max_size,
        } = self;
        [
            (
                "offsets.topic.num.partitions",
                text(offsets_topic_num_partitions),
            ),
            ("offsets.retention.minutes", text(offsets_retention_minutes)),
            (
                "offsets.retention.check.interval.ms",
                text(offsets_retention_check_interval_ms),
            ),
            (
                "group.initial.rebalance.delay.ms",
                text(group_initial_rebalance_delay_ms),
            ),
            (
                "group.min.session.timeout.ms",
                text(group_min_session_timeout_ms),
            ),
            (
                "group.max.session.timeout.ms",
                text(group_max_session_timeout_ms),
            ),
            ("group.max.size", text(group_max_size)),
            ("log.dirs", text(log_dirs)),
            (
                "log.retention.check.interval.ms",
                text(retention_check_interval_ms),
            ),
            ("broker.id", text(broker_id)),
            ("listeners", text(listeners)),
            ("advertised.listeners", text(advertised_listeners)),
            ("replication.listener", text(replication_listener)),
            ("replica.lag.time.max.ms", text(replica_lag_time_max_ms)),
            ("auto.create.topics.enable", text(auto_create_topics_enable)),
            ("num.partitions", text(num_partitions)),
            (
                "default.replication.factor",
                text(default_replication_factor),
            ),
            ("message.max.bytes", text(message_max_bytes)),
            ("fetch.max.bytes", text(fetch_max_bytes)),
            ("socket.request.max.bytes", text(socket_request_max_bytes)),
            ("queued.max.request.bytes", text(queued_max_request_bytes)),
            ("tail.cache.bytes", text(tail_cache_bytes)),
            ("connections.max.idle.ms", text(connections_max_idle_ms)),
        ]
    }
}

/// The value a flag was given, as text.
fn text<T: ToString>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(T::to_string)
}

/// The properties of the config file (none without one), with the
/// overrides over them.
fn file_properties(
    config: Option<&std::path::Path>,
    overrides: &[String],
) -> Result<BTreeMap<String, String>, String> {
    let mut props = match config {
        Some(path) => settings::parse_properties(
            &std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --config {}: {e}", path.display()))?,
        ),
        None => BTreeMap::new(),
    };
    for o in overrides {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| format!("--override {o:?} is not key=value"))?;
        props.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(props)
}

/// `addr`, or with port 0 a free port on its host: every shard binds the
/// replication listener to the same port (SO_REUSEPORT), and the broker
/// registers it before they start.
fn free_port_if_zero(addr: std::net::SocketAddr) -> Result<std::net::SocketAddr, String> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = std::net::TcpListener::bind(addr)
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("replication.listener: cannot listen on {addr}: {e}"))?;
    Ok(probe)
}

/// The replication endpoint this broker registers: its listener's address,
/// with the advertised host when it listens on every address.
fn replication_endpoint(broker: &sluice_net::BrokerConfig) -> (String, u16) {
    let addr = broker.replication_listen;
    let host = if addr.ip().is_unspecified() {
        broker.advertised.0.clone()
    } else {
        addr.ip().to_string()
    };
    (host, addr.port())
}

/// Resolves a broker's settings: the config file, then --override, then
/// flags. Errors are for the user.
fn broker_settings(
    args: BrokerArgs,
    coordinators: Vec<String>,
) -> Result<(EngineConfig, sluice_net::BrokerConfig, PathBuf), String> {
    let mut props = file_properties(args.config.as_deref(), &args.overrides)?;
    for (k, v) in args.flag_properties() {
        if let Some(v) = v {
            props.insert(k.to_string(), v);
        }
    }
    let s = settings::Settings::resolve(&props)?;
    if !s.ignored.is_empty() {
        println!(
            "sluice: ignoring keys Sluice does not use: {}",
            s.ignored.join(", ")
        );
    }
    let mut broker = sluice_net::BrokerConfig::new(s.broker_id, s.listen, coordinators);
    broker.advertised = s.advertised;
    broker.replication_listen = free_port_if_zero(s.replication_listen)?;
    broker.replica_lag_time_max_ms = s.replica_lag_time_max_ms;
    broker.auto_create_topics = s.auto_create_topics;
    broker.fetch_max_bytes = s.fetch_max_bytes;
    broker.socket_request_max_bytes = s.socket_request_max_bytes;
    broker.queued_max_request_bytes = s.queued_max_request_bytes;
    broker.connections_max_idle_ms = s.connections_max_idle_ms;
    broker.num_partitions = s.num_partitions;
    broker.default_replication_factor = s.default_replication_factor;
    broker.static_configs = s.log_defaults;
    broker.offsets_topic_num_partitions = s.offsets_topic_num_partitions;
    broker.offsets_topic_replication_factor = s.offsets_topic_replication_factor;
    broker.offsets_retention_minutes = s.offsets_retention_minutes;
    broker.offsets_topic_segment_bytes = s.offsets_topic_segment_bytes;
    broker.offsets_retention_check_interval_ms = s.offsets_retention_check_interval_ms;
    broker.group_initial_rebalance_delay_ms = s.group_initial_rebalance_delay_ms;
    broker.group_min_session_timeout_ms = s.group_min_session_timeout_ms;
    broker.group_max_session_timeout_ms = s.group_max_session_timeout_ms;
    broker.group_max_size = s.group_max_size;
    let engine = EngineConfig {
        log_dirs: s.log_dirs.unwrap_or_else(|| vec![args.data_dir.clone()]),
        shards: args.shards,
        retention_check_interval_ms: s.retention_check_interval_ms,
        tail_cache_bytes: s.tail_cache_bytes,
        segment_fds_max: s.segment_fds_max,
        ..EngineConfig::default()
    };
    Ok((engine, broker, args.data_dir))
}

/// Resolves a broker's settings and runs it until a signal. `embedded`
/// names the one-member coordinator quorum to run in this process (its
/// address and directory), given the data directory.
fn run_broker(
    args: BrokerArgs,
    coordinators: Vec<String>,
    embedded: impl FnOnce(&std::path::Path) -> Option<(std::net::SocketAddr, PathBuf)>,
    session: std::time::Duration,
) -> std::process::ExitCode {
    let (engine, broker, data_dir) = match broker_settings(args, coordinators) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let membership = sluice_broker::membership::Membership {
        broker_id: broker.broker_id,
        advertised: broker.advertised.clone(),
        replication: replication_endpoint(&broker),
        coordinators: broker.coordinators.clone(),
        embedded: embedded(&data_dir),
        session,
    };
    start(engine, membership, broker)
}

/// Runs a client command; its error is one line on stderr and exit code 1.
fn client(
    conn: &cli::Conn,
    f: impl FnOnce(&cli::Client) -> cli::Result<()>,
) -> std::process::ExitCode {
    match conn.client().and_then(|c| f(&c)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            std::process::ExitCode::FAILURE
        }
    }
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
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Start(_) | Command::Coordinator { .. });
    init_logging(serving);
    match cli.command {
        Command::Start(args) => start_embedded(*args),
        Command::Broker(args) => start_remote(*args),
        Command::Coordinator {
            node_id,
            peers,
            listen,
            data_dir,
            session_timeout_ms,
            snapshot_every,
        } => run_coordinator(
            node_id,
            &peers,
            listen,
            data_dir,
            session_timeout_ms,
            snapshot_every,
        ),
        Command::Quorum { coordinators } => quorum(&coordinators),
        Command::Topic { conn, cmd } => client(&conn, |c| cli::topic::run(c, cmd)),
        Command::Produce { conn, args } => client(&conn, |c| cli::produce::run(c, args)),
        Command::Consume { conn, args } => client(&conn, |c| cli::consume::run(c, args)),
        Command::Group { conn, cmd } => client(&conn, |c| cli::group::run(c, cmd)),
        Command::Cluster { conn, cmd } => client(&conn, |c| cli::cluster::run(c, cmd)),
    }
}

/// Servers log; client commands report errors in one line of their own,
/// so client library logs stay off unless RUST_LOG asks for them.
fn init_logging(serving: bool) {
    let default = if serving { "info,openraft=warn" } else { "off" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// `sluice start`: a broker with its own one-member coordinator quorum.
fn start_embedded(args: StartArgs) -> std::process::ExitCode {
    let StartArgs {
        broker,
        coordinator_listen,
        coordinator_dir,
    } = args;
    run_broker(
        broker,
        vec![coordinator_listen.to_string()],
        |data_dir| {
            Some((
                coordinator_listen,
                coordinator_dir.unwrap_or_else(|| data_dir.join("coordinator")),
            ))
        },
        node::SESSION_TIMEOUT_DEFAULT,
    )
}

/// `sluice broker`: a broker of a separate coordinator quorum.
fn start_remote(args: RemoteArgs) -> std::process::ExitCode {
    let RemoteArgs {
        broker,
        coordinators,
        broker_session_timeout_ms,
    } = args;
    run_broker(
        broker,
        coordinators,
        |_| None,
        std::time::Duration::from_millis(broker_session_timeout_ms),
    )
}

/// `sluice coordinator`: checks the flags and runs the node until a
/// signal.
fn run_coordinator(
    node_id: u64,
    peers: &[String],
    listen: Option<std::net::SocketAddr>,
    data_dir: PathBuf,
    session_timeout_ms: u64,
    snapshot_every: u64,
) -> std::process::ExitCode {
    let peers = match parse_peers(peers) {
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

fn start(
    mut config: EngineConfig,
    membership: sluice_broker::membership::Membership,
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
    let mut coordinator = match membership.join(&|line| println!("sluice: {line}")) {
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
    let (server, listening) = sluice_net::shard_main(broker, coordinator.image(), config.shards);
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
        coordinator.step_down();
        engine.stop();
        coordinator.leave();
        return std::process::ExitCode::FAILURE;
    }
    let failed = report_recovery(&engine);
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
    coordinator.step_down();
    engine.stop();
    coordinator.leave();
    println!("sluice: stopped cleanly");
    std::process::ExitCode::SUCCESS
}

/// Says what each shard recovered; returns how many partitions it could
/// not open.
fn report_recovery(engine: &Engine) -> usize {
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
    failed
}
