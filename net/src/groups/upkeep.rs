//! Keeping a `__consumer_offsets` partition's log short until the log
//! cleaner (compaction) exists; the cleaner will replace this module.
//!
//! So that a partition's log (and the time to load it) follows its live
//! state rather than its history, the coordinator rewrites it: once more
//! than `max(offsets.topic.segment.bytes, live state)` bytes were appended
//! since the last rewrite, it appends every live record (each group's
//! metadata and committed offsets) and moves the log start to the first of
//! them; segments wholly below it are deleted.
//!
//! Invariant: every record below the new log start is superseded by one
//! above it, so a load from the log start finds the same state. Every write
//! holds its partition's gate open, from reading the state it writes until
//! that state is in memory; a rewrite closes the gate, so the state it
//! copies includes every record written before it, and records written
//! after it come after its own. (Group metadata is applied to memory before
//! it is stored, so a rewrite may copy a newer state than the log holds,
//! never an older one.)

use std::rc::Rc;

use sluice_broker::roles::ReplicaError;
use sluice_engine::types::now_ms;

use super::records::Key;
use super::{group_value, offset_record, record_bytes, Coordinator, Part};

/// What keeps one partition's log short (see the module docs).
pub(super) struct Upkeep {
    /// Held shared by writes that apply to memory after their record is
    /// acknowledged; held alone by a rewrite.
    gate: Rc<glommio::sync::RwLock<()>>,
    /// Record bytes appended since the last rewrite (or since this broker
    /// started coordinating the partition).
    appended_bytes: u64,
    /// Record bytes of the live state at the last rewrite.
    live_bytes: u64,
    rewriting: bool,
}

impl Coordinator {
    /// Partition `p`'s gate (see the module docs).
    pub(super) fn gate(&self, p: i32) -> Rc<glommio::sync::RwLock<()>> {
        self.upkeep
            .borrow_mut()
            .entry(p)
            .or_insert_with(|| Upkeep {
                gate: Rc::new(glommio::sync::RwLock::new(())),
                appended_bytes: 0,
                live_bytes: 0,
                rewriting: false,
            })
            .gate
            .clone()
    }

    /// Counts `bytes` of records written to partition `p`.
    pub(super) fn appended(&self, p: i32, bytes: u64) {
        self.gate(p);
        if let Some(u) = self.upkeep.borrow_mut().get_mut(&p) {
            u.appended_bytes += bytes;
        }
    }

    /// Starts a rewrite of every partition whose log grew by more than
    /// `max(offsets.topic.segment.bytes, its live state)` since the last.
    pub(super) fn start_due_rewrites(self: &Rc<Self>) {
        let floor = self.config.offsets_topic_segment_bytes.max(1) as u64;
        let due: Vec<i32> = self
            .upkeep
            .borrow_mut()
            .iter_mut()
            .filter(|(_, u)| !u.rewriting && u.appended_bytes >= u.live_bytes.max(floor))
            .map(|(p, u)| {
                u.rewriting = true;
                *p
            })
            .collect();
        for p in due {
            let c = self.clone();
            glommio::spawn_local(async move {
                if let Err(e) = c.rewrite(p).await {
                    tracing::warn!(partition = p, error = %e, "could not rewrite a group partition");
                }
                if let Some(u) = c.upkeep.borrow_mut().get_mut(&p) {
                    u.rewriting = false;
                }
            })
            .detach();
        }
    }

    /// Appends partition `p`'s live state and moves its log start to it
    /// (see the module docs).
    async fn rewrite(&self, p: i32) -> Result<(), ReplicaError> {
        let gate = self.gate(p);
        let Ok(_closed) = gate.write().await else {
            return Ok(());
        };
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = {
            let mut parts = self.parts.borrow_mut();
            let Some(Part::Loaded(groups)) = parts.get_mut(&p) else {
                return Ok(());
            };
            let mut records = Vec::new();
            for g in groups.values_mut() {
                if g.protocol_type.is_some() {
                    if let Some(v) = group_value(g) {
                        records.push((Key::Group(g.id.clone()).encode(), Some(v.encode())));
                    }
                }
                for ((t, i), c) in &g.offsets {
                    records.push(offset_record(&g.id, t, *i, Some(c)));
                }
            }
            records
        };
        let live: u64 = records.iter().map(|(k, v)| record_bytes(k, v)).sum();
        let worth = {
            let mut upkeep = self.upkeep.borrow_mut();
            let u = upkeep.get_mut(&p).expect("made by gate()");
            let worth = u.appended_bytes > live;
            u.live_bytes = live;
            if !worth {
                u.appended_bytes = 0;
            }
            worth
        };
        if !worth {
            return Ok(());
        }
        let partition = self.partitions.open(&Self::tp(p)).await?;
        // Nothing else appends here while the gate is closed.
        let start = partition.log().watermarks().log_end;
        self.append(p, records).await?;
        if let Some(u) = self.upkeep.borrow_mut().get_mut(&p) {
            u.appended_bytes = 0;
        }
        drop(_closed);
        partition.log().delete_records(start, now_ms()).await?;
        tracing::info!(
            partition = p,
            log_start = start.0,
            live_bytes = live,
            "group partition rewritten"
        );
        Ok(())
    }
}
