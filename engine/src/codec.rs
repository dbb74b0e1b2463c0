//! Record codecs: a v2 batch's records compressed and decompressed as
//! Kafka's clients and brokers write them, so that the broker can look
//! inside a batch (a compacted topic's keys) and rewrite it with another
//! codec (`compression.type`). The log cleaner reuses them.
//!
//! ## Formats (attributes bits 0-2 of the batch, see `batch.rs`)
//!
//! The compressed form covers every record after the 61-byte header; the
//! header itself is never compressed.
//! * 1 **gzip**: RFC 1952, one or more members (Java's `GZIPInputStream`
//!   reads concatenated members, so this does too).
//! * 2 **snappy**: Kafka's Java clients write xerial's framing
//!   (`SnappyOutputStream`): the 8-byte magic `82 'SNAPPY' 00`, a 4-byte
//!   version and a 4-byte compatible version, then blocks, each a 4-byte
//!   big-endian length and a raw snappy block of at most 32 KiB of input.
//!   librdkafka writes one raw snappy block without the framing, which
//!   xerial's reader also accepts; both are read, the framing is written.
//! * 3 **lz4**: the LZ4 frame format (magic `04 22 4D 18`), independent
//!   blocks of at most 64 KiB, no content checksum, as Kafka's
//!   `Lz4BlockOutputStream` writes it.
//! * 4 **zstd**: one or more zstd frames.
//!
//! ## Bounds
//!
//! Decompression never produces more than the `bytes_max` its caller gives
//! (from `max.message.bytes`, see [`decompressed_bytes_max`]): a batch whose
//! records decompress beyond it is refused, having allocated at most
//! `bytes_max` and the codec's own bounded state (a zstd window no larger
//! than `bytes_max` needs; 64 KiB to 4 MiB lz4 blocks; 32 KiB-of-input
//! snappy blocks whose declared size is checked before they are decoded).
//! Corrupt input is an error, never a panic.

use std::borrow::Cow;
use std::io::{Read, Write};

use bytes::{BufMut, BytesMut};

use crate::batch::{self, BatchError, BatchHeader, Compression, HEADER_LEN};

/// How many times `max.message.bytes` a batch's records may decompress to.
/// Kafka sets no bound; a producer's batch rarely compresses better than
/// 10:1 except for filler, and this bounds what one append can allocate.
pub const EXPANSION_MAX: usize = 64;

/// The most bytes a batch's records may decompress to under
/// `max.message.bytes`.
pub fn decompressed_bytes_max(max_message_bytes: u64) -> usize {
    usize::try_from(max_message_bytes)
        .unwrap_or(usize::MAX)
        .max(batch::HEADER_LEN)
        .saturating_mul(EXPANSION_MAX)
}

/// xerial's snappy framing: magic, version 1, compatible version 1.
const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];
/// The part of [`XERIAL_HEADER`] a reader recognises the framing by.
const XERIAL_MAGIC_LEN: usize = 8;
/// Input bytes per snappy block in xerial's framing (its default).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// zstd's smallest and largest window logs (`ZSTD_WINDOWLOG_MIN`, the
/// 64-bit `ZSTD_WINDOWLOG_MAX`).
const ZSTD_WINDOW_LOG_MIN: u32 = 10;
const ZSTD_WINDOW_LOG_MAX: u32 = 31;

fn corrupt(codec: Compression, why: impl ToString) -> BatchError {
    BatchError::Decompress {
        codec,
        why: why.to_string(),
    }
}

/// Decompresses `input`, compressed with `codec`, refusing to produce more
/// than `bytes_max` bytes.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    bytes_max: usize,
) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => {
            if input.len() > bytes_max {
                return Err(BatchError::DecompressedTooLarge { max: bytes_max });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => {
            read_bounded(codec, flate2::read::MultiGzDecoder::new(input), bytes_max)
        }
        Compression::Snappy => snappy_decompress(input, bytes_max),
        Compression::Lz4 => {
            read_bounded(codec, lz4_flex::frame::FrameDecoder::new(input), bytes_max)
        }
        Compression::Zstd => {
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(codec, e))?;
            // A window larger than the whole output is never needed; a
            // frame asking for more is refused rather than allocated.
            let window_log = usize::BITS - bytes_max.max(1).leading_zeros();
            let window_log = window_log.clamp(ZSTD_WINDOW_LOG_MIN, ZSTD_WINDOW_LOG_MAX);
            decoder
                .window_log_max(window_log)
                .map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, decoder, bytes_max)
        }
    }
}

/// Reads `reader` to its end, at most `bytes_max` bytes.
fn read_bounded(
    codec: Compression,
    reader: impl Read,
    bytes_max: usize,
) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let limit = u64::try_from(bytes_max)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, e))?;
    if out.len() > bytes_max {
        return Err(BatchError::DecompressedTooLarge { max: bytes_max });
    }
    Ok(out)
}

fn snappy_decompress(input: &[u8], bytes_max: usize) -> Result<Vec<u8>, BatchError> {
    let codec = Compression::Snappy;
    let mut out = Vec::new();
    if input.len() < XERIAL_HEADER.len()
        || input[..XERIAL_MAGIC_LEN] != XERIAL_HEADER[..XERIAL_MAGIC_LEN]
    {
        snappy_block(input, bytes_max, &mut out)?;
        return Ok(out);
    }
    let mut rest = &input[XERIAL_HEADER.len()..];
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(codec, "a truncated block length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err(corrupt(codec, "a block longer than the input"));
        }
        let (block, tail) = tail.split_at(len);
        snappy_block(block, bytes_max, &mut out)?;
        rest = tail;
    }
    Ok(out)
}

/// Appends one raw snappy block's bytes to `out`, whose total stays within
/// `bytes_max`; the block's declared size is checked before it is decoded.
fn snappy_block(block: &[u8], bytes_max: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let codec = Compression::Snappy;
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt(codec, e))?;
    let start = out.len();
    if len > bytes_max.saturating_sub(start) {
        return Err(BatchError::DecompressedTooLarge { max: bytes_max });
    }
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| corrupt(codec, e))?;
    out.truncate(start + n);
    Ok(())
}

/// Compresses `input` with `codec` at `level` (gzip: -1 for zlib's default
/// or 1-9; zstd: -131072 to 22; lz4 and snappy have one level here),
/// appending to `out`.
pub fn compress(
    codec: Compression,
    level: i32,
    input: &[u8],
    out: &mut BytesMut,
) -> Result<(), BatchError> {
    let failed = |e: std::io::Error| corrupt(codec, format!("cannot compress: {e}"));
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let level = match u32::try_from(level) {
                Ok(l @ 1..=9) => flate2::Compression::new(l),
                _ => flate2::Compression::default(),
            };
            let mut w = flate2::write::GzEncoder::new(out.writer(), level);
            w.write_all(input).map_err(failed)?;
            w.finish().map_err(failed)?;
        }
        Compression::Snappy => {
            out.extend_from_slice(&XERIAL_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            for chunk in input.chunks(XERIAL_BLOCK_BYTES) {
                let at = out.len();
                out.resize(at + 4 + snap::raw::max_compress_len(chunk.len()), 0);
                let n = encoder
                    .compress(chunk, &mut out[at + 4..])
                    .map_err(|e| corrupt(codec, e))?;
                out[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
                out.truncate(at + 4 + n);
            }
        }
        Compression::Lz4 => {
            use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
            let info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(BlockMode::Independent);
            let mut w = FrameEncoder::with_frame_info(info, out.writer());
            w.write_all(input).map_err(failed)?;
            w.finish().map_err(|e| corrupt(codec, e))?;
        }
        Compression::Zstd => {
            let mut w = zstd::stream::write::Encoder::new(out.writer(), level).map_err(failed)?;
            w.set_pledged_src_size(Some(input.len() as u64))
                .map_err(failed)?;
            w.write_all(input).map_err(failed)?;
            w.finish().map_err(failed)?;
        }
    }
    Ok(())
}

/// The uncompressed records of `batch` (one whole batch that
/// [`batch::validate`] or [`batch::check_stored`] accepted), checked as
/// `validate` checks an uncompressed batch's. Borrowed when the batch is
/// not compressed.
pub fn records<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    bytes_max: usize,
) -> Result<Cow<'a, [u8]>, BatchError> {
    let codec = header
        .compression()
        .ok_or(BatchError::Compression(header.attributes & 0x07))?;
    let payload = &batch[HEADER_LEN..];
    let records = match codec {
        Compression::None => Cow::Borrowed(payload),
        _ => Cow::Owned(decompress(codec, payload, bytes_max)?),
    };
    batch::check_records(&records, header.records_count)?;
    Ok(records)
}

/// A copy of `batch` whose records are `records` (uncompressed, as
/// [`records`] returns them) compressed with `codec` at `level`: the same
/// header (offsets, producer fields, timestamps) with its length, codec and
/// CRC made to match.
pub fn repack(
    batch: &[u8],
    records: &[u8],
    codec: Compression,
    level: i32,
) -> Result<BytesMut, BatchError> {
    let mut out = BytesMut::with_capacity(HEADER_LEN + records.len() / 2);
    out.extend_from_slice(&batch[..HEADER_LEN]);
    compress(codec, level, records, &mut out)?;
    batch::seal(&mut out, codec);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::build::{self, Record};

    const CODECS: [Compression; 5] = Compression::ALL;

    fn level(codec: Compression) -> i32 {
        match codec {
            Compression::Gzip => 6,
            Compression::Lz4 => 9,
            Compression::Zstd => 3,
            _ => 0,
        }
    }

    fn sample(n: usize) -> Vec<u8> {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                key: (i % 3 != 0).then(|| format!("key-{i}").into_bytes()),
                value: Some(vec![b'a' + (i % 26) as u8; 100 + i]),
                headers: vec![(b"h".to_vec(), Some(vec![i as u8]))],
            })
            .collect();
        let mut b = build::batch(&records, 1_700_000_000_000);
        build::set_producer(&mut b, 77, 3, 40);
        b
    }

    #[test]
    fn given_each_codec_a_repacked_batch_keeps_its_header_and_records() {
        let plain = sample(50);
        let h = batch::check_stored(&plain).unwrap();
        let uncompressed = records(&plain, &h, 1 << 20).unwrap();
        for codec in CODECS {
            let packed = repack(&plain, &uncompressed, codec, level(codec)).unwrap();
            let p = batch::check_stored(&packed).unwrap();
            assert_eq!(p.compression(), Some(codec));
            let same = |h: &BatchHeader| {
                (
                    h.base_offset,
                    h.last_offset_delta,
                    h.base_timestamp,
                    h.max_timestamp,
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    h.records_count,
                    h.attributes & !0x07,
                )
            };
            assert_eq!(same(&p), same(&h), "{codec:?}");
            if codec != Compression::None {
                assert!(packed.len() < plain.len(), "{codec:?} compressed");
            }
            let back = records(&packed, &p, 1 << 20).unwrap();
            assert_eq!(&back[..], &uncompressed[..], "{codec:?}");
            // And back to uncompressed: the original bytes exactly.
            let unpacked = repack(&packed, &back, Compression::None, 0).unwrap();
            assert_eq!(&unpacked[..], &plain[..], "{codec:?}");
        }
    }

    #[test]
    fn given_librdkafkas_raw_snappy_it_is_read_like_the_framing() {
        let data = vec![7u8; 100_000];
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1 << 20).unwrap(),
            data
        );
        let mut framed = BytesMut::new();
        compress(Compression::Snappy, 0, &data, &mut framed).unwrap();
        assert_eq!(&framed[..16], &XERIAL_HEADER);
        assert_eq!(
            decompress(Compression::Snappy, &framed, 1 << 20).unwrap(),
            data
        );
    }

    #[test]
    fn given_records_beyond_the_bound_decompression_stops_and_refuses() {
        let data = vec![0u8; 1 << 20];
        for codec in CODECS {
            let mut packed = BytesMut::new();
            compress(codec, level(codec), &data, &mut packed).unwrap();
            assert_eq!(
                decompress(codec, &packed, data.len() - 1).unwrap_err(),
                BatchError::DecompressedTooLarge {
                    max: data.len() - 1
                },
                "{codec:?}"
            );
            assert_eq!(
                decompress(codec, &packed, data.len()).unwrap().len(),
                data.len()
            );
        }
        assert_eq!(decompressed_bytes_max(1_048_588), 1_048_588 * EXPANSION_MAX);
    }

    #[test]
    fn given_a_damaged_compressed_batch_its_records_are_refused_or_still_well_formed() {
        let plain = sample(20);
        let h = batch::check_stored(&plain).unwrap();
        let uncompressed = records(&plain, &h, 1 << 20).unwrap();
        for codec in &CODECS[1..] {
            let packed = repack(&plain, &uncompressed, *codec, level(*codec)).unwrap();
            // Garbage instead of the compressed records: refused as corrupt.
            let mut garbage = packed.clone();
            garbage[HEADER_LEN..].fill(0xa5);
            batch::seal(&mut garbage, *codec);
            let g = batch::check_stored(&garbage).unwrap();
            let e = records(&garbage, &g, 1 << 20).unwrap_err();
            assert_eq!(
                e.kafka_code(),
                crate::error::KafkaCode::CorruptMessage,
                "{codec:?}: {e:?}"
            );
            // A flipped byte or a cut end: lz4 and snappy carry no checksum
            // here, so a change inside a literal can go unseen; whatever
            // comes out is refused or parses as records.
            for at in [HEADER_LEN + 20, packed.len() / 2, packed.len() - 1] {
                for cut in [0, 3] {
                    let mut damaged = packed.clone();
                    damaged[at] ^= 0xff;
                    damaged.truncate(damaged.len() - cut);
                    batch::seal(&mut damaged, *codec);
                    let d = batch::check_stored(&damaged).unwrap();
                    if let Ok(r) = records(&damaged, &d, 1 << 20) {
                        assert!(batch::check_records(&r, d.records_count).is_ok());
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_bytes_decompress_to_an_error_or_within_the_bound(
            input in proptest::collection::vec(any::<u8>(), 0..2048),
            prefix in 0usize..5,
            bytes_max in 0usize..65_536,
        ) {
            // Start some inputs with each codec's magic, to get past it.
            let magic: [&[u8]; 5] = [
                &[],
                &[0x1f, 0x8b, 8, 0],
                &XERIAL_HEADER,
                &[0x04, 0x22, 0x4d, 0x18],
                &[0x28, 0xb5, 0x2f, 0xfd],
            ];
            let mut data = magic[prefix].to_vec();
            data.extend_from_slice(&input);
            for codec in CODECS {
                if let Ok(out) = decompress(codec, &data, bytes_max) {
                    prop_assert!(out.len() <= bytes_max);
                }
            }
        }

        #[test]
        fn any_records_round_trip_through_every_codec(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..20),
        ) {
            let records: Vec<Record> = values
                .into_iter()
                .map(|v| Record { key: Some(v.clone()), value: Some(v), headers: vec![] })
                .collect();
            let plain = build::batch(&records, 5);
            let h = batch::check_stored(&plain).unwrap();
            for codec in CODECS {
                let packed = repack(&plain, &plain[HEADER_LEN..], codec, level(codec)).unwrap();
                let p = batch::check_stored(&packed).unwrap();
                let back = records_of(&packed, &p)?;
                prop_assert_eq!(&back[..], &plain[HEADER_LEN..]);
                prop_assert_eq!(p.records_count, h.records_count);
            }
        }
    }

    fn records_of(b: &[u8], h: &BatchHeader) -> Result<Vec<u8>, TestCaseError> {
        records(b, h, 1 << 20)
            .map(Cow::into_owned)
            .map_err(|e| TestCaseError::fail(e.to_string()))
    }
}
