//! CreatePartitions, through the coordinator.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_replication::metadata::Command;

use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, CreatePartitions);
        let resp = handle(&ctx, r).await;
        req.reply.answer(ResponseKind::CreatePartitions(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let assignment: Vec<Vec<i32>> = t
            .assignments
            .unwrap_or_default()
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        let command = Command::CreatePartitions {
            name: name.clone(),
            count: t.count,
            assignment,
        };
        let result =
            if let Some(refusal) = super::internal_topic_refusal(&name, "add partitions to") {
                Err(refusal)
            } else if req.validate_only {
                ctx.image
                    .load()
                    .check(&command)
                    .map_err(|e| (e.code as i16, e.message))
            } else {
                let count = t.count as usize;
                match crate::admin::propose(&ctx.config, command).await {
                    Ok(_) => {
                        crate::admin::until_image(&ctx.image, |s| {
                            s.topics
                                .get(&name)
                                .is_some_and(|x| x.partitions.len() >= count)
                        })
                        .await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            };
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name;
        if let Err((code, message)) = result {
            r.error_code = code;
            r.error_message = Some(StrBytes::from_string(message));
        }
        resp.results.push(r);
    }
    resp
}
