//! Idempotent producers (KIP-98): what a partition remembers about each
//! producer so that a retried batch is not written twice and a lost one is
//! noticed.
//!
//! A batch with a producer id (`producerId ≥ 0`) carries the producer's
//! epoch and the sequence number of its first record; its records take the
//! sequence numbers that follow (wrapping from `i32::MAX` to 0). For each
//! producer the partition keeps its epoch, the sequence and offset ranges
//! of its last [`BATCHES_KEPT`] batches and the largest timestamp it wrote.
//! A produced batch is checked against that entry before it gets offsets:
//!
//! | the batch                                        | answer                               |
//! |--------------------------------------------------|--------------------------------------|
//! | no producer id                                   | appended, nothing checked            |
//! | transactional                                    | INVALID_TXN_STATE (no transactions yet) |
//! | producer id but a negative sequence or epoch     | INVALID_RECORD                       |
//! | same epoch, same sequence range as a kept batch  | not appended; the kept batch's offsets (a retry) |
//! | epoch below the entry's                          | INVALID_PRODUCER_EPOCH               |
//! | epoch above the entry's, sequence 0              | appended; the entry starts over      |
//! | epoch above the entry's, other sequence          | OUT_OF_ORDER_SEQUENCE_NUMBER         |
//! | same epoch, first sequence follows the last one  | appended                             |
//! | same epoch, anything else                        | OUT_OF_ORDER_SEQUENCE_NUMBER         |
//! | unknown producer, sequence 0                     | appended; a new entry                |
//! | unknown producer, other sequence                 | UNKNOWN_PRODUCER_ID                  |
//!
//! The last row is Kafka 2.x's rule (current Kafka accepts any sequence from
//! a producer it does not know). Sluice keeps the stricter answer: a
//! producer is unknown only after its state expired or all its batches were
//! removed by retention, and clients answer UNKNOWN_PRODUCER_ID by starting
//! a new sequence (KIP-360), whereas accepting a sequence from the middle
//! of a stream would hide a lost batch.
//!
//! ## Lifetime of an entry
//! * updated by every append of the producer's batches;
//! * removed once every batch it describes is below the log start offset
//!   (retention, DeleteRecords), and after `producer.id.expiration.ms`
//!   without a batch (measured on batch timestamps, as Kafka does);
//! * at most [`ProducerTable::max`] entries per partition: a new producer
//!   beyond that evicts the one that wrote least recently (Kafka has no
//!   bound; a client inventing producer ids must not grow broker memory).
//!
//! ## Snapshots: `<offset, 20 digits>.snapshot`
//! The table as it is after every batch below `offset`, in a
//! [`crate::framed`] file (magic `SLPS`, version 1) whose payload is the
//! rkyv-encoded [`SnapshotPayload`]. Kafka uses the same file names with
//! its own format; the two are not interchangeable. A snapshot is written
//! when a segment rolls (at the new segment's base offset) and when the
//! partition closes; the newest [`SNAPSHOTS_KEPT`] are kept. Recovery loads
//! the newest valid snapshot at or below the recovered log end (those above
//! it describe batches a crash cut off, and are deleted), then replays the
//! batch headers from its offset to the log end. With no usable snapshot it
//! replays from the base of the second-to-last segment, as Kafka does.

use std::collections::HashMap;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::batch::BatchHeader;
use crate::error::KafkaCode;
use crate::framed;

/// Batches remembered per producer: a client has at most five in flight.
pub const BATCHES_KEPT: usize = 5;
/// Snapshot files kept per partition.
pub const SNAPSHOTS_KEPT: usize = 2;
/// Default bound on producers remembered per partition.
pub const PRODUCERS_MAX: usize = 4096;
pub const SNAPSHOT_EXT: &str = "snapshot";
const MAGIC: &[u8; 4] = b"SLPS";
const VERSION: u16 = 1;

/// One batch of a producer: its sequence and offset ranges.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSeq {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What a partition knows about one producer.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    /// Oldest first, at most [`BATCHES_KEPT`].
    pub batches: Vec<BatchSeq>,
    /// The largest batch timestamp this producer wrote.
    pub last_timestamp: i64,
}

impl ProducerEntry {
    pub fn last_sequence(&self) -> i32 {
        self.batches.last().map_or(-1, |b| b.last_seq)
    }

    fn last_offset(&self) -> i64 {
        self.batches.last().map_or(-1, |b| b.last_offset)
    }
}

/// The payload of a snapshot file.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPayload {
    pub offset: i64,
    pub producers: Vec<ProducerEntry>,
}

/// Why a producer's batch is refused, with its Kafka error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("out of order sequence {got} from producer {producer_id} (epoch {epoch}): expected {expected}")]
    OutOfOrder {
        producer_id: i64,
        epoch: i16,
        got: i32,
        expected: i32,
    },
    #[error("producer {producer_id} epoch {got} is older than its current epoch {current}")]
    InvalidEpoch {
        producer_id: i64,
        got: i16,
        current: i16,
    },
    #[error("producer {producer_id} is unknown to this partition and sent sequence {got}, not 0")]
    UnknownProducer { producer_id: i64, got: i32 },
    #[error("producer {producer_id} sent sequence {sequence} and epoch {epoch}")]
    InvalidFields {
        producer_id: i64,
        epoch: i16,
        sequence: i32,
    },
    #[error("transactional batches are not supported yet")]
    Transactional,
}

impl ProducerError {
    /// The Kafka error code.
    pub fn kafka_code(&self) -> KafkaCode {
        match self {
            Self::OutOfOrder { .. } => KafkaCode::OutOfOrderSequenceNumber,
            Self::InvalidEpoch { .. } => KafkaCode::InvalidProducerEpoch,
            Self::Transactional => KafkaCode::InvalidTxnState,
            Self::UnknownProducer { .. } => KafkaCode::UnknownProducerId,
            Self::InvalidFields { .. } => KafkaCode::InvalidRecord,
        }
    }
}

/// What to do with a producer's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// A retry of a batch already in the log, at these offsets.
    Duplicate(BatchSeq),
}

/// The sequence number `delta` records after `base`, wrapping like Kafka.
pub fn sequence_after(base: i32, delta: i32) -> i32 {
    if base > i32::MAX - delta {
        delta - (i32::MAX - base) - 1
    } else {
        base + delta
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (last == i32::MAX && next == 0)
}

/// Every producer a partition knows, bounded.
#[derive(Clone, Debug)]
pub struct ProducerTable {
    entries: HashMap<i64, ProducerEntry>,
    max: usize,
}

impl Default for ProducerTable {
    fn default() -> Self {
        Self::new(PRODUCERS_MAX)
    }
}

impl ProducerTable {
    pub fn new(max: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max: max.max(1),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    /// Every entry, by producer id.
    pub fn entries(&self) -> Vec<ProducerEntry> {
        let mut v: Vec<ProducerEntry> = self.entries.values().cloned().collect();
        v.sort_by_key(|e| e.producer_id);
        v
    }

    /// Checks a produced batch (offsets not yet assigned) against the table.
    pub fn check(&self, h: &BatchHeader) -> Result<Verdict, ProducerError> {
        if h.producer_id < 0 {
            return Ok(Verdict::Append);
        }
        if h.is_transactional() {
            return Err(ProducerError::Transactional);
        }
        let (pid, epoch, first) = (h.producer_id, h.producer_epoch, h.base_sequence);
        if first < 0 || epoch < 0 {
            return Err(ProducerError::InvalidFields {
                producer_id: pid,
                epoch,
                sequence: first,
            });
        }
        let Some(e) = self.entries.get(&pid) else {
            return if first == 0 {
                Ok(Verdict::Append)
            } else {
                Err(ProducerError::UnknownProducer {
                    producer_id: pid,
                    got: first,
                })
            };
        };
        if epoch < e.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: pid,
                got: epoch,
                current: e.epoch,
            });
        }
        let out_of_order = |expected| ProducerError::OutOfOrder {
            producer_id: pid,
            epoch,
            got: first,
            expected,
        };
        if epoch > e.epoch {
            return if first == 0 {
                Ok(Verdict::Append)
            } else {
                Err(out_of_order(0))
            };
        }
        let last = sequence_after(first, h.last_offset_delta);
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Verdict::Duplicate(*b));
        }
        match e.batches.last() {
            Some(b) if !in_sequence(b.last_seq, first) => {
                Err(out_of_order(sequence_after(b.last_seq, 1)))
            }
            _ => Ok(Verdict::Append),
        }
    }

    /// Records a batch that is in the log (offsets assigned): after an
    /// append, and when replaying the log.
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let pid = h.producer_id;
        if !self.entries.contains_key(&pid) && self.entries.len() >= self.max {
            let oldest = self
                .entries
                .values()
                .min_by_key(|e| (e.last_timestamp, e.last_offset()))
                .map(|e| e.producer_id);
            if let Some(o) = oldest {
                self.entries.remove(&o);
            }
        }
        let e = self.entries.entry(pid).or_insert_with(|| ProducerEntry {
            producer_id: pid,
            epoch: h.producer_epoch,
            batches: Vec::with_capacity(BATCHES_KEPT),
            last_timestamp: h.max_timestamp,
        });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        if e.batches.len() == BATCHES_KEPT {
            e.batches.remove(0);
        }
        e.batches.push(BatchSeq {
            first_seq: h.base_sequence,
            last_seq: sequence_after(h.base_sequence, h.last_offset_delta),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        e.last_timestamp = e.last_timestamp.max(h.max_timestamp);
    }

    /// Forgets producers whose batches all lie below `log_start`.
    pub fn evict_below(&mut self, log_start: i64) {
        self.entries.retain(|_, e| e.last_offset() >= log_start);
    }

    /// Forgets producers idle for `expiration_ms` (`producer.id.expiration.ms`).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) {
        if expiration_ms < 0 {
            return;
        }
        self.entries
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp) < expiration_ms);
    }

    /// Forgets every batch at or after `end` (a truncated log); producers
    /// left with no batch are forgotten.
    pub fn truncate_from(&mut self, end: i64) {
        self.entries.retain(|_, e| {
            e.batches.retain(|b| b.last_offset < end);
            !e.batches.is_empty()
        });
    }

    /// The table as a snapshot file for log offset `offset`.
    pub fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let payload = SnapshotPayload {
            offset,
            producers: self.entries(),
        };
        let bytes =
            rkyv::to_bytes::<rancor::Error>(&payload).expect("serialising to memory cannot fail");
        framed::encode(MAGIC, VERSION, offset as u64, &bytes)
    }

    /// Decodes a snapshot file into a table bounded by `max`, and its offset.
    pub fn decode_snapshot(bytes: &[u8], max: usize) -> Result<(i64, Self), framed::FrameError> {
        let per_entry = 64 + BATCHES_KEPT * 24;
        let (position, payload) =
            framed::decode(bytes, MAGIC, VERSION, 1024 + max.saturating_mul(per_entry))?;
        let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let p = rkyv::from_bytes::<SnapshotPayload, rancor::Error>(&aligned)
            .map_err(|e| framed::FrameError::Payload(e.to_string()))?;
        if p.offset as u64 != position || p.offset < 0 {
            return Err(framed::FrameError::Payload(
                "header and payload disagree on the offset".into(),
            ));
        }
        let mut t = Self::new(max);
        for e in p.producers {
            if e.batches.len() > BATCHES_KEPT || e.batches.is_empty() || t.entries.len() >= max {
                return Err(framed::FrameError::Payload(format!(
                    "producer {} holds {} batches",
                    e.producer_id,
                    e.batches.len()
                )));
            }
            t.entries.insert(e.producer_id, e);
        }
        Ok((p.offset, t))
    }
}

/// The file name of the snapshot for `offset`.
pub fn snapshot_name(offset: i64) -> String {
    crate::segment::file_name(crate::types::Offset(offset), SNAPSHOT_EXT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build;

    fn header(pid: i64, epoch: i16, seq: i32, count: usize, base_offset: i64) -> BatchHeader {
        let mut b = build::simple(count, 3, b'x', 1_000);
        build::set_producer(&mut b, pid, epoch, seq);
        let mut h = BatchHeader::parse(&b).expect("a header");
        h.base_offset = base_offset;
        h
    }

    /// Checks and, when it is appended, records a batch at `*end`.
    fn produce(
        t: &mut ProducerTable,
        end: &mut i64,
        h: BatchHeader,
    ) -> Result<Verdict, ProducerError> {
        let v = t.check(&h)?;
        if v == Verdict::Append {
            let mut h = h;
            h.base_offset = *end;
            t.record(&h);
            *end = h.last_offset() + 1;
        }
        Ok(v)
    }

    #[test]
    fn a_retried_batch_gets_its_original_offsets_and_a_gap_or_stale_epoch_is_refused() {
        let mut t = ProducerTable::default();
        let mut end = 0;
        assert_eq!(
            produce(&mut t, &mut end, header(7, 0, 0, 3, -1)),
            Ok(Verdict::Append)
        );
        assert_eq!(
            produce(&mut t, &mut end, header(7, 0, 3, 2, -1)),
            Ok(Verdict::Append)
        );
        assert_eq!(end, 5);
        // The first batch again: a retry.
        assert_eq!(
            produce(&mut t, &mut end, header(7, 0, 0, 3, -1)),
            Ok(Verdict::Duplicate(BatchSeq {
                first_seq: 0,
                last_seq: 2,
                first_offset: 0,
                last_offset: 2
            }))
        );
        assert_eq!(end, 5);
        // A gap.
        let gap = produce(&mut t, &mut end, header(7, 0, 9, 1, -1)).unwrap_err();
        assert_eq!(gap.kafka_code() as i16, 45);
        // A bump to epoch 1 must start at 0; then epoch 0 is stale.
        assert_eq!(
            produce(&mut t, &mut end, header(7, 1, 4, 1, -1))
                .unwrap_err()
                .kafka_code() as i16,
            45
        );
        assert_eq!(
            produce(&mut t, &mut end, header(7, 1, 0, 1, -1)),
            Ok(Verdict::Append)
        );
        assert_eq!(
            produce(&mut t, &mut end, header(7, 0, 5, 1, -1))
                .unwrap_err()
                .kafka_code() as i16,
            47
        );
        // An unknown producer must start at 0.
        assert_eq!(
            produce(&mut t, &mut end, header(8, 0, 5, 1, -1))
                .unwrap_err()
                .kafka_code() as i16,
            59
        );
        assert_eq!(
            produce(&mut t, &mut end, header(8, 0, 0, 1, -1)),
            Ok(Verdict::Append)
        );
        // No producer id: nothing checked.
        let plain = BatchHeader::parse(&build::simple(1, 1, b'a', 1)).unwrap();
        assert_eq!(t.check(&plain), Ok(Verdict::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_recognised_as_retries() {
        let mut t = ProducerTable::default();
        let mut end = 0;
        for i in 0..7 {
            assert_eq!(
                produce(&mut t, &mut end, header(1, 0, i, 1, -1)),
                Ok(Verdict::Append)
            );
        }
        assert!(matches!(
            t.check(&header(1, 0, 6, 1, -1)),
            Ok(Verdict::Duplicate(_))
        ));
        assert!(matches!(
            t.check(&header(1, 0, 2, 1, -1)),
            Ok(Verdict::Duplicate(_))
        ));
        // Batch 1 is forgotten: it is neither a retry nor the next one.
        assert_eq!(
            t.check(&header(1, 0, 1, 1, -1)).unwrap_err().kafka_code() as i16,
            45
        );
    }

    #[test]
    fn sequences_wrap_from_max_to_zero() {
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
        let mut t = ProducerTable::default();
        let mut end = 0;
        let mut first = header(3, 0, 0, 1, -1);
        t.record(&{
            first.base_sequence = i32::MAX - 1;
            first.base_offset = 0;
            first.last_offset_delta = 1;
            first
        });
        end += 2;
        assert_eq!(
            produce(&mut t, &mut end, header(3, 0, 0, 1, -1)),
            Ok(Verdict::Append)
        );
    }

    #[test]
    fn malformed_and_transactional_batches_are_refused() {
        let t = ProducerTable::default();
        let mut h = header(1, 0, 0, 1, -1);
        h.base_sequence = -1;
        assert_eq!(t.check(&h).unwrap_err().kafka_code() as i16, 87);
        let mut h = header(1, 0, 0, 1, -1);
        h.attributes |= 0x10;
        assert_eq!(t.check(&h).unwrap_err().kafka_code() as i16, 48);
    }

    #[test]
    fn entries_expire_by_time_by_log_start_and_by_the_bound() {
        let mut t = ProducerTable::new(2);
        let mut end = 0;
        for pid in 0..3 {
            let mut h = header(pid, 0, 0, 1, -1);
            h.max_timestamp = 1_000 + pid;
            produce(&mut t, &mut end, h).unwrap();
        }
        // Producer 0 wrote least recently: evicted by the bound.
        assert_eq!(t.len(), 2);
        assert!(t.get(0).is_none());
        t.evict_below(2);
        assert!(t.get(1).is_none() && t.get(2).is_some());
        t.expire(1_002 + 100, 100);
        assert!(t.is_empty());
    }

    #[test]
    fn a_snapshot_restores_the_table_and_damage_is_detected() {
        let mut t = ProducerTable::default();
        let mut end = 0;
        for pid in 0..10 {
            for s in 0..3 {
                produce(&mut t, &mut end, header(pid, 2, s * 2, 2, -1)).unwrap();
            }
        }
        let file = t.encode_snapshot(end);
        let (offset, back) = ProducerTable::decode_snapshot(&file, PRODUCERS_MAX).unwrap();
        assert_eq!(offset, end);
        assert_eq!(back.entries(), t.entries());
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 1;
            if let Ok((o, b)) = ProducerTable::decode_snapshot(&bad, PRODUCERS_MAX) {
                panic!(
                    "flip at {i} decoded to offset {o} with {} producers",
                    b.len()
                );
            }
        }
        // A snapshot holding more producers than the bound is refused.
        assert!(ProducerTable::decode_snapshot(&file, 5).is_err());
    }

    #[test]
    fn truncation_forgets_the_batches_cut_off() {
        let mut t = ProducerTable::default();
        let mut end = 0;
        produce(&mut t, &mut end, header(1, 0, 0, 2, -1)).unwrap();
        produce(&mut t, &mut end, header(1, 0, 2, 2, -1)).unwrap();
        produce(&mut t, &mut end, header(2, 0, 0, 2, -1)).unwrap();
        t.truncate_from(2);
        assert_eq!(t.get(1).unwrap().last_sequence(), 1);
        assert!(t.get(2).is_none());
    }
}
