//! CreateTopics, through the metadata coordinator.

use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::topic_name;
use crate::admin::{create_topic, NewTopic};
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, CreateTopics);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::CreateTopics(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
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
        let topic = NewTopic {
            name: name.clone(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignment,
            configs,
        };
        match create_topic(&ctx.config, &ctx.image, topic, req.validate_only).await {
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
