//! [`HttpError`]: a status, a stable code and a message, and the one place session failures
//! become them.
//!
//! The layer (for its 403 `CROSS_ORIGIN`) and the extractors both import this module, not each
//! other. The `IntoResponse` impl (a JSON body `{"error": message, "code": code}`) needs feature
//! `axum`; the mapping does not.
//!
//! # Mapping
//! [`HttpError::from`] maps every [`Rejection`] and [`EngineError`] in one exhaustive `match`;
//! a rejection's code is its [`Rejection::code`], from the one list [`Rejection::CODES`]:
//!
//! | failure | status | code |
//! |---|---|---|
//! | no session cookie, or an anonymous session where a signed-in one is needed | 401 | `NO_SESSION` |
//! | [`Rejection::NotSynced`] | 503 | its [`code`](Rejection::code) |
//! | any other [`Rejection`] | 401 | its [`code`](Rejection::code) |
//! | no session layer for the route | 500 | `SESSION_LAYER_MISSING` |
//! | a session layer of another data type | 500 | `SESSION_TYPE_MISMATCH` (the message names both types) |
//! | `SealError::TooLarge` | 500 | `SESSION_TOO_LARGE` (the application stores too much; the client cannot fix that, so not 413) |
//! | other `SealError` | 500 | `INTERNAL` |
//! | [`EngineError::Revoked`] | 401 | `REVOKED` |
//! | [`EngineError::Revocation`] | 503 | `REVOCATION_UNAVAILABLE` |
//! | [`EngineError::Anonymous`] | 401 | `NO_SESSION` |
//! | [`EngineError::EmptyUserId`] | 400 | `BAD_REQUEST` |
//! | [`EngineError::NotSynced`] (issuing before the revocation list is loaded) | 503 | `REVOCATION_STALE` |
//! | no session index attached | 500 | `SESSION_INDEX_MISSING` |
//! | the session index unreachable | 503 | `INDEX_UNAVAILABLE` |
//! | ending a session that is not one of the user's | 404 | `NOT_FOUND` |

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;

use crate::engine::{EngineError, Rejection};
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

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for HttpError {
    fn into_response(self) -> axum::response::Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code });
        (self.status, axum::Json(body)).into_response()
    }
}

/// Everything a session handler can fail with, for the one mapping below.
#[derive(Debug)]
// Without `axum` only the engine's failures are mapped (no extractors, no layer).
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) enum Failure<'a> {
    /// No session cookie, or an anonymous session where a signed-in one is needed.
    NoSession,
    /// No session layer runs for the route.
    LayerMissing,
    /// A session layer runs, for another data type.
    TypeMismatch {
        layer: &'static str,
        handler: &'static str,
    },
    Rejected(&'a Rejection),
    Engine(&'a EngineError),
    /// Listing or ending sessions without a session index attached to the layer.
    IndexMissing,
    /// The session index did not answer.
    IndexUnavailable,
    /// The session to end is not one of the user's live sessions.
    NotYourSession,
}

/// The one place failures become status, code and message. Exhaustive on purpose: a new
/// rejection or engine error does not compile until it has a status.
fn classify(failure: Failure<'_>) -> (StatusCode, &'static str, Cow<'static, str>) {
    const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;
    const INTERNAL: StatusCode = StatusCode::INTERNAL_SERVER_ERROR;
    let (status, code, message): (_, _, &'static str) = match failure {
        Failure::NoSession => (UNAUTHORIZED, "NO_SESSION", "no session"),
        Failure::LayerMissing => (
            INTERNAL,
            "SESSION_LAYER_MISSING",
            "session layer is not installed for this route",
        ),
        Failure::TypeMismatch { layer, handler } => {
            let message = format!(
                "the session layer on this route is for session data `{layer}`, the handler asked for `{handler}`"
            );
            return (INTERNAL, "SESSION_TYPE_MISMATCH", message.into());
        }
        Failure::Rejected(r) => {
            let (status, message) = match r {
                Rejection::Invalid(_) => (UNAUTHORIZED, "invalid session"),
                Rejection::Expired => (UNAUTHORIZED, "session expired"),
                Rejection::IdleTimeout => (UNAUTHORIZED, "session idle for too long"),
                Rejection::Revoked(_) => (UNAUTHORIZED, "session revoked"),
                Rejection::FingerprintMismatch => {
                    (UNAUTHORIZED, "session used from a different client")
                }
                Rejection::StepUpRequired => (UNAUTHORIZED, "recent authentication required"),
                Rejection::NotSynced => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "revocation list not loaded yet; try again",
                ),
            };
            (status, r.code(), message)
        }
        Failure::Engine(EngineError::Seal(seal)) => match seal {
            SealError::TooLarge { .. } => (
                INTERNAL,
                "SESSION_TOO_LARGE",
                "session data too large for a cookie",
            ),
            // Encoding, randomness, a bad cookie name: nothing the client can change.
            _ => (INTERNAL, "INTERNAL", "session could not be sealed"),
        },
        Failure::Engine(EngineError::Revoked(r)) => {
            return classify(Failure::Rejected(&Rejection::Revoked(*r)));
        }
        Failure::Engine(EngineError::Revocation(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "REVOCATION_UNAVAILABLE",
            "revocation store unavailable; try again",
        ),
        Failure::Engine(EngineError::Anonymous) => {
            (UNAUTHORIZED, "NO_SESSION", "this needs a signed-in session")
        }
        Failure::Engine(EngineError::NotSynced) => {
            return classify(Failure::Rejected(&Rejection::NotSynced));
        }
        Failure::Engine(EngineError::EmptyUserId) => (
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "user id must not be empty",
        ),
        Failure::IndexMissing => (
            INTERNAL,
            "SESSION_INDEX_MISSING",
            "no session index is attached to the session layer",
        ),
        Failure::IndexUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "INDEX_UNAVAILABLE",
            "the session list is unavailable",
        ),
        Failure::NotYourSession => (
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such session of yours",
        ),
    };
    (status, code, Cow::Borrowed(message))
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
            EngineError::Anonymous | EngineError::EmptyUserId | EngineError::NotSynced => {
                tracing::debug!(code = err.code, error = %e, "session operation refused")
            }
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::{RevocationError, Revoked};
    use crate::token::TokenError;

    #[test]
    fn every_rejection_maps_to_its_own_code_from_the_one_list() {
        let all = [
            Rejection::Invalid(TokenError::Unauthentic),
            Rejection::Expired,
            Rejection::IdleTimeout,
            Rejection::Revoked(Revoked::Session),
            Rejection::FingerprintMismatch,
            Rejection::StepUpRequired,
            Rejection::NotSynced,
        ];
        let codes: Vec<&str> = all.iter().map(|r| HttpError::from(r).code()).collect();
        assert_eq!(codes, Rejection::CODES);
        for r in &all {
            let status = HttpError::from(r).status();
            let expected = if *r == Rejection::NotSynced {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(status, expected, "{r:?}");
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
        let e = HttpError::from(EngineError::Revoked(Revoked::UserVersion));
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::UNAUTHORIZED, "REVOKED")
        );
        let e = HttpError::from(EngineError::Anonymous);
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::UNAUTHORIZED, "NO_SESSION")
        );
    }

    #[test]
    fn a_type_mismatch_names_both_types() {
        let e = HttpError::from(Failure::TypeMismatch {
            layer: "()",
            handler: "alloc::string::String",
        });
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code(), "SESSION_TYPE_MISMATCH");
        assert!(e.message().contains("`()`"), "{}", e.message());
        assert!(
            e.message().contains("`alloc::string::String`"),
            "{}",
            e.message()
        );
    }
}
