//! The application state every handler shares: the engine, the session layer, the password
//! verifier, the login throttle and the limits; and [`UserData`], what each session carries.

use std::sync::Arc;
use std::time::Duration;

use sealed_sessions::builder::Sessions;
use sealed_sessions::{SessionEngine, SessionLayer};
use serde::{Deserialize, Serialize};

use super::auth::throttle::LoginThrottle;
use super::auth::{PasswordVerifier, Role, UserStore};
use super::prometheus;

/// What the server seals into each session besides the user id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserData {
    /// The account's role at login.
    pub role: Role,
    /// Whether the session was elevated to admin privileges (`POST /elevate`, which also
    /// regenerates the session id).
    pub elevated: bool,
}

/// Shared by every handler: one `Arc`, so a clone is one reference count. axum clones the state
/// for every request (each handler call, each `from_fn_with_state` layer); cloning the fields one
/// by one cost more than validating the cookie (the throttle's caches alone hold a dozen counts).
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// What [`AppState`] points to.
#[derive(Debug)]
pub struct AppStateInner {
    /// Issues, validates and revokes sessions.
    pub engine: SessionEngine<UserData>,
    /// The session layer (cookie in, session out; audit and metrics).
    pub layer: SessionLayer<UserData>,
    /// Checks passwords against the user store, a bounded number at a time.
    pub verifier: PasswordVerifier,
    /// Failed-login counters.
    pub throttle: LoginThrottle,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Request bodies must arrive whole within this, else 408.
    pub body_read_timeout: Duration,
    /// Fail closed (503) once the revocation list has been out of sync this long.
    pub max_staleness: Option<Duration>,
}

/// The request body limits (`--max-body-bytes`, `--body-read-timeout`).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Larger bodies get 413.
    pub max_bytes: usize,
    /// Bodies not received whole within this get 408.
    pub read_timeout: Duration,
}

impl AppState {
    /// State over the engine and the layer of `sessions` (built with
    /// [`Sessions::builder`], which attaches the session index to the layer).
    pub fn new(
        sessions: Sessions<UserData>,
        verifier: PasswordVerifier,
        throttle: LoginThrottle,
        body: BodyLimits,
        max_staleness: Option<Duration>,
    ) -> AppState {
        // The recorder is installed before the first request is counted.
        prometheus::handle();
        AppState(Arc::new(AppStateInner {
            engine: sessions.engine().clone(),
            layer: sessions.layer(),
            verifier,
            throttle,
            max_body_bytes: body.max_bytes,
            body_read_timeout: body.read_timeout,
            max_staleness,
        }))
    }

    /// The user store (through the verifier, which owns it).
    pub fn users(&self) -> &UserStore {
        self.verifier.users()
    }

    /// Whether the revocation list is too stale to trust: not replayed from Redis yet (a node
    /// that knows none of the revocations made elsewhere), or, with `--max-staleness`, out of sync
    /// for longer than allowed.
    pub fn too_stale(&self) -> bool {
        !self.revocations_ready() || self.out_of_sync_too_long()
    }

    /// Whether the revocation list holds what the shared store held once (always, without
    /// Redis). One atomic load.
    pub fn revocations_ready(&self) -> bool {
        self.engine.revocations().ready()
    }

    /// `--max-staleness`: out of sync with Redis for longer than allowed.
    fn out_of_sync_too_long(&self) -> bool {
        // Without --max-staleness, do not even look (the Redis backend's status takes a lock
        // its sync task also takes).
        let Some(max) = self.max_staleness else {
            return false;
        };
        let sync = self.engine.revocations().sync_status();
        !sync.synced && Duration::from_millis(sync.lag_ms) > max
    }
}
