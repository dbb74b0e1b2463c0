//! The replication protocol: how a follower broker fetches partitions from
//! their leader over the replication listener. Sluice's own, not Kafka's:
//! a fixed little-endian header, structured metadata encoded with rkyv, and
//! record batches carried as the raw bytes they are on disk.
//!
//! ## Frame (all integers little-endian)
//! ```text
//! offset size field
//!      0    4 length: the bytes after this field (header rest + meta + records)
//!      4    2 magic 0x4C53 ("SL")
//!      6    2 protocol version of this frame
//!      8    2 kind (`Kind`)
//!     10    2 reserved, 0
//!     12    4 correlation id: a response carries its request's
//!     16    4 meta length: the rkyv-encoded message that follows
//!     20    … meta: the message `kind` names, rkyv
//!           … records: raw record batches; a `Fetched` lists each
//!             partition's `records_len`, in order, and they add up to the rest
//! ```
//! Every length is checked against its bound ([`META_BYTES_MAX`],
//! [`RECORDS_BYTES_MAX`]) before anything is allocated; a message is
//! validated by rkyv (bytecheck) before it is read. A frame that fails any
//! check is an error: the connection is closed, nothing panics.
//!
//! ## Conversation
//! | message | from → to | when | answered by |
//! |---|---|---|---|
//! | [`Hello`] | follower → leader | first frame of a connection | [`Welcome`] (the version both speak) or [`Refused`], then close |
//! | [`Fetch`] | follower → leader | repeatedly; long-polls when caught up | [`Fetched`] |
//! | [`EpochEnds`] | follower → leader | before fetching from a new leader | [`EpochEndsAnswer`] |
//!
//! Every partition is named by its topic id as well as its name, so a
//! replica of a deleted incarnation of a topic is never taken for the new
//! one. A `Fetch` carries the follower's log end (`fetch_offset`) and its
//! durable end; the leader answers with records from `fetch_offset`, its
//! high watermark and log start, and the divergence point when the
//! follower's last fetched epoch does not match the leader's log (KIP-320).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rkyv::rancor;
use rkyv::util::AlignedVec;

/// "SL", little-endian.
pub(crate) const MAGIC: u16 = 0x4C53;
/// The protocol versions this broker speaks.
pub(crate) const VERSION_MIN: u16 = 1;
pub(crate) const VERSION_MAX: u16 = 1;
/// Bytes of the fixed header after the length field.
pub(crate) const HEADER_LEN: usize = 16;
/// The largest rkyv message accepted: a fetch of many partitions.
pub(crate) const META_BYTES_MAX: usize = 8 << 20;
/// The most record bytes one frame carries
/// (`replica.fetch.response.max.bytes` is bounded by it).
pub(crate) const RECORDS_BYTES_MAX: usize = 64 << 20;
/// The largest frame accepted, after its length field.
pub(crate) const FRAME_BYTES_MAX: usize = HEADER_LEN + META_BYTES_MAX + RECORDS_BYTES_MAX;
const _: () = assert!(
    FRAME_BYTES_MAX <= u32::MAX as usize,
    "a frame's length fits its field"
);
const _: () = assert!(
    RECORDS_BYTES_MAX >= 10 << 20,
    "room for replica.fetch.response.max.bytes' default"
);

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum Kind {
    Hello = 1,
    Welcome = 2,
    Refused = 3,
    Fetch = 4,
    Fetched = 5,
    EpochEnds = 6,
    EpochEndsAnswer = 7,
}

impl Kind {
    fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Hello,
            2 => Self::Welcome,
            3 => Self::Refused,
            4 => Self::Fetch,
            5 => Self::Fetched,
            6 => Self::EpochEnds,
            7 => Self::EpochEndsAnswer,
            _ => return None,
        })
    }
}

/// Why a frame or a conversation is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    #[error("frame of {0} bytes is outside the bounds")]
    Length(usize),
    #[error("bad magic {0:#06x}: not the Sluice replication protocol")]
    Magic(u16),
    #[error("unsupported protocol version {0}")]
    Version(u16),
    #[error("unknown frame kind {0}")]
    Kind(u16),
    #[error("reserved header bytes are not zero")]
    Reserved,
    #[error("meta length {meta} with {rest} bytes after the header")]
    Meta { meta: usize, rest: usize },
    #[error("malformed {kind:?} message: {why}")]
    Message { kind: Kind, why: String },
    #[error("record lengths add up to {declared}, {actual} bytes follow")]
    Records { declared: u64, actual: usize },
}

/// The first frame a follower sends.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub broker_id: i32,
    pub broker_epoch: u64,
    pub cluster_id: String,
    pub version_min: u16,
    pub version_max: u16,
}

/// The leader's answer to [`Hello`]: the version both speak from now on.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Welcome {
    pub broker_id: i32,
    pub version: u16,
}

/// Why the leader will not talk; the connection closes after it.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    pub error: i16,
    pub message: String,
}

/// A partition, by topic id and name.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct PartitionKey {
    pub topic_id: [u8; 16],
    pub topic: String,
    pub partition: i32,
}

/// One partition of a [`Fetch`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct FetchPartition {
    pub key: PartitionKey,
    /// The leader epoch the follower believes current (KIP-320).
    pub current_leader_epoch: i32,
    /// The follower's log end: records are wanted from here.
    pub fetch_offset: i64,
    /// Everything below is durable on the follower (by the topic's flush
    /// policy): what the high watermark may count.
    pub durable_offset: i64,
    /// The epoch of the follower's last batch, checked against the
    /// leader's log (-1: none).
    pub last_fetched_epoch: i32,
    pub max_bytes: u32,
}

/// A follower's fetch.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fetch {
    pub replica_id: i32,
    pub replica_epoch: u64,
    /// How long the leader may hold the answer for `min_bytes`.
    pub max_wait_ms: u32,
    pub min_bytes: u32,
    pub max_bytes: u32,
    pub partitions: Vec<FetchPartition>,
}

/// Where a follower's log diverges from the leader's (KIP-320): the end
/// offset of the follower's last epoch in the leader's log.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Diverging {
    pub epoch: i32,
    pub end_offset: i64,
}

/// One partition of a [`Fetched`]; its records follow in the frame.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct FetchedPartition {
    pub key: PartitionKey,
    /// A Kafka error code; 0 for none.
    pub error: i16,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub log_start: i64,
    pub log_end: i64,
    pub diverging: Option<Diverging>,
    pub records_len: u32,
}

/// The leader's answer to a [`Fetch`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub partitions: Vec<FetchedPartition>,
}

/// One partition of an [`EpochEnds`] (OffsetForLeaderEpoch).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct EpochEndPartition {
    pub key: PartitionKey,
    pub current_leader_epoch: i32,
    /// The epoch whose end offset is asked.
    pub leader_epoch: i32,
}

/// A follower's question: where does each of these epochs end?
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct EpochEnds {
    pub replica_id: i32,
    pub partitions: Vec<EpochEndPartition>,
}

/// One partition of an [`EpochEndsAnswer`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct EpochEnd {
    pub key: PartitionKey,
    pub error: i16,
    /// The largest epoch at most the one asked, and its end offset; -1, -1
    /// when the leader's log has no such epoch.
    pub leader_epoch: i32,
    pub end_offset: i64,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct EpochEndsAnswer {
    pub partitions: Vec<EpochEnd>,
}

/// A frame's fixed header, after its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u16,
    pub kind: Kind,
    pub correlation: u32,
    pub meta_len: u32,
}

/// Encodes a frame's length, header and message; the caller sends
/// `records_len` bytes of records after it.
pub(crate) fn encode<T>(
    version: u16,
    kind: Kind,
    correlation: u32,
    message: &T,
    records_len: usize,
) -> Bytes
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Error,
        >,
    >,
{
    let meta = rkyv::to_bytes::<rancor::Error>(message).expect("serialising to memory cannot fail");
    assert!(meta.len() <= META_BYTES_MAX, "a message within its bound");
    assert!(
        records_len <= RECORDS_BYTES_MAX,
        "records within their bound"
    );
    let mut out = BytesMut::with_capacity(4 + HEADER_LEN + meta.len());
    out.put_u32_le((HEADER_LEN + meta.len() + records_len) as u32);
    out.put_u16_le(MAGIC);
    out.put_u16_le(version);
    out.put_u16_le(kind as u16);
    out.put_u16_le(0);
    out.put_u32_le(correlation);
    out.put_u32_le(meta.len() as u32);
    out.put_slice(&meta);
    out.freeze()
}

/// The length field of a frame: the bytes that follow it, checked against
/// [`FRAME_BYTES_MAX`] before the caller reads them.
pub(crate) fn frame_len(prefix: [u8; 4]) -> Result<usize, ProtocolError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if !(HEADER_LEN..=FRAME_BYTES_MAX).contains(&len) {
        return Err(ProtocolError::Length(len));
    }
    Ok(len)
}

/// Splits a frame (after its length field) into its header, its message
/// bytes and its records. `versions` are the versions acceptable here.
pub(crate) fn split(
    mut frame: Bytes,
    versions: std::ops::RangeInclusive<u16>,
) -> Result<(Header, Bytes, Bytes), ProtocolError> {
    if frame.len() < HEADER_LEN {
        return Err(ProtocolError::Length(frame.len()));
    }
    let magic = frame.get_u16_le();
    if magic != MAGIC {
        return Err(ProtocolError::Magic(magic));
    }
    let version = frame.get_u16_le();
    if !versions.contains(&version) {
        return Err(ProtocolError::Version(version));
    }
    let kind_raw = frame.get_u16_le();
    let kind = Kind::from_u16(kind_raw).ok_or(ProtocolError::Kind(kind_raw))?;
    if frame.get_u16_le() != 0 {
        return Err(ProtocolError::Reserved);
    }
    let correlation = frame.get_u32_le();
    let meta_len = frame.get_u32_le();
    let meta = meta_len as usize;
    if meta > META_BYTES_MAX || meta > frame.len() || frame.len() - meta > RECORDS_BYTES_MAX {
        return Err(ProtocolError::Meta {
            meta,
            rest: frame.len(),
        });
    }
    let message = frame.split_to(meta);
    let header = Header {
        version,
        kind,
        correlation,
        meta_len,
    };
    Ok((header, message, frame))
}

/// Decodes and validates a message of `kind` from its bytes.
pub(crate) fn decode<T>(kind: Kind, bytes: &[u8]) -> Result<T, ProtocolError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    // rkyv reads from aligned memory; the copy is bounded by META_BYTES_MAX.
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| ProtocolError::Message {
        kind,
        why: e.to_string(),
    })
}

/// Checks that the records of a [`Fetched`] add up to what follows it.
pub(crate) fn check_records(fetched: &Fetched, records: &Bytes) -> Result<(), ProtocolError> {
    let declared: u64 = fetched
        .partitions
        .iter()
        .map(|p| u64::from(p.records_len))
        .sum();
    if declared != records.len() as u64 {
        return Err(ProtocolError::Records {
            declared,
            actual: records.len(),
        });
    }
    Ok(())
}

/// Reads a frame (after its length field) as its receiver would: the
/// header, then the message its kind names, then, for [`Fetched`], the
/// records against their lengths. For fuzzing; errors close a connection.
pub(crate) fn read_any(frame: Bytes) -> Result<Kind, ProtocolError> {
    let (h, meta, records) = split(frame, VERSION_MIN..=VERSION_MAX)?;
    match h.kind {
        Kind::Hello => decode::<Hello>(h.kind, &meta).map(drop),
        Kind::Welcome => decode::<Welcome>(h.kind, &meta).map(drop),
        Kind::Refused => decode::<Refused>(h.kind, &meta).map(drop),
        Kind::Fetch => decode::<Fetch>(h.kind, &meta).map(drop),
        Kind::Fetched => decode::<Fetched>(h.kind, &meta).and_then(|f| check_records(&f, &records)),
        Kind::EpochEnds => decode::<EpochEnds>(h.kind, &meta).map(drop),
        Kind::EpochEndsAnswer => decode::<EpochEndsAnswer>(h.kind, &meta).map(drop),
    }?;
    Ok(h.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PartitionKey {
        PartitionKey {
            topic_id: [7; 16],
            topic: "orders".into(),
            partition: 3,
        }
    }

    fn fetched(records: &[u8]) -> Fetched {
        Fetched {
            partitions: vec![FetchedPartition {
                key: key(),
                error: 0,
                leader_epoch: 4,
                high_watermark: 10,
                log_start: 0,
                log_end: 12,
                diverging: Some(Diverging {
                    epoch: 3,
                    end_offset: 9,
                }),
                records_len: records.len() as u32,
            }],
        }
    }

    /// A frame as it travels: header and message, then the records.
    fn frame(kind: Kind, message: &Fetched, records: &[u8]) -> Vec<u8> {
        let mut f = encode(1, kind, 42, message, records.len()).to_vec();
        f.extend_from_slice(records);
        f
    }

    #[test]
    fn a_fetched_frame_round_trips_with_its_records() {
        let records = b"batch bytes";
        let f = frame(Kind::Fetched, &fetched(records), records);
        let len = frame_len(f[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, f.len() - 4);
        let (h, meta, rest) = split(Bytes::copy_from_slice(&f[4..]), 1..=1).unwrap();
        assert_eq!((h.kind, h.correlation, h.version), (Kind::Fetched, 42, 1));
        let got: Fetched = decode(h.kind, &meta).unwrap();
        assert_eq!(got, fetched(records));
        check_records(&got, &rest).unwrap();
        assert_eq!(&rest[..], records);
    }

    #[test]
    fn bad_frames_are_errors_never_panics() {
        let records = b"xy";
        let f = frame(Kind::Fetched, &fetched(records), records);
        let body = Bytes::copy_from_slice(&f[4..]);
        assert!(matches!(
            frame_len([0, 0, 0, 0]),
            Err(ProtocolError::Length(0))
        ));
        assert!(frame_len(u32::MAX.to_le_bytes()).is_err());
        let mut m = body.to_vec();
        m[0] ^= 1;
        assert!(matches!(
            split(m.into(), 1..=1),
            Err(ProtocolError::Magic(_))
        ));
        assert!(matches!(
            split(body.clone(), 2..=2),
            Err(ProtocolError::Version(1))
        ));
        let mut k = body.to_vec();
        k[4] = 99;
        assert!(matches!(
            split(k.into(), 1..=1),
            Err(ProtocolError::Kind(99))
        ));
        let mut meta = body.to_vec();
        meta[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            split(meta.into(), 1..=1),
            Err(ProtocolError::Meta { .. })
        ));
        let (h, message, rest) = split(body, 1..=1).unwrap();
        // Flipped bytes in the message, or the message of another kind.
        for i in 0..message.len() {
            let mut m = message.to_vec();
            m[i] ^= 0xff;
            let _ = decode::<Fetched>(h.kind, &m);
        }
        assert!(decode::<Fetched>(h.kind, &message[..message.len() / 2]).is_err());
        let mut short = fetched(records);
        short.partitions[0].records_len = 5;
        assert!(check_records(&short, &rest).is_err());
    }
}
