//! AlterConfigs (replaces a resource's overrides) and
//! IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT), both through
//! the coordinator, which validates the values.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use sluice_replication::metadata::{Command, ConfigOp, ConfigResource, MetadataState};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, AlterConfigs);
        let resp = handle(&ctx, r).await;
        req.reply.answer(ResponseKind::AlterConfigs(resp))
    })
}

pub(crate) fn serve_incremental(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, IncrementalAlterConfigs);
        let resp = handle_incremental(&ctx, r).await;
        req.reply
            .answer(ResponseKind::IncrementalAlterConfigs(resp))
    })
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn resource(
    kind: i8,
    name: &str,
    state: &MetadataState,
) -> Result<(ConfigResource, BTreeMap<String, String>), (i16, String)> {
    match kind {
        RESOURCE_TOPIC => state
            .topics
            .get(name)
            .map(|t| (ConfigResource::Topic(name.to_string()), t.configs.clone()))
            .ok_or((
                ResponseError::UnknownTopicOrPartition.code(),
                format!("topic {name} does not exist"),
            )),
        // Per-broker dynamic configs are kept cluster-wide for now.
        RESOURCE_BROKER => Ok((ConfigResource::Cluster, state.cluster_configs.clone())),
        other => Err((
            ResponseError::InvalidRequest.code(),
            format!("resource type {other} is not supported"),
        )),
    }
}

async fn apply(
    ctx: &Rc<Ctx>,
    resource: ConfigResource,
    ops: Vec<ConfigOp>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let command = Command::AlterConfigs { resource, ops };
    if validate_only {
        return ctx
            .image
            .load()
            .check(&command)
            .map_err(|e| (e.code as i16, e.message));
    }
    let before = ctx.image.load().last_applied;
    crate::admin::propose(&ctx.config, command).await?;
    crate::admin::until_image(&ctx.image, |s| s.last_applied > before).await;
    Ok(())
}

async fn handle(ctx: &Rc<Ctx>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let state = ctx.image.load_full();
    let mut resp = AlterConfigsResponse::default();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let result = async {
            let (res, current) = resource(r.resource_type, &name, &state)?;
            let given: BTreeMap<String, String> = r
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            let mut ops: Vec<ConfigOp> = current
                .keys()
                .filter(|k| !given.contains_key(*k))
                .map(|k| ConfigOp::Delete(k.clone()))
                .collect();
            ops.extend(given.into_iter().map(|(k, v)| ConfigOp::Set(k, v)));
            apply(ctx, res, ops, req.validate_only).await
        }
        .await;
        let mut out =
            kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default(
            );
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name;
        if let Err((code, message)) = result {
            out.error_code = code;
            out.error_message = Some(StrBytes::from_string(message));
        }
        resp.responses.push(out);
    }
    resp
}

async fn handle_incremental(
    ctx: &Rc<Ctx>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let state = ctx.image.load_full();
    let mut resp = IncrementalAlterConfigsResponse::default();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let result = async {
            let (res, current) = resource(r.resource_type, &name, &state)?;
            let mut ops = Vec::new();
            for c in &r.configs {
                let key = c.name.to_string();
                let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                let list = |v: &str| -> Vec<String> {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                };
                let mut items = list(current.get(&key).map_or("", String::as_str));
                ops.push(match c.config_operation {
                    OP_SET => ConfigOp::Set(key, value),
                    OP_DELETE => ConfigOp::Delete(key),
                    OP_APPEND => {
                        for v in list(&value) {
                            if !items.contains(&v) {
                                items.push(v);
                            }
                        }
                        ConfigOp::Set(key, items.join(","))
                    }
                    OP_SUBTRACT => {
                        let remove = list(&value);
                        items.retain(|i| !remove.contains(i));
                        ConfigOp::Set(key, items.join(","))
                    }
                    other => {
                        return Err((
                            ResponseError::InvalidRequest.code(),
                            format!("config operation {other} is not known"),
                        ))
                    }
                });
            }
            apply(ctx, res, ops, req.validate_only).await
        }
        .await;
        let mut out =
            kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name;
        if let Err((code, message)) = result {
            out.error_code = code;
            out.error_message = Some(StrBytes::from_string(message));
        }
        resp.responses.push(out);
    }
    resp
}
