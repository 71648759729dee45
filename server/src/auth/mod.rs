//! Who may log in: the users file, the accounts held in memory, password hashing and checking,
//! and the failed-login throttle.
//!
//! # Layout
//! - `users_file`: the file format (TOML `[[user]]` tables, argon2id hashes): text in, checked
//!   records out, no file system, so it can be fuzzed.
//! - `store`: the accounts in memory ([`UserStore`]), loaded from the users file and kept to it.
//! - `write_back`: a password change written into the users file, its comments and layout kept.
//! - `demo`: the demo accounts made when no users file is given.
//! - `password`: argon2id hashing and its parameters, and the rules a new password must meet
//!   (one function for `POST /password` and `hash-password`).
//! - `verifier`: password checks on the blocking pool, a bounded number at a time
//!   ([`PasswordVerifier`]).
//! - `throttle`: failed-login counters per username and per client IP.

pub mod demo;
pub mod password;
pub mod store;
pub mod throttle;
pub mod users_file;
pub mod verifier;
mod write_back;

pub use store::{User, UserStore};
pub use users_file::Role;
pub use verifier::{PasswordVerifier, VerifyError};
