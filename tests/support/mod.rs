//! Shared test helpers.
pub mod redis;
pub mod server;
