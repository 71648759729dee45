//! Running the `sealed-sessions` binary as an operator would: commands that must finish on their
//! own (bounded, killed past the limit), and the fixtures made with them. Servers, which do not
//! finish, are [`super::server::Server`].
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_sealed-sessions");

/// The binary with none of our environment variables inherited, so a test sees only the flags
/// and variables it passes.
pub(crate) fn cmd() -> Command {
    let mut c = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SEALED_SESSIONS_") {
            c.env_remove(name);
        }
    }
    c.env("RUST_LOG", "info");
    c
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command that must finish on its own (within a minute), feeding it `stdin`.
pub(crate) fn run_with_stdin(c: &mut Command, stdin: &[u8]) -> Output {
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
pub(crate) fn run(c: &mut Command) -> Output {
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

/// An argon2id hash of `password`, from the binary's `hash-password`.
pub(crate) fn hash_password(password: &str) -> String {
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
pub(crate) fn users_file(dir: &Path, users: &[(&str, &str, &str)]) -> PathBuf {
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
pub(crate) fn keygen(dir: &Path) -> PathBuf {
    let out = run_with_stdin(
        cmd()
            .args(["keygen", "--primary", "--id", "k1", "--keys"])
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

/// `keys list --keys dir`, which may fail.
pub(crate) fn keys_list(dir: &Path) -> Output {
    run(cmd().args(["keys", "list", "--keys"]).arg(dir))
}
