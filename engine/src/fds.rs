//! A shard's budget of open segment file descriptors (engine/DESIGN.md,
//! Descriptors).
//!
//! Segment files are opened on demand and closed least recently used. Two
//! kinds of holder keep descriptors open:
//! * a segment's files ([`crate::segment::SegmentFiles`]: the O_DIRECT log
//!   and the buffered read descriptor `sendfile` uses), 2 descriptors;
//! * a partition's writer of its active segment (its `.index` and
//!   `.timeindex`; the log is the segment's), 2 descriptors.
//!
//! Each open is charged before it happens ([`FdBudget::charge`]), which
//! first closes the least recently used holders that are idle until the
//! charge fits. A holder in use (a read holds its descriptor, a write or an
//! fdatasync is in flight, data waits to be synced) is skipped and stays
//! open: the budget can be exceeded by the holders in use, never by idle
//! ones. A [`Charge`] gives its descriptors back when it is dropped, which
//! is when the files close.
//!
//! Invariants:
//! * `open` is the sum of the live charges;
//! * every live charge's holder is in `lru` under the key in its `key`
//!   cell, or is being closed.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

/// Holders in use a charge skips before it gives up making room.
const BUSY_SKIPS_MAX: usize = 16;
/// How often an open waiting for room looks again without being told.
const ADMISSION_RETRY: std::time::Duration = std::time::Duration::from_millis(5);
/// The longest an open waits for room.
const ADMISSION_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);
/// Budgets below this never make an open wait: an active partition alone
/// holds up to 8 (its writer, its active segment's files, one segment a
/// read opened), and a waiting open may hold them itself.
pub const WAITING_BUDGET_MIN: usize = 16;

/// Something holding descriptors that can close them when idle.
pub(crate) trait Holder {
    /// Closes the held descriptors if nothing uses them; whether it did.
    /// Never awaits: the caller is about to open a file.
    fn release(self: Rc<Self>) -> bool;
    /// The holder's place in the order ([`FdBudget::touch`]).
    fn lru_key(&self) -> &Cell<Option<u64>>;
}

/// A shard's descriptor budget and its least-recently-used holders.
pub struct FdBudget {
    max: Cell<usize>,
    open: Cell<usize>,
    tick: Cell<u64>,
    lru: RefCell<BTreeMap<u64, Weak<dyn Holder>>>,
    /// Holders closed to make room since the shard started.
    closed: Cell<u64>,
    /// Opens that wait for room take turns (`charge_waiting`).
    admission: glommio::sync::Semaphore,
    /// The open whose turn it is, waiting for room, and whether room may
    /// have been made since it last looked.
    waiter: RefCell<Option<std::task::Waker>>,
    released: Cell<bool>,
}

impl FdBudget {
    /// A budget of `max` descriptors (`usize::MAX`: unbounded).
    pub fn new(max: usize) -> Rc<Self> {
        Rc::new(Self {
            max: Cell::new(max.max(1)),
            open: Cell::new(0),
            tick: Cell::new(0),
            lru: RefCell::new(BTreeMap::new()),
            closed: Cell::new(0),
            admission: glommio::sync::Semaphore::new(1),
            waiter: RefCell::new(None),
            released: Cell::new(false),
        })
    }

    /// The most descriptors idle holders may keep open.
    pub fn max(&self) -> usize {
        self.max.get()
    }

    /// Sets the most descriptors idle holders may keep open; takes effect
    /// at the next charge.
    pub fn set_max(&self, max: usize) {
        self.max.set(max.max(1));
    }

    /// Descriptors open now under this budget.
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Holders closed to make room so far.
    pub fn closed(&self) -> u64 {
        self.closed.get()
    }

    /// Marks `holder` as just used: it is closed last. `key` is the
    /// holder's own cell for its place in the order.
    pub(crate) fn touch(&self, key: &Cell<Option<u64>>, holder: Weak<dyn Holder>) {
        let t = self.tick.get() + 1;
        self.tick.set(t);
        let mut lru = self.lru.borrow_mut();
        if let Some(old) = key.replace(Some(t)) {
            lru.remove(&old);
        }
        lru.insert(t, holder);
    }

    /// Forgets a holder that closed its descriptors itself.
    pub(crate) fn forget(&self, key: &Cell<Option<u64>>) {
        if let Some(old) = key.take() {
            self.lru.borrow_mut().remove(&old);
        }
    }

    /// Makes room for `n` more descriptors, closing idle holders least
    /// recently used first, and charges them. A holder that is in use is
    /// left open and goes to the back of the order; after
    /// [`BUSY_SKIPS_MAX`] of them the charge goes over the budget, which the
    /// next charges bring back down (thousands of partitions writing at
    /// once would otherwise make each charge walk all of them).
    pub(crate) fn charge(self: &Rc<Self>, n: usize) -> Charge {
        self.make_room(n);
        self.take(n)
    }

    /// Like [`FdBudget::charge`], but an open that would go over the budget
    /// waits, in arrival order, until holders in use give their
    /// descriptors back or become idle, so that however many partitions
    /// become active at once, they never hold more than the budget (plus
    /// what opens that may not wait take). Only opens made while nothing
    /// else of the caller is held may wait: a parked writer opened again,
    /// a read opening a segment's files.
    ///
    /// A budget below [`WAITING_BUDGET_MIN`] never waits (a caller may hold
    /// that many itself), and no open waits longer than
    /// [`ADMISSION_WAIT_MAX`]: past it, it goes over the budget and says so.
    pub(crate) async fn charge_waiting(self: &Rc<Self>, n: usize) -> Charge {
        if self.max.get() < WAITING_BUDGET_MIN
            || (self.admission.available() > 0 && self.make_room(n))
        {
            return self.charge(n);
        }
        let Ok(_turn) = self.admission.acquire_permit(1).await else {
            unreachable!("the admission semaphore is never closed");
        };
        let deadline = std::time::Instant::now() + ADMISSION_WAIT_MAX;
        while !self.make_room(n) {
            if std::time::Instant::now() >= deadline {
                tracing::warn!(
                    open = self.open.get(),
                    max = self.max.get(),
                    "segment descriptors in use stayed above the budget for {ADMISSION_WAIT_MAX:?}: going over it"
                );
                break;
            }
            let released = futures_lite::future::poll_fn(|cx| {
                if self.released.take() {
                    return std::task::Poll::Ready(());
                }
                *self.waiter.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            });
            // Holders become idle without a word (a read drops its
            // handles): look again now and then.
            futures_lite::future::or(released, glommio::timer::sleep(ADMISSION_RETRY)).await;
        }
        self.take(n)
    }

    /// Tells a waiting open that descriptors were given back or a holder
    /// became idle.
    pub fn notify(&self) {
        self.released.set(true);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Closes idle holders, least recently used first, until `n` more
    /// descriptors fit or [`BUSY_SKIPS_MAX`] holders were in use; whether
    /// they fit (always, when nothing is open: a budget smaller than one
    /// open is exceeded by that open alone, not waited for forever).
    fn make_room(&self, n: usize) -> bool {
        let mut busy = 0;
        while self.open.get() + n > self.max.get() && busy < BUSY_SKIPS_MAX {
            let Some((_, holder)) = self.lru.borrow_mut().pop_first() else {
                break;
            };
            let Some(h) = holder.upgrade() else { continue };
            h.lru_key().set(None);
            // No borrow of the order is held: releasing drops charges.
            if h.clone().release() {
                self.closed.set(self.closed.get() + 1);
            } else {
                busy += 1;
                self.touch(h.lru_key(), holder);
            }
        }
        self.open.get() + n <= self.max.get() || self.open.get() == 0
    }

    fn take(self: &Rc<Self>, n: usize) -> Charge {
        self.open.set(self.open.get() + n);
        Charge {
            budget: self.clone(),
            n,
        }
    }
}

/// Descriptors charged to a budget, given back when dropped.
pub(crate) struct Charge {
    budget: Rc<FdBudget>,
    n: usize,
}

impl Charge {
    /// Takes `n` of the charged descriptors into a charge of their own.
    pub(crate) fn split(&mut self, n: usize) -> Charge {
        assert!(n <= self.n, "a split takes at most what was charged");
        self.n -= n;
        Charge {
            budget: self.budget.clone(),
            n,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let open = self.budget.open.get();
        debug_assert!(open >= self.n, "charges are given back once");
        self.budget.open.set(open - self.n);
        self.budget.notify();
    }
}

/// The descriptors a process may open (`ulimit -n`, RLIMIT_NOFILE): the
/// soft limit is raised to the hard one first if it is lower.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::warn!(
                soft = lim.rlim_cur,
                hard = lim.rlim_max,
                error = %std::io::Error::last_os_error(),
                "could not raise the open file limit"
            );
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        busy: Cell<bool>,
        charge: RefCell<Option<Charge>>,
        key: Cell<Option<u64>>,
    }

    impl Holder for Fake {
        fn release(self: Rc<Self>) -> bool {
            if self.busy.get() {
                return false;
            }
            self.charge.borrow_mut().take().is_some()
        }

        fn lru_key(&self) -> &Cell<Option<u64>> {
            &self.key
        }
    }

    fn holder(budget: &Rc<FdBudget>) -> Rc<Fake> {
        let f = Rc::new(Fake {
            busy: Cell::new(false),
            charge: RefCell::new(Some(budget.charge(2))),
            key: Cell::new(None),
        });
        let weak: Weak<dyn Holder> = Rc::downgrade(&f) as Weak<dyn Holder>;
        budget.touch(&f.key, weak);
        f
    }

    #[test]
    fn given_a_full_budget_a_charge_closes_the_least_recently_used_idle_holder() {
        let budget = FdBudget::new(4);
        let a = holder(&budget);
        let b = holder(&budget);
        assert_eq!(budget.open(), 4);
        budget.touch(&a.key, Rc::downgrade(&a) as Weak<dyn Holder>);
        let c = holder(&budget);
        assert_eq!(budget.open(), 4);
        assert!(b.charge.borrow().is_none(), "b was used least recently");
        assert!(a.charge.borrow().is_some() && c.charge.borrow().is_some());
    }

    #[test]
    fn given_every_holder_busy_a_charge_goes_over_and_comes_back_when_dropped() {
        let budget = FdBudget::new(2);
        let a = holder(&budget);
        a.busy.set(true);
        let extra = budget.charge(2);
        assert_eq!(budget.open(), 4);
        assert!(a.charge.borrow().is_some());
        drop(extra);
        assert_eq!(budget.open(), 2);
        a.busy.set(false);
        let _b = holder(&budget);
        assert_eq!(budget.open(), 2, "a closed once idle");
    }
}
