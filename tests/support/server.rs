//! The `sealed-sessions` binary as a test-owned server: `serve --listen 127.0.0.1:0` with a
//! `--port-file` and a fresh key directory, killed on drop. Its log goes to a file (a full pipe
//! nobody reads would stall it) and is printed when the test fails.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sealed-sessions");

/// Startup hashes the demo passwords (argon2id); a loaded machine may take a while.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// A running `sealed-sessions serve`. Killed on drop.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    // Keys, port file and log live here; removed after the process is gone.
    _dir: tempfile::TempDir,
}

/// Starts `sealed-sessions serve` with `args` added to the listen, port-file and key flags.
pub fn start(args: &[&str]) -> Server {
    start_with_env(args, &[])
}

/// As [`start`], with extra environment variables (for instance `SEALED_SESSIONS_KEYS`, so
/// several nodes share one key ring).
pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("addr");
    let log = dir.path().join("server.log");
    let mut cmd = Command::new(BIN);
    // Only the flags a test passes count: nothing from the developer's environment.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SEALED_SESSIONS_") {
            cmd.env_remove(name);
        }
    }
    let child = cmd
        .env("RUST_LOG", "info")
        .args(["serve", "--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .arg("--keys")
        .arg(dir.path().join("keys"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        child,
        log,
        _dir: dir,
    };
    let deadline = Instant::now() + STARTUP_LIMIT;
    loop {
        // The server writes the file through a rename, so a read never sees half an address.
        if let Ok(s) = std::fs::read_to_string(&port_file) {
            server.addr = s.trim().parse().unwrap();
            return server;
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("server exited early ({status}):\n{}", server.logs());
        }
        assert!(
            Instant::now() < deadline,
            "server wrote no port file within {STARTUP_LIMIT:?}:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Server {
    /// `http://127.0.0.1:PORT` — also the origin browsers send.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- server log ({}) -----\n{}", self.addr, self.logs());
        }
    }
}
