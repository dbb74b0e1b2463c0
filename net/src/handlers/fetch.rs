//! Fetch: reads from each partition's owner up to the high watermark,
//! within the request's and each partition's byte limits, waiting up to
//! `max_wait_ms` for `min_bytes`. Versions 7 and later may use incremental
//! fetch sessions (KIP-227, `fetch_session`): the request's session fields
//! pick the partitions to read, and an incremental answer carries only the
//! partitions with something new.
//!
//! The records are not copied into the response: each partition's record
//! chunks (tail-cache batches or a segment file region) travel beside it
//! and `response::encode_fetch` puts them in place for `sendfile`.
//!
//! ## Long poll
//! When a read returns less than `min_bytes`, the fetch registers with the
//! high watermark of each partition it read (on the partitions' owners,
//! [`wait_for_data`]) and sleeps until one of them has data past the
//! offset it asked for, or `max_wait_ms` passes. Nothing polls: a waiting
//! consumer costs no CPU, and a produce wakes it once the data is
//! acknowledged.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use sluice_broker::router::first_of;
use sluice_engine::partition::Chunk;
use sluice_engine::{Offset, TopicPartition};
use sluice_replication::metadata::MetadataState;
use uuid::Uuid;

use super::{engine_code, epoch_error, new_leader, partition_error, topic_name};
use crate::ctx::Ctx;
use crate::fetch_session::{FetchContext, SessionPartition};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, Fetch);
        let version = req.reply.version;
        let a = handle(&ctx, r, version).await;
        crate::response::encode_fetch(version, req.reply.correlation, &a.response, a.records)
            .map(Some)
    })
}

/// A partition's read, as its owner receives it.
struct Read {
    offset: i64,
    max_bytes: usize,
}

/// A partition's read, done.
struct Fetched {
    /// Whole batches from the tail cache, or one segment file region.
    chunks: Vec<Chunk>,
    high_watermark: i64,
    last_stable: i64,
    log_start: i64,
}

/// On the partition's owner: reads below the high watermark.
async fn read(ctx: Rc<Ctx>, tp: TopicPartition, r: Read) -> Result<Fetched, i16> {
    let p = ctx
        .partitions
        .open(&tp)
        .await
        .map_err(|e| engine_code(&e))?;
    let out = p
        .read_committed(Offset(r.offset), r.max_bytes)
        .await
        .map_err(|e| engine_code(&e))?;
    let w = out.watermarks;
    Ok(Fetched {
        chunks: out.chunks,
        high_watermark: w.high_watermark.0,
        last_stable: w.last_stable.0,
        log_start: w.log_start.0,
    })
}

/// On the partitions' owner: resolves once one of `parts` it has open has
/// data above its offset (its high watermark passed it); never, if none.
async fn watch(ctx: Rc<Ctx>, parts: Vec<(TopicPartition, i64)>) {
    let waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = parts
        .into_iter()
        .filter_map(|(tp, offset)| ctx.partitions.get(&tp).map(|p| (p, offset)))
        .map(|(p, offset)| {
            Box::pin(p.wait_high_watermark_above(Offset(offset)))
                as Pin<Box<dyn Future<Output = ()>>>
        })
        .collect();
    first_of(waits).await;
}

/// Waits until one of `parts` has data above its offset, or until
/// `until`. Each owner registers with its partitions; nothing polls.
async fn wait_for_data(ctx: &Rc<Ctx>, parts: Vec<(TopicPartition, i64)>, until: Instant) {
    ctx.router.first(ctx, parts, until, watch).await;
}

/// The longest a fetch waits for data, whatever the client asks.
const WAIT_MS_MAX: i32 = 30_000;

/// A fetch response whose records travel beside it: `records` holds the
/// chunks of each partition whose `records` is the placeholder, in order.
pub(crate) struct FetchAnswer {
    pub response: FetchResponse,
    pub records: Vec<Vec<Chunk>>,
}

impl FetchAnswer {
    /// Keeps the partitions `keep` (given the topic, the partition and its
    /// record bytes) says yes to, with their records; drops topics left
    /// without partitions.
    fn retain_partitions(&mut self, mut keep: impl FnMut(&str, &PartitionData, u64) -> bool) {
        let mut records = std::mem::take(&mut self.records).into_iter();
        let mut kept = Vec::new();
        for t in &mut self.response.responses {
            let topic = t.topic.0.to_string();
            t.partitions.retain(|pd| {
                let placed = pd
                    .records
                    .as_ref()
                    .is_some_and(crate::response::is_records_placeholder);
                let chunks = if placed { records.next() } else { None };
                let bytes = chunks.iter().flatten().map(Chunk::len).sum();
                let keep = keep(&topic, pd, bytes);
                if keep {
                    kept.extend(chunks);
                }
                keep
            });
        }
        self.response.responses.retain(|t| !t.partitions.is_empty());
        self.records = kept;
    }
}

/// The image's names for the topics of a request: by name, or by topic id
/// from version 13 (KIP-516).
struct Names<'a> {
    state: &'a MetadataState,
    by_id: Option<HashMap<Uuid, &'a str>>,
}

impl<'a> Names<'a> {
    fn new(state: &'a MetadataState, version: i16) -> Self {
        let by_id = (version >= 13).then(|| {
            state
                .topics
                .values()
                .map(|t| (Uuid::from_bytes(t.id), t.name.as_str()))
                .collect()
        });
        Self { state, by_id }
    }

    /// The image's name and partition count for a topic of the request.
    fn known(&self, name: &TopicName, id: &Uuid) -> Option<(&'a str, usize)> {
        let name: &str = match &self.by_id {
            Some(by_id) => by_id.get(id).copied(),
            None => self
                .state
                .topics
                .get_key_value(name.0.as_str())
                .map(|(k, _)| k.as_str()),
        }?;
        Some((name, self.state.topics[name].partitions.len()))
    }
}

/// A topic's partitions the image does not have: (name, id, partitions).
type Unknown<'r> = (&'r TopicName, Uuid, Vec<i32>);

/// The partitions a request asks for that exist, each once at the last
/// position asked (Kafka keeps a request's partitions in a map), and those
/// that do not. What is copied per partition and kept in sessions is so
/// bounded by the cluster's partitions, whatever a request carries.
fn resolve<'r>(
    names: &Names<'_>,
    req: &'r FetchRequest,
) -> (Vec<SessionPartition>, Vec<Unknown<'r>>) {
    let mut unknown = Vec::new();
    let mut asked: Vec<SessionPartition> = Vec::new();
    let mut seen: HashMap<(&str, i32), usize> = HashMap::new();
    for t in &req.topics {
        let (name, count) = names.known(&t.topic, &t.topic_id).unzip();
        let count = count.unwrap_or(0);
        let mut missing = Vec::new();
        for p in &t.partitions {
            let exists = usize::try_from(p.partition).is_ok_and(|i| i < count);
            let Some(name) = name.filter(|_| exists) else {
                missing.push(p.partition);
                continue;
            };
            let mut sp = SessionPartition::new(
                name.to_string(),
                p.partition,
                p.fetch_offset,
                p.partition_max_bytes,
            );
            sp.current_leader_epoch = p.current_leader_epoch;
            match seen.entry((name, p.partition)) {
                std::collections::hash_map::Entry::Occupied(at) => asked[*at.get()] = sp,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(asked.len());
                    asked.push(sp);
                }
            }
        }
        if !missing.is_empty() {
            unknown.push((&t.topic, t.topic_id, missing));
        }
    }
    (asked, unknown)
}

/// The request's fetch session (v7+), and the partitions to read.
fn session_context(
    ctx: &Ctx,
    names: &Names<'_>,
    req: &FetchRequest,
    asked: Vec<SessionPartition>,
    partitions_max: usize,
    now: Instant,
) -> (FetchContext, Vec<SessionPartition>) {
    // Only what could be in a session (existing partitions of known
    // topics) is copied, once each.
    let forget: std::collections::BTreeSet<(&str, i32)> = req
        .forgotten_topics_data
        .iter()
        .filter_map(|f| names.known(&f.topic, &f.topic_id).map(|k| (k, f)))
        .flat_map(|((name, count), f)| {
            f.partitions
                .iter()
                .filter(move |p| usize::try_from(**p).is_ok_and(|i| i < count))
                .map(move |p| (name, *p))
        })
        .collect();
    let forget: Vec<(String, i32)> = forget
        .into_iter()
        .map(|(name, p)| (name.to_string(), p))
        .collect();
    ctx.fetch_sessions.borrow_mut().context(
        req.session_id,
        req.session_epoch,
        asked,
        &forget,
        partitions_max,
        now,
    )
}

async fn handle(ctx: &Rc<Ctx>, req: FetchRequest, version: i16) -> FetchAnswer {
    let now = Instant::now();
    let deadline = now + Duration::from_millis(req.max_wait_ms.clamp(0, WAIT_MS_MAX) as u64);
    // fetch.max.bytes bounds what one response holds, whatever is asked.
    let cap = ctx.config.fetch_max_bytes;
    let limit = if req.max_bytes <= 0 {
        cap
    } else {
        (req.max_bytes as usize).min(cap)
    };
    // A topic id the image does not know (v13+) is answered with
    // UNKNOWN_TOPIC_ID, a name or partition it does not have with
    // UNKNOWN_TOPIC_OR_PARTITION; neither goes into the session.
    let state = ctx.image.load_full();
    let names = Names::new(&state, version);
    let (asked, unknown) = resolve(&names, &req);
    // What one session may hold: the cluster's partitions, plus slack
    // (counted only when a session may take partitions).
    let partitions_max = if asked.is_empty() || version < 7 || req.session_epoch == -1 {
        usize::MAX
    } else {
        crate::fetch_session::partitions_max(
            state.topics.values().map(|t| t.partitions.len()).sum(),
        )
    };
    let (context, wanted) = if version >= 7 {
        session_context(ctx, &names, &req, asked, partitions_max, now)
    } else {
        (FetchContext::Sessionless, asked)
    };
    if let FetchContext::Error(code) = context {
        let mut response = FetchResponse::default();
        response.error_code = code;
        return FetchAnswer {
            response,
            records: Vec::new(),
        };
    }
    let min_bytes = req.min_bytes.max(0) as usize;
    let mut answer = read_until(ctx, &wanted, version, limit, min_bytes, deadline).await;
    keep_in_session(ctx, context, wanted, partitions_max, now, &mut answer);
    answer_unknown(unknown, version, &mut answer);
    answer
}

/// Reads every partition until `min_bytes` came back, a partition failed,
/// or `deadline` passed (see the module docs on the long poll).
async fn read_until(
    ctx: &Rc<Ctx>,
    wanted: &[SessionPartition],
    version: i16,
    limit: usize,
    min_bytes: usize,
    deadline: Instant,
) -> FetchAnswer {
    loop {
        let (answer, bytes, waits) = fetch_once(ctx, wanted, version, limit).await;
        let errors = answer
            .response
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .any(|p| p.error_code != 0);
        if bytes >= min_bytes.max(1) || errors || Instant::now() >= deadline || waits.is_empty() {
            return answer;
        }
        wait_for_data(ctx, waits, deadline).await;
    }
}

/// Creates or updates the fetch session, and keeps in an incremental
/// answer only the partitions with something new (KIP-227).
fn keep_in_session(
    ctx: &Ctx,
    context: FetchContext,
    wanted: Vec<SessionPartition>,
    partitions_max: usize,
    now: Instant,
    answer: &mut FetchAnswer,
) {
    let mut sessions = ctx.fetch_sessions.borrow_mut();
    let id = match context {
        FetchContext::Full => sessions.create(wanted, partitions_max, now),
        FetchContext::Incremental(id) => id,
        FetchContext::Sessionless | FetchContext::Error(_) => 0,
    };
    // An incremental session evicted while this fetch waited: the answer
    // goes out in full with session id 0, and the client starts over.
    let Some(session) = sessions.get_mut(id) else {
        return;
    };
    let full = context == FetchContext::Full;
    let mut served = Vec::new();
    answer.retain_partitions(|topic, pd, bytes| {
        if bytes > 0 && !full {
            served.push((topic.to_string(), pd.partition_index));
        }
        let changed = session.get_mut(topic, pd.partition_index).is_none_or(|p| {
            p.must_respond(
                bytes,
                pd.error_code,
                pd.high_watermark,
                pd.last_stable_offset,
                pd.log_start_offset,
            )
        });
        full || changed
    });
    session.move_to_end(&served);
    answer.response.session_id = id;
}

/// Adds the partitions the image does not have, with their error.
fn answer_unknown(unknown: Vec<Unknown<'_>>, version: i16, answer: &mut FetchAnswer) {
    for (name, id, partitions) in unknown {
        let mut tr = FetchableTopicResponse::default();
        let code = if version >= 13 {
            tr.topic_id = id;
            ResponseError::UnknownTopicId.code()
        } else {
            tr.topic = name.clone();
            ResponseError::UnknownTopicOrPartition.code()
        };
        tr.partitions = partitions
            .into_iter()
            .map(|p| {
                let mut pd = unanswered(p);
                pd.error_code = code;
                pd
            })
            .collect();
        answer.response.responses.push(tr);
    }
}

/// One read of every partition: the answer, its record bytes, and where
/// to wait for more.
async fn fetch_once(
    ctx: &Rc<Ctx>,
    wanted: &[SessionPartition],
    version: i16,
    limit: usize,
) -> (FetchAnswer, usize, Vec<(TopicPartition, i64)>) {
    let state = ctx.image.load_full();
    let mut ops = Vec::new();
    let mut keys = Vec::new();
    let mut slots = Vec::new();
    let mut resp = FetchResponse::default();
    for p in wanted {
        // Consecutive partitions of a topic share its entry.
        if resp
            .responses
            .last()
            .is_none_or(|t| t.topic.0.as_str() != p.topic)
        {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = topic_name(&p.topic);
            tr.topic_id = state
                .topics
                .get(&p.topic)
                .map_or(Uuid::nil(), |t| Uuid::from_bytes(t.id));
            resp.responses.push(tr);
        }
        let ti = resp.responses.len() - 1;
        let tr = &mut resp.responses[ti];
        let mut pd = unanswered(p.partition);
        let error =
            partition_error(&state, ctx.config.broker_id, &p.topic, p.partition).or_else(|| {
                let current = state.topics[&p.topic].partitions[p.partition as usize].leader_epoch;
                epoch_error(p.current_leader_epoch, current)
            });
        match error {
            Some(code) => pd.error_code = code,
            None => {
                let tp = TopicPartition::new(p.topic.clone(), p.partition);
                let r = Read {
                    offset: p.fetch_offset,
                    max_bytes: (p.max_bytes.max(0) as usize).min(limit),
                };
                keys.push((tp.clone(), p.fetch_offset));
                ops.push((tp, Ok(r)));
                slots.push((ti, tr.partitions.len()));
            }
        }
        tr.partitions.push(pd);
    }
    let replies = ctx.on_owners(ops, read).await;
    // The partitions are read at once; what goes past the response's limit
    // is dropped here (nothing was copied), as if read one after another.
    let mut left = limit;
    let mut records = Vec::new();
    let mut total = 0usize;
    let mut waits = Vec::new();
    for (((ti, pi), (tp, offset)), reply) in slots.into_iter().zip(keys).zip(replies) {
        let pd = &mut resp.responses[ti].partitions[pi];
        match reply {
            Ok(f) => {
                pd.high_watermark = f.high_watermark;
                pd.last_stable_offset = f.last_stable;
                if version >= 5 {
                    pd.log_start_offset = f.log_start;
                }
                let chunks = within(f.chunks, &mut left, total == 0);
                let bytes: usize = chunks.iter().map(|c| c.len() as usize).sum();
                total += bytes;
                // More data for this partition means its high watermark
                // moves past both what it asked for and what it was told.
                waits.push((tp, offset.max(f.high_watermark)));
                pd.records = Some(crate::response::records_placeholder());
                records.push(chunks);
            }
            Err(code) => pd.error_code = code,
        }
    }
    point_to_leaders(&state, version, &mut resp);
    let answer = FetchAnswer {
        response: resp,
        records,
    };
    (answer, total, waits)
}

/// Names the current leader of each partition refused because it moved
/// (KIP-951): in the partition from v12, its endpoint from v16.
fn point_to_leaders(state: &MetadataState, version: i16, resp: &mut FetchResponse) {
    if version < 12 {
        return;
    }
    let mut endpoints = std::collections::BTreeMap::new();
    for t in &mut resp.responses {
        for pd in &mut t.partitions {
            let Some(l) = new_leader(state, t.topic.0.as_str(), pd.partition_index, pd.error_code)
            else {
                continue;
            };
            pd.current_leader.leader_id = kafka_protocol::messages::BrokerId(l.id);
            pd.current_leader.leader_epoch = l.epoch;
            endpoints.insert(l.id, l);
        }
    }
    if version >= 16 {
        resp.node_endpoints = endpoints
            .into_values()
            .map(|l| {
                let mut e = kafka_protocol::messages::fetch_response::NodeEndpoint::default();
                e.node_id = kafka_protocol::messages::BrokerId(l.id);
                e.host = kafka_protocol::protocol::StrBytes::from_string(l.host);
                e.port = l.port;
                e.rack = l.rack.map(kafka_protocol::protocol::StrBytes::from_string);
                e
            })
            .collect();
    }
}

/// A partition's entry before it is read: no offsets known.
fn unanswered(partition: i32) -> PartitionData {
    let mut pd = PartitionData::default();
    pd.partition_index = partition;
    pd.high_watermark = -1;
    pd.last_stable_offset = -1;
    pd.log_start_offset = -1;
    pd.preferred_read_replica = kafka_protocol::messages::BrokerId(-1);
    pd
}

/// The chunks that fit in `left` bytes (which shrinks by them); the first
/// chunk of the response goes whole when `first` (KIP-74). A file region
/// may be cut anywhere: a response may end inside a batch.
fn within(chunks: Vec<Chunk>, left: &mut usize, mut first: bool) -> Vec<Chunk> {
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        let len = c.len() as usize;
        if len <= *left || first {
            *left = left.saturating_sub(len);
            out.push(c);
        } else if let (Chunk::File(mut f), true) = (c, *left > 0) {
            f.len = *left as u64;
            *left = 0;
            out.push(Chunk::File(f));
            break;
        } else {
            break;
        }
        first = false;
    }
    out
}
