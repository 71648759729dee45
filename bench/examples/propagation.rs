//! Revocation propagation between two nodes through Redis, and validation throughput with and
//! without Redis sync.
//!
//! ```sh
//! cargo run --release --example propagation              # starts its own redis-server
//! cargo run --release --example propagation -- redis://127.0.0.1:6390/   # or use this one
//! ```
//!
//! Logs a session out on node A, then polls node B's in-process list until it rejects the
//! token; repeats 500 times and prints p50/p99/max. Then validates one token in a loop on an
//! engine with the in-memory list and on one with the Redis-synced list, and prints both rates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealed_sessions::clock::SystemClock;
use sealed_sessions::revocation::{RedisConfig, RedisRevocations, RevocationBackend};
use sealed_sessions::{EngineConfig, Key, KeyId, KeyRing, MemoryRevocations, SessionEngine};

struct Guard(Option<Child>);
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_redis() -> (String, Guard) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server not found: apt-get install -y redis-server, or pass a redis:// URL");
    std::thread::sleep(Duration::from_millis(300));
    (format!("redis://127.0.0.1:{port}/"), Guard(Some(child)))
}

fn engine(backend: Arc<dyn RevocationBackend>) -> SessionEngine<String> {
    let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::from_bytes([1; 32]));
    SessionEngine::with_parts(
        EngineConfig::default(),
        keys,
        backend,
        Arc::new(SystemClock),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let (url, _guard) = match std::env::args().nth(1) {
        Some(u) => (u, Guard(None)),
        None => start_redis(),
    };
    let config = RedisConfig::new(&url, Duration::from_secs(24 * 3600))
        .with_prefix(format!("propagation-{}", std::process::id()));
    let a = engine(Arc::new(
        RedisRevocations::connect(config.clone()).await.unwrap(),
    ));
    let b_backend = Arc::new(RedisRevocations::connect(config).await.unwrap());
    let b = engine(b_backend.clone());

    let rounds = 500;
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let s = a.issue("alice", "user".into(), None).await.unwrap();
        assert!(b.validate(&s.token, None).is_ok());
        let start = Instant::now();
        a.logout(&s.session).await.unwrap();
        while b.validate(&s.token, None).is_ok() {
            if start.elapsed() > Duration::from_secs(5) {
                panic!("revocation did not propagate within 5 s");
            }
            tokio::task::yield_now().await;
        }
        lat.push(start.elapsed());
    }
    lat.sort();
    println!(
        "propagation over {rounds} logouts (logout on A -> B rejects): p50 {:?}  p99 {:?}  max {:?}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );

    // Validation throughput: the request path reads only the in-process list either way.
    let memory = engine(Arc::new(MemoryRevocations::new()));
    // Two passes, alternating, so neither side gets the cold caches; the second pass is printed.
    for (pass, (name, e)) in [("memory", &memory), ("redis-synced", &b)]
        .into_iter()
        .cycle()
        .take(4)
        .enumerate()
    {
        let t = e.issue("bob", "user".into(), None).await.unwrap().token;
        let n = 200_000;
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(e.validate(std::hint::black_box(&t), None).unwrap());
        }
        let el = start.elapsed();
        if pass < 2 {
            continue;
        }
        println!(
            "validate with {name:<13} list: {:>9.0} validations/s ({:?} each, {} revoked ids held)",
            n as f64 / el.as_secs_f64(),
            el / n,
            e.revocations().stats().revoked_sessions
        );
    }
}
