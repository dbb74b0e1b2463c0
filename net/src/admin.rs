//! Changes to cluster metadata, proposed to the coordinator quorum: the
//! one place handlers and the group coordinator go through to create a
//! topic or change metadata, and to wait until this broker's image shows
//! the change (and, for a new topic, until this broker's partitions of it
//! are created).

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use sluice_replication::metadata::{Command, MetadataState, Outcome};

use sluice_broker::partition_manager;
use sluice_replication::raft::subscriber::Image;

use crate::config::BrokerConfig;

/// How long a change may take to reach this broker's image.
const IMAGE_WAIT: Duration = Duration::from_secs(10);

pub(crate) use sluice_broker::coordinator::Refusal;

/// Proposes a command to the coordinator quorum off the shard's reactor
/// thread. A refusal comes back as Kafka's error code and message.
pub(crate) async fn propose(config: &BrokerConfig, command: Command) -> Result<Outcome, Refusal> {
    sluice_broker::coordinator::propose(&config.coordinators, command).await
}

/// Waits (briefly) until this broker's image has applied `f`'s condition.
pub(crate) async fn until_image(image: &Image, f: impl Fn(&MetadataState) -> bool) -> bool {
    let deadline = Instant::now() + IMAGE_WAIT;
    while !f(&image.load()) {
        if Instant::now() > deadline {
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// A fresh topic id (not zero).
fn topic_id() -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut id = [0u8; 16];
    id[..16].copy_from_slice(&nanos.to_le_bytes());
    id[15] ^= (std::process::id() & 0xff) as u8 | 1;
    id
}

/// A topic to create.
pub(crate) struct NewTopic {
    pub name: String,
    /// -1: the default (`num.partitions`).
    pub partitions: i32,
    /// -1: the default (`default.replication.factor`).
    pub replication_factor: i16,
    pub assignment: Vec<Vec<i32>>,
    pub configs: Vec<(String, String)>,
}

/// Creates one topic (or only checks that it could be, `validate_only`);
/// waits until this broker's metadata image shows it. Its partition count
/// and replication factor.
pub(crate) async fn create_topic(
    config: &BrokerConfig,
    image: &Image,
    topic: NewTopic,
    validate_only: bool,
) -> Result<(i32, i16), Refusal> {
    // -1: this broker's static default, unless one is set cluster-wide. A
    // topic with an explicit assignment comes with -1 for both (Kafka's
    // clients send it so), which the coordinator checks as they are.
    let explicit = !topic.assignment.is_empty();
    let assigned = (
        topic.assignment.len() as i32,
        topic.assignment.first().map_or(0, Vec::len) as i16,
    );
    let (partitions, replication_factor) = if explicit {
        (topic.partitions, topic.replication_factor)
    } else {
        let state = image.load();
        let set = |k: &str| state.cluster_configs.contains_key(k);
        (
            match topic.partitions {
                -1 if !set("num.partitions") => config.num_partitions,
                p => p,
            },
            match topic.replication_factor {
                -1 if !set("default.replication.factor") => config.default_replication_factor,
                r => r,
            },
        )
    };
    let name = topic.name.clone();
    let command = Command::CreateTopic {
        name: topic.name,
        id: topic_id(),
        partitions,
        replication_factor,
        assignment: topic.assignment,
        configs: topic.configs,
    };
    if validate_only {
        let state = image.load_full();
        state
            .check(&command)
            .map_err(|e| (e.code as i16, e.message))?;
        return Ok(if explicit {
            assigned
        } else {
            (partitions, replication_factor)
        });
    }
    let (count, rf) = match propose(config, command).await? {
        Outcome::TopicCreated {
            partitions,
            replication_factor,
            ..
        } => (partitions, replication_factor),
        other => {
            return Err((
                ResponseError::UnknownServerError.code(),
                format!("unexpected outcome {other:?}"),
            ))
        }
    };
    if !until_image(image, |s| s.topics.contains_key(&name)).await {
        return Err((
            ResponseError::RequestTimedOut.code(),
            "created, but not yet in this broker's metadata".into(),
        ));
    }
    // Answered once this broker's partitions of the topic exist, as Kafka
    // answers once its replicas are created: the first produce to each
    // then costs what any produce costs.
    let state = image.load();
    let here = state.topics.get(&name).is_some_and(|t| {
        t.partitions
            .iter()
            .any(|p| p.replicas.contains(&config.broker_id))
    });
    let deadline = Instant::now() + IMAGE_WAIT;
    if here && !partition_manager::wait_created(image, state.last_applied, deadline).await {
        return Err((
            ResponseError::RequestTimedOut.code(),
            "created, but this broker's partitions of it are not open yet".into(),
        ));
    }
    Ok((count, rf))
}
