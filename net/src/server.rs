//! The protocol server on each shard: its start and its listener.
//!
//! Every shard listens on the same address (SO_REUSEPORT, so the kernel
//! spreads connections over the shards) and serves the connections it
//! accepted (`connection`). A request's partition work runs on the shards
//! that own the partitions (`sluice_broker::router`); metadata comes from
//! the coordinator's image, which every shard reads without locks.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::sync::Semaphore;
use sluice_broker::partition_manager::{PartitionManager, ReplicaSettings};
use sluice_broker::router::{Mesh, Router};
use sluice_broker::topic_config::TopicConfigs;
use sluice_engine::shard::{ShardEnv, ShardMain};
use sluice_replication::raft::subscriber::Image;

use crate::config::BrokerConfig;
use crate::ctx::Ctx;
use crate::{connection, fetch_session, groups, producer_ids, replication};

/// How many shards have bound their listener, and how many failed to.
#[derive(Default)]
pub struct Listening {
    pub bound: AtomicUsize,
    pub failed: AtomicUsize,
}

impl Listening {
    /// Waits until `shards` listeners are bound; false if one failed or
    /// the wait timed out.
    pub fn wait(&self, shards: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.failed.load(Ordering::Acquire) > 0 {
                return false;
            }
            if self.bound.load(Ordering::Acquire) >= shards {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The per-shard task that serves Kafka clients, for
/// `Engine::start_with`, and the count of bound listeners to wait on
/// before telling anyone the broker serves.
pub fn shard_main(
    config: BrokerConfig,
    image: Image,
    shards: usize,
) -> (ShardMain, Arc<Listening>) {
    let listening = Arc::new(Listening::default());
    let ready = listening.clone();
    let config = Arc::new(config);
    let mesh = Mesh::<Ctx>::new(shards);
    let main: ShardMain = Arc::new(move |env: Rc<ShardEnv>| {
        let (config, ready, image, mesh) =
            (config.clone(), ready.clone(), image.clone(), mesh.clone());
        Box::pin(async move {
            let (router, receivers) = match mesh.join(env.shard).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(shard = env.shard, error = %e, "could not join the shard mesh");
                    ready.failed.fetch_add(1, Ordering::AcqRel);
                    return;
                }
            };
            let configs = TopicConfigs::new(config.static_configs.clone());
            let settings = ReplicaSettings {
                broker_id: config.broker_id,
                coordinators: config.coordinators.clone(),
                lag_time_max_ms: config.replica_lag_time_max_ms as i64,
            };
            let partitions = PartitionManager::new(env.clone(), image.clone(), configs, settings);
            partitions.follow();
            partitions.check_isrs();
            let groups =
                groups::Coordinator::start(partitions.clone(), config.clone(), image.clone());
            let ctx = Rc::new(Ctx {
                config: config.clone(),
                image,
                router,
                partitions,
                groups,
                request_bytes: Rc::new(Semaphore::new(config.queued_max_request_bytes as u64)),
                fetch_sessions: RefCell::new(fetch_session::SessionCache::new(
                    config.fetch_session_cache_slots / shards.max(1),
                    env.shard,
                )),
                producer_ids: producer_ids::ProducerIds::default(),
            });
            Router::serve(receivers, ctx.clone());
            glommio::spawn_local(replication::server::listen(ctx.clone())).detach();
            glommio::spawn_local(replication::fetcher::run(ctx.clone())).detach();
            listen(ctx, ready).await;
        })
    });
    (main, listening)
}

/// Accepts connections until the shard stops, at most `connections_max`
/// at once.
async fn listen(ctx: Rc<Ctx>, ready: Arc<Listening>) {
    let listener = match TcpListener::bind(ctx.config.listen) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %ctx.config.listen, error = %e, "cannot listen");
            ready.failed.fetch_add(1, Ordering::AcqRel);
            return;
        }
    };
    ready.bound.fetch_add(1, Ordering::AcqRel);
    let open = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= ctx.config.connections_max {
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let (ctx, open) = (ctx.clone(), open.clone());
        glommio::spawn_local(async move {
            if let Err(e) = connection::serve(ctx, stream).await {
                tracing::debug!(error = %e, "connection closed");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}
