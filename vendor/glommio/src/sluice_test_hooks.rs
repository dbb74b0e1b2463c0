//! Sluice: a hook for its regression test of the foreign-waker fix
//! (SLUICE-PATCHES.md), compiled only with the `sluice-test-hooks` feature.

use std::sync::OnceLock;

type Hook = Box<dyn Fn() + Send + Sync>;

static BEFORE_HAND_HOME: OnceLock<Hook> = OnceLock::new();

/// Sets a function that a foreign thread runs just before it hands a
/// waker's reference home to the task's executor, the moment at which
/// upstream glommio had already let the reference go. Once per process;
/// returns whether it was set.
pub fn set_before_hand_home(hook: Hook) -> bool {
    BEFORE_HAND_HOME.set(hook).is_ok()
}

pub(crate) fn before_hand_home() {
    if let Some(hook) = BEFORE_HAND_HOME.get() {
        hook();
    }
}
