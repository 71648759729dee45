//! The session API: login, me, logout, logout everywhere, step-up, password change, elevation.
//!
//! Every error is an [`HttpError`], `{"error": "...", "code": "..."}` with a 4xx/5xx status (a
//! 429 also says when to retry: `Refusal`); handlers never panic on client input.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use sealed_sessions::clock::UnixMillis;
use sealed_sessions::extract::{PasswordChangeFailed, Session, SessionManager};
use sealed_sessions::{HttpError, SessionId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use zeroize::Zeroizing;

use super::auth::password::{MAX_PASSWORD_BYTES as MAX_PASSWORD, check_new_password};
use super::auth::{Role, VerifyError};
use super::report;
use super::state::{AppState, UserData};

/// Longest username accepted (bytes).
const MAX_USERNAME: usize = 128;

type Sess = Session<UserData>;

/// The session routes, behind the staleness guard when it can fire: with `--max-staleness`, or
/// while the Redis revocation list has not been replayed yet. The session layer itself wraps the
/// whole application, once, around the finished router.
pub fn session_routes(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/auth/step-up", post(step_up))
        .route("/password", post(change_password))
        .route("/elevate", post(elevate))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}", delete(delete_session));
    // Only when it can fire: every layer costs each request a boxed clone and a future.
    // Readiness only ever goes from false to true, so a list ready now (memory-only, or Redis
    // replayed within the start-up wait) never needs the guard for it.
    if state.max_staleness.is_some() || !state.revocations_ready() {
        routes.layer(middleware::from_fn_with_state(
            state.clone(),
            fail_closed_when_stale,
        ))
    } else {
        routes
    }
}

/// Session routes answer 503 rather than trust a revocation list that may miss revocations: one
/// not replayed from Redis yet, or (`--max-staleness`) one out of sync for longer than allowed.
async fn fail_closed_when_stale(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, HttpError> {
    if !state.revocations_ready() {
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "REVOCATION_STALE",
            "revocation list not loaded from Redis yet",
        ));
    }
    if state.too_stale() {
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "REVOCATION_STALE",
            "revocation list is out of sync for longer than allowed",
        ));
    }
    Ok(next.run(req).await)
}

/// A handler's error when it checks a password: an [`HttpError`], or the login throttle's 429,
/// which also carries `Retry-After`.
#[derive(Debug)]
enum Refusal {
    Error(HttpError),
    /// 429 `TOO_MANY_ATTEMPTS`; `Retry-After` in whole seconds, rounded up, at least 1.
    TooManyAttempts {
        retry_after: Duration,
    },
}

impl From<HttpError> for Refusal {
    fn from(e: HttpError) -> Refusal {
        Refusal::Error(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Error(e) => e.into_response(),
            Refusal::TooManyAttempts { retry_after } => {
                let mut resp = HttpError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_ATTEMPTS",
                    "too many failed attempts; retry later",
                )
                .into_response();
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                resp
            }
        }
    }
}

fn bad_request(message: impl Into<Cow<'static, str>>) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

/// A JSON body, or 400 BAD_REQUEST with a JSON error (never axum's plain-text rejection).
fn body<T: DeserializeOwned>(body: Result<Json<T>, JsonRejection>) -> Result<T, HttpError> {
    match body {
        Ok(Json(b)) => Ok(b),
        Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "request body too large",
            ))
        }
        Err(e) => Err(bad_request(e.body_text())),
    }
}

fn rfc3339(t: UnixMillis) -> String {
    t.rfc3339().to_string()
}

fn verify_error(e: VerifyError) -> HttpError {
    match e {
        VerifyError::Busy => HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "BUSY",
            "too many password checks in progress; retry shortly",
        ),
        VerifyError::Internal(_) => HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "password check failed",
        ),
    }
}

fn invalid_credentials() -> HttpError {
    HttpError::new(
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
        "invalid username or password",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: Zeroizing<String>,
}

async fn login(
    State(state): State<AppState>,
    manager: SessionManager<UserData>,
    req: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Refusal> {
    let LoginBody { username, password } = body(req)?;
    if username.is_empty() || username.len() > MAX_USERNAME || password.len() > MAX_PASSWORD {
        return Err(bad_request("username or password length out of range").into());
    }
    let ip = manager.client_ip();
    // The attempt counts from here, so guesses sent in parallel cannot all pass the throttle
    // while the first ones are still being verified.
    let attempt = match state.throttle.begin(&username, ip) {
        Ok(attempt) => attempt,
        Err(t) => {
            let exists = state.users().get(&username).is_some();
            manager.auditor().login_throttled(&username, exists, ip);
            return Err(Refusal::TooManyAttempts {
                retry_after: t.retry_after,
            });
        }
    };
    // The user's version is read before the password check: a password change that lands
    // while this check runs raises the version past it, so this login dies with the others.
    let ticket = manager.begin_login(username.clone()).await?;
    let role = state
        .verifier
        .verify(&username, password)
        .await
        .map_err(verify_error)?;
    let Some(role) = role else {
        attempt.failed();
        let exists = state.users().get(&username).is_some();
        manager.auditor().login_failed(&username, exists, ip);
        return Err(invalid_credentials().into());
    };
    attempt.succeeded();
    // Revokes the session the request carried; lists the new one, revoking the sessions past
    // the per-user limit.
    let session = manager
        .login_with(
            ticket,
            UserData {
                role,
                elevated: false,
            },
        )
        .await?;
    Ok(Json(
        json!({ "user": session.user_id(), "role": role.as_str() }),
    ))
}

/// The body of `GET /me`, the request every page load makes, written straight from the claims:
/// `{"auth_time":…,"created_at":…,"elevated":…,"expires_at":…,"idle_expires_at":…,"role":…,
/// "session_id":…,"user":…}` (alphabetical, as `json!` wrote it). `expires_at` is the absolute
/// expiry; `idle_expires_at` is when the session idles out without another request. Only the
/// user id can need escaping; the times, the hex id, the role and the keys are fixed ASCII, so
/// they are copied rather than run through serde_json's escaper. What it buys, measured: 103 ns
/// per body against 1,030 ns through `serde_json::to_vec(&json!({…}))`, which cost more than
/// opening the cookie (medians; 2026-12-03, 2-core shared Intel Xeon; `cargo run --release -p
/// sealed-sessions-bench --example hand_paths`). A test checks the result against serde_json's
/// own encoding of the same fields.
#[doc(hidden)] // pub for `bench/examples/hand_paths.rs` only
pub fn me_json(c: &sealed_sessions::Claims<UserData>, idle_expires_at: UnixMillis) -> Vec<u8> {
    let mut out = Vec::with_capacity(288);
    let time = |out: &mut Vec<u8>, key: &[u8], t: UnixMillis| {
        out.extend_from_slice(key);
        out.push(b'"');
        out.extend_from_slice(t.rfc3339().as_bytes());
        out.push(b'"');
    };
    time(&mut out, b"{\"auth_time\":", c.auth_time);
    time(&mut out, b",\"created_at\":", c.created_at);
    out.extend_from_slice(if c.data.elevated {
        b",\"elevated\":true"
    } else {
        b",\"elevated\":false"
    });
    time(&mut out, b",\"expires_at\":", c.expires_at);
    time(&mut out, b",\"idle_expires_at\":", idle_expires_at);
    out.extend_from_slice(b",\"role\":\"");
    out.extend_from_slice(c.data.role.as_str().as_bytes());
    out.extend_from_slice(b"\",\"session_id\":\"");
    out.extend_from_slice(&c.session_id.to_hex());
    out.extend_from_slice(b"\",\"user\":");
    // Writing a &str into a Vec cannot fail.
    if serde_json::to_writer(&mut out, &c.user_id).is_err() {
        out.extend_from_slice(b"null");
    }
    out.push(b'}');
    out
}

/// When the session idles out if no further request comes: its last renewal plus the idle
/// timeout (from now when this response renews the cookie), never past the absolute expiry.
fn idle_expiry(session: &Sess) -> UnixMillis {
    let engine = session.context().engine();
    let s = session.session();
    let c = s.claims();
    let config = engine.config();
    let renewed = if s.renewal_due() {
        engine.now()
    } else {
        c.last_seen
    };
    renewed
        .saturating_add(config.idle_timeout())
        .min(c.expires_at)
        .min(c.created_at.saturating_add(config.absolute_timeout()))
}

async fn me(session: Sess) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        me_json(session.claims(), idle_expiry(&session)),
    )
        .into_response()
}

async fn logout(session: Sess) -> Result<Json<serde_json::Value>, HttpError> {
    session.logout().await?;
    Ok(Json(json!({ "status": "logged_out" })))
}

async fn logout_everywhere(session: Sess) -> Result<Json<serde_json::Value>, HttpError> {
    session.logout_everywhere().await?;
    Ok(Json(json!({ "status": "logged_out_everywhere" })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepUpBody {
    password: Zeroizing<String>,
}

async fn step_up(
    State(state): State<AppState>,
    session: Sess,
    req: Result<Json<StepUpBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Refusal> {
    let StepUpBody { password } = body(req)?;
    if password.len() > MAX_PASSWORD {
        return Err(bad_request("password too long").into());
    }
    check_own_password(&state, &session, password).await?;
    // Re-checks revocation: a session logged out while its password was checked gets 401
    // REVOKED, not a fresh cookie.
    let s = session.step_up().await?;
    Ok(Json(
        json!({ "user": s.user_id(), "auth_time": rfc3339(s.claims().auth_time) }),
    ))
}

/// The session's user re-entered their password (step-up, password change): checked under the
/// login throttle, so guessing through these routes is limited as at login.
async fn check_own_password(
    state: &AppState,
    session: &Sess,
    password: Zeroizing<String>,
) -> Result<(), Refusal> {
    let ip = session.context().client_ip();
    let user = session.user_id();
    let attempt = match state.throttle.begin(user, ip) {
        Ok(attempt) => attempt,
        Err(t) => {
            session.context().auditor().throttled(user, ip);
            return Err(Refusal::TooManyAttempts {
                retry_after: t.retry_after,
            });
        }
    };
    match state.verifier.verify(user, password).await {
        Ok(Some(_)) => {
            attempt.succeeded();
            Ok(())
        }
        Ok(None) => {
            attempt.failed();
            session.context().auditor().login_failed(user, true, ip);
            Err(invalid_credentials().into())
        }
        Err(e) => Err(verify_error(e).into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: Zeroizing<String>,
    new_password: Zeroizing<String>,
}

/// Why the new password hash was not stored.
enum StoreFailure {
    NoSuchUser,
    Failed(anyhow::Error),
}

/// `POST /password`: the current password is the re-authentication (a stolen cookie alone
/// cannot change it), counted by the login throttle like any password check.
async fn change_password(
    State(state): State<AppState>,
    session: Sess,
    req: Result<Json<PasswordBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Refusal> {
    let PasswordBody {
        current_password,
        new_password,
    } = body(req)?;
    if current_password.len() > MAX_PASSWORD {
        return Err(bad_request("current password too long").into());
    }
    // The rules `hash-password` applies too.
    if let Err(e) = check_new_password(&new_password) {
        return Err(bad_request(format!("new {e}")).into());
    }
    check_own_password(&state, &session, current_password).await?;
    let user = session.user_id().to_owned();
    let hash = state
        .verifier
        .hash(new_password)
        .await
        .map_err(verify_error)?;
    // The users file is rewritten (blocking I/O): on the blocking pool. The engine runs this
    // between its two logouts (see `SessionEngine::change_password`), after re-checking that
    // this session was not revoked while the body arrived and the passwords were checked.
    let users = state.verifier.users().clone();
    let name = user.clone();
    let store = async move {
        match tokio::task::spawn_blocking(move || users.set_password(&name, hash)).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(StoreFailure::NoSuchUser),
            Ok(Err(e)) => Err(StoreFailure::Failed(e)),
            Err(e) => Err(StoreFailure::Failed(anyhow::anyhow!(
                "password store task failed: {e}"
            ))),
        }
    };
    let s = match session.change_password(store).await {
        Ok(s) => s,
        Err(PasswordChangeFailed::Session(e)) => return Err(e.into()),
        Err(PasswordChangeFailed::Store(StoreFailure::NoSuchUser)) => {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                "NO_SUCH_USER",
                "user no longer exists",
            )
            .into());
        }
        Err(PasswordChangeFailed::Store(StoreFailure::Failed(e))) => {
            tracing::error!(user = %user, error = %report::chain(e.as_ref()), "could not store a new password");
            return Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "could not store the new password",
            )
            .into());
        }
        Err(_) => {
            return Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "password change failed",
            )
            .into());
        }
    };
    Ok(Json(
        json!({ "user": s.user_id(), "status": "password_changed" }),
    ))
}

async fn elevate(
    State(state): State<AppState>,
    session: Sess,
) -> Result<Json<serde_json::Value>, HttpError> {
    let capable = state
        .users()
        .get(session.user_id())
        .is_some_and(|u| u.role == Role::Admin);
    if !capable {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "this account cannot be elevated",
        ));
    }
    // Admin rights for a session are a sensitive change: they need a password entry (login or
    // step-up) within the step-up window, so a cookie stolen later than that cannot get them.
    session.require_fresh(None)?;
    let data = UserData {
        role: Role::Admin,
        elevated: true,
    };
    let s = session.regenerate(Some(data)).await?;
    Ok(Json(json!({
        "user": s.user_id(),
        "role": "admin",
        "elevated": true,
        "session_id": s.id().to_string(),
    })))
}

async fn list_sessions(session: Sess) -> Result<Json<serde_json::Value>, HttpError> {
    let list = session.list_sessions().await?;
    let current = session.id();
    let sessions: Vec<serde_json::Value> = list
        .iter()
        .map(|e| {
            json!({
                "session_id": e.session_id.to_string(),
                "created_at": rfc3339(e.created_at),
                "expires_at": rfc3339(e.expires_at),
                "user_agent": e.user_agent,
                "current": e.session_id == current,
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": sessions })))
}

async fn delete_session(
    id: Result<Path<String>, PathRejection>,
    session: Sess,
) -> Result<Json<serde_json::Value>, HttpError> {
    // A segment that does not percent-decode to UTF-8 gets the same JSON 400 as a malformed id.
    let Some(target) = id.ok().and_then(|Path(id)| SessionId::parse_hex(&id)) else {
        return Err(bad_request("session id must be 32 hex digits"));
    };
    // Only the caller's own sessions can be ended (404 NOT_FOUND otherwise).
    session.end_session(target).await?;
    Ok(Json(
        json!({ "status": "revoked", "session_id": target.to_string() }),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sealed_sessions::Claims;

    fn claims(user: &str, elevated: bool, role: Role) -> Claims<UserData> {
        Claims {
            session_id: SessionId::from_bytes(core::array::from_fn(|i| (i * 17) as u8)),
            user_id: user.to_owned(),
            version: 3,
            created_at: UnixMillis(1_767_225_600_123),
            auth_time: UnixMillis(1_767_225_700_456),
            last_seen: UnixMillis(1_767_225_800_789),
            expires_at: UnixMillis(1_767_312_000_000),
            fingerprint: None,
            data: UserData { role, elevated },
        }
    }

    #[test]
    fn me_json_is_what_serde_json_writes_for_the_same_fields() {
        for (user, elevated, role) in [
            ("alice", false, Role::User),
            ("admin", true, Role::Admin),
            // Everything the escaper must handle: quotes, backslashes, controls, non-ASCII.
            ("a\"b\\c\n\t\u{1}é😀</script>", false, Role::User),
            ("", true, Role::User),
        ] {
            let c = claims(user, elevated, role);
            let idle = UnixMillis(1_767_227_600_789);
            let ours = me_json(&c, idle);
            let expected = serde_json::to_vec(&json!({
                "auth_time": humantime::format_rfc3339_millis(c.auth_time.to_system_time()).to_string(),
                "created_at": humantime::format_rfc3339_millis(c.created_at.to_system_time()).to_string(),
                "elevated": elevated,
                "expires_at": humantime::format_rfc3339_millis(c.expires_at.to_system_time()).to_string(),
                "idle_expires_at": humantime::format_rfc3339_millis(idle.to_system_time()).to_string(),
                "role": role.as_str(),
                "session_id": c.session_id.to_string(),
                "user": user,
            }))
            .unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
