//! The `sealed-sessions` binary as a test-owned server: spawned on 127.0.0.1:0 with
//! `--port-file`, killed when the guard drops, with a small HTTP/1.1 client that shows every
//! byte the server sends (no cookie jar, no redirects, no retries).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// Spawning the binary and running commands to completion are shared with `bin.rs`.
pub use super::bin::{cmd, run_with_stdin};

/// An argon2id hash of `password`, from the binary's `hash-password`.
pub fn hash_password(password: &str) -> String {
    let out = run_with_stdin(
        cmd().arg("hash-password"),
        format!("{password}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Writes a users file; returns its path.
pub fn users_file(dir: &Path, users: &[(&str, &str, &str)]) -> PathBuf {
    let text: String = users
        .iter()
        .map(|(name, role, hash)| {
            format!("[[user]]\nusername = {name:?}\nrole = {role:?}\npassword_hash = {hash:?}\n\n")
        })
        .collect();
    let path = dir.join("users.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Creates a key directory with one primary key (mode 0600); returns the key file's path.
pub fn keygen(dir: &Path) -> PathBuf {
    let out = run_with_stdin(
        cmd()
            .args(["keygen", "--primary", "--id", "k1", "--dir"])
            .arg(dir),
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("k1.key")
}

/// A running server. Killed on drop; its stderr is collected as it is written.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Spawns `serve` on 127.0.0.1:0 with `args` (plus `--port-file`), waiting for the port.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let port_file = dir.join(format!("addr-{}", rand_suffix()));
        let mut c = cmd();
        c.args(["serve", "--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Ok(s) = std::fs::read_to_string(&port_file) {
                break s.trim().parse().unwrap();
            }
            if let Some(status) = child.try_wait().unwrap() {
                let _ = reader.join();
                panic!(
                    "server exited early ({status}): {}",
                    String::from_utf8_lossy(&stderr.lock().unwrap())
                );
            }
            assert!(Instant::now() < deadline, "no port file");
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child,
            addr,
            stderr,
            reader: Some(reader),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Stops the server with SIGTERM and returns everything it wrote to stderr.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// A new keep-alive connection.
    pub fn connect(&self) -> Conn {
        Conn::new(self.addr)
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.connect().send(method, path, headers, body)
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A response as received.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name=value` of every Set-Cookie, attributes dropped.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap().to_owned())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    addr: SocketAddr,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            addr,
        }
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).unwrap();
        self.read_response()
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk).unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    fn read_response(&mut self) -> Resp {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill() > 0, "connection closed before a response");
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
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
        self.buf.drain(..head_end + 4);
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse::<usize>().unwrap());
        let body = match len {
            Some(len) => {
                while self.buf.len() < len {
                    assert!(self.fill() > 0, "connection closed mid-body");
                }
                self.buf.drain(..len).collect()
            }
            None => {
                while self.fill() > 0 {}
                std::mem::take(&mut self.buf)
            }
        };
        Resp {
            status,
            headers,
            body,
        }
    }
}
