//! Shared test helpers.
//!
//! - [`bin`]: the binary as a command that must finish (`cmd`, `run`, fixtures made with it).
//! - [`server`]: the binary as a server — the one place its process is spawned, found, logged,
//!   stopped and killed.
//! - [`http`]: a blocking HTTP/1.1 client for that server (reqwest is used directly in async
//!   tests).
//! - [`redis`]: test-owned `redis-server` processes (shared with the library's tests).
pub(crate) mod bin;
pub(crate) mod http;
#[path = "../../../tests/support/redis.rs"]
pub(crate) mod redis;
pub(crate) mod server;
