//! DescribeLogDirs: each log directory of this broker with the size of the
//! partitions in it.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::TopicPartition;

use super::{engine_code, topic_name};
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, DescribeLogDirs);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::DescribeLogDirs(resp))
    })
}

/// On the partition's owner: its log directory and its size in bytes.
async fn size(ctx: Rc<Ctx>, tp: TopicPartition, (): ()) -> Result<(String, i64), i16> {
    let p = ctx
        .partitions
        .open(&tp)
        .await
        .map_err(|e| engine_code(&e))?;
    let log = p.log();
    let dir = log
        .dir()
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    Ok((dir, log.size_bytes() as i64))
}

async fn handle(
    ctx: &Rc<Ctx>,
    req: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    let state = ctx.image.load_full();
    let mut wanted = Vec::new();
    for (name, t) in &state.topics {
        let asked: Option<Vec<i32>> = match &req.topics {
            None => None,
            Some(list) => match list.iter().find(|x| x.topic.0.as_str() == name) {
                Some(x) => Some(x.partitions.clone()),
                None => continue,
            },
        };
        for p in 0..t.partitions.len() as i32 {
            let leads = t.partitions[p as usize]
                .replicas
                .contains(&ctx.config.broker_id);
            if leads && asked.as_ref().is_none_or(|a| a.contains(&p)) {
                wanted.push(TopicPartition::new(name.clone(), p));
            }
        }
    }
    let ops = wanted.iter().map(|tp| (tp.clone(), Ok(()))).collect();
    let replies = ctx.on_owners(ops, size).await;
    let dirs = &ctx.partitions.env().dirs;
    // dir → topic → partitions
    let mut by_dir: BTreeMap<String, BTreeMap<String, Vec<(i32, i64)>>> = BTreeMap::new();
    for d in dirs.iter() {
        by_dir.entry(d.path.display().to_string()).or_default();
    }
    for (tp, reply) in wanted.into_iter().zip(replies) {
        if let Ok((dir, size)) = reply {
            by_dir
                .entry(dir)
                .or_default()
                .entry(tp.topic)
                .or_default()
                .push((tp.partition.0, size));
        }
    }
    let mut resp = DescribeLogDirsResponse::default();
    for (dir, topics) in by_dir {
        let mut r = DescribeLogDirsResult::default();
        r.log_dir = StrBytes::from_string(dir.clone());
        let offline = dirs
            .iter()
            .any(|d| d.path.display().to_string() == dir && d.is_offline());
        if offline {
            r.error_code = ResponseError::KafkaStorageError.code();
        }
        if version >= 4 {
            r.total_bytes = -1;
            r.usable_bytes = -1;
        }
        for (name, parts) in topics {
            let mut t = DescribeLogDirsTopic::default();
            t.name = topic_name(&name);
            for (p, size) in parts {
                let mut dp = DescribeLogDirsPartition::default();
                dp.partition_index = p;
                dp.partition_size = size;
                t.partitions.push(dp);
            }
            r.topics.push(t);
        }
        resp.results.push(r);
    }
    resp
}
