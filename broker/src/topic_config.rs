//! Each topic's effective log config, computed once per metadata image.
//!
//! The layers, later ones winning (Kafka's precedence): the engine's
//! defaults, this broker's static settings (`server.properties`, flags),
//! cluster-wide dynamic broker defaults (both by Kafka's broker names,
//! `log.retention.ms` and friends), then the topic's own overrides.
//!
//! Invariant: a cached config belongs to the image it was computed from
//! (`last_applied`); a new image empties the cache.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use sluice_engine::config::LogConfig;
use sluice_replication::metadata::MetadataState;

/// A topic's effective config under `state`, given the broker's static
/// settings. Values that do not parse are skipped: the coordinator
/// validated every stored one, and a static one was reported at start.
pub fn effective(
    statics: &BTreeMap<String, String>,
    state: &MetadataState,
    topic: &str,
) -> LogConfig {
    let mut c = LogConfig::default();
    // One lookup over both layers, so that Kafka's precedence among a topic
    // key's synonyms (`log.retention.ms` over `.hours`) holds across them.
    let lookup = |k: &str| {
        state
            .cluster_configs
            .get(k)
            .or_else(|| statics.get(k))
            .map(String::as_str)
    };
    if let Err(e) = c.apply_broker_defaults(lookup) {
        tracing::debug!(error = %e, "a broker config does not apply");
    }
    if let Some(t) = state.topics.get(topic) {
        for (k, v) in &t.configs {
            if let Err(e) = c.set(k, v) {
                tracing::debug!(topic, error = %e, "a topic config does not apply");
            }
        }
    }
    c
}

/// The effective configs of the topics one shard asked for, per image.
pub struct TopicConfigs {
    statics: BTreeMap<String, String>,
    cache: RefCell<(u64, HashMap<String, LogConfig>)>,
}

impl TopicConfigs {
    pub fn new(statics: BTreeMap<String, String>) -> Self {
        Self {
            statics,
            cache: RefCell::new((0, HashMap::new())),
        }
    }

    /// This broker's static settings, by Kafka's names.
    pub fn statics(&self) -> &BTreeMap<String, String> {
        &self.statics
    }

    /// `topic`'s effective config under `state`.
    pub fn get(&self, state: &MetadataState, topic: &str) -> LogConfig {
        let mut cache = self.cache.borrow_mut();
        if cache.0 != state.last_applied {
            *cache = (state.last_applied, HashMap::new());
        }
        if let Some(c) = cache.1.get(topic) {
            return c.clone();
        }
        let c = effective(&self.statics, state, topic);
        // Only topics of the image are kept: the cache is bounded by them.
        if state.topics.contains_key(topic) {
            cache.1.insert(topic.to_string(), c.clone());
        }
        c
    }
}
