//! Key rotation with a key directory, step by step: cookies sealed under the old key keep
//! working while it stays in the ring, new cookies are sealed under the new primary, and once
//! the old key is retired its cookies are rejected.
//!
//! ```text
//! cargo run --example key_rotation            # in a fresh temporary directory
//! cargo run --example key_rotation -- ./keys  # in ./keys (created, must not hold k1 or k2)
//! ```
//!
//! The directory format (one `<id>.key` per key, base64 of 32 random bytes, mode 0600, and
//! `PRIMARY` naming the key that seals) is described in [`sealed_sessions::keys`]. In
//! production every node must have the new key *before* any node makes it primary: add it,
//! reload everywhere, then switch `PRIMARY`, reload again, and retire the old key only after
//! the absolute timeout has passed (no live cookie is sealed under it any more).

use std::fs;
use std::io::Write as _;
use std::path::Path;

use sealed_sessions::keys::LoadOptions;
use sealed_sessions::{Key, KeyRing, Sessions};

/// Writes `<dir>/<id>.key`, readable by its owner only (the loader refuses looser files).
fn write_key(dir: &Path, id: &str) -> Result<(), Box<dyn std::error::Error>> {
    let path = dir.join(format!("{id}.key"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = Key::generate()?.to_base64();
    text.push('\n');
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn set_primary(dir: &Path, id: &str) -> std::io::Result<()> {
    // Written beside, then renamed: a reader never sees a half-written PRIMARY.
    let tmp = dir.join(".PRIMARY.tmp");
    fs::write(&tmp, format!("{id}\n"))?;
    fs::rename(tmp, dir.join("PRIMARY"))
}

fn reload(dir: &Path) -> Result<KeyRing, Box<dyn std::error::Error>> {
    Ok(KeyRing::load_dir(dir, &LoadOptions::default())?)
}

fn verdict<T>(result: &Result<T, sealed_sessions::Rejection>) -> &'static str {
    match result {
        Ok(_) => "valid",
        Err(r) => r.code(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp;
    let dir = match std::env::args().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("keys")
        }
    };
    fs::create_dir_all(&dir)?;
    #[cfg(unix)]
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    println!("key directory: {}", dir.display());

    // 1. One key: it is the primary without a PRIMARY file.
    write_key(&dir, "k1")?;
    let sessions = Sessions::<String>::builder()
        .keys_from_dir(&dir)
        .build()
        .await?;
    let engine = sessions.engine();
    let old = engine.issue("alice", "cart: 2 books".into(), None).await?;
    println!(
        "1. sealed under {}: alice's cookie is {}",
        engine.keys().primary_id(),
        verdict(&engine.validate(&old.token, None))
    );

    // 2. Add k2 and make it primary; k1 stays in the ring to open older cookies.
    write_key(&dir, "k2")?;
    set_primary(&dir, "k2")?;
    engine.replace_keys(reload(&dir)?);
    let still = engine.validate(&old.token, None);
    println!(
        "2. primary is now {}: the k1 cookie is {}, and due for re-sealing: {}",
        engine.keys().primary_id(),
        verdict(&still),
        still.as_ref().is_ok_and(|s| s.renewal_due())
    );
    assert!(
        still.is_ok(),
        "a cookie under a key still in the ring opens"
    );
    // The layer re-seals such a cookie on the next response; here, by hand.
    let renewed = engine.renew(&still?)?;
    let new = engine.issue("bob", "cart: empty".into(), None).await?;
    println!("   alice's cookie re-sealed under k2; bob's new cookie sealed under k2");

    // 3. Retire k1 (after the absolute timeout, in production).
    fs::remove_file(dir.join("k1.key"))?;
    engine.replace_keys(reload(&dir)?);
    let retired = engine.validate(&old.token, None);
    println!(
        "3. k1 retired: the old k1 cookie is {}, the re-sealed one {}, bob's {}",
        verdict(&retired),
        verdict(&engine.validate(&renewed.token, None)),
        verdict(&engine.validate(&new.token, None))
    );
    assert_eq!(verdict(&retired), "INVALID", "a retired key opens nothing");
    assert!(engine.validate(&renewed.token, None).is_ok());
    assert!(engine.validate(&new.token, None).is_ok());
    println!("rotation done: {:?}", engine.keys());
    Ok(())
}
