//! axum extractors over the [`SessionLayer`](crate::layer::SessionLayer), and the one error type
//! for session handlers.
//!
//! - [`Session<T>`]: a valid session, or a 401 [`SessionRejection`] saying why not.
//! - `Option<Session<T>>`: `None` without a valid session. A cookie that was present but bad is
//!   also `None` here (the layer still clears it on the response and audits the rejection); use
//!   [`SessionManager::context`] to tell the two apart.
//! - [`Fresh<T, WINDOW_SECS>`]: a session whose last password check is recent, else 401
//!   `STEP_UP_REQUIRED`.
//! - [`SessionManager<T>`]: always succeeds under the layer; logs users in.
//!
//! The session-changing methods take the extractor by value and return the new [`Session`], so
//! a handler cannot go on using the claims of a session it has just replaced. Each records the
//! cookie change for the layer to send.
//!
//! Every extractor needs the layer with the same `T`. Without it they fail with 500
//! `SESSION_LAYER_MISSING`: that is a wiring bug, not a client error.
//!
//! # Error mapping
//! [`HttpError::from`] maps every [`Rejection`] and [`EngineError`] in one exhaustive `match`:
//!
//! | failure | status | code |
//! |---|---|---|
//! | no session cookie | 401 | `NO_SESSION` |
//! | [`Rejection`] | 401 | its [`code`](Rejection::code) |
//! | layer missing | 500 | `SESSION_LAYER_MISSING` |
//! | `SealError::TooLarge` | 500 | `SESSION_TOO_LARGE` (the application stores too much; the client cannot fix that, so not 413) |
//! | other `SealError` | 500 | `INTERNAL` |
//! | `RevocationError::Unavailable` | 503 | `REVOCATION_UNAVAILABLE` |

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::audit::Auditor;
use crate::claims::{Claims, SessionId};
use crate::engine::{
    self, EngineError, Issued, LoginTicket, PasswordChangeError, Rejection, SessionEngine,
};
use crate::layer::{SessionContext, SessionData};
use crate::revocation::RevocationError;
use crate::token::SealError;

/// An error a session handler returns: a status, a stable code and a message, sent as
/// `{"error": message, "code": code}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
}

impl HttpError {
    /// An error with this status, code and message.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> HttpError {
        HttpError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for HttpError {}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code });
        (self.status, Json(body)).into_response()
    }
}

/// Everything a session handler can fail with, for the one mapping below.
enum Failure<'a> {
    NoSession,
    LayerMissing,
    Rejected(&'a Rejection),
    Engine(&'a EngineError),
}

/// The one place failures become status, code and message. Exhaustive on purpose: a new
/// rejection or engine error does not compile until it has a wire code.
fn classify(failure: Failure<'_>) -> (StatusCode, &'static str, &'static str) {
    const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;
    match failure {
        Failure::NoSession => (UNAUTHORIZED, "NO_SESSION", "no session"),
        Failure::LayerMissing => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "SESSION_LAYER_MISSING",
            "session layer is not installed for this route",
        ),
        Failure::Rejected(Rejection::Invalid(_)) => (UNAUTHORIZED, "INVALID", "invalid session"),
        Failure::Rejected(Rejection::Expired) => (UNAUTHORIZED, "EXPIRED", "session expired"),
        Failure::Rejected(Rejection::IdleTimeout) => {
            (UNAUTHORIZED, "IDLE_TIMEOUT", "session idle for too long")
        }
        Failure::Rejected(Rejection::Revoked(_)) => (UNAUTHORIZED, "REVOKED", "session revoked"),
        Failure::Rejected(Rejection::FingerprintMismatch) => (
            UNAUTHORIZED,
            "FINGERPRINT_MISMATCH",
            "session used from a different client",
        ),
        Failure::Rejected(Rejection::NotSynced) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "REVOCATION_STALE",
            "revocation list not loaded yet; try again",
        ),
        Failure::Rejected(Rejection::StepUpRequired) => (
            UNAUTHORIZED,
            "STEP_UP_REQUIRED",
            "recent authentication required",
        ),
        Failure::Engine(EngineError::Seal(seal)) => match seal {
            SealError::TooLarge { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "SESSION_TOO_LARGE",
                "session data too large for a cookie",
            ),
            SealError::Encode(_) | SealError::Random(_) | SealError::CookieName => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "session could not be sealed",
            ),
        },
        Failure::Engine(EngineError::Revoked(_)) => (UNAUTHORIZED, "REVOKED", "session revoked"),
        Failure::Engine(EngineError::Revocation(RevocationError::Unavailable(_))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "REVOCATION_UNAVAILABLE",
            "revocation store unavailable; try again",
        ),
    }
}

impl From<Failure<'_>> for HttpError {
    fn from(f: Failure<'_>) -> HttpError {
        let (status, code, message) = classify(f);
        HttpError::new(status, code, message)
    }
}

impl From<&Rejection> for HttpError {
    fn from(r: &Rejection) -> HttpError {
        Failure::Rejected(r).into()
    }
}

impl From<Rejection> for HttpError {
    fn from(r: Rejection) -> HttpError {
        HttpError::from(&r)
    }
}

impl From<EngineError> for HttpError {
    fn from(e: EngineError) -> HttpError {
        let err = HttpError::from(Failure::Engine(&e));
        match &e {
            // Seal errors carry sizes and OS messages, nothing secret.
            EngineError::Seal(seal) => {
                tracing::error!(error = %crate::report::Chain(seal), code = err.code, "session operation failed")
            }
            // The backend reports its own details; its message may name its endpoint.
            EngineError::Revocation(_) => {
                tracing::warn!(code = err.code, "revocation store unavailable")
            }
            EngineError::Revoked(_) => {
                tracing::info!(
                    code = err.code,
                    "session revoked while its request was in flight"
                )
            }
        }
        err
    }
}

/// Why the [`Session`] extractor failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The request carried no session cookie: 401 `NO_SESSION`.
    NoSession,
    /// The cookie was rejected (or, for [`Fresh`], the session is not fresh): 401 with the
    /// rejection's code.
    Rejected(Rejection),
    /// No [`SessionLayer`](crate::layer::SessionLayer) with this data type runs for the route:
    /// 500 `SESSION_LAYER_MISSING`.
    LayerMissing,
}

impl From<&SessionRejection> for HttpError {
    fn from(r: &SessionRejection) -> HttpError {
        match r {
            SessionRejection::NoSession => Failure::NoSession.into(),
            SessionRejection::Rejected(r) => Failure::Rejected(r).into(),
            SessionRejection::LayerMissing => {
                tracing::error!("session extractor used without a SessionLayer of the same type");
                Failure::LayerMissing.into()
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
    parts
        .extensions
        .get::<SessionContext<T>>()
        .cloned()
        .ok_or(SessionRejection::LayerMissing)
}

/// A request's valid session (the extractor). See the [module docs](self).
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
    Replaced(engine::Session<T>),
}

impl<T: SessionData> Session<T> {
    /// The extractor over the context's validated session; `None` when there is none.
    fn validated(ctx: &SessionContext<T>) -> Option<Session<T>> {
        ctx.session()?;
        Some(Session {
            session: Current::Validated,
            ctx: ctx.clone(),
        })
    }

    /// A session issued during this request.
    fn replaced(session: engine::Session<T>, ctx: SessionContext<T>) -> Session<T> {
        Session {
            session: Current::Replaced(session),
            ctx,
        }
    }

    /// The engine's session value.
    pub fn session(&self) -> &engine::Session<T> {
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

    /// The user id.
    pub fn user_id(&self) -> &str {
        self.session().user_id()
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
    pub fn into_inner(self) -> engine::Session<T> {
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

    /// Logs out: revokes this session id and clears the cookie.
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
        Ok(())
    }

    /// Logs the user out of every session, this one included, and clears the cookie.
    ///
    /// # Errors
    /// 503 `REVOCATION_UNAVAILABLE` as for [`Session::logout`] (the cookie is still cleared).
    pub async fn logout_everywhere(self) -> Result<(), HttpError> {
        self.ctx.clear_cookie();
        self.auditor()
            .logged_out_everywhere(self.user_id(), self.id(), None);
        self.engine().logout_everywhere(self.user_id()).await?;
        Ok(())
    }

    /// Privilege change: the same session under a new id (with `data` if given); the old id is
    /// revoked.
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
        Ok(self.replaced_by(&issued))
    }

    /// Checks that the last password check (login or step-up) is within `window` (`None`: the
    /// engine's configured step-up window). [`Fresh`] does this in the extractor; call it
    /// directly when a route decides other things first (say, whether the account may do this
    /// at all).
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
    /// 401 `REVOKED` when the session was revoked while the request was in flight.
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

    /// Password change: every other session of the user dies; this one continues under a new id
    /// with a fresh authentication time.
    ///
    /// # Errors
    /// 401 `REVOKED` when the session was revoked while the request was in flight (nothing
    /// changed); 503 `REVOCATION_UNAVAILABLE` when the shared store did not take the revocation
    /// (it is in force on this node, this session included, so the cookie is cleared); 500 when
    /// sealing fails.
    pub async fn logout_other_sessions(self) -> Result<Session<T>, HttpError> {
        let result = self.engine().logout_other_sessions(self.session()).await;
        self.continued(result)
    }

    /// Password change after the caller checked the current password; `store` saves the new
    /// one. Every other session of the user dies, including logins with the old password that
    /// overlapped the change; this one continues under a new id. See
    /// [`SessionEngine::change_password`] for the order of the steps.
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
            Ok(issued) => Ok(self.continued(Ok(issued))?),
            Err(PasswordChangeError::Engine(e)) => {
                Err(PasswordChangeFailed::Session(self.failed(e)))
            }
            Err(PasswordChangeError::Store(e)) => {
                self.ctx.clear_cookie();
                Err(PasswordChangeFailed::Store(e))
            }
        }
    }

    /// The outcome of a change that logs out the user's other sessions and continues this one.
    fn continued(self, result: Result<Issued<T>, EngineError>) -> Result<Session<T>, HttpError> {
        match result {
            Ok(issued) => {
                self.auditor().logged_out_everywhere(
                    self.user_id(),
                    self.id(),
                    Some(issued.session.id()),
                );
                Ok(self.replaced_by(&issued))
            }
            Err(e) => Err(self.failed(e)),
        }
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

impl<T: SessionData> Session<T> {}

impl<S: Send + Sync, T: SessionData> FromRequestParts<S> for Session<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ctx = context::<T>(parts)?;
        match ctx.outcome() {
            None => Err(SessionRejection::NoSession),
            Some(Err(r)) => Err(SessionRejection::Rejected(r.clone())),
            Some(Ok(_)) => Session::validated(&ctx).ok_or(SessionRejection::NoSession),
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
        Ok(Session::validated(&ctx))
    }
}

/// A session whose last password check is within `WINDOW_SECS` seconds (0: the engine's
/// configured step-up window), else 401 `STEP_UP_REQUIRED`. For sensitive routes.
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

/// Logs users in. Extraction succeeds whenever the layer runs, with or without a session.
#[derive(Clone, Debug)]
pub struct SessionManager<T> {
    ctx: SessionContext<T>,
}

impl<T: SessionData> SessionManager<T> {
    /// Login, after the caller has checked the credentials: a new session with a fresh id
    /// whatever cookie came in (session fixation protection), bound to the request's
    /// fingerprint. A valid session the request carried is revoked, so a cookie planted before
    /// login stays useless after it.
    ///
    /// # Errors
    /// 500 `SESSION_TOO_LARGE` when `data` does not fit a cookie; 503 `REVOCATION_UNAVAILABLE`
    /// when the user's session version could not be read.
    pub async fn login(&self, user: impl Into<String>, data: T) -> Result<Session<T>, HttpError> {
        let ticket = self.begin_login(user).await?;
        self.login_with(ticket, data).await
    }

    /// Password login, step one: reads the user's session version *before* the caller checks
    /// the password, so a login that overlaps a password change cannot outlive it (see
    /// [`LoginTicket`]). Finish with [`SessionManager::login_with`].
    ///
    /// # Errors
    /// 503 `REVOCATION_UNAVAILABLE` when the user's session version could not be read.
    pub async fn begin_login(&self, user: impl Into<String>) -> Result<LoginTicket, HttpError> {
        Ok(self.ctx.engine().begin_login(user).await?)
    }

    /// Password login, step two, after the credentials check: as [`SessionManager::login`],
    /// sealed with the version `ticket` read before the check.
    ///
    /// # Errors
    /// 500 `SESSION_TOO_LARGE` when `data` does not fit a cookie.
    pub async fn login_with(&self, ticket: LoginTicket, data: T) -> Result<Session<T>, HttpError> {
        let engine = self.ctx.engine();
        if let Some(old) = self.ctx.session() {
            // Policy: a store outage does not block login. The old id is revoked on this node
            // already and the backend keeps retrying.
            if engine.logout(old).await.is_err() {
                tracing::warn!("revoking the replaced session failed in the shared store");
            }
            self.ctx.auditor().logged_out(old.user_id(), old.id());
        }
        let issued = engine.issue_ticket(ticket, data, self.ctx.fingerprint().copied())?;
        self.ctx
            .auditor()
            .created(issued.session.user_id(), issued.session.id());
        self.ctx.set_cookie(&issued);
        Ok(Session::replaced(issued.session, self.ctx.clone()))
    }

    /// The request's valid session, if any.
    pub fn current(&self) -> Option<Session<T>> {
        Session::validated(&self.ctx)
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
        Ok(SessionManager {
            ctx: context::<T>(parts)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::Revoked;
    use crate::token::TokenError;

    #[test]
    fn every_rejection_maps_to_401_with_its_own_code() {
        for r in [
            Rejection::Invalid(TokenError::Unauthentic),
            Rejection::Expired,
            Rejection::IdleTimeout,
            Rejection::Revoked(Revoked::Session),
            Rejection::FingerprintMismatch,
            Rejection::StepUpRequired,
        ] {
            let e = HttpError::from(&r);
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(e.code(), r.code());
        }
    }

    #[test]
    fn engine_errors_map_to_server_statuses() {
        let too_large = EngineError::Seal(SealError::TooLarge {
            size: 5000,
            limit: 4096,
        });
        let e = HttpError::from(too_large);
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::INTERNAL_SERVER_ERROR, "SESSION_TOO_LARGE")
        );
        let down = EngineError::Revocation(RevocationError::Unavailable(
            crate::revocation::StoreError::behind(),
        ));
        let e = HttpError::from(down);
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "REVOCATION_UNAVAILABLE")
        );
        let e = HttpError::from(SessionRejection::NoSession);
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::UNAUTHORIZED, "NO_SESSION")
        );
        let e = HttpError::from(SessionRejection::LayerMissing);
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code(), "SESSION_LAYER_MISSING");
    }
}
