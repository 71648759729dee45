//! Prometheus metrics: audit events, rejections by reason, validation latency, revocation list
//! sizes.
//!
//! Rendering uses `metrics-exporter-prometheus`, but its recorder is *not* installed as the
//! process-global one: [`Metrics`] owns a recorder and keeps handles to its own series, so a
//! library never fights the application over the global slot and two engines in one process (or
//! one test binary) keep separate numbers.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `sealed_sessions_audit_events_total` | counter | `event` |
//! | `sealed_sessions_rejections_total` | counter | `reason` (a rejection code) |
//! | `sealed_sessions_cross_origin_refused_total` | counter | |
//! | `sealed_sessions_validation_seconds` | histogram (one validation in [`VALIDATION_SAMPLE_EVERY`] per thread is timed) | |
//! | `sealed_sessions_revoked_sessions` | gauge | |
//! | `sealed_sessions_revoked_users` | gauge | |
//! | `sealed_sessions_revocation_bytes` | gauge | |
//! | `sealed_sessions_revocation_synced` | gauge (0/1) | |
//! | `sealed_sessions_revocation_lag_ms` | gauge | |

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::audit::AuditEvent;
use crate::engine::SessionEngine;

const EVENTS: &str = "sealed_sessions_audit_events_total";
const REJECTIONS: &str = "sealed_sessions_rejections_total";
const CROSS_ORIGIN: &str = "sealed_sessions_cross_origin_refused_total";
const VALIDATION: &str = "sealed_sessions_validation_seconds";
/// The validation-latency histogram times one validation in this many (per thread).
pub const VALIDATION_SAMPLE_EVERY: u32 = 8;
const REVOKED_SESSIONS: &str = "sealed_sessions_revoked_sessions";
const REVOKED_USERS: &str = "sealed_sessions_revoked_users";
const REVOCATION_BYTES: &str = "sealed_sessions_revocation_bytes";
const REVOCATION_SYNCED: &str = "sealed_sessions_revocation_synced";
const REVOCATION_LAG: &str = "sealed_sessions_revocation_lag_ms";

/// Validation takes microseconds; buckets from 5 µs to 50 ms.
const VALIDATION_BUCKETS: [f64; 10] = [
    5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 10e-3, 50e-3,
];

/// Histogram samples are buffered until drained; drain every this many so memory stays bounded
/// even when nobody scrapes.
const UPKEEP_EVERY: u64 = 4096;

/// Every rejection code, so each series exists (at 0) before its first event.
const REJECTION_CODES: [&str; 7] = [
    "INVALID",
    "EXPIRED",
    "IDLE_TIMEOUT",
    "REVOKED",
    "FINGERPRINT_MISMATCH",
    "STEP_UP_REQUIRED",
    "REVOCATION_STALE",
];

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    // Indexed by `AuditEvent::index`, registered once so counting is one atomic add.
    events: Vec<Counter>,
    cross_origin: Counter,
    validation: Histogram,
    revoked_sessions: Gauge,
    revoked_users: Gauge,
    revocation_bytes: Gauge,
    revocation_synced: Gauge,
    revocation_lag: Gauge,
    samples: AtomicU64,
}

/// The session metrics. Cheap to clone; clones share the series.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()))
}

impl Metrics {
    /// Fresh series, all at zero.
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new();
        // `set_buckets` fails only for an empty list; fall back to summaries rather than panic.
        let builder = builder
            .set_buckets(&VALIDATION_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, help: &'static str| {
            recorder.describe_counter(name.into(), None, help.into());
        };
        describe(EVENTS, "Session audit events by kind.");
        describe(REJECTIONS, "Rejected session cookies by reason.");
        describe(CROSS_ORIGIN, "Unsafe requests refused as cross-origin.");
        describe(VALIDATION, "Time to validate a request's session cookies.");
        describe(REVOKED_SESSIONS, "Revoked session ids held.");
        describe(REVOKED_USERS, "Users with a minimum session version held.");
        describe(
            REVOCATION_BYTES,
            "Approximate bytes held by the revocation list.",
        );
        describe(REVOCATION_SYNCED, "1 when the revocation list is in sync.");
        describe(
            REVOCATION_LAG,
            "How far the revocation list may lag, in ms.",
        );
        let events = AuditEvent::ALL
            .iter()
            .map(|e| counter(&recorder, EVENTS, Some(("event", e.as_str()))))
            .collect();
        for code in REJECTION_CODES {
            counter(&recorder, REJECTIONS, Some(("reason", code))).increment(0);
        }
        let gauge =
            |name: &'static str| recorder.register_gauge(&Key::from_name(name), &metadata());
        let inner = Inner {
            events,
            cross_origin: counter(&recorder, CROSS_ORIGIN, None),
            validation: recorder.register_histogram(&Key::from_name(VALIDATION), &metadata()),
            revoked_sessions: gauge(REVOKED_SESSIONS),
            revoked_users: gauge(REVOKED_USERS),
            revocation_bytes: gauge(REVOCATION_BYTES),
            revocation_synced: gauge(REVOCATION_SYNCED),
            revocation_lag: gauge(REVOCATION_LAG),
            samples: AtomicU64::new(0),
            handle,
            recorder,
        };
        Metrics(Arc::new(inner))
    }

    /// Counts an audit event.
    pub fn audit_event(&self, event: AuditEvent) {
        if let Some(c) = self.0.events.get(event.index()) {
            c.increment(1);
        }
    }

    /// Counts a rejection by its code (a [`Rejection::code`](crate::engine::Rejection::code)).
    pub fn rejection(&self, code: &'static str) {
        counter(&self.0.recorder, REJECTIONS, Some(("reason", code))).increment(1);
    }

    /// Counts a request refused by cross-origin protection.
    pub fn cross_origin_refused(&self) {
        self.0.cross_origin.increment(1);
    }

    /// A start time when this validation should be timed: one in [`VALIDATION_SAMPLE_EVERY`]
    /// on each thread, the first one included. Reading the clock twice and recording a sample
    /// cost a noticeable share of a whole `GET /me`; a sample describes the distribution as
    /// well as every value would.
    pub fn validation_timer(&self) -> Option<std::time::Instant> {
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

    /// Records how long one request's cookie validation took.
    pub fn observe_validation(&self, took: Duration) {
        self.0.validation.record(took.as_secs_f64());
        if self.0.samples.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.0.handle.run_upkeep();
        }
    }

    /// Drains buffered histogram samples (done automatically every few thousand samples and on
    /// every render).
    pub fn run_upkeep(&self) {
        self.0.handle.run_upkeep();
    }

    /// Updates the revocation gauges from `engine` and renders everything in the Prometheus text
    /// format, for a `/metrics` route.
    pub fn render<T: Serialize + DeserializeOwned + Clone>(
        &self,
        engine: &SessionEngine<T>,
    ) -> String {
        let stats = engine.revocations().stats();
        let sync = engine.revocations().sync_status();
        let i = &*self.0;
        i.revoked_sessions.set(stats.revoked_sessions as f64);
        i.revoked_users.set(stats.user_versions as f64);
        i.revocation_bytes.set(stats.approx_bytes as f64);
        i.revocation_synced.set(if sync.synced { 1.0 } else { 0.0 });
        i.revocation_lag.set(sync.lag_ms as f64);
        i.handle.render()
    }
}

fn counter(
    recorder: &PrometheusRecorder,
    name: &'static str,
    label: Option<(&'static str, &'static str)>,
) -> Counter {
    let labels: Vec<Label> = label
        .into_iter()
        .map(|(k, v)| Label::from_static_parts(k, v))
        .collect();
    recorder.register_counter(&Key::from_parts(name, labels), &metadata())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{EngineConfig, Key as SessionKey, KeyId, KeyRing};

    #[test]
    fn render_shows_counters_histogram_and_revocation_gauges() {
        let keys = KeyRing::single(KeyId::new("k1").unwrap(), SessionKey::generate().unwrap());
        let engine: SessionEngine<String> = SessionEngine::new(EngineConfig::default(), keys);
        let m = Metrics::new();
        m.audit_event(AuditEvent::Created);
        m.audit_event(AuditEvent::Created);
        m.rejection("REVOKED");
        m.observe_validation(Duration::from_micros(20));
        let text = m.render(&engine);
        for line in [
            "sealed_sessions_audit_events_total{event=\"created\"} 2",
            "sealed_sessions_audit_events_total{event=\"renewed\"} 0",
            "sealed_sessions_rejections_total{reason=\"REVOKED\"} 1",
            "sealed_sessions_rejections_total{reason=\"EXPIRED\"} 0",
            "sealed_sessions_validation_seconds_count 1",
            "sealed_sessions_revoked_sessions 0",
            "sealed_sessions_revocation_synced 1",
            "# HELP sealed_sessions_audit_events_total",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn separate_instances_keep_separate_numbers() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.cross_origin_refused();
        let keys = KeyRing::single(KeyId::new("k1").unwrap(), SessionKey::generate().unwrap());
        let engine: SessionEngine<String> = SessionEngine::new(EngineConfig::default(), keys);
        assert!(
            a.render(&engine)
                .contains("sealed_sessions_cross_origin_refused_total 1")
        );
        assert!(
            b.render(&engine)
                .contains("sealed_sessions_cross_origin_refused_total 0")
        );
    }
}
