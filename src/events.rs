//! The kinds of audit event: the vocabulary that the audit log ([`crate::audit`]) writes and the
//! metrics ([`crate::metrics`]) count, below both so neither imports the other.

/// The kinds of audit event (the `event` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditEvent {
    /// A session was issued at login.
    Created,
    /// A session's cookie was re-issued by sliding renewal.
    Renewed,
    /// A session got a new id (privilege change); the old id is revoked.
    Regenerated,
    /// A session was logged out.
    LoggedOut,
    /// All of a user's sessions were revoked (or all but the current one).
    LoggedOutEverywhere,
    /// A session's authentication time was refreshed by a password check.
    StepUp,
    /// A session cookie was rejected.
    Rejected,
    /// A session's fingerprint did not match the request's.
    FingerprintMismatch,
    /// A login attempt failed.
    LoginFailed,
    /// A request was refused by a rate limit.
    Throttled,
    /// A burst of suspicious events against one user.
    Anomaly,
}

impl AuditEvent {
    /// Every event, in a fixed order (metrics use it to pre-register counters).
    pub const ALL: [AuditEvent; 11] = [
        AuditEvent::Created,
        AuditEvent::Renewed,
        AuditEvent::Regenerated,
        AuditEvent::LoggedOut,
        AuditEvent::LoggedOutEverywhere,
        AuditEvent::StepUp,
        AuditEvent::Rejected,
        AuditEvent::FingerprintMismatch,
        AuditEvent::LoginFailed,
        AuditEvent::Throttled,
        AuditEvent::Anomaly,
    ];

    /// The `event` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Created => "created",
            AuditEvent::Renewed => "renewed",
            AuditEvent::Regenerated => "regenerated",
            AuditEvent::LoggedOut => "logged_out",
            AuditEvent::LoggedOutEverywhere => "logged_out_everywhere",
            AuditEvent::StepUp => "step_up",
            AuditEvent::Rejected => "rejected",
            AuditEvent::FingerprintMismatch => "fingerprint_mismatch",
            AuditEvent::LoginFailed => "login_failed",
            AuditEvent::Throttled => "throttled",
            AuditEvent::Anomaly => "anomaly",
        }
    }
}
