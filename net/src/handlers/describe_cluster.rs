//! DescribeCluster: the live brokers and the cluster id.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use crate::authz::{authorized_operations, Resource};
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, DescribeCluster);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::DescribeCluster(resp))
    })
}

async fn handle(
    ctx: &Rc<Ctx>,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let state = ctx.image.load_full();
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = StrBytes::from_string(ctx.config.cluster_id.clone());
    resp.controller_id = BrokerId(ctx.config.broker_id);
    resp.cluster_authorized_operations =
        authorized_operations(Resource::Cluster, req.include_cluster_authorized_operations);
    for b in state.brokers.values() {
        if b.fenced && version < 2 {
            continue;
        }
        let Some(e) = b.client_endpoint() else {
            continue;
        };
        let mut d = DescribeClusterBroker::default();
        d.broker_id = BrokerId(b.id);
        d.host = StrBytes::from_string(e.host.clone());
        d.port = i32::from(e.port);
        d.rack = b.rack.clone().map(StrBytes::from_string);
        if version >= 2 {
            d.is_fenced = b.fenced;
        }
        resp.brokers.push(d);
    }
    resp
}
