//! The key directory: loading it into a [`KeyRing`], and listing it for an operator's CLI. The
//! format is described in the `keys` module's docs. Writing key files is left to the
//! application (the reference server's `keygen`).

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use zeroize::Zeroizing;

use super::{
    Key, KeyError, KeyId, KeyRing, KeyTextProblem, PrimaryProblem, id_problem, parse_key, shown_id,
};

/// Name of the file naming the primary key in a key directory.
pub const PRIMARY_FILE: &str = "PRIMARY";

/// Extension of key files in a key directory.
pub const KEY_FILE_EXT: &str = ".key";

/// Key files larger than this are refused before reading: a real one is 44
/// bytes plus whitespace, so anything this big is the wrong file.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// Options for [`KeyRing::load_dir`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Accept key files readable or writable by group or others, and a key
    /// directory writable by them. Only for setups where the mode cannot be
    /// controlled; anyone who can read a key, or put one in the directory,
    /// can forge sessions.
    pub danger_allow_loose_permissions: bool,
}

impl KeyRing {
    /// Loads a key directory (see the [module docs](crate::keys) for the format).
    ///
    /// The primary comes first in [`ids`](Self::ids), the others follow
    /// sorted by id.
    pub fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<KeyRing, KeyError> {
        // Scanned first, so a missing or unreadable directory gets its own error.
        let scan = scan_dir(dir)?;
        check_dir_permissions(dir, opts)?;
        let mut keys = Vec::with_capacity(scan.keys.len());
        for (id, path) in scan.keys {
            let key = read_key_file(&path, opts)?;
            keys.push((id, key));
        }
        if keys.is_empty() {
            return Err(KeyError::NoKeys {
                path: dir.to_path_buf(),
            });
        }
        let primary_index = match scan.primary_file {
            Some(primary_path) => {
                let id = read_primary_file(&primary_path)?;
                keys.iter()
                    .position(|(kid, _)| *kid == id)
                    .ok_or(KeyError::PrimaryMissing {
                        path: primary_path,
                        id,
                    })?
            }
            None if keys.len() == 1 => 0,
            None => {
                return Err(KeyError::NoPrimary {
                    path: dir.to_path_buf(),
                    count: keys.len(),
                });
            }
        };
        let primary = keys.remove(primary_index);
        // File names are unique, so this cannot find duplicates; going
        // through `new` keeps the invariant in one place anyway.
        KeyRing::new(primary, keys)
    }
}

/// What a key directory holds, by name only.
struct DirScan {
    /// Key files, sorted by file name.
    keys: Vec<(KeyId, PathBuf)>,
    /// The `PRIMARY` file, if present.
    primary_file: Option<PathBuf>,
}

/// Lists `dir` in sorted order, validating key file names.
fn scan_dir(dir: &Path) -> Result<DirScan, KeyError> {
    let read_dir_err = |source| KeyError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = fs::read_dir(dir)
        .map_err(read_dir_err)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_dir_err)?;
    names.sort();

    let mut scan = DirScan {
        keys: Vec::new(),
        primary_file: None,
    };
    for name in names {
        let path = dir.join(&name);
        if name == PRIMARY_FILE {
            scan.primary_file = Some(path);
            continue;
        }
        let Some(stem) = name
            .as_encoded_bytes()
            .strip_suffix(KEY_FILE_EXT.as_bytes())
        else {
            continue; // README.md, .gitignore, editor backups...
        };
        let stem = String::from_utf8_lossy(stem);
        if let Some(reason) = id_problem(&stem) {
            return Err(KeyError::InvalidId {
                id: shown_id(&stem),
                reason,
                path: Some(path),
            });
        }
        scan.keys.push((KeyId(stem.into_owned()), path));
    }
    Ok(scan)
}

/// Reads and checks one key file.
fn read_key_file(path: &Path, opts: &LoadOptions) -> Result<Key, KeyError> {
    let read_err = |source| KeyError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let malformed = |reason: KeyTextProblem| KeyError::MalformedKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(read_err)?;
    // Metadata of the open file, so the checks apply to what is read.
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(malformed(KeyTextProblem::NotAFile));
    }
    check_permissions(path, &meta, opts)?;
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(malformed(KeyTextProblem::TooLarge { len: meta.len() }));
    }
    // Pre-sized so the buffer never reallocates and leaves unzeroized copies.
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut text)
        .map_err(read_err)?;
    parse_key(&text).map_err(malformed)
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata, opts: &LoadOptions) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 && !opts.danger_allow_loose_permissions {
        return Err(KeyError::LoosePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(
    _path: &Path,
    _meta: &fs::Metadata,
    _opts: &LoadOptions,
) -> Result<(), KeyError> {
    // No portable notion of group/other bits; protect the directory instead.
    Ok(())
}

/// Refuses a key directory that group or others may write to (see the module docs).
#[cfg(unix)]
fn check_dir_permissions(dir: &Path, opts: &LoadOptions) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    // Follows a symlink: what matters is the directory the key files are read from.
    let meta = fs::metadata(dir).map_err(|source| KeyError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 && !opts.danger_allow_loose_permissions {
        return Err(KeyError::LooseDirPermissions {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_dir_permissions(_dir: &Path, _opts: &LoadOptions) -> Result<(), KeyError> {
    // No portable notion of group/other bits (as for the files).
    Ok(())
}

/// Reads the id named by a `PRIMARY` file.
fn read_primary_file(path: &Path) -> Result<KeyId, KeyError> {
    let malformed = |reason: PrimaryProblem| KeyError::MalformedPrimary {
        path: path.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(path).map_err(|source| KeyError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(malformed(PrimaryProblem::TooLarge));
    }
    // Zeroizing in case someone pasted a key here by mistake.
    let content = Zeroizing::new(fs::read(path).map_err(|source| KeyError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?);
    let text = content.trim_ascii();
    if text.is_empty() {
        return Err(malformed(PrimaryProblem::Empty));
    }
    std::str::from_utf8(text)
        .ok()
        .filter(|s| id_problem(s).is_none())
        .map(|s| KeyId(s.to_owned()))
        .ok_or_else(|| malformed(PrimaryProblem::InvalidId))
}
/// A key file as described by [`list_dir`]; holds no key bytes.
#[derive(Clone, Debug)]
pub struct KeyFileInfo {
    /// The key's id (from the file name).
    pub id: KeyId,
    /// The key file.
    pub path: PathBuf,
    /// Whether this key would be primary when the directory is loaded.
    pub primary: bool,
    /// The file's modification time, if the platform reports it.
    pub modified: Option<SystemTime>,
}

/// Describes the key files in `dir` without reading their content, sorted by
/// file name (for an operator's `keys list`).
///
/// Unlike [`KeyRing::load_dir`] this reports rather than refuses an
/// unusable layout: an empty directory gives an empty list, and if
/// `PRIMARY` names a missing key or is absent with several keys, no entry is
/// marked primary. A malformed file name or `PRIMARY` is still an error.
pub fn list_dir(dir: &Path) -> Result<Vec<KeyFileInfo>, KeyError> {
    let scan = scan_dir(dir)?;
    let primary = match &scan.primary_file {
        Some(path) => Some(read_primary_file(path)?),
        None if scan.keys.len() == 1 => scan.keys.first().map(|(id, _)| id.clone()),
        None => None,
    };
    Ok(scan
        .keys
        .into_iter()
        .map(|(id, path)| KeyFileInfo {
            primary: primary.as_ref() == Some(&id),
            modified: fs::metadata(&path).and_then(|m| m.modified()).ok(),
            id,
            path,
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::test_support::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use tempfile::TempDir;

    /// Writes `<dir>/<name>` with `content` and mode 0600.
    fn put(dir: &Path, name: &str, content: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, content).unwrap();
        set_mode(&path, 0o600);
        path
    }

    fn put_key(dir: &Path, name: &str, key: &Key) -> PathBuf {
        put(dir, name, &format!("{}\n", key.to_base64().as_str()))
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(not(unix))]
    fn set_mode(_path: &Path, _mode: u32) {}

    fn load(dir: &Path) -> Result<KeyRing, KeyError> {
        KeyRing::load_dir(dir, &LoadOptions::default())
    }

    #[test]
    fn loads_dir_with_primary_and_two_keys() {
        let dir = TempDir::new().unwrap();
        let (k1, k2) = (test_key(1), test_key(2));
        put_key(dir.path(), "k1.key", &k1);
        put_key(dir.path(), "k2.key", &k2);
        put(dir.path(), "PRIMARY", "k2\n");

        let ring = load(dir.path()).unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.primary_id().as_str(), "k2");
        assert_eq!(ring.primary().1.expose_secret(), k2.expose_secret());
        assert_eq!(ids_of(&ring), ["k2", "k1"]);
        assert_eq!(ring.get(b"k1").unwrap().expose_secret(), k1.expose_secret());
    }

    #[test]
    fn single_key_without_primary_file_is_primary() {
        let dir = TempDir::new().unwrap();
        put_key(dir.path(), "only.key", &test_key(1));
        let ring = load(dir.path()).unwrap();
        assert_eq!(ring.primary_id().as_str(), "only");
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn several_keys_without_primary_file_is_no_primary() {
        let dir = TempDir::new().unwrap();
        put_key(dir.path(), "a.key", &test_key(1));
        put_key(dir.path(), "b.key", &test_key(2));
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(err, KeyError::NoPrimary { count: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("PRIMARY"), "{err}");
    }

    #[test]
    fn primary_naming_missing_key_is_primary_missing() {
        let dir = TempDir::new().unwrap();
        put_key(dir.path(), "k1.key", &test_key(1));
        let primary = put(dir.path(), "PRIMARY", "k9\n");
        let err = load(dir.path()).unwrap_err();
        match &err {
            KeyError::PrimaryMissing { path, id } => {
                assert_eq!(path, &primary);
                assert_eq!(id.as_str(), "k9");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("k9.key"), "{err}");
    }

    #[test]
    fn malformed_primary_file_is_refused_without_echoing_content() {
        let dir = TempDir::new().unwrap();
        put_key(dir.path(), "k1.key", &test_key(1));
        let key = test_key(2);
        put(dir.path(), "PRIMARY", &key.to_base64());
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, KeyError::MalformedPrimary { .. }), "{err:?}");
        assert_no_key_material(&format!("{err} {err:?}"), &key);
    }

    #[test]
    fn bad_base64_file_is_named_and_content_not_shown() {
        let dir = TempDir::new().unwrap();
        let path = put(dir.path(), "k1.key", "SECRETMARKER-not*base64!\n");
        let err = load(dir.path()).unwrap_err();
        let (shown, debug) = (err.to_string(), format!("{err:?}"));
        match &err {
            KeyError::MalformedKeyFile { path: p, reason } => {
                assert_eq!(p, &path);
                assert_eq!(*reason, KeyTextProblem::NotBase64);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(shown.contains(&path.display().to_string()), "{shown}");
        for text in [&shown, &debug] {
            assert!(!text.contains("SECRETMARKER"), "{text}");
            assert!(!text.contains('*'), "offending char echoed: {text}");
        }
    }

    #[test]
    fn wrong_length_file_is_named_and_content_not_shown() {
        let dir = TempDir::new().unwrap();
        let short = STANDARD.encode([0x5a; 31]);
        let path = put(dir.path(), "k1.key", &short);
        let err = load(dir.path()).unwrap_err();
        let shown = err.to_string();
        assert!(
            matches!(&err, KeyError::MalformedKeyFile { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert!(
            shown.contains("decodes to 31 bytes, expected 32"),
            "{shown}"
        );
        assert!(shown.contains(&path.display().to_string()), "{shown}");
        assert!(!shown.contains(&short) && !format!("{err:?}").contains(&short));
    }

    #[test]
    fn empty_and_oversized_key_files_are_malformed() {
        let dir = TempDir::new().unwrap();
        put(dir.path(), "k1.key", "  \n");
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");

        let dir = TempDir::new().unwrap();
        put(dir.path(), "k1.key", &"A".repeat(5000));
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_refused_and_override_accepted() {
        let dir = TempDir::new().unwrap();
        let path = put_key(dir.path(), "k1.key", &test_key(1));
        set_mode(&path, 0o640);

        let err = load(dir.path()).unwrap_err();
        match &err {
            KeyError::LoosePermissions { path: p, mode } => {
                assert_eq!(p, &path);
                assert_eq!(*mode, 0o640);
            }
            other => panic!("unexpected {other:?}"),
        }
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("chmod 600 {}", path.display())),
            "{shown}"
        );
        assert!(shown.contains("danger_allow_loose_permissions"), "{shown}");

        let opts = LoadOptions {
            danger_allow_loose_permissions: true,
        };
        let ring = KeyRing::load_dir(dir.path(), &opts).unwrap();
        assert_eq!(ring.primary_id().as_str(), "k1");
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_can_write_to_is_refused_and_override_accepted() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("keys");
        fs::create_dir(&dir).unwrap();
        put_key(&dir, "k1.key", &test_key(1));
        for loose in [0o777, 0o770, 0o1777, 0o702] {
            set_mode(&dir, loose);
            let err = load(&dir).unwrap_err();
            match &err {
                KeyError::LooseDirPermissions { path, mode } => {
                    assert_eq!((path, *mode), (&dir, loose));
                }
                other => panic!("{loose:o}: unexpected {other:?}"),
            }
            let shown = err.to_string();
            assert!(
                shown.contains(&format!("chmod go-w {}", dir.display()))
                    && shown.contains("danger_allow_loose_permissions"),
                "{shown}"
            );
            let opts = LoadOptions {
                danger_allow_loose_permissions: true,
            };
            assert_eq!(
                KeyRing::load_dir(&dir, &opts)
                    .unwrap()
                    .primary_id()
                    .as_str(),
                "k1"
            );
        }
        // Readable and searchable by others is fine: the directory holds only names.
        for fine in [0o700, 0o750, 0o755] {
            set_mode(&dir, fine);
            assert_eq!(load(&dir).unwrap().primary_id().as_str(), "k1", "{fine:o}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn owner_only_modes_are_accepted() {
        let dir = TempDir::new().unwrap();
        let path = put_key(dir.path(), "k1.key", &test_key(1));
        set_mode(&path, 0o400);
        assert!(load(dir.path()).is_ok());
    }

    #[test]
    fn non_key_files_are_ignored() {
        let dir = TempDir::new().unwrap();
        put_key(dir.path(), "k1.key", &test_key(1));
        put(dir.path(), "README.md", "# keys\n");
        put(dir.path(), ".gitignore", "*.key\nPRIMARY\n");
        put(dir.path(), "k1.key~", "garbage");
        put(dir.path(), "k2.key.bak", "garbage");
        let loose = put(dir.path(), "notes.txt", "not a key");
        set_mode(&loose, 0o644);
        fs::create_dir(dir.path().join("subdir")).unwrap();

        let ring = load(dir.path()).unwrap();
        assert_eq!(ids_of(&ring), ["k1"]);
    }

    #[test]
    fn invalid_id_in_file_name_is_refused_with_path() {
        let dir = TempDir::new().unwrap();
        let path = put_key(dir.path(), "bad id!.key", &test_key(1));
        let err = load(dir.path()).unwrap_err();
        match &err {
            KeyError::InvalidId { id, path: p, .. } => {
                assert_eq!(id, "\"bad id!\"");
                assert_eq!(p.as_deref(), Some(path.as_path()));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("bad id!.key"), "{err}");
    }

    #[test]
    fn empty_or_missing_dir_errors_name_the_dir() {
        let dir = TempDir::new().unwrap();
        put(dir.path(), "README.md", "# keys\n");
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, KeyError::NoKeys { path } if path == dir.path()),
            "{err:?}"
        );

        let missing = dir.path().join("nope");
        let err = load(&missing).unwrap_err();
        assert!(
            matches!(&err, KeyError::ReadDir { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn errors_follow_sorted_file_order() {
        let dir = TempDir::new().unwrap();
        for name in ["c.key", "a.key", "b.key"] {
            put(dir.path(), name, "bad");
        }
        for _ in 0..3 {
            let err = load(dir.path()).unwrap_err();
            assert!(
                matches!(&err, KeyError::MalformedKeyFile { path, .. }
                    if path.file_name().unwrap() == "a.key"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn list_dir_reports_primary_without_reading_keys() {
        let dir = TempDir::new().unwrap();
        put_key(dir.path(), "k1.key", &test_key(1));
        put_key(dir.path(), "k2.key", &test_key(2));
        put(dir.path(), "README.md", "# keys\n");
        put(dir.path(), "PRIMARY", "k2");

        let list = list_dir(dir.path()).unwrap();
        let summary: Vec<_> = list.iter().map(|i| (i.id.as_str(), i.primary)).collect();
        assert_eq!(summary, [("k1", false), ("k2", true)]);
        assert_eq!(list[1].path, dir.path().join("k2.key"));
        assert!(list.iter().all(|i| i.modified.is_some()));

        // With several keys and no PRIMARY nothing is primary, without error.
        fs::remove_file(dir.path().join("PRIMARY")).unwrap();
        let list = list_dir(dir.path()).unwrap();
        assert!(list.iter().all(|i| !i.primary));

        // A lone key is primary, as when loading.
        fs::remove_file(dir.path().join("k2.key")).unwrap();
        let list = list_dir(dir.path()).unwrap();
        assert!(list[0].primary);
    }
}
