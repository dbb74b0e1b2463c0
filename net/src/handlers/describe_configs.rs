//! DescribeConfigs: a topic's effective configuration, a broker's, or the
//! cluster-wide broker defaults, with where each value comes from and its
//! synonyms, as Kafka answers (`ConfigHelper`):
//! * a topic lists every topic config; a value's synonyms are the topic's
//!   own override, then its broker-level synonyms layer by layer (dynamic
//!   cluster default, static, default), and its source is the first
//!   synonym's (DEFAULT_CONFIG when none);
//! * a broker (by its id) lists every broker config Sluice knows, the same
//!   way; the empty name (the cluster default) lists the cluster-wide
//!   dynamic configs set;
//! * as Kafka does, synonyms before the first one named like the broker key
//!   itself are dropped (`retention.ms` shows no synonym until
//!   `log.retention.ms` is set anywhere).
//!
//! Per-broker dynamic configs are stored cluster-wide (see
//! `alter_configs`), so DYNAMIC_BROKER_CONFIG is never a source here.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::topic_config::effective;
use sluice_engine::config::{broker_key, synonyms_of, ConfigType, BROKER_KEYS, TOPIC_KEYS};
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
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// What DescribeConfigs v3+ documents of a config Sluice does not act on.
const NOT_IN_EFFECT: &str =
    "Accepted, validated and stored as Kafka does; Sluice does not act on it yet (docs/configs.md).";

/// One described config.
struct Entry {
    name: String,
    value: Option<String>,
    source: i8,
    synonyms: Vec<(String, String, i8)>,
    read_only: bool,
    ty: ConfigType,
    in_effect: bool,
}

/// Kafka's `DynamicBrokerConfig.brokerConfigSynonyms`: the broker keys that
/// give one value in different units, in precedence order.
fn broker_synonyms(name: &str) -> Vec<&str> {
    const ROLL: &[&str] = &["log.roll.ms", "log.roll.hours"];
    const JITTER: &[&str] = &["log.roll.jitter.ms", "log.roll.jitter.hours"];
    const FLUSH: &[&str] = &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"];
    const RETENTION: &[&str] = &[
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
    ];
    [ROLL, JITTER, FLUSH, RETENTION]
        .into_iter()
        .find(|s| s.contains(&name))
        .map_or_else(|| vec![name], |s| s.to_vec())
}

/// Kafka's `configSynonyms`: the values `names` have in each layer, layer by
/// layer, without those before the first named `name`.
fn config_synonyms(
    name: &str,
    names: &[&str],
    statics: &Statics,
    state: &MetadataState,
) -> Vec<(String, String, i8)> {
    let mut all = Vec::new();
    for source in [
        SOURCE_DYNAMIC_DEFAULT_BROKER,
        SOURCE_STATIC_BROKER,
        SOURCE_DEFAULT,
    ] {
        for n in names {
            let value = match source {
                SOURCE_DYNAMIC_DEFAULT_BROKER => state.cluster_configs.get(*n).cloned(),
                SOURCE_STATIC_BROKER => statics.get(*n).cloned(),
                _ => broker_key(n).and_then(|k| k.default).map(str::to_string),
            };
            if let Some(v) = value {
                all.push((n.to_string(), v, source));
            }
        }
    }
    let first = all.iter().position(|s| s.0 == name).unwrap_or(all.len());
    all.split_off(first)
}

fn topic_configs(statics: &Statics, state: &MetadataState, topic: &str) -> Vec<Entry> {
    let overrides = &state.topics[topic].configs;
    let config = effective(statics, state, topic);
    TOPIC_KEYS
        .iter()
        .map(|k| {
            let value = config.value_of(k.name);
            let mut synonyms = Vec::new();
            if overrides.contains_key(k.name) {
                let v = value.clone().unwrap_or_default();
                synonyms.push((k.name.to_string(), v, SOURCE_TOPIC));
            }
            if let Some(first) = synonyms_of(k.name).next() {
                let names = broker_synonyms(first.name);
                synonyms.extend(config_synonyms(first.name, &names, statics, state));
            }
            Entry {
                name: k.name.to_string(),
                value,
                source: synonyms.first().map_or(SOURCE_DEFAULT, |s| s.2),
                synonyms,
                read_only: false,
                ty: k.ty,
                in_effect: k.in_effect,
            }
        })
        .collect()
}

/// Broker keys and their values: every key Sluice knows for this broker
/// (`per_broker`), or only the cluster-wide dynamic ones.
fn broker_configs(statics: &Statics, state: &MetadataState, per_broker: bool) -> Vec<Entry> {
    BROKER_KEYS
        .iter()
        .filter(|k| per_broker || state.cluster_configs.contains_key(k.name))
        .map(|k| {
            let synonyms: Vec<_> =
                config_synonyms(k.name, &broker_synonyms(k.name), statics, state)
                    .into_iter()
                    .filter(|s| per_broker || s.2 == SOURCE_DYNAMIC_DEFAULT_BROKER)
                    .collect();
            let value = state
                .cluster_configs
                .get(k.name)
                .or_else(|| statics.get(k.name))
                .cloned()
                .or_else(|| k.default.map(str::to_string));
            Entry {
                name: k.name.to_string(),
                value,
                source: synonyms.first().map_or(SOURCE_DEFAULT, |s| s.2),
                synonyms,
                read_only: !k.dynamic,
                ty: k.ty,
                in_effect: k.acts(),
            }
        })
        .collect()
}

/// A resource's entries, or the error it is answered with.
fn entries(
    ctx: &Ctx,
    state: &MetadataState,
    kind: i8,
    name: &str,
) -> Result<Vec<Entry>, (i16, String)> {
    let statics = &ctx.config.static_configs;
    match kind {
        RESOURCE_TOPIC if state.topics.contains_key(name) => {
            Ok(topic_configs(statics, state, name))
        }
        RESOURCE_TOPIC => Err((
            ResponseError::UnknownTopicOrPartition.code(),
            format!("topic {name} does not exist"),
        )),
        RESOURCE_BROKER if name.is_empty() => Ok(broker_configs(statics, state, false)),
        RESOURCE_BROKER if name.parse() == Ok(ctx.config.broker_id) => {
            Ok(broker_configs(statics, state, true))
        }
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest.code(),
            format!(
                "unexpected broker id, expected {} or empty string, but received {name}",
                ctx.config.broker_id
            ),
        )),
        other => Err((
            ResponseError::InvalidRequest.code(),
            format!("resource type {other} is not supported"),
        )),
    }
}

fn encode(e: Entry, req: &DescribeConfigsRequest) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = StrBytes::from_string(e.name);
    c.value = e.value.map(StrBytes::from_string);
    c.config_source = e.source;
    c.read_only = e.read_only;
    c.config_type = e.ty.kafka_id();
    if req.include_synonyms {
        c.synonyms = e
            .synonyms
            .into_iter()
            .map(|(name, value, source)| {
                let mut s = DescribeConfigsSynonym::default();
                s.name = StrBytes::from_string(name);
                s.value = Some(StrBytes::from_string(value));
                s.source = source;
                s
            })
            .collect();
    }
    if req.include_documentation && !e.in_effect {
        c.documentation = Some(StrBytes::from_static_str(NOT_IN_EFFECT));
    }
    c
}

async fn handle(ctx: &Rc<Ctx>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let state = ctx.image.load_full();
    let mut resp = DescribeConfigsResponse::default();
    for r in &req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name.clone();
        let wanted = r.configuration_keys.as_ref();
        match entries(ctx, &state, r.resource_type, &r.resource_name) {
            Ok(configs) => {
                out.configs = configs
                    .into_iter()
                    .filter(|e| wanted.is_none_or(|w| w.iter().any(|k| **k == *e.name)))
                    .map(|e| encode(e, &req))
                    .collect();
            }
            Err((code, message)) => {
                out.error_code = code;
                out.error_message = Some(StrBytes::from_string(message));
            }
        }
        resp.results.push(out);
    }
    resp
}
