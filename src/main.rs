//! The `sluice` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sluice_engine::shard::{Engine, EngineConfig};

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
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
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
        } => {
            let log_dirs = if log_dirs.is_empty() {
                vec![data_dir]
            } else {
                log_dirs
            };
            let config = EngineConfig {
                log_dirs,
                shards,
                retention_check_interval_ms,
                ..EngineConfig::default()
            };
            start(config)
        }
    }
}

fn start(config: EngineConfig) -> std::process::ExitCode {
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
    let engine = match Engine::start(config.clone()) {
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
        "sluice: storage engine running, {} partitions ({} offline); the Kafka listener is not built yet. Ctrl-C to stop.",
        engine.opened.len(),
        failed
    );
    let mut signals = signals;
    if let Some(sig) = signals.forever().next() {
        println!("sluice: signal {sig}: syncing and stopping");
    }
    engine.stop();
    println!("sluice: stopped cleanly");
    std::process::ExitCode::SUCCESS
}
