//! What the protocol server's handlers on one shard share. Work run on
//! another shard (through `sluice_broker::router`) gets that shard's `Ctx`.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use kafka_protocol::error::ResponseError;
use sluice_broker::partition_manager::PartitionManager;
use sluice_broker::router::Router;
use sluice_engine::TopicPartition;
use sluice_replication::raft::subscriber::Image;

use crate::config::BrokerConfig;
use crate::producer_ids::ProducerIds;
use crate::{fetch_session, groups};

/// What request handlers on one shard share. Work run on another shard
/// gets that shard's `Ctx`.
pub(crate) struct Ctx {
    pub(crate) config: Arc<BrokerConfig>,
    pub(crate) image: Image,
    /// Cross-shard transport.
    pub(crate) router: Router<Ctx>,
    /// The partitions this shard holds.
    pub(crate) partitions: Rc<PartitionManager>,
    /// The consumer groups this shard coordinates.
    pub(crate) groups: Rc<groups::Coordinator>,
    /// Room for request bytes held by this shard (`queued.max.request.bytes`).
    pub(crate) request_bytes: Rc<Semaphore>,
    /// This shard's incremental fetch sessions (KIP-227).
    pub(crate) fetch_sessions: RefCell<fetch_session::SessionCache>,
    /// This shard's block of idempotent producer ids.
    pub(crate) producer_ids: ProducerIds,
}

impl Ctx {
    /// Runs `op` for each item on the shard that owns its partition. An
    /// item given an error code up front is answered with it and nothing
    /// runs for it. Replies come back in the order of `items`.
    pub(crate) async fn on_owners<I, T, F, FF>(
        self: &Rc<Self>,
        items: Vec<(TopicPartition, Result<I, i16>)>,
        op: F,
    ) -> Vec<Result<T, i16>>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(Rc<Ctx>, TopicPartition, I) -> FF + Send + Copy + 'static,
        FF: Future<Output = Result<T, i16>> + 'static,
    {
        let mut out: Vec<Option<Result<T, i16>>> = Vec::with_capacity(items.len());
        let mut routed = Vec::new();
        let mut slots = Vec::new();
        for (tp, item) in items {
            match item {
                Ok(input) => {
                    slots.push(out.len());
                    routed.push((tp, input));
                    out.push(None);
                }
                Err(code) => out.push(Some(Err(code))),
            }
        }
        let replies = self.router.run(self, routed, op).await;
        for (slot, reply) in slots.into_iter().zip(replies) {
            out[slot] = reply;
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(ResponseError::UnknownServerError.code())))
            .collect()
    }
}
