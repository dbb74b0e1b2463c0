//! FindCoordinator: the broker leading a group's `__consumer_offsets`
//! partition (created on first need, as Kafka does). v4+ batches keys
//! (KIP-699). Transaction coordinators are not served yet: they are
//! refused with a fatal error (see `handlers::refuse_transactions`).

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::{group_service, refuse_transactions, TRANSACTIONS_UNSUPPORTED};
use crate::ctx::Ctx;
use crate::groups::{partition_for, OFFSETS_TOPIC};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, FindCoordinator);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::FindCoordinator(resp))
    })
}

/// Key type of a consumer group.
const GROUP: i8 = 0;
/// Key type of a transactional id.
const TRANSACTION: i8 = 1;

/// (error, node, host, port) for one key.
async fn find(ctx: &Rc<Ctx>, key: &str, key_type: i8) -> (i16, i32, String, i32) {
    let none = |code| (code, -1, String::new(), -1);
    match key_type {
        GROUP if !key.is_empty() => {}
        TRANSACTION => return none(refuse_transactions("FindCoordinator", key)),
        _ => return none(ResponseError::InvalidRequest.code()),
    }
    let count = match group_service::offsets_partitions(ctx).await {
        Ok(n) => n,
        Err(code) => return none(code),
    };
    let p = partition_for(key, count);
    let state = ctx.image.load();
    let Some(leader) = state
        .topics
        .get(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(p as usize))
        .map(|part| part.leader)
    else {
        return none(ResponseError::CoordinatorNotAvailable.code());
    };
    if leader == ctx.config.broker_id {
        let (host, port) = &ctx.config.advertised;
        return (0, leader, host.clone(), i32::from(*port));
    }
    match state.brokers.get(&leader).and_then(|b| b.client_endpoint()) {
        Some(e) => (0, leader, e.host.clone(), i32::from(e.port)),
        None => none(ResponseError::CoordinatorNotAvailable.code()),
    }
}

/// The message of a refused transaction coordinator, the only error here
/// that needs words.
fn message(error: i16) -> Option<StrBytes> {
    (error == ResponseError::TransactionalIdAuthorizationFailed.code())
        .then(|| StrBytes::from_static_str(TRANSACTIONS_UNSUPPORTED))
}

async fn handle(
    ctx: &Rc<Ctx>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in &req.coordinator_keys {
            let (error, node, host, port) = find(ctx, key, req.key_type).await;
            let mut c = Coordinator::default();
            c.key = key.clone();
            c.error_code = error;
            c.error_message = message(error);
            c.node_id = BrokerId(node);
            c.host = StrBytes::from_string(host);
            c.port = port;
            resp.coordinators.push(c);
        }
        return resp;
    }
    let key_type = if version >= 1 { req.key_type } else { GROUP };
    let (error, node, host, port) = find(ctx, &req.key, key_type).await;
    resp.error_code = error;
    if version >= 1 {
        resp.error_message = message(error);
    }
    resp.node_id = BrokerId(node);
    resp.host = StrBytes::from_string(host);
    resp.port = port;
    resp
}
