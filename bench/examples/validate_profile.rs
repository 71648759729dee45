//! A fixed amount of `validate` work for instruction-count profiling, where wall-clock timings
//! are too noisy to compare two builds: the same sessions as `benches/core.rs` (typical and
//! 3 KB), validated `N` times against a revocation list holding 10,000 revoked ids and 10,000
//! bumped users.
//!
//! ```sh
//! cargo build --release --example validate_profile
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*validate_at*' \
//!     target/release/examples/validate_profile typical 10000
//! callgrind_annotate callgrind.out.<pid>
//! ```
//! Instructions per validation = the total reported / `N`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use sealed_sessions::clock::{ManualClock, UnixMillis};
use sealed_sessions::{
    EngineConfig, Key, KeyId, KeyRing, MemoryRevocations, SessionEngine, SessionId,
};

const NOW: UnixMillis = UnixMillis(1_750_000_000_000);
const LARGE_PLAINTEXT: usize = 2_950;

/// The benchmark's application data.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Data {
    role: String,
    tenant: u32,
    theme: String,
    blob: String,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "typical".into());
    let n: u64 = args.next().map_or(10_000, |s| s.parse().unwrap());

    let list = Arc::new(MemoryRevocations::new());
    let day = NOW.saturating_add(Duration::from_secs(86_400));
    for i in 0..10_000u64 {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        list.revoke_session_now(SessionId::from_bytes(b), day, NOW);
        list.bump_user_version_now(&format!("user{i}@example.com"), NOW, day);
    }
    let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::from_bytes([0x42; 32]));
    let engine: SessionEngine<Data> = SessionEngine::with_parts(
        EngineConfig::default(),
        keys,
        list,
        Arc::new(ManualClock::new(NOW)),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let make = |blob_len: usize| {
        let data = Data {
            role: "editor".into(),
            tenant: 4_711,
            theme: "solarized-dark".into(),
            blob: "x".repeat(blob_len),
        };
        rt.block_on(engine.issue("alice@example.com", data, None))
            .unwrap()
    };
    let typical = make(0);
    let token = match which.as_str() {
        "typical" => typical.token,
        "3kb" => {
            let plain = postcard::to_allocvec(typical.session.claims()).unwrap();
            make(LARGE_PLAINTEXT - plain.len() - 1).token
        }
        other => panic!("unknown session {other:?}: typical or 3kb"),
    };
    let mut users = 0usize;
    for _ in 0..n {
        let s = engine.validate(std::hint::black_box(&token), None).unwrap();
        users += s.user_id().len();
    }
    println!(
        "{which}: token {} chars, {n} validations ({users})",
        token.len()
    );
}
