//! Writes the seed corpora of the fuzz targets:
//! `cargo run --manifest-path fuzz/seedgen/Cargo.toml -- fuzz/seeds`
//! (the output is committed; rerun it when the batch format or the
//! `segment_scan` program layout changes).

use std::path::{Path, PathBuf};

use sluice_engine::batch::{self, build, build::Record};

const TS: i64 = 1_700_000_000_000;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create seed dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn recrc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[batch::CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn batch_validate(dir: &Path) {
    write(dir, "simple-1", &build::simple(1, 0, 0, TS));
    write(dir, "simple-3", &build::simple(3, 20, b'a', TS));
    let rich = build::batch(
        &[
            Record {
                key: Some(b"key".to_vec()),
                value: Some(b"value".to_vec()),
                headers: vec![(b"h".to_vec(), Some(b"v".to_vec())), (b"n".to_vec(), None)],
            },
            Record {
                key: None,
                value: None,
                headers: vec![],
            },
            Record {
                key: Some(vec![]),
                value: Some(vec![7; 200]),
                headers: vec![(vec![], Some(vec![]))],
            },
        ],
        -1,
    );
    write(dir, "rich", &rich);
    let mut b = build::simple(2, 5, b'x', TS);
    batch::assign(&mut b, 42, 7);
    batch::set_log_append_time(&mut b, TS + 1);
    write(dir, "log-append-time", &b);
    // A zstd batch: the records are opaque to the checks.
    let mut b = build::simple(2, 30, b'z', TS);
    b[22] |= 4;
    recrc(&mut b);
    write(dir, "zstd", &b);
    // A control batch: stored by the broker, refused from a client.
    let mut b = build::simple(1, 4, 0, TS);
    b[22] |= 0x20;
    recrc(&mut b);
    write(dir, "control", &b);
}

/// A `segment_scan` program (see fuzz_targets/segment_scan.rs), which also
/// knows where its batches lie.
struct Program {
    bytes: Vec<u8>,
    positions: Vec<usize>,
    len: usize,
}

impl Program {
    fn new(batches: &[(u8, u16, u8)]) -> Self {
        let mut p = Program {
            bytes: vec![batches.len() as u8],
            positions: Vec::new(),
            len: 0,
        };
        for &(records, value_len, fill) in batches {
            p.bytes.push(records);
            p.bytes.extend_from_slice(&value_len.to_le_bytes());
            p.bytes.push(fill);
            let count = 1 + usize::from(records) % 4;
            p.positions.push(p.len);
            p.len += build::simple(count, usize::from(value_len), fill, 0).len();
        }
        p
    }
    fn u24(&mut self, v: usize) {
        self.bytes.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
    }
    fn truncate(mut self, at: usize) -> Self {
        self.bytes.push(0);
        self.u24(at);
        self
    }
    fn flip(mut self, at: usize, bit: u8) -> Self {
        self.bytes.push(1);
        self.u24(at);
        self.bytes.push(bit);
        self
    }
    fn overwrite(mut self, at: usize, with: &[u8]) -> Self {
        self.bytes.push(2);
        self.u24(at);
        self.bytes.push(with.len() as u8);
        self.bytes.extend_from_slice(with);
        self
    }
    fn zeros(mut self, n: u16) -> Self {
        self.bytes.push(3);
        self.bytes.extend_from_slice(&n.to_le_bytes());
        self
    }
    fn offset(mut self, batch: u8, offset: i64) -> Self {
        self.bytes.push(5);
        self.bytes.push(batch);
        self.bytes.extend_from_slice(&offset.to_be_bytes());
        self
    }
    fn copy(mut self, from: usize, to: usize, n: u16) -> Self {
        self.bytes.push(4);
        self.u24(from);
        self.u24(to);
        self.bytes.extend_from_slice(&n.to_le_bytes());
        self
    }
}

fn segment_scan(dir: &Path) {
    let five = [(0, 10, 1), (2, 100, 2), (3, 0, 3), (1, 700, 4), (0, 33, 5)];
    write(dir, "intact", &Program::new(&five).bytes);

    let p = Program::new(&five);
    let at = p.positions[4] + 70;
    write(dir, "torn-tail", &p.truncate(at).zeros(5000).bytes);

    let p = Program::new(&five);
    let at = p.positions[2] + 8;
    write(dir, "flipped-length", &p.flip(at, 6).bytes);

    let p = Program::new(&five);
    let at = p.positions[1] + 100;
    write(dir, "flipped-value", &p.flip(at, 0).bytes);

    let p = Program::new(&five);
    let (from, to) = (p.positions[0], p.positions[3]);
    let n = (p.positions[1] - p.positions[0]) as u16;
    write(dir, "stale-copy", &p.copy(from, to, n).bytes);

    let p = Program::new(&five);
    let at = p.positions[2];
    let offset = 1000i64.to_be_bytes();
    write(dir, "offset-gap", &p.overwrite(at, &offset).bytes);

    let p = Program::new(&five);
    let at = p.positions[1] + 20;
    write(
        dir,
        "offset-rewrite",
        &p.flip(at, 2).offset(3, 5).offset(4, 1 << 40).bytes,
    );

    write(dir, "empty-zeros", &Program::new(&[]).zeros(4096).bytes);

    let many: Vec<(u8, u16, u8)> = (0..64u8).map(|i| (i, u16::from(i) * 3, i)).collect();
    let p = Program::new(&many);
    let (a, b) = (p.positions[10] + 30, p.positions[40] + 12);
    let end = p.len;
    write(
        dir,
        "many-damaged",
        &p.flip(a, 3)
            .overwrite(b, &[0xff; 4])
            .truncate(end - 9)
            .zeros(100)
            .bytes,
    );
}

/// Snapshots of producer tables: empty, one producer, several with full
/// batch histories.
fn producer_snapshot(dir: &Path) {
    use sluice_engine::producers::ProducerTable;
    let mut t = ProducerTable::default();
    write(dir, "empty", &t.encode_snapshot(0));
    let mut offset = 0i64;
    for pid in 0..4i64 {
        for seq in 0..(1 + pid as i32 * 2) {
            let mut b = build::simple(2, 1, b'x', TS);
            build::set_producer(&mut b, pid, 1, seq * 2);
            let mut h = batch::BatchHeader::parse(&b).expect("a header");
            h.base_offset = offset;
            offset += 2;
            t.record(&h);
        }
        write(dir, &format!("producers-{pid}"), &t.encode_snapshot(offset));
    }
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "seeds".into()));
    batch_validate(&out.join("batch_validate"));
    segment_scan(&out.join("segment_scan"));
    producer_snapshot(&out.join("producer_snapshot"));
}
