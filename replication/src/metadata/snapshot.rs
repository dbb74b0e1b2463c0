//! Snapshot files of the metadata state.
//!
//! A [`framed`] file: magic "SLMS", version 1, position = the last applied
//! log index, payload = the MetadataState, rkyv-encoded. Decoding checks
//! magic, version, length and CRC before rkyv validates the payload, so a
//! damaged or foreign file is an error, never a panic.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use sluice_engine::framed;

use super::MetadataState;

pub const MAGIC: &[u8; 4] = b"SLMS";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = framed::HEADER_LEN;
/// Largest payload a snapshot may declare.
pub const PAYLOAD_BYTES_MAX: usize = 1 << 30;

pub type SnapshotError = framed::FrameError;

pub fn encode(state: &MetadataState) -> Vec<u8> {
    let payload =
        rkyv::to_bytes::<rancor::Error>(state).expect("serialising to memory cannot fail");
    framed::encode(MAGIC, VERSION, state.last_applied, &payload)
}

pub fn decode(bytes: &[u8]) -> Result<MetadataState, SnapshotError> {
    let (last_applied, payload) = framed::decode(bytes, MAGIC, VERSION, PAYLOAD_BYTES_MAX)?;
    // rkyv needs its input aligned.
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let state = rkyv::from_bytes::<MetadataState, rancor::Error>(&aligned)
        .map_err(|e| SnapshotError::Payload(e.to_string()))?;
    if state.last_applied != last_applied {
        return Err(SnapshotError::Payload(
            "header and payload disagree on the last applied index".into(),
        ));
    }
    Ok(state)
}
