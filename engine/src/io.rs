//! Direct I/O on glommio `DmaFile`s: opening files safely on this kernel and
//! disk, and appending to them in whole 4 KiB blocks.
//!
//! ## The polled-I/O guard
//! glommio decides once per thread and per block device whether reads may go
//! to the io_uring poll ring, by reading the first block of the first
//! `DmaFile` it opens there. When that file is empty the read returns EOF,
//! which glommio takes as "polling works"; on devices without polled I/O
//! (virtio disks, most cloud volumes) every later read then fails with
//! EOPNOTSUPP. [`open`] is the only way the engine opens a `DmaFile`, and it
//! first makes glommio probe a non-empty file of its own on the same device,
//! so the probe sees a real read and decides correctly.
//!
//! ## Appends
//! [`AppendFile`] keeps the last partial block of a file in memory. An append
//! writes that block again followed by the new bytes, zero-padded to a block
//! boundary, in one write at the block-aligned position. The rewritten prefix
//! holds the same bytes that are already on disk, so a write torn at any
//! sector leaves the earlier data as it was (see `engine/DESIGN.md`). The
//! file therefore ends with up to one block of zero padding past its logical
//! length; [`AppendFile::finish`] cuts it off when a file is closed for good.

use std::cell::RefCell;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::error::{EngineError, Result};

/// The write unit: every write starts and ends on a multiple of it.
pub const BLOCK: u64 = 4096;

const PROBE_FILE: &str = ".sluice-io-probe";

thread_local! {
    /// Devices on which this thread's glommio reactor has probed polled I/O.
    static PROBED: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

fn io_err(path: &Path, e: impl Into<std::io::Error>) -> EngineError {
    EngineError::io(path, e.into())
}

/// Makes glommio's polled-I/O probe for the device holding `dir` run against
/// a non-empty file. Idempotent per thread and device.
pub async fn probe_device(dir: &Path) -> Result<()> {
    let dev = std::fs::metadata(dir).map_err(|e| io_err(dir, e))?.dev();
    if PROBED.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let path = dir.join(PROBE_FILE);
    let size_ok = std::fs::metadata(&path).is_ok_and(|m| m.len() >= BLOCK);
    if !size_ok {
        std::fs::write(&path, [0u8; BLOCK as usize]).map_err(|e| io_err(&path, e))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .dma_open(&path)
        .await
        .map_err(|e| io_err(&path, e))?;
    file.close().await.map_err(|e| io_err(&path, e))?;
    PROBED.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

/// Opens (or, with `create`, creates) a file for direct I/O, reads and
/// writes, after the polled-I/O guard.
pub async fn open(path: &Path, create: bool) -> Result<DmaFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    probe_device(dir).await?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .dma_open(path)
        .await
        .map_err(|e| io_err(path, e))
}

/// Opens a file for direct-I/O reads only.
pub async fn open_read(path: &Path) -> Result<DmaFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    probe_device(dir).await?;
    OpenOptions::new()
        .read(true)
        .dma_open(path)
        .await
        .map_err(|e| io_err(path, e))
}

/// Reads `len` bytes at `pos`; fewer only at the end of the file.
pub async fn read_at(file: &DmaFile, path: &Path, pos: u64, len: usize) -> Result<Vec<u8>> {
    let r = file.read_at(pos, len).await.map_err(|e| io_err(path, e))?;
    Ok(r.to_vec())
}

/// Reads a whole (small) file, such as an index.
pub async fn read_all(path: &Path) -> Result<Vec<u8>> {
    let file = open_read(path).await?;
    let len = file.file_size().await.map_err(|e| io_err(path, e))?;
    let len = usize::try_from(len).map_err(|_| io_err(path, std::io::ErrorKind::FileTooLarge))?;
    let data = read_at(&file, path, 0, len).await;
    file.close().await.map_err(|e| io_err(path, e))?;
    data
}

/// fsyncs a directory, so that files created, renamed or removed in it stay
/// so after a crash.
pub async fn sync_dir(dir: &Path) -> Result<()> {
    let dir = &std::path::absolute(dir).map_err(|e| EngineError::io(dir, e))?;
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| io_err(dir, e))?;
    d.sync().await.map_err(|e| io_err(dir, e))?;
    d.close().await.map_err(|e| io_err(dir, e))
}

/// What [`sync_many`] makes durable.
#[derive(Clone, Debug)]
pub enum Durable {
    /// The names in a directory.
    Names(PathBuf),
    /// A file's data.
    Data(PathBuf),
}

/// fdatasyncs a (small, buffered) file through the reactor.
async fn sync_data(path: &Path) -> Result<()> {
    let f = glommio::io::BufferedFile::open(path)
        .await
        .map_err(|e| io_err(path, e))?;
    f.fdatasync().await.map_err(|e| io_err(path, e))?;
    f.close().await.map_err(|e| io_err(path, e))
}

/// fsyncs `items`, `in_flight` at a time, concurrently: the device (and,
/// on a journaling file system, the journal) serves several at once, so
/// many new names cost about as much as a few rounds. The first error,
/// once every fsync completed.
pub async fn sync_many(items: &[Durable], in_flight: usize) -> Result<()> {
    let slots = Rc::new(glommio::sync::Semaphore::new(in_flight.max(1) as u64));
    let tasks: Vec<_> = items
        .iter()
        .map(|d| {
            let (d, slots) = (d.clone(), slots.clone());
            glommio::spawn_local(async move {
                let _slot = slots.acquire_permit(1).await;
                match d {
                    Durable::Names(dir) => sync_dir(&dir).await,
                    Durable::Data(file) => sync_data(&file).await,
                }
            })
        })
        .collect();
    let mut failed = None;
    for t in tasks {
        if let Err(e) = t.await {
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The DMA memory a shard's executor reserves (glommio's `io_memory`) when
/// its write buffer is `write_buffer_bytes`. Append writes take their
/// buffers from it; a buffer that does not fit comes from the heap instead,
/// and a fresh heap buffer costs page faults, zeroing and an unmap on every
/// write: with glommio's 10 MiB default, 1 MiB-batch appends ran at 0.61–0.72
/// of fio's direct write in the same rounds as 0.76–0.81 with 64 MiB
/// (bench/README.md, 2026-11-30), and a 32 MiB copy into a heap buffer took
/// 20 ms instead of 3.
///
/// The data in write buffers never exceeds the write buffer, but glommio's
/// buddy allocator rounds every buffer up to a power of two, so up to twice
/// that is reserved; the slack covers the partial blocks rewritten and the
/// index writes.
pub fn io_memory(write_buffer_bytes: u64) -> usize {
    const SLACK: usize = 8 << 20;
    usize::try_from(write_buffer_bytes)
        .unwrap_or(usize::MAX / 4)
        .saturating_mul(2)
        .saturating_add(SLACK)
}

/// A file appended to in whole blocks; see the module docs.
pub struct AppendFile {
    file: Rc<DmaFile>,
    path: PathBuf,
    /// Logical length: bytes of data in the file, counting a prepared
    /// write still in flight.
    len: u64,
    /// The bytes `[align_down(len), len)`: the last partial block.
    tail: Vec<u8>,
}

/// An append built by [`AppendFile::prepare`], not yet written.
pub struct PreparedWrite {
    buf: DmaBuffer,
    /// Block-aligned file position the buffer goes to.
    start: u64,
    /// The file's logical length once it is written.
    end: u64,
}

impl PreparedWrite {
    /// The file's logical length once this is written.
    pub fn end(&self) -> u64 {
        self.end
    }
}

fn align_down(v: u64) -> u64 {
    v - v % BLOCK
}

impl AppendFile {
    /// Wraps an open file whose logical length is `len`, reading its last
    /// partial block back.
    pub async fn new(file: Rc<DmaFile>, path: PathBuf, len: u64) -> Result<Self> {
        let start = align_down(len);
        let tail_len = (len - start) as usize;
        let tail = if tail_len > 0 {
            let t = read_at(&file, &path, start, tail_len).await?;
            if t.len() != tail_len {
                return Err(EngineError::Corrupt {
                    path,
                    position: start,
                    why: format!("file ends before its logical length {len}"),
                });
            }
            t
        } else {
            Vec::new()
        };
        Ok(Self {
            file,
            path,
            len,
            tail,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn file(&self) -> &Rc<DmaFile> {
        &self.file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `chunks` after the logical end in one block-aligned write.
    /// On error nothing about the file may be assumed: the caller poisons it.
    pub async fn append(&mut self, chunks: &[&[u8]]) -> Result<()> {
        match self.prepare(chunks) {
            Some(w) => self.write(w).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Builds the write that appends `chunks` after the logical end — the
    /// last partial block again, the chunks, zero padding — and moves the
    /// logical end past them, so that the next `prepare` follows this one.
    /// The bytes are on disk only once [`AppendFile::write`] of it
    /// completes, and writes must complete in the order they were prepared:
    /// the caller keeps at most one in flight. `None` when there is nothing
    /// to write.
    pub fn prepare(&mut self, chunks: &[&[u8]]) -> Option<PreparedWrite> {
        let data: usize = chunks.iter().map(|c| c.len()).sum();
        if data == 0 {
            return None;
        }
        let start = align_down(self.len);
        let used = self.tail.len() + data;
        let padded = used.div_ceil(BLOCK as usize) * BLOCK as usize;
        let mut buf = self.file.alloc_dma_buffer(padded);
        let out = buf.as_bytes_mut();
        out[..self.tail.len()].copy_from_slice(&self.tail);
        let mut at = self.tail.len();
        for c in chunks {
            out[at..at + c.len()].copy_from_slice(c);
            at += c.len();
        }
        out[at..].fill(0);
        let new_len = self.len + data as u64;
        let new_tail_start = (align_down(new_len) - start) as usize;
        self.tail = out[new_tail_start..at].to_vec();
        self.len = new_len;
        Some(PreparedWrite {
            buf,
            start,
            end: new_len,
        })
    }

    /// Writes a prepared append. The future borrows nothing, so the next
    /// append can be prepared while it is in flight. Resolves to the logical
    /// length the file has once it completed. On error nothing about the
    /// file may be assumed: the caller poisons it.
    pub fn write(
        &self,
        w: PreparedWrite,
    ) -> impl std::future::Future<Output = Result<u64>> + 'static {
        let (file, path) = (self.file.clone(), self.path.clone());
        async move {
            let padded = w.buf.len();
            let written = file
                .write_at(w.buf, w.start)
                .await
                .map_err(|e| io_err(&path, e))?;
            if written != padded {
                return Err(io_err(
                    &path,
                    std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        format!("short write: {written} of {padded} bytes"),
                    ),
                ));
            }
            Ok(w.end)
        }
    }

    /// fdatasync: everything appended so far is on stable storage.
    pub async fn sync(&self) -> Result<()> {
        self.sync_later().await
    }

    /// An fdatasync of the file that does not borrow it: appends may go on
    /// while it runs. It covers every append completed before it started.
    pub fn sync_later(&self) -> impl std::future::Future<Output = Result<()>> + 'static {
        let (file, path) = (self.file.clone(), self.path.clone());
        async move { file.fdatasync().await.map_err(|e| io_err(&path, e)) }
    }

    /// Cuts the file to `len` bytes (dropping the block padding, or data past
    /// a truncation point) and makes that durable.
    pub async fn truncate(&mut self, len: u64) -> Result<()> {
        assert!(len <= self.len, "truncate only shrinks");
        self.file
            .truncate(len)
            .await
            .map_err(|e| io_err(&self.path, e))?;
        self.sync().await?;
        let start = align_down(len);
        let keep = (len - start) as usize;
        if align_down(self.len) == start {
            self.tail.truncate(keep);
        } else {
            let t = read_at(&self.file, &self.path, start, keep).await?;
            self.tail = t;
        }
        self.len = len;
        Ok(())
    }

    /// Drops the zero padding past the logical end and syncs: the file is
    /// then exactly as long as its data, as Kafka's closed segments are.
    pub async fn finish(&mut self) -> Result<()> {
        let len = self.len;
        self.truncate(len).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::run;

    #[test]
    fn given_new_empty_file_when_read_after_write_should_not_fail_with_eopnotsupp() {
        // The regression this guards: a first DmaFile created empty made
        // glommio send every later read to the poll ring on virtio disks.
        run(|| async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("first.log");
            let file = Rc::new(open(&path, true).await.unwrap());
            let mut f = AppendFile::new(file.clone(), path.clone(), 0)
                .await
                .unwrap();
            f.append(&[b"hello"]).await.unwrap();
            f.sync().await.unwrap();
            let back = read_at(&file, &path, 0, 5).await.unwrap();
            assert_eq!(back, b"hello");
        });
    }

    #[test]
    fn given_appends_across_blocks_should_keep_every_byte_and_pad_the_file() {
        run(|| async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.log");
            let file = Rc::new(open(&path, true).await.unwrap());
            let mut f = AppendFile::new(file.clone(), path.clone(), 0)
                .await
                .unwrap();
            let mut expect = Vec::new();
            for i in 0..50u32 {
                let chunk: Vec<u8> = (0..(i * 397 % 9000)).map(|j| (i + j) as u8).collect();
                f.append(&[&chunk, b"x"]).await.unwrap();
                expect.extend_from_slice(&chunk);
                expect.push(b'x');
            }
            assert_eq!(f.len(), expect.len() as u64);
            let on_disk = std::fs::read(&path).unwrap();
            assert_eq!(on_disk.len() as u64 % BLOCK, 0);
            assert_eq!(&on_disk[..expect.len()], &expect[..]);
            assert!(on_disk[expect.len()..].iter().all(|&b| b == 0));
            // Reopen at the logical length and keep appending.
            let mut g = AppendFile::new(file, path.clone(), f.len()).await.unwrap();
            g.append(&[b"tail"]).await.unwrap();
            g.truncate(expect.len() as u64 + 2).await.unwrap();
            g.append(&[b"!"]).await.unwrap();
            g.finish().await.unwrap();
            expect.extend_from_slice(b"ta!");
            assert_eq!(std::fs::read(&path).unwrap(), expect);
        });
    }
}
