//! Loading the key ring at startup: `SEALED_SESSIONS_KEYS` if set, else the key directory; a
//! missing first key is generated in development and refused in production.
//!
//! `serve` takes `SEALED_SESSIONS_KEYS` out of its environment ([`take_env_keys`]) before any
//! thread exists, so child processes and later reads of the environment do not see the key
//! material. This cannot scrub the environment block the process started with: on Linux
//! `/proc/<pid>/environ` still shows the original value to whoever may read that file (the same
//! user, or root), so a key directory remains the better place for keys.

use std::io;
use std::path::Path;

use anyhow::{Context as _, bail};
use sealed_sessions::keys::{self, KeyError, LoadOptions};
use sealed_sessions::{Key, KeyId, KeyRing};
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::key_files;

/// Where the ring came from, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `SEALED_SESSIONS_KEYS` environment variable.
    Env,
    /// The key directory, as found.
    Dir,
    /// The key directory, after generating its first key.
    Generated(KeyId),
}

/// The value `SEALED_SESSIONS_KEYS` had, once taken out of the environment by
/// [`take_env_keys`]. `Debug` never shows the value.
pub enum EnvKeys {
    /// The variable was not set.
    Unset,
    /// Its value (key material: zeroized on drop).
    Value(Zeroizing<String>),
    /// It was set, but not to valid unicode.
    NotUnicode,
}

impl std::fmt::Debug for EnvKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnvKeys::Unset => "Unset",
            EnvKeys::Value(_) => "Value(..)",
            EnvKeys::NotUnicode => "NotUnicode",
        })
    }
}

impl EnvKeys {
    /// The ring the value describes; `None` when unset or blank (the key directory is used).
    pub fn ring(&self) -> anyhow::Result<Option<KeyRing>> {
        let parsed = match self {
            EnvKeys::Unset => Ok(None),
            EnvKeys::Value(v) if v.trim().is_empty() => Ok(None),
            EnvKeys::Value(v) => KeyRing::from_env_value(v).map(Some),
            EnvKeys::NotUnicode => Err(KeyError::EnvNotUnicode {
                var: keys::ENV_VAR.to_owned(),
            }),
        };
        parsed.with_context(|| format!("invalid {} environment variable", keys::ENV_VAR))
    }
}

/// Reads `SEALED_SESSIONS_KEYS` and removes it from the process environment, so that child
/// processes and later `std::env` reads do not carry the key material (the original environment
/// block, as `/proc/<pid>/environ` shows it, is not changed: see the module docs).
///
/// # Safety
/// No other thread may read or write the environment while this runs (the requirement of
/// [`std::env::remove_var`]). Call it from `main` before any thread is spawned.
#[allow(unsafe_code)]
pub unsafe fn take_env_keys() -> EnvKeys {
    let Some(value) = std::env::var_os(keys::ENV_VAR) else {
        return EnvKeys::Unset;
    };
    // SAFETY: the caller guarantees that no other thread touches the environment meanwhile.
    unsafe { std::env::remove_var(keys::ENV_VAR) };
    match value.into_string() {
        Ok(text) => EnvKeys::Value(Zeroizing::new(text)),
        Err(raw) => {
            // Possibly key material all the same: wiped before it is dropped.
            #[cfg(unix)]
            drop(Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(
                raw,
            )));
            #[cfg(not(unix))]
            drop(raw);
            EnvKeys::NotUnicode
        }
    }
}

/// Loads the ring: `from_env` (see [`EnvKeys::ring`]) if given, else the key directory, generating
/// its first key outside production.
pub fn load_with(
    from_env: Option<KeyRing>,
    dir: &Path,
    production: bool,
    opts: &LoadOptions,
) -> anyhow::Result<(KeyRing, KeySource)> {
    if let Some(ring) = from_env {
        info!(keys = ?ring, "session keys from {}", keys::ENV_VAR);
        return Ok((ring, KeySource::Env));
    }
    let mut source = KeySource::Dir;
    if !has_key_files(dir)? {
        if production {
            bail!(
                "refusing to start with --production: {}",
                no_keys_problem(dir)
            );
        }
        let id = KeyId::generate();
        let key = Key::generate().context("generating a session key")?;
        key_files::write_key_file(dir, &id, &key, true)
            .with_context(|| format!("writing a generated key to {}", dir.display()))?;
        warn!(
            key_id = %id,
            dir = %dir.display(),
            "no session keys found: generated one (development only; --production refuses this)"
        );
        source = KeySource::Generated(id);
    }
    if opts.danger_allow_loose_permissions {
        warn!(
            dir = %dir.display(),
            "{LOOSE_FLAG}: key files readable by group or others, and a key directory they can \
             write to, are accepted"
        );
    }
    let ring = load_dir(dir, opts)?;
    info!(keys = ?ring, dir = %dir.display(), "session keys loaded");
    Ok((ring, source))
}

/// Loads the ring for an operator command (`inspect`): `SEALED_SESSIONS_KEYS` if set, else the
/// directory as it is, with the same checks as `serve`. Never generates a key: an operator
/// command must not change the key directory it is asked about.
pub fn load_existing(dir: &Path, opts: &LoadOptions) -> anyhow::Result<(KeyRing, KeySource)> {
    let from_env = KeyRing::from_env(keys::ENV_VAR)
        .with_context(|| format!("invalid {} environment variable", keys::ENV_VAR))?;
    load_existing_with(from_env, dir, opts)
}

/// [`load_existing`] with the environment's ring passed in (for tests).
pub fn load_existing_with(
    from_env: Option<KeyRing>,
    dir: &Path,
    opts: &LoadOptions,
) -> anyhow::Result<(KeyRing, KeySource)> {
    if let Some(ring) = from_env {
        return Ok((ring, KeySource::Env));
    }
    Ok((load_dir(dir, opts)?, KeySource::Dir))
}

/// The flag that accepts loose key permissions, named by every refusal of them.
pub const LOOSE_FLAG: &str = "--danger-allow-loose-key-permissions";

/// Loads the key directory with the checks `serve` makes at startup. A refusal names the
/// directory; one for loose permissions names the command-line flag that accepts them
/// ([`LOOSE_FLAG`]), not the library's option.
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> anyhow::Result<KeyRing> {
    KeyRing::load_dir(dir, opts).map_err(|e| {
        let loading = format!("loading session keys from {}", dir.display());
        match e {
            KeyError::LoosePermissions { path, mode, .. } => anyhow::anyhow!(
                "key file {path} has mode {mode:04o}, which gives access to group or others; run \
                 `chmod 600 {path}`, or pass {LOOSE_FLAG} to accept it",
                path = path.display()
            )
            .context(loading),
            KeyError::LooseDirPermissions { path, mode, .. } => anyhow::anyhow!(
                "key directory {path} has mode {mode:04o}, which lets group or others add or \
                 replace key files in it; run `chmod go-w {path}` (or `chmod 700 {path}`), or \
                 pass {LOOSE_FLAG} to accept it",
                path = path.display()
            )
            .context(loading),
            other => anyhow::Error::new(other).context(loading),
        }
    })
}

/// With `--production`: why the keys cannot be loaded without generating one, if so. Lets
/// `serve` report every production problem at once; [`load_with`] refuses on its own as well.
pub fn production_problem(has_env_ring: bool, dir: &Path) -> anyhow::Result<Option<String>> {
    Ok((!has_env_ring && !has_key_files(dir)?).then(|| no_keys_problem(dir)))
}

fn no_keys_problem(dir: &Path) -> String {
    format!(
        "no session keys in {dir} and {var} is not set. Generating a key at startup would give \
         every node a different key: create one with `sealed-sessions keygen --keys {dir} \
         --primary` and give every node the same key files (or the same {var})",
        dir = dir.display(),
        var = keys::ENV_VAR,
    )
}

/// Whether `dir` holds at least one `*.key` file. A missing directory holds none.
fn has_key_files(dir: &Path) -> anyhow::Result<bool> {
    match keys::list_dir(dir) {
        Ok(list) => Ok(!list.is_empty()),
        Err(KeyError::ReadDir { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(false)
        }
        // The error names the directory already.
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Set only in the process [`taking_the_keys_hides_them_from_later_reads_and_children`]
    /// spawns.
    const CHILD_MARKER: &str = "SEALED_SESSIONS_TEST_TAKE_ENV_KEYS_CHILD";
    /// What the child prints once every check passed.
    const CHILD_DONE: &str = "take_env_keys child: all checks passed";

    /// `take_env_keys` changes the process environment, which is sound only while nothing else
    /// touches it: so it runs in a test process of its own (this test binary again, running one
    /// test), never in this multi-threaded one.
    #[test]
    fn taking_the_keys_hides_them_from_later_reads_and_children() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "keys_bootstrap::tests::take_env_keys_in_a_process_of_its_own",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(keys::ENV_VAR, format!("envk:{}=", "A".repeat(43)))
            .env(CHILD_MARKER, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(CHILD_DONE),
            "{}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    #[ignore = "run by taking_the_keys_hides_them_from_later_reads_and_children, alone"]
    #[allow(unsafe_code)]
    fn take_env_keys_in_a_process_of_its_own() {
        if std::env::var_os(CHILD_MARKER).is_none() {
            return; // run by hand or with --include-ignored: the parent test does the checking
        }
        // SAFETY: this process runs this one test (--exact, --test-threads=1); the harness's
        // main thread only waits for it and nothing else reads or writes the environment.
        let taken = unsafe { take_env_keys() };
        let ring = taken.ring().unwrap().unwrap();
        assert_eq!(ring.primary_id().as_str(), "envk");
        assert!(format!("{taken:?}") == "Value(..)");
        assert!(std::env::var_os(keys::ENV_VAR).is_none());
        let child = std::process::Command::new("sh")
            .args(["-c", "printf %s \"${SEALED_SESSIONS_KEYS-unset}\""])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&child.stdout), "unset");
        // Taking it again finds nothing.
        // SAFETY: as above.
        assert!(matches!(unsafe { take_env_keys() }, EnvKeys::Unset));
        println!("{CHILD_DONE}");
    }

    #[test]
    fn env_values_parse_and_blank_means_the_directory() {
        let key = "A".repeat(43) + "=";
        let ring = EnvKeys::Value(Zeroizing::new(format!("a:{key},b:{key}")))
            .ring()
            .unwrap()
            .unwrap();
        assert_eq!(ring.primary_id().as_str(), "a");
        assert!(EnvKeys::Unset.ring().unwrap().is_none());
        assert!(
            EnvKeys::Value(Zeroizing::new(" ".into()))
                .ring()
                .unwrap()
                .is_none()
        );
        for bad in [
            EnvKeys::NotUnicode,
            EnvKeys::Value(Zeroizing::new(format!("a:{key}x"))),
        ] {
            let msg = format!("{:#}", bad.ring().unwrap_err());
            assert!(msg.contains("invalid SEALED_SESSIONS_KEYS"), "{msg}");
            assert!(!msg.contains(&key), "{msg}");
        }
    }

    #[test]
    fn empty_dir_gets_a_private_primary_key_in_development() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let (ring, source) = load_with(None, &dir, false, &LoadOptions::default()).unwrap();
        let KeySource::Generated(id) = source else {
            panic!("{source:?}")
        };
        assert_eq!(ring.primary_id(), &id);
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(format!("{id}.key"))), 0o600);
        }
        // A restart finds the same key.
        let (again, source) = load_with(None, &dir, false, &LoadOptions::default()).unwrap();
        assert_eq!(source, KeySource::Dir);
        assert_eq!(again.primary_id(), &id);
    }

    #[test]
    fn production_refuses_an_empty_dir_with_the_fix_in_the_message() {
        let tmp = tempfile::tempdir().unwrap();
        let msg = format!(
            "{:#}",
            load_with(None, tmp.path(), true, &LoadOptions::default()).unwrap_err()
        );
        assert!(
            msg.contains("--production") && msg.contains("keygen"),
            "{msg}"
        );
        assert!(keys::list_dir(tmp.path()).unwrap().is_empty());
    }

    #[test]
    fn env_ring_wins_over_the_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let ring = KeyRing::single(KeyId::new("envkey").unwrap(), Key::generate().unwrap());
        let (got, source) =
            load_with(Some(ring), tmp.path(), true, &LoadOptions::default()).unwrap();
        assert_eq!(source, KeySource::Env);
        assert_eq!(got.primary_id().as_str(), "envkey");
        assert!(keys::list_dir(tmp.path()).unwrap().is_empty());
    }

    #[test]
    fn load_existing_never_generates_a_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let msg = format!(
            "{:#}",
            load_existing_with(None, &dir, &LoadOptions::default()).unwrap_err()
        );
        assert!(msg.contains("cannot read key directory"), "{msg}");
        assert!(!dir.exists());
        std::fs::create_dir(&dir).unwrap();
        let msg = format!(
            "{:#}",
            load_existing_with(None, &dir, &LoadOptions::default()).unwrap_err()
        );
        assert!(msg.contains("no key files"), "{msg}");
        assert!(keys::list_dir(&dir).unwrap().is_empty());
        let ring = KeyRing::single(KeyId::new("envkey").unwrap(), Key::generate().unwrap());
        let (got, source) = load_existing_with(Some(ring), &dir, &LoadOptions::default()).unwrap();
        assert_eq!(
            (got.primary_id().as_str(), source),
            ("envkey", KeySource::Env)
        );
    }

    #[test]
    fn a_broken_key_file_is_an_error_not_a_regeneration() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("k1.key");
        std::fs::write(&path, "not base64!").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let msg = format!(
            "{:#}",
            load_with(None, tmp.path(), false, &LoadOptions::default()).unwrap_err()
        );
        assert!(msg.contains("k1.key"), "{msg}");
        assert_eq!(keys::list_dir(tmp.path()).unwrap().len(), 1);
    }
}
