//! The broker's request decoder on arbitrary frames: it must return an
//! error or a request, never panic or abort, and allocate in proportion to
//! the frame (libFuzzer's -rss_limit_mb and -malloc_limit_mb catch a
//! count-driven allocation).
//!
//! Half of the inputs get a served API key and version written over their
//! first four bytes, so that the body decoders are reached often.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_net::dispatch::TABLE;

fuzz_target!(|data: &[u8]| {
    let mut frame = data.to_vec();
    if frame.len() >= 5 && frame[0] & 1 == 1 {
        let api = &TABLE[frame[1] as usize % TABLE.len()];
        let version = api.min + (frame[2] as i16 % (api.max - api.min + 1));
        frame[0..2].copy_from_slice(&(api.key as i16).to_be_bytes());
        frame[2..4].copy_from_slice(&version.to_be_bytes());
    }
    let _ = sluice_net::decode_request(bytes::Bytes::from(frame));
});
