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
//! - An attempt counts from the moment it is let through, not from when its password check
//!   ends: [`LoginThrottle::begin`] reserves a place under both limits and the returned
//!   [`Attempt`] turns into a failure, a success or (dropped unfinished, say when the client goes
//!   away) nothing. Otherwise a client sending its guesses in parallel would have them all pass
//!   the check while the first ones are still being verified.
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
    /// Attempts let through whose outcome is not known yet.
    in_flight: u32,
}

impl Window {
    /// Starts a new window if the current one has closed at `now`.
    fn roll(&mut self, now: Instant, window: Duration) {
        if now.saturating_duration_since(self.started) >= window {
            self.started = now;
            self.failures = 0;
        }
    }
}

/// How long a client refused only because of attempts still being checked should wait: those
/// end within a password check or two.
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

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

    /// Lets an attempt for `username` from `ip` proceed now, counting it against both limits
    /// until its outcome is reported on the returned [`Attempt`].
    ///
    /// # Errors
    /// [`Throttled`] with the time until the attempt would be let through.
    pub fn begin(&self, username: &str, ip: IpAddr) -> Result<Attempt, Throttled> {
        self.begin_at(username, ip, Instant::now())
    }

    /// [`LoginThrottle::begin`] at `now`.
    ///
    /// # Errors
    /// [`Throttled`] with the time until the attempt would be let through.
    pub fn begin_at(&self, username: &str, ip: IpAddr, now: Instant) -> Result<Attempt, Throttled> {
        let user = self.by_user.get_with(user_key(username), || fresh(now));
        let addr = self.by_ip.get_with(ip_key(ip), || fresh(now));
        {
            // Always the user's lock first, then the address's: no two requests wait on each
            // other in opposite orders.
            let mut u = user.lock();
            let mut a = addr.lock();
            u.roll(now, self.config.window);
            a.roll(now, self.config.window);
            let user_wait = self.wait(&u, self.config.max_failures_per_user, now);
            let ip_wait = self.wait(&a, self.config.max_failures_per_ip, now);
            refusal(user_wait, ip_wait)?;
            u.in_flight += 1;
            a.in_flight += 1;
        }
        Ok(Attempt {
            counters: Some((user, addr)),
            window: self.config.window,
        })
    }

    /// How long an attempt must wait under one limit, if at all: until the window closes once
    /// `max` failures are in it, briefly while failures and attempts still being checked
    /// together reach `max`.
    fn wait(&self, w: &Window, max: u32, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(w.started);
        let failures = if elapsed < self.config.window {
            w.failures
        } else {
            0
        };
        if failures >= max {
            Some(self.config.window - elapsed)
        } else if failures.saturating_add(w.in_flight) >= max {
            Some(IN_FLIGHT_RETRY)
        } else {
            None
        }
    }
}

fn fresh(now: Instant) -> Counter {
    Arc::new(Mutex::new(Window {
        started: now,
        failures: 0,
        in_flight: 0,
    }))
}

/// The refusal for the two limits' waits; when both apply, the longer wait.
fn refusal(user: Option<Duration>, ip: Option<Duration>) -> Result<(), Throttled> {
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

/// An attempt let through by [`LoginThrottle::begin`], counted against both limits until its
/// outcome is reported. Dropped without one (the request was abandoned before its password
/// check answered), it stops counting: the client learned nothing from it.
#[must_use = "report the attempt's outcome with `failed` or `succeeded`"]
#[derive(Debug)]
pub struct Attempt {
    counters: Option<(Counter, Counter)>,
    window: Duration,
}

impl Attempt {
    /// The password was wrong: one failure under both limits.
    pub fn failed(self) {
        self.failed_at(Instant::now());
    }

    /// [`Attempt::failed`] at `now`.
    pub fn failed_at(mut self, now: Instant) {
        if let Some((user, addr)) = self.counters.take() {
            for counter in [user, addr] {
                let mut w = counter.lock();
                w.in_flight = w.in_flight.saturating_sub(1);
                w.roll(now, self.window);
                w.failures = w.failures.saturating_add(1);
            }
        }
    }

    /// The password was right: the username's failures start again, not the address's
    /// (otherwise one valid account would clear an address's count between guesses at others).
    pub fn succeeded(mut self) {
        if let Some((user, addr)) = self.counters.take() {
            {
                let mut w = user.lock();
                w.in_flight = w.in_flight.saturating_sub(1);
                w.failures = 0;
            }
            let mut w = addr.lock();
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some((user, addr)) = self.counters.take() {
            for counter in [user, addr] {
                let mut w = counter.lock();
                w.in_flight = w.in_flight.saturating_sub(1);
            }
        }
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

    /// A failed attempt: let through, then wrong.
    fn fail(t: &LoginThrottle, user: &str, a: IpAddr, now: Instant) {
        t.begin_at(user, a, now).unwrap().failed_at(now);
    }

    /// Whether an attempt would be let through (it is dropped unfinished, so it does not count).
    fn allowed(t: &LoginThrottle, user: &str, a: IpAddr, now: Instant) -> Result<(), Throttled> {
        t.begin_at(user, a, now).map(drop)
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
            allowed(&t, "alice", a, t0).unwrap();
            fail(&t, "alice", a, t0 + Duration::from_secs(i));
        }
        let err = allowed(
            &t,
            "alice",
            ip("198.51.100.9"),
            t0 + Duration::from_secs(10),
        )
        .unwrap_err();
        assert_eq!(err.limit, Limited::User);
        assert_eq!(err.retry_after, Duration::from_secs(50));
        // Another username from the same address is unaffected.
        allowed(&t, "bob", a, t0 + Duration::from_secs(10)).unwrap();
        // The window closes.
        allowed(&t, "alice", a, t0 + WINDOW).unwrap();
    }

    #[test]
    fn attempts_count_while_their_password_check_runs() {
        // Guesses sent in parallel: the sixth is refused while the first five are still being
        // checked, before any of them has failed.
        let t = throttle(5, 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let running: Vec<Attempt> = (0..5)
            .map(|_| t.begin_at("alice", a, t0).unwrap())
            .collect();
        let err = t.begin_at("alice", ip("198.51.100.9"), t0).unwrap_err();
        assert_eq!(err.limit, Limited::User);
        assert_eq!(err.retry_after, IN_FLIGHT_RETRY);
        t.begin_at("bob", a, t0).unwrap().failed_at(t0);
        // All five fail: the username is locked for the rest of the window, not just briefly.
        for attempt in running {
            attempt.failed_at(t0);
        }
        let err = t
            .begin_at("alice", a, t0 + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(err.retry_after, WINDOW - Duration::from_secs(1));
        t.begin_at("alice", a, t0 + WINDOW)
            .unwrap()
            .failed_at(t0 + WINDOW);
    }

    #[test]
    fn the_address_limit_counts_attempts_in_flight_across_usernames() {
        let t = throttle(100, 3);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let running: Vec<Attempt> = ["u1", "u2", "u3"]
            .iter()
            .map(|u| t.begin_at(u, a, t0).unwrap())
            .collect();
        assert_eq!(t.begin_at("u4", a, t0).unwrap_err().limit, Limited::Ip);
        t.begin_at("u4", ip("192.0.2.2"), t0).unwrap().succeeded();
        drop(running);
        t.begin_at("u4", a, t0).unwrap().succeeded();
    }

    #[test]
    fn abandoned_attempts_stop_counting_and_successes_reset_only_the_username() {
        let t = throttle(2, 3);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        // A request dropped before its check answered tells the client nothing: not a failure.
        drop(t.begin_at("alice", a, t0).unwrap());
        drop(t.begin_at("alice", a, t0).unwrap());
        t.begin_at("alice", a, t0).unwrap().failed_at(t0);
        // One failure and one attempt in flight reach the limit of 2 for a moment.
        let running = t.begin_at("alice", a, t0).unwrap();
        assert_eq!(t.begin_at("alice", a, t0).unwrap_err().limit, Limited::User);
        running.succeeded();
        // The success cleared the username's failure (two more are let through); the address
        // kept its one, so those two bring it to its limit of 3 for any username.
        t.begin_at("alice", a, t0).unwrap().failed_at(t0);
        t.begin_at("alice", a, t0).unwrap().failed_at(t0);
        assert_eq!(t.begin_at("bob", a, t0).unwrap_err().limit, Limited::Ip);
    }

    #[test]
    fn failures_after_the_window_start_a_new_count() {
        let t = throttle(2, 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        fail(&t, "alice", a, t0);
        fail(&t, "alice", a, t0 + WINDOW + Duration::from_secs(1));
        allowed(&t, "alice", a, t0 + WINDOW + Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn success_resets_the_username_but_not_the_ip() {
        let t = throttle(3, 3);
        let t0 = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        fail(&t, "alice", a, t0);
        fail(&t, "alice", a, t0);
        t.begin_at("alice", a, t0).unwrap().succeeded();
        // The username starts again: two more failures (from elsewhere) still leave room...
        fail(&t, "alice", b, t0);
        fail(&t, "alice", b, t0);
        allowed(&t, "alice", b, t0).unwrap();
        // ...while the first address kept its two: one more, by anyone, reaches its limit.
        fail(&t, "bob", a, t0);
        let err = allowed(&t, "carol", a, t0).unwrap_err();
        assert_eq!(err.limit, Limited::Ip);
    }

    #[test]
    fn ip_limit_spans_usernames() {
        let t = throttle(100, 4);
        let t0 = Instant::now();
        let a = ip("203.0.113.5");
        for name in ["a", "b", "c", "d"] {
            fail(&t, name, a, t0);
        }
        let err = allowed(&t, "e", a, t0).unwrap_err();
        assert_eq!(err.limit, Limited::Ip);
        assert_eq!(err.retry_after, WINDOW);
        allowed(&t, "e", ip("203.0.113.6"), t0).unwrap();
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_counter() {
        let t = throttle(100, 2);
        let t0 = Instant::now();
        fail(&t, "a", ip("2001:db8:1:2::1"), t0);
        fail(&t, "b", ip("2001:db8:1:2:ffff::9"), t0);
        assert!(allowed(&t, "c", ip("2001:db8:1:2::77"), t0).is_err());
        allowed(&t, "c", ip("2001:db8:1:3::1"), t0).unwrap();
        // IPv4-mapped addresses count as the IPv4 address.
        let t = throttle(100, 1);
        fail(&t, "a", ip("::ffff:192.0.2.1"), t0);
        assert!(allowed(&t, "b", ip("192.0.2.1"), t0).is_err());
    }

    #[test]
    fn longer_of_two_waits_is_reported() {
        let t = throttle(1, 2);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        fail(&t, "x", a, t0);
        fail(&t, "alice", a, t0 + Duration::from_secs(30));
        let err = allowed(&t, "alice", a, t0 + Duration::from_secs(40)).unwrap_err();
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
            fail(
                &t,
                &format!("flood{i}"),
                IpAddr::from(i.to_be_bytes()),
                Instant::now(),
            );
        }
        t.by_user.run_pending_tasks();
        t.by_ip.run_pending_tasks();
        assert!(t.by_user.entry_count() > 0 && t.by_ip.entry_count() > 0);
        assert!(allowed(&t, "flood7", ip("203.0.113.1"), Instant::now()).is_err());
        std::thread::sleep(window * 3);
        t.by_user.run_pending_tasks();
        t.by_ip.run_pending_tasks();
        assert_eq!(t.by_user.entry_count(), 0);
        assert_eq!(t.by_ip.entry_count(), 0);
        allowed(
            &t,
            "flood7",
            IpAddr::from(7u32.to_be_bytes()),
            Instant::now(),
        )
        .unwrap();
    }

    #[test]
    fn memory_is_bounded_by_capacity() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_capacity: 50,
            ..ThrottleConfig::default()
        });
        let t0 = Instant::now();
        for i in 0..2000u32 {
            fail(&t, &format!("user{i}"), IpAddr::from(i.to_be_bytes()), t0);
        }
        t.by_user.run_pending_tasks();
        t.by_ip.run_pending_tasks();
        assert!(t.by_user.entry_count() <= 50, "{}", t.by_user.entry_count());
        assert!(t.by_ip.entry_count() <= 50, "{}", t.by_ip.entry_count());
    }
}
