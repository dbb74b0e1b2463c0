//! The Kafka protocol server.

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::Decodable;

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
}
