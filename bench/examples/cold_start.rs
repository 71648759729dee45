//! Cold start of a Redis-synced node, and the write rate one Redis takes.
//!
//! ```sh
//! cargo run --release --example cold_start                    # 1,000,000 revocations in force
//! cargo run --release --example cold_start -- 10000000        # 10,000,000
//! cargo run --release --example cold_start -- --writes 200000 # logouts/s one Redis records
//! ```
//!
//! Starts its own `redis-server` on a free loopback port (no persistence), loads N session
//! revocations into the events stream in the exact format nodes write (`XADD … * k s id <hex>
//! until <ms>`, through `redis-cli --pipe`), then:
//! 1. times node A's `RedisRevocations::connect` until it is `ready()` (first load done:
//!    `/healthz` 200) with no snapshot in Redis — the stream replayed event by event — and
//!    prints events/s, the process RSS growth and `stats().approx_bytes` per million;
//! 2. waits for A to write the snapshot (due at once: the stream holds N ≥ 100,000 events) and
//!    prints how long that took and what it costs in Redis;
//! 3. times a fresh node B's connect → ready with the snapshot and nothing after it;
//! 4. appends the longest tail a snapshot can have before the next is due (max(100,000, N/10)
//!    − 1 events), and times a fresh node C: snapshot plus that tail, the worst case.
//!
//! With `--writes N` it instead records N single logouts through the node's own write path
//! (`revoke_session`, the record script, 256 in flight) and prints the rate Redis took them at.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sealed_sessions::SessionId;
use sealed_sessions::clock::UnixMillis;
use sealed_sessions::revocation::{RedisConfig, RedisRevocations, RevocationBackend};

const PREFIX: &str = "cold";
const EVENTS: &str = "cold{ss}:events";

/// The redis-server this example started; killed on drop.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (u16, u32, Guard) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server not found: apt-get install -y redis-server");
    let guard = Guard(child);
    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let up = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .is_ok();
        if up {
            return (port, guard.0.id(), guard);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server did not come up");
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// One RESP command.
fn resp(out: &mut Vec<u8>, args: &[&[u8]]) {
    write!(out, "*{}\r\n", args.len()).unwrap();
    for a in args {
        write!(out, "${}\r\n", a.len()).unwrap();
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` session revocations to the stream with `redis-cli --pipe` (the fastest loader
/// Redis ships), each in force for an hour.
fn load(port: u16, n: u64) {
    let mut cli = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-cli");
    let mut stdin = cli.stdin.take().unwrap();
    let until = (now_ms() + 3_600_000).to_string();
    let mut buf = Vec::with_capacity(1 << 22);
    for _ in 0..n {
        let sid = SessionId::from_bytes(rand::random()).to_string();
        resp(
            &mut buf,
            &[
                b"XADD",
                EVENTS.as_bytes(),
                b"*",
                b"k",
                b"s",
                b"id",
                sid.as_bytes(),
                b"until",
                until.as_bytes(),
            ],
        );
        if buf.len() > 1 << 22 {
            stdin.write_all(&buf).unwrap();
            buf.clear();
        }
    }
    stdin.write_all(&buf).unwrap();
    drop(stdin);
    assert!(cli.wait().unwrap().success(), "redis-cli --pipe failed");
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // Clock ticks: 100 per second on Linux.
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// The process's resident set, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn config(port: u16) -> RedisConfig {
    config_with(port, 100_000)
}

fn config_with(port: u16, snapshot_every: u64) -> RedisConfig {
    let mut c = RedisConfig::new(
        format!("redis://127.0.0.1:{port}/"),
        Duration::from_secs(24 * 3600),
    )
    .with_prefix(PREFIX);
    // Long enough for 10,000,000: `connect` returns when the replay is done.
    c.startup_wait = Duration::from_secs(600);
    c.snapshot_every = snapshot_every;
    c
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// `MEMORY USAGE` of a key, 0 when missing.
fn memory_usage(conn: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .query::<Option<u64>>(conn)
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// A fresh node that only reads (writes no snapshot): connect → ready, with what came from
/// the snapshot and from the stream.
async fn timed_node(port: u16, what: &str, n: u64) -> Duration {
    let t = Instant::now();
    let node = RedisRevocations::connect(config_with(port, 0))
        .await
        .unwrap();
    let took = t.elapsed();
    assert!(node.ready(), "not ready after connect");
    let cold = node.cold_start().unwrap();
    assert_eq!(node.stats().revoked_sessions as u64, n, "{cold:?}");
    println!(
        "{what}: ready after {took:.2?} ({} entries from the snapshot, {} stream events; \
         approx_bytes {:.1} MB per million)",
        cold.snapshot_entries,
        cold.stream_events,
        node.stats().approx_bytes as f64 / 1e6 / (n as f64 / 1e6),
    );
    took
}

async fn cold_start(port: u16, redis_pid: u32, n: u64) {
    let t = Instant::now();
    load(port, n);
    let loaded = t.elapsed();
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let len: u64 = redis::cmd("XLEN").arg(EVENTS).query(&mut conn).unwrap();
    assert_eq!(len, n, "stream length");
    let redis_mem: String = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(EVENTS)
        .query(&mut conn)
        .map(|b: u64| b.to_string())
        .unwrap_or_else(|_| "?".into());
    println!("loaded {n} revocations in {loaded:.1?} (stream: {redis_mem} bytes in Redis)");

    let rss_before = rss();
    let redis_pid = redis_pid.to_string();
    let (cpu_node, cpu_redis) = (cpu("self"), cpu(&redis_pid));
    let t = Instant::now();
    let node = RedisRevocations::connect(config(port)).await.unwrap();
    let took = t.elapsed();
    assert!(node.ready(), "not ready after connect");
    let stats = node.stats();
    assert_eq!(stats.revoked_sessions as u64, n);
    let millions = n as f64 / 1e6;
    println!(
        "CPU during the replay: node {:.2?}, redis-server {:.2?} (wall {took:.2?})",
        cpu("self") - cpu_node,
        cpu(&redis_pid) - cpu_redis
    );
    println!(
        "A, stream only (no snapshot yet): ready after {took:.2?}: {:.0} events/s; RSS +{:.1} MB \
         ({:.1} MB per million), approx_bytes {:.1} MB ({:.1} MB per million)",
        n as f64 / took.as_secs_f64(),
        (rss().saturating_sub(rss_before)) as f64 / 1e6,
        (rss().saturating_sub(rss_before)) as f64 / 1e6 / millions,
        stats.approx_bytes as f64 / 1e6,
        stats.approx_bytes as f64 / 1e6 / millions,
    );

    // A writes the snapshot as soon as it has caught up (it is due: N events, no snapshot).
    let t = Instant::now();
    let header = format!("{PREFIX}{{ss}}:snapshot");
    let generation = loop {
        let g: Option<String> = redis::cmd("HGET")
            .arg(&header)
            .arg("gen")
            .query(&mut conn)
            .unwrap();
        if let Some(g) = g {
            break g;
        }
        assert!(t.elapsed() < Duration::from_secs(600), "no snapshot");
        std::thread::sleep(Duration::from_millis(20));
    };
    let wrote = t.elapsed();
    let chunks: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{header}:{generation}:*"))
        .query(&mut conn)
        .unwrap();
    let snapshot_bytes: u64 = chunks.iter().map(|k| memory_usage(&mut conn, k)).sum();
    println!(
        "A wrote the snapshot {wrote:.2?} after ready ({} chunks, {:.1} MB in Redis, {:.1} MB per \
         million)",
        chunks.len(),
        mb(snapshot_bytes),
        mb(snapshot_bytes) / millions
    );
    drop(node);

    timed_node(port, "B, snapshot + no tail", n).await;

    let tail = (n / 10).max(100_000) - 1;
    let t = Instant::now();
    load(port, tail);
    println!(
        "appended {tail} events after the snapshot in {:.1?}",
        t.elapsed()
    );
    timed_node(
        port,
        "C, snapshot + the longest tail before the next snapshot",
        n + tail,
    )
    .await;
}

async fn writes(port: u16, n: u64) {
    let node = Arc::new(RedisRevocations::connect(config(port)).await.unwrap());
    let until = UnixMillis(now_ms() + 3_600_000);
    let in_flight = 256;
    let t = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move {
                for _ in 0..n / in_flight {
                    let sid = SessionId::from_bytes(rand::random());
                    node.revoke_session(sid, until, UnixMillis(now_ms()))
                        .await
                        .expect("Redis took the write");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let took = t.elapsed();
    let done = n / in_flight * in_flight;
    println!(
        "{done} logouts recorded in {took:.2?}: {:.0} per second ({in_flight} in flight, one node)",
        done as f64 / took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (port, redis_pid, _guard) = start_redis();
    match args.as_slice() {
        [flag, n] if flag == "--writes" => writes(port, n.parse().expect("N")).await,
        [n] => cold_start(port, redis_pid, n.parse().expect("N")).await,
        [] => cold_start(port, redis_pid, 1_000_000).await,
        _ => panic!("usage: cold_start [N] | --writes N"),
    }
}
