//! Partition work routed to the shard that owns each partition.
//!
//! A request's partitions are grouped by owner; each other shard receives
//! one message for all of its partitions over a bounded glommio channel
//! (the mesh), runs them and answers on a oneshot channel; the results are
//! put back in request order. Work for partitions this shard owns runs
//! in place.
//!
//! ## Submission order (pipelined produce)
//! Work runs in two phases. [`Router::submit`] *starts* it: a produce's
//! batches are validated and appended, which assigns their offsets, and
//! work for other shards is enqueued on the mesh. [`Submitted::replies`]
//! *finishes* it: waits for acknowledgements (fsync), runs reads, collects
//! the other shards' answers. A connection awaits `submit` for its requests
//! one at a time, in request order, and lets the finishing run
//! concurrently. Invariant: **work submitted from one shard reaches each
//! partition in submission order**, because
//! * local appends happen inside `submit`, before it returns;
//! * the mesh channels are FIFO, and an owner starts the messages from one
//!   shard in arrival order, each to the end of its appends (including the
//!   wait for write-buffer room) before it takes the next message; only
//!   the finishing phase runs in spawned tasks.
//!
//! Long-poll fetches wait with [`Router::wait_for_data`]: each owner
//! registers with its partitions' high watermarks (no polling) and answers
//! when one passes the offset the fetch is waiting at.

use kafka_protocol::error::ResponseError;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{Chunk, Partition, ReadOptions, ReadUpper};
use sluice_engine::shard::{shard_of, ShardEnv};
use sluice_engine::{EngineError, LeaderEpoch, Offset, TopicPartition};

use crate::groups::Coordinator;

/// One partition's work.
pub enum PartOp {
    Produce {
        config: LogConfig,
        records: Bytes,
        acks: i16,
        leader_epoch: i32,
    },
    Fetch {
        config: LogConfig,
        offset: i64,
        max_bytes: usize,
    },
    ListOffsets {
        config: LogConfig,
        timestamp: i64,
    },
    /// DeleteRecords: move the log start offset (-1: to the high watermark).
    DeleteRecords {
        config: LogConfig,
        offset: i64,
    },
    /// The end offset of a leader epoch.
    EpochEnd {
        config: LogConfig,
        epoch: i32,
    },
    /// The partition's log directory and size in bytes.
    Size {
        config: LogConfig,
    },
    /// Close the partition and remove its files (its topic was deleted).
    Remove,
    /// The idempotent producers the partition remembers.
    Producers {
        config: LogConfig,
    },
    /// Work for a consumer group of this `__consumer_offsets` partition.
    Group(crate::groups::Op),
}

#[derive(Debug)]
pub struct Produced {
    pub base_offset: i64,
    pub log_append_time: i64,
    pub log_start: i64,
}

#[derive(Debug)]
pub struct Fetched {
    /// Whole batches from the tail cache, or one segment file region.
    pub chunks: Vec<Chunk>,
    pub bytes: u64,
    pub high_watermark: i64,
    pub last_stable: i64,
    pub log_start: i64,
}

#[derive(Debug)]
pub enum PartReply {
    Produce(Result<Produced, i16>),
    Fetch(Result<Fetched, i16>),
    Offsets(Result<(i64, i64), i16>),
    Size(Result<(String, i64), i16>),
    Producers(Result<Vec<sluice_engine::producers::ProducerEntry>, i16>),
    Done(Result<(), i16>),
    Group(crate::groups::Reply),
}

/// A message between shards.
pub enum Msg {
    /// Partition work, started in arrival order (see the module docs).
    Ops {
        ops: Vec<(TopicPartition, PartOp)>,
        reply: oneshot::Sender<Vec<PartReply>>,
    },
    /// Answer once one partition's high watermark is above its offset, or
    /// at `until`, or when the asker stops waiting.
    Watch {
        parts: Vec<(TopicPartition, i64)>,
        until: Instant,
        reply: oneshot::Sender<()>,
    },
}

/// Work for one shard: each op's position in the request, and the ops.
struct ShardWork {
    shard: usize,
    order: Vec<usize>,
    ops: Vec<(TopicPartition, PartOp)>,
}

/// Answers due from another shard, and where they go in the request.
type Remote = (Vec<usize>, Option<oneshot::Receiver<Vec<PartReply>>>);

/// Work started by [`Router::submit`]; [`Submitted::replies`] finishes it.
pub struct Submitted {
    env: Rc<ShardEnv>,
    groups: Rc<Coordinator>,
    n: usize,
    local: Vec<(Vec<usize>, Vec<Started>)>,
    remote: Vec<Remote>,
}

impl Submitted {
    /// Finishes the work; replies in submission order.
    pub async fn replies(self) -> Vec<PartReply> {
        let mut out: Vec<Option<PartReply>> = (0..self.n).map(|_| None).collect();
        for (order, started) in self.local {
            let replies = finish_all(&self.env, &self.groups, started).await;
            for (i, r) in order.into_iter().zip(replies) {
                out[i] = Some(r);
            }
        }
        for (order, rx) in self.remote {
            let replies = match rx {
                Some(rx) => rx.await.unwrap_or_default(),
                None => Vec::new(),
            };
            let mut replies = replies.into_iter();
            for i in order {
                out[i] = Some(replies.next().unwrap_or(PartReply::Done(Err(
                    ResponseError::UnknownServerError.code(),
                ))));
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or(PartReply::Done(Err(
                    ResponseError::UnknownServerError.code()
                )))
            })
            .collect()
    }
}

/// Routes work from this shard.
pub struct Router {
    pub env: Rc<ShardEnv>,
    /// This shard's consumer groups.
    pub groups: Rc<Coordinator>,
    senders: Senders<Msg>,
    /// Mesh peer id of each shard.
    peers: Vec<usize>,
}

impl Router {
    /// Joins the mesh and starts serving work sent by other shards.
    pub fn new(
        env: Rc<ShardEnv>,
        groups: Rc<Coordinator>,
        senders: Senders<Msg>,
        mut receivers: Receivers<Msg>,
        peers: Vec<usize>,
    ) -> Rc<Self> {
        for (_, stream) in receivers.streams() {
            let (env, groups) = (env.clone(), groups.clone());
            glommio::spawn_local(async move {
                while let Some(msg) = stream.recv().await {
                    let (env, groups) = (env.clone(), groups.clone());
                    match msg {
                        Msg::Ops { ops, reply } => {
                            // Started here, in arrival order; finished apart.
                            let started = start_all(&env, ops).await;
                            glommio::spawn_local(async move {
                                let replies = finish_all(&env, &groups, started).await;
                                let _ = reply.send(replies);
                            })
                            .detach();
                        }
                        Msg::Watch {
                            parts,
                            until,
                            mut reply,
                        } => {
                            glommio::spawn_local(async move {
                                let asker_gone = reply.cancellation();
                                futures_lite::future::or(
                                    watch_local(&env, parts, until),
                                    asker_gone,
                                )
                                .await;
                                let _ = reply.send(());
                            })
                            .detach();
                        }
                    }
                }
            })
            .detach();
        }
        Rc::new(Self {
            env,
            groups,
            senders,
            peers,
        })
    }

    /// Runs `ops` on their owners; replies in the same order.
    pub async fn run(&self, ops: Vec<(TopicPartition, PartOp)>) -> Vec<PartReply> {
        self.submit(ops).await.replies().await
    }

    /// Starts `ops` on their owners (see the module docs for the order
    /// this guarantees); finish with [`Submitted::replies`].
    pub async fn submit(&self, ops: Vec<(TopicPartition, PartOp)>) -> Submitted {
        let n = ops.len();
        let mut local = Vec::new();
        let mut remote = Vec::new();
        for ShardWork { shard, order, ops } in self.group(ops) {
            if shard == self.env.shard {
                local.push((order, start_all(&self.env, ops).await));
            } else {
                let (tx, rx) = oneshot::channel();
                let msg = Msg::Ops { ops, reply: tx };
                let sent = self
                    .senders
                    .send_to(self.peer_index(shard), msg)
                    .await
                    .is_ok();
                remote.push((order, sent.then_some(rx)));
            }
        }
        Submitted {
            env: self.env.clone(),
            groups: self.groups.clone(),
            n,
            local,
            remote,
        }
    }

    /// Waits until one of `parts` has data above its offset (its high
    /// watermark passed it), or until `until`. Each owner registers with
    /// its partitions; nothing polls.
    pub async fn wait_for_data(&self, parts: Vec<(TopicPartition, i64)>, until: Instant) {
        let mut waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::new();
        let mut by_shard: Vec<Vec<(TopicPartition, i64)>> =
            (0..self.env.shards).map(|_| Vec::new()).collect();
        for (tp, offset) in parts {
            by_shard[shard_of(&tp, self.env.shards)].push((tp, offset));
        }
        for (shard, parts) in by_shard.into_iter().enumerate() {
            if parts.is_empty() {
                continue;
            }
            if shard == self.env.shard {
                let env = self.env.clone();
                waits.push(Box::pin(
                    async move { watch_local(&env, parts, until).await },
                ));
            } else {
                let (tx, rx) = oneshot::channel();
                let msg = Msg::Watch {
                    parts,
                    until,
                    reply: tx,
                };
                if self
                    .senders
                    .send_to(self.peer_index(shard), msg)
                    .await
                    .is_ok()
                {
                    waits.push(Box::pin(async move {
                        let _ = rx.await;
                    }));
                }
            }
        }
        waits.push(Box::pin(sleep_until(until)));
        first_of(waits).await;
    }

    /// `ops` grouped by owning shard, with their positions in `ops`.
    fn group(&self, ops: Vec<(TopicPartition, PartOp)>) -> Vec<ShardWork> {
        let shards = self.env.shards;
        let mut groups: Vec<ShardWork> = (0..shards)
            .map(|shard| ShardWork {
                shard,
                order: Vec::new(),
                ops: Vec::new(),
            })
            .collect();
        for (i, (tp, op)) in ops.into_iter().enumerate() {
            let g = &mut groups[shard_of(&tp, shards)];
            g.order.push(i);
            g.ops.push((tp, op));
        }
        groups.retain(|g| !g.ops.is_empty());
        groups
    }

    /// The mesh peer id of a shard (the mesh numbers peers by join order).
    fn peer_index(&self, shard: usize) -> usize {
        self.peers[shard]
    }
}

/// Work for one partition after its first phase.
pub enum Started {
    /// Appended (offsets assigned); the acknowledgement is still due.
    Appended {
        partition: Partition,
        last: Offset,
        acks: i16,
        base_offset: i64,
        log_append_time: i64,
    },
    /// Answered already (a produce that failed before or while appending).
    Answered(PartReply),
    /// Nothing starts early: runs whole when finishing.
    Later(TopicPartition, PartOp),
}

/// The first phase of `ops`, in order: appends for produces.
async fn start_all(env: &ShardEnv, ops: Vec<(TopicPartition, PartOp)>) -> Vec<Started> {
    let mut out = Vec::with_capacity(ops.len());
    for (tp, op) in ops {
        out.push(start_one(env, tp, op).await);
    }
    out
}

async fn finish_all(
    env: &ShardEnv,
    groups: &Rc<Coordinator>,
    started: Vec<Started>,
) -> Vec<PartReply> {
    let mut out = Vec::with_capacity(started.len());
    for s in started {
        out.push(finish_one(env, groups, s).await);
    }
    out
}

async fn start_one(env: &ShardEnv, tp: TopicPartition, op: PartOp) -> Started {
    let PartOp::Produce {
        config,
        records,
        acks,
        leader_epoch,
    } = op
    else {
        return Started::Later(tp, op);
    };
    let now = sluice_engine::types::now_ms();
    let appended = async {
        let batches = split_batches(records)?;
        let p = env.open(&tp, config).await.map_err(|e| code(&e))?;
        let mut first = None;
        let mut last = Offset(0);
        for b in batches {
            // The batch is taken over without a copy when nothing else
            // holds the request's bytes: a request of one batch for one
            // partition, once decoded.
            let b = b.try_into_mut().unwrap_or_else(|b| BytesMut::from(&b[..]));
            let info = p
                .append(b, LeaderEpoch(leader_epoch), now)
                .await
                .map_err(|e| code(&e))?;
            first.get_or_insert(info);
            last = info.last_offset;
        }
        let info = first.expect("at least one batch");
        Ok(Started::Appended {
            partition: p,
            last,
            acks,
            base_offset: info.base_offset.0,
            log_append_time: info.log_append_time,
        })
    }
    .await;
    appended.unwrap_or_else(|code| Started::Answered(PartReply::Produce(Err(code))))
}

async fn finish_one(env: &ShardEnv, groups: &Rc<Coordinator>, started: Started) -> PartReply {
    match started {
        Started::Appended {
            partition,
            last,
            acks,
            base_offset,
            log_append_time,
        } => {
            if acks != 0 {
                if let Err(e) = partition.wait_acked(last).await {
                    return PartReply::Produce(Err(code(&e)));
                }
            }
            PartReply::Produce(Ok(Produced {
                base_offset,
                log_append_time,
                log_start: partition.watermarks().log_start.0,
            }))
        }
        Started::Answered(reply) => reply,
        Started::Later(tp, op) => run_one(env, groups, &tp, op).await,
    }
}

/// Resolves when one of `parts` (owned here) has data above its offset,
/// or at `until`. Partitions not open here are not waited on.
async fn watch_local(env: &ShardEnv, parts: Vec<(TopicPartition, i64)>, until: Instant) {
    let mut waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = parts
        .into_iter()
        .filter_map(|(tp, offset)| env.get(&tp).map(|p| (p, offset)))
        .map(|(p, offset)| {
            Box::pin(p.wait_high_watermark_above(Offset(offset)))
                as Pin<Box<dyn Future<Output = ()>>>
        })
        .collect();
    waits.push(Box::pin(sleep_until(until)));
    first_of(waits).await;
}

async fn sleep_until(until: Instant) {
    glommio::timer::sleep(until.saturating_duration_since(Instant::now())).await;
}

/// Resolves when the first of `futures` does.
async fn first_of(mut futures: Vec<Pin<Box<dyn Future<Output = ()>>>>) {
    futures_lite::future::poll_fn(|cx| {
        if futures.iter_mut().any(|f| f.as_mut().poll(cx).is_ready()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

fn code(e: &EngineError) -> i16 {
    e.kafka_code() as i16
}

/// Splits produced records into batches: `baseOffset(8) batchLength(4) …`.
/// The last batch is `records` itself, so that a single batch is the only
/// holder of its bytes.
fn split_batches(mut records: Bytes) -> Result<Vec<Bytes>, i16> {
    let mut out = Vec::new();
    while !records.is_empty() {
        if records.len() < sluice_engine::batch::LOG_OVERHEAD {
            return Err(ResponseError::CorruptMessage.code());
        }
        let len = i32::from_be_bytes(records[8..12].try_into().expect("4 bytes"));
        let total = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(sluice_engine::batch::LOG_OVERHEAD))
            .filter(|t| *t <= records.len())
            .ok_or(ResponseError::CorruptMessage.code())?;
        if total == records.len() {
            out.push(records);
            break;
        }
        out.push(records.split_to(total));
    }
    if out.is_empty() {
        return Err(ResponseError::CorruptMessage.code());
    }
    Ok(out)
}

async fn run_one(
    env: &ShardEnv,
    groups: &Rc<Coordinator>,
    tp: &TopicPartition,
    op: PartOp,
) -> PartReply {
    let now = sluice_engine::types::now_ms();
    match op {
        PartOp::Produce { .. } => unreachable!("start_one runs produces"),
        PartOp::Fetch {
            config,
            offset,
            max_bytes,
        } => PartReply::Fetch(
            async {
                let p = env.open(tp, config).await.map_err(|e| code(&e))?;
                let opts = ReadOptions {
                    max_bytes,
                    min_one: true,
                    upper: ReadUpper::HighWatermark,
                };
                let r = p.read(Offset(offset), opts).await.map_err(|e| code(&e))?;
                let w = r.watermarks;
                Ok(Fetched {
                    chunks: r.chunks,
                    bytes: r.bytes,
                    high_watermark: w.high_watermark.0,
                    last_stable: w.last_stable.0,
                    log_start: w.log_start.0,
                })
            }
            .await,
        ),
        PartOp::ListOffsets { config, timestamp } => PartReply::Offsets(
            async {
                let p = env.open(tp, config).await.map_err(|e| code(&e))?;
                let w = p.watermarks();
                Ok(match timestamp {
                    -2 => (-1, w.log_start.0),
                    -1 => (-1, w.high_watermark.0),
                    -3 => p.max_timestamp().map_or((-1, w.high_watermark.0), |(o, t)| (t, o.0)),
                    ts => match p.offset_for_timestamp(ts).await.map_err(|e| code(&e))? {
                        Some((o, t)) => (t, o.0),
                        None => (-1, -1),
                    },
                })
            }
            .await,
        ),
        PartOp::DeleteRecords { config, offset } => PartReply::Offsets(
            async {
                let p = env.open(tp, config).await.map_err(|e| code(&e))?;
                let start = p.delete_records(Offset(offset), now).await.map_err(|e| code(&e))?;
                Ok((-1, start.0))
            }
            .await,
        ),
        PartOp::EpochEnd { config, epoch } => PartReply::Offsets(
            async {
                let p = env.open(tp, config).await.map_err(|e| code(&e))?;
                Ok(match p.end_offset_for_epoch(LeaderEpoch(epoch)) {
                    Some((e, end)) => (i64::from(e.0), end.0),
                    None => (-1, -1),
                })
            }
            .await,
        ),
        PartOp::Size { config } => PartReply::Size(
            async {
                let p = env.open(tp, config).await.map_err(|e| code(&e))?;
                let dir = p.dir().parent().map(|d| d.display().to_string()).unwrap_or_default();
                Ok((dir, p.size_bytes() as i64))
            }
            .await,
        ),
        PartOp::Producers { config } => PartReply::Producers(
            async {
                let p = env.open(tp, config).await.map_err(|e| code(&e))?;
                Ok(p.producers())
            }
            .await,
        ),
        PartOp::Group(op) => PartReply::Group(groups.run(tp.partition.0, op).await),
        PartOp::Remove => PartReply::Done(
            async {
                let dir = env.close(tp).await.map_err(|e| code(&e))?;
                if let Some(dir) = dir {
                    let removed = glommio::executor()
                        .spawn_blocking(move || std::fs::remove_dir_all(&dir))
                        .await;
                    if let Err(e) = removed {
                        tracing::warn!(partition = %tp, error = %e, "could not remove a deleted partition's files");
                    }
                }
                Ok(())
            }
            .await,
        ),
    }
}

/// the sendfile path comes with the zero-copy writer.
pub(crate) fn collect(chunks: Vec<Chunk>, bytes: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(bytes as usize);
    for c in chunks {
        match c {
            Chunk::Memory(b) => buf.extend_from_slice(&b),
            Chunk::File(f) => {
                let start = buf.len();
                buf.resize(start + f.len as usize, 0);
                let n = read_fully(&f.file, &mut buf[start..], f.position);
                buf.truncate(start + n);
            }
        }
    }
    buf.freeze()
}

/// Reads as much of `buf` as the file has at `pos`.
fn read_fully(file: &std::fs::File, buf: &mut [u8], pos: u64) -> usize {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::batch::build;

    fn batch(n: usize) -> Vec<u8> {
        build::simple(n, 100, 1, 0)
    }

    #[test]
    fn a_single_batch_is_handed_on_as_the_only_holder_of_its_bytes() {
        let one = batch(3);
        let got = split_batches(Bytes::from(one.clone())).unwrap();
        assert_eq!(got.len(), 1);
        let b = got.into_iter().next().unwrap();
        let b = b.try_into_mut().expect("nothing else holds the bytes");
        assert_eq!(&b[..], &one[..]);
    }

    #[test]
    fn records_split_into_their_batches_or_are_corrupt() {
        let (a, b) = (batch(1), batch(4));
        let both = [a.clone(), b.clone()].concat();
        let got = split_batches(Bytes::from(both.clone())).unwrap();
        assert_eq!(got, vec![Bytes::from(a), Bytes::from(b)]);
        assert_eq!(
            split_batches(Bytes::new()),
            Err(ResponseError::CorruptMessage.code())
        );
        for cut in [1, 11, both.len() - 1] {
            assert_eq!(
                split_batches(Bytes::copy_from_slice(&both[..cut])),
                Err(ResponseError::CorruptMessage.code()),
                "{cut}"
            );
        }
        let mut negative = both;
        negative[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            split_batches(Bytes::from(negative)),
            Err(ResponseError::CorruptMessage.code())
        );
    }
}
