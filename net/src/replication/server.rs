//! The leader's side of the replication protocol: the replication listener
//! on every shard (SO_REUSEPORT, like the Kafka listener), and the answers
//! to followers' fetches.
//!
//! A connection starts with [`Hello`]: a follower this broker cannot talk
//! to (no common protocol version, another cluster) gets [`Refused`] and
//! the connection closes. Then each request is answered in order, one at
//! a time: a follower sends its next fetch only after the answer to the
//! last. A fetch's partitions run on the shards that own them
//! (`Ctx::on_owners`); a fetch that finds nothing new waits for data on the
//! owners (`Router::first`) up to `max_wait_ms`, like a consumer's long poll.
//!
//! Nothing a peer sends is trusted: frames are bounded before they are
//! read (`protocol`), a malformed frame closes the connection, and record
//! batches are validated by the follower's engine before they are stored.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt};
use glommio::net::{TcpListener, TcpStream};
use kafka_protocol::error::ResponseError;
use sluice_broker::roles::{FollowerFetch, LeaderAnswer};
use sluice_engine::{LeaderEpoch, Offset, TopicPartition};

use super::protocol::{
    self, Diverging, EpochEnd, EpochEndPartition, EpochEnds, EpochEndsAnswer, Fetch,
    FetchPartition, Fetched, FetchedPartition, Hello, Kind, PartitionKey, Refused, Welcome,
};
use crate::ctx::Ctx;
use crate::response::{self, Piece, Response};

/// The longest a fetch waits for data, whatever the follower asks.
const WAIT_MS_MAX: u32 = 30_000;

/// Serves followers on this shard until it stops.
pub(crate) async fn listen(ctx: Rc<Ctx>) {
    let addr = ctx.config.replication_listen;
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen for followers");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "replication accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            if let Err(e) = serve(&ctx, stream).await {
                tracing::debug!(error = %e, "replication connection closed");
            }
        })
        .detach();
    }
}

fn bad(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// Reads one frame: its header, message bytes and records.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    versions: std::ops::RangeInclusive<u16>,
) -> std::io::Result<Option<(protocol::Header, Bytes, Bytes)>> {
    let mut prefix = [0u8; 4];
    match rd.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = protocol::frame_len(prefix).map_err(bad)?;
    let mut body = vec![0u8; len];
    rd.read_exact(&mut body).await?;
    protocol::split(Bytes::from(body), versions)
        .map(Some)
        .map_err(bad)
}

async fn serve(ctx: &Rc<Ctx>, stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    crate::connection::set_nonblocking(stream.as_raw_fd())?;
    let idle = Duration::from_millis(ctx.config.connections_max_idle_ms.max(1));
    stream.set_read_timeout(Some(idle))?;
    let fd = stream.as_raw_fd();
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let all = protocol::VERSION_MIN..=protocol::VERSION_MAX;
    let Some((h, meta, _)) = read_frame(&mut rd, all).await? else {
        return Ok(());
    };
    let version = match greet(ctx, &h, &meta) {
        Ok(welcome) => {
            let frame =
                protocol::encode(welcome.version, Kind::Welcome, h.correlation, &welcome, 0);
            response::write(&mut wr, fd, &Response::raw(vec![Piece::Memory(frame)])).await?;
            welcome.version
        }
        Err(refused) => {
            tracing::warn!(reason = %refused.message, "refused a follower");
            let frame = protocol::encode(
                protocol::VERSION_MIN,
                Kind::Refused,
                h.correlation,
                &refused,
                0,
            );
            response::write(&mut wr, fd, &Response::raw(vec![Piece::Memory(frame)])).await?;
            return Ok(());
        }
    };
    while let Some((h, meta, _)) = read_frame(&mut rd, version..=version).await? {
        let pieces = match h.kind {
            Kind::Fetch => {
                let fetch: Fetch = protocol::decode(h.kind, &meta).map_err(bad)?;
                fetched(ctx, version, h.correlation, fetch).await
            }
            Kind::EpochEnds => {
                let asked: EpochEnds = protocol::decode(h.kind, &meta).map_err(bad)?;
                let answer = epoch_ends(ctx, asked).await;
                vec![Piece::Memory(protocol::encode(
                    version,
                    Kind::EpochEndsAnswer,
                    h.correlation,
                    &answer,
                    0,
                ))]
            }
            other => return Err(bad(format!("a follower sent {other:?}"))),
        };
        response::write(&mut wr, fd, &Response::raw(pieces)).await?;
    }
    Ok(())
}

/// The answer to a follower's [`Hello`].
fn greet(ctx: &Ctx, h: &protocol::Header, meta: &[u8]) -> Result<Welcome, Refused> {
    let refuse = |message: String| Refused {
        error: ResponseError::InvalidRequest.code(),
        message,
    };
    if h.kind != Kind::Hello {
        return Err(refuse(format!("expected Hello, got {:?}", h.kind)));
    }
    let hello: Hello = protocol::decode(h.kind, meta).map_err(|e| refuse(e.to_string()))?;
    if hello.cluster_id != ctx.config.cluster_id {
        return Err(refuse(format!(
            "cluster {:?} is not this broker's {:?}",
            hello.cluster_id, ctx.config.cluster_id
        )));
    }
    let version = hello.version_max.min(protocol::VERSION_MAX);
    if version < hello.version_min.max(protocol::VERSION_MIN) {
        return Err(refuse(format!(
            "no common protocol version: {}..={} against {}..={}",
            hello.version_min,
            hello.version_max,
            protocol::VERSION_MIN,
            protocol::VERSION_MAX
        )));
    }
    Ok(Welcome {
        broker_id: ctx.config.broker_id,
        version,
    })
}

/// A partition of a fetch, as its owner receives it.
struct Asked {
    key: PartitionKey,
    fetch: FollowerFetch,
}

/// On the partition's owner: reads for the follower, after checking the
/// partition is the one the follower means (topic id) and led here.
async fn read_for_follower(
    ctx: Rc<Ctx>,
    tp: TopicPartition,
    a: Asked,
) -> Result<LeaderAnswer, i16> {
    let id = ctx.image.load().topics.get(&tp.topic).map(|t| t.id);
    if id != Some(a.key.topic_id) {
        return Err(ResponseError::UnknownTopicId.code());
    }
    let p = ctx
        .partitions
        .get(&tp)
        .ok_or(ResponseError::NotLeaderOrFollower.code())?;
    let now = sluice_engine::types::now_ms();
    p.serve_follower(a.fetch, now).await.map_err(|e| e.code())
}

/// On the owner: resolves once one of `parts` has data past its offset.
async fn watch(ctx: Rc<Ctx>, parts: Vec<(TopicPartition, i64)>) {
    let waits: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> = parts
        .into_iter()
        .filter_map(|(tp, offset)| ctx.partitions.get(&tp).map(|p| (p, offset)))
        .map(|(p, offset)| {
            Box::pin(p.log().wait_log_end_above(Offset(offset)))
                as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
        })
        .collect();
    sluice_broker::router::first_of(waits).await;
}

/// Answers a follower's fetch: its partitions read on their owners, after
/// a long poll when nothing was new.
async fn fetched(ctx: &Rc<Ctx>, version: u16, correlation: u32, fetch: Fetch) -> Vec<Piece> {
    let wait = Duration::from_millis(u64::from(fetch.max_wait_ms.min(WAIT_MS_MAX)));
    let deadline = Instant::now() + wait;
    let limit = (fetch.max_bytes as usize).min(protocol::RECORDS_BYTES_MAX);
    let mut answers = read_all(ctx, &fetch, fetch.replica_id, limit).await;
    let empty = answers
        .iter()
        .all(|a| a.as_ref().map_or(true, |a| a.chunks.is_empty()));
    if empty && !wait.is_zero() {
        let parts = fetch
            .partitions
            .iter()
            .map(|p| (tp_of(&p.key), p.fetch_offset))
            .collect();
        ctx.router.first(ctx, parts, deadline, watch).await;
        answers = read_all(ctx, &fetch, fetch.replica_id, limit).await;
    }
    let mut left = limit;
    let mut records = Vec::new();
    let mut partitions = Vec::with_capacity(fetch.partitions.len());
    for (p, answer) in fetch.partitions.iter().zip(answers) {
        let mut out = FetchedPartition {
            key: p.key.clone(),
            error: 0,
            leader_epoch: -1,
            high_watermark: -1,
            log_start: -1,
            log_end: -1,
            diverging: None,
            records_len: 0,
        };
        match answer {
            Ok(a) => {
                out.leader_epoch = a.leader_epoch;
                out.high_watermark = a.high_watermark.0;
                out.log_start = a.log_start.0;
                out.log_end = a.log_end.0;
                out.diverging = a.diverging.map(|(epoch, end)| Diverging {
                    epoch,
                    end_offset: end.0,
                });
                // Whole batches within the response's room: the first
                // partition's first batch always (KIP-74).
                let mut len = 0usize;
                for c in a.chunks {
                    let n = c.len() as usize;
                    if len + n > left && !(records.is_empty() && len == 0) {
                        break;
                    }
                    len += n;
                    records.push(Piece::from(c));
                }
                left = left.saturating_sub(len);
                out.records_len = len as u32;
            }
            Err(code) => out.error = code,
        }
        partitions.push(out);
    }
    let total: usize = partitions.iter().map(|p| p.records_len as usize).sum();
    let head = protocol::encode(
        version,
        Kind::Fetched,
        correlation,
        &Fetched { partitions },
        total,
    );
    let mut pieces = vec![Piece::Memory(head)];
    pieces.extend(records);
    pieces
}

fn tp_of(key: &PartitionKey) -> TopicPartition {
    TopicPartition::new(key.topic.clone(), key.partition)
}

/// Reads every partition of `fetch` on its owner.
async fn read_all(
    ctx: &Rc<Ctx>,
    fetch: &Fetch,
    replica: i32,
    limit: usize,
) -> Vec<Result<LeaderAnswer, i16>> {
    let items = fetch
        .partitions
        .iter()
        .map(|p: &FetchPartition| {
            let asked = Asked {
                key: p.key.clone(),
                fetch: FollowerFetch {
                    replica,
                    current_leader_epoch: LeaderEpoch(p.current_leader_epoch),
                    fetch_offset: Offset(p.fetch_offset),
                    durable_offset: Offset(p.durable_offset),
                    last_fetched_epoch: LeaderEpoch(p.last_fetched_epoch),
                    max_bytes: (p.max_bytes as usize).min(limit),
                },
            };
            (tp_of(&p.key), Ok(asked))
        })
        .collect();
    ctx.on_owners(items, read_for_follower).await
}

/// On the owner: where the asked epoch ends in this leader's log.
async fn epoch_end_on_owner(
    ctx: Rc<Ctx>,
    tp: TopicPartition,
    p: EpochEndPartition,
) -> Result<(i32, i64), i16> {
    let id = ctx.image.load().topics.get(&tp.topic).map(|t| t.id);
    if id != Some(p.key.topic_id) {
        return Err(ResponseError::UnknownTopicId.code());
    }
    let r = ctx
        .partitions
        .get(&tp)
        .ok_or(ResponseError::NotLeaderOrFollower.code())?;
    r.epoch_end(
        LeaderEpoch(p.current_leader_epoch),
        LeaderEpoch(p.leader_epoch),
    )
    .map(|(e, o)| (e.0, o.0))
    .map_err(|e| e.code())
}

async fn epoch_ends(ctx: &Rc<Ctx>, asked: EpochEnds) -> EpochEndsAnswer {
    let keys: Vec<PartitionKey> = asked.partitions.iter().map(|p| p.key.clone()).collect();
    let items = asked
        .partitions
        .into_iter()
        .map(|p| (tp_of(&p.key), Ok(p)))
        .collect();
    let answers = ctx.on_owners(items, epoch_end_on_owner).await;
    EpochEndsAnswer {
        partitions: keys
            .into_iter()
            .zip(answers)
            .map(|(key, a)| match a {
                Ok((leader_epoch, end_offset)) => EpochEnd {
                    key,
                    error: 0,
                    leader_epoch,
                    end_offset,
                },
                Err(error) => EpochEnd {
                    key,
                    error,
                    leader_epoch: -1,
                    end_offset: -1,
                },
            })
            .collect(),
    }
}
