//! Parking: the writer of an idle partition closed to free its descriptors
//! for the shard's budget, and opened again when it is needed
//! (engine/DESIGN.md, Descriptors).
//!
//! Invariants:
//! * a writer is parked only when closing it loses nothing and changes no
//!   file: the partition is open, the flusher is not running, nothing is
//!   pending and everything written is fdatasync'ed; with data written but
//!   not yet synced (a relaxed flush policy), an fdatasync is asked for
//!   instead and the writer parked at a later try;
//! * the parked log keeps its block padding, as an open active segment
//!   does, so recovery and a later roll see what they would have seen
//!   without the park (a rolled segment whose close a crash cut short is
//!   still a whole number of blocks long);
//! * the writer is opened again, with the io lock held, before anything
//!   that needs it: the flusher's next group, truncation, close. A failure
//!   to open it poisons the partition, as any I/O failure of its files.

use std::cell::Cell;
use std::rc::{Rc, Weak};

use super::{Inner, Partition, State};
use crate::error::{EngineError, Result};
use crate::fds::Holder;
use crate::segment::{Segment, SegmentWriter};

/// A closed writer: its segment, and how much data its log holds.
pub(super) struct Parked {
    seg: Rc<Segment>,
    log_len: u64,
}

impl Parked {
    /// The writer of a new segment whose empty files were just created.
    pub(super) fn new_segment(seg: Rc<Segment>) -> Self {
        Self { seg, log_len: 0 }
    }
}

impl Partition {
    /// Marks the writer as just used: it is parked last.
    pub(super) fn touch_writer(&self) {
        let holder = Rc::downgrade(&self.inner) as Weak<dyn Holder>;
        self.inner.shard.fds.touch(&self.inner.fds_key, holder);
    }

    /// Whether the writer is parked (its descriptors closed).
    pub fn is_parked(&self) -> bool {
        self.inner.state.borrow().parked.is_some()
    }

    /// Opens a parked writer again, if it is. Called with the io lock held.
    pub(super) async fn unpark(&self) -> Result<()> {
        let parked = {
            let mut st = self.inner.state.borrow_mut();
            if st.parked.is_some() && st.failure.is_some() {
                // Never written again: nothing to open.
                return Err(EngineError::Poisoned(self.inner.dir.clone()));
            }
            st.parked.take()
        };
        let Some(Parked { seg, log_len }) = parked else {
            return Ok(());
        };
        match SegmentWriter::reopen_at(seg, log_len).await {
            Ok(w) => {
                self.inner.state.borrow_mut().writer = Some(w);
                self.touch_writer();
                Ok(())
            }
            Err(e) => {
                self.poison(&e);
                Err(e)
            }
        }
    }

    /// Closes the writer if the partition is idle (see the module doc);
    /// whether its descriptors are closed.
    fn park(&self) -> bool {
        let Ok(_io) = self.inner.io_lock.try_acquire_permit(1) else {
            return false;
        };
        let Ok(mut st) = self.inner.state.try_borrow_mut() else {
            return false;
        };
        if st.closed || st.failure.is_some() {
            // Never written again: nothing to keep open for.
            drop(st.writer.take());
            return true;
        }
        if st.writer.is_none() {
            return st.parked.is_some();
        }
        if st.flushing || !st.pending.is_empty() {
            return false;
        }
        if st.synced < st.written.offset {
            st.sync_requested = true;
            self.schedule_flush(&mut st);
            return false;
        }
        park_writer(&mut st);
        let seg = st.parked.as_ref().map(|p| p.seg.clone());
        drop(st);
        if let Some(seg) = seg {
            if seg.clone().release() {
                self.inner.shard.fds.forget(seg.lru_key());
            }
        }
        true
    }
}

/// Moves the writer to `parked`, closing its index files.
fn park_writer(st: &mut State) {
    let w = st.writer.take().expect("checked by the caller");
    st.parked = Some(Parked {
        seg: w.seg.clone(),
        log_len: w.log.len(),
    });
}

impl Holder for Inner {
    fn release(self: Rc<Self>) -> bool {
        Partition { inner: self }.park()
    }

    fn lru_key(&self) -> &Cell<Option<u64>> {
        &self.fds_key
    }
}
