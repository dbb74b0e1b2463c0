//! Engine errors. Operating errors (client input, disk faults) are values
//! that keep their cause; broken invariants are panics. Every error maps to
//! the Kafka error code a client is answered with.

use std::path::PathBuf;

use crate::batch::BatchError;
use crate::producers::ProducerError;
use crate::types::Offset;

/// The subset of Kafka's error codes the storage engine produces, with the
/// numbers of Kafka's protocol guide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i16)]
pub enum KafkaCode {
    OffsetOutOfRange = 1,
    CorruptMessage = 2,
    UnknownTopicOrPartition = 3,
    MessageTooLarge = 10,
    InvalidTimestamp = 32,
    InvalidConfig = 40,
    OutOfOrderSequenceNumber = 45,
    InvalidProducerEpoch = 47,
    InvalidTxnState = 48,
    KafkaStorageError = 56,
    UnknownProducerId = 59,
    InvalidRecord = 87,
}

/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error("offset {offset} is outside the log [{log_start}, {log_end})")]
    OffsetOutOfRange {
        offset: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the log in {0} is poisoned by an earlier write or fsync failure and is offline")]
    Poisoned(PathBuf),
    #[error("log directory {0} is offline")]
    DirOffline(PathBuf),
    #[error("corrupt data in {path} at byte {position}: {why}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        why: String,
    },
    #[error("invalid value {value:?} for config {key}: {why}")]
    InvalidConfig {
        key: String,
        value: String,
        why: String,
    },
    #[error("unknown topic or partition {0}")]
    UnknownPartition(String),
    #[error("the partition is closed")]
    Closed,
    #[error("the append was truncated away before it became durable")]
    Truncated,
    #[error("a replicated batch at offset {base_offset} does not start at the log end {log_end}")]
    NotAtLogEnd { base_offset: i64, log_end: Offset },
}

impl EngineError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// The Kafka error code a client receives for this error.
    pub fn kafka_code(&self) -> KafkaCode {
        match self {
            Self::Batch(e) => e.kafka_code(),
            Self::Producer(e) => e.kafka_code(),
            Self::OffsetOutOfRange { .. } => KafkaCode::OffsetOutOfRange,
            Self::Io { .. }
            | Self::Poisoned(_)
            | Self::DirOffline(_)
            | Self::Closed
            | Self::Truncated => KafkaCode::KafkaStorageError,
            Self::NotAtLogEnd { .. } => KafkaCode::OffsetOutOfRange,
            Self::Corrupt { .. } => KafkaCode::CorruptMessage,
            Self::InvalidConfig { .. } => KafkaCode::InvalidConfig,
            Self::UnknownPartition(_) => KafkaCode::UnknownTopicOrPartition,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
