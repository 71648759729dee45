//! Shared test helpers.
//!
//! - [`redis`]: test-owned `redis-server` processes (standalone, TLS, Cluster, Sentinel).
//!
//! The server crate's tests include this module too (`server/tests/support/mod.rs`).
pub(crate) mod redis;
