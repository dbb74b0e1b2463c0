//! Cross-shard transport: "run this on the shard that owns that partition".
//!
//! The router knows nothing about what it carries. A job is a closure sent
//! to its owning shard over a bounded glommio channel (the mesh); it runs
//! there with that shard's context `C` and sends its own reply. Handlers
//! keep the owner-side part of their API beside the rest of it and call
//! [`Router::submit`] (or [`Router::run`]) with it.
//!
//! ## Messages
//! | message | from → to | carries | answered by |
//! |---|---|---|---|
//! | [`Job`] | any shard → the owner of the partitions it names | a closure and its inputs, one message per destination shard per call | the closure itself, on a oneshot it captured |
//!
//! A call's partitions are grouped by owner (`shard_of`), so a request
//! touching many partitions sends each other shard one message; work for
//! this shard runs in place, without a message.
//!
//! ## Two phases, and the order they keep
//! A job has a *start* phase, awaited on the owner before it takes the next
//! message from the same shard, and a *finish* phase, spawned. Produce
//! appends (assigning offsets) in its start phase and waits for the
//! acknowledgement in its finish phase. Invariant: **work submitted from
//! one shard reaches each partition in submission order**, because
//! * local start phases run inside [`Router::submit`], before it returns;
//! * the mesh channels are FIFO, and an owner runs the start phases of one
//!   shard's messages in arrival order, each to its end (including a wait
//!   for write-buffer room) before it takes the next message.
//!
//! (A start phase is an async block that yields its finish phase, a future:
//! clippy's `async_yields_async` is what this module means.)
//!
//! A connection awaits `submit` for its requests one at a time and lets
//! the finish phases overlap: pipelined produces keep their order per
//! partition and share one fsync.
//!
//! ## Bounds
//! The mesh holds [`MESH_CAPACITY`] messages per pair of shards; a sender
//! waits for room. A reply is one message per call and destination.

#![allow(clippy::async_yields_async)]

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{FullMesh, Receivers, Senders};
use sluice_engine::shard::shard_of;
use sluice_engine::TopicPartition;

/// Messages in flight from one shard to another before a sender waits.
pub const MESH_CAPACITY: usize = 1024;

/// A finish phase: runs on the owner after the start phase, spawned.
pub type Finish = Pin<Box<dyn Future<Output = ()>>>;

/// A job for another shard: the closure runs there with its context; the
/// future it returns is the start phase, whose output is the finish phase.
pub type Job<C> = Box<dyn FnOnce(Rc<C>) -> Pin<Box<dyn Future<Output = Finish>>> + Send>;

/// A finish phase of one partition's work, run on this shard.
type LocalFinish<O> = Pin<Box<dyn Future<Output = O>>>;

/// Replies due from another shard, and the positions they go to.
type Remote<O> = (Vec<usize>, Option<oneshot::Receiver<Vec<O>>>);

/// One shard's share of a call: the items' positions, and the items.
type Share<I> = (Vec<usize>, Vec<(TopicPartition, I)>);

/// Work started by [`Router::submit`]; [`Submitted::replies`] finishes it.
pub struct Submitted<O> {
    n: usize,
    local: Vec<(usize, LocalFinish<O>)>,
    remote: Vec<Remote<O>>,
}

impl<O> Submitted<O> {
    /// Finishes the work; one reply per item, in submission order. `None`
    /// where the owning shard could not answer (it is stopping).
    pub async fn replies(self) -> Vec<Option<O>> {
        let mut out: Vec<Option<O>> = (0..self.n).map(|_| None).collect();
        for (i, finish) in self.local {
            out[i] = Some(finish.await);
        }
        for (order, rx) in self.remote {
            let Some(rx) = rx else { continue };
            let Ok(replies) = rx.await else { continue };
            debug_assert_eq!(replies.len(), order.len(), "one reply per item");
            for (i, r) in order.into_iter().zip(replies) {
                out[i] = Some(r);
            }
        }
        out
    }
}

/// The shards' mesh, before each shard joins it. Cloned into every shard.
pub struct Mesh<C> {
    /// `FullMesh` is Send but not Sync: each shard takes its clone under
    /// the lock.
    mesh: Arc<Mutex<FullMesh<Job<C>>>>,
    /// Each shard's mesh peer id, filled in as the shards join.
    peers: Arc<Mutex<Vec<Option<usize>>>>,
}

impl<C> Clone for Mesh<C> {
    fn clone(&self) -> Self {
        Self {
            mesh: self.mesh.clone(),
            peers: self.peers.clone(),
        }
    }
}

impl<C: 'static> Mesh<C> {
    pub fn new(shards: usize) -> Self {
        Self {
            mesh: Arc::new(Mutex::new(FullMesh::full(shards, MESH_CAPACITY))),
            peers: Arc::new(Mutex::new(vec![None; shards])),
        }
    }

    /// Joins the mesh from `shard` (on that shard), waits until every shard
    /// has, and gives the shard's router and the receivers to
    /// [`Router::serve`].
    pub async fn join(&self, shard: usize) -> std::io::Result<(Router<C>, Receivers<Job<C>>)> {
        let mesh = self.mesh.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (senders, receivers) = mesh
            .join()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let shards = senders.nr_consumers();
        self.peers.lock().unwrap_or_else(|p| p.into_inner())[shard] = Some(senders.peer_id());
        let peers = loop {
            let t = self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if t.iter().all(Option::is_some) {
                break t.into_iter().map(|p| p.expect("checked")).collect();
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        };
        Ok((Router::new(shard, shards, senders, peers), receivers))
    }
}

/// Routes work from one shard to the owners of partitions.
pub struct Router<C> {
    shard: usize,
    shards: usize,
    senders: Senders<Job<C>>,
    /// Mesh peer id of each shard (the mesh numbers peers by join order).
    peers: Vec<usize>,
}

impl<C: 'static> Router<C> {
    pub fn new(shard: usize, shards: usize, senders: Senders<Job<C>>, peers: Vec<usize>) -> Self {
        assert_eq!(peers.len(), shards, "a mesh peer id per shard");
        Self {
            shard,
            shards,
            senders,
            peers,
        }
    }

    /// This shard.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The shard that owns `tp`.
    pub fn owner(&self, tp: &TopicPartition) -> usize {
        shard_of(tp, self.shards)
    }

    /// Serves the jobs other shards send here, with this shard's context:
    /// start phases in arrival order per sender, finish phases spawned.
    pub fn serve(mut receivers: Receivers<Job<C>>, local: Rc<C>) {
        for (_, stream) in receivers.streams() {
            let local = local.clone();
            glommio::spawn_local(async move {
                while let Some(job) = stream.recv().await {
                    let finish = job(local.clone()).await;
                    glommio::spawn_local(finish).detach();
                }
            })
            .detach();
        }
    }

    /// Sends `job` to `shard`; false if that shard is gone.
    async fn send(&self, shard: usize, job: Job<C>) -> bool {
        debug_assert_ne!(shard, self.shard, "local work runs in place");
        self.senders.send_to(self.peers[shard], job).await.is_ok()
    }

    /// Starts `op` for each item on the shard that owns its partition (see
    /// the module docs for the order this keeps); finish with
    /// [`Submitted::replies`]. `op` returns the start phase, whose output is
    /// the finish phase. `local` is this shard's context.
    pub async fn submit<I, O, S, SF, FF>(
        &self,
        local: &Rc<C>,
        items: Vec<(TopicPartition, I)>,
        op: S,
    ) -> Submitted<O>
    where
        I: Send + 'static,
        O: Send + 'static,
        S: Fn(Rc<C>, TopicPartition, I) -> SF + Send + Copy + 'static,
        SF: Future<Output = FF> + 'static,
        FF: Future<Output = O> + 'static,
    {
        let n = items.len();
        let mut by_shard: Vec<Share<I>> =
            (0..self.shards).map(|_| (Vec::new(), Vec::new())).collect();
        for (i, (tp, input)) in items.into_iter().enumerate() {
            let g = &mut by_shard[self.owner(&tp)];
            g.0.push(i);
            g.1.push((tp, input));
        }
        let mut local_work = Vec::new();
        let mut remote = Vec::new();
        for (shard, (order, items)) in by_shard.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            if shard == self.shard {
                for (i, (tp, input)) in order.into_iter().zip(items) {
                    let finish: LocalFinish<O> = Box::pin(op(local.clone(), tp, input).await);
                    local_work.push((i, finish));
                }
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let job: Job<C> = Box::new(move |owner: Rc<C>| {
                Box::pin(async move {
                    let mut finishes = Vec::with_capacity(items.len());
                    for (tp, input) in items {
                        finishes.push(op(owner.clone(), tp, input).await);
                    }
                    Box::pin(async move {
                        let mut replies = Vec::with_capacity(finishes.len());
                        for f in finishes {
                            replies.push(f.await);
                        }
                        let _ = tx.send(replies);
                    }) as Finish
                })
            });
            let sent = self.send(shard, job).await;
            remote.push((order, sent.then_some(rx)));
        }
        Submitted {
            n,
            local: local_work,
            remote,
        }
    }

    /// Runs `op` for each item on the shard that owns its partition; one
    /// reply per item, in order (`None`: the owner could not answer). The
    /// whole of `op` is the finish phase: it keeps no order with other work.
    pub async fn run<I, O, F, FF>(
        &self,
        local: &Rc<C>,
        items: Vec<(TopicPartition, I)>,
        op: F,
    ) -> Vec<Option<O>>
    where
        I: Send + 'static,
        O: Send + 'static,
        F: Fn(Rc<C>, TopicPartition, I) -> FF + Send + Copy + 'static,
        FF: Future<Output = O> + 'static,
    {
        let start = move |c: Rc<C>, tp: TopicPartition, input: I| async move { op(c, tp, input) };
        self.submit(local, items, start).await.replies().await
    }

    /// Resolves when `wait` resolves on any owner for its share of `items`,
    /// or at `until`. A remote wait is dropped once this call is.
    pub async fn first<I, F, FF>(
        &self,
        local: &Rc<C>,
        items: Vec<(TopicPartition, I)>,
        until: Instant,
        wait: F,
    ) where
        I: Send + 'static,
        F: Fn(Rc<C>, Vec<(TopicPartition, I)>) -> FF + Send + Copy + 'static,
        FF: Future<Output = ()> + 'static,
    {
        let mut by_shard: Vec<Vec<(TopicPartition, I)>> =
            (0..self.shards).map(|_| Vec::new()).collect();
        for (tp, input) in items {
            by_shard[self.owner(&tp)].push((tp, input));
        }
        let mut waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::new();
        for (shard, items) in by_shard.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            if shard == self.shard {
                waits.push(Box::pin(wait(local.clone(), items)));
                continue;
            }
            let (mut tx, rx) = oneshot::channel::<()>();
            let job: Job<C> = Box::new(move |owner: Rc<C>| {
                Box::pin(async move {
                    Box::pin(async move {
                        let asker_gone = tx.cancellation();
                        futures_lite::future::or(wait(owner, items), asker_gone).await;
                        let _ = tx.send(());
                    }) as Finish
                })
            });
            if self.send(shard, job).await {
                waits.push(Box::pin(async move {
                    let _ = rx.await;
                }));
            }
        }
        waits.push(Box::pin(sleep_until(until)));
        first_of(waits).await;
    }
}

/// Sleeps until `until`.
pub async fn sleep_until(until: Instant) {
    glommio::timer::sleep(until.saturating_duration_since(Instant::now())).await;
}

/// Resolves when the first of `futures` does.
pub async fn first_of(mut futures: Vec<Pin<Box<dyn Future<Output = ()>>>>) {
    futures_lite::future::poll_fn(|cx| {
        if futures.iter_mut().any(|f| f.as_mut().poll(cx).is_ready()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
