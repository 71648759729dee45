//! Running the `sealed-sessions` binary as an operator would: commands that must finish, servers
//! on free ports (killed on drop), and a minimal HTTP/1.1 client for them.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sealed-sessions");

/// The binary with none of our environment variables inherited, so a test sees only the flags
/// and variables it passes.
pub fn cmd() -> Command {
    let mut c = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SEALED_SESSIONS_") {
            c.env_remove(name);
        }
    }
    c.env("RUST_LOG", "info");
    c
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command that must finish on its own (within a minute), feeding it `stdin`.
pub fn run_with_stdin(c: &mut Command, stdin: &[u8]) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // A writer thread, so a child that does not read cannot block the test.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = finish(child, Duration::from_secs(60));
    writer.join().unwrap();
    out
}

/// Runs a command that must finish on its own (within a minute), with no input.
pub fn run(c: &mut Command) -> Output {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, Duration::from_secs(60))
}

/// Collects a child's output while waiting (bounded) for it to exit; kills it past the limit.
fn finish(mut child: Child, limit: Duration) -> Output {
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A `serve` process on a free loopback port. Killed on drop; [`Server::stop`] stops it the way
/// an operator would (SIGTERM).
pub struct Server {
    pub addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Starts `serve` with `args` (plus `--listen 127.0.0.1:0` and a port file in `work`) and
    /// waits until it listens. Its log goes to `<work>/<name>.log`.
    pub fn start(work: &Path, name: &str, args: &[&std::ffi::OsStr]) -> Server {
        Server::start_with(work, name, args, &[])
    }

    /// As [`Server::start`], with environment variables.
    pub fn start_with(
        work: &Path,
        name: &str,
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
    ) -> Server {
        let port_file = work.join(format!("{name}.addr"));
        let _ = std::fs::remove_file(&port_file);
        let log = work.join(format!("{name}.log"));
        let mut c = cmd();
        c.args(["serve", "--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = c.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Ok(s) = std::fs::read_to_string(&port_file) {
                break s.trim().parse().unwrap();
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "server {name} exited early ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server {name} wrote no port file");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            addr,
            child: Some(child),
            log,
        }
    }

    /// Stops the server with SIGTERM and waits (bounded) for it to exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let kill = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not stop within 15s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lowercased; values as sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The `code` of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `name=value` of the response's Set-Cookie, if any.
    pub fn set_cookie(&self) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap().trim().to_owned())
    }
}

/// One HTTP/1.1 request over a fresh connection. `cookie` is a `name=value` pair; `json` a body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    json: Option<&str>,
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8(resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// Logs in and returns the session cookie as `name=value`.
pub fn login(addr: SocketAddr, user: &str, password: &str) -> String {
    let body = serde_json::json!({ "username": user, "password": password }).to_string();
    let r = http(addr, "POST", "/login", None, Some(&body));
    assert_eq!(r.status, 200, "login {user}: {r:?}");
    r.set_cookie().unwrap()
}

/// `GET /me` with `cookie`.
pub fn me(addr: SocketAddr, cookie: &str) -> Reply {
    http(addr, "GET", "/me", Some(cookie), None)
}

/// The value of a `name=value` cookie pair.
pub fn value(cookie: &str) -> &str {
    cookie.split_once('=').unwrap().1
}

/// The key id in a token's header (`version | kid_len | kid | …`, base64url).
pub fn key_id_of(token: &str) -> String {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .unwrap();
    assert_eq!(raw[0], 1, "token format version");
    let len = usize::from(raw[1]);
    String::from_utf8(raw[2..2 + len].to_vec()).unwrap()
}

/// Polls `f` every 50 ms until it holds, for at most `limit`.
pub fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
