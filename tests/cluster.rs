//! Several brokers (`sluice broker`) joining one coordinator quorum
//! (`sluice coordinator`), each a separate process: partitions spread over
//! the brokers, clients follow the leaders, and the admin commands work
//! against the cluster as against one broker.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, Broker};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sluice(bootstrap: &str, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["-b", bootstrap])
        .env("HOME", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn two_brokers_share_a_topics_partitions_and_serve_it_together() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = format!("127.0.0.1:{}", free_port());
    let _quorum = Proc(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["coordinator", "--node-id", "1", "--peers"])
            .arg(format!("1={coordinator}"))
            .arg("--data-dir")
            .arg(dir.path().join("coordinator"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&coordinator).is_err() {
        assert!(Instant::now() < deadline, "the coordinator did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let b1 = Broker::join(&dir.path().join("b1"), 1, &coordinator);
    let b2 = Broker::join(&dir.path().join("b2"), 2, &coordinator);

    let (code, out, err) = sluice(&b1.bootstrap, &["cluster", "info", "--format", "json"], b"");
    assert_eq!(code, 0, "{err}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["brokers"].as_array().unwrap().len(), 2, "{out}");

    let (code, _, err) = sluice(
        &b2.bootstrap,
        &["topic", "create", "spread", "-p", "4"],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = sluice(
        &b1.bootstrap,
        &["topic", "describe", "spread", "--format", "json"],
        b"",
    );
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    let leaders: std::collections::BTreeSet<i64> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["leader"].as_i64().unwrap())
        .collect();
    assert_eq!(
        leaders,
        [1, 2].into(),
        "partitions are led by both brokers: {out}"
    );

    // Produced through one broker's bootstrap, read back through the other:
    // the clients follow each partition's leader.
    let input: String = (0..2000).map(|i| format!("m{i}\n")).collect();
    let (code, _, err) = sluice(
        &b1.bootstrap,
        &["produce", "spread", "-K", ":"],
        input.as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = sluice(&b2.bootstrap, &["consume", "spread", "-e", "-q"], b"");
    assert_eq!(code, 0, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    let mut want: Vec<&str> = input.lines().collect();
    want.sort_unstable();
    assert_eq!(got, want);
    let (code, out, _) = sluice(&b2.bootstrap, &["cluster", "health"], b"");
    assert_eq!(code, 0, "{out}");
    b1.stop();
    b2.stop();
}
