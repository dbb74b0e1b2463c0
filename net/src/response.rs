//! Response frames, written without copying record data.
//!
//! A response frame is `size i32 BE | header | body`. It is built as a list
//! of [`Piece`]s: encoded bytes, and the record sets a fetch returns, which
//! are either tail-cache batches (`Bytes`, shared, not copied) or a region
//! of a segment file. [`write`] sends memory pieces with vectored writes
//! (`writev`) and file regions with `sendfile(2)` from the segment file to
//! the socket, so log data never passes through user space.
//!
//! ## Encoding a fetch response around its records
//! kafka-protocol writes a partition's `records` as a length prefix and the
//! bytes. [`encode_fetch`] encodes the response with kafka-protocol into a
//! [`PieceBuf`], with each partition's records replaced by a one-byte
//! placeholder ([`records_placeholder`]) that the buffer recognises by
//! address: it takes back the placeholder's length prefix (4 bytes `INT32`
//! before flexible versions, one byte of `UNSIGNED_VARINT` from version 12),
//! writes the prefix of the real length, and leaves a hole that the record
//! chunks fill. Everything else is kafka-protocol's own encoding, so the
//! frame is byte-identical to encoding the records in (tested for every
//! served version below).
//!
//! ## Sending without blocking the shard
//! The socket is non-blocking. `writev` and `sendfile` are called directly
//! on it; when the socket is full (`EAGAIN`) the next bytes go through the
//! executor's own stream write, which waits for the socket to be writable
//! in the io_uring reactor instead of blocking the thread. For a file
//! region that means reading one byte of it (from the page cache that
//! `sendfile` is reading anyway).
//!
//! ## A file that shrinks while it is sent
//! The frame size is written before the region is sent. Segment files are
//! only deleted while readers hold their descriptor (the bytes stay
//! readable), but a file cut shorter than the region (truncation) would
//! leave the frame short. The connection is then closed, as Kafka does
//! ("Size of FileRecords has been truncated during write"): padding would
//! hand the client a corrupt batch, and a frame cut short would desync the
//! stream.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::{AsyncWrite, AsyncWriteExt};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;
use sluice_engine::partition::{Chunk, FileRegion};

/// Memory pieces gathered into one `writev`.
const IOVECS_MAX: usize = 64;

/// Part of a response frame.
#[derive(Clone, Debug)]
pub(crate) enum Piece {
    Memory(Bytes),
    File(FileRegion),
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Memory(b) => b.len(),
            Piece::File(f) => f.len as usize,
        }
    }
}

impl From<Chunk> for Piece {
    fn from(c: Chunk) -> Self {
        match c {
            Chunk::Memory(b) => Piece::Memory(b),
            Chunk::File(f) => Piece::File(f),
        }
    }
}

/// One response frame, size prefix included.
#[derive(Debug, Default)]
pub(crate) struct Response {
    pieces: Vec<Piece>,
}

impl Response {
    /// A frame already whole in `pieces` (its length prefix included).
    pub(crate) fn raw(pieces: Vec<Piece>) -> Response {
        Response { pieces }
    }

    /// The frame's bytes after its size prefix.
    #[cfg(test)]
    pub(crate) fn body_len(&self) -> usize {
        self.pieces.iter().map(Piece::len).sum::<usize>() - 4
    }

    /// The whole frame in memory (tests, and tools that need it).
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Memory(b) => out.extend_from_slice(b),
                Piece::File(f) => {
                    use std::os::unix::fs::FileExt;
                    let start = out.len();
                    out.resize(start + f.len as usize, 0);
                    f.file.read_exact_at(&mut out[start..], f.position)?;
                }
            }
        }
        Ok(out)
    }
}

fn bad(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn header(key: ApiKey, version: i16, correlation: i32) -> io::Result<BytesMut> {
    let mut h = ResponseHeader::default();
    h.correlation_id = correlation;
    let mut out = BytesMut::new();
    out.put_i32(0); // the size, set once the body is encoded
    h.encode(&mut out, key.response_header_version(version))
        .map_err(bad)?;
    Ok(out)
}

fn finish(mut pieces: Vec<Piece>) -> io::Result<Response> {
    let len: usize = pieces.iter().map(Piece::len).sum::<usize>() - 4;
    let size = i32::try_from(len).map_err(|_| bad(format!("response of {len} bytes")))?;
    let Some(Piece::Memory(first)) = pieces.first_mut() else {
        unreachable!("a frame starts with its size in memory");
    };
    let mut b = BytesMut::from(&first[..]);
    b[..4].copy_from_slice(&size.to_be_bytes());
    *first = b.freeze();
    Ok(Response { pieces })
}

/// Encodes a response whose body holds no file data.
pub(crate) fn encode(
    key: ApiKey,
    version: i16,
    correlation: i32,
    body: ResponseKind,
) -> io::Result<Response> {
    let mut out = header(key, version, correlation)?;
    body.encode(&mut out, version).map_err(bad)?;
    finish(vec![Piece::Memory(out.freeze())])
}

static PLACEHOLDER: [u8; 1] = [0];

/// What a partition's `records` holds while [`encode_fetch`] encodes it:
/// the records themselves are passed beside the response.
pub(crate) fn records_placeholder() -> Bytes {
    Bytes::from_static(&PLACEHOLDER)
}

/// Whether `records` is [`records_placeholder`].
pub(crate) fn is_records_placeholder(records: &Bytes) -> bool {
    std::ptr::eq(records.as_ptr(), PLACEHOLDER.as_ptr()) && records.len() == PLACEHOLDER.len()
}

/// Encodes a fetch response. `records` holds, in the order partitions
/// appear in `resp`, the chunks of each partition whose `records` is
/// [`records_placeholder`].
pub(crate) fn encode_fetch(
    version: i16,
    correlation: i32,
    resp: &FetchResponse,
    records: Vec<Vec<Chunk>>,
) -> io::Result<Response> {
    let mut buf = PieceBuf {
        done: Vec::new(),
        cur: header(ApiKey::Fetch, version, correlation)?,
        flexible: version >= 12,
        records: records.into_iter(),
        done_len: 0,
        error: None,
    };
    resp.encode(&mut buf, version).map_err(bad)?;
    if let Some(e) = buf.error {
        return Err(bad(e));
    }
    if buf.records.next().is_some() {
        return Err(bad("more record sets than placeholders"));
    }
    buf.flush_cur();
    finish(buf.done)
}

/// A `BufMut` that collects encoded bytes and, at each records
/// placeholder, the record chunks in its stead (see the module docs).
struct PieceBuf {
    done: Vec<Piece>,
    done_len: usize,
    cur: BytesMut,
    flexible: bool,
    records: std::vec::IntoIter<Vec<Chunk>>,
    error: Option<String>,
}

impl PieceBuf {
    fn flush_cur(&mut self) {
        if !self.cur.is_empty() {
            let b = self.cur.split().freeze();
            self.done_len += b.len();
            self.done.push(Piece::Memory(b));
        }
    }

    fn fill_hole(&mut self) {
        let Some(chunks) = self.records.next() else {
            self.error = Some("a records placeholder without records".into());
            return;
        };
        // Take back the placeholder's length prefix: INT32 1, or
        // UNSIGNED_VARINT 2 (compact bytes store length + 1).
        let (prefix, expected): (usize, &[u8]) = if self.flexible {
            (1, &[2])
        } else {
            (4, &[0, 0, 0, 1])
        };
        if self.cur.len() < prefix || &self.cur[self.cur.len() - prefix..] != expected {
            self.error = Some("records placeholder without its length prefix".into());
            return;
        }
        self.cur.truncate(self.cur.len() - prefix);
        let len: usize = chunks.iter().map(|c| c.len() as usize).sum();
        let Ok(len32) = u32::try_from(len) else {
            self.error = Some(format!("record set of {len} bytes"));
            return;
        };
        if self.flexible {
            let mut v = len32 + 1;
            while v >= 0x80 {
                self.cur.put_u8((v as u8) | 0x80);
                v >>= 7;
            }
            self.cur.put_u8(v as u8);
        } else {
            self.cur.put_u32(len32);
        }
        self.flush_cur();
        for c in chunks {
            let p = Piece::from(c);
            self.done_len += p.len();
            self.done.push(p);
        }
    }
}

// SAFETY: every method delegates to the `BytesMut` being filled.
unsafe impl BufMut for PieceBuf {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if std::ptr::eq(src.as_ptr(), PLACEHOLDER.as_ptr()) && src.len() == PLACEHOLDER.len() {
            self.fill_hole();
        } else {
            self.cur.extend_from_slice(src);
        }
    }
}

impl ByteBufMut for PieceBuf {
    fn offset(&self) -> usize {
        self.done_len + self.cur.len()
    }

    // Gaps (seek and range) are only ever used inside the bytes being
    // encoded now, never across a hole.
    fn seek(&mut self, offset: usize) {
        self.cur.resize(offset - self.done_len, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        &mut self.cur[r.start - self.done_len..r.end - self.done_len]
    }
}

/// The result of a non-blocking syscall: `None` when it would block.
fn nonblocking(r: isize) -> Option<io::Result<usize>> {
    if r >= 0 {
        return Some(Ok(r as usize));
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock => None,
        io::ErrorKind::Interrupted => Some(Ok(0)),
        _ => Some(Err(e)),
    }
}

/// Writes a response frame to the socket `fd`, which `stream` writes to.
pub(crate) async fn write<W: AsyncWrite + Unpin>(
    stream: &mut W,
    fd: RawFd,
    resp: &Response,
) -> io::Result<()> {
    let pieces = &resp.pieces;
    let (mut i, mut at) = (0usize, 0usize);
    while i < pieces.len() {
        let sent = match &pieces[i] {
            Piece::Memory(first) => {
                let mut iov = Vec::with_capacity(IOVECS_MAX.min(pieces.len() - i));
                iov.push(libc::iovec {
                    iov_base: first[at..].as_ptr() as *mut libc::c_void,
                    iov_len: first.len() - at,
                });
                for p in pieces[i + 1..].iter().take(IOVECS_MAX - 1) {
                    let Piece::Memory(b) = p else { break };
                    iov.push(libc::iovec {
                        iov_base: b.as_ptr() as *mut libc::c_void,
                        iov_len: b.len(),
                    });
                }
                // SAFETY: the iovecs point into `pieces`, alive across the call.
                let r = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
                match nonblocking(r) {
                    Some(r) => r?,
                    // Full: let the reactor wait for room.
                    None => stream.write(&first[at..]).await?,
                }
            }
            Piece::File(f) => {
                let left = f.len as usize - at;
                let mut offset = (f.position + at as u64) as libc::off_t;
                // SAFETY: plain syscall on descriptors we hold open.
                let r = unsafe {
                    libc::sendfile(fd, f.file.as_raw_fd(), &mut offset, left.min(1 << 30))
                };
                match nonblocking(r) {
                    Some(Ok(0)) if r == 0 => return Err(shrunk(f, at)),
                    Some(r) => r?,
                    None => {
                        use std::os::unix::fs::FileExt;
                        let mut byte = [0u8; 1];
                        if f.file.read_at(&mut byte, f.position + at as u64)? == 0 {
                            return Err(shrunk(f, at));
                        }
                        stream.write(&byte).await?
                    }
                }
            }
        };
        // Advance over what was sent, across pieces, then past empty ones.
        let mut left = sent;
        while left > 0 {
            let room = pieces[i].len() - at;
            if left >= room {
                left -= room;
                i += 1;
                at = 0;
            } else {
                at += left;
                left = 0;
            }
        }
        while i < pieces.len() && pieces[i].len() == at {
            i += 1;
            at = 0;
        }
    }
    stream.flush().await
}

fn shrunk(f: &FileRegion, at: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "segment file ended {} bytes into a {} byte region at {}: closing the connection",
            at, f.len, f.position
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    /// A response with `n` partitions over two topics, some with records
    /// (given as several chunks), some with errors, aborted transactions
    /// and (from version 12) tagged fields.
    fn sample(version: i16, n: usize) -> (FetchResponse, Vec<Vec<Bytes>>) {
        let mut resp = FetchResponse::default();
        resp.throttle_time_ms = 3;
        if version >= 7 {
            resp.session_id = 77;
        }
        let mut records = Vec::new();
        for t in 0..2 {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = TopicName(StrBytes::from_string(format!("topic-{t}")));
            if version >= 13 {
                tr.topic_id = uuid::Uuid::from_u128(0x5eed_0000 + t as u128);
            }
            for p in 0..n {
                let mut pd = PartitionData::default();
                pd.partition_index = p as i32;
                pd.high_watermark = 1000 + p as i64;
                pd.last_stable_offset = 900;
                if version >= 5 {
                    pd.log_start_offset = 5;
                }
                if version >= 11 {
                    pd.preferred_read_replica = BrokerId(-1);
                }
                if p % 3 == 2 {
                    pd.error_code = 1;
                    pd.records = None;
                } else {
                    // Lengths around the varint boundaries (127, 16383).
                    let chunks: Vec<Bytes> = [0usize, 1, 126, 127, 16_382, 16_383, 70_000]
                        [(p + t) % 7..]
                        .iter()
                        .take(2)
                        .enumerate()
                        .map(|(i, len)| Bytes::from(vec![(p * 7 + i) as u8; *len]))
                        .collect();
                    records.push(chunks);
                }
                if p % 4 == 1 {
                    let mut a = AbortedTransaction::default();
                    a.producer_id = ProducerId(9);
                    a.first_offset = 10;
                    pd.aborted_transactions = Some(vec![a]);
                }
                if version >= 12 && p % 5 == 3 {
                    let mut d = EpochEndOffset::default();
                    d.epoch = 4;
                    d.end_offset = 40;
                    pd.diverging_epoch = d;
                    let mut l = LeaderIdAndEpoch::default();
                    l.leader_id = BrokerId(1);
                    l.leader_epoch = 2;
                    pd.current_leader = l;
                }
                tr.partitions.push(pd);
            }
            resp.responses.push(tr);
        }
        (resp, records)
    }

    #[test]
    fn given_every_served_fetch_version_the_frame_is_byte_identical_to_kafka_protocols() {
        let api = crate::dispatch::api(ApiKey::Fetch).expect("fetch is served");
        let (lo, hi) = (api.min, api.max);
        for version in lo..=hi {
            for n in [0, 1, 7] {
                let (resp, records) = sample(version, n);
                // Reference: records encoded in by kafka-protocol.
                let mut full = resp.clone();
                let mut it = records.iter();
                for pd in full
                    .responses
                    .iter_mut()
                    .flat_map(|t| t.partitions.iter_mut())
                {
                    if pd.records.is_some() {
                        let chunks = it.next().expect("a record set per partition");
                        pd.records = Some(chunks.concat().into());
                    }
                }
                let reference = encode(ApiKey::Fetch, version, 42, ResponseKind::Fetch(full))
                    .unwrap()
                    .to_bytes()
                    .unwrap();
                // Ours: placeholders, chunks beside.
                let mut placed = resp.clone();
                for pd in placed
                    .responses
                    .iter_mut()
                    .flat_map(|t| t.partitions.iter_mut())
                {
                    if pd.records.is_some() {
                        pd.records = Some(records_placeholder());
                    }
                }
                let chunks = records
                    .iter()
                    .map(|cs| cs.iter().cloned().map(Chunk::Memory).collect())
                    .collect();
                let ours = encode_fetch(version, 42, &placed, chunks).unwrap();
                assert_eq!(ours.body_len() + 4, reference.len(), "version {version}");
                assert_eq!(
                    ours.to_bytes().unwrap(),
                    reference,
                    "version {version}, {n} partitions"
                );
            }
        }
    }

    /// Writes `resp` from a glommio executor to a socket; returns what the
    /// write returned and every byte the peer received.
    fn send(resp: Response) -> (io::Result<()>, Vec<u8>) {
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let peer = std::thread::spawn(move || {
                    use std::io::Read;
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    // Let the socket fill before reading, so sends wait.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).unwrap();
                    got
                });
                let mut stream = listener.accept().await.unwrap();
                let fd = stream.as_raw_fd();
                let result = write(&mut stream, fd, &resp).await;
                drop(stream);
                (result, peer.join().unwrap())
            })
            .unwrap()
            .join()
            .unwrap()
    }

    fn file_of(bytes: &[u8]) -> std::sync::Arc<std::fs::File> {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        std::sync::Arc::new(f)
    }

    #[test]
    fn given_memory_and_file_pieces_larger_than_the_socket_buffers_the_peer_gets_every_byte() {
        let data: Vec<u8> = (0..24usize << 20)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        let file = file_of(&data);
        let pieces = vec![
            Piece::Memory(Bytes::from_static(b"head")),
            Piece::File(FileRegion {
                file: file.clone(),
                position: 3,
                len: (16 << 20) - 3,
            }),
            Piece::Memory(Bytes::from(vec![9u8; 3 << 20])),
            Piece::Memory(Bytes::from_static(b"")),
            Piece::File(FileRegion {
                file,
                position: 16 << 20,
                len: 8 << 20,
            }),
        ];
        let resp = Response { pieces };
        let want = resp.to_bytes().unwrap();
        let (result, got) = send(resp);
        result.unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes differ");
    }

    #[test]
    fn given_a_file_shorter_than_its_region_the_write_fails_after_the_bytes_it_had() {
        let file = file_of(&[5u8; 10_000]);
        let resp = Response {
            pieces: vec![
                Piece::Memory(Bytes::from_static(b"size")),
                Piece::File(FileRegion {
                    file,
                    position: 0,
                    len: 20_000,
                }),
            ],
        };
        let (result, got) = send(resp);
        let e = result.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // The frame is short: the connection must close, never be padded.
        assert_eq!(got.len(), 4 + 10_000);
    }

    #[test]
    fn given_fewer_record_sets_than_placeholders_encoding_fails() {
        let (mut resp, _) = sample(11, 2);
        for pd in resp
            .responses
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            pd.records = Some(records_placeholder());
        }
        assert!(encode_fetch(11, 1, &resp, vec![vec![]]).is_err());
    }
}
