//! Loading a `__consumer_offsets` partition's groups when this broker
//! becomes its leader.
//!
//! The first request for a partition, or the timer once the topic exists,
//! loads it: the log is streamed from its start to its high watermark in
//! reads of at most [`LOAD_READ_BYTES_MAX`], each record applied in order
//! ([`Loader`]). Meanwhile the partition's groups answer
//! COORDINATOR_LOAD_IN_PROGRESS; groups of a partition this broker does not
//! lead answer NOT_COORDINATOR. A loaded group with members is Stable; its
//! members that do not heartbeat within their session timeout are dropped
//! and the group rebalances.
//!
//! Invariant: a record read later wins over one read earlier, as in the
//! log; a tombstone removes what it names.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use sluice_engine::partition::Chunk;
use sluice_engine::shard::shard_of;
use sluice_engine::types::now_ms;
use sluice_engine::Offset;

use super::records::{GroupValue, Key, OffsetValue};
use super::state::{self, Committed, Group, GroupState, Limits};
use super::{Coordinator, Part, OFFSETS_TOPIC};

/// Bytes read from the log at a time while loading.
const LOAD_READ_BYTES_MAX: usize = 1 << 20;

impl Coordinator {
    /// Loads partition `p`'s groups from the log.
    pub(super) async fn load(self: Rc<Self>, p: i32) {
        match self.read_groups(p).await {
            Ok(groups) => {
                tracing::info!(
                    partition = p,
                    groups = groups.len(),
                    "group partition loaded"
                );
                self.parts.borrow_mut().insert(p, Part::Loaded(groups));
            }
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "could not load a group partition");
                self.parts.borrow_mut().remove(&p);
            }
        }
    }

    async fn read_groups(&self, p: i32) -> Result<HashMap<String, Group>, String> {
        let partition = self
            .partitions
            .open(&Self::tp(p))
            .await
            .map_err(|e| e.to_string())?;
        let mut loader = Loader {
            groups: HashMap::new(),
            limits: &self.limits,
            groups_max: self.config.groups_per_shard_max,
            now: now_ms(),
        };
        let mut at = partition.log().watermarks().log_start;
        loop {
            let r = partition
                .read_committed(at, LOAD_READ_BYTES_MAX)
                .await
                .map_err(|e| e.to_string())?;
            let hw = r.watermarks.high_watermark;
            let buf = collect(r.chunks, r.bytes);
            let before = at;
            let mut pos = 0usize;
            while let Some(header) = buf
                .get(pos..)
                .and_then(sluice_engine::batch::BatchHeader::parse)
            {
                let Some(len) = header.total_len().filter(|l| pos + l <= buf.len()) else {
                    break;
                };
                let b = &buf[pos..pos + len];
                match sluice_engine::batch::records(b) {
                    Some(records) => {
                        for r in records {
                            loader.apply(r.key, r.value);
                        }
                    }
                    None => tracing::warn!(
                        partition = p,
                        offset = header.base_offset,
                        "skipped a group batch that cannot be read"
                    ),
                }
                at = Offset(header.last_offset() + 1);
                pos += len;
            }
            if at >= hw {
                break;
            }
            if at == before {
                return Err(format!("no whole batch at offset {}", at.0));
            }
        }
        let mut groups = loader.groups;
        groups.retain(|_, g| !g.is_disposable());
        Ok(groups)
    }

    /// Starts loading the partitions of `__consumer_offsets` this shard
    /// owns and this broker leads, so a restarted broker has its groups
    /// ready before clients ask.
    pub(super) fn load_owned(self: &Rc<Self>) {
        let state = self.image.load();
        let env = self.partitions.env();
        let Some(topic) = state.topics.get(OFFSETS_TOPIC) else {
            return;
        };
        for (i, part) in topic.partitions.iter().enumerate() {
            let p = i as i32;
            if part.leader == self.config.broker_id
                && shard_of(&Self::tp(p), env.shards) == env.shard
                && !self.parts.borrow().contains_key(&p)
            {
                let _ = self.ready(p);
            }
        }
    }
}

/// A read's bytes in one buffer: the tail cache's batches, and the file
/// region read with `pread`.
fn collect(chunks: Vec<Chunk>, bytes: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(bytes as usize);
    for c in chunks {
        match c {
            Chunk::Memory(b) => buf.extend_from_slice(&b),
            Chunk::File(f) => {
                let start = buf.len();
                buf.resize(start + f.len as usize, 0);
                let n = read_fully(&f.file, &mut buf[start..], f.position);
                buf.truncate(start + n);
            }
        }
    }
    buf.freeze()
}

/// Reads as much of `buf` as the file has at `pos`.
fn read_fully(file: &std::fs::File, buf: &mut [u8], pos: u64) -> usize {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    done
}

/// Applies records read from `__consumer_offsets`, in log order.
pub(super) struct Loader<'a> {
    groups: HashMap<String, Group>,
    limits: &'a Limits,
    groups_max: usize,
    now: i64,
}

impl Loader<'_> {
    fn group(&mut self, id: &str) -> Option<&mut Group> {
        if !self.groups.contains_key(id) {
            if self.groups.len() >= self.groups_max {
                tracing::warn!(
                    group = id,
                    "more groups than groups_per_shard_max: not loaded"
                );
                return None;
            }
            let g = Group::new(id, self.limits.initial_rebalance_delay_ms, self.now);
            self.groups.insert(id.to_string(), g);
        }
        self.groups.get_mut(id)
    }

    fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(key) = key.and_then(Key::decode) else {
            return;
        };
        let limits = self.limits.clone();
        match key {
            Key::Offset {
                group,
                topic,
                partition,
            } => match value.map(OffsetValue::decode) {
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, partition));
                    }
                }
                Some(None) => {}
                Some(Some(v)) => {
                    if let Some(g) = self.group(&group) {
                        let c = Committed {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_timestamp_ms: v.commit_timestamp_ms,
                        };
                        g.commit(&topic, partition, c, &limits);
                    }
                }
            },
            Key::Group(group) => match value.map(GroupValue::decode) {
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        let offsets = std::mem::take(&mut g.offsets);
                        *g = Group::new(&group, limits.initial_rebalance_delay_ms, self.now);
                        g.offsets = offsets;
                    }
                }
                Some(None) => {}
                Some(Some(v)) => {
                    let now = self.now;
                    if let Some(g) = self.group(&group) {
                        restore(g, v, now);
                    }
                }
            },
        }
    }
}

/// Puts a stored group's metadata into `g`: Stable with its members, who
/// must heartbeat within their session timeout, or Empty.
fn restore(g: &mut Group, v: GroupValue, now: i64) {
    let offsets = std::mem::take(&mut g.offsets);
    *g = Group::new(&g.id, g.initial_delay_ms, now);
    g.offsets = offsets;
    g.generation = v.generation;
    g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
    g.protocol = v.protocol.clone();
    g.leader = v.leader;
    g.state_since_ms = if v.state_timestamp_ms > 0 {
        v.state_timestamp_ms
    } else {
        now
    };
    let protocol = v.protocol.unwrap_or_default();
    for m in v.members {
        if let Some(instance) = &m.instance_id {
            g.static_members
                .insert(instance.clone(), m.member_id.clone());
        }
        g.members.insert(
            m.member_id.clone(),
            state::Member {
                id: m.member_id,
                spec: state::MemberSpec {
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    protocols: vec![(protocol.clone(), m.subscription)],
                },
                assignment: m.assignment,
                awaiting_join: false,
                awaiting_sync: false,
                last_heartbeat_ms: now,
            },
        );
    }
    if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
        g.leader = g.members.keys().next().cloned();
    }
    g.state = if g.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
}

#[cfg(test)]
mod tests {
    use super::super::records::MemberValue;
    use super::super::{group_value, offset_record};
    use super::*;

    fn member_value(id: &str, instance: Option<&str>) -> MemberValue {
        MemberValue {
            member_id: id.into(),
            instance_id: instance.map(Into::into),
            client_id: "c".into(),
            client_host: "/10.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 45_000,
            subscription: Bytes::from_static(b"sub"),
            assignment: Bytes::from_static(b"asg"),
        }
    }

    #[test]
    fn given_stored_records_loading_replays_commits_groups_and_tombstones_in_order() {
        let limits = Limits::default();
        let mut l = Loader {
            groups: HashMap::new(),
            limits: &limits,
            groups_max: 10,
            now: 1_000,
        };
        let c = Committed {
            offset: 7,
            leader_epoch: 2,
            metadata: "m".into(),
            commit_timestamp_ms: 5,
        };
        let (k, v) = offset_record("g", "t", 0, Some(&c));
        l.apply(Some(&k), v.as_deref());
        let (k, v) = offset_record("g", "t", 1, Some(&c));
        l.apply(Some(&k), v.as_deref());
        let (k, v) = offset_record("g", "t", 1, None);
        l.apply(Some(&k), v.as_deref());
        let value = GroupValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m2".into()),
            state_timestamp_ms: 900,
            members: vec![member_value("m1", Some("i1")), member_value("m2", None)],
        };
        let key = Key::Group("g".into()).encode();
        l.apply(Some(&key), Some(&value.encode()));
        // Records this broker does not know, or that do not parse, are skipped.
        l.apply(Some(&[0, 9, 1]), Some(&[1, 2]));
        l.apply(None, Some(&[1]));
        l.apply(Some(&key), Some(&[0, 3]));

        let g = &l.groups["g"];
        assert_eq!(g.offsets.len(), 1);
        assert_eq!(g.offsets[&("t".to_string(), 0)], c);
        assert_eq!((g.state, g.generation), (GroupState::Stable, 4));
        assert_eq!(g.leader.as_deref(), Some("m2"));
        assert_eq!(g.static_members["i1"], "m1");
        let m = &g.members["m1"];
        assert_eq!(m.assignment, "asg");
        assert_eq!(
            m.spec.protocols,
            vec![("range".to_string(), Bytes::from_static(b"sub"))]
        );
        assert_eq!(m.last_heartbeat_ms, 1_000, "a full session from loading");
        assert_eq!(
            group_value(&mut l.groups.get_mut("g").unwrap().clone()),
            Some(value)
        );

        // A group tombstone forgets members, not offsets (they have their own).
        l.apply(Some(&key), None);
        let g = &l.groups["g"];
        assert_eq!(
            (g.state, g.members.len(), g.offsets.len()),
            (GroupState::Empty, 0, 1)
        );
    }

    #[test]
    fn given_more_groups_than_the_bound_loading_keeps_the_first_ones() {
        let limits = Limits::default();
        let mut l = Loader {
            groups: HashMap::new(),
            limits: &limits,
            groups_max: 2,
            now: 0,
        };
        let c = Committed {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        };
        for g in ["a", "b", "c"] {
            let (k, v) = offset_record(g, "t", 0, Some(&c));
            l.apply(Some(&k), v.as_deref());
        }
        assert_eq!(l.groups.len(), 2);
        assert!(!l.groups.contains_key("c"));
    }
}
