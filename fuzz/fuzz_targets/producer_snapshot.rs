//! Fuzzes the decoder of idempotent-producer snapshot files
//! (`ProducerTable::decode_snapshot`), which recovery runs on whatever a
//! partition directory holds.
//!
//! Checks: decoding never panics and never yields more producers than the
//! bound it was given; a table it accepts encodes to a snapshot that
//! decodes to the same table and offset.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::producers::ProducerTable;

const MAX: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok((offset, table)) = ProducerTable::decode_snapshot(data, MAX) else {
        return;
    };
    assert!(table.len() <= MAX);
    assert!(offset >= 0);
    let again = table.encode_snapshot(offset);
    let (offset2, table2) =
        ProducerTable::decode_snapshot(&again, MAX).expect("a re-encoded snapshot decodes");
    assert_eq!(offset2, offset);
    assert_eq!(table2.entries(), table.entries());
});
