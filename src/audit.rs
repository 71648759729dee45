//! Audit events: one `tracing` event per security-relevant session change, on the target
//! [`AUDIT_TARGET`], plus a detector for bursts of suspicious events against one user.
//!
//! Every event has a field `event` (see [`AuditEvent`]); session events carry `user` and `sid`
//! ([`SessionId::short_hash`], never the id itself); rejections carry `reason` (the rejection
//! code). Tokens, keys and passwords are never passed to these functions, so they cannot be
//! logged. User names are truncated and stripped of control characters.
//!
//! A failed or throttled login for a name that is no account logs `user_hash` instead of
//! `user`: what the client typed may be a password entered in the wrong field. The hash
//! (HMAC-SHA256, the first 8 bytes as 16 hex digits) is keyed with a random key made at process
//! start, so it links the attempts on one name within one node's process lifetime — enough to
//! see a burst — and nothing else: other nodes and restarts hash differently, and no dictionary
//! of names can be precomputed.
//!
//! [`Auditor`] is the one way to emit them: each method logs the event, counts it through
//! [`metrics`] and, for fingerprint mismatches and failed logins, feeds the
//! [`AnomalyDetector`]. The session layer and the extractors hold one; an application gets it
//! from the layer (`SessionLayer::auditor`) to report failed logins and throttling.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::RngCore as _;
use ring::hmac;
use zeroize::Zeroize as _;

use crate::claims::SessionId;
use crate::engine::Rejection;
pub use crate::events::AuditEvent;
use crate::metrics;

/// The `tracing` target of every audit event; route it to the audit log with a filter such as
/// `sealed_sessions::audit=info`.
pub const AUDIT_TARGET: &str = "sealed_sessions::audit";

/// Longest user name written to a log line.
const MAX_LOGGED_USER: usize = 128;

/// A user name as it may appear in a log line: at most 128 characters, control characters
/// replaced, so a crafted name cannot forge log lines.
fn loggable_user(user: &str) -> Cow<'_, str> {
    let clean = user.chars().count() <= MAX_LOGGED_USER && !user.chars().any(char::is_control);
    if clean {
        Cow::Borrowed(user)
    } else {
        Cow::Owned(
            user.chars()
                .take(MAX_LOGGED_USER)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        )
    }
}

/// The key of [`user_hash`]: random, made once per process.
static USER_HASH_KEY: LazyLock<hmac::Key> = LazyLock::new(|| {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
    bytes.zeroize();
    key
});

/// A typed name that is no account, as it may be logged: HMAC-SHA256 under a random
/// per-process key, the first 8 bytes as 16 hex digits. Equal names give equal hashes within
/// one process only.
fn user_hash(name: &str) -> String {
    let tag = hmac::sign(&USER_HASH_KEY, name.as_bytes());
    tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who a login was for, as a log line shows it: an account by its name, any other typed name
/// (perhaps a password in the wrong field) by its [`user_hash`].
enum Shown<'a> {
    Name(&'a str),
    Hash(String),
}

impl<'a> Shown<'a> {
    fn new(user: &'a str, exists: bool) -> Shown<'a> {
        if exists {
            Shown::Name(user)
        } else {
            Shown::Hash(user_hash(user))
        }
    }

    /// The `user` field, for an account.
    fn name(&self) -> Option<Cow<'a, str>> {
        match self {
            Shown::Name(user) => Some(loggable_user(user)),
            Shown::Hash(_) => None,
        }
    }

    /// The `user_hash` field, for a name that is no account.
    fn hash(&self) -> Option<&str> {
        match self {
            Shown::Name(_) => None,
            Shown::Hash(hash) => Some(hash),
        }
    }

    /// What the anomaly detector counts by.
    fn key(&self) -> &str {
        match self {
            Shown::Name(user) => user,
            Shown::Hash(hash) => hash,
        }
    }
}

/// What kind of burst the detector saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AnomalyKind {
    /// Many fingerprint mismatches for one user: a cookie may be in use elsewhere.
    FingerprintMismatch,
    /// Many failed logins for one user: password guessing.
    LoginFailed,
}

impl AnomalyKind {
    /// The `kind` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::FingerprintMismatch => "fingerprint_mismatch",
            AnomalyKind::LoginFailed => "login_failed",
        }
    }
}

/// Detector settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnomalyConfig {
    /// Events within `window` that make a burst (default 5).
    pub threshold: usize,
    /// The sliding window (default 60 s).
    pub window: Duration,
    /// Users tracked at once (default 10 000); beyond it the least recently seen are dropped,
    /// so an attacker spraying names costs bounded memory.
    pub capacity: u64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            threshold: 5,
            window: Duration::from_secs(60),
            capacity: 10_000,
        }
    }
}

/// Recent event times for one (kind, user), at most `threshold` of them.
type Recent = Arc<Mutex<VecDeque<Instant>>>;

/// Counts suspicious events per user in a sliding window and reports a burst once per
/// `threshold` events. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct AnomalyDetector {
    config: AnomalyConfig,
    // moka bounds both the number of users (capacity) and how long an idle one is kept (the
    // window: after it, its events no longer count anyway).
    recent: moka::sync::Cache<(AnomalyKind, String), Recent>,
}

impl std::fmt::Debug for AnomalyDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnomalyDetector")
            .field("config", &self.config)
            .field("tracked", &self.recent.entry_count())
            .finish()
    }
}

impl Default for AnomalyDetector {
    fn default() -> Self {
        AnomalyDetector::new(AnomalyConfig::default())
    }
}

impl AnomalyDetector {
    /// A detector with these settings (a threshold of 0 is treated as 1).
    pub fn new(config: AnomalyConfig) -> AnomalyDetector {
        let config = AnomalyConfig {
            threshold: config.threshold.max(1),
            ..config
        };
        AnomalyDetector {
            config,
            recent: moka::sync::Cache::builder()
                .max_capacity(config.capacity)
                .time_to_idle(config.window)
                .build(),
        }
    }

    /// The settings.
    pub fn config(&self) -> AnomalyConfig {
        self.config
    }

    /// Records one event now; true when it completes a burst.
    pub fn record(&self, kind: AnomalyKind, user: &str) -> bool {
        self.record_at(kind, user, Instant::now())
    }

    /// Records one event at `now`; true when it completes a burst (the count then starts over,
    /// so a sustained attack reports once per `threshold` events, not on every one).
    pub fn record_at(&self, kind: AnomalyKind, user: &str, now: Instant) -> bool {
        // Keys are cut like logged names, so a megabyte-long login name costs no more memory.
        let key: String = user.chars().take(MAX_LOGGED_USER).collect();
        let slot = self.recent.get_with((kind, key), Recent::default);
        let mut times = slot.lock();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.config.window)
        {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() >= self.config.threshold {
            times.clear();
            true
        } else {
            false
        }
    }
}

/// Logs audit events, counts them through the [`metrics`] facade and runs the
/// [`AnomalyDetector`]. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Auditor {
    detector: AnomalyDetector,
}

impl Auditor {
    /// An auditor feeding `detector`.
    pub fn new(detector: AnomalyDetector) -> Auditor {
        Auditor { detector }
    }

    /// The anomaly detector.
    pub fn detector(&self) -> &AnomalyDetector {
        &self.detector
    }

    /// A session was issued: `event="created"`.
    pub fn created(&self, user: &str, sid: SessionId) {
        session_event(AuditEvent::Created, user, sid);
    }

    /// A session's cookie was renewed: `event="renewed"`.
    pub fn renewed(&self, user: &str, sid: SessionId) {
        session_event(AuditEvent::Renewed, user, sid);
    }

    /// A session got a new id: `event="regenerated"`, with the old and the new id's hashes.
    pub fn regenerated(&self, user: &str, old: SessionId, new: SessionId) {
        let user = loggable_user(user);
        tracing::info!(
            target: AUDIT_TARGET,
            event = AuditEvent::Regenerated.as_str(),
            user = %user,
            sid = %new.short_hash(),
            old_sid = %old.short_hash(),
            "session regenerated"
        );
        metrics::audit_event(AuditEvent::Regenerated);
    }

    /// A session was logged out: `event="logged_out"`.
    pub fn logged_out(&self, user: &str, sid: SessionId) {
        session_event(AuditEvent::LoggedOut, user, sid);
    }

    /// All of a user's sessions were revoked: `event="logged_out_everywhere"`; `kept` is the
    /// one that survives (password change), if any.
    pub fn logged_out_everywhere(&self, user: &str, sid: SessionId, kept: Option<SessionId>) {
        let user = loggable_user(user);
        let kept = kept.map(|k| k.short_hash());
        tracing::info!(
            target: AUDIT_TARGET,
            event = AuditEvent::LoggedOutEverywhere.as_str(),
            user = %user,
            sid = %sid.short_hash(),
            kept_sid = kept.as_deref().map(tracing::field::display),
            "all sessions of user revoked"
        );
        metrics::audit_event(AuditEvent::LoggedOutEverywhere);
    }

    /// A session stepped up: `event="step_up"`.
    pub fn step_up(&self, user: &str, sid: SessionId) {
        session_event(AuditEvent::StepUp, user, sid);
    }

    /// A session cookie was rejected: `event="rejected"` with `reason` = the rejection code;
    /// `who` is known only for tokens that authenticated. A fingerprint mismatch is logged as
    /// `fingerprint_mismatch` instead and feeds the detector.
    pub fn rejected(&self, rejection: &Rejection, who: Option<(&str, SessionId)>) {
        metrics::rejection(rejection.code());
        if let (Rejection::FingerprintMismatch, Some((user, sid))) = (rejection, who) {
            self.fingerprint_mismatch(user, sid, true);
            return;
        }
        let user = who.map(|(u, _)| loggable_user(u));
        let sid = who.map(|(_, s)| s.short_hash());
        tracing::info!(
            target: AUDIT_TARGET,
            event = AuditEvent::Rejected.as_str(),
            reason = rejection.code(),
            user = user.as_deref().map(tracing::field::display),
            sid = sid.as_deref().map(tracing::field::display),
            "session rejected"
        );
        metrics::audit_event(AuditEvent::Rejected);
    }

    /// A session's fingerprint changed: `event="fingerprint_mismatch"`; `enforced` says whether
    /// the request was refused.
    pub fn fingerprint_mismatch(&self, user: &str, sid: SessionId, enforced: bool) {
        let logged = loggable_user(user);
        tracing::info!(
            target: AUDIT_TARGET,
            event = AuditEvent::FingerprintMismatch.as_str(),
            reason = "FINGERPRINT_MISMATCH",
            user = %logged,
            sid = %sid.short_hash(),
            action = if enforced { "rejected" } else { "accepted" },
            "session fingerprint changed"
        );
        metrics::audit_event(AuditEvent::FingerprintMismatch);
        self.detect(AnomalyKind::FingerprintMismatch, &Shown::Name(user));
    }

    /// A login attempt for `user` from `ip` failed: `event="login_failed"`; `exists` says
    /// whether `user` is an account (if not, only its hash is logged, as `user_hash`).
    pub fn login_failed(&self, user: &str, exists: bool, ip: IpAddr) {
        let who = Shown::new(user, exists);
        tracing::info!(
            target: AUDIT_TARGET,
            event = AuditEvent::LoginFailed.as_str(),
            user = who.name().as_deref().map(tracing::field::display),
            user_hash = who.hash().map(tracing::field::display),
            ip = %ip,
            "login failed"
        );
        metrics::audit_event(AuditEvent::LoginFailed);
        self.detect(AnomalyKind::LoginFailed, &who);
    }

    /// The login throttle refused an attempt for `user` from `ip`: `event="throttled"`, with
    /// `key` the name if it is an account (`exists`), else only the name's `user_hash`.
    pub fn login_throttled(&self, user: &str, exists: bool, ip: IpAddr) {
        let who = Shown::new(user, exists);
        tracing::info!(
            target: AUDIT_TARGET,
            event = AuditEvent::Throttled.as_str(),
            key = who.name().as_deref().map(tracing::field::display),
            user_hash = who.hash().map(tracing::field::display),
            ip = %ip,
            "request throttled"
        );
        metrics::audit_event(AuditEvent::Throttled);
    }

    /// A rate limit keyed by `key` (a user name, an address, a route) refused a request from
    /// `ip`: `event="throttled"`.
    pub fn throttled(&self, key: &str, ip: IpAddr) {
        let key = loggable_user(key);
        tracing::info!(
            target: AUDIT_TARGET,
            event = AuditEvent::Throttled.as_str(),
            key = %key,
            ip = %ip,
            "request throttled"
        );
        metrics::audit_event(AuditEvent::Throttled);
    }

    /// Feeds the detector; a completed burst is logged at warn level as `event="anomaly"`.
    fn detect(&self, kind: AnomalyKind, who: &Shown<'_>) {
        if self.detector.record(kind, who.key()) {
            let c = self.detector.config();
            tracing::warn!(
                target: AUDIT_TARGET,
                event = AuditEvent::Anomaly.as_str(),
                kind = kind.as_str(),
                user = who.name().as_deref().map(tracing::field::display),
                user_hash = who.hash().map(tracing::field::display),
                count = c.threshold,
                window_secs = c.window.as_secs(),
                "burst of suspicious events for one user"
            );
            metrics::audit_event(AuditEvent::Anomaly);
        }
    }
}

/// Logs and counts an event that carries only the user and the session.
fn session_event(event: AuditEvent, user: &str, sid: SessionId) {
    let user = loggable_user(user);
    tracing::info!(
        target: AUDIT_TARGET,
        event = event.as_str(),
        user = %user,
        sid = %sid.short_hash(),
        "session {}", event.as_str()
    );
    metrics::audit_event(event);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_of_five_within_a_minute_is_reported_once() {
        let d = AnomalyDetector::default();
        let t0 = Instant::now();
        let kind = AnomalyKind::LoginFailed;
        let hits: Vec<bool> = (0..10)
            .map(|i| d.record_at(kind, "alice", t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(hits.iter().filter(|h| **h).count(), 2, "{hits:?}");
        assert!(hits[4] && hits[9]);
        // Another user and another kind count separately.
        assert!(!d.record_at(kind, "bob", t0));
        assert!(!d.record_at(AnomalyKind::FingerprintMismatch, "alice", t0));
    }

    #[test]
    fn events_spread_beyond_the_window_are_not_a_burst() {
        let d = AnomalyDetector::default();
        let t0 = Instant::now();
        for i in 0..20 {
            assert!(!d.record_at(
                AnomalyKind::LoginFailed,
                "alice",
                t0 + Duration::from_secs(20 * i)
            ));
        }
    }

    #[test]
    fn detector_memory_is_bounded() {
        let d = AnomalyDetector::new(AnomalyConfig {
            capacity: 100,
            ..AnomalyConfig::default()
        });
        for i in 0..5_000 {
            d.record(AnomalyKind::LoginFailed, &format!("user{i}"));
        }
        d.recent.run_pending_tasks();
        assert!(d.recent.entry_count() <= 100, "{}", d.recent.entry_count());
    }

    #[test]
    fn user_names_cannot_forge_log_lines() {
        assert_eq!(loggable_user("alice"), "alice");
        assert_eq!(loggable_user("a\nevent=created"), "a?event=created");
        assert_eq!(loggable_user(&"x".repeat(500)).len(), MAX_LOGGED_USER);
    }

    #[test]
    fn user_hashes_are_16_hex_digits_equal_for_equal_names_only() {
        let h = user_hash("hunter2");
        assert_eq!(h.len(), 16);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()), "{h}");
        assert_eq!(h, user_hash("hunter2"));
        assert_ne!(h, user_hash("hunter3"));
        // Keyed: not the plain SHA-256 of the name.
        let plain = ring::digest::digest(&ring::digest::SHA256, b"hunter2");
        let plain: String = plain.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(h, plain);
    }
}
