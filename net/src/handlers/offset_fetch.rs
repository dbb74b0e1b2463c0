//! OffsetFetch: a group's committed offsets; v8+ batches groups. An
//! offset never committed is -1 with no error, as in Kafka.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::group_service;
use super::topic_name;
use crate::ctx::Ctx;
use crate::groups::state::Committed;
use crate::groups::{Op, Reply};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, OffsetFetch);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::OffsetFetch(resp))
    })
}

/// (topic, partition, committed offset if any).
type Offsets = Vec<(String, i32, Option<Committed>)>;
type Fetched = Result<Offsets, i16>;
/// A topic's (partition, committed offset) pairs.
type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);
/// A group and the partitions asked for (`None`: all).
type Asked = (String, Option<Vec<(String, i32)>>);

/// One group's offsets, in request order, grouped by topic.
fn by_topic(offsets: Offsets) -> Vec<TopicOffsets> {
    let mut out: Vec<TopicOffsets> = Vec::new();
    for (topic, partition, c) in offsets {
        match out.last_mut() {
            Some((t, ps)) if *t == topic => ps.push((partition, c)),
            _ => out.push((topic, vec![(partition, c)])),
        }
    }
    out
}

/// (offset, leader epoch, metadata) as the response carries them.
fn fields(c: Option<Committed>) -> (i64, i32, Option<StrBytes>) {
    match c {
        Some(c) => (
            c.offset,
            c.leader_epoch,
            Some(StrBytes::from_string(c.metadata)),
        ),
        None => (-1, -1, Some(StrBytes::from_static_str(""))),
    }
}

async fn fetch(ctx: &Rc<Ctx>, groups: Vec<Asked>) -> Vec<Fetched> {
    let ops = groups
        .into_iter()
        .map(|(group, partitions)| Op::Fetch { group, partitions })
        .collect();
    group_service::run_groups(ctx, ops)
        .await
        .into_iter()
        .map(|r| match r {
            Reply::Fetch(offsets) => Ok(offsets),
            Reply::Error(code) => Err(code),
            _ => Err(ResponseError::UnknownServerError.code()),
        })
        .collect()
}

async fn handle(ctx: &Rc<Ctx>, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        let asked: Vec<Asked> = req
            .groups
            .iter()
            .map(|g| {
                let partitions = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
                        .collect()
                });
                (g.group_id.to_string(), partitions)
            })
            .collect();
        let names: Vec<String> = asked.iter().map(|(g, _)| g.clone()).collect();
        for (group, fetched) in names.into_iter().zip(fetch(ctx, asked).await) {
            let mut rg = OffsetFetchResponseGroup::default();
            rg.group_id = StrBytes::from_string(group).into();
            match fetched {
                Err(code) => rg.error_code = code,
                Ok(offsets) => {
                    for (topic, parts) in by_topic(offsets) {
                        let mut rt = OffsetFetchResponseTopics::default();
                        rt.name = topic_name(&topic);
                        for (partition, c) in parts {
                            let mut rp = OffsetFetchResponsePartitions::default();
                            rp.partition_index = partition;
                            (rp.committed_offset, rp.committed_leader_epoch, rp.metadata) =
                                fields(c);
                            rt.partitions.push(rp);
                        }
                        rg.topics.push(rt);
                    }
                }
            }
            resp.groups.push(rg);
        }
        return resp;
    }
    let partitions: Option<Vec<(String, i32)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
            .collect()
    });
    let asked = partitions.clone().unwrap_or_default();
    let fetched = fetch(ctx, vec![(req.group_id.to_string(), partitions)])
        .await
        .pop()
        .unwrap_or(Err(ResponseError::UnknownServerError.code()));
    let (error, offsets) = match fetched {
        Ok(o) => (0, o),
        // v1 has no top-level error: each partition carries it.
        Err(code) => (code, asked.into_iter().map(|(t, p)| (t, p, None)).collect()),
    };
    if version >= 2 {
        resp.error_code = error;
    }
    for (topic, parts) in by_topic(offsets) {
        let mut rt = OffsetFetchResponseTopic::default();
        rt.name = topic_name(&topic);
        for (partition, c) in parts {
            let mut rp = OffsetFetchResponsePartition::default();
            rp.partition_index = partition;
            let (offset, epoch, metadata) = fields(c);
            rp.committed_offset = offset;
            if version >= 5 {
                rp.committed_leader_epoch = epoch;
            }
            rp.metadata = metadata;
            rp.error_code = error;
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    resp
}
