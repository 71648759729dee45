//! Writing the key directory: a new key file (`keygen`, and the first key `serve` generates in
//! development) and the `PRIMARY` file. The library only reads key directories
//! ([`KeyRing::load_dir`](sealed_sessions::KeyRing::load_dir), [`list_dir`](sealed_sessions::keys::list_dir)); the format
//! is described in [`sealed_sessions::keys`].
//!
//! Files are written so that a loader never sees a half-made directory: a key file is complete
//! and synced before `PRIMARY` may name it, and `PRIMARY` is replaced through a temporary file
//! and a rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use sealed_sessions::keys::{KEY_FILE_EXT, PRIMARY_FILE};
use sealed_sessions::{Key, KeyId};

/// A key directory could not be written. No variant carries key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyWriteError {
    /// [`write_key_file`] refused to overwrite an existing key file.
    #[error("key file {path} already exists; refusing to overwrite it")]
    KeyFileExists {
        /// The existing file.
        path: PathBuf,
    },

    /// [`write_primary_file`] was asked to name a key that has no key file.
    #[error("{path} names key {id}, but there is no {id}{KEY_FILE_EXT} beside it")]
    PrimaryMissing {
        /// The `PRIMARY` file.
        path: PathBuf,
        /// The id it was to name.
        id: KeyId,
    },

    /// Looking for the key file `PRIMARY` was to name failed.
    #[error("cannot read {path}")]
    ReadFile {
        /// The key file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// Creating the key directory or writing a file in it failed.
    #[error("cannot write {path}")]
    WriteFile {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
}

/// Writes a new key file `<dir>/<id>.key` with mode 0600, creating `dir` (mode 0700) if missing.
/// Refuses to overwrite an existing key file.
///
/// If `make_primary`, then also replaces `<dir>/PRIMARY` with `id` + "\n" atomically (temporary
/// file + rename), after the key file is complete, so `PRIMARY` never names a key that is not
/// there.
///
/// # Errors
/// [`KeyWriteError::KeyFileExists`] for an id that has a key file already;
/// [`KeyWriteError::WriteFile`] when the directory or a file cannot be written (a partly written
/// key file is removed).
pub fn write_key_file(
    dir: &Path,
    id: &KeyId,
    key: &Key,
    make_primary: bool,
) -> Result<(), KeyWriteError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyWriteError::WriteFile { path, source }
    };
    create_private_dir(dir).map_err(write_err(dir))?;

    let path = key_path(dir, id);
    let mut file = match open_new(&path, 0o600) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeyWriteError::KeyFileExists { path });
        }
        Err(e) => return Err(write_err(&path)(e)),
    };
    let mut text = key.to_base64();
    text.push('\n');
    if let Err(e) = write_all_synced(&mut file, text.as_bytes()) {
        // Remove the partial file so a retry is not refused as "exists".
        let _ = fs::remove_file(&path);
        return Err(write_err(&path)(e));
    }

    if make_primary {
        write_primary(dir, id)?;
    }
    Ok(())
}

/// Makes `id` the primary of the key directory `dir`: replaces `<dir>/PRIMARY` with `id` + "\n"
/// atomically (temporary file + rename).
///
/// # Errors
/// [`KeyWriteError::PrimaryMissing`] for an id that has no `<id>.key` in `dir`, so `PRIMARY`
/// never names a key that is not there; [`KeyWriteError::ReadFile`] when that cannot be
/// checked; [`KeyWriteError::WriteFile`] when `PRIMARY` cannot be written.
pub fn write_primary_file(dir: &Path, id: &KeyId) -> Result<(), KeyWriteError> {
    let key_path = key_path(dir, id);
    let missing = || KeyWriteError::PrimaryMissing {
        path: dir.join(PRIMARY_FILE),
        id: id.clone(),
    };
    match fs::metadata(&key_path) {
        Ok(m) if m.is_file() => write_primary(dir, id),
        Ok(_) => Err(missing()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(missing()),
        Err(source) => Err(KeyWriteError::ReadFile {
            path: key_path,
            source,
        }),
    }
}

/// `<dir>/<id>.key`.
fn key_path(dir: &Path, id: &KeyId) -> PathBuf {
    dir.join(format!("{id}{KEY_FILE_EXT}"))
}

/// Replaces `<dir>/PRIMARY` atomically.
fn write_primary(dir: &Path, id: &KeyId) -> Result<(), KeyWriteError> {
    let final_path = dir.join(PRIMARY_FILE);
    // Hidden and without `.key`, so a crash leaves a file loaders ignore.
    let tmp = dir.join(format!(".{PRIMARY_FILE}.tmp-{}", std::process::id()));
    let result = open_new(&tmp, 0o644)
        .and_then(|mut f| write_all_synced(&mut f, format!("{id}\n").as_bytes()))
        .and_then(|()| fs::rename(&tmp, &final_path));
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(KeyWriteError::WriteFile {
            path: final_path,
            source,
        });
    }
    sync_dir(dir).map_err(|source| KeyWriteError::WriteFile {
        path: dir.to_path_buf(),
        source,
    })
}

/// Creates a file that must not exist yet, with exactly `mode` on unix.
fn open_new(path: &Path, mode: u32) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        opts.mode(mode);
        let file = opts.open(path)?;
        // The umask may have cleared bits from `mode`; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        opts.open(path)
    }
}

fn write_all_synced(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Makes a rename in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sealed_sessions::KeyRing;
    use sealed_sessions::keys::{KeyError, LoadOptions};
    use tempfile::TempDir;

    fn id(s: &str) -> KeyId {
        KeyId::new(s).unwrap()
    }

    fn load(dir: &Path) -> Result<KeyRing, KeyError> {
        KeyRing::load_dir(dir, &LoadOptions::default())
    }

    fn ids_of(ring: &KeyRing) -> Vec<&str> {
        ring.ids().map(KeyId::as_str).collect()
    }

    #[cfg(unix)]
    #[test]
    fn write_key_file_creates_0600_files_refuses_overwrite_and_writes_primary() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = TempDir::new().unwrap();
        let dir = base.path().join("keys");
        let (k1, k2) = (Key::generate().unwrap(), Key::generate().unwrap());

        write_key_file(&dir, &id("k1"), &k1, false).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("k1.key")), 0o600);
        assert!(!dir.join("PRIMARY").exists());

        let err = write_key_file(&dir, &id("k1"), &k2, true).unwrap_err();
        assert!(
            matches!(&err, KeyWriteError::KeyFileExists { path } if *path == dir.join("k1.key")),
            "{err:?}"
        );
        assert!(err.to_string().contains("already exists"), "{err}");
        // The refused write changed nothing.
        assert!(!dir.join("PRIMARY").exists());
        let ring = load(&dir).unwrap();
        assert_eq!(ring.get(b"k1").unwrap().expose_secret(), k1.expose_secret());

        write_key_file(&dir, &id("k2"), &k2, true).unwrap();
        assert_eq!(mode(&dir.join("k2.key")), 0o600);
        assert_eq!(fs::read_to_string(dir.join("PRIMARY")).unwrap(), "k2\n");
        let ring = load(&dir).unwrap();
        assert_eq!(ids_of(&ring), ["k2", "k1"]);
        assert_eq!(ring.primary().1.expose_secret(), k2.expose_secret());

        // No temporary files left behind.
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["PRIMARY", "k1.key", "k2.key"]);
    }

    #[test]
    fn write_primary_file_switches_the_primary_and_refuses_a_missing_key() {
        let dir = TempDir::new().unwrap();
        write_key_file(dir.path(), &id("k1"), &Key::generate().unwrap(), false).unwrap();
        write_key_file(dir.path(), &id("k2"), &Key::generate().unwrap(), false).unwrap();
        assert!(matches!(load(dir.path()), Err(KeyError::NoPrimary { .. })));
        write_primary_file(dir.path(), &id("k2")).unwrap();
        assert_eq!(load(dir.path()).unwrap().primary_id().as_str(), "k2");
        write_primary_file(dir.path(), &id("k1")).unwrap();
        assert_eq!(load(dir.path()).unwrap().primary_id().as_str(), "k1");
        let err = write_primary_file(dir.path(), &id("k9")).unwrap_err();
        assert!(
            matches!(&err, KeyWriteError::PrimaryMissing { id, .. } if id.as_str() == "k9"),
            "{err:?}"
        );
        assert!(err.to_string().contains("no k9.key"), "{err}");
        assert_eq!(load(dir.path()).unwrap().primary_id().as_str(), "k1");
    }
}
