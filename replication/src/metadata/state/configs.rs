//! Configs: topic-level overrides and the cluster-wide defaults for new
//! topics (IncrementalAlterConfigs).
//!
//! ## Invariants
//! * a topic's configs are topic-level Kafka names with values `LogConfig`
//!   accepts;
//! * the cluster configs are `num.partitions` and
//!   `default.replication.factor` (positive integers) and the broker-level
//!   `log.*` defaults `LogConfig` accepts;
//! * a change is validated whole, after all its operations: it applies
//!   completely or not at all.

use std::collections::BTreeMap;

use sluice_engine::config::LogConfig;

use super::{refuse, ConfigOp, ConfigResource, MetadataState, Outcome};
use crate::metadata::{ErrorCode, MetaError};

impl MetadataState {
    pub(super) fn int_config(&self, key: &str, default: i64) -> i64 {
        self.cluster_configs
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    pub(super) fn validate_configs(
        configs: &[(String, String)],
    ) -> Result<BTreeMap<String, String>, MetaError> {
        let mut log = LogConfig::default();
        let mut out = BTreeMap::new();
        for (k, v) in configs {
            log.set(k, v)
                .map_err(|e| MetaError::new(ErrorCode::InvalidConfig, e.to_string()))?;
            out.insert(k.clone(), v.clone());
        }
        Ok(out)
    }

    pub(super) fn alter_configs(
        &mut self,
        resource: &ConfigResource,
        ops: &[ConfigOp],
    ) -> Result<Outcome, MetaError> {
        let current = match resource {
            ConfigResource::Topic(name) => match self.topics.get(name) {
                Some(t) => t.configs.clone(),
                None => {
                    return refuse(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    )
                }
            },
            ConfigResource::Cluster => self.cluster_configs.clone(),
        };
        let mut next = current;
        for op in ops {
            match op {
                ConfigOp::Set(k, v) => {
                    next.insert(k.clone(), v.clone());
                }
                ConfigOp::Delete(k) => {
                    next.remove(k);
                }
            }
        }
        match resource {
            ConfigResource::Topic(name) => {
                let pairs: Vec<(String, String)> = next.clone().into_iter().collect();
                Self::validate_configs(&pairs)?;
                self.topics.get_mut(name).expect("checked").configs = next;
            }
            ConfigResource::Cluster => {
                for (k, v) in &next {
                    validate_cluster_config(k, v)?;
                }
                self.cluster_configs = next;
            }
        }
        Ok(Outcome::Done)
    }
}

/// Cluster-wide keys: the defaults for new topics.
fn validate_cluster_config(key: &str, value: &str) -> Result<(), MetaError> {
    let invalid = |why: &str| {
        Err(MetaError::new(
            ErrorCode::InvalidConfig,
            format!("{key}={value}: {why}"),
        ))
    };
    match key {
        "num.partitions" | "default.replication.factor" => match value.parse::<i32>() {
            Ok(v) if v >= 1 => Ok(()),
            _ => invalid("must be a positive integer"),
        },
        _ => {
            // log.retention.ms and friends: Kafka's broker-level names.
            match LogConfig::default().set_broker(key, value) {
                Ok(true) => Ok(()),
                Ok(false) => invalid("unknown cluster config"),
                Err(e) => Err(MetaError::new(ErrorCode::InvalidConfig, e.to_string())),
            }
        }
    }
}
