//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`):
//! audit events, rejections by reason, validation latency, revocation list sizes.
//!
//! The library only records; exporting is the application's: install any `metrics` recorder
//! (for Prometheus, `metrics-exporter-prometheus`), call [`describe`] once, and call
//! [`record_revocation_gauges`] before each scrape. The reference server does exactly that for
//! its `/metrics` route. Without the `metrics` feature every call here compiles to nothing.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `sealed_sessions_audit_events_total` | counter | `event` |
//! | `sealed_sessions_rejections_total` | counter | `reason` (a [`Rejection`](crate::Rejection) code) |
//! | `sealed_sessions_cross_origin_refused_total` | counter | |
//! | `sealed_sessions_validation_seconds` | histogram (one validation in [`VALIDATION_SAMPLE_EVERY`] per thread is timed) | |
//! | `sealed_sessions_revoked_sessions` | gauge | |
//! | `sealed_sessions_revoked_users` | gauge | |
//! | `sealed_sessions_revocation_bytes` | gauge | |
//! | `sealed_sessions_revocation_synced` | gauge (0/1) | |
//! | `sealed_sessions_revocation_lag_ms` | gauge | |

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::SessionEngine;
use crate::events::AuditEvent;

/// Counter: audit events by `event`.
pub const EVENTS: &str = "sealed_sessions_audit_events_total";
/// Counter: rejected cookies by `reason`.
pub const REJECTIONS: &str = "sealed_sessions_rejections_total";
/// Counter: unsafe requests refused as cross-origin.
pub const CROSS_ORIGIN: &str = "sealed_sessions_cross_origin_refused_total";
/// Histogram: seconds to validate a request's session cookies.
pub const VALIDATION: &str = "sealed_sessions_validation_seconds";
/// Gauge: revoked session ids held.
pub const REVOKED_SESSIONS: &str = "sealed_sessions_revoked_sessions";
/// Gauge: users with a minimum session version held.
pub const REVOKED_USERS: &str = "sealed_sessions_revoked_users";
/// Gauge: approximate bytes held by the revocation list.
pub const REVOCATION_BYTES: &str = "sealed_sessions_revocation_bytes";
/// Gauge: 1 when the revocation list is in sync.
pub const REVOCATION_SYNCED: &str = "sealed_sessions_revocation_synced";
/// Gauge: how far the revocation list may lag, in ms.
pub const REVOCATION_LAG: &str = "sealed_sessions_revocation_lag_ms";

/// The validation-latency histogram times one validation in this many (per thread).
pub const VALIDATION_SAMPLE_EVERY: u32 = 8;

/// Suggested histogram buckets for [`VALIDATION`]: validation takes microseconds, so 5 µs to
/// 50 ms.
pub const VALIDATION_BUCKETS: [f64; 10] = [
    5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 10e-3, 50e-3,
];

/// Describes every series to the installed recorder and registers each counter at 0 and the
/// histogram, so a scrape shows them before their first event. Call once after installing a recorder.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(EVENTS, "Session audit events by kind.");
        describe_counter!(REJECTIONS, "Rejected session cookies by reason.");
        describe_counter!(CROSS_ORIGIN, "Unsafe requests refused as cross-origin.");
        describe_histogram!(VALIDATION, "Time to validate a request's session cookies.");
        describe_gauge!(REVOKED_SESSIONS, "Revoked session ids held.");
        describe_gauge!(REVOKED_USERS, "Users with a minimum session version held.");
        describe_gauge!(
            REVOCATION_BYTES,
            "Approximate bytes held by the revocation list."
        );
        describe_gauge!(REVOCATION_SYNCED, "1 when the revocation list is in sync.");
        describe_gauge!(
            REVOCATION_LAG,
            "How far the revocation list may lag, in ms."
        );
        for e in AuditEvent::ALL {
            counter!(EVENTS, "event" => e.as_str()).increment(0);
        }
        for code in crate::engine::Rejection::CODES {
            counter!(REJECTIONS, "reason" => code).increment(0);
        }
        counter!(CROSS_ORIGIN).increment(0);
        // Registered so the histogram is rendered (empty) before its first sample.
        let _ = ::metrics::histogram!(VALIDATION);
    }
}

/// Counts an audit event.
pub(crate) fn audit_event(event: AuditEvent) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(EVENTS, "event" => event.as_str()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = event;
}

/// Counts a rejection by its code.
pub(crate) fn rejection(code: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(REJECTIONS, "reason" => code).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = code;
}

/// Counts a request refused by cross-origin protection.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) fn cross_origin_refused() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(CROSS_ORIGIN).increment(1);
}

/// A start time when this validation should be timed: one in [`VALIDATION_SAMPLE_EVERY`] on
/// each thread, the first one included. Reading the clock twice and recording a sample cost a
/// noticeable share of a whole `GET /me`; a sample describes the distribution as well as every
/// value would. Always `None` without the `metrics` feature.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) fn validation_timer() -> Option<std::time::Instant> {
    #[cfg(feature = "metrics")]
    {
        thread_local! {
            static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let n = CALLS.with(|c| {
            let n = c.get();
            c.set(n.wrapping_add(1));
            n
        });
        n.is_multiple_of(VALIDATION_SAMPLE_EVERY)
            .then(std::time::Instant::now)
    }
    #[cfg(not(feature = "metrics"))]
    None
}

/// Records how long one request's cookie validation took.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) fn observe_validation(took: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!(VALIDATION).record(took.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = took;
}

/// Sets the revocation gauges from `engine`'s list; call before rendering a scrape.
pub fn record_revocation_gauges<T: Serialize + DeserializeOwned + Clone>(
    engine: &SessionEngine<T>,
) {
    #[cfg(feature = "metrics")]
    {
        use ::metrics::gauge;
        let stats = engine.revocations().stats();
        let sync = engine.revocations().sync_status();
        gauge!(REVOKED_SESSIONS).set(stats.revoked_sessions as f64);
        gauge!(REVOKED_USERS).set(stats.user_versions as f64);
        gauge!(REVOCATION_BYTES).set(stats.approx_bytes as f64);
        gauge!(REVOCATION_SYNCED).set(if sync.synced { 1.0 } else { 0.0 });
        gauge!(REVOCATION_LAG).set(sync.lag_ms as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = engine;
}
