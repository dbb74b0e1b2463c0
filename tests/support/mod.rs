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
        let mut args = vec!["--data-dir".to_string(), dir.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::launch(
            &dir.with_extension("broker.log"),
            None,
            port,
            coordinator_port,
            &args,
        )
    }

    /// Starts as a user would: in `cwd`, with the default data directory
    /// (`./data`, a relative path).
    pub fn start_in(cwd: &Path, port: u16, coordinator_port: u16) -> Broker {
        Self::launch(
            &cwd.join("broker.log"),
            Some(cwd),
            port,
            coordinator_port,
            &[],
        )
    }

    /// `sluice broker`: broker `id`, data in `dir`, joining the coordinator
    /// quorum at `coordinators`.
    pub fn join(dir: &Path, id: i32, coordinators: &str) -> Broker {
        Self::join_with(dir, id, coordinators, &[])
    }

    /// [`Broker::join`] with more flags.
    pub fn join_with(dir: &Path, id: i32, coordinators: &str, extra: &[&str]) -> Broker {
        let port = free_port();
        let mut args: Vec<String> = [
            "broker",
            "--broker-id",
            &id.to_string(),
            "--coordinators",
            coordinators,
            "--data-dir",
            &dir.display().to_string(),
            "--listeners",
            &format!("127.0.0.1:{port}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(
            &dir.with_extension("broker.log"),
            None,
            &args,
            port,
            coordinators,
        )
    }

    fn launch(
        log: &Path,
        cwd: Option<&Path>,
        port: u16,
        coordinator_port: u16,
        extra: &[String],
    ) -> Broker {
        let coordinator = format!("127.0.0.1:{coordinator_port}");
        let mut args: Vec<String> = [
            "start",
            "--listeners",
            &format!("127.0.0.1:{port}"),
            "--coordinator-listen",
            &coordinator,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().cloned());
        Self::spawn(log, cwd, &args, port, &coordinator)
    }

    fn spawn(
        log: &Path,
        cwd: Option<&Path>,
        args: &[String],
        port: u16,
        coordinator: &str,
    ) -> Broker {
        let bootstrap = format!("127.0.0.1:{port}");
        let coordinator = coordinator.to_string();
        // The broker's log goes beside its data, for a failing test to show.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd
            .args(args)
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

/// Creates a topic through the admin API.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin: AdminClient<DefaultClientContext> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let results = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
}

/// A runtime to wait on admin futures, an admin client of `bootstrap`,
/// and options with the tests' timeout.
pub fn admin_client(
    bootstrap: &str,
) -> (
    tokio::runtime::Runtime,
    rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
    rdkafka::admin::AdminOptions,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (
        rt,
        admin,
        rdkafka::admin::AdminOptions::new().operation_timeout(Some(TIMEOUT)),
    )
}

/// Encodes a request frame (size, header, body), correlation id 7.
pub fn frame(
    key: kafka_protocol::messages::ApiKey,
    version: i16,
    body: kafka_protocol::messages::RequestKind,
) -> Vec<u8> {
    raw::frame(key, version, 7, body)
}

/// Sends one request on `stream` and decodes its response.
pub fn call(
    stream: &mut std::net::TcpStream,
    key: kafka_protocol::messages::ApiKey,
    version: i16,
    body: kafka_protocol::messages::RequestKind,
) -> kafka_protocol::messages::ResponseKind {
    use std::io::Write;
    stream.write_all(&frame(key, version, body)).unwrap();
    let (correlation, mut buf) = raw::read_response(stream, key, version);
    assert_eq!(correlation, 7);
    kafka_protocol::messages::ResponseKind::decode(key, &mut buf, version).unwrap()
}
