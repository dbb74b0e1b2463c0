//! Snapshot files of the metadata state.
//!
//! ## Layout (little-endian)
//! ```text
//! offset size field
//!      0    4 magic "SLMS"
//!      4    2 version (1)
//!      6    2 reserved, 0
//!      8    8 last applied log index
//!     16    4 payload length
//!     20    4 CRC-32C of the payload
//!     24    … payload: the MetadataState, rkyv-encoded
//! ```
//! Decoding checks magic, version, length and CRC before rkyv validates the
//! payload, so a damaged or foreign file is an error, never a panic.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::MetadataState;

pub const MAGIC: &[u8; 4] = b"SLMS";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 24;
/// Largest payload a snapshot may declare.
pub const PAYLOAD_BYTES_MAX: usize = 1 << 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("not a metadata snapshot (bad magic)")]
    Magic,
    #[error("unsupported snapshot version {0}")]
    Version(u16),
    #[error("snapshot length {declared} does not match the {actual} bytes present")]
    Length { declared: usize, actual: usize },
    #[error("snapshot CRC mismatch")]
    Crc,
    #[error("snapshot payload is malformed: {0}")]
    Payload(String),
}

pub fn encode(state: &MetadataState) -> Vec<u8> {
    let payload =
        rkyv::to_bytes::<rancor::Error>(state).expect("serialising to memory cannot fail");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&state.last_applied.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

pub fn decode(bytes: &[u8]) -> Result<MetadataState, SnapshotError> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err(SnapshotError::Magic);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    if bytes[6..8] != [0, 0] {
        return Err(SnapshotError::Payload(
            "reserved header bytes are not zero".into(),
        ));
    }
    let last_applied = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if len > PAYLOAD_BYTES_MAX || len != payload.len() {
        return Err(SnapshotError::Length {
            declared: len,
            actual: payload.len(),
        });
    }
    if crc32c::crc32c(payload) != crc {
        return Err(SnapshotError::Crc);
    }
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
