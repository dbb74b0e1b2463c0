//! Metadata: brokers, topics and partition leaders from the metadata image;
//! unknown topics are created when `auto.create.topics.enable` is on and
//! the client allows it.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_replication::metadata::{validate_topic_name, MetadataState};

use super::topic_name;
use crate::admin::{create_topic, NewTopic};
use crate::authz::{authorized_operations, Resource};
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, Metadata);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::Metadata(resp))
    })
}

fn describe(state: &MetadataState, name: &str, version: i16, ops: i32) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    if version >= 8 {
        t.topic_authorized_operations = ops;
    }
    t.name = Some(topic_name(name));
    let Some(topic) = state.topics.get(name) else {
        t.error_code = ResponseError::UnknownTopicOrPartition.code();
        return t;
    };
    if version >= 10 {
        t.topic_id = uuid::Uuid::from_bytes(topic.id);
    }
    t.is_internal = super::is_internal(name);
    t.partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = i as i32;
            mp.leader_id = BrokerId(p.leader);
            if version >= 7 {
                mp.leader_epoch = p.leader_epoch;
            }
            mp.replica_nodes = p.replicas.iter().map(|r| BrokerId(*r)).collect();
            mp.isr_nodes = p.isr.iter().map(|r| BrokerId(*r)).collect();
            if p.leader < 0 {
                mp.error_code = ResponseError::LeaderNotAvailable.code();
            }
            mp
        })
        .collect();
    t
}

async fn handle(ctx: &Rc<Ctx>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut state = ctx.image.load_full();
    let names: Vec<String> = match &req.topics {
        None => state.topics.keys().cloned().collect(),
        Some(list) => list
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect(),
    };
    let auto =
        req.topics.is_some() && req.allow_auto_topic_creation && ctx.config.auto_create_topics;
    let mut invalid = Vec::new();
    if auto {
        for name in &names {
            if state.topics.contains_key(name) {
                continue;
            }
            if validate_topic_name(name).is_err() {
                invalid.push(name.clone());
                continue;
            }
            // A concurrent creation by another client answers
            // TOPIC_ALREADY_EXISTS, which is as good.
            let topic = NewTopic {
                name: name.clone(),
                partitions: -1,
                replication_factor: -1,
                assignment: Vec::new(),
                configs: Vec::new(),
            };
            let _ = create_topic(&ctx.config, &ctx.image, topic, false).await;
        }
        state = ctx.image.load_full();
    }
    let mut resp = MetadataResponse::default();
    if version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(ctx.config.cluster_id.clone()));
    }
    resp.controller_id = BrokerId(ctx.config.broker_id);
    resp.brokers = state
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let e = b.client_endpoint()?;
            let mut mb = MetadataResponseBroker::default();
            mb.node_id = BrokerId(b.id);
            mb.host = StrBytes::from_string(e.host.clone());
            mb.port = i32::from(e.port);
            mb.rack = b.rack.clone().map(StrBytes::from_string);
            Some(mb)
        })
        .collect();
    // This broker is always listed, even before its registration reaches
    // the image: a client must never be told of a cluster without it.
    if !resp
        .brokers
        .iter()
        .any(|b| b.node_id.0 == ctx.config.broker_id)
    {
        let mut me = MetadataResponseBroker::default();
        me.node_id = BrokerId(ctx.config.broker_id);
        me.host = StrBytes::from_string(ctx.config.advertised.0.clone());
        me.port = i32::from(ctx.config.advertised.1);
        resp.brokers.push(me);
    }
    // KIP-430: authorized operations, if asked (cluster's up to v10).
    let asked = version >= 8 && req.include_topic_authorized_operations;
    let topic_ops = authorized_operations(Resource::Topic, asked);
    if (8..=10).contains(&version) {
        let asked = req.include_cluster_authorized_operations;
        resp.cluster_authorized_operations = authorized_operations(Resource::Cluster, asked);
    }
    resp.topics = names
        .iter()
        .map(|n| {
            let mut t = describe(&state, n, version, topic_ops);
            if invalid.contains(n) {
                t.error_code = ResponseError::InvalidTopicException.code();
            }
            t
        })
        .collect();
    resp
}
