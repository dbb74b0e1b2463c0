//! Fuzzes the checks a produced batch goes through (`batch::validate`), the
//! check a stored batch goes through (`batch::check_stored`) and
//! `batch::record_timestamps`.
//!
//! Nothing may panic, whatever the bytes. When a check accepts a batch, the
//! header it returns must describe exactly the bytes given, and the records
//! of an uncompressed batch must be readable one by one.
//!
//! Each input is checked twice: as given, and with its length field, magic
//! and CRC fixed up, so that the fuzzer also reaches the record parser
//! without having to find a matching CRC-32C first.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::{self, BatchHeader, Compression, Limits};

const LIMITS: Limits = Limits {
    batch_bytes_max: 1 << 20,
    timestamp_before_ms_max: i64::MAX,
    timestamp_after_ms_max: i64::MAX,
};

/// The broker's clock; the limits above disable the timestamp bounds, so its
/// value only matters for overflow in the bound arithmetic.
const NOW_MS: i64 = 1_700_000_000_000;

// Byte offsets of the fields fixed up (see the layout in batch.rs).
const BATCH_LENGTH: usize = 8;
const MAGIC: usize = 16;
const CRC: usize = 17;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= batch::HEADER_LEN {
        let mut fixed = data.to_vec();
        let batch_length = (fixed.len() - batch::LOG_OVERHEAD) as i32;
        fixed[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
        fixed[MAGIC] = batch::MAGIC_V2 as u8;
        let crc = crc32c::crc32c(&fixed[batch::CRC_START..]);
        fixed[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        check(&fixed);
    }
});

fn check(data: &[u8]) {
    let validated = batch::validate(data, &LIMITS, NOW_MS);
    let stored = batch::check_stored(data);
    // Always exercised, even on bytes no check accepted: it must not panic.
    let timestamps = batch::record_timestamps(data);

    if let Ok(h) = &validated {
        accepted(data, h, &timestamps);
        // `validate` is `check_stored` plus topic limits: whatever it accepts,
        // `check_stored` accepts too, with the same header.
        assert_eq!(
            stored.as_ref().ok(),
            Some(h),
            "validate accepted a batch check_stored refused: {stored:?}"
        );
        assert!(!h.is_control(), "validate accepted a control batch");
        assert!(data.len() <= LIMITS.batch_bytes_max);
    }
    if let Ok(h) = &stored {
        accepted(data, h, &timestamps);
    }
}

/// The invariants of a batch a check accepted with header `h`.
fn accepted(data: &[u8], h: &BatchHeader, timestamps: &Option<Vec<(i32, i64)>>) {
    assert_eq!(
        BatchHeader::parse(data).as_ref(),
        Some(h),
        "header is not the bytes'"
    );
    assert_eq!(
        h.total_len(),
        Some(data.len()),
        "length field does not match the bytes"
    );
    assert!(
        h.records_count > 0,
        "records_count {} accepted",
        h.records_count
    );
    assert_eq!(
        h.last_offset_delta,
        h.records_count - 1,
        "lastOffsetDelta does not match recordsCount"
    );
    assert_eq!(h.magic, batch::MAGIC_V2);
    let compression = h.compression().expect("accepted batch has a known codec");
    if compression == Compression::None {
        // An uncompressed batch needs at least one minimal record per count.
        let payload = data.len() - batch::HEADER_LEN;
        assert!(h.records_count as usize <= payload / batch::RECORD_LEN_MIN);
        let ts = timestamps
            .as_ref()
            .expect("record_timestamps is None for an accepted uncompressed batch");
        assert_eq!(
            ts.len(),
            h.records_count as usize,
            "record_timestamps read a different number of records"
        );
        for (i, &(offset_delta, _)) in ts.iter().enumerate() {
            assert_eq!(
                offset_delta as usize, i,
                "offset deltas do not run 0, 1, 2, …"
            );
        }
    } else {
        assert!(
            timestamps.is_none(),
            "record_timestamps read records of a {compression:?} batch"
        );
    }
}
