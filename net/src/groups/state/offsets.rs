//! Committed offsets: checking an OffsetCommit against the group,
//! bounding how many the group holds, and expiring them.
//!
//! ## Invariants
//! * A group holds at most `offsets_max` committed offsets: a commit to a
//!   partition it has none for is refused beyond that, one to a partition
//!   it has replaces the offset.
//! * Offsets expire as in Kafka (KIP-211): see [`Group::expire_offsets`].

use kafka_protocol::error::ResponseError;

use super::{Committed, Group, GroupState, Limits};

impl Group {
    /// Checks an OffsetCommit's member and generation (Kafka's
    /// validateOffsetCommit): a commit with generation -1 and no member is
    /// an admin's (or a standalone consumer's) and is taken only while the
    /// group is empty.
    pub(crate) fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration.code());
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress.code());
        }
        Ok(())
    }

    /// Records a commit checked by [`Group::check_commit`]; false if the
    /// group holds `offsets_max` other offsets already.
    pub(crate) fn commit(
        &mut self,
        topic: &str,
        partition: i32,
        c: Committed,
        limits: &Limits,
    ) -> bool {
        let key = (topic.to_string(), partition);
        if !self.offsets.contains_key(&key) && self.offsets.len() >= limits.offsets_max {
            return false;
        }
        self.offsets.insert(key, c);
        true
    }

    /// The topics the members subscribe to, if the group uses the consumer
    /// protocol and its members' subscriptions can be read.
    pub(crate) fn subscribed_topics(&self) -> Option<std::collections::HashSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol.clone()?;
        let mut topics = std::collections::HashSet::new();
        for m in self.members.values() {
            let mut meta = m.metadata(&protocol);
            if meta.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([meta[0], meta[1]]);
            bytes::Buf::advance(&mut meta, 2);
            let s = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)).ok()?;
            topics.extend(s.topics.into_iter().map(|t| t.to_string()));
        }
        Some(topics)
    }

    /// Drops offsets older than the retention (Kafka's rule, KIP-211):
    /// for an empty group, counted from when it became empty (or from the
    /// commit, for a group that never had members); for a consumer group
    /// with members, only offsets of topics no member subscribes to, from
    /// their commit. Returns the dropped keys.
    pub(crate) fn expire_offsets(&mut self, retention_ms: i64, now_ms: i64) -> Vec<(String, i32)> {
        let subscribed = match self.state {
            GroupState::Empty => None,
            _ => match self.subscribed_topics() {
                Some(s) => Some(s),
                None => return Vec::new(),
            },
        };
        let since = self.protocol_type.as_ref().map(|_| self.state_since_ms);
        let gone: Vec<(String, i32)> = self
            .offsets
            .iter()
            .filter(|((topic, _), c)| {
                let base = match (&subscribed, since) {
                    (Some(s), _) if s.contains(topic) => return false,
                    (Some(_), _) | (None, None) => c.commit_timestamp_ms,
                    (None, Some(since)) => since,
                };
                base.saturating_add(retention_ms) <= now_ms
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.offsets.remove(k);
        }
        gone
    }
}
