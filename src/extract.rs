//! axum extractors over the [`SessionLayer`](crate::layer::SessionLayer).
//!
//! - [`Session<T>`]: a valid signed-in session, or a 401 [`SessionRejection`] saying why not.
//! - `Option<Session<T>>`: `None` without a valid signed-in session. A cookie that was present
//!   but bad is also `None` here (the layer still clears it on the response and audits the
//!   rejection); use [`SessionManager::context`] to tell the two apart.
//! - [`Fresh<T, WINDOW_SECS>`]: a session whose last password check is recent, else 401
//!   `STEP_UP_REQUIRED`.
//! - [`SessionManager<T>`]: always succeeds under the layer; logs users in, starts anonymous
//!   sessions, hands out the current one.
//!
//! The session-changing methods take the extractor by value and return the new [`Session`], so
//! a handler cannot go on using the claims of a session it has just replaced. Each records the
//! cookie change for the layer to send and, when the layer has a session index, updates it.
//!
//! # Anonymous sessions
//! [`SessionManager::start_anonymous`] issues a session with no user (a cart, pre-login
//! state). [`Session`] and [`Fresh`] do not accept it — a handler that takes them gets a
//! signed-in user, as before guests existed — so a guest on such a route gets 401
//! `NO_SESSION`. Handlers that serve guests read [`SessionManager::anonymous`]. At login the
//! guest session is revoked and a user session with a new id replaces it (session fixation);
//! what data the user session carries is the handler's choice:
//!
//! ```
//! use sealed_sessions::extract::{SessionManager, Session};
//! use sealed_sessions::HttpError;
//! # type Cart = Vec<String>;
//!
//! async fn add_to_cart(sessions: SessionManager<Cart>) -> Result<(), HttpError> {
//!     match sessions.current().or_else(|| sessions.anonymous()) {
//!         Some(s) => {
//!             let mut cart = s.data().clone();
//!             cart.push("book".into());
//!             s.update(cart)?;
//!         }
//!         None => {
//!             sessions.start_anonymous(vec!["book".into()]).await?;
//!         }
//!     }
//!     Ok(())
//! }
//!
//! async fn login(sessions: SessionManager<Cart>) -> Result<(), HttpError> {
//!     // A real handler checks a password first.
//!     let cart = sessions.anonymous().map(|guest| guest.data().clone()).unwrap_or_default();
//!     sessions.login("alice", cart).await?;
//!     Ok(())
//! }
//! ```
//!
//! Every extractor needs the layer with the same `T`. Without it they fail with 500
//! `SESSION_LAYER_MISSING`, and with a layer of another data type with 500
//! `SESSION_TYPE_MISMATCH` naming both types: a wiring bug, not a client error. Failures map to
//! statuses and codes in [`crate::error`].

use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;
use std::time::Duration;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::USER_AGENT;
use http::request::Parts;

use crate::audit::Auditor;
use crate::claims::{Claims, SessionId};
use crate::engine::{
    EngineError, Issued, LoginTicket, PasswordChangeError, Rejection, SessionEngine, ValidSession,
};
use crate::error::Failure;
pub use crate::error::HttpError;
use crate::layer::{ContextError, SessionContext, SessionData, user_agent_label};
use crate::session_index::SessionEntry;

/// Why the [`Session`] extractor failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The request carried no session cookie, or an anonymous session where a signed-in one
    /// is needed: 401 `NO_SESSION`.
    NoSession,
    /// The cookie was rejected (or, for [`Fresh`], the session is not fresh): 401 with the
    /// rejection's code (503 `REVOCATION_STALE` for a list not loaded yet).
    Rejected(Rejection),
    /// No [`SessionLayer`](crate::layer::SessionLayer) runs for the route: 500
    /// `SESSION_LAYER_MISSING`.
    LayerMissing,
    /// A [`SessionLayer`](crate::layer::SessionLayer) runs for the route with another data
    /// type: 500 `SESSION_TYPE_MISMATCH`, the message naming both.
    TypeMismatch {
        /// The layer's data type.
        layer: &'static str,
        /// The data type the handler asked for.
        handler: &'static str,
    },
}

impl From<ContextError> for SessionRejection {
    fn from(e: ContextError) -> SessionRejection {
        match e {
            ContextError::LayerMissing => SessionRejection::LayerMissing,
            ContextError::TypeMismatch { layer, handler } => {
                SessionRejection::TypeMismatch { layer, handler }
            }
        }
    }
}

impl From<&SessionRejection> for HttpError {
    fn from(r: &SessionRejection) -> HttpError {
        match r {
            SessionRejection::NoSession => Failure::NoSession.into(),
            SessionRejection::Rejected(r) => Failure::Rejected(r).into(),
            SessionRejection::LayerMissing => {
                tracing::error!("session extractor used without a SessionLayer");
                Failure::LayerMissing.into()
            }
            &SessionRejection::TypeMismatch { layer, handler } => {
                tracing::error!(
                    layer_data = layer,
                    handler_data = handler,
                    "session extractor used under a SessionLayer of another data type"
                );
                Failure::TypeMismatch { layer, handler }.into()
            }
        }
    }
}

impl From<SessionRejection> for HttpError {
    fn from(r: SessionRejection) -> HttpError {
        HttpError::from(&r)
    }
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionRejection::NoSession => f.write_str("no session"),
            SessionRejection::Rejected(r) => write!(f, "{r}"),
            SessionRejection::LayerMissing => f.write_str("session layer missing"),
            SessionRejection::TypeMismatch { layer, handler } => write!(
                f,
                "session layer for data `{layer}`, handler asked for `{handler}`"
            ),
        }
    }
}

impl std::error::Error for SessionRejection {}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        HttpError::from(self).into_response()
    }
}

fn context<T: SessionData>(parts: &Parts) -> Result<SessionContext<T>, SessionRejection> {
    Ok(SessionContext::from_extensions(&parts.extensions)?)
}

/// A request's valid session (the extractor). See the [module docs](self).
///
/// Extracting it reads nothing but the layer's context: no header, no copy of the claims.
/// A session that replaces it under a new id (regeneration, password change) is listed in the
/// index with the label of the one it replaces (the same client).
#[derive(Clone, Debug)]
pub struct Session<T> {
    session: Current<T>,
    ctx: SessionContext<T>,
}

/// Where an extracted session's value lives: in the request's context (what the layer
/// validated; extracting it copies nothing), or here once a handler replaced it.
#[derive(Clone, Debug)]
enum Current<T> {
    /// The context's valid outcome.
    Validated,
    /// A session issued during this request (regenerate, step-up, update, login).
    Replaced(ValidSession<T>),
}

impl<T: SessionData> Session<T> {
    /// The extractor over the context's validated session; `None` when there is none, or when
    /// it is anonymous and `anonymous` is false (or signed in and `anonymous` is true).
    fn validated(ctx: &SessionContext<T>, anonymous: bool) -> Option<Session<T>> {
        if ctx.session()?.is_anonymous() != anonymous {
            return None;
        }
        Some(Session {
            session: Current::Validated,
            ctx: ctx.clone(),
        })
    }

    /// A session issued during this request.
    fn replaced(session: ValidSession<T>, ctx: SessionContext<T>) -> Session<T> {
        Session {
            session: Current::Replaced(session),
            ctx,
        }
    }

    /// The engine's session value.
    pub fn session(&self) -> &ValidSession<T> {
        match &self.session {
            Current::Replaced(s) => s,
            Current::Validated => match self.ctx.session() {
                Some(s) => s,
                // `validated` is the only constructor of this variant, and it checked; the
                // context's outcome never changes.
                None => unreachable!("Current::Validated without a valid outcome"),
            },
        }
    }

    /// The user id (empty for an anonymous session, see [`SessionManager::anonymous`]).
    pub fn user_id(&self) -> &str {
        self.session().user_id()
    }

    /// Whether this is an anonymous (guest) session. The extractor never yields one; only
    /// [`SessionManager::anonymous`] and [`SessionManager::start_anonymous`] do.
    pub fn is_anonymous(&self) -> bool {
        self.session().is_anonymous()
    }

    /// The application data.
    pub fn data(&self) -> &T {
        self.session().data()
    }

    /// The verified claims.
    pub fn claims(&self) -> &Claims<T> {
        self.session().claims()
    }

    /// The session id (log [`SessionId::short_hash`], not the id).
    pub fn id(&self) -> SessionId {
        self.session().id()
    }

    /// The request's session context.
    pub fn context(&self) -> &SessionContext<T> {
        &self.ctx
    }

    /// Takes the engine's session value out.
    pub fn into_inner(self) -> ValidSession<T> {
        match self.session {
            Current::Replaced(s) => s,
            Current::Validated => self.session().clone(),
        }
    }

    fn engine(&self) -> &SessionEngine<T> {
        self.ctx.engine()
    }

    fn auditor(&self) -> &Auditor {
        self.ctx.auditor()
    }

    fn replaced_by(self, issued: &Issued<T>) -> Session<T> {
        self.ctx.set_cookie(issued);
        Session::replaced(issued.session.clone(), self.ctx)
    }

    /// Logs out: revokes this session id, clears the cookie, and removes the session from the
    /// index.
    ///
    /// Policy: a shared-store outage does not fail a single logout. The id is revoked on this
    /// node at once, the backend retries until the store accepts it, and a warning is logged.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for backends with stricter policies.
    pub async fn logout(self) -> Result<(), HttpError> {
        self.ctx.clear_cookie();
        self.auditor().logged_out(self.user_id(), self.id());
        if let Err(e) = self.engine().logout(self.session()).await {
            tracing::warn!(error = %crate::report::Chain(&e), "logout is in force on this node; the shared store will be retried");
        }
        self.ctx.index_removed(self.user_id(), self.id()).await;
        Ok(())
    }

    /// Logs the user out of every session, this one included, clears the cookie and the user's
    /// session list. For an anonymous session (its own only session) this is
    /// [`Session::logout`].
    ///
    /// # Errors
    /// 503 `REVOCATION_UNAVAILABLE` when the shared store did not take the user's new version:
    /// unlike [`Session::logout`], which never fails, the caller learns of it, because the
    /// user's sessions on other nodes stay valid until the backend's retry reaches the store
    /// (this node enforces it at once; the cookie is still cleared).
    pub async fn logout_everywhere(self) -> Result<(), HttpError> {
        if self.is_anonymous() {
            return self.logout().await;
        }
        self.ctx.clear_cookie();
        self.auditor()
            .logged_out_everywhere(self.user_id(), self.id(), None);
        self.engine().logout_everywhere(self.user_id()).await?;
        self.ctx.index_cleared(self.user_id()).await;
        Ok(())
    }

    /// Privilege change: the same session under a new id (with `data` if given); the old id is
    /// revoked, and the index lists the new id in its place.
    ///
    /// # Errors
    /// 500 when sealing fails; 401 `REVOKED` when the session was revoked while the request
    /// was in flight (nothing changes, the cookie is cleared). A shared-store outage does not
    /// fail it (see [`SessionEngine::regenerate`]).
    pub async fn regenerate(self, data: Option<T>) -> Result<Session<T>, HttpError> {
        let issued = match self.engine().regenerate(self.session(), data).await {
            Ok(issued) => issued,
            Err(e) => return Err(self.failed(e)),
        };
        self.auditor()
            .regenerated(self.user_id(), self.id(), issued.session.id());
        self.reindex(&issued, false).await;
        Ok(self.replaced_by(&issued))
    }

    /// Checks that the last password check (login or step-up) is within `window` (`None`: the
    /// engine's configured step-up window). [`Fresh`] does this in the extractor; call it
    /// directly when a route decides other things first (say, whether the account may do this
    /// at all). An anonymous session is never fresh.
    ///
    /// # Errors
    /// 401 `STEP_UP_REQUIRED`.
    pub fn require_fresh(&self, window: Option<Duration>) -> Result<(), HttpError> {
        self.engine()
            .require_fresh(self.session(), window)
            .map_err(|r| SessionRejection::Rejected(r).into())
    }

    /// Step-up: the user just re-entered their password (checked by the caller); refreshes the
    /// authentication time.
    ///
    /// # Errors
    /// 500 when sealing fails.
    /// 401 `REVOKED` when the session was revoked while the request was in flight; 401
    /// `NO_SESSION` for an anonymous session.
    pub async fn step_up(self) -> Result<Session<T>, HttpError> {
        let issued = match self.engine().step_up(self.session()).await {
            Ok(issued) => issued,
            Err(e) => return Err(self.failed(e)),
        };
        self.auditor().step_up(self.user_id(), self.id());
        Ok(self.replaced_by(&issued))
    }

    /// Replaces the application data, keeping the session id. An older cookie of the same
    /// session still opens with the older data; when a rollback matters to security, use
    /// [`Session::regenerate`] with the new data (see [`SessionEngine::update`]).
    ///
    /// # Errors
    /// 500 `SESSION_TOO_LARGE` when the data does not fit a cookie; 401 `REVOKED` when the
    /// session was revoked on this node while the request was in flight.
    pub fn update(self, data: T) -> Result<Session<T>, HttpError> {
        let issued = match self.engine().update(self.session(), data) {
            Ok(issued) => issued,
            Err(e) => return Err(self.failed(e)),
        };
        Ok(self.replaced_by(&issued))
    }

    /// Every other session of the user dies; this one continues under a new id with a fresh
    /// authentication time, alone in the user's session list.
    ///
    /// # Errors
    /// 401 `REVOKED` when the session was revoked while the request was in flight (nothing
    /// changed); 503 `REVOCATION_UNAVAILABLE` when the shared store did not take the revocation
    /// (it is in force on this node, this session included, so the cookie is cleared); 500 when
    /// sealing fails; 401 `NO_SESSION` for an anonymous session.
    pub async fn logout_other_sessions(self) -> Result<Session<T>, HttpError> {
        let result = self.engine().logout_other_sessions(self.session()).await;
        self.continued(result).await
    }

    /// Password change after the caller checked the current password; `store` saves the new
    /// one. Every other session of the user dies, including logins with the old password that
    /// overlapped the change; this one continues under a new id, alone in the user's session
    /// list. See [`SessionEngine::change_password`] for the order of the steps.
    ///
    /// # Errors
    /// As [`Session::logout_other_sessions`]; when `store` fails, its error is returned in
    /// [`PasswordChangeFailed::Store`] (the user's sessions, this one included, were logged out).
    pub async fn change_password<F, E>(
        self,
        store: F,
    ) -> Result<Session<T>, PasswordChangeFailed<E>>
    where
        F: std::future::Future<Output = Result<(), E>>,
    {
        match self.engine().change_password(self.session(), store).await {
            Ok(issued) => Ok(self.continued(Ok(issued)).await?),
            Err(PasswordChangeError::Engine(e)) => {
                Err(PasswordChangeFailed::Session(self.failed(e)))
            }
            Err(PasswordChangeError::Store(e)) => {
                self.ctx.clear_cookie();
                self.ctx.index_cleared(self.user_id()).await;
                Err(PasswordChangeFailed::Store(e))
            }
        }
    }

    /// The user's live sessions, oldest first, from the session index (at most its per-user
    /// limit, the newest ones); this one among them (compare with [`Session::id`]). Empty for an
    /// anonymous session.
    ///
    /// # Errors
    /// 503 `INDEX_UNAVAILABLE` when the index does not answer; 500 `SESSION_INDEX_MISSING` when
    /// no index is attached to the layer.
    pub async fn list_sessions(&self) -> Result<Vec<SessionEntry>, HttpError> {
        let index = self.ctx.index().ok_or(Failure::IndexMissing)?;
        if self.is_anonymous() {
            return Ok(Vec::new());
        }
        index
            .list(self.user_id(), self.engine().now())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "session index unavailable");
                Failure::IndexUnavailable.into()
            })
    }

    /// Ends one of the user's own sessions, listed by [`Session::list_sessions`] ("log out
    /// that device"): revokes it until its expiry and removes it from the list. Ending this
    /// session is [`Session::logout`].
    ///
    /// # Errors
    /// 404 `NOT_FOUND` when `session_id` is not one of the user's live sessions (another
    /// user's sessions cannot be ended this way); as [`Session::list_sessions`].
    pub async fn end_session(self, session_id: SessionId) -> Result<(), HttpError> {
        let listed = self.list_sessions().await?;
        let entry = listed
            .into_iter()
            .find(|e| e.session_id == session_id)
            .ok_or(Failure::NotYourSession)?;
        if session_id == self.id() {
            return self.logout().await;
        }
        let engine = self.engine();
        if let Err(e) = engine
            .revocations()
            .revoke_session(session_id, entry.expires_at, engine.now())
            .await
        {
            tracing::warn!(error = %e, "session revoked locally; the shared store will be retried");
        }
        self.auditor().logged_out(self.user_id(), session_id);
        self.ctx.index_removed(self.user_id(), session_id).await;
        Ok(())
    }

    /// The outcome of a change that logs out the user's other sessions and continues this one.
    async fn continued(
        self,
        result: Result<Issued<T>, EngineError>,
    ) -> Result<Session<T>, HttpError> {
        match result {
            Ok(issued) => {
                self.auditor().logged_out_everywhere(
                    self.user_id(),
                    self.id(),
                    Some(issued.session.id()),
                );
                self.reindex(&issued, true).await;
                Ok(self.replaced_by(&issued))
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Lists `issued`, which replaces this session, under this one's label; this one leaves the
    /// list, and with `all` every other session of the user too.
    async fn reindex(&self, issued: &Issued<T>, all: bool) {
        if self.ctx.index().is_none() {
            return;
        }
        let label = self
            .ctx
            .index_label(self.user_id(), self.id())
            .await
            .unwrap_or_else(|| user_agent_label(None));
        if all {
            self.ctx.index_cleared(self.user_id()).await;
        } else {
            self.ctx.index_removed(self.user_id(), self.id()).await;
        }
        self.ctx.index_added(&issued.session, label).await;
    }

    /// A change that failed: when this session is dead on this node (revoked in flight, or the
    /// logout is in force here while the shared store retries), the cookie is cleared.
    fn failed(self, e: EngineError) -> HttpError {
        if matches!(e, EngineError::Revocation(_) | EngineError::Revoked(_)) {
            self.ctx.clear_cookie();
        }
        e.into()
    }
}

/// Why [`Session::change_password`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PasswordChangeFailed<E> {
    /// The session side failed before the new password was stored (revoked in flight, the
    /// shared store unavailable, sealing): answer with this error.
    Session(HttpError),
    /// The password store failed; the user's sessions were logged out.
    Store(E),
}

impl<E> From<HttpError> for PasswordChangeFailed<E> {
    fn from(e: HttpError) -> Self {
        PasswordChangeFailed::Session(e)
    }
}

impl<S: Send + Sync, T: SessionData> FromRequestParts<S> for Session<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ctx = context::<T>(parts)?;
        match ctx.outcome() {
            None => Err(SessionRejection::NoSession),
            Some(Err(r)) => Err(SessionRejection::Rejected(r.clone())),
            // An anonymous session is not a signed-in one.
            Some(Ok(_)) => Session::validated(&ctx, false).ok_or(SessionRejection::NoSession),
        }
    }
}

impl<S: Send + Sync, T: SessionData> OptionalFromRequestParts<S> for Session<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let ctx = context::<T>(parts)?;
        Ok(Session::validated(&ctx, false))
    }
}

/// A session whose last password check is within `WINDOW_SECS` seconds (0: the engine's
/// configured step-up window), else 401 `STEP_UP_REQUIRED`. For sensitive routes. Never an
/// anonymous session.
#[derive(Clone, Debug)]
pub struct Fresh<T, const WINDOW_SECS: u64 = 0>(pub Session<T>);

impl<T, const W: u64> Fresh<T, W> {
    /// The session.
    pub fn into_inner(self) -> Session<T> {
        self.0
    }
}

impl<T, const W: u64> Deref for Fresh<T, W> {
    type Target = Session<T>;
    fn deref(&self) -> &Session<T> {
        &self.0
    }
}

impl<S: Send + Sync, T: SessionData, const W: u64> FromRequestParts<S> for Fresh<T, W> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = <Session<T> as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        let window = (W > 0).then_some(Duration::from_secs(W));
        session
            .engine()
            .require_fresh(session.session(), window)
            .map_err(SessionRejection::Rejected)?;
        Ok(Fresh(session))
    }
}

/// Logs users in and starts anonymous sessions. Extraction succeeds whenever the layer runs,
/// with or without a session.
#[derive(Clone, Debug)]
pub struct SessionManager<T> {
    ctx: SessionContext<T>,
    // For the label of the index entry a login adds; taken only when the layer has an index.
    user_agent: Option<HeaderValue>,
}

impl<T: SessionData> SessionManager<T> {
    /// Login, after the caller has checked the credentials: a new session with a fresh id
    /// whatever cookie came in (session fixation protection), bound to the request's
    /// fingerprint. A valid session the request carried — a guest session, or another user's —
    /// is revoked, so a cookie planted before login stays useless after it. With a session
    /// index, the new session is listed and the sessions past the per-user limit are revoked.
    ///
    /// # Errors
    /// 500 `SESSION_TOO_LARGE` when `data` does not fit a cookie; 503 `REVOCATION_UNAVAILABLE`
    /// when the user's session version could not be read; 400 `BAD_REQUEST` for an empty user
    /// id.
    pub async fn login(&self, user: impl Into<String>, data: T) -> Result<Session<T>, HttpError> {
        let ticket = self.begin_login(user).await?;
        self.login_with(ticket, data).await
    }

    /// Password login, step one: reads the user's session version *before* the caller checks
    /// the password, so a login that overlaps a password change cannot outlive it (see
    /// [`LoginTicket`]). Finish with [`SessionManager::login_with`].
    ///
    /// # Errors
    /// 503 `REVOCATION_UNAVAILABLE` when the user's session version could not be read; 400
    /// `BAD_REQUEST` for an empty user id.
    pub async fn begin_login(&self, user: impl Into<String>) -> Result<LoginTicket, HttpError> {
        Ok(self.ctx.engine().begin_login(user).await?)
    }

    /// Password login, step two, after the credentials check: as [`SessionManager::login`],
    /// sealed with the version `ticket` read before the check.
    ///
    /// # Errors
    /// 500 `SESSION_TOO_LARGE` when `data` does not fit a cookie.
    pub async fn login_with(&self, ticket: LoginTicket, data: T) -> Result<Session<T>, HttpError> {
        let issued =
            self.ctx
                .engine()
                .issue_ticket(ticket, data, self.ctx.fingerprint().copied())?;
        self.replace_current().await;
        self.started(issued).await
    }

    /// Starts an anonymous (guest) session carrying `data`: for a cart or pre-login state. Like
    /// a login, it revokes the valid session the request carried, if any. It is not listed in
    /// any session index, and [`Session`] and [`Fresh`] do not accept it; read it back with
    /// [`SessionManager::anonymous`]. See the [module docs](self#anonymous-sessions).
    ///
    /// # Errors
    /// 500 `SESSION_TOO_LARGE` when `data` does not fit a cookie.
    pub async fn start_anonymous(&self, data: T) -> Result<Session<T>, HttpError> {
        let issued = self
            .ctx
            .engine()
            .issue_anonymous(data, self.ctx.fingerprint().copied())?;
        self.replace_current().await;
        self.started(issued).await
    }

    /// Revokes the session the request carried (before a new one replaces it). Policy: a store
    /// outage does not block a login; the old id is revoked on this node already and the
    /// backend keeps retrying.
    async fn replace_current(&self) {
        let Some(old) = self.ctx.session() else {
            return;
        };
        let engine = self.ctx.engine();
        if engine.logout(old).await.is_err() {
            tracing::warn!("revoking the replaced session failed in the shared store");
        }
        self.ctx.auditor().logged_out(old.user_id(), old.id());
        self.ctx.index_removed(old.user_id(), old.id()).await;
    }

    /// A new session is in force: audit, cookie, index.
    async fn started(&self, issued: Issued<T>) -> Result<Session<T>, HttpError> {
        self.ctx
            .auditor()
            .created(issued.session.user_id(), issued.session.id());
        self.ctx.set_cookie(&issued);
        if self.ctx.index().is_some() && !issued.session.is_anonymous() {
            let label = user_agent_label(self.user_agent.as_ref());
            self.ctx.index_added(&issued.session, label).await;
        }
        Ok(Session::replaced(issued.session, self.ctx.clone()))
    }

    /// The request's valid signed-in session, if any.
    pub fn current(&self) -> Option<Session<T>> {
        Session::validated(&self.ctx, false)
    }

    /// The request's valid anonymous session, if any: [`Session::is_anonymous`] is true, its
    /// user id is empty, and every method works on it except step-up and password change
    /// (401 `NO_SESSION`) and listing (an empty list).
    pub fn anonymous(&self) -> Option<Session<T>> {
        Session::validated(&self.ctx, true)
    }

    /// The client address (for throttling and audit).
    pub fn client_ip(&self) -> IpAddr {
        self.ctx.client_ip()
    }

    /// The auditor: report failed logins with [`Auditor::login_failed`].
    pub fn auditor(&self) -> &Auditor {
        self.ctx.auditor()
    }

    /// The request's session context (outcome, fingerprint, engine).
    pub fn context(&self) -> &SessionContext<T> {
        &self.ctx
    }
}

impl<S: Send + Sync, T: SessionData> FromRequestParts<S> for SessionManager<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ctx = context::<T>(parts)?;
        let user_agent = match ctx.index() {
            Some(_) => parts.headers.get(USER_AGENT).cloned(),
            None => None,
        };
        Ok(SessionManager { ctx, user_agent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn extractor_rejections_map_to_their_codes() {
        let e = HttpError::from(SessionRejection::NoSession);
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::UNAUTHORIZED, "NO_SESSION")
        );
        let e = HttpError::from(SessionRejection::LayerMissing);
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code(), "SESSION_LAYER_MISSING");
        let e = HttpError::from(SessionRejection::TypeMismatch {
            layer: "()",
            handler: "u32",
        });
        assert_eq!(e.code(), "SESSION_TYPE_MISMATCH");
        assert!(e.message().contains("`()`") && e.message().contains("`u32`"));
    }
}
