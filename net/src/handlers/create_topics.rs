//! CreateTopics, through the metadata coordinator.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_replication::metadata::{Command, Outcome};

use super::topic_name;
use crate::Ctx;

/// A fresh topic id (not zero).
fn topic_id() -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut id = [0u8; 16];
    id[..16].copy_from_slice(&nanos.to_le_bytes());
    id[15] ^= (std::process::id() & 0xff) as u8 | 1;
    id
}

/// Creates one topic; waits until this broker's metadata image shows it.
/// Returns the Kafka error code and message, if refused.
pub async fn create(
    ctx: &Ctx,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    assignment: Vec<Vec<i32>>,
    configs: Vec<(String, String)>,
    validate_only: bool,
) -> Result<(i32, i16), (i16, String)> {
    // -1: this broker's static default, unless one is set cluster-wide.
    let (partitions, replication_factor) = {
        let state = ctx.image.load();
        let set = |k: &str| state.cluster_configs.contains_key(k);
        (
            match partitions {
                -1 if !set("num.partitions") => ctx.config.num_partitions,
                p => p,
            },
            match replication_factor {
                -1 if !set("default.replication.factor") => ctx.config.default_replication_factor,
                r => r,
            },
        )
    };
    let command = Command::CreateTopic {
        name: name.to_string(),
        id: topic_id(),
        partitions,
        replication_factor,
        assignment,
        configs,
    };
    if validate_only {
        let state = ctx.image.load_full();
        state
            .check(&command)
            .map_err(|e| (e.code as i16, e.message))?;
        return Ok((partitions, replication_factor));
    }
    let (count, rf) = match super::propose(ctx, command).await? {
        Outcome::TopicCreated {
            partitions,
            replication_factor,
            ..
        } => (partitions, replication_factor),
        other => return Err((-1, format!("unexpected outcome {other:?}"))),
    };
    if !super::until_image(ctx, |s| s.topics.contains_key(name)).await {
        return Err((
            ResponseError::RequestTimedOut.code(),
            "created, but not yet in this broker's metadata".into(),
        ));
    }
    Ok((count, rf))
}

pub async fn handle(ctx: &Ctx, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let assignment: Vec<Vec<i32>> = t
            .assignments
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        let configs = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let mut r = CreatableTopicResult::default();
        r.name = topic_name(&name);
        match create(
            ctx,
            &name,
            t.num_partitions,
            t.replication_factor,
            assignment,
            configs,
            req.validate_only,
        )
        .await
        {
            Ok((count, rf)) => {
                if version >= 5 {
                    r.num_partitions = count;
                    r.replication_factor = rf;
                }
                if version >= 7 {
                    if let Some(topic) = ctx.image.load().topics.get(&name) {
                        r.topic_id = uuid::Uuid::from_bytes(topic.id);
                    }
                }
            }
            Err((code, message)) => {
                r.error_code = code;
                r.error_message = Some(StrBytes::from_string(message));
            }
        }
        resp.topics.push(r);
    }
    resp
}
