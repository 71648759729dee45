//! A small blocking HTTP/1.1 client over `std::net::TcpStream` that shows every byte the server
//! sends: no cookie jar, no redirects, no retries. [`Conn`] is one keep-alive connection (for
//! timing and floods); [`http`], [`login`] and [`me`] are one-shot requests for tests that run
//! the binary as an operator would. Byte-level hostile requests use a bare `TcpStream`.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A response as received.
#[derive(Clone)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    /// Header lines, names lowercased; values as sent.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resp")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name=value` of every Set-Cookie, attributes dropped.
    pub(crate) fn set_cookies(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap().trim().to_owned())
            .collect()
    }

    /// The `name=value` of the first Set-Cookie, if any.
    pub(crate) fn set_cookie(&self) -> Option<String> {
        self.set_cookies().into_iter().next()
    }

    /// The body as JSON; panics (showing the body) if it is not.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `code` of a JSON error body; empty if there is none.
    pub(crate) fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A keep-alive HTTP/1.1 connection.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    addr: SocketAddr,
}

impl Conn {
    pub(crate) fn new(addr: SocketAddr) -> Conn {
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

    /// Sends a request with `Host` and `headers` (and `Content-Length` when there is a body or
    /// the method is POST) and reads the response.
    pub(crate) fn send(
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

    /// Removes and returns the next `n` buffered bytes, reading as needed.
    fn take(&mut self, n: usize, what: &str) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "connection closed mid-{what}");
        }
        self.buf.drain(..n).collect()
    }

    /// Removes and returns the next CRLF-terminated line (without the CRLF).
    fn line(&mut self, what: &str) -> String {
        let end = loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            assert!(self.fill() > 0, "connection closed mid-{what}");
        };
        let line = self.take(end + 2, what);
        String::from_utf8_lossy(&line[..end]).into_owned()
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
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse::<usize>().unwrap());
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let size = self.line("chunk size");
                let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
                if n == 0 {
                    // Trailers (none are sent) up to the empty line.
                    while !self.line("trailer").is_empty() {}
                    break body;
                }
                body.extend(self.take(n, "chunk"));
                assert!(self.line("chunk").is_empty(), "chunk longer than its size");
            }
        } else {
            match len {
                Some(len) => self.take(len, "body"),
                None => {
                    while self.fill() > 0 {}
                    std::mem::take(&mut self.buf)
                }
            }
        };
        Resp {
            status,
            headers,
            body,
        }
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`). `cookie` is a
/// `name=value` pair; `json` a body.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    json: Option<&str>,
) -> Resp {
    let mut headers = vec![("Connection", "close")];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    if json.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    Conn::new(addr).send(method, path, &headers, json.unwrap_or("").as_bytes())
}

/// Logs in and returns the session cookie as `name=value`.
pub(crate) fn login(addr: SocketAddr, user: &str, password: &str) -> String {
    let body = serde_json::json!({ "username": user, "password": password }).to_string();
    let r = http(addr, "POST", "/login", None, Some(&body));
    assert_eq!(r.status, 200, "login {user}: {r:?}");
    r.set_cookie().unwrap()
}

/// `GET /me` with `cookie`.
pub(crate) fn me(addr: SocketAddr, cookie: &str) -> Resp {
    http(addr, "GET", "/me", Some(cookie), None)
}

/// The value of a `name=value` cookie pair.
pub(crate) fn value(cookie: &str) -> &str {
    cookie.split_once('=').unwrap().1
}

/// The key id in a token's header (`version | kid_len | kid | …`, base64url).
pub(crate) fn key_id_of(token: &str) -> String {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .unwrap();
    assert_eq!(raw[0], 1, "token format version");
    let len = usize::from(raw[1]);
    String::from_utf8(raw[2..2 + len].to_vec()).unwrap()
}

/// Polls `f` every 50 ms until it holds, for at most `limit`.
pub(crate) fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
