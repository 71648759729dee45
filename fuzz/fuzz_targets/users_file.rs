//! Arbitrary text as the reference server's users file: TOML parsing, the schema and the
//! argon2id PHC checks the server runs at startup (`users_file::parse_users_file`), and the
//! PHC check alone (also run on every password change). Accepted files hold unique, non-empty
//! usernames with hashes that pass the check again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealed_sessions_server::auth::users_file::{check_password_hash, parse_users_file};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = check_password_hash(text);
    if let Ok(users) = parse_users_file(text, "fuzz.toml") {
        assert!(!users.is_empty());
        let mut names = std::collections::HashSet::new();
        for u in &users {
            assert!(!u.username.is_empty());
            assert!(names.insert(u.username.as_str()), "duplicate accepted");
            check_password_hash(&u.password_hash).expect("accepted hash passes again");
        }
    }
});
