//! Kafka v2 record batches (magic 2): the unit of storage, replication and
//! transfer. A batch is stored exactly as it arrives on the wire, except for
//! the two fields the broker owns (base offset and partition leader epoch),
//! which the CRC does not cover.
//!
//! ## Layout (big-endian, as Kafka writes it)
//!
//! ```text
//! offset size field
//!      0    8 baseOffset            assigned by the log (rewritten in place)
//!      8    4 batchLength           bytes after this field (total = batchLength + 12)
//!     12    4 partitionLeaderEpoch  assigned by the leader (rewritten in place)
//!     16    1 magic                 must be 2
//!     17    4 crc                   CRC-32C (Castagnoli) of bytes 21..end
//!     21    2 attributes            bits 0-2 compression, 3 timestamp type,
//!                                   4 transactional, 5 control, 6 delete horizon
//!     23    4 lastOffsetDelta
//!     27    8 baseTimestamp
//!     35    8 maxTimestamp
//!     43    8 producerId
//!     51    2 producerEpoch
//!     53    4 baseSequence
//!     57    4 recordsCount
//!     61    … records (compressed as a whole when compression != 0)
//! ```
//!
//! Each record (uncompressed form): `length varint | attributes i8 |
//! timestampDelta varlong | offsetDelta varint | keyLength varint | key |
//! valueLength varint | value | headerCount varint | headers`, every header
//! `keyLength varint | key | valueLength varint | value`. Varints are zig-zag.
//!
//! ## Invariants checked before a batch is stored ([`validate`])
//! * `batchLength + 12` equals the bytes given, and is at least [`HEADER_LEN`];
//! * the batch is no larger than `max.message.bytes`;
//! * magic is 2, the CRC matches, the compression codec is known;
//! * `recordsCount > 0` and `lastOffsetDelta == recordsCount - 1`, and the
//!   count is bounded by the bytes that carry it (see [`validate`]);
//! * uncompressed records parse exactly: every length is in bounds, offset
//!   deltas run 0, 1, 2, … and the records end where the batch ends.
//!
//! The same CRC check runs again when a segment is recovered or verified
//! (`scan`), so a batch is checked when written and when read back.

use crate::error::KafkaCode;

/// Bytes of the v2 batch header, up to and including `recordsCount`.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The only batch format Sluice stores.
pub const MAGIC_V2: i8 = 2;
/// Smallest encoding of one uncompressed record: length, attributes,
/// timestampDelta, offsetDelta, keyLength, valueLength, headerCount, one byte
/// each.
pub const RECORD_LEN_MIN: usize = 7;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
/// The CRC covers everything from the attributes to the end of the batch.
pub const CRC_START: usize = 21;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;
const _: () = assert!(RECORDS_COUNT + 4 == HEADER_LEN);
const _: () = assert!(BATCH_LENGTH + 4 == LOG_OVERHEAD);

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Every codec, by its attributes bits.
    pub const ALL: [Compression; 5] = [Self::None, Self::Gzip, Self::Snappy, Self::Lz4, Self::Zstd];

    /// Its attributes bits.
    pub fn bits(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    fn from_bits(bits: i16) -> Option<Self> {
        Some(match bits {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            _ => return None,
        })
    }
}

/// How a batch's timestamps were set (`message.timestamp.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The decoded fixed header of a v2 batch. Parsing it checks nothing but the
/// length of the slice; [`validate`] and [`check_stored`] check the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Decodes the header from the first [`HEADER_LEN`] bytes of `b`.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(Self {
            base_offset: be_i64(b, BASE_OFFSET),
            batch_length: be_i32(b, BATCH_LENGTH),
            partition_leader_epoch: be_i32(b, LEADER_EPOCH),
            magic: b[MAGIC] as i8,
            crc: be_i32(b, CRC) as u32,
            attributes: be_i16(b, ATTRIBUTES),
            last_offset_delta: be_i32(b, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(b, BASE_TIMESTAMP),
            max_timestamp: be_i64(b, MAX_TIMESTAMP),
            producer_id: be_i64(b, PRODUCER_ID),
            producer_epoch: be_i16(b, PRODUCER_EPOCH),
            base_sequence: be_i32(b, BASE_SEQUENCE),
            records_count: be_i32(b, RECORDS_COUNT),
        })
    }

    /// Total bytes of the batch on disk and on the wire, or `None` when the
    /// length field cannot describe a batch.
    pub fn total_len(&self) -> Option<usize> {
        let len = usize::try_from(self.batch_length).ok()?;
        let total = len.checked_add(LOG_OVERHEAD)?;
        (total >= HEADER_LEN).then_some(total)
    }

    /// The last offset in the batch. Saturates: the base offset of a batch
    /// read back from disk is not covered by its CRC.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    pub fn compression(&self) -> Option<Compression> {
        Compression::from_bits(self.attributes & ATTR_COMPRESSION_MASK)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Why a batch was refused, with the Kafka error code it is answered with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is shorter than its {HEADER_LEN}-byte header ({0} bytes)")]
    TooShort(usize),
    #[error("batch length field says {declared} bytes but {actual} were given")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("batch of {size} bytes is larger than max.message.bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("batch magic {0} is not 2")]
    Magic(i8),
    #[error("batch CRC-32C {stored:#010x} does not match the computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("unknown compression codec {0}")]
    Compression(i16),
    #[error("invalid record count {count} for lastOffsetDelta {last_offset_delta}")]
    RecordCount { count: i32, last_offset_delta: i32 },
    #[error("record count {count} cannot fit in {bytes} bytes of records")]
    RecordCountBound { count: i32, bytes: usize },
    #[error("malformed record {index}: {why}")]
    Record { index: i32, why: &'static str },
    #[error("control batches are only written by the broker")]
    ControlFromClient,
    #[error("timestamp {timestamp} is outside the allowed range around {now}")]
    Timestamp { timestamp: i64, now: i64 },
    #[error("{codec:?} records do not decompress: {why}")]
    Decompress { codec: Compression, why: String },
    #[error("records decompress to more than {max} bytes")]
    DecompressedTooLarge { max: usize },
    #[error("compacted topic cannot accept message without key (record {index})")]
    KeylessOnCompactedTopic { index: i32 },
}

impl BatchError {
    /// The Kafka error code a produce request receives for this batch.
    pub fn kafka_code(&self) -> KafkaCode {
        match self {
            Self::TooShort(_) | Self::LengthMismatch { .. } | Self::Crc { .. } => {
                KafkaCode::CorruptMessage
            }
            Self::Compression(_) | Self::Decompress { .. } => KafkaCode::CorruptMessage,
            Self::TooLarge { .. } | Self::DecompressedTooLarge { .. } => KafkaCode::MessageTooLarge,
            Self::Magic(_)
            | Self::RecordCount { .. }
            | Self::RecordCountBound { .. }
            | Self::Record { .. }
            | Self::ControlFromClient
            | Self::KeylessOnCompactedTopic { .. } => KafkaCode::InvalidRecord,
            Self::Timestamp { .. } => KafkaCode::InvalidTimestamp,
        }
    }
}

/// Limits a produced batch is checked against; they come from the topic's
/// configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `max.message.bytes`: the largest batch accepted, in bytes.
    pub batch_bytes_max: usize,
    /// `message.timestamp.before.max.ms` and `.after.max.ms`, applied to
    /// CreateTime batches; `i64::MAX` disables the check.
    pub timestamp_before_ms_max: i64,
    pub timestamp_after_ms_max: i64,
}

/// Checks a batch produced by a client before it is stored. `batch` must be
/// exactly one batch. `now_ms` is the broker's clock, for timestamp bounds.
///
/// Record counts are bounded before anything counts on them: an uncompressed
/// batch cannot hold more records than [`RECORD_LEN_MIN`]-byte records fit in
/// its payload, and a compressed one no more than `max.message.bytes` records
/// (a decoder that pre-allocates by the count therefore allocates at most in
/// proportion to the configured limit).
pub fn validate(batch: &[u8], limits: &Limits, now_ms: i64) -> Result<BatchHeader, BatchError> {
    let header = check_frame(batch, limits.batch_bytes_max)?;
    if header.is_control() {
        return Err(BatchError::ControlFromClient);
    }
    if header.timestamp_type() == TimestampType::CreateTime {
        let ts = header.max_timestamp;
        let too_old = ts < now_ms.saturating_sub(limits.timestamp_before_ms_max);
        let too_new = ts > now_ms.saturating_add(limits.timestamp_after_ms_max);
        if too_old || too_new {
            return Err(BatchError::Timestamp {
                timestamp: ts,
                now: now_ms,
            });
        }
    }
    Ok(header)
}

/// Checks a batch as it lies in a segment: the frame, magic, CRC, counts and
/// (uncompressed) records, with no topic limits. Used by recovery and
/// verification, so that what is read back is checked as it was when written.
pub fn check_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    check_frame(batch, usize::MAX)
}

fn check_frame(batch: &[u8], bytes_max: usize) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch).ok_or(BatchError::TooShort(batch.len()))?;
    check_length(&header, batch.len(), bytes_max)?;
    check_crc(&header, crc32c::crc32c(&batch[CRC_START..]))?;
    let compression = check_counts(&header, batch.len(), bytes_max)?;
    if compression == Compression::None {
        check_records(&batch[HEADER_LEN..], header.records_count)?;
    }
    Ok(header)
}

/// Checks a batch in the order Kafka does, in three steps so that a batch too
/// large to hold in memory can have its CRC computed in pieces between them:
/// [`check_length`] (length field, size limit, magic), [`check_crc`], then
/// [`check_counts`] (codec and record counts).
pub fn check_length(header: &BatchHeader, len: usize, bytes_max: usize) -> Result<(), BatchError> {
    let declared = i64::from(header.batch_length) + LOG_OVERHEAD as i64;
    if declared != len as i64 || len < HEADER_LEN {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: len,
        });
    }
    if len > bytes_max {
        return Err(BatchError::TooLarge {
            size: len,
            max: bytes_max,
        });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::Magic(header.magic));
    }
    Ok(())
}

/// Compares the stored CRC with `computed`, the CRC-32C of bytes
/// [`CRC_START`]`..` of the batch.
pub fn check_crc(header: &BatchHeader, computed: u32) -> Result<(), BatchError> {
    if computed != header.crc {
        return Err(BatchError::Crc {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Checks the codec and the record counts, bounding the count by the bytes
/// that carry it.
pub fn check_counts(
    header: &BatchHeader,
    len: usize,
    bytes_max: usize,
) -> Result<Compression, BatchError> {
    let compression = header.compression().ok_or(BatchError::Compression(
        header.attributes & ATTR_COMPRESSION_MASK,
    ))?;
    let count = header.records_count;
    if count <= 0 || header.last_offset_delta != count - 1 {
        return Err(BatchError::RecordCount {
            count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    let payload = len - HEADER_LEN;
    let count_max = match compression {
        Compression::None => payload / RECORD_LEN_MIN,
        _ => bytes_max.min(i32::MAX as usize),
    };
    if count as usize > count_max {
        return Err(BatchError::RecordCountBound {
            count,
            bytes: payload,
        });
    }
    Ok(compression)
}

/// Walks `count` uncompressed records and checks that they fill `payload`
/// exactly. Allocates nothing.
pub(crate) fn check_records(payload: &[u8], count: i32) -> Result<(), BatchError> {
    let mut at = 0usize;
    for index in 0..count {
        let err = |why| BatchError::Record { index, why };
        let len = read_varint(payload, &mut at).ok_or(err("record length"))?;
        let len = usize::try_from(len).map_err(|_| err("negative record length"))?;
        let end = at
            .checked_add(len)
            .filter(|&e| e <= payload.len())
            .ok_or(err("record longer than the batch"))?;
        let rec = &payload[..end];
        if at >= end {
            return Err(err("empty record"));
        }
        at += 1; // attributes
        read_varlong(rec, &mut at).ok_or(err("timestamp delta"))?;
        let offset_delta = read_varint(rec, &mut at).ok_or(err("offset delta"))?;
        if offset_delta != index {
            return Err(err("offset delta out of sequence"));
        }
        skip_bytes(rec, &mut at, true).ok_or(err("key"))?;
        skip_bytes(rec, &mut at, true).ok_or(err("value"))?;
        let headers = read_varint(rec, &mut at).ok_or(err("header count"))?;
        if headers < 0 {
            return Err(err("negative header count"));
        }
        for _ in 0..headers {
            skip_bytes(rec, &mut at, false).ok_or(err("header key"))?;
            skip_bytes(rec, &mut at, true).ok_or(err("header value"))?;
        }
        if at != end {
            return Err(err("record length does not match its fields"));
        }
    }
    if at != payload.len() {
        return Err(BatchError::Record {
            index: count,
            why: "bytes after the last record",
        });
    }
    Ok(())
}

/// One record of an uncompressed batch, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset_delta: i32,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// The records of an uncompressed batch that [`validate`] accepted;
/// `None` for a compressed batch, whose records cannot be read without
/// decompressing it, or for one whose records do not parse.
pub fn records(batch: &[u8]) -> Option<Vec<RecordView<'_>>> {
    let header = BatchHeader::parse(batch)?;
    if header.compression()? != Compression::None {
        return None;
    }
    records_in(batch.get(HEADER_LEN..)?, &header)
}

/// The records of `payload`, the uncompressed records of the batch `header`
/// describes (a decompressed payload, or an uncompressed batch's own).
pub fn records_in<'a>(payload: &'a [u8], header: &BatchHeader) -> Option<Vec<RecordView<'a>>> {
    let mut out = Vec::with_capacity(
        (payload.len() / RECORD_LEN_MIN).min(header.records_count.max(0) as usize),
    );
    let mut at = 0usize;
    for _ in 0..header.records_count {
        let len = usize::try_from(read_varint(payload, &mut at)?).ok()?;
        let end = at.checked_add(len).filter(|&e| e <= payload.len())?;
        let rec = &payload[..end];
        let mut field = at + 1;
        let ts_delta = read_varlong(rec, &mut field)?;
        let offset_delta = read_varint(rec, &mut field)?;
        let key = read_bytes(rec, &mut field)?;
        let value = read_bytes(rec, &mut field)?;
        out.push(RecordView {
            offset_delta,
            timestamp: header.base_timestamp.wrapping_add(ts_delta),
            key,
            value,
        });
        at = end;
    }
    Some(out)
}

/// The offset delta and timestamp of every record of an uncompressed batch
/// that [`validate`] accepted; `None` for a compressed batch.
pub fn record_timestamps(batch: &[u8]) -> Option<Vec<(i32, i64)>> {
    Some(
        records(batch)?
            .into_iter()
            .map(|r| (r.offset_delta, r.timestamp))
            .collect(),
    )
}

/// Reads a varint-length-prefixed nullable byte string.
fn read_bytes<'a>(b: &'a [u8], at: &mut usize) -> Option<Option<&'a [u8]>> {
    let start = *at;
    skip_bytes(b, at, true)?;
    let mut len_at = start;
    let len = read_varint(b, &mut len_at)?;
    if len < 0 {
        return Some(None);
    }
    Some(Some(&b[len_at..*at]))
}

/// Skips a varint-length-prefixed byte string; -1 (null) only where allowed.
fn skip_bytes(b: &[u8], at: &mut usize, nullable: bool) -> Option<()> {
    let len = read_varint(b, at)?;
    if len == -1 && nullable {
        return Some(());
    }
    let len = usize::try_from(len).ok()?;
    let end = at.checked_add(len).filter(|&e| e <= b.len())?;
    *at = end;
    Some(())
}

/// Reads a zig-zag varint of at most 5 bytes.
pub fn read_varint(b: &[u8], at: &mut usize) -> Option<i32> {
    let raw = read_unsigned(b, at, 5)?;
    let raw = u32::try_from(raw).ok()?;
    Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zig-zag varlong of at most 10 bytes.
pub fn read_varlong(b: &[u8], at: &mut usize) -> Option<i64> {
    let raw = read_unsigned(b, at, 10)?;
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn read_unsigned(b: &[u8], at: &mut usize, bytes_max: usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..bytes_max {
        let byte = *b.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Writes the fields the broker owns into a batch: its base offset and the
/// leader epoch it was appended under. Neither is covered by the CRC.
pub fn assign(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Stamps a batch with the broker's append time
/// (`message.timestamp.type=LogAppendTime`): sets the timestamp-type bit and
/// `maxTimestamp`, then recomputes the CRC, as Kafka does.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, ATTRIBUTES) | ATTR_TIMESTAMP_TYPE;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Seals a batch whose records were replaced (`codec` records after the
/// header): sets its length field and codec bits and recomputes its CRC.
/// The other header fields are the original batch's.
pub fn seal(batch: &mut [u8], codec: Compression) {
    assert!(batch.len() >= HEADER_LEN, "a batch holds its header");
    let batch_length = i32::try_from(batch.len() - LOG_OVERHEAD).expect("batch under 2 GiB");
    batch[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (be_i16(batch, ATTRIBUTES) & !ATTR_COMPRESSION_MASK) | codec.bits();
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Builds uncompressed v2 batches; used by tests, benchmarks and tools that
/// need well-formed batches without a Kafka client.
pub mod build {
    use super::*;

    /// One record: key, value and headers.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Record {
        pub key: Option<Vec<u8>>,
        pub value: Option<Vec<u8>>,
        pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    }

    pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// Bytes of `v` as a zigzag varint.
    pub(crate) fn varint_len(v: i64) -> usize {
        let z = ((v << 1) ^ (v >> 63)) as u64;
        (64 - z.max(1).leading_zeros() as usize).div_ceil(7)
    }

    fn bytes_len(b: Option<&[u8]>) -> usize {
        b.map_or(1, |b| varint_len(b.len() as i64) + b.len())
    }

    fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            None => put_varint(out, -1),
            Some(b) => {
                put_varint(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }

    /// Encodes one uncompressed CreateTime batch (base offset 0) straight
    /// into the end of a caller's buffer, a record at a time: the header is
    /// reserved by [`Writer::begin`] and filled, CRC last, by
    /// [`Writer::finish`]. A producer that sends many batches reuses one
    /// buffer and copies each value once.
    pub struct Writer {
        start: usize,
        count: i32,
    }

    impl Writer {
        /// Reserves the batch header at the end of `out`.
        pub fn begin(out: &mut Vec<u8>) -> Writer {
            let start = out.len();
            out.resize(start + HEADER_LEN, 0);
            Writer { start, count: 0 }
        }

        /// Appends a record; returns where its value starts in `out`, so
        /// that the caller may change the value before [`Writer::finish`].
        pub fn record(
            &mut self,
            out: &mut Vec<u8>,
            key: Option<&[u8]>,
            value: Option<&[u8]>,
            headers: &[(Vec<u8>, Option<Vec<u8>>)],
        ) -> usize {
            let delta = i64::from(self.count);
            let len = 2 // attributes, timestamp delta 0
                + varint_len(delta)
                + bytes_len(key)
                + bytes_len(value)
                + varint_len(headers.len() as i64)
                + headers
                    .iter()
                    .map(|(k, v)| bytes_len(Some(k)) + bytes_len(v.as_deref()))
                    .sum::<usize>();
            out.reserve(varint_len(len as i64) + len);
            put_varint(out, len as i64);
            out.push(0); // attributes
            put_varint(out, 0); // timestamp delta
            put_varint(out, delta);
            put_bytes(out, key);
            let value_at = out.len() + value.map_or(0, |v| varint_len(v.len() as i64));
            put_bytes(out, value);
            put_varint(out, headers.len() as i64);
            for (k, v) in headers {
                put_bytes(out, Some(k));
                put_bytes(out, v.as_deref());
            }
            self.count += 1;
            value_at
        }

        /// Fills the header: every record stamped `timestamp_ms`, the CRC
        /// over the batch as it now stands in `out`.
        pub fn finish(self, out: &mut [u8], timestamp_ms: i64) {
            assert!(self.count > 0, "a batch holds at least one record");
            let b = &mut out[self.start..];
            let batch_length = (b.len() - LOG_OVERHEAD) as i32;
            b[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&0i64.to_be_bytes());
            b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
            b[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
            b[MAGIC] = MAGIC_V2 as u8;
            b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&0i16.to_be_bytes());
            let last_delta = self.count - 1;
            b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&last_delta.to_be_bytes());
            b[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
            b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
            b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
            b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
            b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
            b[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&self.count.to_be_bytes());
            let crc = crc32c::crc32c(&b[CRC_START..]);
            b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        }
    }

    /// Encodes `records` as one uncompressed CreateTime batch with base
    /// offset 0, every record stamped `timestamp_ms`.
    pub fn batch(records: &[Record], timestamp_ms: i64) -> Vec<u8> {
        assert!(!records.is_empty(), "a batch holds at least one record");
        let mut b = Vec::new();
        let mut w = Writer::begin(&mut b);
        for r in records {
            w.record(&mut b, r.key.as_deref(), r.value.as_deref(), &r.headers);
        }
        w.finish(&mut b, timestamp_ms);
        b
    }

    /// Marks `batch` as sent by an idempotent producer and recomputes its
    /// CRC.
    pub fn set_producer(batch: &mut [u8], producer_id: i64, epoch: i16, base_sequence: i32) {
        batch[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
        batch[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
        batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }

    /// A batch of `count` records whose values are `value_len` bytes of
    /// `fill`, keyless.
    pub fn simple(count: usize, value_len: usize, fill: u8, timestamp_ms: i64) -> Vec<u8> {
        let records: Vec<Record> = (0..count)
            .map(|_| Record {
                key: None,
                value: Some(vec![fill; value_len]),
                headers: Vec::new(),
            })
            .collect();
        batch(&records, timestamp_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    const LIMITS: Limits = Limits {
        batch_bytes_max: 1 << 20,
        timestamp_before_ms_max: i64::MAX,
        timestamp_after_ms_max: i64::MAX,
    };

    fn sample() -> Vec<u8> {
        batch(
            &[
                Record {
                    key: Some(b"k1".to_vec()),
                    value: Some(b"hello".to_vec()),
                    headers: vec![(b"h".to_vec(), Some(b"v".to_vec())), (b"n".to_vec(), None)],
                },
                Record {
                    key: None,
                    value: None,
                    headers: vec![],
                },
            ],
            1_700_000_000_000,
        )
    }

    fn recrc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn given_well_formed_batch_when_validated_should_return_its_header() {
        let b = sample();
        let h = validate(&b, &LIMITS, 0).unwrap();
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.compression(), Some(Compression::None));
        assert_eq!(h.total_len(), Some(b.len()));
    }

    #[test]
    fn given_any_flipped_bit_in_crc_range_when_validated_should_fail_with_crc() {
        let b = sample();
        for byte in CRC_START..b.len() {
            let mut c = b.clone();
            c[byte] ^= 0x10;
            assert!(matches!(
                validate(&c, &LIMITS, 0),
                Err(BatchError::Crc { .. })
            ));
        }
    }

    #[test]
    fn given_wrong_length_field_when_validated_should_be_corrupt_message() {
        let mut b = sample();
        b[BATCH_LENGTH + 3] = b[BATCH_LENGTH + 3].wrapping_add(1);
        let e = validate(&b, &LIMITS, 0).unwrap_err();
        assert_eq!(e.kafka_code(), KafkaCode::CorruptMessage);
        assert_eq!(
            validate(&b[..20], &LIMITS, 0).unwrap_err().kafka_code(),
            KafkaCode::CorruptMessage
        );
    }

    #[test]
    fn given_batch_over_max_message_bytes_when_validated_should_be_message_too_large() {
        let b = sample();
        let limits = Limits {
            batch_bytes_max: b.len() - 1,
            ..LIMITS
        };
        assert_eq!(
            validate(&b, &limits, 0).unwrap_err().kafka_code(),
            KafkaCode::MessageTooLarge
        );
    }

    #[test]
    fn given_inconsistent_counts_when_validated_should_be_invalid_record() {
        let mut b = sample();
        b[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&3i32.to_be_bytes());
        recrc(&mut b);
        assert_eq!(
            validate(&b, &LIMITS, 0).unwrap_err().kafka_code(),
            KafkaCode::InvalidRecord
        );
        let mut b = sample();
        b[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&0i32.to_be_bytes());
        b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(-1i32).to_be_bytes());
        recrc(&mut b);
        assert!(matches!(
            validate(&b, &LIMITS, 0),
            Err(BatchError::RecordCount { .. })
        ));
    }

    #[test]
    fn given_huge_record_count_when_validated_should_be_bounded_before_decoding() {
        for compression in [0i16, 4] {
            let mut b = sample();
            let count = i32::MAX;
            b[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&count.to_be_bytes());
            b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(count - 1).to_be_bytes());
            b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&compression.to_be_bytes());
            recrc(&mut b);
            assert!(matches!(
                validate(&b, &LIMITS, 0),
                Err(BatchError::RecordCountBound { .. })
            ));
        }
    }

    #[test]
    fn given_record_with_bad_offset_delta_when_validated_should_be_invalid_record() {
        let mut b = sample();
        // First record: length, attributes, timestamp delta, then offset delta.
        let at = HEADER_LEN + 3;
        assert_eq!(b[at], 0);
        b[at] = 2; // zig-zag 1
        recrc(&mut b);
        assert!(matches!(
            validate(&b, &LIMITS, 0),
            Err(BatchError::Record { index: 0, .. })
        ));
    }

    #[test]
    fn given_wrong_magic_or_codec_or_control_when_validated_should_be_refused() {
        let mut b = sample();
        b[MAGIC] = 1;
        assert_eq!(validate(&b, &LIMITS, 0).unwrap_err(), BatchError::Magic(1));
        let mut b = sample();
        b[ATTRIBUTES + 1] |= 0x07;
        recrc(&mut b);
        assert_eq!(
            validate(&b, &LIMITS, 0).unwrap_err(),
            BatchError::Compression(7)
        );
        let mut b = sample();
        b[ATTRIBUTES + 1] |= 0x20;
        recrc(&mut b);
        assert_eq!(
            validate(&b, &LIMITS, 0).unwrap_err(),
            BatchError::ControlFromClient
        );
    }

    #[test]
    fn given_timestamp_out_of_bounds_when_validated_should_be_invalid_timestamp() {
        let b = sample();
        let limits = Limits {
            timestamp_before_ms_max: 1000,
            timestamp_after_ms_max: 1000,
            ..LIMITS
        };
        let now = 1_700_000_000_000;
        assert!(validate(&b, &limits, now + 999).is_ok());
        let e = validate(&b, &limits, now + 1001).unwrap_err();
        assert_eq!(e.kafka_code(), KafkaCode::InvalidTimestamp);
        assert!(validate(&b, &limits, now - 1001).is_err());
    }

    #[test]
    fn given_assigned_offset_and_log_append_time_should_keep_crc_valid() {
        let mut b = sample();
        assign(&mut b, 42, 7);
        set_log_append_time(&mut b, 99);
        let h = check_stored(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.partition_leader_epoch, 7);
        assert_eq!(h.max_timestamp, 99);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.last_offset(), 43);
    }

    #[test]
    fn the_writer_sizes_every_record_as_it_encodes_it_and_points_at_its_value() {
        for v in [0i64, 1, -1, 63, -64, 64, 8191, 8192, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(varint_len(v), out.len(), "{v}");
        }
        // Lengths around the varint steps (64 and 8192 bytes, as zigzag).
        for len in [0usize, 63, 64, 8191, 8192, 70_000] {
            let mut b = vec![9u8; 5];
            let mut w = Writer::begin(&mut b);
            let value = vec![1u8; len];
            let mut at = Vec::new();
            for i in 0..3 {
                let key = (i == 1).then_some(&b"key"[..]);
                at.push(w.record(&mut b, key, Some(&value), &[]));
            }
            for &a in &at {
                b[a..a + len].fill(7);
            }
            w.finish(&mut b, 5);
            assert_eq!(&b[..5], &[9u8; 5]);
            let stored = &b[5..];
            assert!(check_stored(stored).is_ok(), "{len}");
            let h = BatchHeader::parse(stored).unwrap();
            assert_eq!((h.records_count, h.last_offset_delta), (3, 2));
            let expected: Vec<Record> = (0..3)
                .map(|i| Record {
                    key: (i == 1).then(|| b"key".to_vec()),
                    value: Some(vec![7; len]),
                    headers: vec![],
                })
                .collect();
            assert_eq!(stored, &batch(&expected, 5)[..]);
            assert!(at.iter().all(|&a| b[a..a + len].iter().all(|&x| x == 7)));
        }
    }

    #[test]
    fn varints_round_trip_extremes() {
        for v in [0i64, 1, -1, 63, -64, 64, i32::MAX as i64, i32::MIN as i64] {
            let mut rec = Record {
                key: None,
                value: None,
                headers: vec![],
            };
            rec.key = Some(vec![0; (v.unsigned_abs() % 300) as usize]);
            let b = batch(&[rec], v);
            assert!(check_stored(&b).is_ok());
        }
        let mut at = 0;
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f], &mut at),
            Some(i32::MIN)
        );
        let mut at = 0;
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut at),
            None
        );
    }
}
