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
//!   with ResponseError::UnsupportedVersion.code() and the served versions (KIP-511), as Kafka
//!   does.
//! * A body that does not decode closes the connection. Element counts are
//!   bounded by the frame before decoding allocates (see
//!   vendor/kafka-protocol/SLUICE-PATCHES.md).
//! * Record batches are validated by the engine before they are stored.
//! * Connections idle for `connections.max.idle.ms` are closed, at most
//!   `connections_max` are served per shard, and at most
//!   [`PIPELINE_DEPTH`] requests per connection are read ahead of their
//!   responses, their bytes held within `queued.max.request.bytes`.
//!
//! ## Pipelining
//! A connection reads requests ahead while earlier ones are served, and
//! writes the responses strictly in request order: each request becomes a
//! task, queued in request order; the writer awaits them in that order.
//! Kafka's guarantee that a connection's requests are *processed* in order
//! is kept where it matters:
//! * Produce: the reader submits each produce's appends (offsets assigned,
//!   or the work queued to the owning shard) before it reads the next
//!   request; only the wait for the acknowledgement overlaps. So one
//!   connection's produces reach every partition in request order (see
//!   `router`), and several of them share one fsync (group commit).
//! * Reads of partition data (Fetch, ListOffsets, OffsetForLeaderEpoch)
//!   behind an unanswered produce wait until it is answered, so a
//!   connection reads its own writes.
//! * Metadata-only requests (ApiVersions, Metadata, Describe*) overlap
//!   freely.
//! * Everything else runs alone: after every earlier response is written,
//!   and before anything later is read.
//!
//! A request holds one of [`PIPELINE_DEPTH`] slots until its response is
//! written, so finished responses waiting behind a slow one are bounded
//! too. When reading stops (end of stream, a bad request, a read error),
//! the requests read before are still answered, as a serial server would
//! have (a long poll at most `max_wait_ms`, itself at most 30 s); then the
//! connection closes. When a write fails, the queued tasks are dropped
//! (cancelled), releasing their slots and request bytes; work already
//! submitted to a partition completes there.

pub mod api;
pub mod fetch_session;
mod frame;
pub mod groups;
pub mod handlers;
pub mod response;
pub mod router;

use kafka_protocol::error::ResponseError;
use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Buf;
use glommio::channels::channel_mesh::FullMesh;
use glommio::channels::local_channel;
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::{Semaphore, StaticPermit};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;
use sluice_engine::shard::{shard_of, ShardEnv, ShardMain};
use sluice_engine::TopicPartition;
use sluice_replication::raft::subscriber::Image;

use response::Response;
use router::{Msg, PartOp, Router};

/// Requests one connection reads ahead of their responses.
pub const PIPELINE_DEPTH: u64 = 16;

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
    /// `max.incremental.fetch.session.cache.slots`, split over the shards.
    pub fetch_session_cache_slots: usize,
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
    /// `offsets.topic.segment.bytes`: `segment.bytes` of `__consumer_offsets`
    /// when it is created, and how much a partition of it may grow before
    /// its live state is rewritten (see `groups`).
    pub offsets_topic_segment_bytes: i64,
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
            fetch_session_cache_slots: 1000,
            connections_max: 10_000,
            auto_create_topics: true,
            coordinators,
            cluster_id: "sluice".into(),
            num_partitions: -1,
            default_replication_factor: -1,
            static_configs: Default::default(),
            offsets_topic_num_partitions: 50,
            offsets_retention_minutes: 10_080,
            offsets_topic_segment_bytes: 104_857_600,
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
    pub request_bytes: Rc<Semaphore>,
    /// This shard's incremental fetch sessions (KIP-227).
    pub fetch_sessions: std::cell::RefCell<fetch_session::SessionCache>,
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
                request_bytes: Rc::new(Semaphore::new(config.queued_max_request_bytes as u64)),
                fetch_sessions: std::cell::RefCell::new(fetch_session::SessionCache::new(
                    config.fetch_session_cache_slots / shards.max(1),
                    env.shard,
                )),
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
            if let Err(e) = connection(ctx, stream).await {
                tracing::debug!(error = %e, "connection closed");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// What a request's task answers: `Ok(None)`, no response is due;
/// `Err`, close the connection.
type Answer = std::io::Result<Option<Response>>;

/// A request in flight: its task, and its pipeline slot, released once
/// its response is written.
struct InFlight {
    answer: glommio::Task<Answer>,
    _slot: StaticPermit,
}

/// How a request may overlap the others on its connection (module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Overlap {
    Produce,
    Free,
    AfterProduces,
    Alone,
}

fn overlap(key: ApiKey) -> Overlap {
    match key {
        ApiKey::Produce => Overlap::Produce,
        ApiKey::ApiVersions
        | ApiKey::Metadata
        | ApiKey::DescribeConfigs
        | ApiKey::DescribeCluster
        | ApiKey::DescribeLogDirs => Overlap::Free,
        ApiKey::Fetch | ApiKey::ListOffsets | ApiKey::OffsetForLeaderEpoch => {
            Overlap::AfterProduces
        }
        _ => Overlap::Alone,
    }
}

async fn connection(ctx: Rc<Ctx>, stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    // glommio leaves accepted sockets blocking (its own sends pass
    // MSG_DONTWAIT); the response writer's writev and sendfile need
    // O_NONBLOCK, or a client that stops reading would block the shard.
    set_nonblocking(stream.as_raw_fd())?;
    let idle = Duration::from_millis(ctx.config.connections_max_idle_ms.max(1));
    // Kafka's form of a client's host, shown by DescribeGroups.
    let client_host: Rc<str> = stream
        .peer_addr()
        .map_or_else(|_| String::new(), |a| format!("/{}", a.ip()))
        .into();
    stream.set_read_timeout(Some(idle))?;
    let fd = stream.as_raw_fd();
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_unbounded::<InFlight>();
    // Why the reader stopped, if not at a clean end of stream.
    let failed = Cell::new(None);
    let reader = async {
        if let Err(e) = read_requests(&ctx, &mut rd, tx, &client_host).await {
            failed.set(Some(e));
        }
        // The writer answers what was read before, then ends.
        futures_lite::future::pending::<std::io::Result<()>>().await
    };
    let writer = async {
        while let Some(f) = rx.recv().await {
            if let Some(resp) = f.answer.await? {
                // A client that does not take a response within
                // connections.max.idle.ms is treated as idle and closed,
                // as Kafka closes idle connections; its responses and the
                // files they hold open are let go.
                within(
                    idle,
                    "a response was not taken within connections.max.idle.ms",
                    response::write(&mut wr, fd, &resp),
                )
                .await?;
            }
        }
        Ok(())
    };
    futures_lite::future::or(reader, writer).await?;
    failed.take().map_or(Ok(()), Err)
}

/// `work`, or a `TimedOut` error saying `what` once `limit` has passed.
async fn within<T>(
    limit: Duration,
    what: &'static str,
    work: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    let late = async {
        glommio::timer::sleep(limit).await;
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
    };
    futures_lite::future::or(work, late).await
}

fn set_nonblocking(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads requests, starts each (see the module docs for the order), and
/// queues its task for the writer. Returns at a clean end of stream.
async fn read_requests<R: futures_lite::AsyncRead + Unpin>(
    ctx: &Rc<Ctx>,
    rd: &mut R,
    tx: local_channel::LocalSender<InFlight>,
    client_host: &Rc<str>,
) -> std::io::Result<()> {
    let slots = Rc::new(Semaphore::new(PIPELINE_DEPTH));
    // Produces submitted on this connection and not yet answered.
    let produces = Rc::new(Cell::new(0usize));
    let closed = |e: glommio::GlommioError<()>| std::io::Error::other(e.to_string());
    loop {
        let Some(size) = frame::read_size(rd, ctx.config.socket_request_max_bytes).await? else {
            return Ok(());
        };
        let units = size.min(ctx.config.queued_max_request_bytes) as u64;
        let room = ctx
            .request_bytes
            .acquire_static_permit(units)
            .await
            .map_err(closed)?;
        // The frame's bytes are reserved from the shard's budget until it
        // is answered, so its body must arrive within
        // connections.max.idle.ms as a whole: the socket's read timeout
        // alone restarts with every byte, and a client trickling bodies
        // could hold the budget of every other connection forever.
        let idle = Duration::from_millis(ctx.config.connections_max_idle_ms.max(1));
        let frame = within(
            idle,
            "a request body did not arrive within connections.max.idle.ms",
            frame::read_body(rd, size),
        )
        .await?;
        let (key, version, header, body) = match decode_request(frame)? {
            Decoded::Request {
                key,
                version,
                header,
                body,
            } => (key, version, header, body),
            Decoded::ApiVersionsUnsupported { correlation } => {
                let slot = slots.acquire_static_permit(1).await.map_err(closed)?;
                let body = handlers::api_versions::handle(ResponseError::UnsupportedVersion.code());
                let resp = response::encode(
                    ApiKey::ApiVersions,
                    0,
                    correlation,
                    ResponseKind::ApiVersions(body),
                );
                let answer = glommio::spawn_local(async move { resp.map(Some) });
                send(&tx, answer, slot).await?;
                continue;
            }
        };
        let correlation = header.correlation_id;
        let how = overlap(key);
        let wait_all =
            how == Overlap::Alone || (how == Overlap::AfterProduces && produces.get() > 0);
        let slot = slots
            .acquire_static_permit(if wait_all { PIPELINE_DEPTH } else { 1 })
            .await
            .map_err(closed)?;
        let answer = match *body {
            RequestKind::Produce(r) => {
                // Nothing but the records may hold the frame's bytes while
                // they are appended (see `router::start_one`).
                drop(header);
                let acks = r.acks;
                let submitted = handlers::produce::submit(ctx, r, version).await;
                produces.set(produces.get() + 1);
                let produces = produces.clone();
                glommio::spawn_local(async move {
                    let _room = room;
                    let resp = submitted.finish().await;
                    produces.set(produces.get() - 1);
                    if acks == 0 {
                        return Ok(None);
                    }
                    response::encode(key, version, correlation, ResponseKind::Produce(resp))
                        .map(Some)
                })
            }
            body if how == Overlap::Alone => {
                let answer = handle(ctx, key, version, &header, client_host, body).await;
                drop(room);
                glommio::spawn_local(async move { answer })
            }
            body => {
                let (ctx, host) = (ctx.clone(), client_host.clone());
                glommio::spawn_local(async move {
                    let _room = room;
                    handle(&ctx, key, version, &header, &host, body).await
                })
            }
        };
        send(&tx, answer, slot).await?;
    }
}

async fn send(
    tx: &local_channel::LocalSender<InFlight>,
    answer: glommio::Task<Answer>,
    slot: StaticPermit,
) -> std::io::Result<()> {
    tx.send(InFlight {
        answer,
        _slot: slot,
    })
    .await
    .map_err(|_| std::io::Error::other("connection writer gone"))
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

/// Serves and encodes one request.
async fn handle(
    ctx: &Ctx,
    key: ApiKey,
    version: i16,
    header: &RequestHeader,
    client_host: &str,
    request: RequestKind,
) -> Answer {
    let correlation = header.correlation_id;
    let response = match request {
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
            let a = handlers::fetch::handle(ctx, r, version).await;
            return response::encode_fetch(version, correlation, &a.response, a.records).map(Some);
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
            handlers::join_group::handle(ctx, r, header, client_host, version).await,
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
    response::encode(key, version, correlation, response).map(Some)
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
