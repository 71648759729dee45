//! What the two hand-written hot paths buy, each against the serde path it replaces, in
//! alternating slices so load from other processes hits both alike (min and median of 60):
//!
//! - the fixed-claims reader (`ClaimsHead::take_from` in `src/claims.rs`, then postcard for
//!   `data` alone) against `postcard::from_bytes::<Claims<T>>` of the same typical claims;
//! - the reference server's `/me` body (`me_json` in `server/src/handlers.rs`) against
//!   `serde_json::to_vec(&json!({…}))` of the same fields.
//!
//! ```sh
//! cargo run --release -p sealed-sessions-bench --example hand_paths
//! ```
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use sealed_sessions::__fuzz::fixed_claims_rest_len;
use sealed_sessions::Claims;
use sealed_sessions::clock::UnixMillis;
use sealed_sessions_bench::{TypicalData as Data, min_median as stats};
use sealed_sessions_server::auth::Role;
use sealed_sessions_server::handlers::me_json;
use sealed_sessions_server::state::UserData;

fn claims<T>(data: T) -> Claims<T> {
    Claims {
        session_id: sealed_sessions::SessionId::from_bytes([0xab; 16]),
        user_id: "alice@example.com".into(),
        version: 3,
        created_at: UnixMillis(1_767_225_600_123),
        auth_time: UnixMillis(1_767_225_700_456),
        last_seen: UnixMillis(1_767_225_800_789),
        expires_at: UnixMillis(1_767_312_000_000),
        fingerprint: None,
        data,
    }
}

/// Alternates 60 slices of `reps` calls of `a` and of `b`; (min, median) ns per call of each.
fn alternate(reps: u32, mut a: impl FnMut(), mut b: impl FnMut()) -> ((f64, f64), (f64, f64)) {
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        let t = Instant::now();
        for _ in 0..reps {
            a();
        }
        va.push(t.elapsed().as_nanos() as f64 / f64::from(reps));
        let t = Instant::now();
        for _ in 0..reps {
            b();
        }
        vb.push(t.elapsed().as_nanos() as f64 / f64::from(reps));
    }
    (stats(va), stats(vb))
}

fn report(name: &str, hand: (f64, f64), serde: (f64, f64)) {
    println!("{name}");
    println!(
        "  hand-written  min {:6.0} ns  median {:6.0} ns",
        hand.0, hand.1
    );
    println!(
        "  serde         min {:6.0} ns  median {:6.0} ns",
        serde.0, serde.1
    );
    println!(
        "  saved per call: {:.0} ns (median); serde / hand-written {:.2} (median)",
        serde.1 - hand.1,
        serde.1 / hand.1
    );
}

fn main() {
    let reps = 20_000;

    let plain = postcard::to_allocvec(&claims(Data::sample())).unwrap();
    let (hand, serde) = alternate(
        reps,
        || {
            let bytes = black_box(plain.as_slice());
            let rest = fixed_claims_rest_len(bytes).unwrap();
            black_box(postcard::from_bytes::<Data>(&bytes[bytes.len() - rest..]).unwrap());
        },
        || {
            let bytes = black_box(plain.as_slice());
            black_box(postcard::from_bytes::<Claims<Data>>(bytes).unwrap());
        },
    );
    report(
        &format!("claims decode, typical ({} bytes)", plain.len()),
        hand,
        serde,
    );

    let c = claims(UserData {
        role: Role::User,
        elevated: false,
    });
    let idle = UnixMillis(1_767_227_600_789);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&me_json(&c, idle)).unwrap(),
        serde_json::from_slice::<serde_json::Value>(&json_macro(&c, idle)).unwrap(),
        "both paths write the same document"
    );
    let (hand, serde) = alternate(
        reps,
        || {
            black_box(me_json(black_box(&c), idle));
        },
        || {
            black_box(json_macro(black_box(&c), idle));
        },
    );
    report("GET /me body", hand, serde);
}

/// The `/me` body through `json!`, as the handler wrote it before `me_json`.
fn json_macro(c: &Claims<UserData>, idle: UnixMillis) -> Vec<u8> {
    let hex = c.session_id.to_hex();
    serde_json::to_vec(&serde_json::json!({
        "auth_time": c.auth_time.rfc3339().as_str(),
        "created_at": c.created_at.rfc3339().as_str(),
        "elevated": c.data.elevated,
        "expires_at": c.expires_at.rfc3339().as_str(),
        "idle_expires_at": idle.rfc3339().as_str(),
        "role": c.data.role.as_str(),
        "session_id": std::str::from_utf8(&hex).unwrap(),
        "user": c.user_id,
    }))
    .unwrap()
}
