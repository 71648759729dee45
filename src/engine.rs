//! The session lifecycle: issue, validate, renew, regenerate, logout, logout everywhere, step-up.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use cookie::Cookie;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::claims::{Claims, Fingerprint, SessionId};
use crate::clock::{Clock, SystemClock, UnixMillis};
use crate::config::EngineConfig;
use crate::cookies::MAX_SET_COOKIE_LEN;
use crate::fingerprint::FingerprintMode;
use crate::keys::KeyRing;
use crate::revocation::{MemoryRevocations, RevocationBackend, RevocationError, Revoked};
use crate::token::{self, Budget, SealError, TokenError};

/// Why a request's session was not accepted.
///
/// Before the token authenticates, every failure is [`Rejection::Invalid`]; the detailed
/// reasons exist only for tokens that we sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Not a token we sealed, or not for this cookie name, or under a retired key.
    #[error("invalid session token: {0}")]
    Invalid(TokenError),
    /// Past its absolute expiry.
    #[error("session expired")]
    Expired,
    /// Unused for longer than the idle timeout.
    #[error("session idle for too long")]
    IdleTimeout,
    /// Logged out (this session or all of the user's).
    #[error("session revoked")]
    Revoked(Revoked),
    /// The client's fingerprint changed and the policy enforces binding.
    #[error("session fingerprint mismatch")]
    FingerprintMismatch,
    /// The route needs a password check more recent than the step-up window.
    #[error("recent authentication required")]
    StepUpRequired,
    /// The revocation list has not been loaded yet (a Redis-synced node still replaying): the
    /// token cannot be checked, so it is not accepted. Not a verdict on the token: the cookie
    /// is kept.
    #[error("revocation list not loaded yet")]
    NotSynced,
}

impl Rejection {
    /// Every code [`Rejection::code`] returns, in declaration order: the one list of them.
    pub const CODES: [&'static str; 7] = [
        "INVALID",
        "EXPIRED",
        "IDLE_TIMEOUT",
        "REVOKED",
        "FINGERPRINT_MISMATCH",
        "STEP_UP_REQUIRED",
        "REVOCATION_STALE",
    ];

    /// The stable machine-readable code for this rejection (one of [`Rejection::CODES`]).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Invalid(_) => Self::CODES[0],
            Rejection::Expired => Self::CODES[1],
            Rejection::IdleTimeout => Self::CODES[2],
            Rejection::Revoked(_) => Self::CODES[3],
            Rejection::FingerprintMismatch => Self::CODES[4],
            Rejection::StepUpRequired => Self::CODES[5],
            Rejection::NotSynced => Self::CODES[6],
        }
    }
}

/// A session operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The session could not be sealed (too large for a cookie, encoding, randomness).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The revocation could not be recorded in the shared store. It is enforced on this node
    /// already; the backend keeps retrying.
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    /// The session was revoked while the request was in flight (after it was validated, before
    /// the change committed). Nothing was changed.
    #[error("session revoked while the request was in flight")]
    Revoked(Revoked),
    /// The operation needs a signed-in user (step-up, password change, logging out the user's
    /// other sessions) and the session is anonymous. Nothing was changed.
    #[error("the session is anonymous; this needs a signed-in user")]
    Anonymous,
    /// A login was asked for with an empty user id: the empty id marks anonymous sessions
    /// ([`SessionEngine::issue_anonymous`]), so a user session cannot have it.
    #[error("a user session needs a non-empty user id")]
    EmptyUserId,
    /// A session was to be issued while the revocation list is not loaded yet (a Redis-synced
    /// node still replaying, or never reached Redis). Its cookie would be refused with
    /// [`Rejection::NotSynced`] on every request, and a login's version read from an incomplete
    /// list could be below the user's real one, so nothing is issued. Nothing was changed.
    #[error("revocation list not loaded yet; no session can be issued")]
    NotSynced,
}

/// A password change that did not complete (see [`SessionEngine::change_password`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordChangeError<E> {
    /// The session was revoked while the request was in flight, or the first revocation was not
    /// accepted by the shared store: the new password was not stored.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store refused the new password. The user's other sessions were logged out already,
    /// and so was this one (its version is below the new minimum): the user logs in again with
    /// the old password.
    #[error("the new password could not be stored")]
    Store(#[source] E),
}

/// The user's session version, read *before* their credentials are checked, to seal the login
/// with ([`SessionEngine::begin_login`]).
///
/// Why before: a password change stores the new hash, then raises the version. A login whose
/// check saw the old hash read its version earlier still, so its token carries a version below
/// the change's and dies with the other sessions. Read after the check, it could carry the new
/// version and survive the change.
#[derive(Debug, Clone)]
#[must_use = "seal the login with SessionEngine::issue_ticket after the credentials check"]
pub struct LoginTicket {
    user_id: String,
    version: u64,
}

impl LoginTicket {
    /// The user the ticket is for.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
}

/// A session that passed validation (or was just issued): what [`SessionEngine::validate`]
/// returns and the lifecycle methods take. Handlers see it through the
/// `extract::Session` extractor (feature `axum`).
#[derive(Clone, Debug)]
pub struct ValidSession<T> {
    claims: Claims<T>,
    renewal_due: bool,
    fingerprint_changed: bool,
}

impl<T> ValidSession<T> {
    /// The verified claims.
    pub fn claims(&self) -> &Claims<T> {
        &self.claims
    }
    /// The session id.
    pub fn id(&self) -> SessionId {
        self.claims.session_id
    }
    /// The user id; empty for an anonymous session (see [`ValidSession::is_anonymous`]).
    pub fn user_id(&self) -> &str {
        &self.claims.user_id
    }
    /// Whether this is an anonymous (guest) session ([`SessionEngine::issue_anonymous`]): no
    /// user id, in no user's session index, untouched by a user's logout everywhere.
    pub fn is_anonymous(&self) -> bool {
        self.claims.user_id.is_empty()
    }
    /// The application data.
    pub fn data(&self) -> &T {
        &self.claims.data
    }
    /// Whether the cookie should be re-issued on this response (last renewal older than
    /// renew-after, or sealed under a key that is no longer primary).
    pub fn renewal_due(&self) -> bool {
        self.renewal_due
    }
    /// Under [`FingerprintMode::Log`]: the request's fingerprint differs from the session's.
    pub fn fingerprint_changed(&self) -> bool {
        self.fingerprint_changed
    }
}

/// A freshly sealed session: the value to send as the cookie and the session it encodes.
///
/// `Debug` leaves the token out: it is a live credential.
#[must_use = "the cookie must reach the response, or the client keeps its old session"]
#[derive(Clone)]
pub struct Issued<T> {
    /// The session now in force.
    pub session: ValidSession<T>,
    /// The cookie value (the token).
    pub token: String,
    /// How long the browser should keep the cookie: the idle timeout, capped by what is left
    /// of the absolute lifetime.
    pub max_age: Duration,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Issued<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("session", &self.session)
            .field("token", &"<redacted>")
            .field("max_age", &self.max_age)
            .finish()
    }
}

struct Inner {
    config: EngineConfig,
    keys: ArcSwap<KeyRing>,
    revocations: Arc<dyn RevocationBackend>,
    clock: Arc<dyn Clock>,
    budget: Budget,
}

/// The session engine. Cheap to clone; clones share keys, revocations and clock.
///
/// ```
/// use sealed_sessions::{EngineConfig, KeyId, Key, KeyRing, SessionEngine};
/// # tokio_test_block_on(async {
/// let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
/// let engine: SessionEngine<String> = SessionEngine::new(EngineConfig::default(), keys);
/// let issued = engine.issue("alice", "admin".to_string(), None).await.unwrap();
/// let session = engine.validate(&issued.token, None).unwrap();
/// assert_eq!(session.user_id(), "alice");
/// engine.logout(&session).await.unwrap();
/// assert_eq!(engine.validate(&issued.token, None).unwrap_err().code(), "REVOKED");
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub struct SessionEngine<T> {
    inner: Arc<Inner>,
    _data: PhantomData<fn() -> T>,
}

impl<T> Clone for SessionEngine<T> {
    fn clone(&self) -> Self {
        SessionEngine {
            inner: self.inner.clone(),
            _data: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for SessionEngine<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEngine")
            .field("config", &self.inner.config)
            .field("keys", &**self.inner.keys.load())
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Clone> SessionEngine<T> {
    /// An engine with the in-process revocation list and the system clock.
    pub fn new(config: EngineConfig, keys: KeyRing) -> SessionEngine<T> {
        SessionEngine::with_parts(
            config,
            keys,
            Arc::new(MemoryRevocations::new()),
            Arc::new(SystemClock),
        )
    }

    /// An engine with a chosen revocation backend and clock.
    pub fn with_parts(
        config: EngineConfig,
        keys: KeyRing,
        revocations: Arc<dyn RevocationBackend>,
        clock: Arc<dyn Clock>,
    ) -> SessionEngine<T> {
        let budget = Budget {
            overhead: config
                .cookie
                .overhead(config.absolute_timeout.max(config.idle_timeout)),
            limit: MAX_SET_COOKIE_LEN,
        };
        SessionEngine {
            inner: Arc::new(Inner {
                config,
                keys: ArcSwap::from_pointee(keys),
                revocations,
                clock,
                budget,
            }),
            _data: PhantomData,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The revocation backend.
    pub fn revocations(&self) -> &Arc<dyn RevocationBackend> {
        &self.inner.revocations
    }

    /// The current time on the engine's clock.
    pub fn now(&self) -> UnixMillis {
        self.inner.clock.now()
    }

    /// The key ring in use.
    pub fn keys(&self) -> Arc<KeyRing> {
        self.inner.keys.load_full()
    }

    /// Replaces the key ring (rotation without restart). Requests in flight finish with the old
    /// ring.
    pub fn replace_keys(&self, keys: KeyRing) {
        self.inner.keys.store(Arc::new(keys));
    }

    /// Validates a cookie value at the clock's current time.
    ///
    /// # Errors
    /// A [`Rejection`] saying why the session is not accepted.
    pub fn validate(
        &self,
        token: &str,
        fingerprint: Option<&Fingerprint>,
    ) -> Result<ValidSession<T>, Rejection> {
        self.validate_at(token, fingerprint, self.inner.clock.now())
    }

    /// Validates a cookie value at `now`: open, absolute expiry, idle timeout, revocation,
    /// fingerprint — in that order.
    ///
    /// # Errors
    /// A [`Rejection`] saying why the session is not accepted.
    pub fn validate_at(
        &self,
        token: &str,
        fingerprint: Option<&Fingerprint>,
        now: UnixMillis,
    ) -> Result<ValidSession<T>, Rejection> {
        let inner = &*self.inner;
        let keys = inner.keys.load();
        let token::Opened {
            claims,
            under_primary: sealed_under_primary,
        } = token::open_checked::<T>(&keys, inner.config.cookie.name(), token)
            .map_err(Rejection::Invalid)?;
        // A time further ahead than the allowed skew was sealed by a node whose clock runs
        // ahead: trusted, it would never idle out and stay "fresh".
        let horizon = now.saturating_add(inner.config.max_clock_skew);
        if claims.created_at > horizon || claims.auth_time > horizon || claims.last_seen > horizon {
            return Err(Rejection::Invalid(TokenError::FromTheFuture));
        }
        // This node's own absolute timeout caps the sealed expiry, so shortening
        // the timeout also shortens the tokens already issued.
        let expires = claims.expires_at.min(
            claims
                .created_at
                .saturating_add(inner.config.absolute_timeout),
        );
        if now >= expires {
            return Err(Rejection::Expired);
        }
        if now.since(claims.last_seen) > inner.config.idle_timeout {
            return Err(Rejection::IdleTimeout);
        }
        // Fail closed until the list is loaded: an empty list would accept every revoked token.
        if !inner.revocations.ready() {
            return Err(Rejection::NotSynced);
        }
        inner
            .revocations
            .check(
                &claims.session_id,
                &claims.user_id,
                version_checked(&claims),
                now,
            )
            .map_err(Rejection::Revoked)?;
        let fingerprint_changed = match (inner.config.fingerprint, &claims.fingerprint) {
            (FingerprintMode::Off, _) | (_, None) => false,
            (mode, Some(sealed)) => {
                let same = fingerprint.is_some_and(|f| f.ct_eq(sealed));
                if !same && mode != FingerprintMode::Log {
                    return Err(Rejection::FingerprintMismatch);
                }
                !same
            }
        };
        // Under `Log`, a changed fingerprint is adopted at once by the re-issue
        // ([`SessionEngine::renew_adopting`]), so one network change is one anomaly event.
        let renewal_due = now.since(claims.last_seen) >= inner.config.renew_after
            || !sealed_under_primary
            || fingerprint_changed;
        Ok(ValidSession {
            claims,
            renewal_due,
            fingerprint_changed,
        })
    }

    /// Checks that the session's last password or step-up check is within `window` (the
    /// configured step-up window when `None`). An anonymous session never passed a password
    /// check, so it is never fresh.
    ///
    /// # Errors
    /// [`Rejection::StepUpRequired`].
    pub fn require_fresh(
        &self,
        session: &ValidSession<T>,
        window: Option<Duration>,
    ) -> Result<(), Rejection> {
        let window = window.unwrap_or(self.inner.config.step_up_window);
        if !session.is_anonymous() && self.now().since(session.claims.auth_time) <= window {
            Ok(())
        } else {
            Err(Rejection::StepUpRequired)
        }
    }

    /// Re-checks, at the moment a change commits, that the session was not revoked since it was
    /// validated: the local list, and the user's minimum version as the shared store has it
    /// (a "log out everywhere" on another node is seen here without waiting for the sync).
    ///
    /// Every mutation that mints a new cookie calls this after the request body was read and
    /// after any password check, so a revocation that lands while a request is in flight
    /// cannot be undone by that request.
    ///
    /// # Errors
    /// [`EngineError::Revoked`].
    pub async fn recheck(&self, session: &ValidSession<T>) -> Result<(), EngineError> {
        let c = &session.claims;
        let inner = &*self.inner;
        // The store first, then the local list: a revocation that lands while the store
        // answers is in the local list by the time it is read, and the caller seals right after
        // this returns, with no wait in between.
        // The backend's policy decides what an unreachable store means (Redis: the local list).
        // The barrier brings in a single-session logout made on another node a moment ago.
        inner.revocations.barrier().await?;
        // An anonymous session has no user version to read.
        if !session.is_anonymous() {
            let min = inner.revocations.current_version(&c.user_id).await?;
            if c.version < min {
                return Err(EngineError::Revoked(Revoked::UserVersion));
            }
        }
        self.recheck_local(session)
    }

    /// The local part of [`SessionEngine::recheck`], for changes that keep the session id and
    /// version (a cookie they mint is revoked exactly when the old one is).
    fn recheck_local(&self, session: &ValidSession<T>) -> Result<(), EngineError> {
        let c = &session.claims;
        self.inner
            .revocations
            .check(&c.session_id, &c.user_id, version_checked(c), self.now())
            .map_err(EngineError::Revoked)
    }

    /// Whether this session's id was revoked (on this node), whatever the user's version: for
    /// the last step of changes that raised the version themselves.
    fn recheck_id_local(&self, session: &ValidSession<T>) -> Result<(), EngineError> {
        let c = &session.claims;
        // No version is below u64::MAX: only the session-id entry can answer.
        self.inner
            .revocations
            .check(&c.session_id, &c.user_id, u64::MAX, self.now())
            .map_err(EngineError::Revoked)
    }

    fn seal(&self, claims: Claims<T>, now: UnixMillis) -> Result<Issued<T>, EngineError> {
        let inner = &*self.inner;
        let keys = inner.keys.load();
        let token = token::seal(&keys, inner.config.cookie.name(), &claims, inner.budget)?;
        let max_age = inner.config.idle_timeout.min(claims.expires_at.since(now));
        Ok(Issued {
            session: ValidSession {
                claims,
                renewal_due: false,
                fingerprint_changed: false,
            },
            token,
            max_age,
        })
    }

    /// Login, step one: reads the user's session version. Call it *before* checking the
    /// credentials, then seal with [`SessionEngine::issue_ticket`] (see [`LoginTicket`] for why
    /// the order matters).
    ///
    /// # Errors
    /// [`EngineError::Revocation`] (the user's version could not be read);
    /// [`EngineError::EmptyUserId`] (the empty id is reserved for anonymous sessions);
    /// [`EngineError::NotSynced`] (the revocation list is not loaded yet).
    pub async fn begin_login(
        &self,
        user_id: impl Into<String>,
    ) -> Result<LoginTicket, EngineError> {
        let user_id = user_id.into();
        if user_id.is_empty() {
            return Err(EngineError::EmptyUserId);
        }
        if !self.inner.revocations.ready() {
            return Err(EngineError::NotSynced);
        }
        let version = self.inner.revocations.current_version(&user_id).await?;
        Ok(LoginTicket { user_id, version })
    }

    /// Login without a separate credentials check (the caller authenticated the user already,
    /// say through single sign-on): a new session with a fresh id. For password logins use
    /// [`SessionEngine::begin_login`] before the check and [`SessionEngine::issue_ticket`] after.
    ///
    /// # Errors
    /// [`EngineError::Seal`] (data too large for a cookie), [`EngineError::Revocation`] (the
    /// user's version could not be read).
    pub async fn issue(
        &self,
        user_id: impl Into<String>,
        data: T,
        fingerprint: Option<Fingerprint>,
    ) -> Result<Issued<T>, EngineError> {
        let ticket = self.begin_login(user_id).await?;
        self.issue_ticket(ticket, data, fingerprint)
    }

    /// Login, step two: a new session with a fresh id, sealed with the version the ticket read.
    ///
    /// # Errors
    /// [`EngineError::Seal`] (data too large for a cookie).
    pub fn issue_ticket(
        &self,
        ticket: LoginTicket,
        data: T,
        fingerprint: Option<Fingerprint>,
    ) -> Result<Issued<T>, EngineError> {
        let LoginTicket { user_id, version } = ticket;
        let now = self.now();
        let claims = Claims {
            session_id: new_session_id()?,
            user_id,
            version,
            created_at: now,
            auth_time: now,
            last_seen: now,
            expires_at: now.saturating_add(self.inner.config.absolute_timeout),
            fingerprint,
            data,
        };
        self.seal(claims, now)
    }

    /// An anonymous (guest) session: a fresh id, no user id, for a cart or pre-login state.
    ///
    /// It validates, renews, updates, regenerates and logs out like any session, with these
    /// differences: its user id is empty ([`ValidSession::is_anonymous`]); no user's logout
    /// everywhere or password change touches it (it has no user version); it is never fresh
    /// ([`SessionEngine::require_fresh`]), so step-up and password change refuse it with
    /// [`EngineError::Anonymous`]; and the HTTP layer keeps it out of the session index.
    /// At login it is replaced by a user session under a new id, and its own id is revoked
    /// (`extract::SessionManager::login`).
    ///
    /// In the token it is a session whose user id is the empty string, so the token format is
    /// unchanged.
    ///
    /// # Errors
    /// [`EngineError::Seal`] (data too large for a cookie); [`EngineError::NotSynced`] (the
    /// revocation list is not loaded yet, so its cookie would be refused).
    pub fn issue_anonymous(
        &self,
        data: T,
        fingerprint: Option<Fingerprint>,
    ) -> Result<Issued<T>, EngineError> {
        if !self.inner.revocations.ready() {
            return Err(EngineError::NotSynced);
        }
        let now = self.now();
        let claims = Claims {
            session_id: new_session_id()?,
            user_id: String::new(),
            version: 0,
            // No password was checked: `require_fresh` refuses anonymous sessions whatever
            // this says.
            auth_time: now,
            created_at: now,
            last_seen: now,
            expires_at: now.saturating_add(self.inner.config.absolute_timeout),
            fingerprint,
            data,
        };
        self.seal(claims, now)
    }

    /// Sliding renewal: the same session with `last_seen` set to now, sealed under the primary
    /// key. Call when [`ValidSession::renewal_due`].
    ///
    /// # Errors
    /// [`EngineError::Seal`].
    pub fn renew(&self, session: &ValidSession<T>) -> Result<Issued<T>, EngineError> {
        let now = self.now();
        let mut claims = session.claims.clone();
        claims.last_seen = now;
        self.seal(claims, now)
    }

    /// [`SessionEngine::renew`] that, under [`FingerprintMode::Log`], also adopts the
    /// request's fingerprint when it changed: the change is reported once (the request that
    /// saw it), not on every later request. The layer renews this way.
    ///
    /// # Errors
    /// [`EngineError::Seal`].
    pub fn renew_adopting(
        &self,
        session: &ValidSession<T>,
        fingerprint: Option<&Fingerprint>,
    ) -> Result<Issued<T>, EngineError> {
        let now = self.now();
        let mut claims = session.claims.clone();
        claims.last_seen = now;
        if session.fingerprint_changed && self.inner.config.fingerprint == FingerprintMode::Log {
            claims.fingerprint = fingerprint.copied();
        }
        self.seal(claims, now)
    }

    /// The same session with new application data.
    ///
    /// The session id stays the same, so an older cookie of this session stays valid too: a
    /// client that replays it gets the older data back (a cart emptied by a replay, say). For
    /// data where a rollback matters to security (roles, permissions, anything an attacker
    /// would want to undo), use [`SessionEngine::regenerate`] with the new data instead: it
    /// issues a new id and revokes the old one, so no earlier cookie opens again.
    ///
    /// # Errors
    /// [`EngineError::Seal`] (for instance when the data is too large for a cookie);
    /// [`EngineError::Revoked`] when the session is revoked on this node.
    pub fn update(&self, session: &ValidSession<T>, data: T) -> Result<Issued<T>, EngineError> {
        self.recheck_local(session)?;
        let now = self.now();
        let mut claims = session.claims.clone();
        claims.data = data;
        claims.last_seen = now;
        self.seal(claims, now)
    }

    /// Step-up: the user just re-entered their password; refreshes `auth_time`. Call it after
    /// the password check: it re-checks revocation ([`SessionEngine::recheck`]).
    ///
    /// # Errors
    /// [`EngineError::Seal`]; [`EngineError::Revoked`] when the session was revoked meanwhile;
    /// [`EngineError::Anonymous`] for an anonymous session (it has no password to re-enter).
    pub async fn step_up(&self, session: &ValidSession<T>) -> Result<Issued<T>, EngineError> {
        require_user(session)?;
        self.recheck(session).await?;
        let now = self.now();
        let mut claims = session.claims.clone();
        claims.auth_time = now;
        claims.last_seen = now;
        self.seal(claims, now)
    }

    /// Privilege change: a new session id carrying the same data (or `data` when given), and the
    /// old id revoked. The absolute expiry is kept.
    ///
    /// Policy: if the shared store does not take the old id's revocation, regeneration still
    /// succeeds — the old id is revoked on this node at once and the backend retries until the
    /// store accepts it (as for a single logout); a warning is logged.
    ///
    /// # Errors
    /// [`EngineError::Seal`]; [`EngineError::Revoked`] when the session was revoked since it
    /// was validated ([`SessionEngine::recheck`]): a new id must not outlive a revoked one.
    pub async fn regenerate(
        &self,
        session: &ValidSession<T>,
        data: Option<T>,
    ) -> Result<Issued<T>, EngineError> {
        self.recheck(session).await?;
        let now = self.now();
        let mut claims = session.claims.clone();
        claims.session_id = new_session_id()?;
        claims.last_seen = now;
        if let Some(d) = data {
            claims.data = d;
        }
        let issued = self.seal(claims, now)?;
        if let Err(e) = self
            .inner
            .revocations
            .revoke_session(session.id(), session.claims.expires_at, now)
            .await
        {
            tracing::warn!(error = %crate::report::Chain(&e), "regenerated session's old id is revoked locally; the shared store will be retried");
        }
        Ok(issued)
    }

    /// Logout: revokes this session id until its absolute expiry.
    ///
    /// # Errors
    /// [`EngineError::Revocation`] when the shared store did not take it (enforced locally and
    /// retried in the background). Callers usually treat this as success:
    /// the cookie is cleared and the revocation is already in force on this node.
    pub async fn logout(&self, session: &ValidSession<T>) -> Result<(), EngineError> {
        self.inner
            .revocations
            .revoke_session(session.id(), session.claims.expires_at, self.now())
            .await?;
        Ok(())
    }

    /// Logout everywhere: every token of `user_id` issued before now dies. Returns the new
    /// minimum version.
    ///
    /// # Errors
    /// [`EngineError::Revocation`] when the shared store did not take it (enforced locally and
    /// retried in the background); [`EngineError::EmptyUserId`] for the empty user id, which
    /// names no user (anonymous sessions are logged out one by one).
    pub async fn logout_everywhere(&self, user_id: &str) -> Result<u64, EngineError> {
        if user_id.is_empty() {
            return Err(EngineError::EmptyUserId);
        }
        let now = self.now();
        let until = now.saturating_add(self.inner.config.absolute_timeout);
        Ok(self
            .inner
            .revocations
            .bump_user_version(user_id, now, until)
            .await?)
    }

    /// Every other session of the user dies, and this one continues under a new id and the
    /// new version, with a fresh `auth_time`. Re-checks revocation first
    /// ([`SessionEngine::recheck`]). For a password change use
    /// [`SessionEngine::change_password`], which also orders the store of the new password.
    ///
    /// # Errors
    /// As [`SessionEngine::logout_everywhere`], [`EngineError::Revoked`] and
    /// [`EngineError::Seal`]; [`EngineError::Anonymous`] for an anonymous session.
    pub async fn logout_other_sessions(
        &self,
        session: &ValidSession<T>,
    ) -> Result<Issued<T>, EngineError> {
        require_user(session)?;
        self.recheck(session).await?;
        let version = self.logout_everywhere(session.user_id()).await?;
        // A logout of this session while the version was raised: no new id for it.
        self.recheck_id_local(session)?;
        self.continue_at_version(session, version)
    }

    /// This session under a new id at `version`, freshly authenticated.
    fn continue_at_version(
        &self,
        session: &ValidSession<T>,
        version: u64,
    ) -> Result<Issued<T>, EngineError> {
        let now = self.now();
        let mut claims = session.claims.clone();
        claims.session_id = new_session_id()?;
        claims.version = version;
        claims.auth_time = now;
        claims.last_seen = now;
        self.seal(claims, now)
    }

    /// Password change, after the caller checked the current password: `store` saves the new
    /// one. Every other session of the user dies, including logins with the old password that
    /// overlapped the change; this one continues under a new id.
    ///
    /// The order is what makes it race-free:
    /// 1. re-check that this session is not revoked ([`SessionEngine::recheck`]);
    /// 2. raise the user's version (log out everywhere). If the shared store does not take it,
    ///    stop here: the password is unchanged (the logout is in force on this node and retried);
    /// 3. read the version back: higher means another logout landed meanwhile, so this session
    ///    is revoked and the password is not changed;
    /// 4. store the new password;
    /// 5. raise the version again. A login that checked the old password read its version
    ///    before that check ([`SessionEngine::begin_login`]), so before step 4, so below this
    ///    version: its token is revoked. If the shared store does not take this second raise it
    ///    is in force here and retried, and the change still succeeds;
    /// 6. check once more that this session's id was not revoked meanwhile (a logout of this
    ///    session while the password was stored: the password is changed, but this session
    ///    does not continue), and seal it under a new id at the new version.
    ///
    /// # Errors
    /// [`PasswordChangeError::Engine`] before the password is stored, or
    /// [`EngineError::Revoked`] after it when this session was logged out meanwhile;
    /// [`PasswordChangeError::Store`] when `store` fails; [`EngineError::Anonymous`] for an
    /// anonymous session (`store` is not run).
    pub async fn change_password<F, E>(
        &self,
        session: &ValidSession<T>,
        store: F,
    ) -> Result<Issued<T>, PasswordChangeError<E>>
    where
        F: Future<Output = Result<(), E>>,
    {
        require_user(session)?;
        self.recheck(session).await?;
        let user = session.user_id();
        let first = self.logout_everywhere(user).await?;
        let now_min = self
            .inner
            .revocations
            .current_version(user)
            .await
            .map_err(EngineError::from)?;
        if now_min > first {
            return Err(EngineError::Revoked(Revoked::UserVersion).into());
        }
        store.await.map_err(PasswordChangeError::Store)?;
        let version = match self.logout_everywhere(user).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %crate::report::Chain(&e), "password changed; the second logout is in force on this node and retried in the shared store");
                self.inner
                    .revocations
                    .current_version(user)
                    .await
                    .map_err(EngineError::from)?
            }
        };
        self.recheck_id_local(session)?;
        Ok(self.continue_at_version(session, version)?)
    }

    /// The Set-Cookie for an issued session.
    pub fn set_cookie(&self, issued: &Issued<T>) -> Cookie<'static> {
        self.inner
            .config
            .cookie
            .build(issued.token.clone(), issued.max_age)
    }

    /// The Set-Cookie that deletes the session cookie.
    pub fn clear_cookie(&self) -> Cookie<'static> {
        self.inner.config.cookie.clearing()
    }
}

/// The version to check a token's claims against the user's minimum with. An anonymous session
/// has no user, so no minimum applies: no version is below `u64::MAX`, and only its session-id
/// entry can revoke it (even if something raised a version for the empty user id).
#[inline]
fn version_checked<T>(claims: &Claims<T>) -> u64 {
    if claims.user_id.is_empty() {
        u64::MAX
    } else {
        claims.version
    }
}

/// [`EngineError::Anonymous`] for an anonymous session.
fn require_user<T>(session: &ValidSession<T>) -> Result<(), EngineError> {
    if session.is_anonymous() {
        Err(EngineError::Anonymous)
    } else {
        Ok(())
    }
}

fn new_session_id() -> Result<SessionId, EngineError> {
    SessionId::generate().map_err(|e| EngineError::Seal(SealError::Random(e)))
}
