//! The cross-shard hop: a message to another shard over a glommio channel
//! mesh and its reply on a oneshot channel, as `net/src/router.rs` routes
//! partition work to the shard that owns it. Two executors (shards), pinned
//! as the broker's; the time is per round trip. `round_trip_spin_100us`
//! lets idle executors spin 100 µs before parking, to show what the
//! wake-ups cost.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::FullMesh;
use glommio::{LocalExecutorBuilder, Placement};

struct Msg {
    value: u64,
    reply: oneshot::Sender<u64>,
}

/// Shard `n`'s placement: pinned to core `n` as the broker pins its shards
/// (engine/src/shard.rs) when there are enough cores.
fn placement(n: usize) -> Placement {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if cores >= 2 {
        Placement::Fixed(n)
    } else {
        Placement::Unbound
    }
}

/// Two shards; `spin`: how long an idle executor spins before it parks
/// (glommio's `spin_before_park`; the broker does not set it).
fn hop(c: &mut Criterion, name: &str, spin: Option<Duration>) {
    let builder = |n: usize| {
        let b = LocalExecutorBuilder::new(placement(n)).name(&format!("shard-{n}"));
        match spin {
            Some(d) => b.spin_before_park(d),
            None => b,
        }
    };
    let mesh = FullMesh::<Msg>::full(2, 1024);
    let server_mesh = mesh.clone();
    let server = builder(1)
        .spawn(move || async move {
            let (_senders, mut receivers) = server_mesh.join().await.expect("join the mesh");
            let mut tasks = Vec::new();
            for (_, stream) in receivers.streams() {
                tasks.push(glommio::spawn_local(async move {
                    while let Some(m) = stream.recv().await {
                        // The requester waits for every reply.
                        m.reply.send(m.value + 1).expect("the requester waits");
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
        })
        .expect("spawn shard 1");
    let (iters_tx, iters_rx) = mpsc::channel::<u64>();
    let (took_tx, took_rx) = mpsc::channel::<Duration>();
    let client = builder(0)
        .spawn(move || async move {
            let (senders, _receivers) = mesh.join().await.expect("join the mesh");
            let peer = 1 - senders.peer_id();
            // Blocking here is fine: this shard runs nothing else.
            while let Ok(iters) = iters_rx.recv() {
                let start = Instant::now();
                for i in 0..iters {
                    let (tx, rx) = oneshot::channel();
                    let msg = Msg {
                        value: i,
                        reply: tx,
                    };
                    if senders.send_to(peer, msg).await.is_err() {
                        panic!("shard 1 is gone");
                    }
                    black_box(rx.await.expect("a reply"));
                }
                took_tx.send(start.elapsed()).expect("the bench waits");
            }
        })
        .expect("spawn shard 0");
    let mut g = c.benchmark_group("cross_shard");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            iters_tx.send(iters).expect("shard 0 runs");
            took_rx.recv().expect("shard 0 answers")
        })
    });
    g.finish();
    drop(iters_tx);
    client.join().expect("shard 0");
    server.join().expect("shard 1");
}

fn cross_shard(c: &mut Criterion) {
    hop(c, "round_trip", None);
    hop(c, "round_trip_spin_100us", Some(Duration::from_micros(100)));
}

criterion_group!(benches, cross_shard);
criterion_main!(benches);
