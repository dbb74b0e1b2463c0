//! The seam where a partition's log meets replication: a partition as this
//! broker holds it, leader (today, always) or follower (with replication).
//!
//! It owns what replication changes about a partition's log:
//! * **appends as leader**, stamped with the leader epoch the request was
//!   checked against;
//! * **what an acknowledgement waits for**: `acks=1` the leader's own
//!   durable copy (the engine's durable position), `acks=all` the high
//!   watermark (committed). Today every partition has a single replica and
//!   its log runs in the engine's `CommitMode::Durable`, where the high
//!   watermark is the durable position; with replication a partition runs
//!   in `CommitMode::Replicated` and its leader advances the high watermark
//!   as the in-sync replicas catch up;
//! * **consumer reads**, which stop at the high watermark.
//!
//! Everything else about the log (watermarks, sizes, producers, indexes)
//! is read through [`ReplicatedPartition::log`].
//!
//! A leader applies its topic's policy to a produced batch before the
//! engine appends it ([`conform`]), as Kafka's `LogValidator` does on the
//! leader only (followers copy the leader's batches as they are):
//! * `compression.type` names a codec and the batch has another: the
//!   records are recompressed with it (`uncompressed` decompresses);
//!   `producer` keeps the producer's codec;
//! * `cleanup.policy` includes `compact`: a record without a key is
//!   refused with INVALID_RECORD ("Compacted topic cannot accept message
//!   without key"), so that compaction never meets one.
//!
//! A batch the policy leaves alone is not looked into: the common case
//! costs nothing here.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::BytesMut;
use sluice_engine::batch::{self, BatchError};
use sluice_engine::codec;
use sluice_engine::config::{LogConfig, TopicCompression};
use sluice_engine::partition::{
    AppendInfo, HighWatermarkWait, Partition, ReadOptions, ReadOutcome, ReadUpper,
};
use sluice_engine::{LeaderEpoch, Offset, Result};

use crate::roles::{ReplicaError, Role, Watchers};

/// Kafka's `acks` of a produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: nobody waits.
    None,
    /// `acks=1`: the leader's copy.
    Leader,
    /// `acks=all` (-1): every in-sync replica's copy, i.e. the high watermark.
    All,
}

impl Acks {
    /// Kafka's value; `None` for anything but 0, 1 and -1.
    pub fn from_kafka(acks: i16) -> Option<Self> {
        match acks {
            0 => Some(Self::None),
            1 => Some(Self::Leader),
            -1 => Some(Self::All),
            _ => None,
        }
    }
}

/// A partition held by this broker: its log and its role (`roles`).
/// Cheap to clone within its shard; clones share the role.
#[derive(Clone)]
pub struct ReplicatedPartition {
    pub(crate) log: Partition,
    pub(crate) role: Rc<RefCell<Role>>,
    /// Who waits for the role to change (`RoleChange`).
    pub(crate) watchers: Rc<RefCell<Watchers>>,
}

impl ReplicatedPartition {
    pub(crate) fn new(log: Partition) -> Self {
        Self {
            log,
            role: Rc::default(),
            watchers: Rc::default(),
        }
    }

    /// The partition's log, for what replication does not change.
    pub fn log(&self) -> &Partition {
        &self.log
    }

    /// Validates and appends one batch produced by a client, as leader at
    /// `leader_epoch`; returns once its offsets are assigned. Await
    /// [`ReplicatedPartition::acknowledged`] for its acknowledgement.
    /// Refused unless this broker leads at that epoch, and, for
    /// `acks=all`, unless the ISR has at least `min.insync.replicas`
    /// members (NOT_ENOUGH_REPLICAS).
    pub async fn append(
        &self,
        batch: BytesMut,
        leader_epoch: LeaderEpoch,
        acks: Acks,
        now_ms: i64,
    ) -> std::result::Result<AppendInfo, ReplicaError> {
        match self.leading() {
            Some(e) if e == leader_epoch => {}
            Some(e) if e.0 > leader_epoch.0 => {
                return Err(ReplicaError::FencedLeaderEpoch {
                    asked: leader_epoch.0,
                    current: e.0,
                })
            }
            _ => return Err(ReplicaError::NotLeader),
        }
        let config = self.log.config();
        if acks == Acks::All {
            let isr = self.isr().map_or(1, |isr| isr.len());
            let needed = config.min_insync_replicas.max(1) as usize;
            if isr < needed {
                return Err(ReplicaError::NotEnoughReplicas { isr, needed });
            }
        }
        let batch = conform(batch, &config, now_ms)?;
        Ok(self.log.append(batch, leader_epoch, now_ms).await?)
    }

    /// Resolves once the batch ending at `last` is acknowledged as `acks`
    /// asks: by the leader's durable copy, or by the high watermark. A
    /// leader that loses its leadership meanwhile answers
    /// NOT_LEADER_OR_FOLLOWER (Kafka's delayed produce does the same): the
    /// client retries at the new leader, and an idempotent producer's
    /// retry is recognised there if the batch made it.
    pub async fn acknowledged(
        &self,
        acks: Acks,
        last: Offset,
    ) -> std::result::Result<(), ReplicaError> {
        let epoch = self.leading();
        let wait = async {
            match acks {
                Acks::None => Ok(()),
                Acks::Leader => self.log.wait_durable(last).await,
                Acks::All => self.log.wait_acked(last).await,
            }
            .map_err(ReplicaError::from)
        };
        let stepped_down = async {
            self.role_change(epoch).await;
            Err(ReplicaError::NotLeader)
        };
        futures_lite::future::or(wait, stepped_down).await
    }

    /// A consumer's read from `from`: whole batches below the high
    /// watermark, at least one even if larger than `max_bytes` (KIP-74).
    pub async fn read_committed(&self, from: Offset, max_bytes: usize) -> Result<ReadOutcome> {
        let opts = ReadOptions {
            max_bytes,
            min_one: true,
            upper: ReadUpper::HighWatermark,
        };
        self.log.read(from, opts).await
    }

    /// Resolves once the high watermark is above `offset` (a long poll).
    pub fn wait_high_watermark_above(&self, offset: Offset) -> HighWatermarkWait {
        self.log.wait_high_watermark_above(offset)
    }
}

/// Applies the topic's policy to a produced batch (see the module docs):
/// the batch as the leader stores it, or why it is refused. Checks the
/// batch as the engine's append does first, so that a damaged batch is
/// answered as the engine answers it.
fn conform(batch: BytesMut, config: &LogConfig, now_ms: i64) -> Result<BytesMut> {
    let target = match config.compression {
        TopicCompression::Producer => None,
        TopicCompression::Codec(c) => Some(c),
    };
    let compacted = config.cleanup_policy.compacts();
    if target.is_none() && !compacted {
        return Ok(batch);
    }
    let header = batch::validate(&batch, &config.limits(), now_ms)?;
    let source = header.compression().expect("validate checks the codec");
    let recompress = target.filter(|t| *t != source);
    if recompress.is_none() && !compacted {
        return Ok(batch);
    }
    let bytes_max = codec::decompressed_bytes_max(config.max_message_bytes);
    let records = codec::records(&batch, &header, bytes_max)?;
    if compacted {
        let views = batch::records_in(&records, &header).expect("records were checked");
        if let Some(index) = views.iter().position(|r| r.key.is_none()) {
            return Err(BatchError::KeylessOnCompactedTopic {
                index: index as i32,
            }
            .into());
        }
    }
    let Some(target) = recompress else {
        return Ok(batch);
    };
    Ok(codec::repack(
        &batch,
        &records,
        target,
        config.compression_level(target),
    )?)
}

#[cfg(test)]
mod tests {
    use sluice_engine::batch::build::{self, Record};
    use sluice_engine::batch::{BatchHeader, Compression};
    use sluice_engine::KafkaCode;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> LogConfig {
        LogConfig::from_props(pairs.iter().copied()).unwrap()
    }

    fn records(keys: &[Option<&str>]) -> Vec<Record> {
        keys.iter()
            .map(|k| Record {
                key: k.map(|k| k.as_bytes().to_vec()),
                value: Some(vec![b'v'; 300]),
                headers: vec![],
            })
            .collect()
    }

    fn batch_of(keys: &[Option<&str>], codec: Compression) -> BytesMut {
        let plain = build::batch(&records(keys), 1_000);
        codec::repack(&plain, &plain[batch::HEADER_LEN..], codec, 0).unwrap()
    }

    fn codec_of(b: &[u8]) -> Compression {
        BatchHeader::parse(b).unwrap().compression().unwrap()
    }

    #[test]
    fn given_compression_type_producer_the_batch_is_kept_as_it_came() {
        let b = batch_of(&[None, Some("k")], Compression::Snappy);
        let out = conform(b.clone(), &config(&[]), 1_000).unwrap();
        assert_eq!(out, b);
    }

    #[test]
    fn given_a_named_codec_batches_of_other_codecs_are_recompressed_with_it() {
        for (name, codec) in [
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
            ("uncompressed", Compression::None),
        ] {
            let c = config(&[("compression.type", name)]);
            for from in [Compression::None, Compression::Gzip, Compression::Zstd] {
                let b = batch_of(&[Some("a"), None], from);
                let out = conform(b.clone(), &c, 1_000).unwrap();
                assert_eq!(codec_of(&out), codec, "{from:?} -> {name}");
                let h = batch::validate(&out, &c.limits(), 1_000).unwrap();
                let unpacked = codec::records(&out, &h, 1 << 20).unwrap();
                let plain = build::batch(&records(&[Some("a"), None]), 1_000);
                assert_eq!(&unpacked[..], &plain[batch::HEADER_LEN..]);
                if from == codec {
                    assert_eq!(out, b, "same codec: untouched");
                }
            }
        }
    }

    #[test]
    fn given_a_compacted_topic_keyless_records_are_refused_with_invalid_record() {
        for policy in ["compact", "compact,delete"] {
            let c = config(&[("cleanup.policy", policy)]);
            for codec in [Compression::None, Compression::Lz4] {
                let keyed = batch_of(&[Some("a"), Some("b")], codec);
                assert!(conform(keyed, &c, 1_000).is_ok());
                let keyless = batch_of(&[Some("a"), None], codec);
                let e = conform(keyless, &c, 1_000).unwrap_err();
                assert_eq!(
                    e.kafka_code(),
                    KafkaCode::InvalidRecord,
                    "{policy} {codec:?}"
                );
                assert!(e.to_string().contains("without key"), "{e}");
            }
        }
        let keyless = batch_of(&[None], Compression::None);
        assert!(
            conform(keyless, &config(&[]), 1_000).is_ok(),
            "delete policy"
        );
    }

    #[test]
    fn given_a_damaged_batch_the_policy_answers_as_the_engine_would() {
        let mut b = batch_of(&[Some("a")], Compression::None);
        let last = b.len() - 1;
        b[last] ^= 1;
        let c = config(&[("compression.type", "zstd")]);
        let e = conform(b, &c, 1_000).unwrap_err();
        assert_eq!(e.kafka_code(), KafkaCode::CorruptMessage);
    }
}
