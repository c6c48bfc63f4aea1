//! The HTTP API in process: the real application from `build_app`, over the in-memory adapters.
//!
//! One test binary: `helpers` builds the harness; the modules group the tests by what they
//! exercise.

mod core_routes;
mod dashboard;
mod defined_reports;
mod events;
mod helpers;
mod replays;
mod server;
mod stats;
mod tenancy;
