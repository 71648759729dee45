//! Shared test helpers.
pub mod redis;
