//! The Kafka protocol server.
//!
//! Every shard listens on the same address (SO_REUSEPORT, so the kernel
//! spreads connections over the shards) and serves the connections it
//! accepted. A request's partition work goes to the shards that own the
//! partitions (`router`); metadata comes from the coordinator's image, which
//! every shard reads without locks.
//!
//! ## Bad input
//! * A frame size below 4 or above `socket.request.max.bytes` closes the
//!   connection before anything is allocated for it.
//! * An unknown API key, or a version this broker does not serve, closes the
//!   connection, except for ApiVersions, which is answered in version 0
//!   with UNSUPPORTED_VERSION and the served versions (KIP-511), as Kafka
//!   does.
//! * A body that does not decode closes the connection. Element counts are
//!   bounded by the frame before decoding allocates (see
//!   vendor/kafka-protocol/SLUICE-PATCHES.md).
//! * Record batches are validated by the engine before they are stored.
//! * Connections idle for `connections.max.idle.ms` are closed, at most
//!   `connections_max` are served per shard, and requests on a connection
//!   are handled one at a time, so the bytes in flight per connection are at
//!   most one request.

pub mod api;
mod frame;
pub mod groups;
pub mod handlers;
pub mod router;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use glommio::channels::channel_mesh::FullMesh;
use glommio::net::{TcpListener, TcpStream};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use sluice_engine::shard::{shard_of, ShardEnv, ShardMain};
use sluice_engine::TopicPartition;
use sluice_replication::raft::subscriber::Image;

use router::{Msg, PartOp, Router};

/// Broker settings, with Kafka's names in the comments.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// `broker.id`.
    pub broker_id: i32,
    /// `listeners`.
    pub listen: SocketAddr,
    /// `advertised.listeners`: the host and port clients are told.
    pub advertised: (String, u16),
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `queued.max.request.bytes`: request bytes held at once by one shard,
    /// across its connections; a connection waits for room before reading
    /// a request's body.
    pub queued_max_request_bytes: usize,
    /// `fetch.max.bytes`: the most one fetch response carries, whatever the
    /// client asks (one batch larger than it still goes out whole, KIP-74).
    pub fetch_max_bytes: usize,
    /// `connections.max.idle.ms`.
    pub connections_max_idle_ms: u64,
    /// Most connections one shard serves.
    pub connections_max: usize,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// The coordinator quorum's addresses.
    pub coordinators: Vec<String>,
    /// `num.partitions` / `default.replication.factor` for topics created
    /// without them, unless set cluster-wide; -1 leaves it to the
    /// coordinator's default.
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    /// Static broker-level log defaults by Kafka's names (`message.max.bytes`,
    /// `log.retention.hours`, ...), from the config file or command line;
    /// cluster-wide dynamic configs override them.
    pub static_configs: std::collections::BTreeMap<String, String>,
    pub cluster_id: String,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`
    /// when it is created.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.retention.minutes`.
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size` (Kafka: unlimited; bounded here).
    pub group_max_size: usize,
    /// Groups one shard coordinates at most.
    pub groups_per_shard_max: usize,
    /// Committed offsets one group holds at most.
    pub group_offsets_max: usize,
}

impl BrokerConfig {
    pub fn new(broker_id: i32, listen: SocketAddr, coordinators: Vec<String>) -> Self {
        Self {
            broker_id,
            listen,
            advertised: (listen.ip().to_string(), listen.port()),
            socket_request_max_bytes: 104_857_600,
            queued_max_request_bytes: 256 << 20,
            fetch_max_bytes: 57_671_680,
            connections_max_idle_ms: 600_000,
            connections_max: 10_000,
            auto_create_topics: true,
            coordinators,
            cluster_id: "sluice".into(),
            num_partitions: -1,
            default_replication_factor: -1,
            static_configs: Default::default(),
            offsets_topic_num_partitions: 50,
            offsets_retention_minutes: 10_080,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4_096,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: 1_000,
            groups_per_shard_max: 100_000,
            group_offsets_max: 100_000,
        }
    }
}

static STATIC_CONFIGS: std::sync::OnceLock<std::collections::BTreeMap<String, String>> =
    std::sync::OnceLock::new();

/// This process's static broker-level configs (empty until a broker
/// starts): process-wide, like Kafka's server.properties.
pub fn static_configs() -> &'static std::collections::BTreeMap<String, String> {
    STATIC_CONFIGS.get_or_init(Default::default)
}

/// What request handlers on one shard share.
pub struct Ctx {
    pub config: Arc<BrokerConfig>,
    pub image: Image,
    pub router: Rc<Router>,
    /// Room for request bytes held by this shard (`queued.max.request.bytes`).
    pub request_bytes: glommio::sync::Semaphore,
    /// This shard's block of idempotent producer ids.
    pub producer_ids: handlers::init_producer_id::ProducerIds,
}

/// How many shards have bound their listener, and how many failed to.
#[derive(Default)]
pub struct Listening {
    pub bound: std::sync::atomic::AtomicUsize,
    pub failed: std::sync::atomic::AtomicUsize,
}

impl Listening {
    /// Waits until `shards` listeners are bound; false if one failed or
    /// the wait timed out.
    pub fn wait(&self, shards: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.failed.load(std::sync::atomic::Ordering::Acquire) > 0 {
                return false;
            }
            if self.bound.load(std::sync::atomic::Ordering::Acquire) >= shards {
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
    if STATIC_CONFIGS.set(config.static_configs.clone()).is_err() {
        tracing::warn!("static configs were set before: the first broker's apply");
    }
    let config = Arc::new(config);
    // The mesh is Send but not Sync: each shard takes its clone under a lock.
    let mesh = Arc::new(Mutex::new(FullMesh::<Msg>::full(shards, 1024)));
    let peers: Arc<Mutex<Vec<Option<usize>>>> = Arc::new(Mutex::new(vec![None; shards]));
    let main: ShardMain = Arc::new(move |env: Rc<ShardEnv>| {
        let config = config.clone();
        let ready = ready.clone();
        let image = image.clone();
        let mesh = mesh.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let peers = peers.clone();
        Box::pin(async move {
            let (senders, receivers) = match mesh.join().await {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(shard = env.shard, error = %e, "could not join the shard mesh");
                    return;
                }
            };
            peers.lock().unwrap_or_else(|p| p.into_inner())[env.shard] = Some(senders.peer_id());
            let table = loop {
                let t = peers.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if t.iter().all(Option::is_some) {
                    break t.into_iter().map(|p| p.expect("checked")).collect();
                }
                glommio::timer::sleep(Duration::from_millis(1)).await;
            };
            let groups = groups::Coordinator::start(env.clone(), config.clone(), image.clone());
            let router = Router::new(env.clone(), groups, senders, receivers, table);
            let ctx = Rc::new(Ctx {
                config: config.clone(),
                image,
                router,
                request_bytes: glommio::sync::Semaphore::new(
                    config.queued_max_request_bytes as u64,
                ),
                producer_ids: Default::default(),
            });
            glommio::spawn_local(follow_metadata(ctx.clone())).detach();
            serve(ctx, ready).await;
        })
    });
    (main, listening)
}

/// Applies metadata changes to the partitions this shard has open: config
/// changes, and removal of partitions whose topic was deleted.
///
/// Only a topic this shard has seen in an earlier image and that is gone
/// now counts as deleted: a partition on disk that metadata has never
/// named (an image that lags, a directory copied in by hand) is kept, not
/// served, and reported, never removed.
async fn follow_metadata(ctx: Rc<Ctx>) {
    let env = ctx.router.env.clone();
    let mut seen = 0u64;
    let mut known: std::collections::HashMap<String, [u8; 16]> = std::collections::HashMap::new();
    let mut reported = std::collections::HashSet::new();
    while !env.stop.load(std::sync::atomic::Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(20)).await;
        let state = ctx.image.load_full();
        if state.last_applied == seen {
            continue;
        }
        seen = state.last_applied;
        let open: Vec<TopicPartition> = env.partitions.borrow().keys().cloned().collect();
        let mut gone = Vec::new();
        for tp in open {
            let topic = state.topics.get(&tp.topic);
            match topic {
                Some(t)
                    if (tp.partition.0 as usize) < t.partitions.len()
                        && known.get(&tp.topic).is_none_or(|id| *id == t.id) =>
                {
                    if let Some(p) = env.get(&tp) {
                        let want = handlers::log_config(&state, &tp.topic);
                        if p.config() != want {
                            p.set_config(want);
                        }
                    }
                }
                // Deleted (or deleted and created again under a new id).
                _ if known.contains_key(&tp.topic) => gone.push((tp, PartOp::Remove)),
                _ => {
                    if reported.insert(tp.clone()) {
                        tracing::warn!(partition = %tp, "on disk but not in the cluster metadata: kept, not served");
                    }
                }
            }
        }
        known = state
            .topics
            .values()
            .map(|t| (t.name.clone(), t.id))
            .collect();
        if !gone.is_empty() {
            ctx.router.run(gone).await;
        }
    }
}

async fn serve(ctx: Rc<Ctx>, ready: Arc<Listening>) {
    let listener = match TcpListener::bind(ctx.config.listen) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %ctx.config.listen, error = %e, "cannot listen");
            ready
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            return;
        }
    };
    ready
        .bound
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
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
            if let Err(e) = connection(&ctx, stream).await {
                tracing::debug!(error = %e, "connection closed");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

async fn connection(ctx: &Ctx, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    // Kafka's form of a client's host, shown by DescribeGroups.
    let client_host = stream
        .peer_addr()
        .map_or_else(|_| String::new(), |a| format!("/{}", a.ip()));
    stream.set_read_timeout(Some(Duration::from_millis(
        ctx.config.connections_max_idle_ms.max(1),
    )))?;
    loop {
        let Some(size) = frame::read_size(&mut stream, ctx.config.socket_request_max_bytes).await?
        else {
            return Ok(());
        };
        let units = size.min(ctx.config.queued_max_request_bytes) as u64;
        let _room = ctx
            .request_bytes
            .acquire_permit(units)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let frame = frame::read_body(&mut stream, size).await?;
        let Some((header_bytes, body)) = handle(ctx, frame, &client_host).await? else {
            continue; // acks=0 produce: no response
        };
        frame::write(&mut stream, &header_bytes, &body).await?;
    }
}

fn bad(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.into())
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
    let served = api::served(key);
    let supported = served.is_some_and(|(lo, hi)| (lo..=hi).contains(&version));
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

/// Decodes, serves and encodes one request. `Ok(None)`: no response is
/// due; `Err`: close the connection.
async fn handle(
    ctx: &Ctx,
    frame: bytes::Bytes,
    client_host: &str,
) -> std::io::Result<Option<(BytesMut, BytesMut)>> {
    let (key, version, header, request) = match decode_request(frame)? {
        Decoded::Request {
            key,
            version,
            header,
            body,
        } => (key, version, header, body),
        Decoded::ApiVersionsUnsupported { correlation } => {
            let body = handlers::api_versions::handle(handlers::UNSUPPORTED_VERSION);
            return encode(
                ApiKey::ApiVersions,
                0,
                correlation,
                ResponseKind::ApiVersions(body),
            )
            .map(Some);
        }
    };
    let correlation = header.correlation_id;
    let response = match *request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(handlers::api_versions::handle(0)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(handlers::metadata::handle(ctx, r, version).await)
        }
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let resp = handlers::produce::handle(ctx, r, version).await;
            if acks == 0 {
                return Ok(None);
            }
            ResponseKind::Produce(resp)
        }
        RequestKind::Fetch(r) => {
            ResponseKind::Fetch(handlers::fetch::handle(ctx, r, version).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(handlers::list_offsets::handle(ctx, r, version).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(handlers::create_topics::handle(ctx, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(handlers::delete_topics::handle(ctx, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(handlers::create_partitions::handle(ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(handlers::describe_configs::handle(ctx, r).await)
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(handlers::alter_configs::handle(ctx, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            handlers::alter_configs::handle_incremental(ctx, r).await,
        ),
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(handlers::delete_records::handle(ctx, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            handlers::offset_for_leader_epoch::handle(ctx, r).await,
        ),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(handlers::describe_cluster::handle(ctx, r, version).await)
        }
        RequestKind::DescribeLogDirs(r) => ResponseKind::DescribeLogDirs(
            handlers::describe_log_dirs::handle(ctx, r, version).await,
        ),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(handlers::init_producer_id::handle(ctx, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(handlers::describe_producers::handle(ctx, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(handlers::find_coordinator::handle(ctx, r, version).await)
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(
            handlers::join_group::handle(ctx, r, &header, client_host, version).await,
        ),
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(handlers::sync_group::handle(ctx, r, version).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(handlers::heartbeat::handle(ctx, r).await)
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(handlers::leave_group::handle(ctx, r, version).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(handlers::offset_commit::handle(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(handlers::offset_fetch::handle(ctx, r, version).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(handlers::list_groups::handle(ctx, r, version).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(handlers::describe_groups::handle(ctx, r, version).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(handlers::delete_groups::handle(ctx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(handlers::offset_delete::handle(ctx, r).await)
        }
        other => return Err(bad(format!("{other:?} is not served"))),
    };
    encode(key, version, correlation, response).map(Some)
}

fn encode(
    key: ApiKey,
    version: i16,
    correlation: i32,
    body: ResponseKind,
) -> std::io::Result<(BytesMut, BytesMut)> {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation;
    let mut h = BytesMut::new();
    header
        .encode(&mut h, key.response_header_version(version))
        .map_err(|e| bad(e.to_string()))?;
    let mut b = BytesMut::new();
    body.encode(&mut b, version)
        .map_err(|e| bad(e.to_string()))?;
    Ok((h, b))
}

/// The shard that owns a partition, for tools and tests.
pub fn owner(tp: &TopicPartition, shards: usize) -> usize {
    shard_of(tp, shards)
}

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
