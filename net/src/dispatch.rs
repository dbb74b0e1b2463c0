//! The dispatch table: for each Kafka API served, its versions, how it may
//! overlap other requests on its connection, and its handler. It is the one
//! place a request passes through between decoding and its handler, where
//! authentication, authorization (ACLs), quotas and per-API metrics hook in.
//!
//! ## Versions
//! A version outside an API's range closes the connection, except for
//! ApiVersions, which is answered in version 0 with UNSUPPORTED_VERSION and
//! the served versions (KIP-511), as Kafka does. Produce is advertised from
//! version 0 although only 3 and later are served, as Kafka 4 does
//! (KAFKA-18659): librdkafka takes a minimum above 0 to mean the broker
//! cannot take its compressed produce. Fetch 13 to 17 name topics by id
//! (KIP-516); Produce 13, which does too, is not advertised yet.
//!
//! ## Handlers
//! A handler has two phases, [`Serve`]: the first *submits* the request
//! and is awaited by the connection's reader, in request order, before it
//! reads the next request; the second *answers* it and may overlap later
//! requests as the API's [`Class`] allows (see `connection`). Only Produce
//! does work in its first phase (its appends, so that one connection's
//! produces reach each partition in order); every other handler answers in
//! the second, built with `request::answer_later`.

use std::rc::Rc;

use bytes::Buf;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::Decodable;

use crate::ctx::Ctx;
use crate::handlers;
use crate::request::{answer_later, bad, body, Answer, Request, Serve, Serving};
use crate::response;

/// How a request may overlap the others on its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Submitted in request order by the reader; answered concurrently.
    Produce,
    /// Overlaps anything (metadata reads).
    Free,
    /// Waits until the connection's produces are answered, so that a
    /// connection reads its own writes; then overlaps.
    AfterProduces,
    /// Runs alone: after every earlier response is written, and before
    /// anything later is read.
    Alone,
}

/// One API served.
pub struct Api {
    pub key: ApiKey,
    /// Lowest and highest version served.
    pub min: i16,
    pub max: i16,
    /// Lowest version advertised in ApiVersions (module docs).
    pub advertised_min: i16,
    pub class: Class,
    pub(crate) serve: Serve,
}

impl Api {
    pub fn serves(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

macro_rules! api {
    ($key:ident, $min:expr, $max:expr, $adv:expr, $class:ident, $($serve:ident)::+) => {
        Api {
            key: ApiKey::$key,
            min: $min,
            max: $max,
            advertised_min: $adv,
            class: Class::$class,
            serve: handlers::$($serve)::+,
        }
    };
}

/// Every API this broker serves.
pub static TABLE: &[Api] = &[
    api!(Produce, 3, 12, 0, Produce, produce::serve),
    api!(Fetch, 4, 17, 4, AfterProduces, fetch::serve),
    api!(ListOffsets, 1, 9, 1, AfterProduces, list_offsets::serve),
    api!(Metadata, 1, 12, 1, Free, metadata::serve),
    Api {
        key: ApiKey::ApiVersions,
        min: 0,
        max: 4,
        advertised_min: 0,
        class: Class::Free,
        serve: serve_api_versions,
    },
    api!(CreateTopics, 2, 7, 2, Alone, create_topics::serve),
    api!(DeleteTopics, 1, 6, 1, Alone, delete_topics::serve),
    api!(DeleteRecords, 0, 2, 0, Alone, delete_records::serve),
    api!(
        OffsetForLeaderEpoch,
        2,
        4,
        2,
        AfterProduces,
        offset_for_leader_epoch::serve
    ),
    api!(DescribeConfigs, 1, 4, 1, Free, describe_configs::serve),
    api!(AlterConfigs, 0, 2, 0, Alone, alter_configs::serve),
    api!(
        IncrementalAlterConfigs,
        0,
        1,
        0,
        Alone,
        alter_configs::serve_incremental
    ),
    api!(CreatePartitions, 0, 3, 0, Alone, create_partitions::serve),
    api!(DescribeLogDirs, 1, 4, 1, Free, describe_log_dirs::serve),
    api!(DescribeCluster, 0, 1, 0, Free, describe_cluster::serve),
    api!(InitProducerId, 0, 5, 0, Alone, init_producer_id::serve),
    api!(DescribeProducers, 0, 0, 0, Alone, describe_producers::serve),
    api!(FindCoordinator, 0, 6, 0, Alone, find_coordinator::serve),
    api!(JoinGroup, 0, 9, 0, Alone, join_group::serve),
    api!(SyncGroup, 0, 5, 0, Alone, sync_group::serve),
    api!(Heartbeat, 0, 4, 0, Alone, heartbeat::serve),
    api!(LeaveGroup, 0, 5, 0, Alone, leave_group::serve),
    api!(OffsetCommit, 2, 9, 2, Alone, offset_commit::serve),
    api!(OffsetFetch, 1, 9, 1, Alone, offset_fetch::serve),
    api!(ListGroups, 0, 5, 0, Alone, list_groups::serve),
    api!(DescribeGroups, 0, 6, 0, Alone, describe_groups::serve),
    api!(DeleteGroups, 0, 2, 0, Alone, delete_groups::serve),
    api!(OffsetDelete, 0, 0, 0, Alone, offset_delete::serve),
];

/// The entry of an API, if it is served.
pub fn api(key: ApiKey) -> Option<&'static Api> {
    TABLE.iter().find(|a| a.key == key)
}

/// A request frame, decoded.
#[derive(Debug)]
pub enum Decoded {
    Request {
        key: ApiKey,
        version: i16,
        header: RequestHeader,
        body: Box<RequestKind>,
    },
    /// ApiVersions in a version not served: answered in v0 (KIP-511).
    ApiVersionsUnsupported { correlation: i32 },
}

/// Decodes a request frame (without its size prefix). Errors mean: close
/// the connection. Never panics, and allocates in proportion to the frame.
pub fn decode_request(mut frame: bytes::Bytes) -> std::io::Result<Decoded> {
    if frame.len() < 4 {
        return Err(bad("request shorter than its header"));
    }
    let key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(key_raw).map_err(|_| bad(format!("unknown API key {key_raw}")))?;
    let supported = api(key).is_some_and(|a| a.serves(version));
    if !supported && key != ApiKey::ApiVersions {
        return Err(bad(format!("{key:?} version {version} is not served")));
    }
    if !supported {
        let correlation = if frame.len() >= 8 {
            frame.slice(4..8).get_i32()
        } else {
            0
        };
        return Ok(Decoded::ApiVersionsUnsupported { correlation });
    }
    let header_version = key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| bad(e.to_string()))?;
    let body =
        Box::new(RequestKind::decode(key, &mut frame, version).map_err(|e| bad(e.to_string()))?);
    Ok(Decoded::Request {
        key,
        version,
        header,
        body,
    })
}

/// ApiVersions: the APIs and versions in [`TABLE`], answered here since
/// they are this module's.
fn serve_api_versions(_ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let _ = body!(req, ApiVersions);
        req.reply.answer(ResponseKind::ApiVersions(api_versions(0)))
    })
}

/// The versions served, answered with `error_code`.
fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    r.api_keys = TABLE
        .iter()
        .map(|a| {
            let mut v = ApiVersion::default();
            v.api_key = a.key as i16;
            v.min_version = a.advertised_min;
            v.max_version = a.max;
            v
        })
        .collect();
    r
}

/// The answer to ApiVersions in a version not served: version 0, with
/// UNSUPPORTED_VERSION and the versions served (KIP-511).
pub(crate) fn answer_unsupported_api_versions(correlation: i32) -> Answer {
    let body = api_versions(ResponseError::UnsupportedVersion.code());
    response::encode(
        ApiKey::ApiVersions,
        0,
        correlation,
        ResponseKind::ApiVersions(body),
    )
    .map(Some)
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::Decodable;

    use super::*;

    #[test]
    fn given_a_request_declaring_two_billion_topics_decoding_fails_instead_of_aborting() {
        // Metadata v0 body: topics array length i32::MAX, then nothing.
        let mut body = BytesMut::new();
        body.put_i32(i32::MAX);
        let mut b = body.freeze();
        assert!(MetadataRequest::decode(&mut b, 0).is_err());
        // Compact (flexible) array: varint length 2^31.
        let mut body = BytesMut::new();
        body.put_slice(&[0x80, 0x80, 0x80, 0x80, 0x08, 0x00]);
        let mut b = body.freeze();
        assert!(MetadataRequest::decode(&mut b, 12).is_err());
    }

    #[test]
    fn every_api_is_in_the_table_once_with_a_sane_range() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(a.min <= a.max, "{:?}", a.key);
            assert!(a.advertised_min <= a.min, "{:?}", a.key);
            assert!(TABLE[i + 1..].iter().all(|b| b.key != a.key), "{:?}", a.key);
        }
        assert_eq!(api(ApiKey::Produce).map(|a| a.class), Some(Class::Produce));
    }
}
