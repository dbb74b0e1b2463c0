//! `sluice cluster`: info, health, and cluster-wide broker configs.

use std::collections::BTreeMap;

use futures_lite::future::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use serde_json::json;

use super::{admin_error, fail, key_values, print_json, print_table, Client, Format, Result};

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCmd {
    /// Brokers, their addresses, and the number of topics and partitions.
    #[command(after_help = "Example:\n  sluice cluster info -b 10.0.0.1:9092")]
    Info,
    /// Exit 0 when every broker answers and every partition has a leader.
    #[command(after_help = "Example:\n  sluice cluster health && echo healthy")]
    Health,
    /// Cluster-wide broker configs.
    #[command(
        subcommand,
        after_help = "Examples:\n  sluice cluster config get\n  sluice cluster config set log.retention.hours=48"
    )]
    Config(ConfigCmd),
}

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCmd {
    /// Show broker configs (all, or the keys given) and where each comes from.
    #[command(after_help = "Example:\n  sluice cluster config get log.retention.hours")]
    Get { keys: Vec<String> },
    /// Set cluster-wide defaults (dynamic; they override the config file).
    #[command(
        after_help = "Example:\n  sluice cluster config set log.retention.ms=86400000 num.partitions=6"
    )]
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
}

fn source_name(s: &ConfigSource) -> &'static str {
    match s {
        ConfigSource::DynamicTopic => "topic",
        ConfigSource::DynamicBroker => "broker (dynamic)",
        ConfigSource::DynamicDefaultBroker => "cluster (dynamic)",
        ConfigSource::StaticBroker => "config file",
        ConfigSource::Default => "default",
        _ => "other",
    }
}

pub fn run(c: &Client, cmd: ClusterCmd) -> Result<()> {
    match cmd {
        ClusterCmd::Info => {
            let md = super::topic::metadata(c, None)?;
            let brokers: Vec<(i32, String)> = md
                .brokers()
                .iter()
                .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
                .collect();
            let topics = md.topics().len();
            let partitions: usize = md.topics().iter().map(|t| t.partitions().len()).sum();
            match c.format {
                Format::Json => print_json(&json!({
                    "brokers": brokers.iter().map(|(id, a)| json!({"id": id, "address": a})).collect::<Vec<_>>(),
                    "topics": topics, "partitions": partitions,
                })),
                Format::Table => {
                    print_table(
                        &["BROKER", "ADDRESS"],
                        &brokers
                            .iter()
                            .map(|(id, a)| vec![id.to_string(), a.clone()])
                            .collect::<Vec<_>>(),
                    );
                    println!("\n{topics} topics, {partitions} partitions");
                }
            }
            Ok(())
        }
        ClusterCmd::Health => {
            let md = super::topic::metadata(c, None)?;
            let mut problems = Vec::new();
            for t in md.topics() {
                if let Some(e) = t.error() {
                    problems.push(format!("topic {}: {e:?}", t.name()));
                }
                for p in t.partitions() {
                    if p.leader() < 0 {
                        problems.push(format!("{}-{} has no leader", t.name(), p.id()));
                    }
                }
            }
            let brokers = md.brokers().len();
            match c.format {
                Format::Json => print_json(
                    &json!({"healthy": problems.is_empty(), "brokers": brokers, "problems": problems}),
                ),
                Format::Table if problems.is_empty() => {
                    println!("healthy: {brokers} broker(s), every partition has a leader")
                }
                Format::Table => {
                    for p in &problems {
                        println!("{p}");
                    }
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                fail(format!("unhealthy: {} problem(s)", problems.len()))
            }
        }
        ClusterCmd::Config(cmd) => config(c, cmd),
    }
}

fn broker_configs(
    c: &Client,
    admin: &AdminClient<DefaultClientContext>,
    broker: i32,
) -> Result<Vec<rdkafka::admin::ConfigEntry>> {
    let results = block_on(admin.describe_configs(
        &[ResourceSpecifier::Broker(broker)],
        &AdminOptions::new().operation_timeout(Some(super::TIMEOUT)),
    ))
    .map_err(|e| c.explain(&e))?;
    let Some(r) = results.into_iter().next() else {
        return fail("no broker configs returned");
    };
    let r = r.map_err(|code| admin_error(&format!("broker {broker}"), code, None))?;
    Ok(r.entries)
}

fn config(c: &Client, cmd: ConfigCmd) -> Result<()> {
    let md = super::topic::metadata(c, None)?;
    let Some(broker) = md.brokers().first().map(|b| b.id()) else {
        return fail("the cluster lists no brokers");
    };
    match cmd {
        ConfigCmd::Get { keys } => {
            let admin: AdminClient<DefaultClientContext> = c.create()?;
            let entries = broker_configs(c, &admin, broker)?;
            let shown: Vec<_> = entries
                .iter()
                .filter(|e| keys.is_empty() || keys.contains(&e.name))
                .collect();
            if let Some(missing) = keys.iter().find(|k| !shown.iter().any(|e| &e.name == *k)) {
                return fail(format!("no broker config named {missing}"));
            }
            match c.format {
                Format::Json => print_json(&json!(shown
                    .iter()
                    .map(|e| json!({"name": e.name, "value": e.value, "source": source_name(&e.source)}))
                    .collect::<Vec<_>>())),
                Format::Table => print_table(
                    &["NAME", "VALUE", "SOURCE"],
                    &shown
                        .iter()
                        .map(|e| {
                            vec![
                                e.name.clone(),
                                e.value.clone().unwrap_or_default(),
                                source_name(&e.source).to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            Ok(())
        }
        ConfigCmd::Set { pairs } => {
            let pairs = key_values(&pairs, "config")?;
            // The cluster-wide default (a broker resource with no name),
            // changed key by key: other dynamic settings stay, on Sluice
            // and on Kafka alike. librdkafka's admin API names brokers by
            // id only, so this one request goes out directly.
            let addr = md
                .brokers()
                .first()
                .map(|b| format!("{}:{}", b.host(), b.port()))
                .expect("checked above");
            super::wire::set_broker_defaults(&addr, &pairs, super::TIMEOUT).map_err(
                |(code, message)| {
                    let code = rdkafka::types::RDKafkaRespErr::try_from(i32::from(code))
                        .map_or(rdkafka::types::RDKafkaErrorCode::Unknown, Into::into);
                    admin_error("the cluster config", code, Some(&message))
                },
            )?;
            c.done(
                json!({"set": pairs.iter().cloned().collect::<BTreeMap<_, _>>()}),
                || {
                    let lines = pairs.iter().map(|(k, v)| format!("set {k}={v}"));
                    lines.collect::<Vec<_>>().join("\n")
                },
            );
            Ok(())
        }
    }
}
