//! The one way tests run `sealed-sessions serve`: spawned on `127.0.0.1:0` with a `--port-file`
//! (so the address is the one it actually bound), its log in a file (a full pipe nobody reads
//! would stall it), killed on drop — also when the test panics, and then its log is printed.
//!
//! [`start`] / [`start_with_env`] give a server with a fresh key directory; [`Server::builder`]
//! takes a key directory, a name, arguments and environment for tests that manage those
//! themselves. The clients sit on top: reqwest via [`Server::url`], the blocking one in
//! [`super::http`] via [`Server::addr`], [`Server::connect`] and [`Server::request`].
#![allow(dead_code, clippy::unwrap_used)]

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::bin::cmd;
use super::http::{Conn, Resp};

/// Startup hashes the demo passwords (argon2id); a loaded machine may take a while.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// How long [`Server::stop`] and [`Server::interrupt`] wait after the signal.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// Starts `sealed-sessions serve` with a fresh key directory and `args`.
pub(crate) fn start(args: &[&str]) -> Server {
    Server::builder().args(args).start()
}

/// As [`start`], with extra environment variables (for instance `SEALED_SESSIONS_KEYS`, so
/// several nodes share one key ring).
pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
    Server::builder().args(args).envs(env).start()
}

/// How to start a [`Server`]: see [`Server::builder`].
#[must_use]
pub(crate) struct Builder {
    name: String,
    keys: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Builder {
    /// A label for failure messages and the log dump (default `server`).
    pub(crate) fn name(mut self, name: &str) -> Builder {
        name.clone_into(&mut self.name);
        self
    }

    /// Passes `--keys dir` instead of a fresh key directory the server owns.
    pub(crate) fn keys(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.keys = Some(dir.into());
        self
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Builder {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I>(mut self, args: I) -> Builder
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable, set after `RUST_LOG=info` (so it can override that).
    pub(crate) fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Builder {
        self.env
            .push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub(crate) fn envs(mut self, env: &[(&str, &str)]) -> Builder {
        for (name, value) in env {
            self = self.env(name, value);
        }
        self
    }

    /// Spawns `serve --listen 127.0.0.1:0 --port-file … --keys … ARGS` with none of our
    /// `SEALED_SESSIONS_*` variables inherited, and waits until it listens.
    pub(crate) fn start(self) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("addr");
        let log = dir.path().join("server.log");
        let keys = self.keys.unwrap_or_else(|| dir.path().join("keys"));
        let child = cmd()
            .args(["serve", "--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .arg("--keys")
            .arg(keys)
            .args(&self.args)
            .envs(self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // From here on the guard owns the process: a panic below kills it.
        let mut server = Server {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            name: self.name,
            child: Some(child),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            // The server writes the file through a rename, so a read never sees half an address.
            if let Ok(s) = std::fs::read_to_string(&port_file) {
                server.addr = s.trim().parse().unwrap();
                assert!(
                    server.addr.ip().is_loopback(),
                    "{} on {}",
                    server.name,
                    server.addr
                );
                return server;
            }
            if let Some(status) = server.child_mut().try_wait().unwrap() {
                panic!(
                    "{} exited early ({status}):\n{}",
                    server.name,
                    server.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} wrote no port file within {STARTUP_LIMIT:?}:\n{}",
                server.name,
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running `sealed-sessions serve`. Killed on drop.
pub(crate) struct Server {
    /// Where it listens (always loopback).
    pub(crate) addr: SocketAddr,
    name: String,
    /// `None` once [`Server::stop`] has reaped it.
    child: Option<Child>,
    log: PathBuf,
    // Port file, log and (unless given) keys live here; removed after the process is gone.
    _dir: tempfile::TempDir,
}

/// How a server ended under [`Server::stop`].
#[derive(Debug)]
pub(crate) struct Stopped {
    pub(crate) status: ExitStatus,
    /// Everything it logged.
    pub(crate) logs: String,
}

impl Server {
    /// A server with a fresh key directory, no extra arguments and `RUST_LOG=info`.
    pub(crate) fn builder() -> Builder {
        Builder {
            name: "server".to_owned(),
            keys: None,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    /// `http://127.0.0.1:PORT` — also the origin browsers send.
    pub(crate) fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The absolute URL of `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Everything the server has logged so far.
    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child_mut().try_wait().unwrap().is_none()
    }

    /// Stops the server the way an operator would (SIGTERM) and waits (bounded) for it to exit.
    pub(crate) fn stop(self) -> Stopped {
        self.signal("TERM")
    }

    /// Stops the server as Ctrl-C in a terminal would (SIGINT) and waits (bounded) for it to
    /// exit.
    pub(crate) fn interrupt(self) -> Stopped {
        self.signal("INT")
    }

    /// Sends SIG`name` and waits (bounded) for the process to exit.
    fn signal(mut self, name: &str) -> Stopped {
        let pid = self.child_mut().id().to_string();
        let kill = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(kill.success(), "kill -{name} {pid}: {kill}");
        let deadline = Instant::now() + STOP_LIMIT;
        let status = loop {
            if let Some(status) = self.child_mut().try_wait().unwrap() {
                break status;
            }
            // Drop kills it.
            assert!(
                Instant::now() < deadline,
                "{} did not stop within {STOP_LIMIT:?} of SIG{name}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        Stopped {
            status,
            logs: self.logs(),
        }
    }

    /// A new keep-alive connection of the blocking client.
    pub(crate) fn connect(&self) -> Conn {
        Conn::new(self.addr)
    }

    /// One request of the blocking client on a fresh connection.
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        self.connect().send(method, path, headers, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}) -----\n{}",
                self.name,
                self.addr,
                self.logs()
            );
        }
    }
}
