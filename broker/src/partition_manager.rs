//! The partitions one shard holds, following the metadata image.
//!
//! One manager per shard. It owns:
//! * opening a partition on its shard (created in the emptiest online log
//!   dir if it does not exist yet) with its topic's effective config;
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
//! removed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_engine::shard::ShardEnv;
use sluice_engine::{EngineError, Result, TopicPartition};
use sluice_replication::metadata::MetadataState;
use sluice_replication::raft::subscriber::Image;

use crate::replicated_partition::ReplicatedPartition;
use crate::topic_config::TopicConfigs;

/// How often a shard looks for a new metadata image.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(20);

/// One shard's partitions.
pub struct PartitionManager {
    env: Rc<ShardEnv>,
    image: Image,
    configs: TopicConfigs,
}

impl PartitionManager {
    /// The shard's manager; call [`PartitionManager::follow`] to keep it
    /// following the image.
    pub fn new(env: Rc<ShardEnv>, image: Image, configs: TopicConfigs) -> Rc<Self> {
        Rc::new(Self {
            env,
            image,
            configs,
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

    /// Follows the image until the shard stops: applies config changes to
    /// the open partitions and removes the partitions of deleted topics.
    pub fn follow(self: &Rc<Self>) {
        let m = self.clone();
        glommio::spawn_local(async move { m.follow_loop().await }).detach();
    }

    async fn follow_loop(&self) {
        let mut seen = 0u64;
        let mut known: HashMap<String, [u8; 16]> = HashMap::new();
        let mut reported = HashSet::new();
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
            known = state
                .topics
                .values()
                .map(|t| (t.name.clone(), t.id))
                .collect();
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
