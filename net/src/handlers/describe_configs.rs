//! DescribeConfigs: a topic's effective configuration, or the cluster-wide
//! broker defaults, with where each value comes from.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::topic_config::effective;
use sluice_engine::config::LogConfig;
use sluice_replication::metadata::MetadataState;

use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, DescribeConfigs);
        let resp = handle(&ctx, r).await;
        req.reply.answer(ResponseKind::DescribeConfigs(resp))
    })
}

/// This broker's static settings, by Kafka's names.
type Statics = std::collections::BTreeMap<String, String>;

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Where a broker-level key's value comes from: cluster-wide dynamic, then
/// this broker's static settings.
fn broker_source(statics: &Statics, state: &MetadataState, key: &str) -> Option<(String, i8)> {
    state
        .cluster_configs
        .get(key)
        .map(|v| (v.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER))
        .or_else(|| statics.get(key).map(|v| (v.clone(), SOURCE_STATIC_BROKER)))
}

/// Broker-level keys (Kafka's names) and their values.
fn broker_configs(statics: &Statics, state: &MetadataState) -> Vec<(String, String, i8)> {
    let defaults: std::collections::HashMap<&str, String> =
        LogConfig::default().describe().into_iter().collect();
    let mut out = vec![
        ("num.partitions".to_string(), "1".to_string()),
        ("default.replication.factor".to_string(), "1".to_string()),
        (
            sluice_engine::config::PRODUCER_ID_EXPIRATION_MS.to_string(),
            LogConfig::default().producer_id_expiration_ms.to_string(),
        ),
    ];
    for (key, topic_key, factor) in sluice_engine::config::BROKER_SYNONYMS {
        let v = &defaults[topic_key];
        let v = match (factor, v.parse::<i64>()) {
            (2.., Ok(n)) if n >= 0 => (n / factor).to_string(),
            _ => v.clone(),
        };
        out.push((key.to_string(), v));
    }
    out.into_iter()
        .map(|(k, v)| {
            let (v, source) = broker_source(statics, state, &k).unwrap_or((v, SOURCE_DEFAULT));
            (k, v, source)
        })
        .collect()
}

fn topic_configs(
    statics: &Statics,
    state: &MetadataState,
    topic: &str,
) -> Vec<(String, String, i8)> {
    let overrides = &state.topics[topic].configs;
    effective(statics, state, topic)
        .describe()
        .into_iter()
        .map(|(k, v)| {
            let broker = sluice_engine::config::BROKER_SYNONYMS
                .iter()
                .filter(|s| s.1 == k)
                .filter_map(|s| broker_source(statics, state, s.0).map(|b| b.1))
                .min();
            let source = if overrides.contains_key(k) {
                SOURCE_DYNAMIC_TOPIC
            } else {
                broker.unwrap_or(SOURCE_DEFAULT)
            };
            (k.to_string(), v, source)
        })
        .collect()
}

async fn handle(ctx: &Rc<Ctx>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let state = ctx.image.load_full();
    let statics = &ctx.config.static_configs;
    let mut resp = DescribeConfigsResponse::default();
    for r in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name.clone();
        let name = r.resource_name.to_string();
        let configs = match r.resource_type {
            RESOURCE_TOPIC if state.topics.contains_key(&name) => {
                Some(topic_configs(statics, &state, &name))
            }
            RESOURCE_TOPIC => {
                out.error_code = ResponseError::UnknownTopicOrPartition.code();
                out.error_message = Some(StrBytes::from_string(format!(
                    "topic {name} does not exist"
                )));
                None
            }
            RESOURCE_BROKER => Some(broker_configs(statics, &state)),
            other => {
                out.error_code = ResponseError::InvalidRequest.code();
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
