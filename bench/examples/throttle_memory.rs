//! Resident memory per entry of the reference server's failed-login throttle
//! (`sealed_sessions_server::auth::throttle`), at its worst case: full tables and a lock per
//! username.
//!
//! ```sh
//! cargo run --release -p sealed-sessions-bench --example throttle_memory            # 100,000
//! cargo run --release -p sealed-sessions-bench --example throttle_memory -- 200000  # N
//! ```
//!
//! Linux only (it reads `/proc/self/statm`); run it alone, in release. Fills a throttle whose
//! tables hold N entries with N usernames, each failing once from its own address under limits
//! of one failure per username and per address: every username gets its counter and its lock,
//! every address its counter. Prints the growth of the resident set per username, after
//! checking that every username is locked and every address at its limit. Then fills a second
//! throttle the same way but with two failures allowed per username (the same counters, no
//! locks) and prints what a lock alone costs: the difference. Both throttles stay alive, so the
//! second is measured on fresh memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use sealed_sessions_server::auth::throttle::{Limited, LoginThrottle, ThrottleConfig};

/// A window no run outlasts, so no entry expires while it is measured.
const WINDOW: Duration = Duration::from_secs(3600);

/// An address none of the fills uses (they use IPv4), for probing.
const PROBE: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

/// The process's resident set in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn username(i: u32) -> String {
    format!("user-{i}")
}

/// The `i`th username's own address.
fn address(i: u32) -> IpAddr {
    IpAddr::from((i + 1).to_be_bytes())
}

/// A throttle sized for `n` entries, with `n` usernames failed once each from their own
/// addresses at `now`; returns it and how much the resident set grew while filling it.
fn filled(n: u32, max_failures_per_user: u32, now: Instant) -> (LoginThrottle, u64) {
    let t = LoginThrottle::new(ThrottleConfig {
        window: WINDOW,
        max_failures_per_user,
        max_failures_per_ip: 1,
        max_capacity: u64::from(n),
        max_locked_users: n as usize,
    });
    let before = rss();
    for i in 0..n {
        t.begin_at(&username(i), address(i), now)
            .expect("a first attempt is let through")
            .failed_at(now);
    }
    (t, rss().saturating_sub(before))
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().expect("N: a whole number"));
    assert!(n > 0, "N: at least 1");
    let now = Instant::now();
    // Whatever the first throttle allocates once per process, so it is not counted per entry.
    let _warm_up = filled(1000.min(n), 1, now);

    let (locking, grew) = filled(n, 1, now);
    // Refused attempts create nothing, so these probes change no table.
    let locked = (0..n)
        .filter(|&i| {
            locking
                .begin_at(&username(i), PROBE, now)
                .is_err_and(|e| e.limit == Limited::User)
        })
        .count();
    let at_limit = (0..n)
        .filter(|&i| {
            locking
                .begin_at("probe", address(i), now)
                .is_err_and(|e| e.limit == Limited::Ip)
        })
        .count();
    println!(
        "{n} usernames failed once each from {n} addresses: {locked} usernames locked, \
         {at_limit} addresses at their limit; RSS grew {} KiB, {} bytes per username (its \
         counter, its address's counter, its lock)",
        grew / 1024,
        grew / u64::from(n)
    );

    let (_counting, grew_without_locks) = filled(n, 2, now);
    println!(
        "the same with 2 failures allowed per username (no locks): RSS grew {} KiB, {} bytes \
         per username; a lock alone: {} bytes",
        grew_without_locks / 1024,
        grew_without_locks / u64::from(n),
        grew.saturating_sub(grew_without_locks) / u64::from(n)
    );
}
