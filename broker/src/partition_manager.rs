//! The partitions one shard holds, following the metadata image.
//!
//! One manager per shard. It owns:
//! * creating, when the image assigns them to this broker, the partitions
//!   its shard owns, many at once with their durability grouped
//!   (`ShardEnv::create`), so that the first produce to a partition costs
//!   what any produce costs; and telling whoever waits (CreateTopics)
//!   which image's partitions every shard of the broker has created
//!   ([`wait_created`]);
//! * opening a partition on its shard (created in the emptiest online log
//!   dir if it does not exist yet: a produce that races the creation) with
//!   its topic's effective config;
//! * each topic's effective config, computed once per image
//!   ([`TopicConfigs`]) and applied to the open partitions when an image
//!   changes it;
//! * closing and removing the partitions of deleted topics;
//! * each partition's role, leader or follower, from the image
//!   (`roles`), and for the partitions it leads with followers: moving
//!   the high watermark as its own copy becomes durable, and proposing
//!   the ISR changes their followers' progress calls for (AlterPartition,
//!   checked by the coordinator against the partition epoch).
//!
//! Invariants: a partition is opened only on the shard that owns it
//! (`shard_of`); only a topic this shard has seen in an earlier image and
//! that is gone (or has a new topic id) now counts as deleted, so a
//! partition on disk that metadata has never named (an image that lags, a
//! directory copied in by hand) is kept, not served, and reported, never
//! removed. A shard reports an image as applied (`Progress`) only once it
//! has tried to create every partition that image assigns it.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sluice_engine::partition::NewPartition;
use sluice_engine::shard::{shard_of, ShardEnv};
use sluice_engine::{EngineError, LeaderEpoch, Result, TopicPartition};
use sluice_replication::metadata::{Command, MetadataState, PartitionState};
use sluice_replication::raft::subscriber::Image;

use crate::isr::{Assignment, IsrChange};
use crate::replicated_partition::ReplicatedPartition;
use crate::roles::FetchPosition;
use crate::topic_config::TopicConfigs;

/// How often a shard looks for a new metadata image: CreateTopics waits
/// for every shard to have seen the topic's image (a load of an `ArcSwap`
/// per look).
const FOLLOW_INTERVAL: Duration = Duration::from_millis(5);

/// How often a waiter looks at the shards' progress.
const WAIT_INTERVAL: Duration = Duration::from_millis(5);

/// How often a shard's leaders look for ISR changes due (followers lagging
/// past `replica.lag.time.max.ms`, or caught up again).
const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// What replication on this broker is configured with.
#[derive(Clone, Debug)]
pub struct ReplicaSettings {
    /// This broker's id: partitions whose replicas name it are created here.
    pub broker_id: i32,
    /// The coordinator quorum, for ISR changes.
    pub coordinators: Vec<String>,
    /// `replica.lag.time.max.ms`.
    pub lag_time_max_ms: i64,
}

/// One shard's partitions.
pub struct PartitionManager {
    env: Rc<ShardEnv>,
    image: Image,
    configs: TopicConfigs,
    settings: ReplicaSettings,
    broker_id: i32,
    progress: Arc<Progress>,
    /// The partitions open on this shard with their roles.
    replicas: RefCell<HashMap<TopicPartition, ReplicatedPartition>>,
}

/// How far each shard of one broker has applied the image: the
/// `last_applied` of the latest image whose partitions it has created (or
/// failed to). Shared by the shards and by [`wait_created`], found through
/// the image they follow.
struct Progress {
    shards: Vec<AtomicU64>,
}

/// What an [`Image`] points to.
type ImageCell = <Image as std::ops::Deref>::Target;

/// The progress of each broker in this process, by the image it follows
/// (one per broker; tests may run several).
static PROGRESS: Mutex<Vec<(Weak<ImageCell>, Arc<Progress>)>> = Mutex::new(Vec::new());

/// The progress of the broker following `image`; `shards` makes it if it
/// is not there yet.
fn progress(image: &Image, shards: Option<usize>) -> Option<Arc<Progress>> {
    let mut all = PROGRESS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|(img, _)| img.strong_count() > 0);
    if let Some((_, p)) = all
        .iter()
        .find(|(img, _)| std::ptr::eq(img.as_ptr(), Arc::as_ptr(image)))
    {
        return Some(p.clone());
    }
    let p = Arc::new(Progress {
        shards: (0..shards?).map(|_| AtomicU64::new(0)).collect(),
    });
    all.push((Arc::downgrade(image), p.clone()));
    Some(p)
}

/// Waits until every shard of the broker following `image` has created the
/// partitions that an image at least as new as `applied` assigns to it
/// (each shard tries once per image; one that failed reports it and its
/// partition is opened at its first use). False if that did not happen
/// by `deadline`.
pub async fn wait_created(image: &Image, applied: u64, deadline: Instant) -> bool {
    let Some(p) = progress(image, None) else {
        // No shard follows this image: nothing to wait for.
        return true;
    };
    while !p
        .shards
        .iter()
        .all(|s| s.load(Ordering::Acquire) >= applied)
    {
        if Instant::now() > deadline {
            return false;
        }
        glommio::timer::sleep(WAIT_INTERVAL).await;
    }
    true
}

impl PartitionManager {
    /// The shard's manager for broker `broker_id`; call
    /// [`PartitionManager::follow`] to keep it following the image.
    pub fn new(
        env: Rc<ShardEnv>,
        image: Image,
        configs: TopicConfigs,
        settings: ReplicaSettings,
    ) -> Rc<Self> {
        let progress = progress(&image, Some(env.shards)).expect("made when missing");
        assert_eq!(progress.shards.len(), env.shards, "one broker per image");
        Rc::new(Self {
            env,
            image,
            configs,
            broker_id: settings.broker_id,
            settings,
            progress,
            replicas: RefCell::new(HashMap::new()),
        })
    }

    /// The shard's storage.
    pub fn env(&self) -> &Rc<ShardEnv> {
        &self.env
    }

    /// This broker's static settings, by Kafka's names.
    pub fn statics(&self) -> &std::collections::BTreeMap<String, String> {
        self.configs.statics()
    }

    /// `topic`'s effective log config under the current image.
    pub fn config(&self, topic: &str) -> sluice_engine::config::LogConfig {
        self.configs.get(&self.image.load(), topic)
    }

    /// `topic`'s effective log config under `state`.
    pub fn config_in(
        &self,
        state: &MetadataState,
        topic: &str,
    ) -> sluice_engine::config::LogConfig {
        self.configs.get(state, topic)
    }

    /// The partition, if this shard has it open, with its role.
    pub fn get(&self, tp: &TopicPartition) -> Option<ReplicatedPartition> {
        if let Some(p) = self.replicas.borrow().get(tp) {
            return Some(p.clone());
        }
        let log = self.env.get(tp)?;
        Some(self.adopt(tp, log))
    }

    /// Keeps an open log as a replica, with its role from the image.
    fn adopt(
        &self,
        tp: &TopicPartition,
        log: sluice_engine::partition::Partition,
    ) -> ReplicatedPartition {
        let p = ReplicatedPartition::new(log);
        self.replicas.borrow_mut().insert(tp.clone(), p.clone());
        let state = self.image.load();
        if let Some(ps) = state
            .topics
            .get(&tp.topic)
            .and_then(|t| t.partitions.get(tp.partition.0 as usize))
        {
            self.apply_role(tp, &p, ps, sluice_engine::types::now_ms());
        }
        p
    }

    /// The partition, opened (or created) with its topic's config if it is
    /// not open yet. Must be called on its owning shard.
    pub async fn open(&self, tp: &TopicPartition) -> Result<ReplicatedPartition> {
        if let Some(p) = self.get(tp) {
            return Ok(p);
        }
        let config = self.config(&tp.topic);
        let log = self.env.open(tp, config).await?;
        Ok(self.get(tp).unwrap_or_else(|| self.adopt(tp, log)))
    }

    /// The partitions this shard follows, with where each is.
    pub fn followed(&self) -> Vec<(TopicPartition, FetchPosition)> {
        self.replicas
            .borrow()
            .iter()
            .filter_map(|(tp, p)| p.fetch_position().map(|pos| (tp.clone(), pos)))
            .collect()
    }

    /// Gives a partition the role `ps` (its metadata) says this broker has.
    fn apply_role(
        &self,
        tp: &TopicPartition,
        p: &ReplicatedPartition,
        ps: &PartitionState,
        now_ms: i64,
    ) {
        let me = self.broker_id;
        let epoch = LeaderEpoch(ps.leader_epoch);
        if !ps.replicas.contains(&me) || ps.leader < 0 {
            p.step_down();
        } else if ps.leader == me && !ps.isr.contains(&me) {
            tracing::warn!(partition = %tp, isr = ?ps.isr, "named leader but not in the ISR: not serving");
            p.step_down();
        } else if ps.leader == me {
            let was = p.leading();
            let followers = (ps.replicas.len() > 1).then(|| Assignment {
                me,
                replicas: ps.replicas.clone(),
                isr: ps.isr.clone(),
                partition_epoch: ps.partition_epoch,
            });
            let replicated = followers.is_some();
            p.become_leader(epoch, followers, self.settings.lag_time_max_ms, now_ms);
            if replicated && was != Some(epoch) {
                watch_durable(tp.clone(), p.clone(), epoch);
            }
        } else {
            p.become_follower(ps.leader, epoch);
        }
    }

    /// Gives every open partition of this shard its role under `state`.
    fn apply_roles(&self, state: &MetadataState) {
        let now = sluice_engine::types::now_ms();
        let open: Vec<(TopicPartition, ReplicatedPartition)> = self
            .env
            .partitions
            .borrow()
            .keys()
            .filter_map(|tp| self.get(tp).map(|p| (tp.clone(), p)))
            .collect();
        for (tp, p) in open {
            let ps = state
                .topics
                .get(&tp.topic)
                .and_then(|t| t.partitions.get(tp.partition.0 as usize));
            match ps {
                Some(ps) => self.apply_role(&tp, &p, ps, now),
                None => p.step_down(),
            }
        }
    }

    /// Proposes the ISR changes this shard's leaders call for, one per
    /// partition at a time, until the shard stops.
    pub fn check_isrs(self: &Rc<Self>) {
        let m = self.clone();
        glommio::spawn_local(async move {
            while !m.env.stop.load(Ordering::Acquire) {
                glommio::timer::sleep(ISR_CHECK_INTERVAL).await;
                m.propose_isr_changes().await;
            }
        })
        .detach();
    }

    async fn propose_isr_changes(&self) {
        let now = sluice_engine::types::now_ms();
        let due: Vec<(TopicPartition, ReplicatedPartition, LeaderEpoch, IsrChange)> = self
            .replicas
            .borrow()
            .iter()
            .filter_map(|(tp, p)| {
                p.isr_change_due(now)
                    .map(|(epoch, change)| (tp.clone(), p.clone(), epoch, change))
            })
            .collect();
        for (tp, p, epoch, change) in due {
            let broker_epoch = self
                .image
                .load()
                .brokers
                .get(&self.broker_id)
                .map_or(0, |b| b.epoch);
            tracing::info!(partition = %tp, isr = ?change.isr, "proposing an ISR change");
            let command = Command::AlterPartition {
                topic: tp.topic.clone(),
                partition: tp.partition.0,
                broker: self.broker_id,
                broker_epoch,
                leader_epoch: epoch.0,
                partition_epoch: change.partition_epoch,
                isr: change.isr,
            };
            if let Err((code, message)) =
                crate::coordinator::propose(&self.settings.coordinators, command).await
            {
                tracing::warn!(partition = %tp, code, message, "ISR change refused");
                p.isr_refused();
            }
        }
    }

    /// Closes a partition and removes its files (its topic was deleted).
    pub async fn remove(&self, tp: &TopicPartition) -> Result<()> {
        if let Some(p) = self.replicas.borrow_mut().remove(tp) {
            p.step_down();
        }
        let Some(dir) = self.env.close(tp).await? else {
            return Ok(());
        };
        remove_dir(dir)
            .await
            .map_err(|e| EngineError::io("partition directory", e))
    }

    /// Follows the image until the shard stops: removes the partitions of
    /// deleted topics, creates those assigned to this broker and applies
    /// config changes to the open partitions.
    pub fn follow(self: &Rc<Self>) {
        let m = self.clone();
        glommio::spawn_local(async move { m.follow_loop().await }).detach();
    }

    async fn follow_loop(&self) {
        let mut seen = 0u64;
        let mut known: HashMap<String, [u8; 16]> = HashMap::new();
        let mut reported = HashSet::new();
        let mut created = HashMap::new();
        while !self.env.stop.load(Ordering::Acquire) {
            glommio::timer::sleep(FOLLOW_INTERVAL).await;
            let state = self.image.load_full();
            if state.last_applied == seen {
                continue;
            }
            seen = state.last_applied;
            for tp in self.reconcile(&state, &known, &mut reported) {
                if let Err(e) = self.remove(&tp).await {
                    tracing::warn!(partition = %tp, error = %e, "could not remove a deleted partition's files");
                }
            }
            self.create_assigned(&state, &mut created).await;
            self.apply_roles(&state);
            self.progress.shards[self.env.shard].store(seen, Ordering::Release);
            known = state
                .topics
                .values()
                .map(|t| (t.name.clone(), t.id))
                .collect();
        }
    }

    /// Creates, many at once, the partitions `state` assigns to this broker
    /// that this shard owns and has not open. `created` holds, per topic,
    /// its id and partition count when all of its partitions here were
    /// last found open, so an image that changes other things costs no pass
    /// over them.
    async fn create_assigned(
        &self,
        state: &MetadataState,
        created: &mut HashMap<String, ([u8; 16], usize)>,
    ) {
        created.retain(|name, (id, _)| state.topics.get(name).is_some_and(|t| t.id == *id));
        let mut new: Vec<NewPartition> = Vec::new();
        let mut topics = Vec::new();
        for t in state.topics.values() {
            if created.get(&t.name) == Some(&(t.id, t.partitions.len())) {
                continue;
            }
            topics.push((t.name.clone(), (t.id, t.partitions.len())));
            let mut config = None;
            for (i, p) in t.partitions.iter().enumerate() {
                if !p.replicas.contains(&self.broker_id) {
                    continue;
                }
                let tp = TopicPartition::new(&t.name, i as i32);
                if shard_of(&tp, self.env.shards) != self.env.shard || self.env.get(&tp).is_some() {
                    continue;
                }
                let config = config.get_or_insert_with(|| self.configs.get(state, &t.name));
                new.push(NewPartition {
                    tp,
                    config: config.clone(),
                    leader_epoch: Some(LeaderEpoch(p.leader_epoch)),
                });
            }
        }
        let count = new.len();
        let failed = if new.is_empty() {
            Vec::new()
        } else {
            self.env.create(new).await
        };
        if let Some((tp, e)) = failed.first() {
            tracing::warn!(failed = failed.len(), of = count, first = %tp, error = %e,
                "could not create partitions assigned to this broker; each is tried again at its first use");
        }
        let failed_topics: HashSet<&str> = failed.iter().map(|(tp, _)| tp.topic.as_str()).collect();
        for (name, done) in topics {
            if !failed_topics.contains(name.as_str()) {
                created.insert(name, done);
            }
        }
    }

    /// Applies `state` to the open partitions; returns those to remove.
    fn reconcile(
        &self,
        state: &MetadataState,
        known: &HashMap<String, [u8; 16]>,
        reported: &mut HashSet<TopicPartition>,
    ) -> Vec<TopicPartition> {
        let open: Vec<TopicPartition> = self.env.partitions.borrow().keys().cloned().collect();
        let mut gone = Vec::new();
        for tp in open {
            match state.topics.get(&tp.topic) {
                Some(t)
                    if (tp.partition.0 as usize) < t.partitions.len()
                        && known.get(&tp.topic).is_none_or(|id| *id == t.id) =>
                {
                    if let Some(p) = self.env.get(&tp) {
                        let want = self.configs.get(state, &tp.topic);
                        if p.config() != want {
                            p.set_config(want);
                        }
                    }
                }
                // Deleted (or deleted and created again under a new id).
                _ if known.contains_key(&tp.topic) => gone.push(tp),
                _ => {
                    if reported.insert(tp.clone()) {
                        tracing::warn!(partition = %tp, "on disk but not in the cluster metadata: kept, not served");
                    }
                }
            }
        }
        gone
    }
}

/// While `p` leads at `epoch` with followers: each time its own copy
/// becomes more durable, the high watermark may move.
fn watch_durable(tp: TopicPartition, p: ReplicatedPartition, epoch: LeaderEpoch) {
    glommio::spawn_local(async move {
        loop {
            let seen = p.log().watermarks().durable;
            // Something past `seen` is written (or the log failed or
            // closed), then it becomes durable.
            p.log().wait_log_end_above(seen).await;
            if p.leading() != Some(epoch) {
                return;
            }
            match p.log().wait_durable(seen).await {
                Ok(()) | Err(EngineError::Truncated) => {}
                Err(_) => return,
            }
            if p.leading() != Some(epoch) {
                return;
            }
            if let Err(e) = p.leader_durable() {
                tracing::warn!(partition = %tp, error = %e, "the high watermark cannot move");
                return;
            }
        }
    })
    .detach();
}

/// Removes a directory tree off the reactor thread.
async fn remove_dir(dir: PathBuf) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || std::fs::remove_dir_all(&dir))
        .await
}
