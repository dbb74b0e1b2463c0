//! `sluice topic`: create, list, describe, alter-config, add-partitions,
//! delete, trim.

use std::collections::BTreeMap;

use futures_lite::future::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::{Metadata, MetadataTopic};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::{admin_error, fail, key_values, print_json, print_table, Client, Format, Result};

#[derive(clap::Subcommand, Debug)]
pub enum TopicCmd {
    /// Create topics.
    #[command(
        after_help = "Examples:\n  sluice topic create orders -p 6\n  sluice topic create logs -c retention.ms=3600000 -c cleanup.policy=delete"
    )]
    Create {
        #[arg(required = true)]
        names: Vec<String>,
        /// Partitions (default: the broker's num.partitions).
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(short, long)]
        replication_factor: Option<i32>,
        /// Topic config, key=value; repeatable.
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics with their partition counts.
    #[command(after_help = "Example:\n  sluice topic list --format json")]
    List {
        /// Include internal topics (__consumer_offsets).
        #[arg(long)]
        internal: bool,
    },
    /// Partitions (leader, replicas, ISR, offsets) and non-default configs.
    #[command(after_help = "Example:\n  sluice topic describe orders")]
    Describe { name: String },
    /// Set or remove topic configs.
    #[command(
        name = "alter-config",
        after_help = "Examples:\n  sluice topic alter-config orders --set retention.ms=86400000\n  sluice topic alter-config orders --delete retention.ms"
    )]
    AlterConfig {
        name: String,
        /// key=value to set; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Key to reset to its default; repeatable.
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Grow a topic to a total number of partitions.
    #[command(
        name = "add-partitions",
        after_help = "Example:\n  sluice topic add-partitions orders --total 12"
    )]
    AddPartitions {
        name: String,
        /// The new total partition count.
        #[arg(long)]
        total: usize,
    },
    /// Delete topics and all their data.
    #[command(after_help = "Example:\n  sluice topic delete orders")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete records before an offset (moves the log start offset).
    #[command(
        after_help = "Examples:\n  sluice topic trim orders --offset 1000 -p 0\n  sluice topic trim orders --all"
    )]
    Trim {
        name: String,
        /// Only this partition (default: every partition).
        #[arg(short, long)]
        partition: Option<i32>,
        /// Delete records below this offset.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        offset: Option<i64>,
        /// Delete every record (up to the high watermark).
        #[arg(long)]
        all: bool,
    },
}

fn admin(c: &Client) -> Result<AdminClient<DefaultClientContext>> {
    c.create()
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(super::TIMEOUT))
}

/// Cluster metadata, which also checks that a broker is reachable.
pub fn metadata(c: &Client, topic: Option<&str>) -> Result<Metadata> {
    let consumer: BaseConsumer = c.create()?;
    consumer
        .fetch_metadata(topic, super::TIMEOUT)
        .map_err(|e| c.explain(&e))
}

/// `topic` in `md`, or an error saying it does not exist.
fn find_topic<'a>(md: &'a Metadata, topic: &str) -> Result<&'a MetadataTopic> {
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return fail(format!("topic {topic} does not exist"));
    };
    match t.error() {
        Some(e) => Err(admin_error(
            &format!("topic {topic}"),
            rdkafka::error::RDKafkaErrorCode::from(e),
            None,
        )),
        None => Ok(t),
    }
}

/// Partition ids of `topic`, or an error saying it does not exist.
pub fn partitions(c: &Client, topic: &str) -> Result<Vec<i32>> {
    let md = metadata(c, Some(topic))?;
    Ok(find_topic(&md, topic)?
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect())
}

pub fn run(c: &Client, cmd: TopicCmd) -> Result<()> {
    match cmd {
        TopicCmd::Create {
            names,
            partitions,
            replication_factor,
            configs,
        } => create(c, &names, partitions, replication_factor, &configs),
        TopicCmd::List { internal } => list(c, internal),
        TopicCmd::Describe { name } => describe(c, &name),
        TopicCmd::AlterConfig { name, set, delete } => alter_config(c, &name, &set, &delete),
        TopicCmd::AddPartitions { name, total } => add_partitions(c, &name, total),
        TopicCmd::Delete { names } => delete(c, &names),
        TopicCmd::Trim {
            name,
            partition,
            offset,
            all,
        } => trim(c, &name, partition, offset, all),
    }
}

fn create(
    c: &Client,
    names: &[String],
    partitions: Option<i32>,
    replication_factor: Option<i32>,
    configs: &[String],
) -> Result<()> {
    let configs = key_values(configs, "--config")?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| {
            let mut t = NewTopic::new(
                n,
                partitions.unwrap_or(-1),
                TopicReplication::Fixed(replication_factor.unwrap_or(-1)),
            );
            for (k, v) in &configs {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    metadata(c, None)?;
    let results = block_on(admin(c)?.create_topics(&topics, &opts())).map_err(|e| c.explain(&e))?;
    for r in results {
        match r {
            Err((name, RDKafkaErrorCode::InvalidReplicationFactor))
                if replication_factor.is_some() =>
            {
                let live = metadata(c, None)?.brokers().len();
                return fail(format!(
                    "cannot create topic {name}: replication factor {} is larger than the {live} live broker(s)",
                    replication_factor.unwrap_or(1)
                ));
            }
            Err((name, code)) => return Err(admin_error(&format!("topic {name}"), code, None)),
            Ok(_) => {}
        }
    }
    for n in names {
        let count = self::partitions(c, n).map_or(0, |p| p.len());
        c.done(json!({"topic": n, "partitions": count}), || {
            format!("created topic {n} with {count} partitions")
        });
    }
    Ok(())
}

fn list(c: &Client, internal: bool) -> Result<()> {
    let md = metadata(c, None)?;
    let mut topics: Vec<(String, usize, usize)> = md
        .topics()
        .iter()
        .filter(|t| internal || !t.name().starts_with("__"))
        .map(|t| {
            let rf = t.partitions().first().map_or(0, |p| p.replicas().len());
            (t.name().to_string(), t.partitions().len(), rf)
        })
        .collect();
    topics.sort();
    match c.format {
        Format::Json => print_json(&json!(topics
            .iter()
            .map(|(n, p, r)| json!({"topic": n, "partitions": p, "replication_factor": r}))
            .collect::<Vec<_>>())),
        Format::Table => print_table(
            &["TOPIC", "PARTITIONS", "REPLICAS"],
            &topics
                .iter()
                .map(|(n, p, r)| vec![n.clone(), p.to_string(), r.to_string()])
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

fn alter_config(c: &Client, name: &str, set: &[String], delete: &[String]) -> Result<()> {
    let set = key_values(set, "--set")?;
    if set.is_empty() && delete.is_empty() {
        return fail("nothing to change: give --set key=value or --delete key");
    }
    let admin = admin(c)?;
    let mut current = topic_overrides(c, &admin, name)?;
    for k in delete {
        current.retain(|(ck, _)| ck != k);
    }
    for (k, v) in &set {
        current.retain(|(ck, _)| ck != k);
        current.push((k.clone(), v.clone()));
    }
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
    for (k, v) in &current {
        alter = alter.set(k, v);
    }
    let results = block_on(admin.alter_configs(&[alter], &opts())).map_err(|e| c.explain(&e))?;
    for r in results {
        if let Err((_, code)) = r {
            return Err(admin_error(&format!("topic {name}"), code, None));
        }
    }
    c.done(
        json!({
            "topic": name,
            "set": set.into_iter().collect::<BTreeMap<_, _>>(),
            "reset_to_default": delete,
        }),
        || format!("altered topic {name}"),
    );
    Ok(())
}

fn add_partitions(c: &Client, name: &str, total: usize) -> Result<()> {
    let before = partitions(c, name)?.len();
    if total <= before {
        return fail(format!(
            "topic {name} already has {before} partitions: --total must be larger"
        ));
    }
    let results =
        block_on(admin(c)?.create_partitions(&[NewPartitions::new(name, total)], &opts()))
            .map_err(|e| c.explain(&e))?;
    for r in results {
        if let Err((_, code)) = r {
            return Err(admin_error(&format!("topic {name}"), code, None));
        }
    }
    c.done(
        json!({"topic": name, "partitions": total, "previous_partitions": before}),
        || format!("topic {name} now has {total} partitions (was {before})"),
    );
    Ok(())
}

fn delete(c: &Client, names: &[String]) -> Result<()> {
    metadata(c, None)?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = block_on(admin(c)?.delete_topics(&refs, &opts())).map_err(|e| c.explain(&e))?;
    for r in results {
        if let Err((name, code)) = r {
            return Err(admin_error(&format!("topic {name}"), code, None));
        }
    }
    for n in names {
        c.done(json!({"topic": n, "deleted": true}), || {
            format!("deleted topic {n}")
        });
    }
    Ok(())
}

fn trim(
    c: &Client,
    name: &str,
    partition: Option<i32>,
    offset: Option<i64>,
    all: bool,
) -> Result<()> {
    let parts = match partition {
        Some(p) => vec![p],
        None => partitions(c, name)?,
    };
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        let o = if all {
            Offset::End
        } else {
            Offset::Offset(offset.unwrap_or(0))
        };
        tpl.add_partition_offset(name, *p, o)
            .map_err(|e| c.explain(&e))?;
    }
    let result = block_on(admin(c)?.delete_records(&tpl, &opts())).map_err(|e| c.explain(&e))?;
    let mut rows = Vec::new();
    for e in result.elements() {
        if let Err(err) = e.error() {
            return fail(format!(
                "cannot trim {name} partition {}: {err}",
                e.partition()
            ));
        }
        let start = e.offset().to_raw().unwrap_or(-1);
        rows.push((e.partition(), start));
    }
    match c.format {
        Format::Json => print_json(&json!(rows
            .iter()
            .map(|(p, s)| json!({"partition": p, "log_start_offset": s}))
            .collect::<Vec<_>>())),
        Format::Table => print_table(
            &["PARTITION", "LOG-START"],
            &rows
                .iter()
                .map(|(p, s)| vec![p.to_string(), s.to_string()])
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

/// The topic's own config overrides.
fn topic_overrides(
    c: &Client,
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
) -> Result<Vec<(String, String)>> {
    let results = block_on(admin.describe_configs(&[ResourceSpecifier::Topic(name)], &opts()))
        .map_err(|e| c.explain(&e))?;
    let Some(r) = results.into_iter().next() else {
        return fail(format!("no configs returned for topic {name}"));
    };
    let r = r.map_err(|code| admin_error(&format!("topic {name}"), code, None))?;
    Ok(r.entries
        .into_iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect())
}

fn describe(c: &Client, name: &str) -> Result<()> {
    let md = metadata(c, Some(name))?;
    let t = find_topic(&md, name)?;
    let consumer: BaseConsumer = c.create()?;
    let mut rows = Vec::new();
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(name, p.id(), super::TIMEOUT)
            .unwrap_or((-1, -1));
        rows.push((
            p.id(),
            p.leader(),
            p.replicas().to_vec(),
            p.isr().to_vec(),
            low,
            high,
        ));
    }
    let admin = admin(c)?;
    let configs = topic_overrides(c, &admin, name)?;
    match c.format {
        Format::Json => print_json(&json!({
            "topic": name,
            "partitions": rows.iter().map(|(id, leader, replicas, isr, low, high)| json!({
                "partition": id, "leader": leader, "replicas": replicas, "isr": isr,
                "log_start_offset": low, "log_end_offset": high,
            })).collect::<Vec<_>>(),
            "configs": configs.iter().cloned().collect::<BTreeMap<_, _>>(),
        })),
        Format::Table => {
            let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
            print_table(
                &[
                    "PARTITION",
                    "LEADER",
                    "REPLICAS",
                    "ISR",
                    "LOG-START",
                    "LOG-END",
                    "MESSAGES",
                ],
                &rows
                    .iter()
                    .map(|(id, leader, replicas, isr, low, high)| {
                        vec![
                            id.to_string(),
                            leader.to_string(),
                            list(replicas),
                            list(isr),
                            low.to_string(),
                            high.to_string(),
                            (high - low).max(0).to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            if configs.is_empty() {
                println!("\nconfigs: all defaults");
            } else {
                println!("\nconfigs:");
                for (k, v) in &configs {
                    println!("  {k}={v}");
                }
            }
        }
    }
    Ok(())
}
