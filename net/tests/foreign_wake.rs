//! A task woken from another shard, then dropped by its handle at home.
//!
//! A Produce or Fetch waits for the partition's shard in a task of the
//! connection's shard; the other shard's reply wakes it from its own thread
//! (a foreign wake), and the connection drops the task's handle as soon as
//! it has the answer. glommio 0.9.0 let a foreign thread take a task's
//! reference count to zero and only then send a new reference home; in
//! between, the handle's drop at home found no references and freed the
//! task, and the foreign thread then wrote into freed memory. The broker
//! died of it with `free(): double free detected in tcache 2` about once
//! in a hundred 30-second runs at 464k msg/s, and AddressSanitizer showed
//! the use after free (vendor/glommio/SLUICE-PATCHES.md). This test holds
//! the foreign thread at that moment with the patched copy's test hook.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Mutex;
use std::task::{Poll, Waker};
use std::time::Duration;

#[test]
fn a_task_outlives_the_drop_of_its_handle_while_another_thread_drops_its_last_waker() {
    let (inside_tx, inside_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (inside_tx, go_rx) = (Mutex::new(inside_tx), Mutex::new(go_rx));
    let hooked = glommio::sluice_test_hooks::set_before_hand_home(Box::new(move || {
        inside_tx.lock().unwrap().send(()).unwrap();
        go_rx.lock().unwrap().recv().unwrap();
    }));
    assert!(hooked);

    let outcome = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            // The task parks once, leaving its waker here, and completes
            // when polled again.
            let slot: Rc<RefCell<Option<Waker>>> = Rc::new(RefCell::new(None));
            let done = Rc::new(Cell::new(false));
            let (s, d) = (slot.clone(), done.clone());
            let mut polled = false;
            let task = glommio::spawn_local(futures_lite::future::poll_fn(move |cx| {
                if polled {
                    d.set(true);
                    return Poll::Ready(7u32);
                }
                polled = true;
                *s.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }));
            while slot.borrow().is_none() {
                futures_lite::future::yield_now().await;
            }
            let waker = slot.borrow_mut().take().unwrap();
            waker.wake_by_ref();
            while !done.get() {
                futures_lite::future::yield_now().await;
            }
            // The task has completed: the waker is its last reference.
            // Another thread drops it and is held just before it hands the
            // reference home; meanwhile the handle is dropped here.
            let other = std::thread::spawn(move || drop(waker));
            let held = inside_rx.recv_timeout(Duration::from_secs(30));
            drop(task);
            go_tx.send(()).unwrap();
            other.join().unwrap();
            // The reference comes home through the reactor's foreign
            // wakes; a timer makes the executor go through it.
            for _ in 0..3 {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            held.is_ok()
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(
        outcome,
        "the other thread never reached the moment it hands the last reference home"
    );
}
