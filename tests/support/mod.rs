//! Starting and stopping a real `sluice start` for client tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub mod raw;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running broker; killed (SIGKILL) when dropped unless stopped first.
pub struct Broker {
    child: Option<Child>,
    pub bootstrap: String,
    pub coordinator: String,
}

impl Broker {
    /// Starts `sluice start` on fresh loopback ports with data in `dir`.
    pub fn start(dir: &Path) -> Broker {
        Self::start_on(dir, free_port(), free_port())
    }

    pub fn start_on(dir: &Path, port: u16, coordinator_port: u16) -> Broker {
        Self::start_with(dir, port, coordinator_port, &[])
    }

    /// Starts with extra `sluice start` arguments.
    pub fn start_with(dir: &Path, port: u16, coordinator_port: u16, extra: &[&str]) -> Broker {
        let bootstrap = format!("127.0.0.1:{port}");
        let coordinator = format!("127.0.0.1:{coordinator_port}");
        // The broker's log goes beside its data, for a failing test to show.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.with_extension("broker.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "start",
                "--listeners",
                &bootstrap,
                "--coordinator-listen",
                &coordinator,
                "--data-dir",
            ])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "info,openraft=warn,sluice_net=debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        loop {
            let line = lines.next().expect("sluice exited before serving").unwrap();
            let ready = line.contains("serving Kafka clients");
            seen.push(line);
            if ready {
                break;
            }
        }
        // Keep draining stdout so the broker never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Broker {
            child: Some(child),
            bootstrap,
            coordinator,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM and wait: a clean shutdown.
    pub fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let status = c.wait().unwrap();
            assert!(status.success(), "{status:?}");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub const TIMEOUT: Duration = Duration::from_secs(60);
