//! Runs the real `sluice` binary: it recovers partitions left in its data
//! directory, runs the embedded one-member coordinator quorum with the
//! broker registered and heartbeating, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn given_data_dir_with_a_partition_sluice_start_recovers_it_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("orders-0");
    std::fs::create_dir_all(&part).unwrap();
    // A segment holding one batch of 2 records at offset 0, then a torn tail.
    let mut log = sluice_engine::batch::build::simple(2, 10, 7, 1_000);
    log.extend_from_slice(&[0xAB; 30]);
    std::fs::write(part.join("00000000000000000000.log"), &log).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let coordinator = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "start",
            "--shards",
            "2",
            "--coordinator-listen",
            &coordinator,
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let running = line.contains("serving Kafka clients");
        seen.push(line);
        if running {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("recovered orders-0 (offsets 0..2)")),
        "{seen:?}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        rest.iter().any(|l| l.contains("stopped cleanly")),
        "{rest:?}"
    );
    // The torn tail was cut off.
    let len = std::fs::metadata(part.join("00000000000000000000.log"))
        .unwrap()
        .len();
    assert_eq!(len as usize, log.len() - 30);
}
