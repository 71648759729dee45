//! A client that declares a request body and then stalls is cut off by `--body-read-timeout`
//! with a JSON 408, over real TCP against the binary, and the server keeps serving others.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn a_stalled_request_body_gets_408_and_the_connection_is_closed() {
    let srv = support::server::start(&["--insecure-dev-cookies", "--body-read-timeout", "500ms"]);
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // 100 bytes declared, 12 sent, then nothing.
    s.write_all(
        b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"username\":",
    )
    .unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    // The server answers and closes: read to the end.
    s.read_to_end(&mut reply).unwrap();
    let waited = started.elapsed();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"code\":\"BODY_TIMEOUT\""), "{reply}");
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(8),
        "answered after {waited:?}"
    );
    // Others are served as before.
    let r = srv.request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
}
