//! The tower layer: validates the session cookie once per request, refuses cross-origin unsafe
//! requests, and writes the resulting Set-Cookie on the response.
//!
//! Per request, [`SessionService`]:
//! 1. refuses an unsafe request (not GET/HEAD/OPTIONS/TRACE) from another origin with 403
//!    `CROSS_ORIGIN`, without calling the inner service (see [`LayerOptions::cross_origin_protection`]);
//! 2. finds the client address ([`client_ip`], from axum's `ConnectInfo<SocketAddr>`) and the
//!    client fingerprint ([`fingerprint_for`]). Without `ConnectInfo` (a server not started with
//!    `into_make_service_with_connect_info::<SocketAddr>()`, or a `oneshot` test) every client
//!    is `0.0.0.0` and `X-Forwarded-For` is ignored; a warning is logged once;
//! 3. reads every `Cookie` header, takes the values of the session cookie, and validates at most
//!    [`MAX_COOKIE_VALUES`] of them in order: the first that validates wins, so a cookie planted
//!    under the same name (say, from a sibling subdomain) cannot mask the real one. With none
//!    valid the outcome is the first rejection; with no value it is "no session"
//!    (`session_from_cookie_headers` is this step on its own);
//! 4. inserts a [`SessionContext`] into the request extensions for the extractors;
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
use http::{HeaderValue, Method, Request, StatusCode};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::audit::Auditor;
use crate::claims::{Claims, Fingerprint};
use crate::client_ip::{TrustedProxies, client_ip};
use crate::config::FingerprintPolicy;
use crate::engine::{Issued, Rejection, Session, SessionEngine};
use crate::extract::HttpError;
use crate::fingerprint::{FingerprintMode, fingerprint_for};
use crate::metrics;
use crate::token;

/// How many values of the session cookie one request may make us try. Browsers send one;
/// a planted duplicate makes two; more is an attack on our CPU.
pub const MAX_COOKIE_VALUES: usize = 8;

/// The `Sec-Fetch-Site` request header.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Application data a session can carry through the layer.
pub trait SessionData: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> SessionData for T {}

/// Layer settings. The [`Default`] is the safe one.
#[derive(Clone, Debug)]
pub struct LayerOptions {
    /// What sessions are bound to (default [`FingerprintMode::Off`]). Must agree with the engine's
    /// [`FingerprintPolicy`] (see [`FingerprintMode::policy`]).
    pub fingerprint: FingerprintMode,
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
    /// Further origins allowed to send unsafe requests, as `scheme://host[:port]`
    /// (default: none).
    pub allowed_origins: Vec<String>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            fingerprint: FingerprintMode::Off,
            trusted_proxies: TrustedProxies::none(),
            cross_origin_protection: true,
            allowed_origins: Vec::new(),
        }
    }
}

/// The layer cannot be built from these settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The fingerprint mode needs a different engine policy; without this check a `ua` mode on
    /// an engine with policy `Off` would silently enforce nothing.
    #[error("fingerprint mode {mode} needs engine policy {needed:?}, the engine has {engine:?}")]
    FingerprintPolicy {
        /// The layer's mode.
        mode: FingerprintMode,
        /// The policy that mode needs.
        needed: FingerprintPolicy,
        /// The engine's policy.
        engine: FingerprintPolicy,
    },
    /// An allowed origin is not `http(s)://host[:port]`.
    #[error("allowed origin {0:?} is not scheme://host[:port]")]
    Origin(String),
}

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
    outcome: Option<Result<Session<T>, Rejection>>,
    fingerprint: Option<Fingerprint>,
    client_ip: IpAddr,
    // Written by handlers, read by the layer once the inner service is done. A plain mutex: it
    // is held only to swap an Option, never across an await.
    change: Mutex<Option<CookieChange>>,
}

/// What the layer learned about a request, for the extractors (a request extension).
///
/// Cheap to clone. The outcome is computed once per request; the cookie change slot is shared
/// with the layer, and the last change recorded wins.
pub struct SessionContext<T>(Arc<ContextInner<T>>);

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
    /// The engine.
    pub fn engine(&self) -> &SessionEngine<T> {
        &self.0.shared.engine
    }

    /// The validation outcome: `None` without a session cookie, else the first value that
    /// validated or the first rejection.
    pub fn outcome(&self) -> Option<&Result<Session<T>, Rejection>> {
        self.0.outcome.as_ref()
    }

    /// The request's valid session, if any.
    pub fn session(&self) -> Option<&Session<T>> {
        self.0.outcome.as_ref().and_then(|o| o.as_ref().ok())
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
    fingerprint: FingerprintMode,
    trusted_proxies: TrustedProxies,
    cross_origin_protection: bool,
    allowed_origins: Vec<Origin>,
    auditor: Auditor,
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
/// let layer = SessionLayer::new(engine, LayerOptions::default()).unwrap();
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
/// let layer = SessionLayer::new(engine, LayerOptions::default()).unwrap();
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
    /// A layer over `engine`, with the default anomaly detector.
    ///
    /// # Errors
    /// [`LayerError::FingerprintPolicy`] when `options.fingerprint` needs another engine policy,
    /// [`LayerError::Origin`] for a malformed allowed origin.
    pub fn new(engine: SessionEngine<T>, options: LayerOptions) -> Result<Self, LayerError> {
        let needed = options.fingerprint.policy();
        if engine.config().fingerprint() != needed {
            return Err(LayerError::FingerprintPolicy {
                mode: options.fingerprint,
                needed,
                engine: engine.config().fingerprint(),
            });
        }
        let allowed_origins = options
            .allowed_origins
            .iter()
            .map(|o| {
                Origin::parse(o.trim().trim_end_matches('/'))
                    .ok_or_else(|| LayerError::Origin(o.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SessionLayer {
            shared: Arc::new(Shared {
                engine,
                fingerprint: options.fingerprint,
                trusted_proxies: options.trusted_proxies,
                cross_origin_protection: options.cross_origin_protection,
                allowed_origins,
                auditor: Auditor::default(),
                warned_no_peer: Arc::new(AtomicBool::new(false)),
            }),
        })
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
        req.extensions_mut().insert(ctx.clone());
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
            && self.allowed_origins.contains(o)
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
    ) -> Option<Result<Session<T>, Rejection>> {
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
) -> Option<Result<Session<T>, Rejection>> {
    validate_cookie_lines(engine, headers, fingerprint, |_, _| {}).0
}

/// [`session_from_cookie_headers`], also reporting how many values were validated and handing
/// the first rejection and its cookie value to `on_first_rejection` (for the audit log).
fn validate_cookie_lines<'h, T: SessionData>(
    engine: &SessionEngine<T>,
    headers: impl IntoIterator<Item = &'h [u8]>,
    fingerprint: Option<&Fingerprint>,
    mut on_first_rejection: impl FnMut(&Rejection, &str),
) -> (Option<Result<Session<T>, Rejection>>, usize) {
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
