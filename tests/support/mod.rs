//! Shared test helpers.
pub mod bin;
pub mod redis;
pub mod server;
