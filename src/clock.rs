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

/// "00" to "99", two bytes each.
const DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// The last millisecond RFC 3339's four-digit years can write: 9999-12-31T23:59:59.999Z.
pub const MAX_RFC3339_MILLIS: u64 = 253_402_300_799_999;

impl UnixMillis {
    /// This time as RFC 3339 in UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ`, formatted on
    /// the stack (no allocation, no `fmt` machinery: `GET /me` writes three per request).
    /// Times past [`MAX_RFC3339_MILLIS`] are written as that time.
    ///
    /// ```
    /// use sealed_sessions::clock::UnixMillis;
    /// assert_eq!(UnixMillis(0).rfc3339().as_str(), "1970-01-01T00:00:00.000Z");
    /// assert_eq!(UnixMillis(1_767_225_600_123).rfc3339().to_string(), "2026-01-01T00:00:00.123Z");
    /// ```
    pub fn rfc3339(self) -> Rfc3339 {
        let ms = self.0.min(MAX_RFC3339_MILLIS);
        let (secs, milli) = (ms / 1000, (ms % 1000) as u32);
        // Below 2^32 days (the cap is 2,932,896) and seconds of the day: 32-bit arithmetic.
        let (days, sod) = ((secs / 86_400) as u32, (secs % 86_400) as u32);
        // Civil date from days since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level Date
        // Algorithms"), on unsigned values: the input is never before the epoch.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u32::from(month <= 2);

        let mut out = *b"0000-00-00T00:00:00.000Z";
        // Two digits at a time from a table: `GET /me` writes three of these per request.
        let mut two = |at: usize, v: u32| {
            let i = 2 * v as usize;
            out[at..at + 2].copy_from_slice(&DIGIT_PAIRS[i..i + 2]);
        };
        two(0, year / 100);
        two(2, year % 100);
        two(5, month);
        two(8, day);
        two(11, sod / 3_600);
        two(14, sod / 60 % 60);
        two(17, sod % 60);
        two(21, milli % 100);
        out[20] = b'0' + (milli / 100) as u8;
        Rfc3339(out)
    }
}

/// An RFC 3339 UTC timestamp with milliseconds, from [`UnixMillis::rfc3339`]. Serializes as a
/// string.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339([u8; 24]);

impl Rfc3339 {
    /// The text as bytes (always ASCII).
    pub fn as_bytes(&self) -> &[u8; 24] {
        &self.0
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and the fixed separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn humantime(ms: u64) -> String {
        humantime::format_rfc3339_millis(UnixMillis(ms).to_system_time()).to_string()
    }

    #[test]
    fn rfc3339_matches_humantime_at_calendar_edges() {
        // Leap days (2000 is a leap year, 2100 is not), year and month ends, the last
        // representable millisecond.
        for ms in [
            0,
            951_782_400_000,   // 2000-02-29
            951_868_799_999,   // 2000-02-29T23:59:59.999
            4_107_542_400_000, // 2100-03-01
            4_107_542_399_999, // 2100-02-28T23:59:59.999
            1_767_225_599_999, // 2025-12-31T23:59:59.999
            MAX_RFC3339_MILLIS,
        ] {
            assert_eq!(UnixMillis(ms).rfc3339().as_str(), humantime(ms), "{ms}");
        }
    }

    #[test]
    fn rfc3339_saturates_past_year_9999() {
        assert_eq!(
            UnixMillis(u64::MAX).rfc3339().as_str(),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn rfc3339_serializes_as_a_json_string() {
        let json = serde_json::to_string(&UnixMillis(86_400_001).rfc3339()).unwrap();
        assert_eq!(json, "\"1970-01-02T00:00:00.001Z\"");
    }

    proptest! {
        #[test]
        fn rfc3339_matches_humantime_for_any_time(ms in 0..=MAX_RFC3339_MILLIS) {
            let ours = UnixMillis(ms).rfc3339();
            prop_assert_eq!(ours.as_str(), humantime(ms));
        }
    }
}
