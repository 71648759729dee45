//! Test-owned `redis-server` processes on free loopback ports. Never touches a Redis the test
//! did not start; kills what it started on drop.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` this test started. Killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

/// Starts a Redis for a test, or `None` (after a loud message) when
/// `SEALED_SESSIONS_SKIP_REDIS=1` and `redis-server` is missing. Without the variable a
/// missing `redis-server` fails the test with install instructions.
pub fn start() -> Option<RedisServer> {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var("SEALED_SESSIONS_SKIP_REDIS").as_deref() == Ok("1") {
            eprintln!(
                "\n!!!!!!!! SKIPPED: redis-server not found and SEALED_SESSIONS_SKIP_REDIS=1 — \
                 Redis tests did NOT run !!!!!!!!\n"
            );
            return None;
        }
        panic!(
            "redis-server is not installed; these tests start their own. Install it with \
             `apt-get install -y redis-server` (or set SEALED_SESSIONS_SKIP_REDIS=1 to skip)."
        );
    }
    let port = free_port();
    let mut r = RedisServer { port, child: None };
    r.spawn();
    Some(r)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    pub fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// Kills the process (its data is gone: no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a new, empty server on the same port.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A synchronous connection for assertions.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
