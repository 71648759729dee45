//! Time, injectable so tests can move it.
//!
//! Every time the engine reasons about (issue, idle, absolute expiry, revocation expiry) is a
//! [`UnixMillis`] read from a [`Clock`]. Production uses [`SystemClock`]; tests use
//! [`ManualClock`] and advance it instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// `self + d`, saturating.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> UnixMillis {
        UnixMillis(self.0.saturating_add(duration_ms(d)))
    }

    /// `self - d`, saturating at the epoch.
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> UnixMillis {
        UnixMillis(self.0.saturating_sub(duration_ms(d)))
    }

    /// The time elapsed from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: UnixMillis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// Whole seconds since the epoch, rounded up (used where the revocation list stores seconds).
    pub fn as_secs_ceil(self) -> u64 {
        self.0.div_ceil(1000)
    }
}

/// A [`Duration`] in whole milliseconds, saturating at `u64::MAX`.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> UnixMillis;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        // A clock before 1970 is a broken host; treat it as the epoch rather than panic.
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(duration_ms)
            .unwrap_or(0);
        UnixMillis(ms)
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use sealed_sessions::clock::{Clock, ManualClock, UnixMillis};
/// use std::time::Duration;
/// let clock = ManualClock::new(UnixMillis(1_000));
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), UnixMillis(3_000));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: UnixMillis) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(start.0)))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(duration_ms(d), Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: UnixMillis) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}
