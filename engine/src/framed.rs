//! Self-checking binary files: the frame around a snapshot's payload.
//!
//! ## Layout (little-endian)
//! ```text
//! offset size field
//!      0    4 magic, one per kind of file
//!      4    2 version of the payload's format
//!      6    2 reserved, 0
//!      8    8 position: what the payload is a snapshot of (a log offset,
//!             a Raft log index)
//!     16    4 payload length
//!     20    4 CRC-32C of the payload
//!     24    … payload
//! ```
//! Decoding checks magic, version, length and CRC before anyone looks at
//! the payload, so a damaged, truncated or foreign file is an error, never
//! a panic. The CRC does not cover the position: every payload repeats it,
//! and its decoder checks that the two agree.

pub const HEADER_LEN: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("bad magic: not a {0} file")]
    Magic(String),
    #[error("unsupported version {0}")]
    Version(u16),
    #[error("length {declared} does not match the {actual} bytes present")]
    Length { declared: usize, actual: usize },
    #[error("CRC mismatch")]
    Crc,
    #[error("malformed: {0}")]
    Payload(String),
}

/// Frames `payload`.
pub fn encode(magic: &[u8; 4], version: u16, position: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a frame and returns its position and payload. A payload longer
/// than `payload_max` is refused.
pub fn decode<'a>(
    bytes: &'a [u8],
    magic: &[u8; 4],
    version: u16,
    payload_max: usize,
) -> Result<(u64, &'a [u8]), FrameError> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != magic {
        return Err(FrameError::Magic(String::from_utf8_lossy(magic).into()));
    }
    let v = u16::from_le_bytes([bytes[4], bytes[5]]);
    if v != version {
        return Err(FrameError::Version(v));
    }
    if bytes[6..8] != [0, 0] {
        return Err(FrameError::Payload(
            "reserved header bytes are not zero".into(),
        ));
    }
    let position = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if len > payload_max || len != payload.len() {
        return Err(FrameError::Length {
            declared: len,
            actual: payload.len(),
        });
    }
    if crc32c::crc32c(payload) != crc {
        return Err(FrameError::Crc);
    }
    Ok((position, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_decodes_to_what_was_encoded_and_any_damage_is_an_error() {
        let f = encode(b"TEST", 3, 42, b"payload");
        assert_eq!(decode(&f, b"TEST", 3, 100), Ok((42, &b"payload"[..])));
        assert!(matches!(
            decode(&f, b"NOPE", 3, 100),
            Err(FrameError::Magic(_))
        ));
        assert_eq!(decode(&f, b"TEST", 4, 100), Err(FrameError::Version(3)));
        assert!(matches!(
            decode(&f, b"TEST", 3, 3),
            Err(FrameError::Length { .. })
        ));
        assert!(matches!(
            decode(&f[..f.len() - 1], b"TEST", 3, 100),
            Err(FrameError::Length { .. })
        ));
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x10;
            // The position is checked against the payload's own copy.
            if let Ok((p, _)) = decode(&bad, b"TEST", 3, 100) {
                assert!((8..16).contains(&i) && p != 42, "flip at byte {i}");
            }
        }
    }
}
