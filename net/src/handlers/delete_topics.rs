//! DeleteTopics, through the metadata coordinator. Each shard removes the
//! partitions it owns once its metadata image no longer has the topic (see
//! the metadata follower in `lib.rs`).

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_replication::metadata::Command;

use super::topic_name;
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, DeleteTopics);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::DeleteTopics(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let mut names: Vec<String> = req.topic_names.iter().map(|n| n.0.to_string()).collect();
    let state = ctx.image.load_full();
    for t in &req.topics {
        match &t.name {
            Some(n) => names.push(n.0.to_string()),
            None => {
                let id = *t.topic_id.as_bytes();
                if let Some(topic) = state.topics.values().find(|x| x.id == id) {
                    names.push(topic.name.clone());
                }
            }
        }
    }
    let mut resp = DeleteTopicsResponse::default();
    for name in names {
        let mut r = DeletableTopicResult::default();
        r.name = Some(topic_name(&name));
        if version >= 6 {
            if let Some(t) = state.topics.get(&name) {
                r.topic_id = uuid::Uuid::from_bytes(t.id);
            }
        }
        let result = match super::internal_topic_refusal(&name, "delete") {
            Some(refusal) => Err(refusal),
            None => crate::admin::propose(&ctx.config, Command::DeleteTopic { name: name.clone() })
                .await
                .map(drop),
        };
        if let Err((code, message)) = result {
            r.error_code = code;
            if version >= 5 {
                r.error_message = Some(StrBytes::from_string(message));
            }
        }
        resp.responses.push(r);
    }
    resp
}
