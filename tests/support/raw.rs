//! Raw Kafka protocol over a blocking socket, for tests that need exact
//! control of what is sent when (pipelining, sessions, long polls).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, ProduceRequest, ProduceResponse,
    RequestHeader, RequestKind, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A request frame: size, header, body.
pub fn frame(key: ApiKey, version: i16, correlation: i32, body: RequestKind) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation;
    header.client_id = Some(StrBytes::from_static_str("raw"));
    let mut b = BytesMut::new();
    header
        .encode(&mut b, key.request_header_version(version))
        .unwrap();
    body.encode(&mut b, version).unwrap();
    let mut out = BytesMut::new();
    out.put_i32(b.len() as i32);
    out.put_slice(&b);
    out.to_vec()
}

/// Reads one response frame; returns its correlation id and body.
pub fn read_response(s: &mut TcpStream, key: ApiKey, version: i16) -> (i32, Bytes) {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut buf).unwrap();
    let mut buf = Bytes::from(buf);
    let h = ResponseHeader::decode(&mut buf, key.response_header_version(version)).unwrap();
    (h.correlation_id, buf)
}

/// Sends one request and reads its response.
pub fn call(s: &mut TcpStream, key: ApiKey, version: i16, body: RequestKind) -> Bytes {
    s.write_all(&frame(key, version, 1, body)).unwrap();
    read_response(s, key, version).1
}

pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// One uncompressed batch holding `values`.
pub fn batch(values: &[Vec<u8>]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(v.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut b = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut b,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    b.freeze()
}

/// A produce request of one batch to one partition.
pub fn produce(name: &str, partition: i32, acks: i16, records: Bytes) -> RequestKind {
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(records);
    let mut td = TopicProduceData::default();
    td.name = topic(name);
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 30_000;
    req.topic_data = vec![td];
    RequestKind::Produce(req)
}

/// A fetch request for one partition.
pub fn fetch(
    name: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    bytes: i32,
) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = partition;
    p.fetch_offset = offset;
    p.partition_max_bytes = bytes;
    let mut t = FetchTopic::default();
    t.topic = topic(name);
    t.partitions = vec![p];
    let mut req = FetchRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = 1;
    req.max_bytes = bytes;
    req.topics = vec![t];
    req
}

/// The values of every record in a fetch response's first partition,
/// with their offsets; a trailing partial batch is ignored.
pub fn fetched_values(resp: &FetchResponse) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let Some(mut records) = resp.responses[0].partitions[0].records.clone() else {
        return out;
    };
    while records.len() >= 12 {
        let len = i32::from_be_bytes(records[8..12].try_into().unwrap()) as usize;
        if records.len() < 12 + len {
            break;
        }
        let mut one = records.split_to(12 + len);
        let set = RecordBatchDecoder::decode(&mut one).unwrap();
        for r in set.records {
            out.push((r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()));
        }
    }
    out
}

/// Creates `name` with one partition (auto-creation through Metadata) and
/// waits until it takes produces.
pub fn create(s: &mut TcpStream, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = call(
            s,
            ApiKey::Produce,
            9,
            produce(name, 0, -1, batch(&[b"first".to_vec()])),
        );
        let resp = ProduceResponse::decode(&mut body.clone(), 9).unwrap();
        if resp.responses[0].partition_responses[0].error_code == 0 {
            return;
        }
        let mut m = MetadataRequest::default();
        let mut t = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
        t.name = Some(topic(name));
        m.topics = Some(vec![t]);
        m.allow_auto_topic_creation = true;
        call(s, ApiKey::Metadata, 9, RequestKind::Metadata(m));
        assert!(
            Instant::now() < deadline,
            "topic {name} never took a produce"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
