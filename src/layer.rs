//! The tower layer: validates the session cookie once per request, refuses cross-origin unsafe
//! requests, and writes the resulting Set-Cookie on the response.
//!
//! Per request, [`SessionService`]:
//! 1. refuses an unsafe request (not GET/HEAD/OPTIONS/TRACE) from another origin with 403
//!    `CROSS_ORIGIN`, without calling the inner service (see [`LayerOptions::cross_origin_protection`]);
//! 2. finds the client address ([`client_ip`], from axum's `ConnectInfo<SocketAddr>`) and the
//!    client fingerprint ([`fingerprint_for`], by the engine's
//!    [`fingerprint`](crate::EngineConfig::fingerprint) mode). Without `ConnectInfo` (a server not started with
//!    `into_make_service_with_connect_info::<SocketAddr>()`, or a `oneshot` test) every client
//!    is `0.0.0.0` and `X-Forwarded-For` is ignored; a warning is logged once;
//! 3. reads every `Cookie` header, takes the values of the session cookie, and validates at most
//!    [`MAX_COOKIE_VALUES`] of them in order: the first that validates wins, so a cookie planted
//!    under the same name (say, from a sibling subdomain) cannot mask the real one. With none
//!    valid the outcome is the first rejection; with no value it is "no session"
//!    (`session_from_cookie_headers` is this step on its own);
//! 4. inserts the [`SessionContext`] into the request extensions for the extractors (get it
//!    back with [`SessionContext::from_extensions`]);
//! 5. on the response appends at most one Set-Cookie: the change a handler recorded (login,
//!    logout, regeneration…), else a renewed cookie when renewal is due, else — when the request
//!    carried a session cookie that was rejected — a clearing cookie, so browsers drop dead
//!    cookies instead of sending them forever;
//! 6. sets `Cache-Control` so no cache keeps session data ([`cache_control`] is this rule):
//!    - a response with any `Set-Cookie` (the layer's or one a handler built) gets `no-store`,
//!      replacing what the handler set: a cache must never replay a cookie to someone else;
//!    - a response to a request with a valid session gets `no-store` unless the handler's own
//!      `Cache-Control` already says `no-store` or `private` (browser-only caching is the
//!      handler's call). Anything else — none, `public`, a bare `max-age`, `no-cache` — is
//!      replaced: a shared cache keys on the URL, not the cookie, and would hand one user's
//!      page to the next;
//!    - any other response gets `no-store` unless the handler set a `Cache-Control` itself.
//!      It came through a session-aware stack, so it may depend on the cookie (a "please log
//!      in" page served to a logged-in user); a handler that knows it does not opts in.
//!
//!    To cache a response that never depends on the session (static assets) for signed-in users
//!    too, serve it outside the layer. The 403 `CROSS_ORIGIN` refusal gets `no-store` as well.
//!
//! Nothing a client sends in `Cookie` can make this layer fail: malformed, oversized and
//! duplicated cookies are rejected sessions (or no session), never errors.
//!
//! # The session index
//! With an index attached ([`SessionLayer::with_index`], or the [`builder`](crate::builder)),
//! the extractors keep it current themselves: a login adds the new session (and revokes the
//! sessions the per-user limit evicts), a logout removes it, a regeneration replaces it, a
//! logout everywhere or password change clears the user's list. Handlers make no index calls;
//! they list with [`Session::list_sessions`](crate::extract::Session::list_sessions). The index
//! is touched on those changes only, never on validation.

use std::any::Any;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use cookie::Cookie;
use http::header::{CACHE_CONTROL, COOKIE, HOST, ORIGIN, SET_COOKIE};
use http::uri::Authority;
use http::{Extensions, HeaderValue, Method, Request, StatusCode};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::audit::Auditor;
use crate::claims::{Claims, Fingerprint, SessionId};
use crate::client_ip::{TrustedProxies, client_ip};
use crate::engine::{Issued, Rejection, SessionEngine, ValidSession};
use crate::error::HttpError;
use crate::fingerprint::{CoarseUserAgent, FingerprintMode, fingerprint_for};
use crate::metrics;
use crate::session_index::{SessionEntry, SessionIndex};
use crate::token;

/// How many values of the session cookie one request may make us try. Browsers send one;
/// a planted duplicate makes two; more is an attack on our CPU.
pub const MAX_COOKIE_VALUES: usize = 8;

/// The `Sec-Fetch-Site` request header.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Application data a session can carry through the layer.
pub trait SessionData: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> SessionData for T {}

/// Layer settings. The [`Default`] is the safe one. What sessions are bound to is the engine's
/// setting ([`EngineConfig::fingerprint`](crate::EngineConfig::fingerprint)), read from it.
#[derive(Clone, Debug)]
pub struct LayerOptions {
    /// Proxies allowed to name the client in `X-Forwarded-For` (default: none).
    pub trusted_proxies: TrustedProxies,
    /// Refuse unsafe requests from other origins with 403 `CROSS_ORIGIN` (default true).
    /// SameSite cookies already stop most cross-site requests; this also covers same-site
    /// attackers (a sibling subdomain) and older browsers.
    ///
    /// An unsafe request (not GET/HEAD/OPTIONS/TRACE) is refused when `Sec-Fetch-Site` is
    /// `cross-site`, or when its `Origin` (including `null`) differs from the request's own
    /// origin: the `Host` header, with scheme https — http when the session cookie is not
    /// Secure — compared case-insensitively with default ports filled in. A proxy in front must
    /// therefore pass `Host` through unchanged (`X-Forwarded-Host` is not read). Requests with
    /// neither header (non-browser clients) pass.
    pub cross_origin_protection: bool,
    /// Further origins allowed to send unsafe requests (default: none). Parsed, so a layer is
    /// never built with one that cannot match: `"https://partner.example".parse()?`.
    pub allowed_origins: Vec<AllowedOrigin>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            trusted_proxies: TrustedProxies::none(),
            cross_origin_protection: true,
            allowed_origins: Vec::new(),
        }
    }
}

/// An origin allowed to send unsafe requests across origins ([`LayerOptions::allowed_origins`]):
/// `http(s)://host[:port]`, compared case-insensitively with default ports filled in.
///
/// ```
/// use sealed_sessions::layer::AllowedOrigin;
/// let origin: AllowedOrigin = "https://Partner.example/".parse().unwrap();
/// assert_eq!(origin.to_string(), "https://partner.example:443");
/// assert!("partner.example".parse::<AllowedOrigin>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedOrigin(Origin);

impl FromStr for AllowedOrigin {
    type Err = InvalidOrigin;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Origin::parse(s.trim().trim_end_matches('/'))
            .map(AllowedOrigin)
            .ok_or_else(|| InvalidOrigin(s.to_owned()))
    }
}

impl std::fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An IPv6 host keeps its brackets (`Authority::host`).
        let o = &self.0;
        write!(f, "{}://{}:{}", o.scheme, o.host, o.port)
    }
}

/// A string that is not `http(s)://host[:port]` (paths, user info, other schemes, `null`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed origin {0:?} is not scheme://host[:port]")]
pub struct InvalidOrigin(pub String);

/// A cookie change a handler recorded for its response.
#[derive(Clone)]
#[non_exhaustive]
pub enum CookieChange {
    /// Send this Set-Cookie (a new or re-sealed session).
    Set(Cookie<'static>),
    /// Send the clearing cookie.
    Clear,
}

impl std::fmt::Debug for CookieChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The Set variant holds a live token.
        match self {
            CookieChange::Set(_) => f.write_str("Set(..)"),
            CookieChange::Clear => f.write_str("Clear"),
        }
    }
}

struct ContextInner<T> {
    // The layer's settings, engine and auditor: one reference count per request.
    shared: Arc<Shared<T>>,
    outcome: Option<Result<ValidSession<T>, Rejection>>,
    fingerprint: Option<Fingerprint>,
    client_ip: IpAddr,
    // Written by handlers, read by the layer once the inner service is done. A plain mutex: it
    // is held only to swap an Option, never across an await.
    change: Mutex<Option<CookieChange>>,
}

/// What the layer learned about a request, for the extractors (in the request extensions, see
/// [`SessionContext::from_extensions`]).
///
/// Cheap to clone. The outcome is computed once per request; the cookie change slot is shared
/// with the layer, and the last change recorded wins.
pub struct SessionContext<T>(Arc<ContextInner<T>>);

/// The request extension the layer inserts: its [`SessionContext`] with the data type erased,
/// so an extractor asking for another type can say which type the layer has. One extension and
/// one allocation per request, as a typed one would be.
#[derive(Clone)]
struct ErasedContext {
    data_type: &'static str,
    inner: Arc<dyn Any + Send + Sync>,
}

/// Why a request has no [`SessionContext`] of the asked-for data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// No [`SessionLayer`] ran for this request.
    #[error("no session layer runs for this route")]
    LayerMissing,
    /// A [`SessionLayer`] ran, for another session data type: a wiring bug (say, a layer over
    /// `SessionEngine<()>` and a handler taking `Session<Cart>`).
    #[error("the session layer is for data `{layer}`, the handler asked for `{handler}`")]
    TypeMismatch {
        /// The layer's data type (`std::any::type_name`).
        layer: &'static str,
        /// The data type asked for.
        handler: &'static str,
    },
}

impl<T> Clone for SessionContext<T> {
    fn clone(&self) -> Self {
        SessionContext(self.0.clone())
    }
}

impl<T> std::fmt::Debug for SessionContext<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = match &self.0.outcome {
            None => "none",
            Some(Ok(_)) => "valid",
            Some(Err(r)) => r.code(),
        };
        f.debug_struct("SessionContext")
            .field("outcome", &outcome)
            .field("client_ip", &self.0.client_ip)
            .field("change", &*self.0.change.lock())
            .finish_non_exhaustive()
    }
}

impl<T: SessionData> SessionContext<T> {
    /// The context the layer put in a request's extensions.
    ///
    /// # Errors
    /// [`ContextError::LayerMissing`] when no [`SessionLayer`] ran for the request,
    /// [`ContextError::TypeMismatch`] when it is a layer for another data type.
    pub fn from_extensions(extensions: &Extensions) -> Result<SessionContext<T>, ContextError> {
        let erased = extensions
            .get::<ErasedContext>()
            .ok_or(ContextError::LayerMissing)?;
        match erased.inner.clone().downcast::<ContextInner<T>>() {
            Ok(inner) => Ok(SessionContext(inner)),
            Err(_) => Err(ContextError::TypeMismatch {
                layer: erased.data_type,
                handler: std::any::type_name::<T>(),
            }),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &SessionEngine<T> {
        &self.0.shared.engine
    }

    /// The validation outcome: `None` without a session cookie, else the first value that
    /// validated or the first rejection.
    pub fn outcome(&self) -> Option<&Result<ValidSession<T>, Rejection>> {
        self.0.outcome.as_ref()
    }

    /// The request's valid session (signed in or anonymous), if any.
    pub fn session(&self) -> Option<&ValidSession<T>> {
        self.0.outcome.as_ref().and_then(|o| o.as_ref().ok())
    }

    /// The session index attached to the layer, if any.
    pub fn index(&self) -> Option<&Arc<dyn SessionIndex>> {
        self.0.shared.index.as_ref()
    }

    /// The request's fingerprint under the layer's mode (`None` when off).
    pub fn fingerprint(&self) -> Option<&Fingerprint> {
        self.0.fingerprint.as_ref()
    }

    /// The client address: the socket peer or what a trusted proxy reported; `0.0.0.0` when
    /// the server was not started with `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn client_ip(&self) -> IpAddr {
        self.0.client_ip
    }

    /// The auditor (for login failures and throttling in handlers).
    pub fn auditor(&self) -> &Auditor {
        &self.0.shared.auditor
    }

    /// Records that the response must set this session's cookie.
    pub fn set_cookie(&self, issued: &Issued<T>) {
        *self.0.change.lock() = Some(CookieChange::Set(self.0.shared.engine.set_cookie(issued)));
    }

    /// Records that the response must clear the session cookie.
    pub fn clear_cookie(&self) {
        *self.0.change.lock() = Some(CookieChange::Clear);
    }

    /// The change recorded so far, if any.
    pub fn pending_change(&self) -> Option<CookieChange> {
        self.0.change.lock().clone()
    }

    /// Records a new session in the index (a signed-in one: anonymous sessions are not
    /// listed) with `label` (see [`user_agent_label`]), and revokes the sessions the per-user
    /// limit evicts. Best effort during an index outage: listing and the limit resume when the
    /// index is back, and the session works meanwhile.
    pub(crate) async fn index_added(&self, session: &ValidSession<T>, label: String) {
        let Some(index) = self.index() else { return };
        if session.is_anonymous() {
            return;
        }
        let c = session.claims();
        let entry = SessionEntry {
            session_id: c.session_id,
            created_at: c.created_at,
            expires_at: c.expires_at,
            user_agent: label,
        };
        let engine = self.engine();
        let now = engine.now();
        match index.add(&c.user_id, entry, now).await {
            // A shared index publishes these revocations in the same step as the eviction (so
            // they hold even when this reply is lost); revoking here as well makes them
            // effective on this node at once, not after its sync catches up.
            Ok(evicted) => {
                for e in evicted {
                    tracing::info!(target: "sealed_sessions::audit", event = "session_limit", user = %c.user_id, sid = %e.session_id.short_hash(), "oldest session revoked: concurrent-session limit");
                    if let Err(err) = engine
                        .revocations()
                        .revoke_session(e.session_id, e.expires_at, now)
                        .await
                    {
                        tracing::warn!(error = %err, "evicted session revoked locally; the shared store will be retried");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "session index unavailable; session not listed"),
        }
    }

    /// The label the index holds for a session of `user` (for the session that replaces it:
    /// the same client). `None` without an index, for an anonymous session, or when the index
    /// does not hold it (an index outage at its login).
    pub(crate) async fn index_label(&self, user: &str, session_id: SessionId) -> Option<String> {
        let index = self.index()?;
        if user.is_empty() {
            return None;
        }
        let listed = index.list(user, self.engine().now()).await.ok()?;
        listed
            .into_iter()
            .find(|e| e.session_id == session_id)
            .map(|e| e.user_agent)
    }

    /// Removes one session from the index (best effort: an entry left behind expires with its
    /// session).
    pub(crate) async fn index_removed(&self, user: &str, session_id: SessionId) {
        let Some(index) = self.index() else { return };
        if user.is_empty() {
            return;
        }
        if let Err(e) = index.remove(user, session_id).await {
            tracing::warn!(error = %e, "session index unavailable; entry expires on its own");
        }
    }

    /// Removes every session of the user from the index (logout everywhere).
    pub(crate) async fn index_cleared(&self, user: &str) {
        let Some(index) = self.index() else { return };
        if user.is_empty() {
            return;
        }
        if let Err(e) = index.clear(user).await {
            tracing::warn!(error = %e, "session index unavailable; entries expire on their own");
        }
    }
}

/// "Firefox on Linux": what a session list shows of a client, from its `User-Agent`.
pub(crate) fn user_agent_label(user_agent: Option<&HeaderValue>) -> String {
    let ua = user_agent.and_then(|v| v.to_str().ok()).unwrap_or("");
    let c = CoarseUserAgent::parse(ua);
    format!("{} on {}", c.browser, c.os)
}

/// An origin, normalized for comparison: lowercase scheme and host, explicit port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: &'static str,
    host: String,
    port: u16,
}

impl Origin {
    /// `scheme://host[:port]` with scheme http or https; `None` for anything else (including
    /// `null`, paths, user info).
    fn parse(s: &str) -> Option<Origin> {
        let (scheme, authority) = s.split_once("://")?;
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            "https"
        } else if scheme.eq_ignore_ascii_case("http") {
            "http"
        } else {
            return None;
        };
        Origin::from_authority(scheme, authority)
    }

    fn from_authority(scheme: &'static str, authority: &str) -> Option<Origin> {
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            return None;
        }
        let a = Authority::from_str(authority).ok()?;
        let default_port = if scheme == "https" { 443 } else { 80 };
        Some(Origin {
            scheme,
            host: a.host().to_ascii_lowercase(),
            port: a.port_u16().unwrap_or(default_port),
        })
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

struct Shared<T> {
    engine: SessionEngine<T>,
    // The engine's mode, copied: read on every request.
    fingerprint: FingerprintMode,
    trusted_proxies: TrustedProxies,
    cross_origin_protection: bool,
    allowed_origins: Vec<AllowedOrigin>,
    auditor: Auditor,
    // Kept current by the extractors on login, logout and regeneration; `None`: no listing.
    index: Option<Arc<dyn SessionIndex>>,
    // Warn once, not per request, when the server lacks ConnectInfo.
    warned_no_peer: Arc<AtomicBool>,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            engine: self.engine.clone(),
            fingerprint: self.fingerprint,
            trusted_proxies: self.trusted_proxies.clone(),
            cross_origin_protection: self.cross_origin_protection,
            allowed_origins: self.allowed_origins.clone(),
            auditor: self.auditor.clone(),
            index: self.index.clone(),
            warned_no_peer: self.warned_no_peer.clone(),
        }
    }
}

/// The session layer. Build once, apply with `Router::layer`.
///
/// ```
/// use axum::{Router, routing::get};
/// use sealed_sessions::layer::{LayerOptions, SessionLayer};
/// use sealed_sessions::extract::Session;
/// use sealed_sessions::{EngineConfig, Key, KeyId, KeyRing, SessionEngine};
///
/// async fn me(session: Session<String>) -> String {
///     format!("hello {}", session.user_id())
/// }
///
/// let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
/// let engine: SessionEngine<String> = SessionEngine::new(EngineConfig::default(), keys);
/// let layer = SessionLayer::new(engine, LayerOptions::default());
/// let app: Router = Router::new().route("/me", get(me)).layer(layer);
/// ```
///
/// `Router::layer` wraps each route in a boxed service of its own, which every request pays for
/// again. On a hot path, wrap the finished router once:
///
/// ```no_run
/// # use axum::{Router, routing::get};
/// # use sealed_sessions::layer::{LayerOptions, SessionLayer};
/// # use sealed_sessions::extract::Session;
/// # use sealed_sessions::{EngineConfig, Key, KeyId, KeyRing, SessionEngine};
/// # async fn me(session: Session<String>) -> String { session.user_id().to_owned() }
/// # async fn serve() -> std::io::Result<()> {
/// # let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
/// # let engine: SessionEngine<String> = SessionEngine::new(EngineConfig::default(), keys);
/// use axum::ServiceExt;
/// use tower::Layer as _;
///
/// let layer = SessionLayer::new(engine, LayerOptions::default());
/// let app = layer.layer(Router::new().route("/me", get(me)));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, ServiceExt::<axum::extract::Request>::into_make_service(app)).await
/// # }
/// ```
pub struct SessionLayer<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for SessionLayer<T> {
    fn clone(&self) -> Self {
        SessionLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<T> std::fmt::Debug for SessionLayer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("fingerprint", &self.shared.fingerprint)
            .field(
                "cross_origin_protection",
                &self.shared.cross_origin_protection,
            )
            .finish_non_exhaustive()
    }
}

impl<T: SessionData> SessionLayer<T> {
    /// A layer over `engine`, with the default anomaly detector and no session index. Sessions
    /// are bound to what the engine's [`fingerprint`](crate::EngineConfig::fingerprint) mode
    /// says.
    pub fn new(engine: SessionEngine<T>, options: LayerOptions) -> Self {
        SessionLayer {
            shared: Arc::new(Shared {
                fingerprint: engine.config().fingerprint(),
                engine,
                trusted_proxies: options.trusted_proxies,
                cross_origin_protection: options.cross_origin_protection,
                allowed_origins: options.allowed_origins,
                auditor: Auditor::default(),
                index: None,
                warned_no_peer: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    /// Uses this auditor (and so its anomaly detector).
    #[must_use]
    pub fn with_auditor(self, auditor: Auditor) -> Self {
        let mut shared = (*self.shared).clone();
        shared.auditor = auditor;
        SessionLayer {
            shared: Arc::new(shared),
        }
    }

    /// Attaches a session index: from then on the extractors keep it current on login, logout,
    /// regeneration and logout everywhere, and revoke what its per-user limit evicts (see the
    /// [module docs](self#the-session-index)). Give the engine's revocation backend the same
    /// shared store as the index (the [`builder`](crate::builder) does).
    #[must_use]
    pub fn with_index(self, index: Arc<dyn SessionIndex>) -> Self {
        let mut shared = (*self.shared).clone();
        shared.index = Some(index);
        SessionLayer {
            shared: Arc::new(shared),
        }
    }

    /// The attached session index, if any.
    pub fn index(&self) -> Option<&Arc<dyn SessionIndex>> {
        self.shared.index.as_ref()
    }

    /// The auditor: call `login_failed` / `throttled` on it from handlers.
    pub fn auditor(&self) -> &Auditor {
        &self.shared.auditor
    }

    /// The engine.
    pub fn engine(&self) -> &SessionEngine<T> {
        &self.shared.engine
    }
}

impl<S, T: SessionData> tower::Layer<S> for SessionLayer<T> {
    type Service = SessionService<S, T>;
    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around a handler or router.
pub struct SessionService<S, T> {
    inner: S,
    shared: Arc<Shared<T>>,
}

impl<S: Clone, T> Clone for SessionService<S, T> {
    fn clone(&self) -> Self {
        SessionService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, T> std::fmt::Debug for SessionService<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`SessionService`]: the inner service's future, then the
    /// response's cookie (no allocation of its own).
    pub struct ResponseFuture<F, T> {
        #[pin]
        state: State<F, T>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, T> {
        // Refused before the inner service (cross-origin).
        Refused { response: Option<Response> },
        Inner { #[pin] inner: F, ctx: SessionContext<T> },
    }
}

impl<F, E, T> Future for ResponseFuture<F, T>
where
    F: Future<Output = Result<Response, E>>,
    T: SessionData,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
            StateProj::Inner { inner, ctx } => {
                let mut response = std::task::ready!(inner.poll(cx))?;
                ctx.0.shared.finish(ctx, &mut response);
                Poll::Ready(Ok(response))
            }
        }
    }
}

impl<S, T, B> tower::Service<Request<B>> for SessionService<S, T>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    T: SessionData,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        if shared.refuses_cross_origin(&req) {
            metrics::cross_origin_refused();
            tracing::debug!(method = %req.method(), uri = %req.uri().path(), "cross-origin request refused");
            let refusal = HttpError::new(
                StatusCode::FORBIDDEN,
                "CROSS_ORIGIN",
                "cross-origin request refused",
            );
            let mut response = refusal.into_response();
            cache_control(response.headers_mut(), false);
            return ResponseFuture {
                state: State::Refused {
                    response: Some(response),
                },
            };
        }
        let ctx = Shared::context_for(shared, &req);
        req.extensions_mut().insert(ErasedContext {
            data_type: std::any::type_name::<T>(),
            inner: ctx.0.clone(),
        });
        // `self.inner` was polled ready, so it is the instance to call; the future it returns
        // owns what it needs (tower's contract), so no clone is left behind.
        ResponseFuture {
            state: State::Inner {
                inner: self.inner.call(req),
                ctx,
            },
        }
    }
}

impl<T: SessionData> Shared<T> {
    fn refuses_cross_origin<B>(&self, req: &Request<B>) -> bool {
        if !self.cross_origin_protection || is_safe(req.method()) {
            return false;
        }
        let headers = req.headers();
        let origin = headers.get(ORIGIN).map(|o| o.to_str().map(Origin::parse));
        // An explicitly allowed origin passes even when the browser calls it cross-site.
        if let Some(Ok(Some(o))) = &origin
            && self.allowed_origins.iter().any(|a| a.0 == *o)
        {
            return false;
        }
        let cross_site = headers
            .get(SEC_FETCH_SITE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if cross_site {
            return true;
        }
        match origin {
            None => false,
            // `null`, garbage, non-http schemes: an origin we cannot match is refused.
            Some(Err(_)) | Some(Ok(None)) => true,
            Some(Ok(Some(o))) => self.own_origin(req).is_none_or(|own| own != o),
        }
    }

    /// The origin this request was addressed to: the Host header (or the HTTP/2 authority), with
    /// https unless the session cookie is not Secure (plain-http development).
    fn own_origin<B>(&self, req: &Request<B>) -> Option<Origin> {
        let scheme = if self.engine.config().cookie().secure() {
            "https"
        } else {
            "http"
        };
        let host = match req.headers().get(HOST) {
            Some(h) => h.to_str().ok()?,
            None => req.uri().authority()?.as_str(),
        };
        Origin::from_authority(scheme, host)
    }

    fn peer_ip<B>(&self, req: &Request<B>) -> IpAddr {
        match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => client_ip(peer.ip(), req.headers(), &self.trusted_proxies),
            None => {
                if !self.warned_no_peer.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "no ConnectInfo<SocketAddr> on requests: serve with \
                         into_make_service_with_connect_info::<SocketAddr>(); every client \
                         counts as 0.0.0.0 and X-Forwarded-For is ignored"
                    );
                }
                // Without a peer we cannot know whether a proxy sent X-Forwarded-For, so we
                // trust nothing and use one shared placeholder address.
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }
        }
    }

    fn context_for<B>(this: &Arc<Self>, req: &Request<B>) -> SessionContext<T> {
        let client_ip = this.peer_ip(req);
        let fingerprint = fingerprint_for(this.fingerprint, req.headers(), client_ip);
        let outcome = this.validate_cookies(req, fingerprint.as_ref());
        if let Some(Ok(session)) = &outcome
            && session.fingerprint_changed()
        {
            this.auditor
                .fingerprint_mismatch(session.user_id(), session.id(), false);
        }
        SessionContext(Arc::new(ContextInner {
            shared: this.clone(),
            outcome,
            fingerprint,
            client_ip,
            change: Mutex::new(None),
        }))
    }

    fn validate_cookies<B>(
        &self,
        req: &Request<B>,
        fingerprint: Option<&Fingerprint>,
    ) -> Option<Result<ValidSession<T>, Rejection>> {
        let timer = metrics::validation_timer();
        let lines = req
            .headers()
            .get_all(COOKIE)
            .into_iter()
            .map(|v| v.as_bytes());
        let mut who = None;
        let (outcome, tried) =
            validate_cookie_lines(&self.engine, lines, fingerprint, |rejection, value| {
                who = self.identify(rejection, value);
            });
        if let Some(started) = timer
            && tried > 0
        {
            metrics::observe_validation(started.elapsed());
        }
        if let Some(Err(rejection)) = &outcome {
            self.auditor.rejected(
                rejection,
                who.as_ref().map(|(user, sid)| (user.as_str(), *sid)),
            );
        }
        outcome
    }

    /// Who a rejected token belonged to, for the audit log. Only tokens that authenticated
    /// (rejected for expiry, idleness, revocation or fingerprint) are opened again; an invalid
    /// token names nobody.
    fn identify(&self, rejection: &Rejection, value: &str) -> Option<(String, crate::SessionId)> {
        if matches!(rejection, Rejection::Invalid(_)) {
            return None;
        }
        let name = self.engine.config().cookie().name();
        let claims: Claims<T> = token::open(&self.engine.keys(), name, value).ok()?;
        Some((claims.user_id, claims.session_id))
    }

    fn finish(&self, ctx: &SessionContext<T>, response: &mut Response) {
        let change = ctx.0.change.lock().take();
        let cookie = match change {
            Some(CookieChange::Set(c)) => Some(c),
            Some(CookieChange::Clear) => Some(self.engine.clear_cookie()),
            None => match &ctx.0.outcome {
                // Under the `log` fingerprint policy a changed fingerprint is adopted here, so one
                // network change is one anomaly event, not one per renewal.
                Some(Ok(session)) if session.renewal_due() => {
                    match self.engine.renew_adopting(session, ctx.fingerprint()) {
                        Ok(issued) => {
                            self.auditor.renewed(session.user_id(), session.id());
                            Some(self.engine.set_cookie(&issued))
                        }
                        Err(e) => {
                            // The old cookie stays valid until its idle timeout; the response is
                            // not worth failing for a missed renewal.
                            tracing::error!(error = %crate::report::Chain(&e), "session renewal failed");
                            None
                        }
                    }
                }
                // Not loaded yet says nothing about the cookie: keep it.
                Some(Err(Rejection::NotSynced)) => None,
                Some(Err(_)) => Some(self.engine.clear_cookie()),
                Some(Ok(_)) | None => None,
            },
        };
        if let Some(cookie) = cookie {
            match HeaderValue::from_str(&cookie.to_string()) {
                Ok(v) => {
                    response.headers_mut().append(SET_COOKIE, v);
                }
                Err(_) => tracing::error!("session Set-Cookie is not a valid header value"),
            }
        }
        let had_session = matches!(ctx.0.outcome, Some(Ok(_)));
        cache_control(response.headers_mut(), had_session);
    }
}

/// Sets `Cache-Control` on a response the layer passes back, by the rule in the
/// [module docs](self): `no-store` on anything with `Set-Cookie`; on a response to a request
/// with a valid session (`had_session`) unless the handler already said `no-store` or (bare)
/// `private`; on any other response unless the handler set a `Cache-Control`.
///
/// ```
/// use http::HeaderMap;
/// use http::header::{CACHE_CONTROL, SET_COOKIE};
/// use sealed_sessions::layer::cache_control;
///
/// let mut h = HeaderMap::new();
/// h.insert(CACHE_CONTROL, "public, max-age=60".parse().unwrap());
/// cache_control(&mut h, false);
/// assert_eq!(h[CACHE_CONTROL], "public, max-age=60"); // anonymous: the handler decides
/// cache_control(&mut h, true);
/// assert_eq!(h[CACHE_CONTROL], "no-store"); // one user's page in a shared cache
///
/// let mut h = HeaderMap::new();
/// h.insert(CACHE_CONTROL, "private, max-age=60".parse().unwrap());
/// cache_control(&mut h, true);
/// assert_eq!(h[CACHE_CONTROL], "private, max-age=60"); // the browser's own cache only
/// h.insert(SET_COOKIE, "theme=dark".parse().unwrap());
/// cache_control(&mut h, true);
/// assert_eq!(h[CACHE_CONTROL], "no-store"); // never a cached Set-Cookie
/// ```
pub fn cache_control(headers: &mut http::HeaderMap, had_session: bool) {
    let keep = if headers.contains_key(SET_COOKIE) {
        false
    } else if had_session {
        keeps_out_of_shared_caches(headers)
    } else {
        headers.contains_key(CACHE_CONTROL)
    };
    if !keep {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Whether the response's `Cache-Control` (all of its header lines) has a `no-store` or a bare
/// `private` directive. `private="field"` does not count: it lets shared caches store the
/// response without those fields. An unreadable value counts as neither.
fn keeps_out_of_shared_caches(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|d| d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("private"))
}

/// The session in a request's `Cookie` headers, exactly as [`SessionLayer`] finds it: each
/// header value (raw bytes, decoded lossily so a non-UTF-8 byte spoils only the pair it is in)
/// is split into pairs, the values of the engine's cookie name are validated in order, at most
/// [`MAX_COOKIE_VALUES`] of them, and the first that validates wins.
///
/// Returns `None` when no (non-empty) value of the session cookie is present, else the valid
/// session or the first rejection. Never panics, whatever the bytes; the layer itself uses this
/// function, and the `cookie_header` fuzz target drives it (through `__fuzz`) with arbitrary
/// input.
pub(crate) fn session_from_cookie_headers<'h, T: SessionData>(
    engine: &SessionEngine<T>,
    headers: impl IntoIterator<Item = &'h [u8]>,
    fingerprint: Option<&Fingerprint>,
) -> Option<Result<ValidSession<T>, Rejection>> {
    validate_cookie_lines(engine, headers, fingerprint, |_, _| {}).0
}

/// [`session_from_cookie_headers`], also reporting how many values were validated and handing
/// the first rejection and its cookie value to `on_first_rejection` (for the audit log).
fn validate_cookie_lines<'h, T: SessionData>(
    engine: &SessionEngine<T>,
    headers: impl IntoIterator<Item = &'h [u8]>,
    fingerprint: Option<&Fingerprint>,
    mut on_first_rejection: impl FnMut(&Rejection, &str),
) -> (Option<Result<ValidSession<T>, Rejection>>, usize) {
    let settings = engine.config().cookie();
    let mut tried = 0usize;
    let mut first_rejection: Option<Rejection> = None;
    'headers: for line in headers {
        // Lossy: a non-UTF-8 byte spoils only the pair it is in, not the real cookie next to it.
        let line = match std::str::from_utf8(line) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(line),
        };
        for value in settings.values_in(&line).filter(|v| !v.is_empty()) {
            if tried == MAX_COOKIE_VALUES {
                break 'headers;
            }
            tried += 1;
            match engine.validate(value, fingerprint) {
                Ok(session) => {
                    if first_rejection.is_some() {
                        tracing::debug!("a session cookie value before the valid one was rejected");
                    }
                    return (Some(Ok(session)), tried);
                }
                Err(r) if first_rejection.is_none() => {
                    on_first_rejection(&r, value);
                    first_rejection = Some(r);
                }
                Err(_) => {}
            }
        }
    }
    (first_rejection.map(Err), tried)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn cookie_headers_are_read_up_to_the_value_cap_and_bad_bytes_spoil_one_pair() {
        use crate::{EngineConfig, Key, KeyId, KeyRing};
        let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
        let engine: SessionEngine<()> = SessionEngine::new(EngineConfig::default(), keys);
        let token = engine.issue("alice", (), None).await.unwrap().token;
        let valid = format!("__Host-session={token}");

        let mut bad = b"__Host-session=\xff\xfe; ".to_vec();
        bad.extend_from_slice(valid.as_bytes());
        let outcome = session_from_cookie_headers(&engine, [bad.as_slice()], None);
        assert_eq!(outcome.unwrap().unwrap().user_id(), "alice");

        // Garbage values spread over two headers, then the valid one: it is reached only while
        // the cap allows.
        for (garbage, reached) in [(MAX_COOKIE_VALUES - 1, true), (MAX_COOKIE_VALUES, false)] {
            let first = "__Host-session=x; ".repeat(garbage / 2);
            let second = format!(
                "{}{valid}",
                "__Host-session=y; ".repeat(garbage - garbage / 2)
            );
            let outcome =
                session_from_cookie_headers(&engine, [first.as_bytes(), second.as_bytes()], None)
                    .unwrap();
            assert_eq!(outcome.is_ok(), reached, "{garbage} garbage values");
            if let Err(r) = outcome {
                assert_eq!(r.code(), "INVALID");
            }
        }
    }

    #[test]
    fn origins_normalize_case_and_default_ports() {
        let a = Origin::parse("HTTPS://Example.COM").unwrap();
        let b = Origin::parse("https://example.com:443").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Origin::parse("http://example.com").unwrap());
        assert_ne!(a, Origin::parse("https://example.com:8443").unwrap());
        assert_eq!(
            Origin::parse("http://[::1]:80").unwrap(),
            Origin::parse("http://[::1]").unwrap()
        );
        for bad in [
            "null",
            "",
            "https://",
            "ftp://example.com",
            "https://a@example.com",
            "https://example.com/path",
            "example.com",
        ] {
            assert!(Origin::parse(bad).is_none(), "{bad:?}");
        }
    }
}
