//! The router: the session routes of [`super::handlers`], the page, `/healthz` and `/metrics`,
//! the JSON fallbacks, then the session layer and the body limit around it all
//! ([`build_router`]).

use std::sync::LazyLock;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use sealed_sessions::HttpError;
use sealed_sessions::layer::SessionService;
use serde_json::json;
use tower::Layer as _;

use super::body_limit::{BodyLimit, BodyLimitLayer};
use super::handlers;
use super::state::{AppState, UserData};

/// The browser page: static, no build step.
pub const PAGE: &str = include_str!("page.html");

/// The whole application: the router, inside the session layer, inside the body limit.
pub type App = BodyLimit<SessionService<Router, UserData>>;

/// The application over `state`: [`routes`] with the fallback and layers of [`finish`].
pub fn build_router(state: AppState) -> App {
    finish(routes(&state), state)
}

/// Every route: the session API, then the routes that need no session.
pub fn routes(state: &AppState) -> Router<AppState> {
    handlers::session_routes(state)
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// The JSON 404 fallback and the state, then the session layer and the body limit around the
/// whole router, once each. (`Router::layer` would wrap every route in another boxed service
/// and future that each request pays for.) Requests to the routes that need no session pass
/// through the session layer too: without a cookie that costs nothing, and a dead cookie sent
/// to the page gets cleared there as anywhere else.
pub fn finish(router: Router<AppState>, state: AppState) -> App {
    let limit = BodyLimitLayer::new(state.max_body_bytes, state.body_read_timeout);
    let session = state.layer.clone();
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    limit.layer(session.layer(router))
}

async fn not_found() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route")
}

/// The route exists, the method does not (axum adds the `Allow` header).
async fn method_not_allowed() -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not take that method",
    )
}

async fn healthz(State(state): State<AppState>) -> Response {
    let sync = state.engine.revocations().sync_status();
    let ready = state.revocations_ready();
    let stale = state.too_stale();
    let status = if !ready {
        "starting"
    } else if stale {
        "stale"
    } else if sync.synced {
        "ok"
    } else {
        "degraded"
    };
    let body = json!({
        "status": status,
        "revocation": {
            "backend": sync.backend,
            "synced": sync.synced,
            "lag_ms": sync.lag_ms,
        },
    });
    let status = if stale {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            sealed_sessions::metrics::record_revocation_gauges(&state.engine);
            crate::prometheus::handle().map_or_else(String::new, |h| h.render())
        },
    )
        .into_response()
}

/// The page's Content-Security-Policy: only its own inline script and style (by hash), requests
/// only to this origin, no framing.
static PAGE_CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = |tag: &str| {
        inline_block(PAGE, tag).map_or_else(
            || "'none'".to_owned(),
            |body| {
                let digest = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
                format!(
                    "'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
                )
            },
        )
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        hash("script"),
        hash("style")
    )
});

/// The text between `<tag>` and `</tag>` (the tag without attributes), as the browser hashes it.
fn inline_block<'a>(html: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = html.find(&open)? + open.len();
    let end = start + html[start..].find(&format!("</{tag}>"))?;
    Some(&html[start..end])
}

async fn page() -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    let h = resp.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&PAGE_CSP) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::throttle::{LoginThrottle, ThrottleConfig};
    use crate::auth::{PasswordVerifier, Role, UserStore};
    use crate::state::BodyLimits;
    use axum::body::Body;
    use http::Request;
    use sealed_sessions::builder::Sessions;
    use sealed_sessions::{Key, KeyId, KeyRing};
    use std::sync::Arc;
    use std::time::Duration;
    use tower::ServiceExt as _;

    pub(crate) async fn test_state(max_body_bytes: usize) -> AppState {
        let keys = KeyRing::single(KeyId::new("t1").unwrap(), Key::generate().unwrap());
        let sessions = Sessions::<UserData>::builder()
            .keys(keys)
            .max_sessions_per_user(None)
            .build()
            .await
            .unwrap();
        let users = Arc::new(UserStore::default());
        AppState::new(
            sessions,
            PasswordVerifier::new(users, 1),
            LoginThrottle::new(ThrottleConfig::default()),
            BodyLimits {
                max_bytes: max_body_bytes,
                read_timeout: Duration::from_secs(10),
            },
            None,
        )
    }

    async fn body_text(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn healthz_reports_the_memory_backend_in_sync() {
        let app = build_router(test_state(1024).await);
        let resp = app
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body_text(resp).await).unwrap();
        assert_eq!(
            v,
            json!({"status":"ok","revocation":{"backend":"memory","synced":true,"lag_ms":0}})
        );
    }

    #[tokio::test]
    async fn page_is_served_with_a_csp_that_allows_exactly_its_inline_script() {
        let app = build_router(test_state(1024).await);
        let resp = app
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let html = body_text(resp).await;
        for id in [
            "username",
            "password",
            "login-button",
            "whoami",
            "status",
            "logout-button",
            "logout-everywhere-button",
            "stepup-button",
            "me-refresh-button",
            "elevate-button",
            "session-list",
            "password-form",
            "me-idle-expires-at",
            "me-expires-at",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "missing #{id}");
        }
        // The CSP forbids inline handlers and style attributes; the page must not use them.
        assert!(!html.contains(" onclick="), "inline handler");
        assert!(!html.contains(" style=\""), "style attribute");
        assert_eq!(html.matches("<script>").count(), 1);
        assert_eq!(html.matches("<style>").count(), 1);
    }

    #[tokio::test]
    async fn routes_without_a_session_clear_a_dead_cookie_and_set_nothing_otherwise() {
        let state = test_state(1024).await;
        let name = state.engine.config().cookie().name().to_owned();
        let app = build_router(state);
        // No cookie: the session layer adds nothing.
        let resp = app
            .clone()
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get(header::SET_COOKIE).is_none());
        // A cookie that does not open, sent with the page: the page is served and the cookie
        // cleared, as on any session route.
        let resp = app
            .oneshot(
                Request::get("/")
                    .header(header::COOKIE, format!("{name}=garbage"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let cleared = resp.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            cleared.starts_with(&format!("{name}=;")) && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
    }

    #[tokio::test]
    async fn wrong_method_answers_json_405_with_the_allowed_methods() {
        let app = build_router(test_state(1024).await);
        for (method, path, allow) in [("GET", "/login", "POST"), ("POST", "/me", "GET,HEAD")] {
            let resp = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(method)
                        .uri(path)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(resp.headers()[header::ALLOW], allow, "{method} {path}");
            let v: serde_json::Value = serde_json::from_str(&body_text(resp).await).unwrap();
            assert_eq!(v["code"], "METHOD_NOT_ALLOWED", "{method} {path}");
            assert!(v["error"].is_string(), "{v}");
        }
    }

    #[tokio::test]
    async fn undecodable_path_segment_answers_json_400() {
        let state = test_state(1024).await;
        let name = state.engine.config().cookie().name().to_owned();
        let issued = state
            .engine
            .issue(
                "alice",
                UserData {
                    role: Role::User,
                    elevated: false,
                },
                None,
            )
            .await
            .unwrap();
        let app = build_router(state);
        // %FF is not UTF-8 once percent-decoded: axum's `Path` refuses it.
        let resp = app
            .oneshot(
                Request::delete("/sessions/%FF")
                    .header(header::COOKIE, format!("{name}={}", issued.token))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_str(&body_text(resp).await).unwrap();
        assert_eq!(v["code"], "BAD_REQUEST", "{v}");
    }

    #[tokio::test]
    async fn unknown_route_answers_json_not_found() {
        let app = build_router(test_state(1024).await);
        let resp = app
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_str(&body_text(resp).await).unwrap();
        assert_eq!(v["code"], "NOT_FOUND");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let state = test_state(16).await;
        let app = finish(
            routes(&state).route(
                "/echo",
                axum::routing::post(|body: String| async move { body }),
            ),
            state,
        );
        let req = |n: usize| {
            Request::post("/echo")
                .header(header::CONTENT_LENGTH, n)
                .body(Body::from("x".repeat(n)))
                .unwrap()
        };
        let resp = app.clone().oneshot(req(16)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = app.oneshot(req(17)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // JSON like every other error, though the limit layer refused it before any handler.
        let v: serde_json::Value = serde_json::from_str(&body_text(resp).await).unwrap();
        assert_eq!(v["code"], "PAYLOAD_TOO_LARGE");
    }
}
