//! Failure injection for tests of the failure paths.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// A switch that makes an adapter fail every call while it is on, or only its next few calls.
#[derive(Debug, Default)]
pub struct FailSwitch {
    on: AtomicBool,
    next: AtomicU32,
}

impl FailSwitch {
    /// Turns failing on or off.
    pub fn set(&self, failing: bool) {
        self.on.store(failing, Ordering::SeqCst);
    }

    /// Makes the next `calls` calls fail, then lets calls through again (an outage that ends).
    pub fn fail_next(&self, calls: u32) {
        self.next.store(calls, Ordering::SeqCst);
    }

    /// An error naming `adapter` while the switch is on or failures are still due.
    pub(crate) fn check(&self, adapter: &str) -> Result<(), anyhow::Error> {
        let due = self
            .next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if due || self.on.load(Ordering::SeqCst) {
            Err(anyhow::anyhow!("{adapter} was told to fail"))
        } else {
            Ok(())
        }
    }
}
