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
//! * closing and removing the partitions of deleted topics.
//!
//! Invariants: a partition is opened only on the shard that owns it
//! (`shard_of`); only a topic this shard has seen in an earlier image and
//! that is gone (or has a new topic id) now counts as deleted, so a
//! partition on disk that metadata has never named (an image that lags, a
//! directory copied in by hand) is kept, not served, and reported, never
//! removed. A shard reports an image as applied (`Progress`) only once it
//! has tried to create every partition that image assigns it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sluice_engine::partition::NewPartition;
use sluice_engine::shard::{shard_of, ShardEnv};
use sluice_engine::{EngineError, LeaderEpoch, Result, TopicPartition};
use sluice_replication::metadata::MetadataState;
use sluice_replication::raft::subscriber::Image;

use crate::replicated_partition::ReplicatedPartition;
use crate::topic_config::TopicConfigs;

/// How often a shard looks for a new metadata image: CreateTopics waits
/// for every shard to have seen the topic's image (a load of an `ArcSwap`
/// per look).
const FOLLOW_INTERVAL: Duration = Duration::from_millis(5);

/// How often a waiter looks at the shards' progress.
const WAIT_INTERVAL: Duration = Duration::from_millis(5);

/// One shard's partitions.
pub struct PartitionManager {
    env: Rc<ShardEnv>,
    image: Image,
    configs: TopicConfigs,
    /// This broker's id: partitions whose replicas name it are created here.
    broker_id: i32,
    progress: Arc<Progress>,
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
    pub fn new(env: Rc<ShardEnv>, image: Image, configs: TopicConfigs, broker_id: i32) -> Rc<Self> {
        let progress = progress(&image, Some(env.shards)).expect("made when missing");
        assert_eq!(progress.shards.len(), env.shards, "one broker per image");
        Rc::new(Self {
            env,
            image,
            configs,
            broker_id,
            progress,
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

    /// The partition, if this shard has it open.
    pub fn get(&self, tp: &TopicPartition) -> Option<ReplicatedPartition> {
        self.env.get(tp).map(ReplicatedPartition::new)
    }

    /// The partition, opened (or created) with its topic's config if it is
    /// not open yet. Must be called on its owning shard.
    pub async fn open(&self, tp: &TopicPartition) -> Result<ReplicatedPartition> {
        if let Some(p) = self.get(tp) {
            return Ok(p);
        }
        let config = self.config(&tp.topic);
        self.env
            .open(tp, config)
            .await
            .map(ReplicatedPartition::new)
    }

    /// Closes a partition and removes its files (its topic was deleted).
    pub async fn remove(&self, tp: &TopicPartition) -> Result<()> {
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

/// Removes a directory tree off the reactor thread.
async fn remove_dir(dir: PathBuf) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || std::fs::remove_dir_all(&dir))
        .await
}
