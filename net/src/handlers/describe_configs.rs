//! DescribeConfigs: a topic's effective configuration, or the cluster-wide
//! broker defaults, with where each value comes from.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::config::LogConfig;
use sluice_replication::metadata::MetadataState;

use super::{log_config, UNKNOWN_TOPIC_OR_PARTITION};
use crate::Ctx;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_DEFAULT: i8 = 5;

/// Broker-level keys and their values: cluster overrides over defaults.
pub fn broker_configs(state: &MetadataState) -> Vec<(String, String, i8)> {
    let mut out = vec![
        (
            "num.partitions".to_string(),
            "1".to_string(),
            SOURCE_DEFAULT,
        ),
        (
            "default.replication.factor".to_string(),
            "1".to_string(),
            SOURCE_DEFAULT,
        ),
    ];
    for (k, v) in LogConfig::default().describe() {
        out.push((format!("log.{k}"), v, SOURCE_DEFAULT));
    }
    for (k, v, source) in &mut out {
        if let Some(o) = state.cluster_configs.get(k.as_str()) {
            *v = o.clone();
            *source = SOURCE_DYNAMIC_DEFAULT_BROKER;
        }
    }
    out
}

fn topic_configs(state: &MetadataState, topic: &str) -> Vec<(String, String, i8)> {
    let overrides = &state.topics[topic].configs;
    log_config(state, topic)
        .describe()
        .into_iter()
        .map(|(k, v)| {
            let source = if overrides.contains_key(k) {
                SOURCE_DYNAMIC_TOPIC
            } else if state.cluster_configs.contains_key(&format!("log.{k}")) {
                SOURCE_DYNAMIC_DEFAULT_BROKER
            } else {
                SOURCE_DEFAULT
            };
            (k.to_string(), v, source)
        })
        .collect()
}

pub async fn handle(ctx: &Ctx, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let state = ctx.image.load_full();
    let mut resp = DescribeConfigsResponse::default();
    for r in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name.clone();
        let name = r.resource_name.to_string();
        let configs = match r.resource_type {
            RESOURCE_TOPIC if state.topics.contains_key(&name) => {
                Some(topic_configs(&state, &name))
            }
            RESOURCE_TOPIC => {
                out.error_code = UNKNOWN_TOPIC_OR_PARTITION;
                out.error_message = Some(StrBytes::from_string(format!(
                    "topic {name} does not exist"
                )));
                None
            }
            RESOURCE_BROKER => Some(broker_configs(&state)),
            other => {
                out.error_code = super::INVALID_REQUEST;
                out.error_message = Some(StrBytes::from_string(format!(
                    "resource type {other} is not supported"
                )));
                None
            }
        };
        let wanted = r
            .configuration_keys
            .map(|k| k.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        for (k, v, source) in configs.unwrap_or_default() {
            if wanted.as_ref().is_some_and(|w| !w.contains(&k)) {
                continue;
            }
            let mut c = DescribeConfigsResourceResult::default();
            c.name = StrBytes::from_string(k);
            c.value = Some(StrBytes::from_string(v));
            c.config_source = source;
            out.configs.push(c);
        }
        resp.results.push(out);
    }
    resp
}
