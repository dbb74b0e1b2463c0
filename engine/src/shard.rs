//! Thread-per-core: N shards, each a glommio executor pinned to one core that
//! alone owns a disjoint set of partitions and their files.
//!
//! A partition belongs to shard `shard_of(topic-partition, N)`: a fixed hash,
//! so any shard (and later the network layer) can tell the owner without
//! asking. Log directories are shared: each holds partitions of every shard,
//! and a new partition goes to the directory with the fewest partitions.
//! An I/O error in one directory takes that directory's partitions offline
//! (`LogDir::offline`) while the others keep serving.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::config::LogConfig;
use crate::error::{EngineError, Result};
use crate::partition::{LogDir, NewPartition, Partition, ShardContext, Watermarks};
use crate::types::{now_ms, TopicPartition};

/// Broker-level storage settings (Kafka's names in the comments).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `log.dirs`.
    pub log_dirs: Vec<PathBuf>,
    /// Number of shards; 0 means one per available core.
    pub shards: usize,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// `tail.cache.bytes`: the broker's tail cache, split evenly among the
    /// shards (each evicts its own oldest batches).
    pub tail_cache_bytes: usize,
    pub write_buffer_bytes_max: u64,
    /// `log.segment.fds.max` (Sluice's own): the segment file descriptors
    /// the broker keeps open, split evenly among the shards; `None`: half
    /// of the open file limit (`ulimit -n`), the rest left for sockets and
    /// short-lived files (see `crate::fds`).
    pub segment_fds_max: Option<usize>,
    /// Defaults for topics (`log.segment.bytes`, `log.retention.ms`, ...).
    pub log: LogConfig,
}

/// The default `tail.cache.bytes`: 1 GiB for the broker. A consumer that
/// falls further behind than its shard's share reads the files, from the
/// disk (appends are O_DIRECT, so the page cache does not hold them); on
/// the test machine that read ran slower than a single partition taking
/// 450 MiB/s, so such a consumer never caught up. With 64 MiB per shard
/// (140 ms of that), ordinary scheduling stalls of the consumer put it
/// there.
pub const TAIL_CACHE_BYTES: usize = 1 << 30;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            log_dirs: vec![PathBuf::from("data")],
            shards: 0,
            retention_check_interval_ms: 300_000,
            tail_cache_bytes: TAIL_CACHE_BYTES,
            write_buffer_bytes_max: 64 << 20,
            segment_fds_max: None,
            log: LogConfig::default(),
        }
    }
}

/// The shard that owns a partition: FNV-1a of the directory name.
pub fn shard_of(tp: &TopicPartition, shards: usize) -> usize {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in tp.dir_name().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// The log directory for a new partition: the one with the fewest
/// partitions that is online.
pub fn choose_dir(dirs: &[Arc<LogDir>]) -> Option<Arc<LogDir>> {
    dirs.iter()
        .filter(|d| !d.is_offline())
        .min_by_key(|d| d.partitions.load(Ordering::Acquire))
        .cloned()
}

/// What a shard's tasks share: its partitions and what opening more needs.
pub struct ShardEnv {
    pub shard: usize,
    pub shards: usize,
    pub ctx: Rc<ShardContext>,
    pub dirs: Vec<Arc<LogDir>>,
    /// The partitions this shard owns and has open.
    pub partitions: RefCell<HashMap<TopicPartition, Partition>>,
    pub stop: Arc<AtomicBool>,
    /// One open at a time, so that two tasks never open the same partition.
    open_lock: Semaphore,
}

impl ShardEnv {
    /// The open partition, if this shard has it.
    pub fn get(&self, tp: &TopicPartition) -> Option<Partition> {
        self.partitions.borrow().get(tp).cloned()
    }

    /// The partition, opened (or created, in the emptiest online log dir)
    /// with `config` if it is not open yet. Must be called on its owner.
    pub async fn open(&self, tp: &TopicPartition, config: LogConfig) -> Result<Partition> {
        debug_assert_eq!(shard_of(tp, self.shards), self.shard, "opened on its owner");
        if let Some(p) = self.get(tp) {
            return Ok(p);
        }
        let _permit = self
            .open_lock
            .acquire_permit(1)
            .await
            .map_err(|_| EngineError::Closed)?;
        if let Some(p) = self.get(tp) {
            return Ok(p);
        }
        let dir = self
            .dir_holding(tp)
            .or_else(|| choose_dir(&self.dirs))
            .ok_or_else(|| {
                EngineError::DirOffline(
                    self.dirs
                        .first()
                        .map(|d| d.path.clone())
                        .unwrap_or_default(),
                )
            })?;
        let p = Partition::open(dir, tp.clone(), config, self.ctx.clone(), now_ms()).await?;
        self.partitions.borrow_mut().insert(tp.clone(), p.clone());
        Ok(p)
    }

    /// Creates and opens, on this shard, every partition of `new` that is
    /// not open yet, many at once: those on disk are opened (recovered),
    /// the others created `CREATE_BATCH_MAX` at a time, in the emptiest
    /// online log dirs, each batch made durable with one round of fsyncs
    /// (`Partition::create_many`). Must be called on their owner. Returns
    /// the partitions that could not be opened, with why.
    pub async fn create(&self, new: Vec<NewPartition>) -> Vec<(TopicPartition, EngineError)> {
        let mut failed = Vec::new();
        let mut rest = new.into_iter().peekable();
        while rest.peek().is_some() {
            let batch: Vec<NewPartition> = rest.by_ref().take(CREATE_BATCH_MAX).collect();
            // Opens wait for a batch, never longer: a produce that races
            // the batch finds its partition open when it gets the lock.
            let Ok(_permit) = self.open_lock.acquire_permit(1).await else {
                failed.extend(batch.into_iter().map(|n| (n.tp, EngineError::Closed)));
                return failed;
            };
            let (on_disk, per_dir) = self.place(batch, &mut failed);
            for (n, dir) in on_disk {
                match Partition::open(dir, n.tp.clone(), n.config, self.ctx.clone(), now_ms()).await
                {
                    Ok(p) => {
                        self.partitions.borrow_mut().insert(n.tp, p);
                    }
                    Err(e) => failed.push((n.tp, e)),
                }
            }
            for (dir, group) in self.dirs.iter().zip(per_dir) {
                if !group.is_empty() {
                    self.create_in(dir, group, &mut failed).await;
                }
            }
        }
        failed
    }

    /// The log dir holding `tp`'s directory, if one does.
    fn dir_holding(&self, tp: &TopicPartition) -> Option<Arc<LogDir>> {
        self.dirs
            .iter()
            .find(|d| d.path.join(tp.dir_name()).is_dir())
            .cloned()
    }

    /// Sorts a batch to create: those already open are dropped, those on
    /// disk are returned to be opened, the others spread over the online
    /// log dirs, emptiest first (by index of `self.dirs`).
    fn place(
        &self,
        batch: Vec<NewPartition>,
        failed: &mut Vec<(TopicPartition, EngineError)>,
    ) -> Placed {
        let mut on_disk = Vec::new();
        let mut per_dir: Vec<Vec<NewPartition>> = self.dirs.iter().map(|_| Vec::new()).collect();
        for n in batch {
            debug_assert_eq!(
                shard_of(&n.tp, self.shards),
                self.shard,
                "created on its owner"
            );
            if self.get(&n.tp).is_some() {
                continue;
            }
            if let Some(dir) = self.dir_holding(&n.tp) {
                on_disk.push((n, dir));
                continue;
            }
            let load =
                |i: usize| self.dirs[i].partitions.load(Ordering::Acquire) + per_dir[i].len();
            let emptiest = (0..self.dirs.len())
                .filter(|&i| !self.dirs[i].is_offline())
                .min_by_key(|&i| load(i));
            match emptiest {
                Some(i) => per_dir[i].push(n),
                None => {
                    let first = self.dirs.first().map(|d| d.path.clone());
                    failed.push((n.tp, EngineError::DirOffline(first.unwrap_or_default())));
                }
            }
        }
        (on_disk, per_dir)
    }

    /// Creates `group` in `dir` and opens it; adds what failed to `failed`.
    async fn create_in(
        &self,
        dir: &Arc<LogDir>,
        group: Vec<NewPartition>,
        failed: &mut Vec<(TopicPartition, EngineError)>,
    ) {
        let tps: Vec<TopicPartition> = group.iter().map(|n| n.tp.clone()).collect();
        match Partition::create_many(dir, group, &self.ctx, now_ms()).await {
            Ok(created) => {
                for (tp, p) in created {
                    match p {
                        Ok(p) => {
                            self.partitions.borrow_mut().insert(tp, p);
                        }
                        Err(e) => failed.push((tp, e)),
                    }
                }
            }
            Err(e) => {
                tracing::error!(dir = %dir.path.display(), error = %e,
                    "could not make new partitions durable; log directory offline");
                let offline = |tp| (tp, EngineError::DirOffline(dir.path.clone()));
                failed.extend(tps.into_iter().map(offline));
            }
        }
    }

    /// Closes and forgets a partition (its topic was deleted); its files
    /// are removed by the caller if wanted.
    pub async fn close(&self, tp: &TopicPartition) -> Result<Option<PathBuf>> {
        let p = self.partitions.borrow_mut().remove(tp);
        match p {
            Some(p) => {
                p.close().await?;
                Ok(Some(p.dir().to_path_buf()))
            }
            None => Ok(None),
        }
    }
}

/// A batch to create, sorted ([`ShardEnv::place`]): the partitions on disk
/// with the log dir holding each, and the new ones per log dir.
type Placed = (Vec<(NewPartition, Arc<LogDir>)>, Vec<Vec<NewPartition>>);

/// The most partitions [`ShardEnv::create`] creates under one hold of the
/// open lock, made durable by one round of directory fsyncs.
pub const CREATE_BATCH_MAX: usize = 1024;

/// A task run on every shard beside the storage engine's own (the network
/// layer's listener, for one).
pub type ShardMain = Arc<dyn Fn(Rc<ShardEnv>) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

/// What a shard opened at start.
#[derive(Clone, Debug)]
pub struct Opened {
    pub shard: usize,
    pub partition: TopicPartition,
    pub dir: PathBuf,
    pub watermarks: Result<Watermarks, String>,
}

/// The running shards.
pub struct Engine {
    threads: Vec<ExecutorJoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pub dirs: Vec<Arc<LogDir>>,
    pub opened: Vec<Opened>,
}

impl Engine {
    /// Creates the log directories, finds the partitions in them, starts the
    /// shards and waits until each has opened (recovered) its partitions.
    pub fn start(config: EngineConfig) -> Result<Engine> {
        Self::start_with(config, None)
    }

    /// Like [`Engine::start`], also running `main` on every shard once it
    /// has recovered its partitions.
    pub fn start_with(config: EngineConfig, main: Option<ShardMain>) -> Result<Engine> {
        let shards = if config.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.shards
        };
        let shard_fds_max = segment_fds_budget(config.segment_fds_max, shards);
        let mut dirs = Vec::new();
        let mut found: Vec<Vec<(TopicPartition, Arc<LogDir>)>> = vec![Vec::new(); shards];
        for path in &config.log_dirs {
            std::fs::create_dir_all(path).map_err(|e| EngineError::io(path, e))?;
            // Absolute: glommio opens directories without the working
            // directory (a relative path fails with EBADF).
            let path = &std::path::absolute(path).map_err(|e| EngineError::io(path, e))?;
            let dir = Arc::new(LogDir::new(path.clone()));
            for entry in std::fs::read_dir(path).map_err(|e| EngineError::io(path, e))? {
                let entry = entry.map_err(|e| EngineError::io(path, e))?;
                let name = entry.file_name();
                let Some(tp) = name.to_str().and_then(TopicPartition::from_dir_name) else {
                    continue;
                };
                if entry.path().is_dir() {
                    dir.partitions.fetch_add(1, Ordering::AcqRel);
                    found[shard_of(&tp, shards)].push((tp, dir.clone()));
                }
            }
            dirs.push(dir);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for (shard, owned) in found.into_iter().enumerate() {
            let placement = if shards <= cores {
                Placement::Fixed(shard)
            } else {
                Placement::Unbound
            };
            let stop = stop.clone();
            let tx = tx.clone();
            let config = config.clone();
            let dirs = dirs.clone();
            let main = main.clone();
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("sluice-shard-{shard}"))
                .io_memory(crate::io::io_memory(config.write_buffer_bytes_max))
                .spawn(move || async move {
                    run_shard(ShardStart {
                        shard,
                        shards,
                        owned,
                        dirs,
                        config,
                        fds_max: shard_fds_max,
                        stop,
                        report: tx,
                        main,
                    })
                    .await
                })
                .map_err(|e| EngineError::io("executor", std::io::Error::other(e.to_string())))?;
            threads.push(handle);
        }
        drop(tx);
        let mut opened = Vec::new();
        for batch in rx.iter().take(shards) {
            opened.extend(batch);
        }
        Ok(Engine {
            threads,
            stop,
            dirs,
            opened,
        })
    }

    /// Closes every partition (writing and syncing what is pending) and
    /// stops the shards.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a shard thread panicked");
            }
        }
    }
}

struct ShardStart {
    shard: usize,
    shards: usize,
    owned: Vec<(TopicPartition, Arc<LogDir>)>,
    dirs: Vec<Arc<LogDir>>,
    config: EngineConfig,
    /// This shard's share of the segment descriptor budget.
    fds_max: usize,
    stop: Arc<AtomicBool>,
    report: mpsc::Sender<Vec<Opened>>,
    main: Option<ShardMain>,
}

/// The smallest share of segment descriptors a shard gets: an active
/// partition holds 4 (two for the log, two for its indexes).
const SHARD_FDS_MIN: usize = 64;

/// Each shard's share of the segment descriptor budget: `configured`, else
/// half of the open file limit, raised to its hard limit first. Logs the
/// budget.
fn segment_fds_budget(configured: Option<usize>, shards: usize) -> usize {
    let limit = match crate::fds::raise_fd_limit() {
        Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the open file limit; assuming 1024");
            1024
        }
    };
    let total = configured.unwrap_or(limit / 2);
    let per_shard = (total / shards.max(1)).max(SHARD_FDS_MIN);
    tracing::info!(
        open_files_limit = limit,
        segment_fds_max = total,
        per_shard,
        "segment file descriptors: at most {per_shard} per shard kept open, idle ones closed first"
    );
    if configured.is_some_and(|c| c >= limit) {
        tracing::warn!(
            segment_fds_max = total,
            open_files_limit = limit,
            "log.segment.fds.max leaves no descriptors for sockets"
        );
    }
    per_shard
}

async fn run_shard(start: ShardStart) {
    let ShardStart {
        shard,
        shards,
        owned,
        dirs,
        config,
        fds_max,
        stop,
        report,
        main,
    } = start;
    for d in &dirs {
        if let Err(e) = crate::io::probe_device(&d.path).await {
            tracing::error!(dir = %d.path.display(), error = %e, "log directory offline");
            d.offline.store(true, Ordering::Release);
        }
    }
    let env = Rc::new(ShardEnv {
        shard,
        shards,
        ctx: Rc::new(ShardContext::new(
            config.tail_cache_bytes / shards.max(1),
            config.write_buffer_bytes_max,
        )),
        dirs: dirs.clone(),
        partitions: RefCell::new(HashMap::new()),
        stop: stop.clone(),
        open_lock: Semaphore::new(1),
    });
    env.ctx.fds.set_max(fds_max);
    let mut opened = Vec::new();
    for (tp, dir) in owned {
        let result = Partition::open(
            dir.clone(),
            tp.clone(),
            config.log.clone(),
            env.ctx.clone(),
            now_ms(),
        )
        .await;
        opened.push(Opened {
            shard,
            partition: tp.clone(),
            dir: dir.path.clone(),
            watermarks: result
                .as_ref()
                .map(|p| p.watermarks())
                .map_err(|e| e.to_string()),
        });
        if let Ok(p) = result {
            env.partitions.borrow_mut().insert(tp, p);
        }
    }
    let _ = report.send(opened);
    if let Some(main) = main {
        glommio::spawn_local(main(env.clone())).detach();
    }
    let interval = Duration::from_millis(config.retention_check_interval_ms.max(1));
    let mut next_check = Instant::now() + interval;
    while !stop.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(50)).await;
        if Instant::now() >= next_check {
            next_check = Instant::now() + interval;
            let partitions: Vec<Partition> = env.partitions.borrow().values().cloned().collect();
            for p in &partitions {
                if let Err(e) = p.enforce_retention(now_ms()).await {
                    tracing::warn!(partition = %p.topic_partition(), error = %e, "retention check failed");
                }
            }
        }
    }
    let partitions: Vec<Partition> = env.partitions.borrow().values().cloned().collect();
    close_all(partitions).await;
}

/// Partitions a stopping shard closes at once: their fsyncs share journal
/// commits, where one after the other 50,000 partitions took minutes.
const CLOSES_IN_FLIGHT: usize = 64;

/// Closes `partitions`, [`CLOSES_IN_FLIGHT`] at a time.
async fn close_all(partitions: Vec<Partition>) {
    for round in partitions.chunks(CLOSES_IN_FLIGHT) {
        let closing: Vec<_> = round
            .iter()
            .cloned()
            .map(|p| glommio::spawn_local(async move { (p.close().await, p) }))
            .collect();
        for task in closing {
            let (closed, p) = task.await;
            if let Err(e) = closed {
                tracing::error!(partition = %p.topic_partition(), error = %e, "close failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_several_dirs_new_partitions_go_to_the_emptiest_online_one() {
        let a = Arc::new(LogDir::new("a".into()));
        let b = Arc::new(LogDir::new("b".into()));
        a.partitions.store(3, Ordering::Release);
        b.partitions.store(1, Ordering::Release);
        let dirs = vec![a.clone(), b.clone()];
        assert_eq!(choose_dir(&dirs).unwrap().path, PathBuf::from("b"));
        b.offline.store(true, Ordering::Release);
        assert_eq!(choose_dir(&dirs).unwrap().path, PathBuf::from("a"));
        a.offline.store(true, Ordering::Release);
        assert!(choose_dir(&dirs).is_none());
    }

    #[test]
    fn shard_of_spreads_partitions_and_is_stable() {
        let mut counts = [0usize; 4];
        for p in 0..400 {
            counts[shard_of(&TopicPartition::new("orders", p), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
        let tp = TopicPartition::new("x", 7);
        assert_eq!(shard_of(&tp, 4), shard_of(&tp, 4));
    }
}
