//! The replication protocol's frame reader on arbitrary bytes, as a leader
//! or a follower reads what its peer sends: it must return an error or a
//! message, never panic or abort, and allocate in proportion to the frame
//! (its bounds are checked before rkyv sees the message).
//!
//! Half of the inputs get a valid header written over their first bytes
//! (magic, version, a kind, a meta length within the frame), so that the
//! rkyv validation of every message kind is reached often.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut frame = data.to_vec();
    if frame.len() >= 17 && frame[0] & 1 == 1 {
        let kind = 1 + u16::from(frame[1] % 7);
        let meta = (frame.len() - 16) as u32 * u32::from(frame[2]) / 255;
        frame[0..2].copy_from_slice(&0x4C53u16.to_le_bytes());
        frame[2..4].copy_from_slice(&1u16.to_le_bytes());
        frame[4..6].copy_from_slice(&kind.to_le_bytes());
        frame[6..8].copy_from_slice(&[0, 0]);
        frame[12..16].copy_from_slice(&meta.to_le_bytes());
    }
    let _ = sluice_net::read_replication_frame(bytes::Bytes::from(frame));
});
