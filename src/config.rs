//! Engine configuration: a builder whose defaults are the production-safe ones.

use std::time::Duration;

use crate::cookies::{CookieError, CookieSettings};
use crate::fingerprint::FingerprintMode;

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cookie settings break a cookie rule (its name, or its name prefix's rules).
    #[error("invalid session cookie settings")]
    Cookie(#[from] CookieError),
    /// The timeouts contradict each other or are zero.
    #[error("invalid timeouts: {0}")]
    Timeouts(&'static str),
}

/// Engine settings. Build with [`EngineConfig::builder`] or take the [`Default`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Duration,
    pub(crate) renew_after: Duration,
    pub(crate) step_up_window: Duration,
    pub(crate) cookie: CookieSettings,
    pub(crate) fingerprint: FingerprintMode,
    pub(crate) max_clock_skew: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(24 * 60 * 60),
            renew_after: Duration::from_secs(60),
            step_up_window: Duration::from_secs(5 * 60),
            cookie: CookieSettings::production(),
            fingerprint: FingerprintMode::Off,
            max_clock_skew: Duration::from_secs(2 * 60),
        }
    }
}

impl EngineConfig {
    /// A builder starting from the defaults.
    ///
    /// ```
    /// use sealed_sessions::EngineConfig;
    /// use std::time::Duration;
    /// let config = EngineConfig::builder()
    ///     .idle_timeout(Duration::from_secs(15 * 60))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.idle_timeout(), Duration::from_secs(900));
    /// ```
    pub fn builder() -> EngineConfigBuilder {
        EngineConfigBuilder(EngineConfig::default())
    }

    /// Idle timeout (default 30 min): a session unused this long is rejected.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
    /// Absolute timeout (default 24 h) from login.
    pub fn absolute_timeout(&self) -> Duration {
        self.absolute_timeout
    }
    /// Renew-after (default 60 s): a cookie is re-issued only when older than this.
    pub fn renew_after(&self) -> Duration {
        self.renew_after
    }
    /// Step-up window (default 5 min) for sensitive routes.
    pub fn step_up_window(&self) -> Duration {
        self.step_up_window
    }
    /// Cookie settings (default: [`CookieSettings::production`]).
    pub fn cookie(&self) -> &CookieSettings {
        &self.cookie
    }
    /// What sessions are bound to, and what a mismatch does (default
    /// [`FingerprintMode::Off`]). The one fingerprint setting: the HTTP layer computes the
    /// request's fingerprint by this mode, the engine compares by it.
    pub fn fingerprint(&self) -> FingerprintMode {
        self.fingerprint
    }
    /// Clock skew allowed between nodes (default 2 min): a token whose `created_at`,
    /// `auth_time` or `last_seen` lies further in this node's future is rejected as invalid,
    /// so a node whose clock runs ahead cannot mint sessions that never idle out or stay fresh.
    pub fn max_clock_skew(&self) -> Duration {
        self.max_clock_skew
    }
}

/// Builder for [`EngineConfig`].
#[derive(Clone, Debug)]
pub struct EngineConfigBuilder(EngineConfig);

impl EngineConfigBuilder {
    /// Idle timeout (default 30 min).
    #[must_use]
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.0.idle_timeout = d;
        self
    }
    /// Absolute timeout (default 24 h).
    #[must_use]
    pub fn absolute_timeout(mut self, d: Duration) -> Self {
        self.0.absolute_timeout = d;
        self
    }
    /// Renew-after interval (default 60 s).
    #[must_use]
    pub fn renew_after(mut self, d: Duration) -> Self {
        self.0.renew_after = d;
        self
    }
    /// Step-up window (default 5 min).
    #[must_use]
    pub fn step_up_window(mut self, d: Duration) -> Self {
        self.0.step_up_window = d;
        self
    }
    /// Cookie settings (default production `__Host-session`).
    #[must_use]
    pub fn cookie(mut self, c: CookieSettings) -> Self {
        self.0.cookie = c;
        self
    }
    /// What sessions are bound to (default [`FingerprintMode::Off`]): `Log` reports a changed
    /// client and accepts it, `Ua` and `UaIp` reject it with `FINGERPRINT_MISMATCH`.
    #[must_use]
    pub fn fingerprint(mut self, mode: FingerprintMode) -> Self {
        self.0.fingerprint = mode;
        self
    }

    /// Clock skew allowed between nodes (default 2 min); see [`EngineConfig::max_clock_skew`].
    #[must_use]
    pub fn max_clock_skew(mut self, d: Duration) -> Self {
        self.0.max_clock_skew = d;
        self
    }

    /// Checks and returns the configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming what is wrong.
    pub fn build(self) -> Result<EngineConfig, ConfigError> {
        let c = self.0;
        c.cookie.validate()?;
        if c.idle_timeout.is_zero() || c.absolute_timeout.is_zero() {
            return Err(ConfigError::Timeouts("timeouts must be non-zero"));
        }
        if c.idle_timeout > c.absolute_timeout {
            return Err(ConfigError::Timeouts(
                "idle timeout must not exceed the absolute timeout",
            ));
        }
        if c.renew_after >= c.idle_timeout {
            return Err(ConfigError::Timeouts(
                "renew-after must be shorter than the idle timeout, or sessions expire while in use",
            ));
        }
        Ok(c)
    }
}
