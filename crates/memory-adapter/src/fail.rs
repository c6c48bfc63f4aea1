//! Failure injection for tests of the failure paths.

use std::sync::atomic::{AtomicBool, Ordering};

/// A switch that makes an adapter fail every call while it is on.
#[derive(Debug, Default)]
pub struct FailSwitch(AtomicBool);

impl FailSwitch {
    /// Turns failing on or off.
    pub fn set(&self, failing: bool) {
        self.0.store(failing, Ordering::SeqCst);
    }

    /// An error naming `adapter` while the switch is on.
    pub(crate) fn check(&self, adapter: &str) -> Result<(), anyhow::Error> {
        if self.0.load(Ordering::SeqCst) {
            Err(anyhow::anyhow!("{adapter} was told to fail"))
        } else {
            Ok(())
        }
    }
}
