//! Fuzzes the record codecs (`codec::decompress`, `codec::records`,
//! `codec::repack`): arbitrary bytes as the compressed records of each codec.
//!
//! Nothing may panic, whatever the bytes. Decompression never returns more
//! than its bound. What decompresses compresses again with the same codec
//! and decompresses back to the same bytes; a batch whose records are
//! accepted repacks with every codec into a batch `check_stored` accepts,
//! with the same records.
//!
//! Input: byte 0 picks the codec (mod 5), byte 1 the bound (1 KiB steps),
//! the rest is the compressed payload. The same payload is also tried as
//! the records of a batch whose header is fixed up (length, magic, codec,
//! CRC), so that `records` and `repack` are reached.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::{self, build, Compression};
use sluice_engine::codec;

const CODECS: [Compression; 5] = Compression::ALL;

fuzz_target!(|data: &[u8]| {
    let [pick, bound, payload @ ..] = data else {
        return;
    };
    let codec = CODECS[usize::from(*pick) % CODECS.len()];
    let bytes_max = (usize::from(*bound) + 1) * 1024;
    if let Ok(out) = codec::decompress(codec, payload, bytes_max) {
        assert!(out.len() <= bytes_max, "{codec:?} exceeded its bound");
        let mut again = bytes::BytesMut::new();
        codec::compress(codec, 0, &out, &mut again).expect("compress what decompressed");
        let back = codec::decompress(codec, &again, bytes_max).expect("round trip");
        assert_eq!(back, out, "{codec:?} round trip");
    }

    // The payload as a one-record batch's compressed records.
    let mut b = build::simple(1, 0, 0, 0);
    b.truncate(batch::HEADER_LEN);
    b.extend_from_slice(payload);
    batch::seal(&mut b, codec);
    let Ok(h) = batch::check_stored(&b) else {
        return;
    };
    let Ok(records) = codec::records(&b, &h, bytes_max) else {
        return;
    };
    for target in CODECS {
        let packed = codec::repack(&b, &records, target, 0).expect("repack accepted records");
        let p = batch::check_stored(&packed).expect("a repacked batch is well formed");
        assert_eq!(p.compression(), Some(target));
        let again = codec::records(&packed, &p, bytes_max.max(records.len())).expect("read back");
        assert_eq!(&again[..], &records[..], "{target:?}");
    }
});
