//! One client connection: reading requests ahead (pipelining), and writing
//! the responses strictly in request order.
//!
//! Each request becomes a task, queued in request order; the writer awaits
//! them in that order. Kafka's guarantee that a connection's requests are
//! *processed* in order is kept where it matters, by each API's
//! [`Class`] in the dispatch table:
//! * Produce: the reader submits each produce's appends (offsets assigned,
//!   or the work queued to the owning shard) before it reads the next
//!   request; only the wait for the acknowledgement overlaps. So one
//!   connection's produces reach every partition in request order (see
//!   `sluice_broker::router`), and several of them share one fsync.
//! * Reads of partition data (Fetch, ListOffsets, OffsetForLeaderEpoch)
//!   behind an unanswered produce wait until it is answered, so a
//!   connection reads its own writes.
//! * Metadata reads (ApiVersions, Metadata, DescribeConfigs,
//!   DescribeCluster, DescribeLogDirs) overlap freely.
//! * Everything else runs alone: after every earlier response is written,
//!   and before anything later is read.
//!
//! ## Bounds
//! A request holds one of [`PIPELINE_DEPTH`] slots until its response is
//! written, so finished responses waiting behind a slow one are bounded
//! too, and its frame's bytes within the shard's `queued.max.request.bytes`
//! until it is answered. A frame's body must arrive, and each response must
//! be taken by the client, within `connections.max.idle.ms`, or the
//! connection is closed. When reading stops (end of stream, a bad request,
//! a read error), the requests read before are still answered, as a serial
//! server would have (a long poll at most `max_wait_ms`, itself at most
//! 30 s); then the connection closes. When a write fails, the queued tasks
//! are dropped (cancelled), releasing their slots and request bytes; work
//! already submitted to a partition completes there.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};

use crate::ctx::Ctx;
use crate::dispatch::{self, Api, Class, Decoded};
use crate::request::{mismatch, Answer, Reply, Request};
use crate::{frame, response};

/// Requests one connection reads ahead of their responses.
pub const PIPELINE_DEPTH: u64 = 16;

/// A request in flight: its task, and its pipeline slot, released once
/// its response is written.
struct InFlight {
    answer: glommio::Task<Answer>,
    _slot: StaticPermit,
}

/// Serves one connection until it closes.
pub(crate) async fn serve(ctx: Rc<Ctx>, stream: TcpStream) -> std::io::Result<()> {
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
pub(crate) async fn within<T>(
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

pub(crate) fn set_nonblocking(fd: std::os::fd::RawFd) -> std::io::Result<()> {
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
    let idle = Duration::from_millis(ctx.config.connections_max_idle_ms.max(1));
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
        let frame = within(
            idle,
            "a request body did not arrive within connections.max.idle.ms",
            frame::read_body(rd, size),
        )
        .await?;
        let (key, version, header, body) = match dispatch::decode_request(frame)? {
            Decoded::Request {
                key,
                version,
                header,
                body,
            } => (key, version, header, body),
            Decoded::ApiVersionsUnsupported { correlation } => {
                let slot = slots.acquire_static_permit(1).await.map_err(closed)?;
                let answer = dispatch::answer_unsupported_api_versions(correlation);
                let answer = glommio::spawn_local(async move { answer });
                send(&tx, answer, slot).await?;
                continue;
            }
        };
        let api = dispatch::api(key).ok_or_else(|| mismatch(key))?;
        let wait_all =
            api.class == Class::Alone || (api.class == Class::AfterProduces && produces.get() > 0);
        let slot = slots
            .acquire_static_permit(if wait_all { PIPELINE_DEPTH } else { 1 })
            .await
            .map_err(closed)?;
        let request = Request {
            reply: Reply {
                key,
                version,
                correlation: header.correlation_id,
            },
            header,
            client_host: client_host.clone(),
            body: *body,
        };
        let answer = start(ctx, api, request, room, &produces).await;
        send(&tx, answer, slot).await?;
    }
}

/// Starts a request as its API's class says (module docs): its task,
/// holding the frame's bytes (`room`) until it is answered.
async fn start(
    ctx: &Rc<Ctx>,
    api: &Api,
    request: Request,
    room: StaticPermit,
    produces: &Rc<Cell<usize>>,
) -> glommio::Task<Answer> {
    match api.class {
        Class::Produce => {
            let answering = (api.serve)(ctx.clone(), request).await;
            produces.set(produces.get() + 1);
            let produces = produces.clone();
            glommio::spawn_local(async move {
                let _room = room;
                let answer = answering.await;
                produces.set(produces.get() - 1);
                answer
            })
        }
        Class::Alone => {
            let answer = (api.serve)(ctx.clone(), request).await.await;
            drop(room);
            glommio::spawn_local(async move { answer })
        }
        Class::Free | Class::AfterProduces => {
            let serve = (api.serve)(ctx.clone(), request);
            glommio::spawn_local(async move {
                let _room = room;
                serve.await.await
            })
        }
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
