//! openraft's view of the metadata state machine, with snapshots on disk.
//!
//! ## `snapshot` file in the coordinator directory
//! One framed record (`length | CRC-32C | payload`, see `log_store`) whose
//! payload is postcard-encoded [`SnapshotFile`]: openraft's snapshot meta
//! (last log id, membership) and the metadata snapshot bytes, which carry
//! their own version header and CRC (`metadata::snapshot`). Written
//! atomically (temp file, fsync, rename, fsync of the directory) whenever a
//! snapshot is built or installed; loaded at start.

use std::collections::VecDeque;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use tokio::sync::watch;

use super::TypeConfig;
use crate::metadata::{snapshot, MetadataState, Outcome, Proposal};

/// Most recently applied proposals kept for brokers catching up by
/// records; a broker further behind gets a snapshot.
pub const RECENT_MAX: usize = 10_000;
/// Most records in one answer to a broker.
pub const RECORDS_PER_FETCH_MAX: usize = 1_000;

/// What a broker at `since` needs to reach the current state.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum MetadataDelta {
    UpToDate {
        last_applied: u64,
    },
    /// Proposals applied after `since`, in log order, at their indexes.
    Records(Vec<(u64, Proposal)>),
    /// The whole state (`metadata::snapshot` encoding).
    Snapshot(Vec<u8>),
}

type NodeId = u64;
type Node = openraft::BasicNode;

fn sm_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&io::Error::other(e.to_string())).into()
}

/// What the `snapshot` file holds.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SnapshotFile {
    pub meta: SnapshotMeta<NodeId, Node>,
    pub data: Vec<u8>,
}

struct Inner {
    state: MetadataState,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    snapshot: Option<SnapshotFile>,
    snapshots_built: u64,
    /// Proposals applied since `recent_floor`, oldest first.
    recent: VecDeque<(u64, Proposal)>,
    /// Every proposal at or below this index is reflected before `recent`.
    recent_floor: u64,
}

/// The state machine; clones share it (one is the snapshot builder).
#[derive(Clone)]
pub struct StateMachineStore {
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
    /// Every applied state is published here, for brokers and status.
    published: watch::Sender<Arc<MetadataState>>,
}

impl StateMachineStore {
    /// Opens the state machine, restoring the last snapshot if there is one.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let path = dir.join("snapshot");
        let (state, last_applied, membership, snap) = match std::fs::read(&path) {
            Ok(bytes) => {
                let records = super::log_store::unframe(&bytes);
                let (payload, _) = records.first().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "damaged snapshot file")
                })?;
                let file: SnapshotFile = postcard::from_bytes(payload).map_err(io::Error::other)?;
                let state = snapshot::decode(&file.data).map_err(io::Error::other)?;
                (
                    state,
                    file.meta.last_log_id,
                    file.meta.last_membership.clone(),
                    Some(file),
                )
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (
                MetadataState::default(),
                None,
                StoredMembership::default(),
                None,
            ),
            Err(e) => return Err(e),
        };
        let (published, _) = watch::channel(Arc::new(state.clone()));
        let recent_floor = state.last_applied;
        Ok(Self {
            dir: dir.to_path_buf(),
            inner: Arc::new(Mutex::new(Inner {
                state,
                last_applied,
                membership,
                snapshot: snap,
                snapshots_built: 0,
                recent: VecDeque::new(),
                recent_floor,
            })),
            published,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of every applied state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataState>> {
        self.published.subscribe()
    }

    /// The current state: the image last published, shared, not copied.
    pub fn state(&self) -> Arc<MetadataState> {
        self.published.borrow().clone()
    }

    /// What a broker whose copy has applied everything up to `since` needs.
    pub fn delta_since(&self, since: u64) -> MetadataDelta {
        let g = self.lock();
        if since >= g.state.last_applied {
            return MetadataDelta::UpToDate {
                last_applied: g.state.last_applied,
            };
        }
        if since >= g.recent_floor {
            let records = g
                .recent
                .iter()
                .filter(|(i, _)| *i > since)
                .take(RECORDS_PER_FETCH_MAX)
                .cloned()
                .collect();
            return MetadataDelta::Records(records);
        }
        MetadataDelta::Snapshot(snapshot::encode(&g.state))
    }

    fn save(&self, file: &SnapshotFile) -> io::Result<()> {
        let payload = postcard::to_allocvec(file).map_err(io::Error::other)?;
        let path = self.dir.join("snapshot");
        let tmp = self.dir.join("snapshot.tmp");
        std::fs::write(&tmp, super::log_store::frame(&payload))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (data, meta) = {
            let mut g = self.lock();
            g.snapshots_built += 1;
            let data = snapshot::encode(&g.state);
            let id = format!(
                "{}-{}",
                g.last_applied.map_or(0, |l| l.index),
                g.snapshots_built
            );
            let meta = SnapshotMeta {
                last_log_id: g.last_applied,
                last_membership: g.membership.clone(),
                snapshot_id: id,
            };
            (data, meta)
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.save(&file).map_err(sm_err)?;
        self.lock().snapshot = Some(file);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let g = self.lock();
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let snapshot = {
            let mut g = self.lock();
            for e in entries {
                g.last_applied = Some(e.log_id);
                match e.payload {
                    EntryPayload::Blank => out.push(Outcome::Done),
                    EntryPayload::Normal(p) => {
                        out.push(g.state.apply_proposal(e.log_id.index, &p));
                        g.recent.push_back((e.log_id.index, p));
                        if g.recent.len() > RECENT_MAX {
                            let (i, _) = g.recent.pop_front().expect("not empty");
                            g.recent_floor = i;
                        }
                    }
                    EntryPayload::Membership(m) => {
                        g.membership = StoredMembership::new(Some(e.log_id), m);
                        out.push(Outcome::Done);
                    }
                }
            }
            Arc::new(g.state.clone())
        };
        self.published.send_replace(snapshot);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let state = snapshot::decode(&data).map_err(sm_err)?;
        let file = SnapshotFile {
            meta: meta.clone(),
            data,
        };
        self.save(&file).map_err(sm_err)?;
        let published = {
            let mut g = self.lock();
            g.state = state;
            g.recent.clear();
            g.recent_floor = g.state.last_applied;
            g.last_applied = meta.last_log_id;
            g.membership = meta.last_membership.clone();
            g.snapshot = Some(file);
            Arc::new(g.state.clone())
        };
        self.published.send_replace(published);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let g = self.lock();
        Ok(g.snapshot.as_ref().map(|f| Snapshot {
            meta: f.meta.clone(),
            snapshot: Box::new(Cursor::new(f.data.clone())),
        }))
    }
}
