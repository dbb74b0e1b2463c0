//! The `sluice` command line as a user runs it: `sluice start` in a fresh
//! directory with its defaults, then topic, produce, consume and cluster
//! commands against it.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{free_port, Broker};

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// `sluice ARGS` with only `env` for connection settings: no profile.
fn command(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .env_remove("SLUICE_BROKERS")
        .env_remove("SLUICE_PROFILE")
        .env("HOME", "/nonexistent");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `sluice ARGS` with `stdin`, connection from the environment.
fn sluice(env: &[(&str, &str)], args: &[&str], stdin: &[u8]) -> Run {
    sluice_to(env, args, stdin, Stdio::piped())
}

/// `sluice`, with stderr going to `stderr` (`Run::stderr` holds it only
/// when it is a pipe).
fn sluice_to(env: &[(&str, &str)], args: &[&str], stdin: &[u8], stderr: Stdio) -> Run {
    let mut child = command(env, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(env: &[(&str, &str)], args: &[&str], stdin: &[u8]) -> Run {
    let r = sluice(env, args, stdin);
    assert_eq!(r.code, 0, "sluice {args:?}: {}", r.stderr);
    r
}

fn lines(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        // Tabs, spaces, UTF-8 and long lines: bytes must come back as sent.
        writeln!(v, "line {i}\tvalue é {}", "x".repeat(i % 300)).unwrap();
    }
    v
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_slice(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.out()))
}

/// `sluice start` in a fresh directory (gone with the returned TempDir),
/// with `topic` created with `partitions`.
fn broker_with_topic(topic: &str, partitions: u32) -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let p = partitions.to_string();
    ok(&env(&broker), &["topic", "create", topic, "-p", &p], b"");
    (dir, broker)
}

/// The environment that points `sluice` at `broker`.
fn env(broker: &Broker) -> [(&str, &str); 1] {
    [("SLUICE_BROKERS", broker.bootstrap.as_str())]
}

/// Lines "0\n" to "n-1\n".
fn numbers(n: usize) -> String {
    (0..n).map(|i| format!("{i}\n")).collect()
}

#[test]
fn a_user_creates_produces_consumes_alters_trims_and_deletes_with_sluice_commands() {
    let cwd = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(cwd.path(), free_port(), free_port());
    assert!(
        cwd.path().join("data").is_dir(),
        "the default data directory"
    );
    let env = [("SLUICE_BROKERS", broker.bootstrap.as_str())];
    let env = &env[..];

    let r = ok(env, &["topic", "create", "orders", "-p", "3"], b"");
    assert_eq!(r.out(), "created topic orders with 3 partitions\n");
    let r = sluice(env, &["topic", "create", "orders"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.trim(), "sluice: topic orders already exists");
    let r = sluice(env, &["topic", "create", "wide", "-r", "3"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr.trim(),
        "sluice: cannot create topic wide: replication factor 3 is larger than the 1 live broker(s)"
    );

    // A file produced, consumed back byte for byte.
    let file = cwd.path().join("input.txt");
    let content = lines(5000);
    std::fs::write(&file, &content).unwrap();
    ok(
        env,
        &["produce", "orders", "-p", "0", "-f", file.to_str().unwrap()],
        b"",
    );
    let r = ok(env, &["consume", "orders", "-p", "0", "-e"], b"");
    assert!(r.stdout == content, "consumed bytes differ from the file");
    assert!(r.stderr.contains("from the beginning"), "{}", r.stderr);

    // Keys and headers from stdin, shown with a format string.
    ok(
        env,
        &["produce", "orders", "-p", "1", "-K", ":", "-H", "src=cli"],
        b"k1:v1\nk2:v2\n",
    );
    let r = ok(
        env,
        &[
            "consume",
            "orders",
            "-p",
            "1",
            "-e",
            "-f",
            "%k=%v %h %p/%o\\n",
        ],
        b"",
    );
    assert_eq!(r.out(), "k1=v1 src=cli 1/0\nk2=v2 src=cli 1/1\n");
    let r = ok(
        env,
        &["consume", "orders", "-p", "0", "-o", "-2", "-e", "-q"],
        b"",
    );
    assert_eq!(
        r.stdout,
        content[content.len() - lines_tail(&content, 2)..].to_vec()
    );
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let r = ok(
        env,
        &[
            "consume", "orders", "--format", "json", "-p", "1", "-n", "1",
        ],
        b"",
    );
    assert_eq!(json(&r)["key"], "k1");

    let r = ok(env, &["topic", "list", "--format", "json"], b"");
    assert_eq!(
        json(&r),
        serde_json::json!([{"topic": "orders", "partitions": 3, "replication_factor": 1}])
    );
    let r = ok(
        env,
        &["topic", "describe", "orders", "--format", "json"],
        b"",
    );
    assert_eq!(json(&r)["partitions"][0]["log_end_offset"], 5000);

    ok(
        env,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=123456",
        ],
        b"",
    );
    let r = ok(
        env,
        &["topic", "describe", "orders", "--format", "json"],
        b"",
    );
    assert_eq!(json(&r)["configs"]["retention.ms"], "123456");
    ok(
        env,
        &[
            "topic",
            "alter-config",
            "orders",
            "--delete",
            "retention.ms",
        ],
        b"",
    );
    let r = ok(
        env,
        &["topic", "describe", "orders", "--format", "json"],
        b"",
    );
    assert_eq!(json(&r)["configs"], serde_json::json!({}));

    ok(
        env,
        &["topic", "add-partitions", "orders", "--total", "4"],
        b"",
    );
    let r = ok(env, &["topic", "list", "--format", "json"], b"");
    assert_eq!(json(&r)[0]["partitions"], 4);

    // Trim: records below offset 4990 are gone.
    ok(
        env,
        &["topic", "trim", "orders", "-p", "0", "--offset", "4990"],
        b"",
    );
    let r = ok(
        env,
        &["consume", "orders", "-p", "0", "-e", "-q", "-f", "%o\\n"],
        b"",
    );
    let offsets: Vec<i64> = r.out().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(offsets, (4990..5000).collect::<Vec<_>>());

    ok(env, &["cluster", "health"], b"");
    ok(
        env,
        &["cluster", "config", "set", "log.retention.hours=48"],
        b"",
    );
    assert_eq!(
        cluster_configs(env, &["log.retention.hours"])["log.retention.hours"],
        "48"
    );
    // Set key by key: setting another keeps the first.
    ok(
        env,
        &["cluster", "config", "set", "log.segment.bytes=536870912"],
        b"",
    );
    let values = cluster_configs(env, &["log.retention.hours", "log.segment.bytes"]);
    assert_eq!(values["log.retention.hours"], "48");
    assert_eq!(values["log.segment.bytes"], "536870912");
    // A refusal is one line with the broker's reason.
    let r = sluice(
        env,
        &["cluster", "config", "set", "log.retention.hours=soon"],
        b"",
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("invalid config for the cluster config")
            && r.stderr.contains("log.retention.hours"),
        "{}",
        r.stderr
    );

    ok(env, &["topic", "delete", "orders"], b"");
    let r = sluice(env, &["topic", "describe", "orders"], b"");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("topic orders does not exist"),
        "{}",
        r.stderr
    );
    broker.stop();
}

/// `sluice cluster config get KEYS --format json`, by name.
fn cluster_configs(
    env: &[(&str, &str)],
    keys: &[&str],
) -> std::collections::BTreeMap<String, String> {
    let mut args = vec!["cluster", "config", "get"];
    args.extend(keys);
    args.extend(["--format", "json"]);
    let r = ok(env, &args, b"");
    json(&r)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap().to_string();
            (text("name"), text("value"))
        })
        .collect()
}

/// Bytes of the last `n` lines of `content`.
fn lines_tail(content: &[u8], n: usize) -> usize {
    let mut seen = 0;
    for (i, b) in content.iter().enumerate().rev().skip(1) {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return content.len() - i - 1;
            }
        }
    }
    content.len()
}

#[test]
fn connection_settings_come_from_a_profile_and_unreachable_brokers_are_one_clear_error() {
    let cwd = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(cwd.path(), free_port(), free_port());
    let profile = cwd.path().join("profile");
    std::fs::write(
        &profile,
        format!(
            "# my cluster\nbrokers={}\nclient.id=cli-test\n",
            broker.bootstrap
        ),
    )
    .unwrap();
    let env = [("SLUICE_PROFILE", profile.to_str().unwrap())];
    ok(&env, &["topic", "create", "p1"], b"");
    let r = ok(&env, &["topic", "list"], b"");
    assert!(r.out().contains("p1"), "{}", r.out());

    // -b wins over the profile.
    let dead = format!("127.0.0.1:{}", free_port());
    let r = sluice(&env, &["topic", "list", "-b", &dead], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("cannot reach a broker at {dead}")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("sluice start"), "{}", r.stderr);
    broker.stop();
}

#[test]
fn a_group_consumes_commits_is_described_with_lag_reset_to_earliest_and_reads_again() {
    let (_dir, broker) = broker_with_topic("gt", 2);
    let env = &env(&broker)[..];
    let input = numbers(100);
    ok(env, &["produce", "gt"], input.as_bytes());

    let sorted = |s: String| {
        let mut v: Vec<String> = s.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let r = ok(env, &["consume", "gt", "-g", "g1", "-e"], b"");
    assert_eq!(sorted(r.out()), sorted(input.clone()));
    assert!(r.stderr.contains("as group g1"), "{}", r.stderr);

    let r = ok(env, &["group", "list", "--format", "json"], b"");
    let groups = json(&r);
    assert!(
        groups
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "g1"),
        "{groups}"
    );
    let lag = |env: &[(&str, &str)]| -> i64 {
        let r = ok(env, &["group", "describe", "g1", "--format", "json"], b"");
        json(&r)["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["lag"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(lag(env), 0, "everything consumed was committed");

    // A dry run changes nothing; --execute moves the group to the start.
    let r = ok(
        env,
        &[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "gt",
            "--to-earliest",
        ],
        b"",
    );
    assert!(r.stderr.contains("dry run"), "{}", r.stderr);
    assert_eq!(lag(env), 0);
    ok(
        env,
        &[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "gt",
            "--to-earliest",
            "--execute",
        ],
        b"",
    );
    assert_eq!(lag(env), 100);
    let r = ok(env, &["consume", "gt", "-g", "g1", "-e", "-q"], b"");
    assert_eq!(sorted(r.out()), sorted(input));

    ok(env, &["group", "delete", "g1"], b"");
    let r = sluice(env, &["group", "describe", "g1"], b"");
    assert_eq!(r.code, 1, "{}", r.out());
    broker.stop();
}

/// The subcommands `sluice PATH --help` lists, as full paths.
fn subcommands(path: &[String]) -> Vec<Vec<String>> {
    let mut args = path.to_vec();
    args.push("--help".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let help = ok(&[], &args, b"").out();
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(|name| {
            let mut p = path.to_vec();
            p.push(name.to_string());
            p
        })
        .collect()
}

#[test]
fn every_command_help_exits_zero_and_shows_an_example_of_itself() {
    let mut paths = vec![Vec::new()];
    let mut i = 0;
    while i < paths.len() {
        let children = subcommands(&paths[i]);
        paths.extend(children);
        i += 1;
    }
    let shown: Vec<String> = paths.iter().map(|p| p.join(" ")).collect();
    // The walk found the tree, not just the root.
    for expected in ["topic create", "group reset-offsets", "cluster config set"] {
        assert!(shown.iter().any(|p| p == expected), "{shown:?}");
    }
    for path in &shown {
        let mut args: Vec<&str> = path.split_whitespace().collect();
        args.push("--help");
        let help = ok(&[], &args, b"").out();
        let example = help
            .find("Example")
            .unwrap_or_else(|| panic!("sluice {path} --help has no example:\n{help}"));
        let invocation = format!("sluice {path}").trim_end().to_string();
        assert!(
            help[example..].contains(&invocation),
            "sluice {path} --help: no example runs `{invocation}`:\n{help}"
        );
    }
}

/// A pseudo-terminal: its master side, and its terminal side to give a
/// command as stderr.
fn terminal() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // SAFETY: plain libc calls on a descriptor this function owns; the
    // name is a NUL-terminated string ptsname_r wrote into `name`.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        let master = std::fs::File::from_raw_fd(master);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&master);
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap();
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .unwrap();
        (master, tty)
    }
}

/// Runs `sluice ARGS` with stderr on a terminal; returns the run and what
/// the terminal showed.
fn sluice_on_terminal(env: &[(&str, &str)], args: &[&str], stdin: &[u8]) -> (Run, String) {
    let (mut master, tty) = terminal();
    // The command has exited and our copy of the terminal side is closed
    // with the Command: reading drains what it wrote, then fails (EIO).
    let r = sluice_to(env, args, stdin, Stdio::from(tty));
    let mut shown = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = std::io::Read::read(&mut master, &mut buf) {
        shown.extend_from_slice(&buf[..n]);
    }
    (r, String::from_utf8_lossy(&shown).into_owned())
}

#[test]
fn produce_and_reset_offsets_show_progress_on_a_terminal_and_nothing_when_piped() {
    let (_dir, broker) = broker_with_topic("pr", 8);
    let env = &env(&broker)[..];
    let input = numbers(200);

    let r = ok(env, &["produce", "pr"], input.as_bytes());
    assert_eq!(r.stderr, "", "stderr is a pipe: no progress");
    let (r, shown) = sluice_on_terminal(env, &["produce", "pr"], input.as_bytes());
    assert_eq!(r.code, 0, "{shown}");
    assert!(shown.contains("200 messages produced to pr"), "{shown:?}");

    let reset = [
        "group",
        "reset-offsets",
        "quiet",
        "--topic",
        "pr",
        "--to-latest",
        "--execute",
    ];
    let r = ok(env, &reset, b"");
    assert_eq!(r.stderr, "", "stderr is a pipe: no progress");
    let (r, shown) = sluice_on_terminal(env, &reset, b"");
    assert_eq!(r.code, 0, "{shown}");
    assert!(
        shown.contains("offsets of 8 partitions of pr looked up"),
        "{shown:?}"
    );
    broker.stop();
}

#[test]
fn commands_that_change_things_say_what_they_did_in_json_and_in_words() {
    use serde_json::json as j;
    let (_dir, broker) = broker_with_topic("js", 1);
    let env = &env(&broker)[..];
    ok(env, &["topic", "create", "js2"], b"");
    // Committed offsets make a group, with no consumer to wait for.
    for g in ["jg", "tg"] {
        let reset = [
            "group",
            "reset-offsets",
            g,
            "--topic",
            "js",
            "--to-earliest",
            "--execute",
        ];
        ok(env, &reset, b"");
    }
    let alter = [
        "topic",
        "alter-config",
        "js",
        "--set",
        "retention.ms=1000",
        "--delete",
        "segment.ms",
    ];
    let set = [
        "cluster",
        "config",
        "set",
        "log.retention.hours=48",
        "num.partitions=2",
    ];
    // Each command with --format json, then (again, or on another
    // object) as a table: what it prints.
    let cases: [(&[&str], serde_json::Value, &[&str], &str); 5] = [
        (
            &alter,
            j!({"topic": "js", "set": {"retention.ms": "1000"}, "reset_to_default": ["segment.ms"]}),
            &alter,
            "altered topic js\n",
        ),
        (
            &["topic", "add-partitions", "js", "--total", "2"],
            j!({"topic": "js", "partitions": 2, "previous_partitions": 1}),
            &["topic", "add-partitions", "js", "--total", "3"],
            "topic js now has 3 partitions (was 2)\n",
        ),
        (
            &set,
            j!({"set": {"log.retention.hours": "48", "num.partitions": "2"}}),
            &set,
            "set log.retention.hours=48\nset num.partitions=2\n",
        ),
        (
            &["group", "delete", "jg"],
            j!({"group": "jg", "deleted": true}),
            &["group", "delete", "tg"],
            "deleted group tg\n",
        ),
        (
            &["topic", "delete", "js"],
            j!({"topic": "js", "deleted": true}),
            &["topic", "delete", "js2"],
            "deleted topic js2\n",
        ),
    ];
    for (json_args, expected_json, table_args, expected_text) in cases {
        let mut args = json_args.to_vec();
        args.extend(["--format", "json"]);
        assert_eq!(json(&ok(env, &args, b"")), expected_json, "{args:?}");
        assert_eq!(
            ok(env, table_args, b"").out(),
            expected_text,
            "{table_args:?}"
        );
    }
    broker.stop();
}

#[test]
fn client_properties_given_with_x_reach_the_client() {
    let (_dir, broker) = broker_with_topic("xp", 1);
    let env = &env(&broker)[..];
    let r = sluice(env, &["topic", "list", "-X", "no.such.property=1"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("sluice: bad client configuration")
            && r.stderr.contains("no.such.property"),
        "{}",
        r.stderr
    );
    let r = sluice(env, &["topic", "list", "-X", "novalue"], b"");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "sluice: -X \"novalue\" is not key=value\n");

    // The producer's own size limit: the same message passes without it.
    let big = "x".repeat(5000);
    let r = sluice(
        env,
        &["produce", "xp", "-X", "message.max.bytes=1000"],
        big.as_bytes(),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("too large"), "{}", r.stderr);
    ok(env, &["produce", "xp"], big.as_bytes());

    // -X bootstrap.servers wins over $SLUICE_BROKERS.
    let dead = format!("127.0.0.1:{}", free_port());
    let r = sluice(
        env,
        &["topic", "list", "-X", &format!("bootstrap.servers={dead}")],
        b"",
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(&format!("cannot reach a broker at {dead}")),
        "{}",
        r.stderr
    );
    broker.stop();
}

/// The log end offset of `topic` partition `partition`.
fn end_offset(env: &[(&str, &str)], topic: &str, partition: usize) -> i64 {
    let r = ok(env, &["topic", "describe", topic, "--format", "json"], b"");
    json(&r)["partitions"][partition]["log_end_offset"]
        .as_i64()
        .unwrap()
}

/// The compression codec of each record batch in a partition's first
/// segment (Kafka's batch layout: attributes at byte 21, codec in the low
/// three bits), runs of one codec counted once.
fn codecs(partition_dir: &std::path::Path) -> Vec<u16> {
    let log = std::fs::read(partition_dir.join(format!("{:020}.log", 0))).unwrap();
    let mut out: Vec<u16> = Vec::new();
    let mut at = 0;
    while at + 23 <= log.len() {
        let len = i32::from_be_bytes(log[at + 8..at + 12].try_into().unwrap());
        if len <= 0 {
            break;
        }
        let codec = u16::from_be_bytes(log[at + 21..at + 23].try_into().unwrap()) & 7;
        if out.last() != Some(&codec) {
            out.push(codec);
        }
        at += 12 + len as usize;
    }
    out
}

#[test]
fn produce_splits_at_the_delimiter_compresses_with_each_codec_and_takes_acks() {
    let (dir, broker) = broker_with_topic("pz", 1);
    let env = &env(&broker)[..];
    let r = sluice(env, &["produce", "pz", "--acks", "2"], b"x\n");
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "sluice: --acks 2: use 0, 1 or all\n");

    let runs = [
        ("none", "0"),
        ("gzip", "1"),
        ("snappy", "all"),
        ("lz4", "-1"),
        ("zstd", "all"),
    ];
    let mut expected = String::new();
    for (codec, acks) in runs {
        // Large, compressible messages: librdkafka sends a batch
        // uncompressed when compressing would not make it smaller.
        let messages: Vec<String> = (0..3)
            .map(|i| format!("{codec} {i} {}", "a".repeat(2000)))
            .collect();
        let before = end_offset(env, "pz", 0);
        ok(
            env,
            &["produce", "pz", "-D", ";", "-z", codec, "--acks", acks],
            messages.join(";").as_bytes(),
        );
        // acks=0 waits for nothing: the next run must not overtake it.
        let mut tries = 0;
        while end_offset(env, "pz", 0) < before + 3 {
            tries += 1;
            assert!(tries < 100, "{codec}: the messages never arrived");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        for m in messages {
            expected.push_str(&m);
            expected.push('\n');
        }
    }
    let r = ok(env, &["consume", "pz", "-e", "-q"], b"");
    assert!(
        r.out() == expected,
        "consumed messages differ from those sent"
    );
    // none, gzip, snappy, lz4, zstd, as Kafka numbers them.
    assert_eq!(codecs(&dir.path().join("pz-0")), vec![0, 1, 2, 3, 4]);
    broker.stop();
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as i64
}

/// Waits (a bounded while) until the clock is past `ms`, so that what is
/// produced next has a later timestamp.
fn wait_past(ms: i64) {
    for _ in 0..1000 {
        if now_ms() > ms {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("the clock did not pass {ms}");
}

/// Lines `from` to `to - 1`.
fn numbers_from(from: usize, to: usize) -> String {
    numbers(to)
        .lines()
        .skip(from)
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Produces 0..10 to `topic` (one partition), then, at a later
/// millisecond, 10..20; returns the timestamp of the first ten.
fn two_batches_in_time(env: &[(&str, &str)], topic: &str) -> i64 {
    ok(env, &["produce", topic], numbers(10).as_bytes());
    let r = ok(
        env,
        &["consume", topic, "-o", "-1", "-e", "-q", "-f", "%T"],
        b"",
    );
    let first = r.out().parse().unwrap();
    wait_past(first);
    ok(env, &["produce", topic], numbers_from(10, 20).as_bytes());
    first
}

#[test]
fn consume_starts_at_the_end_an_offset_or_a_time_and_shows_topic_and_timestamp() {
    let (_dir, broker) = broker_with_topic("co", 1);
    let env = &env(&broker)[..];
    let before = now_ms();
    let first = two_batches_in_time(env, "co");
    let after = now_ms();

    let r = ok(
        env,
        &["consume", "co", "-e", "-q", "-f", "%t %T %o %v\\n"],
        b"",
    );
    let rows: Vec<(String, i64, i64, String)> = r
        .out()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].into(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].into(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 20);
    for (i, (topic, ts, offset, value)) in rows.iter().enumerate() {
        assert_eq!(
            (topic.as_str(), *offset, value.clone()),
            ("co", i as i64, i.to_string())
        );
        // Producer timestamps (ms), taken between the two clock readings.
        assert!(
            (before..=after).contains(ts),
            "{ts} not in {before}..={after}"
        );
        assert_eq!(
            *ts <= first,
            i < 10,
            "offset {i} at {ts}, first ten at {first}"
        );
    }

    let r = ok(env, &["consume", "co", "-o", "end", "-e"], b"");
    assert_eq!(r.out(), "", "-o end: nothing that was there before");
    assert!(r.stderr.contains("from the end"), "{}", r.stderr);
    let r = ok(env, &["consume", "co", "-o", "17", "-e", "-q"], b"");
    assert_eq!(r.out(), numbers_from(17, 20));
    let at = |ms: i64| {
        ok(
            env,
            &["consume", "co", "-o", &format!("@{ms}"), "-e", "-q"],
            b"",
        )
        .out()
    };
    assert_eq!(at(first + 1), numbers_from(10, 20));
    assert_eq!(at(before), numbers(20));
    assert_eq!(
        at(after + 3_600_000),
        "",
        "nothing at or after a later time"
    );
    broker.stop();
}

#[test]
fn group_offsets_reset_to_latest_a_time_an_offset_and_by_a_shift_within_the_log() {
    let (_dir, broker) = broker_with_topic("ro", 1);
    let env = &env(&broker)[..];
    let first = two_batches_in_time(env, "ro");
    let committed = || {
        let r = ok(env, &["group", "describe", "rg", "--format", "json"], b"");
        json(&r)["partitions"][0]["committed_offset"]
            .as_i64()
            .unwrap()
    };
    let after_first = format!("{}", first + 1);
    let later = format!("{}", now_ms() + 3_600_000);
    let steps: [(&[&str], i64); 9] = [
        (&["--to-latest"], 20),
        (&["--shift-by", "-5"], 15),
        (&["--to-offset", "7"], 7),
        (&["--shift-by", "2"], 9),
        (&["--to-datetime", &after_first], 10),
        (&["--to-offset", "1000"], 20),
        (&["--shift-by", "-100"], 0),
        (&["--to-datetime", &later], 20),
        (&["--to-earliest"], 0),
    ];
    for (to, expected) in steps {
        let mut args = vec![
            "group",
            "reset-offsets",
            "rg",
            "--topic",
            "ro",
            "--execute",
            "--format",
            "json",
        ];
        args.extend(to);
        let plan = json(&ok(env, &args, b""));
        assert_eq!(plan[0]["new_offset"], expected, "{to:?}: {plan}");
        assert_eq!(committed(), expected, "{to:?}");
    }
    broker.stop();
}

#[test]
fn group_describe_names_the_member_that_owns_each_partition() {
    let dir = tempfile::tempdir().unwrap();
    let delay = ["--group-initial-rebalance-delay-ms", "0"];
    let broker = Broker::start_with(dir.path(), free_port(), free_port(), &delay);
    let env = &env(&broker)[..];
    ok(env, &["topic", "create", "gm", "-p", "2"], b"");
    let consume = [
        "consume",
        "gm",
        "-g",
        "gmg",
        "-X",
        "client.id=cli-member",
        "-q",
    ];
    let mut member = command(env, &consume)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut table = String::new();
    for _ in 0..150 {
        let r = sluice(env, &["group", "describe", "gmg"], b"");
        table = r.out();
        if r.code == 0 && table.matches("cli-member").count() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    member.kill().unwrap();
    member.wait().unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("group gmg: Stable, 1 member(s)"),
        "{table}"
    );
    let header: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "MEMBER"
        ],
        "{table}"
    );
    for (p, row) in lines[3..].iter().enumerate() {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..2], ["gm", p.to_string().as_str()], "{table}");
        assert_eq!(cells[5..], ["cli-member", "(/127.0.0.1)"], "{table}");
    }
    assert_eq!(lines.len(), 5, "{table}");
    broker.stop();
}
