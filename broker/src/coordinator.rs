//! Proposals to the coordinator quorum from a shard: the client is
//! blocking (it waits for the quorum), so it runs on a blocking thread and
//! the shard's reactor goes on. A refusal comes back as Kafka's error code
//! and the coordinator's message.

use sluice_replication::metadata::{Command, MetaError, Outcome};
use sluice_replication::raft::client::Client;

/// A refusal: Kafka's error code and message.
pub type Refusal = (i16, String);

/// Kafka's REQUEST_TIMED_OUT: the quorum could not be reached in time.
const REQUEST_TIMED_OUT: i16 = 7;

/// Proposes `command` to the quorum at `coordinators`.
pub async fn propose(coordinators: &[String], command: Command) -> Result<Outcome, Refusal> {
    let coordinators = coordinators.to_vec();
    let outcome = glommio::executor()
        .spawn_blocking(move || Client::new(coordinators).propose(command))
        .await
        .map_err(|e| (REQUEST_TIMED_OUT, e.to_string()))?;
    match outcome {
        Outcome::Refused(MetaError { code, message }) => Err((code as i16, message)),
        other => Ok(other),
    }
}
