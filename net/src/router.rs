//! Partition work routed to the shard that owns each partition.
//!
//! A request's partitions are grouped by owner; each other shard receives
//! one message for all of its partitions over a bounded glommio channel
//! (the mesh), runs them and answers on a oneshot channel; the results are
//! put back in request order. Work for partitions this shard owns runs
//! in place.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{Chunk, ReadOptions, ReadUpper};
use sluice_engine::shard::{shard_of, ShardEnv};
use sluice_engine::{EngineError, LeaderEpoch, Offset, TopicPartition};

use crate::groups::Coordinator;

/// Kafka error codes used here.
pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const CORRUPT_MESSAGE: i16 = 2;

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
    pub records: Bytes,
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

pub struct Msg {
    ops: Vec<(TopicPartition, PartOp)>,
    reply: oneshot::Sender<Vec<PartReply>>,
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
                    glommio::spawn_local(async move {
                        let replies = run_local(&env, &groups, msg.ops).await;
                        let _ = msg.reply.send(replies);
                    })
                    .detach();
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
        let shards = self.env.shards;
        let me = self.env.shard;
        let n = ops.len();
        let mut per_shard: Vec<Vec<(usize, TopicPartition, PartOp)>> =
            (0..shards).map(|_| Vec::new()).collect();
        for (i, (tp, op)) in ops.into_iter().enumerate() {
            per_shard[shard_of(&tp, shards)].push((i, tp, op));
        }
        let mut pending = Vec::new();
        let mut local = Vec::new();
        for (shard, group) in per_shard.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let order: Vec<usize> = group.iter().map(|g| g.0).collect();
            let ops: Vec<(TopicPartition, PartOp)> =
                group.into_iter().map(|(_, tp, op)| (tp, op)).collect();
            if shard == me {
                local.push((order, ops));
            } else {
                let (tx, rx) = oneshot::channel();
                let msg = Msg { ops, reply: tx };
                let sent = self
                    .senders
                    .send_to(self.peer_index(shard), msg)
                    .await
                    .is_ok();
                pending.push((order, sent.then_some(rx)));
            }
        }
        let mut out: Vec<Option<PartReply>> = (0..n).map(|_| None).collect();
        for (order, ops) in local {
            for (i, r) in order
                .into_iter()
                .zip(run_local(&self.env, &self.groups, ops).await)
            {
                out[i] = Some(r);
            }
        }
        for (order, rx) in pending {
            let replies = match rx {
                Some(rx) => rx.await.unwrap_or_default(),
                None => Vec::new(),
            };
            let mut replies = replies.into_iter();
            for i in order {
                out[i] = Some(
                    replies
                        .next()
                        .unwrap_or(PartReply::Done(Err(UNKNOWN_SERVER_ERROR))),
                );
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or(PartReply::Done(Err(UNKNOWN_SERVER_ERROR))))
            .collect()
    }

    /// The mesh peer id of a shard (the mesh numbers peers by join order).
    fn peer_index(&self, shard: usize) -> usize {
        self.peers[shard]
    }
}

async fn run_local(
    env: &ShardEnv,
    groups: &Rc<Coordinator>,
    ops: Vec<(TopicPartition, PartOp)>,
) -> Vec<PartReply> {
    let mut out = Vec::with_capacity(ops.len());
    for (tp, op) in ops {
        out.push(run_one(env, groups, &tp, op).await);
    }
    out
}

fn code(e: &EngineError) -> i16 {
    tracing::debug!(error = %e, "partition operation failed");
    e.kafka_code() as i16
}

/// Splits produced records into batches: `baseOffset(8) batchLength(4) …`.
fn split_batches(records: &Bytes) -> Result<Vec<Bytes>, i16> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        if records.len() - at < sluice_engine::batch::LOG_OVERHEAD {
            return Err(CORRUPT_MESSAGE);
        }
        let len = i32::from_be_bytes(records[at + 8..at + 12].try_into().expect("4 bytes"));
        let total = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(sluice_engine::batch::LOG_OVERHEAD))
            .filter(|t| *t <= records.len() - at)
            .ok_or(CORRUPT_MESSAGE)?;
        out.push(records.slice(at..at + total));
        at += total;
    }
    if out.is_empty() {
        return Err(CORRUPT_MESSAGE);
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
        PartOp::Produce {
            config,
            records,
            acks,
            leader_epoch,
        } => PartReply::Produce(
            async {
                let batches = split_batches(&records)?;
                let p = env.open(tp, config).await.map_err(|e| code(&e))?;
                let mut first = None;
                let mut last = Offset(0);
                for b in batches {
                    let info = p
                        .append(BytesMut::from(&b[..]), LeaderEpoch(leader_epoch), now)
                        .await
                        .map_err(|e| code(&e))?;
                    first.get_or_insert(info);
                    last = info.last_offset;
                }
                if acks != 0 {
                    p.wait_acked(last).await.map_err(|e| code(&e))?;
                }
                let info = first.expect("at least one batch");
                Ok(Produced {
                    base_offset: info.base_offset.0,
                    log_append_time: info.log_append_time,
                    log_start: p.watermarks().log_start.0,
                })
            }
            .await,
        ),
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
                    records: collect(r.chunks, r.bytes),
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

/// The bytes of a read, in one buffer. File regions are copied for now;
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
