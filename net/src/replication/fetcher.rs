//! The follower's side of the replication protocol: on every shard, one
//! fetcher per leader broker this shard follows partitions of, each with
//! one connection carrying all those partitions.
//!
//! A fetcher's loop:
//! 1. connects to the leader's replication listener (its address from the
//!    metadata image) and says [`Hello`];
//! 2. for partitions that just started following a new leader, asks where
//!    their last epoch ends in the leader's log ([`EpochEnds`],
//!    OffsetForLeaderEpoch) and truncates exactly the divergent suffix
//!    (`ReplicatedPartition::reconcile`), until the answers agree;
//! 3. fetches from each partition's log end, long-polling when caught up;
//!    appends what comes back with the leader's offsets (the engine checks
//!    every batch), takes the leader's high watermark up to its own log end,
//!    and waits until what it appended is durable before the next fetch, so
//!    that the durable position it reports lets the leader's high watermark
//!    move at once.
//!
//! On an error the connection is dropped and the fetcher starts again
//! after `replica.fetch.backoff.ms`; a partition whose leader changed is
//! left to the next loop, which takes the partitions from the image anew.
//! A fetcher ends when this shard follows nothing of its leader any more.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use sluice_broker::replicated_partition::ReplicatedPartition;
use sluice_broker::roles::{FetchPosition, LeaderView};
use sluice_engine::{Offset, TopicPartition};
use sluice_replication::metadata::REPLICATION_LISTENER;

use super::protocol::{
    self, EpochEndPartition, EpochEnds, EpochEndsAnswer, Fetch, FetchPartition, Fetched, Hello,
    Kind, PartitionKey, Welcome,
};
use super::server::read_frame;
use crate::ctx::Ctx;

/// How often a shard looks for leaders it needs a fetcher for.
const SCAN_INTERVAL: Duration = Duration::from_millis(50);
/// `replica.fetch.backoff.ms`.
const BACKOFF: Duration = Duration::from_millis(1000);
/// `replica.fetch.wait.max.ms`.
const WAIT_MS: u32 = 500;
/// `replica.fetch.max.bytes`, per partition.
const PARTITION_BYTES_MAX: u32 = 1 << 20;
/// `replica.fetch.response.max.bytes`.
const RESPONSE_BYTES_MAX: u32 = 10 << 20;
/// The longest the leader may take to answer beyond the long poll.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Keeps one fetcher running per leader this shard follows partitions of.
pub(crate) async fn run(ctx: Rc<Ctx>) {
    let running: Rc<std::cell::RefCell<HashSet<i32>>> = Rc::default();
    let stop = ctx.partitions.env().stop.clone();
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        glommio::timer::sleep(SCAN_INTERVAL).await;
        let leaders: HashSet<i32> = ctx
            .partitions
            .followed()
            .into_iter()
            .map(|(_, p)| p.leader)
            .collect();
        for leader in leaders {
            if !running.borrow_mut().insert(leader) {
                continue;
            }
            let (ctx, running) = (ctx.clone(), running.clone());
            glommio::spawn_local(async move {
                fetcher(&ctx, leader).await;
                running.borrow_mut().remove(&leader);
            })
            .detach();
        }
    }
}

/// The partitions this shard follows from `leader`, with where each is.
fn partitions_of(
    ctx: &Ctx,
    leader: i32,
) -> Vec<(TopicPartition, ReplicatedPartition, FetchPosition, [u8; 16])> {
    let state = ctx.image.load();
    ctx.partitions
        .followed()
        .into_iter()
        .filter(|(_, pos)| pos.leader == leader)
        .filter_map(|(tp, pos)| {
            let id = state.topics.get(&tp.topic)?.id;
            let p = ctx.partitions.get(&tp)?;
            Some((tp, p, pos, id))
        })
        .collect()
}

fn key(tp: &TopicPartition, topic_id: [u8; 16]) -> PartitionKey {
    PartitionKey {
        topic_id,
        topic: tp.topic.clone(),
        partition: tp.partition.0,
    }
}

/// Fetches from `leader` until this shard follows nothing of it.
async fn fetcher(ctx: &Rc<Ctx>, leader: i32) {
    loop {
        if partitions_of(ctx, leader).is_empty() {
            return;
        }
        match session(ctx, leader).await {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(leader, error = %e, "replica fetcher: starting over");
                glommio::timer::sleep(BACKOFF).await;
            }
        }
    }
}

fn bad(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// The leader's replication address, from the image.
fn address(ctx: &Ctx, leader: i32) -> std::io::Result<SocketAddr> {
    let state = ctx.image.load();
    let e = state
        .brokers
        .get(&leader)
        .and_then(|b| b.endpoint(REPLICATION_LISTENER))
        .ok_or_else(|| bad(format!("broker {leader} has no replication listener")))?;
    std::net::ToSocketAddrs::to_socket_addrs(&(e.host.as_str(), e.port))?
        .next()
        .ok_or_else(|| {
            bad(format!(
                "broker {leader}'s {}:{} does not resolve",
                e.host, e.port
            ))
        })
}

/// One connection's life: hello, then reconcile and fetch until this shard
/// follows nothing of `leader` (`Ok`) or something fails (`Err`).
async fn session(ctx: &Rc<Ctx>, leader: i32) -> std::io::Result<()> {
    let addr = address(ctx, leader)?;
    let mut conn = Conn::connect(ctx, addr).await?;
    loop {
        let parts = partitions_of(ctx, leader);
        if parts.is_empty() {
            return Ok(());
        }
        let unreconciled: Vec<_> = parts.iter().filter(|p| !p.2.reconciled).collect();
        if !unreconciled.is_empty() {
            reconcile(ctx, &mut conn, &unreconciled).await?;
            continue;
        }
        fetch(ctx, &mut conn, &parts).await?;
    }
}

/// A connection to a leader, after the hello.
struct Conn {
    stream: TcpStream,
    version: u16,
    correlation: u32,
}

impl Conn {
    async fn connect(ctx: &Ctx, addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = crate::connection::within(
            Duration::from_secs(10),
            "connecting to the leader timed out",
            async {
                TcpStream::connect(addr)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))
            },
        )
        .await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            version: protocol::VERSION_MIN,
            correlation: 0,
        };
        let epoch = ctx
            .image
            .load()
            .brokers
            .get(&ctx.config.broker_id)
            .map_or(0, |b| b.epoch);
        let hello = Hello {
            broker_id: ctx.config.broker_id,
            broker_epoch: epoch,
            cluster_id: ctx.config.cluster_id.clone(),
            version_min: protocol::VERSION_MIN,
            version_max: protocol::VERSION_MAX,
        };
        let (kind, meta, _) = conn.ask(Kind::Hello, &hello).await?;
        match kind {
            Kind::Welcome => {
                let w: Welcome = protocol::decode(kind, &meta).map_err(bad)?;
                conn.version = w.version;
                Ok(conn)
            }
            Kind::Refused => {
                let r: protocol::Refused = protocol::decode(kind, &meta).map_err(bad)?;
                Err(bad(format!("the leader refused: {}", r.message)))
            }
            other => Err(bad(format!("the leader answered a hello with {other:?}"))),
        }
    }

    /// Sends a request and reads its answer: kind, message and records.
    async fn ask<T>(&mut self, kind: Kind, message: &T) -> std::io::Result<(Kind, Bytes, Bytes)>
    where
        T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                rkyv::util::AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                rkyv::rancor::Error,
            >,
        >,
    {
        self.correlation = self.correlation.wrapping_add(1);
        let frame = protocol::encode(self.version, kind, self.correlation, message, 0);
        self.stream.write_all(&frame).await?;
        let versions = self.version..=self.version;
        let read = read_frame(&mut self.stream, versions);
        let answer = crate::connection::within(ANSWER_TIMEOUT, "the leader did not answer", read)
            .await?
            .ok_or_else(|| bad("the leader closed the connection"))?;
        let (h, meta, records) = answer;
        if h.correlation != self.correlation {
            return Err(bad(format!(
                "answer {} to request {}",
                h.correlation, self.correlation
            )));
        }
        Ok((h.kind, meta, records))
    }
}

type Followed = (TopicPartition, ReplicatedPartition, FetchPosition, [u8; 16]);

/// One round of OffsetForLeaderEpoch for partitions new to this leader:
/// each truncates its divergent suffix, or asks again next round.
async fn reconcile(ctx: &Ctx, conn: &mut Conn, parts: &[&Followed]) -> std::io::Result<()> {
    let asked = EpochEnds {
        replica_id: ctx.config.broker_id,
        partitions: parts
            .iter()
            .map(|(tp, _, pos, id)| EpochEndPartition {
                key: key(tp, *id),
                current_leader_epoch: pos.leader_epoch.0,
                leader_epoch: pos.last_epoch.0,
            })
            .collect(),
    };
    let (kind, meta, _) = conn.ask(Kind::EpochEnds, &asked).await?;
    if kind != Kind::EpochEndsAnswer {
        return Err(bad(format!("expected EpochEndsAnswer, got {kind:?}")));
    }
    let answer: EpochEndsAnswer = protocol::decode(kind, &meta).map_err(bad)?;
    let by_key: HashMap<(String, i32), &protocol::EpochEnd> = answer
        .partitions
        .iter()
        .map(|e| ((e.key.topic.clone(), e.key.partition), e))
        .collect();
    for (tp, p, pos, _) in parts {
        let Some(e) = by_key.get(&(tp.topic.clone(), tp.partition.0)) else {
            continue;
        };
        if e.error != 0 {
            // A leader that has not caught up with the metadata yet, or is
            // no longer the leader: the next round asks again.
            tracing::debug!(partition = %tp, error = e.error, "epoch end refused");
            continue;
        }
        let leader_epoch = sluice_engine::LeaderEpoch(e.leader_epoch);
        if let Err(e) = p
            .reconcile(pos.leader_epoch, leader_epoch, Offset(e.end_offset))
            .await
        {
            return Err(bad(format!("{tp}: {e}")));
        }
    }
    Ok(())
}

/// One fetch of every partition, its records appended.
async fn fetch(ctx: &Ctx, conn: &mut Conn, parts: &[Followed]) -> std::io::Result<()> {
    let request = Fetch {
        replica_id: ctx.config.broker_id,
        replica_epoch: ctx
            .image
            .load()
            .brokers
            .get(&ctx.config.broker_id)
            .map_or(0, |b| b.epoch),
        max_wait_ms: WAIT_MS,
        min_bytes: 1,
        max_bytes: RESPONSE_BYTES_MAX,
        partitions: parts
            .iter()
            .map(|(tp, _, pos, id)| FetchPartition {
                key: key(tp, *id),
                current_leader_epoch: pos.leader_epoch.0,
                fetch_offset: pos.log_end.0,
                durable_offset: pos.durable.0,
                last_fetched_epoch: pos.last_epoch.0,
                max_bytes: PARTITION_BYTES_MAX,
            })
            .collect(),
    };
    let (kind, meta, mut records) = conn.ask(Kind::Fetch, &request).await?;
    if kind != Kind::Fetched {
        return Err(bad(format!("expected Fetched, got {kind:?}")));
    }
    let fetched: Fetched = protocol::decode(kind, &meta).map_err(bad)?;
    protocol::check_records(&fetched, &records).map_err(bad)?;
    if fetched.partitions.len() != parts.len() {
        return Err(bad("a fetch answered with other partitions"));
    }
    let mut appended = Vec::new();
    for ((tp, p, pos, _), f) in parts.iter().zip(&fetched.partitions) {
        let bytes = records.split_to(f.records_len as usize);
        if f.key.topic != tp.topic || f.key.partition != tp.partition.0 {
            return Err(bad("a fetch answered with its partitions out of order"));
        }
        if f.error != 0 {
            tracing::debug!(partition = %tp, error = f.error, "fetch refused");
            continue;
        }
        let leader = LeaderView {
            leader_epoch: sluice_engine::LeaderEpoch(f.leader_epoch),
            high_watermark: Offset(f.high_watermark),
            log_start: Offset(f.log_start),
            diverging: f
                .diverging
                .map(|d| (sluice_engine::LeaderEpoch(d.epoch), Offset(d.end_offset))),
        };
        match p.apply_fetched(pos, &leader, bytes).await {
            Ok(Some(last)) => appended.push((p.clone(), last)),
            Ok(None) => {}
            Err(e) => return Err(bad(format!("{tp}: {e}"))),
        }
    }
    // What was appended is durable before the next fetch reports it.
    for (p, last) in appended {
        if let Err(e) = p.log().wait_durable(last).await {
            return Err(bad(format!("{}: {e}", p.log().topic_partition())));
        }
    }
    Ok(())
}
