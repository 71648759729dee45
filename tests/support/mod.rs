//! Shared test helpers.
//!
//! - [`log_capture`]: one capturing `tracing` subscriber per test binary, for tests that check
//!   what was logged.
//! - `redis` (feature `redis`): test-owned `redis-server` processes (standalone, TLS, Cluster,
//!   Sentinel).
//!
//! The server crate's tests include `redis` too (`server/tests/support/mod.rs`).
pub(crate) mod log_capture;
#[cfg(feature = "redis")]
pub(crate) mod redis;
