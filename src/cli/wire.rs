//! One Kafka request over a plain socket, for what librdkafka's admin API
//! cannot say: IncrementalAlterConfigs on the cluster-wide broker default
//! (a BROKER resource with an empty name), which `sluice cluster config
//! set` changes. The same request works against Apache Kafka, where a
//! broker-id resource would change one broker only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader,
    ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
/// A response frame larger than this is not one of ours.
const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// Sets `pairs` as cluster-wide broker defaults through `addr`; a refusal
/// comes back as Kafka's error code and message.
pub fn set_broker_defaults(
    addr: &str,
    pairs: &[(String, String)],
    timeout: Duration,
) -> Result<(), (i16, String)> {
    let io = |e: std::io::Error| (-1, format!("{addr}: {e}"));
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = RESOURCE_BROKER;
    resource.resource_name = StrBytes::from_static_str("");
    resource.configs = pairs
        .iter()
        .map(|(k, v)| {
            let mut c = AlterableConfig::default();
            c.name = StrBytes::from_string(k.clone());
            c.config_operation = OP_SET;
            c.value = Some(StrBytes::from_string(v.clone()));
            c
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![resource];
    let version = 0;
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::IncrementalAlterConfigs as i16;
    header.request_api_version = version;
    header.correlation_id = 1;
    header.client_id = Some(StrBytes::from_static_str("sluice-cli"));
    let mut body = BytesMut::new();
    let encoded = header
        .encode(
            &mut body,
            ApiKey::IncrementalAlterConfigs.request_header_version(version),
        )
        .and_then(|()| req.encode(&mut body, version));
    encoded.map_err(|e| (-1, format!("cannot encode the request: {e}")))?;

    let mut s = TcpStream::connect(addr).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    s.write_all(&(body.len() as i32).to_be_bytes())
        .and_then(|()| s.write_all(&body))
        .map_err(io)?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size).map_err(io)?;
    let size = i32::from_be_bytes(size);
    let size = usize::try_from(size)
        .ok()
        .filter(|n| *n <= RESPONSE_BYTES_MAX)
        .ok_or((-1, format!("{addr}: a response of {size} bytes")))?;
    let mut frame = vec![0u8; size];
    s.read_exact(&mut frame).map_err(io)?;
    let mut frame = bytes::Bytes::from(frame);
    let bad = |e: String| (-1, format!("{addr}: a malformed response: {e}"));
    ResponseHeader::decode(
        &mut frame,
        ApiKey::IncrementalAlterConfigs.response_header_version(version),
    )
    .map_err(|e| bad(e.to_string()))?;
    let resp = IncrementalAlterConfigsResponse::decode(&mut frame, version)
        .map_err(|e| bad(e.to_string()))?;
    if frame.has_remaining() {
        return Err((-1, format!("{addr}: a response longer than expected")));
    }
    match resp.responses.first() {
        Some(r) if r.error_code != 0 => Err((
            r.error_code,
            r.error_message.as_deref().unwrap_or_default().to_string(),
        )),
        Some(_) => Ok(()),
        None => Err((-1, format!("{addr}: an empty response"))),
    }
}
