//! The waits on a partition's positions: for a batch to be acknowledged
//! ([`Partition::wait_acked`]) and for the high watermark to pass an offset
//! ([`Partition::wait_high_watermark_above`]).
//!
//! Invariants:
//! * a waiter is woken by [`wake_acked`], which every step that moves the
//!   high watermark, truncates, fails or closes the log calls with the
//!   state borrowed: no wait misses the change it waits for;
//! * a waiter whose condition holds is resolved when it is next polled and
//!   leaves the tables then; a high watermark wait also leaves them when it
//!   is dropped.

use std::future::Future;
use std::rc::Rc;
use std::task::Poll;

use super::{Inner, Partition, State};
use crate::error::{EngineError, Result};
use crate::types::Offset;

/// A wait for the high watermark, from
/// [`Partition::wait_high_watermark_above`].
pub struct HighWatermarkWait {
    inner: Rc<Inner>,
    offset: Offset,
    key: Option<u64>,
}

impl Future for HighWatermarkWait {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut st = this.inner.state.borrow_mut();
        if st.hw.offset > this.offset || st.failure.is_some() || st.closed {
            if let Some(k) = this.key.take() {
                st.hw_waiters.remove(&k);
            }
            return Poll::Ready(());
        }
        let key = *this.key.get_or_insert_with(|| {
            st.hw_waiter_next += 1;
            st.hw_waiter_next
        });
        st.hw_waiters.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for HighWatermarkWait {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            if let Ok(mut st) = self.inner.state.try_borrow_mut() {
                st.hw_waiters.remove(&k);
            }
        }
    }
}

/// Wakes the waits whose position may have moved.
pub(super) fn wake_acked(st: &mut State) {
    for w in st.sync_waiters.drain(..) {
        w.wake();
    }
    for w in std::mem::take(&mut st.hw_waiters).into_values() {
        w.wake();
    }
    let hw = st.hw.offset;
    let failed = st.failure.is_some();
    st.waiters.retain(|(last, w)| {
        let done = failed || *last < hw;
        if done {
            w.wake_by_ref();
        }
        !done
    });
}

impl Partition {
    /// Resolves when offset `last` is acknowledged (below the high
    /// watermark); fails if the partition is poisoned or the offset was
    /// truncated away first.
    pub fn wait_acked(&self, last: Offset) -> impl Future<Output = Result<()>> {
        let inner = self.inner.clone();
        futures_lite::future::poll_fn(move |cx| {
            let mut st = inner.state.borrow_mut();
            if st.failure.is_some() {
                return Poll::Ready(Err(EngineError::Poisoned(inner.dir.clone())));
            }
            if st.hw.offset > last {
                return Poll::Ready(Ok(()));
            }
            if st.log_end <= last {
                return Poll::Ready(Err(EngineError::Truncated));
            }
            if st.closed && st.pending.is_empty() && !st.flushing {
                return Poll::Ready(Err(EngineError::Closed));
            }
            st.waiters.push((last, cx.waker().clone()));
            Poll::Pending
        })
    }

    /// Resolves once the high watermark is above `offset` (a read from
    /// `offset` would return data), or the partition fails or closes.
    /// Nothing polls: the flusher wakes it when the high watermark moves.
    pub fn wait_high_watermark_above(&self, offset: Offset) -> HighWatermarkWait {
        HighWatermarkWait {
            inner: self.inner.clone(),
            offset,
            key: None,
        }
    }
}
