//! The records of `__consumer_offsets`, in Kafka's own formats, so that
//! Kafka's tools can read the topic and a log written by one can be
//! loaded by the other. Big-endian; a string is an i16 length and UTF-8
//! bytes (-1: null), bytes are an i32 length and the bytes.
//!
//! ```text
//! offset commit key   v1: version i16 = 1 | group string | topic string | partition i32
//! offset commit value v3: version i16 = 3 | offset i64 | leader epoch i32
//!                         | metadata string | commit timestamp i64
//! group key           v2: version i16 = 2 | group string
//! group value         v3: version i16 = 3 | protocol type string | generation i32
//!                         | protocol string? | leader string? | state timestamp i64
//!                         | members i32 count × (member id string
//!                           | instance id string? | client id string | client host string
//!                           | rebalance timeout i32 | session timeout i32
//!                           | subscription bytes | assignment bytes)
//! ```
//! A null value (tombstone) deletes the key's offset or group. Keys of
//! version 0 (offset commit) are read too; values of other versions are
//! read where their layout is known (offset values v1 and v3, group values
//! v0 to v3) and skipped otherwise.

use bytes::{BufMut, Bytes};

/// Key version of an offset commit.
pub(crate) const OFFSET_KEY_VERSION: i16 = 1;
/// Value version of an offset commit.
pub(crate) const OFFSET_VALUE_VERSION: i16 = 3;
/// Key version of group metadata.
pub(crate) const GROUP_KEY_VERSION: i16 = 2;
/// Value version of group metadata.
pub(crate) const GROUP_VALUE_VERSION: i16 = 3;

/// A record's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// The longest string these records hold: their lengths are i16. Group
/// ids, instance ids and protocol names longer than this are refused when
/// they arrive (flexible request versions allow longer ones), and
/// generated member ids are made to fit.
pub(crate) const STORED_STRING_LEN_MAX: usize = i16::MAX as usize;

fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.put_i16(-1),
        Some(s) => {
            // Cutting a string would make two ids alike after a reload.
            assert!(
                s.len() <= STORED_STRING_LEN_MAX,
                "string checked on arrival"
            );
            out.put_i16(s.len() as i16);
            out.put_slice(s.as_bytes());
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

impl Key {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                out.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut out, Some(group));
                put_str(&mut out, Some(topic));
                out.put_i32(*partition);
            }
            Key::Group(group) => {
                out.put_i16(GROUP_KEY_VERSION);
                put_str(&mut out, Some(group));
            }
        }
        out
    }

    /// `None` for a key this broker does not know (Kafka's transaction or
    /// newer records), which loading skips.
    pub(crate) fn decode(b: &[u8]) -> Option<Key> {
        let mut r = Reader { b, at: 0 };
        match r.i16()? {
            0 | 1 => Some(Key::Offset {
                group: r.string()?,
                topic: r.string()?,
                partition: r.i32()?,
            }),
            2 => Some(Key::Group(r.string()?)),
            _ => None,
        }
    }
}

impl OffsetValue {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_i16(OFFSET_VALUE_VERSION);
        out.put_i64(self.offset);
        out.put_i32(self.leader_epoch);
        put_str(&mut out, Some(&self.metadata));
        out.put_i64(self.commit_timestamp_ms);
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Option<OffsetValue> {
        let mut r = Reader { b, at: 0 };
        let version = r.i16()?;
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = r.string()?;
        let commit_timestamp_ms = r.i64()?;
        if !(0..=3).contains(&version) {
            return None;
        }
        Some(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp_ms,
        })
    }
}

impl GroupValue {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_i16(GROUP_VALUE_VERSION);
        put_str(&mut out, Some(&self.protocol_type));
        out.put_i32(self.generation);
        put_str(&mut out, self.protocol.as_deref());
        put_str(&mut out, self.leader.as_deref());
        out.put_i64(self.state_timestamp_ms);
        out.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut out, Some(&m.member_id));
            put_str(&mut out, m.instance_id.as_deref());
            put_str(&mut out, Some(&m.client_id));
            put_str(&mut out, Some(&m.client_host));
            out.put_i32(m.rebalance_timeout_ms);
            out.put_i32(m.session_timeout_ms);
            put_bytes(&mut out, &m.subscription);
            put_bytes(&mut out, &m.assignment);
        }
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Option<GroupValue> {
        let mut r = Reader { b, at: 0 };
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return None;
        }
        let protocol_type = r.string()?;
        let generation = r.i32()?;
        let protocol = r.nullable_string()?;
        let leader = r.nullable_string()?;
        let state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
        let count = usize::try_from(r.i32()?).ok()?;
        // Each member takes at least 20 bytes: bound before allocating.
        let mut members = Vec::with_capacity(count.min(b.len() / 20));
        for _ in 0..count {
            let member_id = r.string()?;
            let instance_id = if version >= 3 {
                r.nullable_string()?
            } else {
                None
            };
            let client_id = r.string()?;
            let client_host = r.string()?;
            let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
            let session_timeout_ms = r.i32()?;
            let subscription = Bytes::copy_from_slice(r.bytes()?);
            let assignment = Bytes::copy_from_slice(r.bytes()?);
            members.push(MemberValue {
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                    session_timeout_ms
                } else {
                    rebalance_timeout_ms
                },
                session_timeout_ms,
                subscription,
                assignment,
            });
        }
        Some(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp_ms,
            members,
        })
    }
}

/// Bounds-checked big-endian reads.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len())?;
        let s = &self.b[self.at..end];
        self.at = end;
        Some(s)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn nullable_string(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        let s = self.take(len as usize)?;
        Some(Some(String::from_utf8(s.to_vec()).ok()?))
    }

    fn string(&mut self) -> Option<String> {
        self.nullable_string()?
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.i32()?).ok()?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_each_record_when_encoded_and_decoded_should_be_the_same() {
        let k = Key::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        assert_eq!(Key::decode(&k.encode()), Some(k));
        let g = Key::Group("grp".into());
        assert_eq!(Key::decode(&g.encode()), Some(g));
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        assert_eq!(OffsetValue::decode(&v.encode()), Some(v));
        let gv = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 9,
            members: vec![MemberValue {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(&gv.encode()), Some(gv));
    }

    #[test]
    fn given_kafka_bytes_for_an_offset_commit_key_should_decode_them() {
        // Written by Kafka 3.x for group "g", topic "t", partition 0.
        let key = [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 0];
        assert_eq!(
            Key::decode(&key),
            Some(Key::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 0
            })
        );
    }

    #[test]
    fn given_truncated_or_huge_input_decoding_fails_without_allocating() {
        let gv = GroupValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: None,
            leader: None,
            state_timestamp_ms: 0,
            members: Vec::new(),
        };
        let mut b = gv.encode();
        let n = b.len();
        b[n - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(GroupValue::decode(&b), None);
        for cut in 0..n {
            assert_eq!(GroupValue::decode(&gv.encode()[..cut]), None);
        }
        assert_eq!(Key::decode(&[0, 9]), None);
    }
}
