//! The physical limits results are compared with, measured in the same run:
//!
//! * [`NullSink`]: accepts length-prefixed request frames on a socket and
//!   appends the received bytes, framing included, to an O_DIRECT file; it
//!   answers each frame, once its bytes are written (and, by default,
//!   fdatasync'ed: group commit, as a durable broker), with an 8-byte frame
//!   carrying the correlation id. No other protocol work.
//!   [`paced_latency`] measures the publish latency a producer schedule gets
//!   from it: the latency limit of a run at a target rate.
//! * [`SendfileServer`]: sends N bytes of a file with sendfile(2) for each
//!   8-byte request N; [`sendfile_fetch`] reads them. The file is evicted
//!   from the page cache first (cold data).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sluice_engine::partition::{DELETE_PAUSE, DELETE_STEP};

use crate::kafka::Stats;
use crate::raw;

/// O_DIRECT alignment.
pub const BLOCK: usize = 4096;
/// Bytes the sink reads from the socket at most at once.
const READ_CHUNK: usize = 1 << 20;
/// Chunks read and not yet written, at most (bounds the sink's memory).
const QUEUED_CHUNKS: usize = 64;
/// Most bytes in one write (and fdatasync) of the sink: the engine's group
/// cap, so that both group the same way.
const GROUP_MAX: usize = sluice_engine::partition::WRITE_BYTES_MAX;
/// The largest request frame the sink accepts (Kafka's
/// `socket.request.max.bytes`).
const MAX_FRAME: usize = 100 << 20;

/// Finds frame boundaries in a byte stream: `size: u32` then `size` bytes,
/// the correlation id at bytes 4..8 of the body (a Kafka request header).
#[derive(Default)]
pub struct FrameScanner {
    /// The current frame's first 12 bytes (size, key, version, correlation).
    header: [u8; 12],
    /// Bytes of the current frame seen, size prefix included.
    at: usize,
    /// The current frame's length with its prefix, once known.
    len: usize,
}

impl FrameScanner {
    /// Scans `data`, pushing the correlation id of every frame that ends in
    /// it to `done`.
    pub fn scan(&mut self, mut data: &[u8], done: &mut Vec<i32>) -> Result<(), String> {
        while !data.is_empty() {
            let take = if self.at < 12 {
                let take = (12 - self.at).min(data.len());
                self.header[self.at..self.at + take].copy_from_slice(&data[..take]);
                if self.at + take >= 4 && self.len == 0 {
                    let size = u32::from_be_bytes(self.header[..4].try_into().expect("4 bytes"));
                    if !(8..=MAX_FRAME as u32).contains(&size) {
                        return Err(format!("bad frame size {size}"));
                    }
                    self.len = size as usize + 4;
                }
                take
            } else {
                (self.len - self.at).min(data.len())
            };
            self.at += take;
            data = &data[take..];
            if self.at >= 12 && self.at == self.len {
                done.push(i32::from_be_bytes(
                    self.header[8..12].try_into().expect("4 bytes"),
                ));
                *self = Self::default();
            }
        }
        Ok(())
    }
}

/// The reply to a frame: size 4, then the correlation id.
pub fn sink_reply(correlation: i32, out: &mut Vec<u8>) {
    out.extend_from_slice(&4u32.to_be_bytes());
    out.extend_from_slice(&correlation.to_be_bytes());
}

/// A block-aligned buffer of `len` bytes (in a slightly larger Vec).
struct Aligned {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let buf = vec![0u8; len + BLOCK];
        let off = buf.as_ptr().align_offset(BLOCK);
        Self { buf, off, len }
    }
    fn get(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// The null sink: a listener whose connections each append to their own
/// O_DIRECT file in `dir`.
pub struct NullSink {
    pub addr: SocketAddr,
    /// Bytes written to the files, over all connections.
    pub bytes: Arc<AtomicU64>,
}

/// Null sink settings.
#[derive(Clone)]
pub struct SinkConfig {
    pub dir: PathBuf,
    /// fdatasync after every write, before answering (durable).
    pub sync: bool,
    /// A connection goes on in a new file when its file reaches this size,
    /// and the full one is removed by another thread, as a broker rolls
    /// segments and retention removes them (bounds the disk space a run
    /// takes).
    pub file_bytes: u64,
}

impl NullSink {
    /// Listens on `listen` (e.g. 127.0.0.1:0) and serves in background threads.
    pub fn spawn(listen: &str, cfg: SinkConfig) -> Result<Self, String> {
        let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let bytes = Arc::new(AtomicU64::new(0));
        let total = bytes.clone();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let (cfg, total) = (cfg.clone(), total.clone());
                match conn {
                    Ok(s) => {
                        std::thread::spawn(move || {
                            let name = format!("null-sink-{n}");
                            if let Err(e) = serve_sink(s, &name, &cfg, &total) {
                                eprintln!("[null-sink] connection {n}: {e}");
                            }
                        });
                    }
                    Err(e) => eprintln!("[null-sink] accept: {e}"),
                }
            }
        });
        Ok(Self { addr, bytes })
    }
}

/// What the socket reader hands to the writer: a buffer, how many of its
/// bytes were read, and the correlation ids of the frames that end in them.
type Chunk = (Vec<u8>, usize, Vec<i32>);

/// One connection: a reader thread reads the socket into chunks; this
/// thread writes every chunk queued (up to [`GROUP_MAX`]) with one O_DIRECT
/// write and one fdatasync (group commit), then answers their frames. The
/// reads overlap the write, as a broker's network threads overlap its log.
fn serve_sink(
    s: TcpStream,
    name: &str,
    cfg: &SinkConfig,
    total: &AtomicU64,
) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut input = s.try_clone()?;
    let (tx, rx) = mpsc::sync_channel::<Chunk>(QUEUED_CHUNKS);
    // Read buffers go round: reader -> writer -> back, never reallocated.
    let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(QUEUED_CHUNKS + 2);
    for _ in 0..QUEUED_CHUNKS + 2 {
        free_tx
            .send(vec![0u8; READ_CHUNK])
            .map_err(|_| std::io::Error::other("the buffer pool"))?;
    }
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let mut scanner = FrameScanner::default();
        while let Ok(mut buf) = free_rx.recv() {
            let n = input.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            let mut done = Vec::new();
            scanner
                .scan(&buf[..n], &mut done)
                .map_err(std::io::Error::other)?;
            if tx.send((buf, n, done)).is_err() {
                return Ok(());
            }
        }
        Ok(())
    });
    let written = write_groups(name, (rx, free_tx), s.try_clone()?, cfg, total);
    if written.is_err() {
        // The reader may be blocked in read(): wake it.
        if let Err(e) = s.shutdown(Shutdown::Both) {
            eprintln!("[null-sink] shutdown: {e}");
        }
    }
    let read = reader
        .join()
        .map_err(|_| std::io::Error::other("the sink's reader panicked"))?;
    written.and(read)
}

/// A sink connection's current file: `dir/NAME.K`, appended with O_DIRECT.
struct SinkFile {
    file: File,
    path: PathBuf,
    k: u64,
}

impl SinkFile {
    fn create(dir: &Path, name: &str, k: u64) -> std::io::Result<Self> {
        let path = dir.join(format!("{name}.{k}"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)?;
        Ok(Self { file, path, k })
    }

    /// Removes the file on another thread, as the engine deletes a removed
    /// segment: shrunk [`DELETE_STEP`] bytes at a time, [`DELETE_PAUSE`]
    /// apart, then unlinked. Freeing a whole 1 GiB file at once (one
    /// truncation or unlink) held the sink's next fdatasyncs back by
    /// 100–200 ms here.
    fn remove_later(self) {
        std::thread::spawn(move || {
            let mut len = self.file.metadata().map_or(0, |m| m.len());
            while len > DELETE_STEP {
                len -= DELETE_STEP;
                if let Err(e) = self.file.set_len(len) {
                    eprintln!("[null-sink] shrink {}: {e}", self.path.display());
                    break;
                }
                std::thread::sleep(DELETE_PAUSE);
            }
            drop(self.file);
            if let Err(e) = std::fs::remove_file(&self.path) {
                eprintln!("[null-sink] remove {}: {e}", self.path.display());
            }
        });
    }
}

fn write_groups(
    name: &str,
    (rx, free): (mpsc::Receiver<Chunk>, mpsc::SyncSender<Vec<u8>>),
    mut out: TcpStream,
    cfg: &SinkConfig,
    total: &AtomicU64,
) -> std::io::Result<()> {
    let mut current = SinkFile::create(&cfg.dir, name, 0)?;
    // Staging: a partial tail block carried over, plus one group.
    let mut staging = Aligned::new(GROUP_MAX + READ_CHUNK + BLOCK);
    let mut staged = 0usize;
    let mut file_at = 0u64;
    let mut replies = Vec::new();
    while let Ok(first) = rx.recv() {
        let buf = staging.get();
        let mut group = 0;
        replies.clear();
        let mut next = Some(first);
        while let Some((bytes, n, done)) = next.take() {
            buf[staged..staged + n].copy_from_slice(&bytes[..n]);
            staged += n;
            group += n;
            if free.send(bytes).is_err() {
                break;
            }
            for c in done {
                sink_reply(c, &mut replies);
            }
            if group < GROUP_MAX {
                next = rx.try_recv().ok();
            }
        }
        let padded = staged.div_ceil(BLOCK) * BLOCK;
        buf[staged..padded].fill(0);
        current.file.write_all_at(&buf[..padded], file_at)?;
        if cfg.sync {
            current.file.sync_data()?;
        }
        total.fetch_add(group as u64, Ordering::Relaxed);
        let full = staged / BLOCK * BLOCK;
        buf.copy_within(full..staged, 0);
        staged -= full;
        file_at += full as u64;
        if file_at >= cfg.file_bytes {
            // The bytes of a partial last block go on at the new file's start.
            let next = SinkFile::create(&cfg.dir, name, current.k + 1)?;
            std::mem::replace(&mut current, next).remove_later();
            file_at = 0;
        }
        out.write_all(&replies)?;
    }
    current.remove_later();
    Ok(())
}

/// A producer schedule whose publish latency is measured against a null
/// sink: the latency limit of a run at a target rate.
pub struct PacedPlan {
    pub producers: usize,
    /// Messages per second, per producer.
    pub rate: f64,
    pub linger: Duration,
    pub batch_bytes: usize,
    pub in_flight: usize,
    pub payloads: Arc<Vec<Vec<u8>>>,
    /// Not measured: the first requests, connections and files.
    pub warmup: Duration,
    pub seconds: f64,
}

/// The publish latency `plan` gets from the null sink at `addr`: its
/// producers, each the raw paced producer (as `--client raw` sends), for
/// `plan.seconds` after `plan.warmup`. That is the linger, the network and
/// one durable write, with no protocol work.
pub fn paced_latency(
    addr: &str,
    partitions: u32,
    acks: i16,
    plan: &PacedPlan,
) -> Result<Histogram<u64>, String> {
    let stats = Arc::new(Stats::new(
        Instant::now(),
        (plan.seconds + plan.warmup.as_secs_f64()) as usize + 60,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let jobs: Vec<_> = (0..plan.producers.max(1))
        .map(|_| {
            let job = raw::PacedJob {
                addr: addr.to_string(),
                topic: "null".into(),
                partitions,
                acks,
                linger: plan.linger,
                batch_bytes: plan.batch_bytes,
                in_flight: plan.in_flight,
                rate: plan.rate,
                payloads: plan.payloads.clone(),
                stop: stop.clone(),
            };
            let stats = stats.clone();
            std::thread::spawn(move || raw::produce_paced(job, stats))
        })
        .collect();
    std::thread::sleep(plan.warmup);
    stats.reset_latencies();
    std::thread::sleep(Duration::from_secs_f64(plan.seconds));
    let [latency, _, _] = stats.histograms();
    stop.store(true, Ordering::Relaxed);
    for j in jobs {
        j.join()
            .map_err(|_| "a paced producer panicked".to_string())??;
    }
    Ok(latency)
}

/// Writes `bytes` (rounded up to whole MiB) of pseudo-random data to `path`
/// with O_DIRECT, so none of it is in the page cache afterwards.
pub fn prepare_file(path: &Path, bytes: u64) -> Result<(), String> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    let mut chunk = Aligned::new(1 << 20);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in chunk.get().chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
    }
    for i in 0..bytes.div_ceil(1 << 20) {
        file.write_all_at(chunk.get(), i << 20)
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Serves a file with sendfile(2).
pub struct SendfileServer {
    pub addr: SocketAddr,
}

impl SendfileServer {
    pub fn spawn(listen: &str, path: PathBuf) -> Result<Self, String> {
        let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let path = path.clone();
                match conn {
                    Ok(s) => {
                        std::thread::spawn(move || {
                            if let Err(e) = serve_sendfile(s, &path) {
                                eprintln!("[sendfile-server] {e}");
                            }
                        });
                    }
                    Err(e) => eprintln!("[sendfile-server] accept: {e}"),
                }
            }
        });
        Ok(Self { addr })
    }
}

fn serve_sendfile(mut s: TcpStream, path: &Path) -> std::io::Result<()> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Err(std::io::Error::other("the file to serve is empty"));
    }
    // Cold data: drop the file's pages from the cache.
    // SAFETY: a valid descriptor; fadvise only reads its arguments.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    // Read-ahead as for any sequential reader that says so.
    // SAFETY: as above.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    let mut offset: libc::off_t = 0;
    loop {
        let mut req = [0u8; 8];
        match s.read_exact(&mut req) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut left = u64::from_be_bytes(req);
        while left > 0 {
            if offset as u64 >= len {
                offset = 0;
            }
            let count = left.min(len - offset as u64).min(1 << 30) as usize;
            // SAFETY: valid descriptors and a valid offset pointer.
            let n = unsafe { libc::sendfile(s.as_raw_fd(), file.as_raw_fd(), &mut offset, count) };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if n == 0 {
                return Err(std::io::Error::other("sendfile sent nothing"));
            }
            left -= n as u64;
        }
    }
}

/// Asks the sendfile server at `addr` for `bytes` bytes and reads them;
/// returns how long that took.
pub fn sendfile_fetch(addr: SocketAddr, bytes: u64) -> Result<Duration, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let start = Instant::now();
    s.write_all(&bytes.to_be_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = s.read(&mut buf[..want]).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the sendfile server closed early".into());
        }
        left -= n as u64;
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(correlation: i32, body_len: usize) -> Vec<u8> {
        let mut f = ((body_len + 8) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&[0, 0, 0, 7]);
        f.extend_from_slice(&correlation.to_be_bytes());
        f.extend(std::iter::repeat_n(0xab, body_len));
        f
    }

    #[test]
    fn scanner_finds_frames_split_anywhere() {
        let stream: Vec<u8> = [frame(1, 0), frame(2, 100), frame(3, 5000)].concat();
        for step in [1, 3, 7, 12, 4096, stream.len()] {
            let mut s = FrameScanner::default();
            let mut done = Vec::new();
            for part in stream.chunks(step) {
                s.scan(part, &mut done).unwrap();
            }
            assert_eq!(done, vec![1, 2, 3], "step {step}");
        }
        assert!(FrameScanner::default()
            .scan(&[0, 0, 0, 1, 0], &mut Vec::new())
            .is_err());
    }

    #[test]
    fn sink_writes_and_answers_every_frame() {
        let dir = crate::fresh_dir("null-sink-test");
        let sink = NullSink::spawn(
            "127.0.0.1:0",
            SinkConfig {
                dir: dir.path().to_path_buf(),
                sync: false,
                file_bytes: 1 << 20,
            },
        )
        .unwrap();
        let mut s = TcpStream::connect(sink.addr).unwrap();
        let stream: Vec<u8> = (0..50).flat_map(|c| frame(c, 50_000)).collect();
        s.write_all(&stream).unwrap();
        let mut reply = vec![0u8; 8 * 50];
        s.read_exact(&mut reply).unwrap();
        let mut want = Vec::new();
        (0..50).for_each(|c| sink_reply(c, &mut want));
        assert_eq!(reply, want);
        assert_eq!(sink.bytes.load(Ordering::Relaxed), stream.len() as u64);
        // 2.5 MB went through three 1 MiB files; once the connection ends,
        // none is left.
        drop(s);
        let empty = || std::fs::read_dir(dir.path()).unwrap().next().is_none();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(empty(), "the sink's files are removed");
    }

    #[test]
    fn the_paced_producers_latency_against_the_sink_counts_every_message_acknowledged() {
        let dir = crate::fresh_dir("null-sink-paced");
        let sink = NullSink::spawn(
            "127.0.0.1:0",
            SinkConfig {
                dir: dir.path().to_path_buf(),
                sync: true,
                file_bytes: 1 << 20,
            },
        )
        .unwrap();
        let plan = PacedPlan {
            producers: 2,
            rate: 2_000.0,
            linger: Duration::from_millis(1),
            batch_bytes: 64 << 10,
            in_flight: 5,
            payloads: Arc::new(vec![vec![7u8; 100]]),
            warmup: Duration::from_millis(200),
            seconds: 1.0,
        };
        let h = paced_latency(&sink.addr.to_string(), 1, -1, &plan).unwrap();
        // Messages are recorded as they are acknowledged, after the
        // warm-up: some, and never more than were scheduled in all.
        let scheduled = 2.0 * 2_000.0 * 1.2;
        assert!(
            !h.is_empty() && (h.len() as f64) <= scheduled,
            "{}",
            h.len()
        );
        // Every batch went through the sink and its files.
        assert!(sink.bytes.load(Ordering::Relaxed) >= h.len() * 100);
    }
}
