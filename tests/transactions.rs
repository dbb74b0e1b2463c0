//! Transactional producers until transactions exist: a client fails fast
//! with a fatal error naming why, rather than retrying until its timeout.

mod support;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer};
use support::Broker;

#[test]
fn given_a_transactional_producer_init_transactions_fails_at_once_with_a_fatal_error() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("transactional.id", "txn-1")
        .create()
        .unwrap();
    // Before, the transaction coordinator was "not available", which
    // librdkafka retries until this timeout and then reports as a timeout.
    let err = producer
        .init_transactions(Duration::from_secs(30))
        .expect_err("transactions are not built");
    let KafkaError::Transaction(e) = &err else {
        panic!("not a transaction error: {err:?}");
    };
    assert_eq!(
        e.code(),
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        "{err:?}"
    );
    assert!(e.is_fatal(), "{err:?}");
    assert!(e.string().contains("not supported"), "{}", e.string());
    broker.stop();
}
