//! Request frames: `size i32 BE | header | body` (responses: `response`). The size is checked
//! against `socket.request.max.bytes` before anything is allocated; a size
//! out of range closes the connection, as Kafka does.

use std::io;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt};

/// Reads a frame's size, checked against `bytes_max`; `Ok(None)` at a
/// clean end of stream.
pub(crate) async fn read_size<S: AsyncRead + Unpin>(
    s: &mut S,
    bytes_max: usize,
) -> io::Result<Option<usize>> {
    let mut size = [0u8; 4];
    match s.read_exact(&mut size).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let size = i32::from_be_bytes(size);
    if size < 4 || size as usize > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "request of {size} bytes is outside 4..={bytes_max} (socket.request.max.bytes)"
            ),
        ));
    }
    Ok(Some(size as usize))
}

/// Reads a frame's body of `size` bytes (already checked).
pub(crate) async fn read_body<S: AsyncRead + Unpin>(s: &mut S, size: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; size];
    s.read_exact(&mut buf).await?;
    Ok(Bytes::from(buf))
}
