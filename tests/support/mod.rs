//! Shared test helpers.
pub mod bin;
pub mod raw_server;
pub mod redis;
pub mod server;
