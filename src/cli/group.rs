//! `sluice group`: list, describe (with lag), delete, reset-offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::groups::{GroupInfo, GroupList};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::{
    admin_error, fail, print_json, print_table, CliError, Client, Format, Progress, Result,
};

#[derive(clap::Subcommand, Debug)]
pub enum GroupCmd {
    /// List consumer groups and their state.
    #[command(after_help = "Example:\n  sluice group list")]
    List,
    /// Members, and per partition the committed offset, log end and lag.
    #[command(after_help = "Example:\n  sluice group describe billing")]
    Describe { group: String },
    /// Delete groups (they must have no members) and their offsets.
    #[command(after_help = "Example:\n  sluice group delete billing")]
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets. The group must be empty. Shows the
    /// plan; --execute applies it.
    #[command(
        name = "reset-offsets",
        after_help = "Examples:\n  sluice group reset-offsets billing --topic orders --to-earliest --execute\n  sluice group reset-offsets billing --topic orders --shift-by -100\n  sluice group reset-offsets billing --topic orders --to-datetime 1700000000000 --execute"
    )]
    ResetOffsets {
        group: String,
        /// The topic whose offsets move.
        #[arg(long)]
        topic: String,
        /// Only this partition (default: all).
        #[arg(short, long)]
        partition: Option<i32>,
        #[command(flatten)]
        to: ResetTo,
        /// Apply the plan (without it, only show it).
        #[arg(long)]
        execute: bool,
    },
}

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ResetTo {
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped to the log).
    #[arg(long)]
    to_offset: Option<i64>,
    /// To the first offset at or after this time (ms since the epoch).
    #[arg(long)]
    to_datetime: Option<i64>,
    /// By this many offsets from the committed one (negative: back).
    #[arg(long, allow_hyphen_values = true)]
    shift_by: Option<i64>,
}

/// A member's assigned partitions, from the consumer protocol's assignment
/// (version, [topic, [partition]], user data). `None` if it is not that.
fn assignment(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    let mut at = 2usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = bytes.get(at..at.checked_add(n)?)?;
        at += n;
        Some(s)
    };
    let mut out = Vec::new();
    let topics = i32::from_be_bytes(take(4)?.try_into().ok()?);
    for _ in 0..topics.max(0) {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let name = String::from_utf8(take(usize::try_from(len).ok()?)?.to_vec()).ok()?;
        let parts = i32::from_be_bytes(take(4)?.try_into().ok()?);
        for _ in 0..parts.max(0) {
            out.push((name.clone(), i32::from_be_bytes(take(4)?.try_into().ok()?)));
        }
    }
    Some(out)
}

/// The groups the cluster knows (`group`: just that one). Right after a
/// broker starts, its group coordinator may still be loading
/// `__consumer_offsets`; ListGroups then answers with a retriable error,
/// and like Kafka's admin client this asks again until [`super::TIMEOUT`].
fn groups(c: &Client, group: Option<&str>) -> Result<GroupList> {
    let consumer: BaseConsumer = c.create()?;
    let deadline = Instant::now() + super::TIMEOUT;
    loop {
        match consumer.fetch_group_list(group, super::TIMEOUT) {
            Err(KafkaError::GroupListFetch(
                RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable,
            )) if Instant::now() < deadline => std::thread::sleep(RETRY_PAUSE),
            r => return r.map_err(|e| c.explain(&e)),
        }
    }
}

/// The pause before asking again after a retriable error.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A consumer that acts for `group` without joining it.
fn group_consumer(c: &Client, group: &str) -> Result<BaseConsumer> {
    let mut config = c.config.clone();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    config
        .create()
        .map_err(|e| CliError(format!("bad consumer configuration: {e}")))
}

/// Committed offsets of `group` for every partition of `topics` that has
/// one.
fn committed(
    c: &Client,
    consumer: &BaseConsumer,
    topics: &BTreeSet<String>,
) -> Result<BTreeMap<(String, i32), i64>> {
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in super::topic::partitions(c, t)? {
            tpl.add_partition(t, p);
        }
    }
    if tpl.count() == 0 {
        return Ok(BTreeMap::new());
    }
    let got = consumer
        .committed_offsets(tpl, super::TIMEOUT)
        .map_err(|e| c.explain(&e))?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

pub fn run(c: &Client, cmd: GroupCmd) -> Result<()> {
    match cmd {
        GroupCmd::List => list(c),
        GroupCmd::Describe { group } => describe(c, &group),
        GroupCmd::Delete { groups } => delete(c, &groups),
        GroupCmd::ResetOffsets {
            group,
            topic,
            partition,
            to,
            execute,
        } => reset(c, &group, &topic, partition, &to, execute),
    }
}

fn list(c: &Client) -> Result<()> {
    let list = groups(c, None)?;
    let mut rows: Vec<(String, String, String, usize)> = list
        .groups()
        .iter()
        .filter(|g| g.state() != "Dead")
        .map(|g| {
            (
                g.name().to_string(),
                g.state().to_string(),
                g.protocol_type().to_string(),
                g.members().len(),
            )
        })
        .collect();
    rows.sort();
    match c.format {
        Format::Json => print_json(&json!(rows
            .iter()
            .map(|(n, s, t, m)| json!({"group": n, "state": s, "protocol_type": t, "members": m}))
            .collect::<Vec<_>>())),
        Format::Table => print_table(
            &["GROUP", "STATE", "TYPE", "MEMBERS"],
            &rows
                .iter()
                .map(|(n, s, t, m)| vec![n.clone(), s.clone(), t.clone(), m.to_string()])
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

fn delete(c: &Client, groups: &[String]) -> Result<()> {
    super::topic::metadata(c, None)?;
    let admin: AdminClient<DefaultClientContext> = c.create()?;
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    let results = block_on(admin.delete_groups(
        &refs,
        &AdminOptions::new().operation_timeout(Some(super::TIMEOUT)),
    ))
    .map_err(|e| c.explain(&e))?;
    for r in results {
        if let Err((name, code)) = r {
            return Err(admin_error(&format!("group {name}"), code, None));
        }
    }
    for g in groups {
        c.done(json!({"group": g, "deleted": true}), || {
            format!("deleted group {g}")
        });
    }
    Ok(())
}

/// One partition in `group describe`: topic, partition, committed offset,
/// log end offset, lag, and the member it is assigned to.
type LagRow = (String, i32, Option<i64>, i64, Option<i64>, Option<String>);

fn describe(c: &Client, group: &str) -> Result<()> {
    let info = groups(c, Some(group))?;
    // A group that does not exist is described as Dead.
    let found = info
        .groups()
        .iter()
        .find(|g| g.name() == group && g.state() != "Dead");
    let Some(g) = found else {
        return fail(format!(
            "group {group} does not exist (`sluice group list` shows the groups)"
        ));
    };
    let (owner, mut topics) = owners(g);
    // An empty group names no partitions: look at every topic.
    if topics.is_empty() {
        let md = super::topic::metadata(c, None)?;
        topics.extend(
            md.topics()
                .iter()
                .map(|t| t.name().to_string())
                .filter(|n| !n.starts_with("__")),
        );
    }
    let rows = lag_rows(c, group, &owner, &topics)?;
    print_description(c, group, g, &rows);
    Ok(())
}

/// Who each assigned partition belongs to ("client id (host)"), and the
/// topics of those partitions.
fn owners(g: &GroupInfo) -> (BTreeMap<(String, i32), String>, BTreeSet<String>) {
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut topics = BTreeSet::new();
    for m in g.members() {
        for (t, p) in m.assignment().and_then(assignment).unwrap_or_default() {
            topics.insert(t.clone());
            owner.insert((t, p), format!("{} ({})", m.client_id(), m.client_host()));
        }
    }
    (owner, topics)
}

/// A row for every partition of `topics` the group has committed to and
/// every partition a member owns.
fn lag_rows(
    c: &Client,
    group: &str,
    owner: &BTreeMap<(String, i32), String>,
    topics: &BTreeSet<String>,
) -> Result<Vec<LagRow>> {
    let consumer = group_consumer(c, group)?;
    let committed = committed(c, &consumer, topics)?;
    let mut keys: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    keys.extend(owner.keys().cloned());
    let mut rows = Vec::new();
    for (t, p) in keys {
        let end = consumer
            .fetch_watermarks(&t, p, super::TIMEOUT)
            .map_or(-1, |(_, high)| high);
        let current = committed.get(&(t.clone(), p)).copied();
        let lag = current.map(|o| (end - o).max(0));
        let member = owner.get(&(t.clone(), p)).cloned();
        rows.push((t, p, current, end, lag, member));
    }
    Ok(rows)
}

fn print_description(c: &Client, group: &str, g: &GroupInfo, rows: &[LagRow]) {
    let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    match c.format {
        Format::Json => print_json(&json!({
            "group": group, "state": g.state(), "protocol": g.protocol(),
            "members": g.members().iter().map(|m| json!({
                "member_id": m.id(), "client_id": m.client_id(), "host": m.client_host(),
            })).collect::<Vec<_>>(),
            "partitions": rows.iter().map(|(t, p, cur, end, lag, member)| json!({
                "topic": t, "partition": p, "committed_offset": cur, "log_end_offset": end,
                "lag": lag, "member": member,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            println!(
                "group {group}: {}, {} member(s){}\n",
                g.state(),
                g.members().len(),
                if g.protocol().is_empty() {
                    String::new()
                } else {
                    format!(", assignor {}", g.protocol())
                }
            );
            print_table(
                &[
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "MEMBER",
                ],
                &rows
                    .iter()
                    .map(|(t, p, cur, end, lag, member)| {
                        vec![
                            t.clone(),
                            p.to_string(),
                            dash(*cur),
                            end.to_string(),
                            dash(*lag),
                            member.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
}

/// A partition's move: partition, committed offset, new offset.
type Move = (i32, Option<i64>, i64);

fn reset(
    c: &Client,
    group: &str,
    topic: &str,
    partition: Option<i32>,
    to: &ResetTo,
    execute: bool,
) -> Result<()> {
    let all = super::topic::partitions(c, topic)?;
    let parts: Vec<i32> = match partition {
        Some(p) if all.contains(&p) => vec![p],
        Some(p) => return fail(format!("topic {topic} has no partition {p}")),
        None => all,
    };
    let list = groups(c, Some(group))?;
    if let Some(g) = list.groups().iter().find(|g| g.name() == group) {
        if !g.members().is_empty() {
            return fail(format!(
                "group {group} has {} active member(s): stop its consumers first (offsets move only while a group is empty)",
                g.members().len()
            ));
        }
    }
    let consumer = group_consumer(c, group)?;
    let plan = plan(c, &consumer, topic, &parts, to)?;
    print_plan(c, topic, &plan);
    if !execute {
        eprintln!("sluice: dry run: nothing changed; add --execute to apply");
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (p, _, new) in &plan {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*new))
            .map_err(|e| c.explain(&e))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| c.explain(&e))?;
    if c.format == Format::Table {
        println!(
            "\nreset {} partition(s) of {topic} for group {group}",
            plan.len()
        );
    }
    Ok(())
}

/// Where `to` moves each of `parts`, clamped to the log.
fn plan(
    c: &Client,
    consumer: &BaseConsumer,
    topic: &str,
    parts: &[i32],
    to: &ResetTo,
) -> Result<Vec<Move>> {
    let current = committed(c, consumer, &BTreeSet::from([topic.to_string()]))?;
    let mut times = TopicPartitionList::new();
    if let Some(ts) = to.to_datetime {
        for p in parts {
            times
                .add_partition_offset(topic, *p, Offset::Offset(ts))
                .map_err(|e| c.explain(&e))?;
        }
        times = consumer
            .offsets_for_times(times, super::TIMEOUT)
            .map_err(|e| c.explain(&e))?;
    }
    // One watermark lookup per partition: the slow part with many.
    let mut progress = Progress::new();
    let mut plan = Vec::new();
    for p in parts {
        progress.update(|| {
            format!(
                "offsets of {} of {} partitions looked up",
                plan.len(),
                parts.len()
            )
        });
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, super::TIMEOUT)
            .map_err(|e| c.explain(&e))?;
        let cur = current.get(&(topic.to_string(), *p)).copied();
        let target = if to.to_earliest {
            low
        } else if to.to_latest {
            high
        } else if let Some(o) = to.to_offset {
            o
        } else if to.to_datetime.is_some() {
            match times.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => high,
            }
        } else {
            let shift = to.shift_by.unwrap_or(0);
            cur.unwrap_or(low).saturating_add(shift)
        };
        plan.push((*p, cur, target.clamp(low, high)));
    }
    progress.finish(|| format!("offsets of {} partitions of {topic} looked up", plan.len()));
    Ok(plan)
}

fn print_plan(c: &Client, topic: &str, plan: &[Move]) {
    match c.format {
        Format::Json => print_json(&json!(plan
            .iter()
            .map(|(p, cur, new)| json!({"topic": topic, "partition": p, "current_offset": cur, "new_offset": new}))
            .collect::<Vec<_>>())),
        Format::Table => print_table(
            &["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
            &plan
                .iter()
                .map(|(p, cur, new)| {
                    vec![
                        topic.to_string(),
                        p.to_string(),
                        cur.map_or("-".into(), |o| o.to_string()),
                        new.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::assignment;

    #[test]
    fn a_consumer_protocol_assignment_is_read_and_garbage_is_not() {
        let mut b = vec![0, 1, 0, 0, 0, 1, 0, 6];
        b.extend_from_slice(b"orders");
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0, 0]);
        assert_eq!(
            assignment(&b),
            Some(vec![("orders".to_string(), 3), ("orders".to_string(), 5)])
        );
        assert_eq!(assignment(&b[..12]), None);
        assert_eq!(assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
    }
}
