//! The request body limit, as one layer that costs a body-less request nothing.
//!
//! A request whose `Content-Length` passes the limit gets 413 `PAYLOAD_TOO_LARGE` (JSON) before
//! anything reads it. A request with a body is passed on with the body capped at the limit
//! (a chunked body that runs past it fails the handler's read, which answers 413 as well) and
//! with axum's extractor limit set to the same value; a 413 that some other code answered in
//! plain text is turned into our JSON error. A request with no body (every `GET /me`) goes
//! straight to the inner service: no wrapping, no boxed future, no extension.
//!
//! A body must also arrive whole within the read timeout (`--body-read-timeout`, counted from
//! when the request's head arrived): a client that declares a body and then trickles it, or
//! stops, gets 408 `BODY_TIMEOUT` (JSON, connection closed) instead of holding a handler for as
//! long as it likes. The header-read timeout covers only the head.
//!
//! The same work used to be three stacked layers (axum's `DefaultBodyLimit`, tower-http's
//! `RequestBodyLimitLayer`, a `map_response` for the JSON 413) that every request paid for.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::Limited;
use sealed_sessions::HttpError;
use tower::{Layer, Service};

/// Caps request bodies at `max` bytes and at `read_timeout` to arrive (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer {
    max: usize,
    read_timeout: Duration,
}

impl BodyLimitLayer {
    /// A limit of `max` bytes, to arrive within `read_timeout`.
    pub fn new(max: usize, read_timeout: Duration) -> BodyLimitLayer {
        BodyLimitLayer { max, read_timeout }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            max: self.max,
            read_timeout: self.read_timeout,
        }
    }
}

/// The service of [`BodyLimitLayer`].
#[derive(Clone, Debug)]
pub struct BodyLimit<S> {
    inner: S,
    max: usize,
    read_timeout: Duration,
}

/// The body did not arrive within the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within the read timeout")]
struct BodyTimedOut;

pin_project_lite::pin_project! {
    /// A request body that fails with [`BodyTimedOut`] once its deadline passes before it has
    /// arrived whole, and says so through `fired`.
    struct Deadline<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: tokio::time::Sleep,
        fired: Arc<AtomicBool>,
    }
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if this.sleep.poll(cx).is_ready() {
            this.fired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn timed_out() -> Response {
    let mut resp = HttpError::new(
        StatusCode::REQUEST_TIMEOUT,
        "BODY_TIMEOUT",
        "request body not received in time",
    )
    .into_response();
    // The rest of the body will not be read: the connection cannot carry another request.
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

type Boxed = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

#[allow(missing_docs)] // the macro's generated projection types
mod limit_future {
    use super::*;
    pin_project_lite::pin_project! {
        /// The response future of [`BodyLimit`]: the inner future itself for a body-less request.
        #[project = LimitFutureProj]
        pub enum LimitFuture<F> {
            /// No body: the inner service's own future.
            Direct { #[pin] inner: F },
            /// A body, or a refusal.
            Boxed { inner: Boxed },
        }
    }

    impl<F: Future<Output = Result<Response, Infallible>>> Future for LimitFuture<F> {
        type Output = Result<Response, Infallible>;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project() {
                LimitFutureProj::Direct { inner } => inner.poll(cx),
                LimitFutureProj::Boxed { inner } => inner.as_mut().poll(cx),
            }
        }
    }
}
pub use limit_future::LimitFuture;

fn too_large() -> Response {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "request body too large",
    )
    .into_response()
}

/// Replaces a 413 that is not already our JSON error (a plain-text extractor rejection).
fn json_413(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        too_large()
    } else {
        resp
    }
}

impl<S> Service<Request<Body>> for BodyLimit<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = LimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max as u64) {
            return LimitFuture::Boxed {
                inner: Box::pin(std::future::ready(Ok(too_large()))),
            };
        }
        if req.body().is_end_stream() {
            return LimitFuture::Direct {
                inner: self.inner.call(req),
            };
        }
        let max = self.max;
        let fired = Arc::new(AtomicBool::new(false));
        let deadline = |body| Deadline {
            inner: body,
            sleep: tokio::time::sleep(self.read_timeout),
            fired: fired.clone(),
        };
        let req = req.map(|body| Body::new(Limited::new(deadline(body), max)));
        // The instance that was polled ready is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let mut limited = DefaultBodyLimit::max(max).layer(ready);
        LimitFuture::Boxed {
            inner: Box::pin(async move {
                let resp = limited.call(req).await?;
                if fired.load(Ordering::Relaxed) {
                    return Ok(timed_out());
                }
                Ok(json_413(resp))
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::{get, post};
    use tower::ServiceExt as _;

    fn app(max: usize) -> Router {
        Router::new()
            .route("/echo", post(|body: String| async move { body }))
            .route("/get", get(|| async { "reached" }))
            .layer(BodyLimitLayer::new(max, Duration::from_secs(10)))
    }

    /// A test body: `chunks` in order, then the end, or (`stall`) nothing more, ever (a client
    /// that stops sending).
    struct Frames {
        chunks: Vec<axum::body::Bytes>,
        stall: bool,
    }

    impl http_body::Body for Frames {
        type Data = axum::body::Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            if self.chunks.is_empty() {
                return if self.stall {
                    Poll::Pending
                } else {
                    Poll::Ready(None)
                };
            }
            let b = self.chunks.remove(0);
            Poll::Ready(Some(Ok(http_body::Frame::data(b))))
        }
    }

    /// A body of `n` bytes in two frames with no length known up front (as a chunked upload
    /// arrives).
    fn streamed(n: usize) -> Body {
        let half = axum::body::Bytes::from(vec![b'x'; n / 2]);
        let rest = axum::body::Bytes::from(vec![b'x'; n - n / 2]);
        Body::new(Frames {
            chunks: vec![half, rest],
            stall: false,
        })
    }

    async fn call(app: Router, req: Request<Body>) -> (StatusCode, String, Option<String>) {
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap(), ct)
    }

    #[tokio::test]
    async fn a_streamed_body_past_the_limit_gets_the_json_413() {
        let req = Request::post("/echo").body(streamed(17)).unwrap();
        let (status, body, ct) = call(app(16), req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(ct.unwrap().starts_with("application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "PAYLOAD_TOO_LARGE");
    }

    #[tokio::test]
    async fn a_streamed_body_within_the_limit_reaches_the_handler_whole() {
        let req = Request::post("/echo").body(streamed(16)).unwrap();
        let (status, body, _) = call(app(16), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "x".repeat(16));
    }

    #[tokio::test]
    async fn a_declared_length_past_the_limit_is_refused_without_calling_the_handler() {
        // The body is shorter than declared: the refusal must not wait for it.
        let req = Request::post("/echo")
            .header(header::CONTENT_LENGTH, "1000000")
            .body(Body::from("short"))
            .unwrap();
        let (status, body, _) = call(app(16), req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("PAYLOAD_TOO_LARGE"), "{body}");
    }

    /// A body that sends `first` and then nothing more, never ending (a client that stalls).
    fn stalled(first: &'static [u8]) -> Body {
        Body::new(Frames {
            chunks: vec![axum::body::Bytes::from_static(first)],
            stall: true,
        })
    }

    #[tokio::test]
    async fn a_body_that_stalls_gets_the_json_408_after_the_read_timeout() {
        let app = Router::new()
            .route("/echo", post(|body: String| async move { body }))
            .layer(BodyLimitLayer::new(1024, Duration::from_millis(100)));
        let req = Request::post("/echo")
            .header(header::CONTENT_LENGTH, "10")
            .body(stalled(b"{\"a\""))
            .unwrap();
        let started = std::time::Instant::now();
        let resp = app.oneshot(req).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(resp.headers()[header::CONNECTION], "close");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "BODY_TIMEOUT");
    }

    #[tokio::test]
    async fn a_handler_that_never_reads_the_body_is_not_cut_off() {
        // The deadline only bites while the body is being read.
        let app = Router::new()
            .route("/ignore", post(|| async { "answered" }))
            .layer(BodyLimitLayer::new(1024, Duration::from_millis(1)));
        let req = Request::post("/ignore").body(stalled(b"x")).unwrap();
        let (status, body, _) = call(app, req).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "answered"));
    }

    #[tokio::test]
    async fn a_request_without_a_body_goes_straight_through() {
        let req = Request::get("/get").body(Body::empty()).unwrap();
        assert!(req.body().is_end_stream());
        let (status, body, _) = call(app(0), req).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "reached"));
    }
}
