//! Reads: by offset (fetches), by timestamp (ListOffsets), the largest
//! timestamp, the end of a leader epoch.
//!
//! Invariants:
//! * a read returns whole batches from the tail cache, or one region of one
//!   segment file that starts at a batch boundary (engine/DESIGN.md, Reads);
//! * it never returns a byte at or past its upper bound: the high
//!   watermark's position for consumers, the written mark's for followers;
//!   both are batch boundaries, so every byte returned belongs to a batch
//!   below the bound;
//! * bytes recovery did not scan are verified before they are first served,
//!   and corrupt ranges are never served.

use bytes::Bytes;

use super::{Chunk, FileRegion, Mark, Partition, ReadOptions, ReadOutcome, ReadUpper};
use crate::batch::{self, BatchHeader, TimestampType};
use crate::error::{EngineError, Result};
use crate::segment::Segment;
use crate::types::{LeaderEpoch, Offset};

impl Partition {
    /// Reads from `from`: from the tail cache when it holds `from`, else one
    /// region of the segment file holding it.
    pub async fn read(&self, from: Offset, opts: ReadOptions) -> Result<ReadOutcome> {
        let (upper, watermarks, cached) = {
            let st = self.inner.state.borrow();
            self.check_usable(&st)?;
            let upper = match opts.upper {
                ReadUpper::HighWatermark => st.hw,
                ReadUpper::Written => st.written,
            };
            if from < st.log_start || from > st.log_end {
                return Err(EngineError::OffsetOutOfRange {
                    offset: from,
                    log_start: st.log_start,
                    log_end: st.log_end,
                });
            }
            let cached = if from >= upper.offset {
                Some(Vec::new())
            } else {
                self.read_cache(from, upper.offset, &opts)
            };
            (upper, st.watermarks(), cached)
        };
        if let Some(chunks) = cached {
            let bytes = chunks.iter().map(|c| c.len() as u64).sum();
            return Ok(ReadOutcome {
                chunks: chunks.into_iter().map(Chunk::Memory).collect(),
                bytes,
                watermarks,
            });
        }
        let region = self.read_file(from, upper, &opts).await?;
        let bytes = region.as_ref().map_or(0, |r| r.len);
        Ok(ReadOutcome {
            chunks: region.into_iter().map(Chunk::File).collect(),
            bytes,
            watermarks,
        })
    }

    fn read_cache(&self, from: Offset, upper: Offset, opts: &ReadOptions) -> Option<Vec<Bytes>> {
        let cache = self.inner.cache.borrow();
        let iter = cache.from(from)?;
        let mut out = Vec::new();
        let mut total = 0usize;
        for c in iter {
            if c.last >= upper {
                break;
            }
            let first = out.is_empty();
            if total + c.bytes.len() > opts.max_bytes && !(first && opts.min_one) {
                break;
            }
            total += c.bytes.len();
            out.push(c.bytes.clone());
        }
        Some(out)
    }

    async fn read_file(
        &self,
        from: Offset,
        upper: Mark,
        opts: &ReadOptions,
    ) -> Result<Option<FileRegion>> {
        let segments: Vec<std::rc::Rc<Segment>> = {
            let st = self.inner.state.borrow();
            let start = st
                .segments
                .range(..=from)
                .next_back()
                .map_or(from, |(b, _)| *b);
            st.segments
                .range(start..=upper.segment)
                .map(|(_, s)| s.clone())
                .collect()
        };
        for seg in segments {
            let limit = limit_in(&seg, upper);
            seg.verify().await?;
            let Some((pos, header)) = seg.find(from, limit).await? else {
                continue;
            };
            let first_len = header.total_len().expect("found batches have a length") as u64;
            let want = if opts.min_one {
                first_len.max(opts.max_bytes as u64)
            } else {
                opts.max_bytes as u64
            };
            let mut end = (pos + want).min(limit);
            if let Some(r) = seg
                .meta
                .borrow()
                .corrupt
                .iter()
                .find(|r| r.start >= pos && r.start < end)
            {
                end = r.start;
            }
            if end <= pos {
                return Ok(None);
            }
            let files = seg.handles().await?;
            return Ok(Some(FileRegion {
                file: files.read.clone(),
                position: pos,
                len: end - pos,
            }));
        }
        Ok(None)
    }

    /// The earliest offset whose timestamp is at least `ts`, with that
    /// timestamp (ListOffsets by time). For a compressed batch the answer is
    /// the batch's first offset and largest timestamp.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(Offset, i64)>> {
        let (segments, upper, log_start) = {
            let st = self.inner.state.borrow();
            self.check_usable(&st)?;
            (
                st.segments.values().cloned().collect::<Vec<_>>(),
                st.hw,
                st.log_start,
            )
        };
        for seg in segments {
            if seg.base > upper.offset {
                break;
            }
            if let Some(found) = search_by_time(&seg, ts, upper, log_start).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The offset of the batch holding the largest timestamp, with that
    /// timestamp (ListOffsets with MAX_TIMESTAMP, KIP-734).
    pub fn max_timestamp(&self) -> Option<(Offset, i64)> {
        let st = self.inner.state.borrow();
        st.segments
            .values()
            .filter_map(|s| {
                let m = s.meta.borrow();
                (m.max_timestamp >= 0 && m.offset_of_max_timestamp < st.hw.offset)
                    .then_some((m.offset_of_max_timestamp, m.max_timestamp))
            })
            .max_by_key(|&(o, t)| (t, std::cmp::Reverse(o)))
    }

    /// The end offset of a leader epoch (OffsetForLeaderEpoch).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let st = self.inner.state.borrow();
        st.epochs.end_offset(epoch, st.log_end)
    }
}

/// How far into `seg` a read bounded by `upper` may go.
fn limit_in(seg: &Segment, upper: Mark) -> u64 {
    if seg.base == upper.segment {
        upper.position
    } else {
        seg.meta.borrow().size
    }
}

/// The earliest offset in `seg`, at or above `log_start` and below
/// `upper`, whose timestamp is at least `ts`, with that timestamp.
async fn search_by_time(
    seg: &std::rc::Rc<Segment>,
    ts: i64,
    upper: Mark,
    log_start: Offset,
) -> Result<Option<(Offset, i64)>> {
    let (max_ts, start_rel) = {
        let m = seg.meta.borrow();
        let start = m.time_index.floor(ts).map_or(0, |e| e.relative_offset);
        (m.max_timestamp, start)
    };
    if max_ts < ts {
        return Ok(None);
    }
    seg.verify().await?;
    let limit = limit_in(seg, upper);
    let mut target = Offset((seg.base.0 + i64::from(start_rel)).max(log_start.0));
    while let Some((pos, h)) = seg.find(target, limit).await? {
        let len = h.total_len().expect("found batches have a length");
        if h.max_timestamp >= ts && h.last_offset() >= log_start.0 {
            let bytes = seg.read_bytes(pos, len).await?;
            let (offset, found_ts) = first_at_or_after(&h, &bytes, ts, log_start);
            return Ok(Some((Offset(offset), found_ts)));
        }
        target = Offset(h.last_offset() + 1);
    }
    Ok(None)
}

/// In the batch `h` (whose bytes are `bytes`) with a timestamp at least
/// `ts`: the first record at or above `log_start` with such a timestamp,
/// as (offset, timestamp). For a LogAppendTime batch, or one whose records
/// cannot be read (compressed), the batch's first offset at or above
/// `log_start` and its largest timestamp.
fn first_at_or_after(h: &BatchHeader, bytes: &[u8], ts: i64, log_start: Offset) -> (i64, i64) {
    let whole = (h.base_offset.max(log_start.0), h.max_timestamp);
    if h.timestamp_type() == TimestampType::LogAppendTime {
        return whole;
    }
    batch::record_timestamps(bytes)
        .and_then(|recs| {
            recs.into_iter()
                .map(|(d, t)| (h.base_offset + i64::from(d), t))
                .find(|&(o, t)| t >= ts && o >= log_start.0)
        })
        .unwrap_or(whole)
}
