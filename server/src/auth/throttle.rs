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
//!   sends, and the tables hold no usernames.
//!
//! # Memory, and why a flood cannot unlock an account
//!
//! The counters live in two `moka` caches (per username, per address), each with a maximum
//! capacity and a time-to-live of one window. Capacity eviction there only forgets counts below
//! the limit, and only when the table is full. Two rules keep a flood from using it to unlock an
//! account:
//!
//! - **Refused attempts create nothing.** Both limits are checked (the per-IP one first) by
//!   lookups that insert nothing; counters are created only for attempts let through.
//!   An address therefore adds at most `max_failures_per_ip` username counters per window, so
//!   filling a 100 000-entry table takes 5 000 addresses (at the default 20), not 4.
//! - **Locks are never evicted.** A username that reaches its limit is also recorded in a
//!   separate lock table, which nothing evicts: an entry leaves only when its window closes. Each
//!   lock takes `max_failures_per_user` failures let through, each counted against an address,
//!   so in one window locks ≤ addresses × `max_failures_per_ip` / `max_failures_per_user`
//!   (4 per address at the defaults). The table still has a hard cap, `max_locked_users`
//!   (default 100 000, about 20 k attacking addresses' worth): an attempt that could lock a
//!   username (failures plus attempts in flight would reach the limit) reserves a place in the
//!   table when it is let through, and when none is left that attempt is refused — the throttle
//!   fails closed for that username until a lock expires — instead of evicting anyone's lock.
//!
//! Measured 2026-12-02 on a shared 2-core machine, as growth of the resident set (`cargo run
//! --release -p sealed-sessions-bench --example throttle_memory` measures it): about 1 KB per
//! username with its counter, its address's counter and its lock, of which the lock is 140 bytes.
//! At the defaults the worst case is thus about 100 MB (both tables full and 100 000 locks), and
//! a lock table full of live locks alone is 14 MB.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
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
    /// Most counters remembered per table (default 100 000); beyond it moka evicts counts below
    /// the limit.
    pub max_capacity: u64,
    /// Most usernames locked at once (default 100 000). Locks are never evicted; when the table
    /// is full, attempts that could lock another username are refused until a lock expires.
    pub max_locked_users: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            window: Duration::from_secs(15 * 60),
            max_failures_per_user: 5,
            max_failures_per_ip: 20,
            max_capacity: 100_000,
            max_locked_users: 100_000,
        }
    }
}

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: u32,
    /// Attempts let through whose outcome is not known yet.
    in_flight: u32,
    /// Whether a place in the lock table is reserved for this username: held exactly while
    /// `failures + in_flight` is at the limit, so the attempt that locks it always has one.
    lock_slot: bool,
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

/// A username's key: its SHA-256.
type UserKey = [u8; 32];

/// Which limit refused an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// Too many failures for this username (or the lock table is full and this attempt could
    /// lock it).
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

/// Usernames at their limit, until their window closes. Never evicted: see the module docs.
#[derive(Debug, Default)]
struct Locks {
    until: HashMap<UserKey, Instant>,
    /// The same locks ordered by end, so expired ones are dropped without a scan.
    by_end: BTreeSet<(Instant, UserKey)>,
    /// Places promised to usernames one attempt away from their limit.
    reserved: usize,
}

impl Locks {
    fn purge(&mut self, now: Instant) {
        while let Some(&(end, key)) = self.by_end.first() {
            if end > now {
                break;
            }
            self.by_end.pop_first();
            self.until.remove(&key);
        }
    }

    /// The time left on `key`'s lock at `now`, if it is locked.
    fn wait(&mut self, key: &UserKey, now: Instant) -> Option<Duration> {
        self.purge(now);
        self.until.get(key).map(|end| end.duration_since(now))
    }

    /// Reserves a place for a lock, or says how long until one frees up.
    fn reserve(&mut self, max: usize, now: Instant) -> Result<(), Duration> {
        self.purge(now);
        if self.until.len() + self.reserved < max {
            self.reserved += 1;
            Ok(())
        } else {
            // Full of live locks (or of reservations, which resolve within a password check).
            Err(self
                .by_end
                .first()
                .map_or(IN_FLIGHT_RETRY, |(end, _)| end.duration_since(now)))
        }
    }

    fn release(&mut self) {
        self.reserved = self.reserved.saturating_sub(1);
    }

    /// Turns a reservation into `key`'s lock, ending at `end`.
    fn lock(&mut self, key: UserKey, end: Instant) {
        self.release();
        if let Some(old) = self.until.insert(key, end) {
            self.by_end.remove(&(old, key));
        }
        self.by_end.insert((end, key));
    }
}

/// Failed-login counters. Cheap to clone; clones share the counters.
#[derive(Clone)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    by_user: Cache<UserKey, Counter>,
    by_ip: Cache<IpAddr, Counter>,
    locks: Arc<Mutex<Locks>>,
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
            locks: Arc::default(),
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
        let (user_key, ip_key) = (user_key(username), ip_key(ip));
        self.precheck(&user_key, ip_key, now)?;
        // Let through so far: only now do the counters exist.
        let user = self.by_user.get_with(user_key, || fresh(now));
        let addr = self.by_ip.get_with(ip_key, || fresh(now));
        {
            // Always the user's lock first, then the address's, then the lock table's: no two
            // requests wait on each other in opposite orders.
            let mut u = user.lock();
            let mut a = addr.lock();
            u.roll(now, self.config.window);
            a.roll(now, self.config.window);
            // Checked again under the counters' locks: a concurrent attempt may have taken the
            // last place since the precheck.
            let mut locks = self.locks.lock();
            let user_wait = locks
                .wait(&user_key, now)
                .or_else(|| self.wait(&u, self.config.max_failures_per_user, now));
            let ip_wait = self.wait(&a, self.config.max_failures_per_ip, now);
            refusal(user_wait, ip_wait)?;
            if u.failures + u.in_flight + 1 >= self.config.max_failures_per_user && !u.lock_slot {
                // This attempt could lock the username: make sure the lock will have a place.
                let wait = locks.reserve(self.config.max_locked_users, now);
                refusal(wait.err(), None)?;
                u.lock_slot = true;
            }
            u.in_flight += 1;
            a.in_flight += 1;
        }
        Ok(Attempt {
            counters: Some((user, addr)),
            user_key,
            locks: self.locks.clone(),
            window: self.config.window,
            max_failures_per_user: self.config.max_failures_per_user,
        })
    }

    /// Both limits (the username's: its lock, else its counter), looked up without creating
    /// anything: a refused attempt must not take a place in a table.
    fn precheck(&self, user_key: &UserKey, ip_key: IpAddr, now: Instant) -> Result<(), Throttled> {
        let ip_wait = self
            .by_ip
            .get(&ip_key)
            .and_then(|a| self.wait(&a.lock(), self.config.max_failures_per_ip, now));
        // Its own statement: the lock table's mutex is released before a counter's is taken.
        let locked = self.locks.lock().wait(user_key, now);
        let user_wait = locked.or_else(|| {
            self.by_user
                .get(user_key)
                .and_then(|u| self.wait(&u.lock(), self.config.max_failures_per_user, now))
        });
        refusal(user_wait, ip_wait)
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
        lock_slot: false,
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
    user_key: UserKey,
    locks: Arc<Mutex<Locks>>,
    window: Duration,
    max_failures_per_user: u32,
}

impl Attempt {
    /// The password was wrong: one failure under both limits.
    pub fn failed(self) {
        self.failed_at(Instant::now());
    }

    /// [`Attempt::failed`] at `now`.
    pub fn failed_at(mut self, now: Instant) {
        let window = self.window;
        self.end(|w| {
            w.roll(now, window);
            w.failures = w.failures.saturating_add(1);
        });
    }

    /// The password was right: the username's failures start again, not the address's
    /// (otherwise one valid account would clear an address's count between guesses at others).
    pub fn succeeded(mut self) {
        if let Some((user, addr)) = self.counters.take() {
            {
                let mut w = user.lock();
                w.in_flight = w.in_flight.saturating_sub(1);
                w.failures = 0;
                self.settle(&mut w);
            }
            let mut w = addr.lock();
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }

    /// Ends the attempt: no longer in flight under either limit, then `outcome` applied to
    /// both counters.
    fn end(&mut self, outcome: impl Fn(&mut Window)) {
        if let Some((user, addr)) = self.counters.take() {
            {
                let mut w = user.lock();
                w.in_flight = w.in_flight.saturating_sub(1);
                outcome(&mut w);
                self.settle(&mut w);
            }
            let mut w = addr.lock();
            w.in_flight = w.in_flight.saturating_sub(1);
            outcome(&mut w);
        }
    }

    /// Resolves the username's reserved lock place: the lock itself once failures reach the
    /// limit, given back once no attempt in flight could reach it.
    fn settle(&self, w: &mut Window) {
        if !w.lock_slot {
            return;
        }
        let max = self.max_failures_per_user;
        if w.failures >= max {
            self.locks
                .lock()
                .lock(self.user_key, w.started + self.window);
            w.lock_slot = false;
        } else if w.failures + w.in_flight < max {
            self.locks.lock().release();
            w.lock_slot = false;
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.end(|_| {});
    }
}

fn user_key(username: &str) -> UserKey {
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
            max_locked_users: 1000,
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
            max_locked_users: 10_000,
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

    /// The adversarial review's flood: 200 000 distinct usernames from 4 addresses, against
    /// the default 100 000-entry tables, right after `alice` was locked. Refused attempts must
    /// not take table slots, and a lock must never be evicted: alice stays locked.
    #[test]
    fn a_flood_of_distinct_usernames_from_four_addresses_does_not_unlock_alice() {
        let t = LoginThrottle::new(ThrottleConfig {
            window: WINDOW,
            ..ThrottleConfig::default()
        });
        let t0 = Instant::now();
        for i in 0..5 {
            fail(&t, "alice", ip(&format!("198.51.100.{i}")), t0);
        }
        assert_eq!(
            allowed(&t, "alice", ip("198.51.100.99"), t0)
                .unwrap_err()
                .limit,
            Limited::User
        );
        let flooders = [
            ip("127.0.0.1"),
            ip("127.0.0.2"),
            ip("127.0.0.3"),
            ip("127.0.0.4"),
        ];
        for i in 0..200_000u32 {
            let from = flooders[i as usize % flooders.len()];
            if let Ok(a) = t.begin_at(&format!("flood-{i}"), from, t0) {
                a.failed_at(t0);
            }
        }
        t.by_user.run_pending_tasks();
        t.by_ip.run_pending_tasks();
        let err = allowed(
            &t,
            "alice",
            ip("198.51.100.99"),
            t0 + Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(err.limit, Limited::User);
        assert_eq!(err.retry_after, WINDOW - Duration::from_secs(1));
    }

    /// The same flood from as many addresses as it takes to overflow the counter tables (here
    /// 50 entries): counters below the limit may be evicted, alice's lock is not.
    #[test]
    fn a_flood_from_many_addresses_overflows_the_counters_but_not_the_locks() {
        let t = LoginThrottle::new(ThrottleConfig {
            window: WINDOW,
            max_capacity: 50,
            ..ThrottleConfig::default()
        });
        let t0 = Instant::now();
        for _ in 0..5 {
            fail(&t, "alice", ip("198.51.100.1"), t0);
        }
        for i in 0..20_000u32 {
            fail(&t, &format!("flood-{i}"), IpAddr::from(i.to_be_bytes()), t0);
        }
        t.by_user.run_pending_tasks();
        assert!(t.by_user.entry_count() <= 50, "{}", t.by_user.entry_count());
        let err = allowed(&t, "alice", ip("198.51.100.99"), t0).unwrap_err();
        assert_eq!((err.limit, err.retry_after), (Limited::User, WINDOW));
    }

    /// A full lock table refuses the attempts that could lock one more username (fail closed)
    /// rather than evicting a lock; the others still go through, and a lock that expires frees
    /// its place.
    #[test]
    fn a_full_lock_table_refuses_attempts_that_could_lock_and_evicts_nothing() {
        let t = LoginThrottle::new(ThrottleConfig {
            window: WINDOW,
            max_failures_per_user: 2,
            max_failures_per_ip: 1000,
            max_capacity: 1000,
            max_locked_users: 2,
        });
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let later = t0 + Duration::from_secs(10);
        fail(&t, "u1", a, t0);
        fail(&t, "u1", a, t0);
        fail(&t, "u2", a, later);
        fail(&t, "u2", a, later);
        // carol's first failure cannot lock her: let through. Her second could: refused until
        // the first lock (u1's) ends.
        fail(&t, "carol", a, later);
        let err = allowed(&t, "carol", a, later).unwrap_err();
        assert_eq!(
            (err.limit, err.retry_after),
            (Limited::User, WINDOW - Duration::from_secs(10))
        );
        for u in ["u1", "u2"] {
            assert_eq!(allowed(&t, u, a, later).unwrap_err().limit, Limited::User);
        }
        // u1's window closes: its place goes to carol, u2 stays locked.
        let after = t0 + WINDOW;
        allowed(&t, "u1", a, after).unwrap();
        fail(&t, "carol", a, after);
        assert_eq!(
            allowed(&t, "carol", a, after).unwrap_err().limit,
            Limited::User
        );
        assert_eq!(
            allowed(&t, "u2", a, after).unwrap_err().limit,
            Limited::User
        );
        assert_eq!(t.locks.lock().until.len(), 2);
    }

    /// Many threads racing attempts for a few usernames, ending them every way: each place
    /// reserved in the lock table is used or given back (none leaks), and exactly the usernames
    /// at their limit are locked.
    #[test]
    fn concurrent_attempts_never_leak_a_lock_place() {
        let t = LoginThrottle::new(ThrottleConfig {
            window: WINDOW,
            max_failures_per_user: 3,
            max_failures_per_ip: 1_000_000,
            max_capacity: 1000,
            max_locked_users: 1000,
        });
        let t0 = Instant::now();
        let users: Vec<String> = (0..40).map(|i| format!("user{i}")).collect();
        std::thread::scope(|s| {
            for th in 0..8u32 {
                let (t, users) = (&t, &users);
                s.spawn(move || {
                    for i in 0..4000u32 {
                        let user = &users[((i * 7 + th * 13) % 40) as usize];
                        let Ok(attempt) = t.begin_at(user, ip("192.0.2.1"), t0) else {
                            continue;
                        };
                        match (i + th) % 5 {
                            0 => drop(attempt),
                            1 if (i / 5) % 9 == 0 => attempt.succeeded(),
                            _ => attempt.failed_at(t0),
                        }
                    }
                });
            }
        });
        let locks = t.locks.lock();
        assert_eq!(locks.reserved, 0);
        for user in &users {
            let w = t.by_user.get(&user_key(user)).unwrap();
            let w = w.lock();
            assert!(!w.lock_slot && w.in_flight == 0, "{user}: {w:?}");
            assert_eq!(
                w.failures >= 3,
                locks.until.contains_key(&user_key(user)),
                "{user}: {w:?}"
            );
        }
        assert!(!locks.until.is_empty());
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
