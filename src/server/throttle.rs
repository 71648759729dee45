//! Failed-login throttling, per username and per client IP.
//!
//! A fixed window opens at a key's first failure. Once a key has `max_failures` failures in its
//! window, further attempts are refused with the time left until the window closes; when it
//! closes, the count starts again.
//!
//! - A successful login resets the username's counter, not the IP's: otherwise an attacker with
//!   one valid account could clear their IP's count between guesses at other accounts.
//! - The per-username limit lets anyone lock an account for one window by failing on purpose.
//!   That is the usual trade-off (the window is short, and the per-IP limit still applies).
//! - IPv6 clients are counted per /64: one host usually owns a whole /64.
//! - Usernames are keyed by their SHA-256, so an entry has a fixed size whatever the client
//!   sends, and the cache holds no usernames.
//!
//! Memory is bounded: each table is a `moka` cache with a maximum capacity and a time-to-live of
//! one window. Capacity eviction only forgets throttle state — an attacker flooding the table can
//! at worst reset some counters early — so it is acceptable here. (Revocations are never kept in
//! such a cache: forgetting one would bring a logged-out session back.)

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use parking_lot::Mutex;

/// Throttle limits.
#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// Length of a counting window (default 15 min).
    pub window: Duration,
    /// Failures per username allowed in a window (default 5).
    pub max_failures_per_user: u32,
    /// Failures per client IP (or IPv6 /64) allowed in a window (default 20: several users may
    /// share a NAT address).
    pub max_failures_per_ip: u32,
    /// Most keys remembered per table (default 100 000).
    pub max_capacity: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            window: Duration::from_secs(15 * 60),
            max_failures_per_user: 5,
            max_failures_per_ip: 20,
            max_capacity: 100_000,
        }
    }
}

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

// Shared so the cache hands out the same counter to concurrent requests; the mutex is held for a
// few instructions only.
type Counter = Arc<Mutex<Window>>;

/// Which limit refused an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// Too many failures for this username.
    User,
    /// Too many failures from this client address.
    Ip,
}

/// An attempt refused by the throttle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// Time until the attempt would be allowed (for `Retry-After`).
    pub retry_after: Duration,
    /// The limit that was hit.
    pub limit: Limited,
}

/// Failed-login counters. Cheap to clone; clones share the counters.
#[derive(Clone)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    by_user: Cache<[u8; 32], Counter>,
    by_ip: Cache<IpAddr, Counter>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LoginThrottle {
    /// Throttle with `config`.
    pub fn new(config: ThrottleConfig) -> LoginThrottle {
        LoginThrottle {
            by_user: Cache::builder()
                .max_capacity(config.max_capacity)
                .time_to_live(config.window)
                .build(),
            by_ip: Cache::builder()
                .max_capacity(config.max_capacity)
                .time_to_live(config.window)
                .build(),
            config,
        }
    }

    /// Whether an attempt for `username` from `ip` may proceed now.
    ///
    /// # Errors
    /// [`Throttled`] with the time until the blocking window closes.
    pub fn check(&self, username: &str, ip: IpAddr) -> Result<(), Throttled> {
        self.check_at(username, ip, Instant::now())
    }

    /// Records a failed attempt now.
    pub fn record_failure(&self, username: &str, ip: IpAddr) {
        self.record_failure_at(username, ip, Instant::now());
    }

    /// Records a successful login: the username's counter starts again.
    pub fn record_success(&self, username: &str) {
        self.by_user.invalidate(&user_key(username));
    }

    /// [`LoginThrottle::check`] at `now`.
    ///
    /// # Errors
    /// [`Throttled`] with the time until the blocking window closes.
    pub fn check_at(&self, username: &str, ip: IpAddr, now: Instant) -> Result<(), Throttled> {
        let user = self
            .by_user
            .get(&user_key(username))
            .and_then(|c| self.blocked(&c, self.config.max_failures_per_user, now));
        let ip = self
            .by_ip
            .get(&ip_key(ip))
            .and_then(|c| self.blocked(&c, self.config.max_failures_per_ip, now));
        // When both apply, report the longer wait.
        match (user, ip) {
            (Some(u), Some(i)) if i > u => Err(Throttled {
                retry_after: i,
                limit: Limited::Ip,
            }),
            (Some(u), _) => Err(Throttled {
                retry_after: u,
                limit: Limited::User,
            }),
            (None, Some(i)) => Err(Throttled {
                retry_after: i,
                limit: Limited::Ip,
            }),
            (None, None) => Ok(()),
        }
    }

    /// [`LoginThrottle::record_failure`] at `now`.
    pub fn record_failure_at(&self, username: &str, ip: IpAddr, now: Instant) {
        let fresh = || {
            Arc::new(Mutex::new(Window {
                started: now,
                failures: 0,
            }))
        };
        for counter in [
            self.by_user.get_with(user_key(username), fresh),
            self.by_ip.get_with(ip_key(ip), fresh),
        ] {
            let mut w = counter.lock();
            if now.saturating_duration_since(w.started) >= self.config.window {
                w.started = now;
                w.failures = 0;
            }
            w.failures = w.failures.saturating_add(1);
        }
    }

    /// Time left in the window if `counter` has reached `max`.
    fn blocked(&self, counter: &Counter, max: u32, now: Instant) -> Option<Duration> {
        let w = counter.lock();
        let elapsed = now.saturating_duration_since(w.started);
        (w.failures >= max && elapsed < self.config.window).then(|| self.config.window - elapsed)
    }
}

fn user_key(username: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, username.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// IPv4 (and IPv4-mapped IPv6) as is; other IPv6 by its /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn throttle(per_user: u32, per_ip: u32) -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            window: WINDOW,
            max_failures_per_user: per_user,
            max_failures_per_ip: per_ip,
            max_capacity: 1000,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn fifth_failure_blocks_the_username_until_the_window_closes() {
        let t = throttle(5, 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..5 {
            t.check_at("alice", a, t0).unwrap();
            t.record_failure_at("alice", a, t0 + Duration::from_secs(i));
        }
        let err = t
            .check_at("alice", ip("198.51.100.9"), t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(err.limit, Limited::User);
        assert_eq!(err.retry_after, Duration::from_secs(50));
        // Another username from the same address is unaffected.
        t.check_at("bob", a, t0 + Duration::from_secs(10)).unwrap();
        // The window closes.
        t.check_at("alice", a, t0 + WINDOW).unwrap();
    }

    #[test]
    fn failures_after_the_window_start_a_new_count() {
        let t = throttle(2, 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        t.record_failure_at("alice", a, t0);
        t.record_failure_at("alice", a, t0 + WINDOW + Duration::from_secs(1));
        t.check_at("alice", a, t0 + WINDOW + Duration::from_secs(2))
            .unwrap();
    }

    #[test]
    fn success_resets_the_username_but_not_the_ip() {
        let t = throttle(3, 3);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            t.record_failure_at("alice", a, t0);
        }
        assert!(t.check_at("alice", ip("192.0.2.2"), t0).is_err());
        t.record_success("alice");
        t.check_at("alice", ip("192.0.2.2"), t0).unwrap();
        let err = t.check_at("alice", a, t0).unwrap_err();
        assert_eq!(err.limit, Limited::Ip);
    }

    #[test]
    fn ip_limit_spans_usernames() {
        let t = throttle(100, 4);
        let t0 = Instant::now();
        let a = ip("203.0.113.5");
        for name in ["a", "b", "c", "d"] {
            t.record_failure_at(name, a, t0);
        }
        let err = t.check_at("e", a, t0).unwrap_err();
        assert_eq!(err.limit, Limited::Ip);
        assert_eq!(err.retry_after, WINDOW);
        t.check_at("e", ip("203.0.113.6"), t0).unwrap();
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_counter() {
        let t = throttle(100, 2);
        let t0 = Instant::now();
        t.record_failure_at("a", ip("2001:db8:1:2::1"), t0);
        t.record_failure_at("b", ip("2001:db8:1:2:ffff::9"), t0);
        assert!(t.check_at("c", ip("2001:db8:1:2::77"), t0).is_err());
        t.check_at("c", ip("2001:db8:1:3::1"), t0).unwrap();
        // IPv4-mapped addresses count as the IPv4 address.
        let t = throttle(100, 1);
        t.record_failure_at("a", ip("::ffff:192.0.2.1"), t0);
        assert!(t.check_at("b", ip("192.0.2.1"), t0).is_err());
    }

    #[test]
    fn longer_of_two_waits_is_reported() {
        let t = throttle(1, 2);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        t.record_failure_at("x", a, t0);
        t.record_failure_at("alice", a, t0 + Duration::from_secs(30));
        let err = t
            .check_at("alice", a, t0 + Duration::from_secs(40))
            .unwrap_err();
        // The user window started at 30 s (50 s left); the IP window at 0 s (20 s left).
        assert_eq!(err.limit, Limited::User);
        assert_eq!(err.retry_after, Duration::from_secs(50));
    }

    /// Counters are forgotten one window after they were created, so a flood leaves nothing
    /// behind. moka keeps its own clock, so this one test waits (briefly) instead of injecting
    /// time.
    #[test]
    fn flood_entries_expire_after_the_window() {
        let window = Duration::from_millis(100);
        let t = LoginThrottle::new(ThrottleConfig {
            window,
            max_failures_per_user: 1,
            max_failures_per_ip: 1,
            max_capacity: 10_000,
        });
        for i in 0..500u32 {
            t.record_failure(&format!("flood{i}"), IpAddr::from(i.to_be_bytes()));
        }
        t.by_user.run_pending_tasks();
        t.by_ip.run_pending_tasks();
        assert!(t.by_user.entry_count() > 0 && t.by_ip.entry_count() > 0);
        assert!(t.check("flood7", ip("203.0.113.1")).is_err());
        std::thread::sleep(window * 3);
        t.by_user.run_pending_tasks();
        t.by_ip.run_pending_tasks();
        assert_eq!(t.by_user.entry_count(), 0);
        assert_eq!(t.by_ip.entry_count(), 0);
        t.check("flood7", IpAddr::from(7u32.to_be_bytes())).unwrap();
    }

    #[test]
    fn memory_is_bounded_by_capacity() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_capacity: 50,
            ..ThrottleConfig::default()
        });
        let t0 = Instant::now();
        for i in 0..2000u32 {
            t.record_failure_at(&format!("user{i}"), IpAddr::from(i.to_be_bytes()), t0);
        }
        t.by_user.run_pending_tasks();
        t.by_ip.run_pending_tasks();
        assert!(t.by_user.entry_count() <= 50, "{}", t.by_user.entry_count());
        assert!(t.by_ip.entry_count() <= 50, "{}", t.by_ip.entry_count());
    }
}
