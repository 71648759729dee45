//! Loading the key ring at startup: `SEALED_SESSIONS_KEYS` if set, else the key directory; a
//! missing first key is generated in development and refused in production.

use std::io;
use std::path::Path;

use anyhow::{Context as _, bail};
use sealed_sessions::keys::{self, KeyError, LoadOptions};
use sealed_sessions::{Key, KeyId, KeyRing};
use tracing::{info, warn};

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

/// Loads the ring, reading the environment variable `SEALED_SESSIONS_KEYS`.
pub fn load(
    dir: &Path,
    production: bool,
    opts: &LoadOptions,
) -> anyhow::Result<(KeyRing, KeySource)> {
    let from_env = KeyRing::from_env(keys::ENV_VAR)
        .with_context(|| format!("invalid {} environment variable", keys::ENV_VAR))?;
    load_with(from_env, dir, production, opts)
}

/// [`load`] with the environment's ring passed in (for tests, which must not set variables in
/// a multi-threaded process).
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
        keys::write_key_file(dir, &id, &key, true)
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
            "--danger-allow-loose-key-permissions: key files readable by group or others are accepted"
        );
    }
    let ring = match KeyRing::load_dir(dir, opts) {
        Ok(ring) => ring,
        Err(e @ KeyError::LoosePermissions { .. }) => {
            return Err(anyhow::Error::new(e).context(format!(
                "loading session keys from {} (to accept such a key file anyway, pass \
                 --danger-allow-loose-key-permissions)",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("loading session keys from {}", dir.display())));
        }
    };
    info!(keys = ?ring, dir = %dir.display(), "session keys loaded");
    Ok((ring, source))
}

/// Loads the ring for an operator command (`inspect`): `SEALED_SESSIONS_KEYS` if set, else the
/// directory as it is, with the same checks as `serve`. Never generates a key: an operator
/// command must not change the key directory it is asked about.
pub fn load_existing(dir: &Path) -> anyhow::Result<(KeyRing, KeySource)> {
    let from_env = KeyRing::from_env(keys::ENV_VAR)
        .with_context(|| format!("invalid {} environment variable", keys::ENV_VAR))?;
    load_existing_with(from_env, dir)
}

/// [`load_existing`] with the environment's ring passed in (for tests).
pub fn load_existing_with(
    from_env: Option<KeyRing>,
    dir: &Path,
) -> anyhow::Result<(KeyRing, KeySource)> {
    if let Some(ring) = from_env {
        return Ok((ring, KeySource::Env));
    }
    let ring = KeyRing::load_dir(dir, &LoadOptions::default())
        .with_context(|| format!("loading session keys from {}", dir.display()))?;
    Ok((ring, KeySource::Dir))
}

/// With `--production`: why the keys cannot be loaded without generating one, if so. Lets
/// `serve` report every production problem at once; [`load`] refuses on its own as well.
pub fn production_problem(dir: &Path) -> anyhow::Result<Option<String>> {
    let from_env = KeyRing::from_env(keys::ENV_VAR)
        .with_context(|| format!("invalid {} environment variable", keys::ENV_VAR))?;
    Ok((from_env.is_none() && !has_key_files(dir)?).then(|| no_keys_problem(dir)))
}

fn no_keys_problem(dir: &Path) -> String {
    format!(
        "no session keys in {dir} and {var} is not set. Generating a key at startup would give \
         every node a different key: create one with `sealed-sessions keygen --dir {dir} \
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
        let msg = format!("{:#}", load_existing_with(None, &dir).unwrap_err());
        assert!(msg.contains("cannot read key directory"), "{msg}");
        assert!(!dir.exists());
        std::fs::create_dir(&dir).unwrap();
        let msg = format!("{:#}", load_existing_with(None, &dir).unwrap_err());
        assert!(msg.contains("no key files"), "{msg}");
        assert!(keys::list_dir(&dir).unwrap().is_empty());
        let ring = KeyRing::single(KeyId::new("envkey").unwrap(), Key::generate().unwrap());
        let (got, source) = load_existing_with(Some(ring), &dir).unwrap();
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
