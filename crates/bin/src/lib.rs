//! The `pg-analytics` service: typed configuration, logging, the wiring of adapters into use
//! cases, and the commands the binary runs (`serve`, `migrate`, `seed`, `recompute`).
//!
//! This is the only crate that knows every adapter; the others meet only through the ports.
//! It is a library too so that integration tests build the exact services the binary serves.

pub mod backfill;
pub mod commands;
pub mod config;
pub mod metrics;
pub mod probe;
pub mod serve;
pub mod stream;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod wiring;
