//! Sealing keys: identifiers, secret key bytes, key rings, and loading them
//! from a directory or an environment variable.
//!
//! A [`KeyRing`] holds one *primary* key, which seals new cookies, and any
//! number of older keys, which only open cookies. A sealed token carries the
//! [`KeyId`] of the key that sealed it, so the engine looks the key up with
//! [`KeyRing::get`] and can re-seal under the primary when it differs.
//!
//! # Directory format
//!
//! ```text
//! keys/
//!   PRIMARY        optional: the primary key's id, e.g. "k2\n"
//!   k1.key         standard base64 (with padding) of 32 random bytes
//!   k2.key
//!   README.md      ignored: only `*.key` and `PRIMARY` are read
//!   .gitignore     ignored
//! ```
//!
//! - One key per file named `<id>.key`. The id follows the [`KeyId`] rules
//!   (1 to 16 characters from `[A-Za-z0-9_-]`). The content is the standard
//!   base64 encoding, with padding, of exactly 32 bytes; surrounding ASCII
//!   whitespace (such as a trailing newline) is ignored.
//! - Files not ending in `.key` are ignored, except `PRIMARY`.
//! - `PRIMARY` holds the primary key's id (surrounding whitespace ignored).
//!   Without it, a directory with exactly one key uses that key as primary;
//!   several keys without `PRIMARY` are an error ([`KeyError::NoPrimary`]),
//!   because guessing the primary would make nodes disagree. A `PRIMARY`
//!   naming an id with no key file is [`KeyError::PrimaryMissing`].
//! - On unix, a `.key` file with any group or other permission bits
//!   (`mode & 0o077 != 0`) is refused with [`KeyError::LoosePermissions`]
//!   unless [`LoadOptions::danger_allow_loose_permissions`] is set. The mode
//!   checked is the one of the file a symlink points to.
//! - On unix, the directory itself (the one a symlink points to) is refused
//!   with [`KeyError::LooseDirPermissions`] when group or others may write to
//!   it (`mode & 0o022 != 0`, sticky bit or not): whoever can write there can
//!   add a key file or a `PRIMARY`, or swap one in by renaming, and so forge
//!   sessions. Reading the directory is harmless (it holds names only). The
//!   same [`LoadOptions::danger_allow_loose_permissions`] accepts it.
//! - Entries are read in sorted order, so the same directory always yields
//!   the same error.
//!
//! # Environment format
//!
//! [`ENV_VAR`] (`SEALED_SESSIONS_KEYS`) holds `id1:BASE64,id2:BASE64`.
//! Whitespace around items is allowed and empty items (a trailing comma) are
//! skipped. The first entry is the primary key.
//!
//! # Secrecy
//!
//! [`Key`] bytes are zeroized when dropped and never appear in any `Debug`
//! output or error message; errors about malformed keys describe the problem
//! (e.g. "decodes to 31 bytes, expected 32") without quoting the content.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;

/// Maximum length of a [`KeyId`] in bytes.
pub const MAX_ID_LEN: usize = 16;

/// Environment variable conventionally holding the key ring
/// (see [`KeyRing::from_env`]).
pub const ENV_VAR: &str = "SEALED_SESSIONS_KEYS";

/// Name of the file naming the primary key in a key directory.
pub const PRIMARY_FILE: &str = "PRIMARY";

/// Extension of key files in a key directory.
pub const KEY_FILE_EXT: &str = ".key";

/// Key files larger than this are refused before reading: a real one is 44
/// bytes plus whitespace, so anything this big is the wrong file.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// Errors from parsing, loading and writing keys.
///
/// No variant ever carries key bytes or base64 key text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key id is empty, too long, or has characters outside
    /// `[A-Za-z0-9_-]`.
    #[error("invalid key id {id}{}: {reason}", in_file(.path.as_deref()))]
    InvalidId {
        /// The rejected id, quoted; or, when too long to be an id, only its
        /// length (so a key pasted where an id belongs is never echoed).
        id: String,
        /// Why it was rejected.
        reason: String,
        /// The key file whose name gave the id, if it came from a directory.
        path: Option<PathBuf>,
    },

    /// A base64 key string passed to [`Key::from_base64`] is malformed.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// What is wrong with it (never the content itself).
        reason: String,
    },

    /// The same key id appears twice in one key ring.
    #[error("duplicate key id {id}")]
    DuplicateId {
        /// The repeated id.
        id: KeyId,
    },

    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed")]
    Rng {
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A key directory could not be listed (missing, not a directory, no
    /// permission).
    #[error("cannot read key directory {path}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// A key file or `PRIMARY` could not be opened or read.
    #[error("cannot read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// A key file's content is not base64 of exactly 32 bytes.
    #[error("malformed key file {path}: {reason}")]
    MalformedKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (never the content itself).
        reason: String,
    },

    /// The `PRIMARY` file does not contain a valid key id.
    #[error("malformed primary file {path}: {reason}")]
    MalformedPrimary {
        /// The `PRIMARY` file.
        path: PathBuf,
        /// What is wrong with it (never the content itself, in case a key
        /// was pasted there).
        reason: String,
    },

    /// A key file is readable or writable by group or others.
    #[error(
        "key file {path} has mode {mode:04o}, which gives access to group or others; \
         run `chmod 600 {path}`, or set danger_allow_loose_permissions to accept it"
    )]
    LoosePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A key directory is writable by group or others, who could add or
    /// replace key files in it.
    #[error(
        "key directory {path} has mode {mode:04o}, which lets group or others add or replace \
         key files in it; run `chmod go-w {path}` (or `chmod 700 {path}`), or set \
         danger_allow_loose_permissions to accept it"
    )]
    LooseDirPermissions {
        /// The key directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A key directory holds no `.key` files.
    #[error("no key files (*.key) in {path}")]
    NoKeys {
        /// The directory.
        path: PathBuf,
    },

    /// A key directory holds several keys but no `PRIMARY` file.
    #[error(
        "{count} key files in {path} but no {PRIMARY_FILE} file saying which one seals; \
         write the primary key's id to {path}/{PRIMARY_FILE}"
    )]
    NoPrimary {
        /// The directory.
        path: PathBuf,
        /// How many key files it holds.
        count: usize,
    },

    /// `PRIMARY` names a key id that has no key file.
    #[error("{path} names key {id}, but there is no {id}{KEY_FILE_EXT} beside it")]
    PrimaryMissing {
        /// The `PRIMARY` file.
        path: PathBuf,
        /// The id it names.
        id: KeyId,
    },

    /// A key-ring environment value is malformed.
    #[error("malformed key list: {reason}")]
    MalformedEnv {
        /// What is wrong, with the 1-based entry number (never key text).
        reason: String,
    },

    /// A key-ring environment variable is set but not valid unicode.
    #[error("environment variable {var} is not valid unicode")]
    EnvNotUnicode {
        /// The variable's name.
        var: String,
    },

    /// [`write_key_file`] refused to overwrite an existing key file.
    #[error("key file {path} already exists; refusing to overwrite it")]
    KeyFileExists {
        /// The existing file.
        path: PathBuf,
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

/// Renders " (from file <path>)" for [`KeyError::InvalidId`].
fn in_file(path: Option<&Path>) -> String {
    path.map(|p| format!(" (from file {})", p.display()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// KeyId
// ---------------------------------------------------------------------------

/// A key identifier: 1..=16 ASCII chars from `[A-Za-z0-9_-]`. Not secret.
///
/// It is stored in each sealed token, so it is short and restricted to
/// characters that need no escaping in file names, cookies or logs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Validates `s` as a key id.
    pub fn new(s: &str) -> Result<KeyId, KeyError> {
        match id_problem(s) {
            None => Ok(KeyId(s.to_owned())),
            Some(reason) => Err(KeyError::InvalidId {
                id: shown_id(s),
                reason,
                path: None,
            }),
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as bytes, as stored in tokens.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// A fresh random id: `k` followed by 8 lowercase hex digits.
    ///
    /// Ids only need to be unique, not secret, so if the OS random number
    /// generator fails this falls back to a hash of the time and process id
    /// rather than failing or panicking.
    pub fn generate() -> KeyId {
        let mut b = [0u8; 4];
        let n = match OsRng.try_fill_bytes(&mut b) {
            Ok(()) => u32::from_be_bytes(b),
            Err(_) => fallback_id_bits(),
        };
        KeyId(format!("k{n:08x}"))
    }
}

/// Non-cryptographic unique-ish bits for [`KeyId::generate`]'s fallback.
fn fallback_id_bits() -> u32 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .hash(&mut h);
    std::process::id().hash(&mut h);
    // Truncation is fine: any 32 bits of the hash will do.
    h.finish() as u32
}

/// Why `s` is not a valid key id, or `None` if it is.
fn id_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        Some("is empty".to_owned())
    } else if s.len() > MAX_ID_LEN {
        Some(format!(
            "is {} bytes long, at most {MAX_ID_LEN} allowed",
            s.len()
        ))
    } else if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        Some("may only contain A-Z, a-z, 0-9, '_' and '-'".to_owned())
    } else {
        None
    }
}

/// How a rejected id is shown in errors: quoted if short, else only its
/// length, because a too-long "id" may be a key pasted in the wrong place.
fn shown_id(s: &str) -> String {
    if s.len() <= MAX_ID_LEN {
        format!("{s:?}")
    } else {
        format!("({} bytes, not shown)", s.len())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyId").field(&self.0).finish()
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<KeyId, KeyError> {
        KeyId::new(s)
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// ---------------------------------------------------------------------------
// Key
// ---------------------------------------------------------------------------

/// 32 secret bytes, zeroized on drop.
///
/// `Debug` prints `Key(<redacted>)`; there is deliberately no `Display`,
/// `PartialEq` (which would invite non-constant-time comparison) or
/// serialization. Use [`Key::expose_secret`] where the bytes are needed.
#[derive(Clone, ZeroizeOnDrop)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// Wraps existing key bytes. The caller's copy of `b` is not zeroized.
    pub fn from_bytes(b: [u8; KEY_LEN]) -> Key {
        Key(b)
    }

    /// A fresh random key from the operating system's generator.
    ///
    /// Returns [`KeyError::Rng`] rather than panicking if the generator
    /// fails.
    pub fn generate() -> Result<Key, KeyError> {
        let mut key = Key([0; KEY_LEN]);
        // Fill in place so the only copy of the bytes is the one that is
        // zeroized on drop.
        OsRng
            .try_fill_bytes(&mut key.0)
            .map_err(|e| KeyError::Rng {
                source: Box::new(e),
            })?;
        Ok(key)
    }

    /// The secret bytes.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Standard base64 with padding (the key-file format), in a string that
    /// is zeroized on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0))
    }

    /// Parses standard base64 with padding; surrounding ASCII whitespace is
    /// trimmed and the result must be exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Key, KeyError> {
        parse_key(s.as_bytes()).map_err(|reason| KeyError::InvalidKey { reason })
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Decodes key text; the error is a reason that never quotes the input
/// (base64's own errors name the offending character, so they are dropped).
fn parse_key(text: &[u8]) -> Result<Key, String> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err("empty".to_owned());
    }
    let decoded = Zeroizing::new(
        STANDARD
            .decode(text)
            .map_err(|_| "not base64 (standard alphabet, with padding)".to_owned())?,
    );
    if decoded.len() != KEY_LEN {
        return Err(format!(
            "decodes to {} bytes, expected {KEY_LEN}",
            decoded.len()
        ));
    }
    let mut key = Key([0; KEY_LEN]);
    key.0.copy_from_slice(&decoded);
    Ok(key)
}

// ---------------------------------------------------------------------------
// KeyRing
// ---------------------------------------------------------------------------

/// A set of keys: one primary seals, all open.
///
/// Rings are small (a few keys during a rotation), so lookup is a linear
/// scan without allocation, primary first.
#[derive(Clone)]
pub struct KeyRing {
    // Kept apart from the others so a ring can never lack a primary.
    primary: (KeyId, Key),
    others: Vec<(KeyId, Key)>,
}

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
    /// A ring sealing with `primary` and also opening with `others`.
    ///
    /// Fails with [`KeyError::DuplicateId`] if any id repeats.
    pub fn new(
        primary: (KeyId, Key),
        others: impl IntoIterator<Item = (KeyId, Key)>,
    ) -> Result<KeyRing, KeyError> {
        let mut ring = KeyRing {
            primary,
            others: Vec::new(),
        };
        for (id, key) in others {
            if ring.get(id.as_bytes()).is_some() {
                return Err(KeyError::DuplicateId { id });
            }
            ring.others.push((id, key));
        }
        Ok(ring)
    }

    /// A ring of one key, which is primary.
    pub fn single(id: KeyId, key: Key) -> KeyRing {
        KeyRing {
            primary: (id, key),
            others: Vec::new(),
        }
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> &KeyId {
        &self.primary.0
    }

    /// The key that seals, with its id.
    pub fn primary(&self) -> (&KeyId, &Key) {
        (&self.primary.0, &self.primary.1)
    }

    /// The key with id bytes `id` (as read from a token), if in the ring.
    pub fn get(&self, id: &[u8]) -> Option<&Key> {
        std::iter::once(&self.primary)
            .chain(&self.others)
            .find(|(kid, _)| kid.as_bytes() == id)
            .map(|(_, key)| key)
    }

    /// As [`KeyRing::get`], also saying whether the key is the primary: one comparison of the
    /// id instead of two on the validation path.
    pub(crate) fn get_marked(&self, id: &[u8]) -> Option<(&Key, bool)> {
        if self.primary.0.as_bytes() == id {
            return Some((&self.primary.1, true));
        }
        self.others
            .iter()
            .find(|(kid, _)| kid.as_bytes() == id)
            .map(|(_, key)| (key, false))
    }

    /// All ids, primary first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        std::iter::once(&self.primary.0).chain(self.others.iter().map(|(id, _)| id))
    }

    /// Number of keys (at least 1).
    pub fn len(&self) -> usize {
        1 + self.others.len()
    }

    /// Always `false`: a ring has at least its primary key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Loads a key directory (see the [module docs](self) for the format).
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

    /// Parses `id1:BASE64,id2:BASE64`; the first entry is primary.
    ///
    /// Whitespace around items is allowed and empty items are skipped.
    /// Errors give the entry number and never quote key text.
    pub fn from_env_value(value: &str) -> Result<KeyRing, KeyError> {
        let malformed = |reason: String| KeyError::MalformedEnv { reason };
        let mut entries = Vec::new();
        for (n, item) in value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .enumerate()
        {
            let n = n + 1;
            let (id, key) = item
                .split_once(':')
                .ok_or_else(|| malformed(format!("entry {n} is not of the form id:BASE64")))?;
            // The id is not echoed here: in a malformed list it may be key text.
            let id = KeyId::new(id.trim())
                .map_err(|_| malformed(format!("entry {n} has an invalid key id")))?;
            let key = parse_key(key.as_bytes())
                .map_err(|reason| malformed(format!("entry {n} (key {id}): {reason}")))?;
            entries.push((id, key));
        }
        let mut entries = entries.into_iter();
        let primary = entries
            .next()
            .ok_or_else(|| malformed("no entries".to_owned()))?;
        KeyRing::new(primary, entries)
    }

    /// Reads the ring from environment variable `var` (usually [`ENV_VAR`]).
    ///
    /// `Ok(None)` if it is unset or blank, so callers can fall back to a key
    /// directory.
    pub fn from_env(var: &str) -> Result<Option<KeyRing>, KeyError> {
        match std::env::var(var) {
            Ok(value) => {
                let value = Zeroizing::new(value);
                if value.trim().is_empty() {
                    Ok(None)
                } else {
                    KeyRing::from_env_value(&value).map(Some)
                }
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(KeyError::EnvNotUnicode {
                var: var.to_owned(),
            }),
        }
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids only: they are not secret, and this is what an operator needs.
        let ids: Vec<&str> = self.ids().map(KeyId::as_str).collect();
        f.debug_struct("KeyRing")
            .field("primary", &self.primary.0.as_str())
            .field("ids", &ids)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Directory reading
// ---------------------------------------------------------------------------

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
    let malformed = |reason: String| KeyError::MalformedKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(read_err)?;
    // Metadata of the open file, so the checks apply to what is read.
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(malformed("not a regular file".to_owned()));
    }
    check_permissions(path, &meta, opts)?;
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(malformed(format!(
            "is {} bytes, too large for a key file",
            meta.len()
        )));
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
    let malformed = |reason: &str| KeyError::MalformedPrimary {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let meta = fs::metadata(path).map_err(|source| KeyError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(malformed("too large to hold a key id"));
    }
    // Zeroizing in case someone pasted a key here by mistake.
    let content = Zeroizing::new(fs::read(path).map_err(|source| KeyError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?);
    let text = content.trim_ascii();
    if text.is_empty() {
        return Err(malformed("is empty; it should hold the primary key's id"));
    }
    std::str::from_utf8(text)
        .ok()
        .filter(|s| id_problem(s).is_none())
        .map(|s| KeyId(s.to_owned()))
        .ok_or_else(|| malformed("does not hold a valid key id"))
}

// ---------------------------------------------------------------------------
// Operator helpers
// ---------------------------------------------------------------------------

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

/// Writes a new key file `<dir>/<id>.key` with mode 0600, creating `dir`
/// (mode 0700) if missing. Refuses to overwrite an existing key file.
///
/// If `make_primary`, then also replaces `<dir>/PRIMARY` with `id` + "\n"
/// atomically (temporary file + rename), after the key file is complete, so
/// `PRIMARY` never names a key that is not there.
pub fn write_key_file(
    dir: &Path,
    id: &KeyId,
    key: &Key,
    make_primary: bool,
) -> Result<(), KeyError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::WriteFile { path, source }
    };
    create_private_dir(dir).map_err(write_err(dir))?;

    let path = dir.join(format!("{id}{KEY_FILE_EXT}"));
    let mut file = match open_new(&path, 0o600) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeyError::KeyFileExists { path });
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
/// Refuses, with [`KeyError::PrimaryMissing`], an id that has no `<id>.key` in `dir`, so
/// `PRIMARY` never names a key that is not there.
pub fn write_primary_file(dir: &Path, id: &KeyId) -> Result<(), KeyError> {
    let key_path = dir.join(format!("{id}{KEY_FILE_EXT}"));
    match fs::metadata(&key_path) {
        Ok(m) if m.is_file() => write_primary(dir, id),
        Ok(_) => Err(KeyError::PrimaryMissing {
            path: dir.join(PRIMARY_FILE),
            id: id.clone(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(KeyError::PrimaryMissing {
            path: dir.join(PRIMARY_FILE),
            id: id.clone(),
        }),
        Err(source) => Err(KeyError::ReadFile {
            path: key_path,
            source,
        }),
    }
}

/// Replaces `<dir>/PRIMARY` atomically.
fn write_primary(dir: &Path, id: &KeyId) -> Result<(), KeyError> {
    let final_path = dir.join(PRIMARY_FILE);
    // Hidden and without `.key`, so a crash leaves a file loaders ignore.
    let tmp = dir.join(format!(".{PRIMARY_FILE}.tmp-{}", std::process::id()));
    let result = open_new(&tmp, 0o644)
        .and_then(|mut f| write_all_synced(&mut f, format!("{id}\n").as_bytes()))
        .and_then(|()| fs::rename(&tmp, &final_path));
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(KeyError::WriteFile {
            path: final_path,
            source,
        });
    }
    sync_dir(dir).map_err(|source| KeyError::WriteFile {
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

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    fn id(s: &str) -> KeyId {
        KeyId::new(s).unwrap()
    }

    /// A key whose bytes are all distinct, so leaks are easy to spot.
    fn test_key(seed: u8) -> Key {
        let mut b = [0u8; KEY_LEN];
        for (i, x) in b.iter_mut().enumerate() {
            *x = seed.wrapping_mul(31).wrapping_add(i as u8 * 7 + 1);
        }
        Key::from_bytes(b)
    }

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

    fn ids_of(ring: &KeyRing) -> Vec<&str> {
        ring.ids().map(KeyId::as_str).collect()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Asserts `text` shows none of the key's encodings.
    fn assert_no_key_material(text: &str, key: &Key) {
        let b64 = key.to_base64();
        let bytes = key.expose_secret();
        let lower = hex(bytes);
        assert!(!text.contains(b64.as_str()), "base64 key in {text:?}");
        // Even a prefix would be a leak; 8 chars is far beyond chance.
        assert!(!text.contains(&b64[..8]), "base64 prefix in {text:?}");
        assert!(!text.contains(&lower[..8]), "hex key in {text:?}");
        assert!(
            !text.contains(&lower[..8].to_uppercase()),
            "HEX key in {text:?}"
        );
        assert!(
            !text.contains(format!("{:?}", &bytes[..4]).trim_end_matches(']')),
            "byte list in {text:?}"
        );
    }

    #[test]
    fn get_marked_finds_the_same_key_as_get_and_marks_only_the_primary() {
        let ring = KeyRing::new(
            (KeyId::new("k1").unwrap(), Key::from_bytes([1; 32])),
            [
                (KeyId::new("k2").unwrap(), Key::from_bytes([2; 32])),
                (KeyId::new("k10").unwrap(), Key::from_bytes([3; 32])),
            ],
        )
        .unwrap();
        for (id, primary) in [("k1", true), ("k2", false), ("k10", false)] {
            let (key, marked) = ring.get_marked(id.as_bytes()).unwrap();
            assert_eq!(marked, primary, "{id}");
            let same = ring.get(id.as_bytes()).unwrap();
            assert_eq!(key.expose_secret(), same.expose_secret(), "{id}");
        }
        for id in ["k", "k3", "k1 ", ""] {
            assert!(ring.get_marked(id.as_bytes()).is_none(), "{id:?}");
        }
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
                assert!(reason.contains("not base64"), "{reason}");
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
    fn env_value_first_entry_is_primary() {
        let (k1, k2) = (test_key(1), test_key(2));
        let value = format!(
            " new : {} ,\n old:{}\n,",
            k2.to_base64().as_str(),
            k1.to_base64().as_str()
        );
        let ring = KeyRing::from_env_value(&value).unwrap();
        assert_eq!(ids_of(&ring), ["new", "old"]);
        assert_eq!(ring.primary().1.expose_secret(), k2.expose_secret());
        assert_eq!(
            ring.get(b"old").unwrap().expose_secret(),
            k1.expose_secret()
        );
    }

    #[test]
    fn env_value_duplicate_ids_are_refused() {
        let b64 = test_key(1).to_base64();
        let value = format!("a:{0},b:{0},a:{0}", b64.as_str());
        let err = KeyRing::from_env_value(&value).unwrap_err();
        assert!(
            matches!(&err, KeyError::DuplicateId { id } if id.as_str() == "a"),
            "{err:?}"
        );
    }

    #[test]
    fn env_value_errors_give_entry_and_hide_key_text() {
        let key = test_key(3);
        let b64 = key.to_base64();
        let cases = [
            (String::new(), "no entries"),
            (" , ".to_owned(), "no entries"),
            (format!("a:{}, {}", b64.as_str(), b64.as_str()), "entry 2"),
            (
                format!("{}:a", b64.as_str()),
                "entry 1 has an invalid key id",
            ),
            (format!("a:{}", &b64[..20]), "entry 1 (key a)"),
        ];
        for (value, expected) in cases {
            let err = KeyRing::from_env_value(&value).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(matches!(err, KeyError::MalformedEnv { .. }), "{err:?}");
            assert!(shown.contains(expected), "{shown}");
            assert_no_key_material(&shown, &key);
        }
    }

    #[test]
    fn from_env_unset_is_none() {
        // Setting variables needs `unsafe` in edition 2024, so only the
        // unset path is tested here; parsing is covered via from_env_value.
        let ring = KeyRing::from_env("SEALED_SESSIONS_KEYS_TEST_SURELY_UNSET").unwrap();
        assert!(ring.is_none());
    }

    #[test]
    fn debug_of_key_and_ring_shows_no_key_material() {
        let (k1, k2) = (Key::generate().unwrap(), test_key(2));
        let ring = KeyRing::new((id("k1"), k1.clone()), [(id("k2"), k2.clone())]).unwrap();

        let key_debug = format!("{k1:?} {k1:#?}");
        assert_eq!(format!("{k1:?}"), "Key(<redacted>)");
        assert_no_key_material(&key_debug, &k1);

        let ring_debug = format!("{ring:?} {ring:#?}");
        assert!(ring_debug.contains("k1") && ring_debug.contains("k2"));
        assert!(ring_debug.contains("primary: \"k1\""), "{ring_debug}");
        assert_no_key_material(&ring_debug, &k1);
        assert_no_key_material(&ring_debug, &k2);
    }

    #[cfg(unix)]
    #[test]
    fn write_key_file_creates_0600_files_refuses_overwrite_and_writes_primary() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = TempDir::new().unwrap();
        let dir = base.path().join("keys");
        let (k1, k2) = (test_key(1), test_key(2));

        write_key_file(&dir, &id("k1"), &k1, false).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("k1.key")), 0o600);
        assert!(!dir.join("PRIMARY").exists());

        let err = write_key_file(&dir, &id("k1"), &k2, true).unwrap_err();
        assert!(matches!(err, KeyError::KeyFileExists { .. }), "{err:?}");
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
        put_key(dir.path(), "k1.key", &test_key(1));
        put_key(dir.path(), "k2.key", &test_key(2));
        assert!(matches!(load(dir.path()), Err(KeyError::NoPrimary { .. })));
        write_primary_file(dir.path(), &id("k2")).unwrap();
        assert_eq!(load(dir.path()).unwrap().primary_id().as_str(), "k2");
        write_primary_file(dir.path(), &id("k1")).unwrap();
        assert_eq!(load(dir.path()).unwrap().primary_id().as_str(), "k1");
        let err = write_primary_file(dir.path(), &id("k9")).unwrap_err();
        assert!(matches!(err, KeyError::PrimaryMissing { .. }), "{err:?}");
        assert_eq!(load(dir.path()).unwrap().primary_id().as_str(), "k1");
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

    #[test]
    fn key_id_validation() {
        assert!(KeyId::new("").is_err());
        assert!(KeyId::new(&"a".repeat(17)).is_err());
        for bad in ["a b", "a.b", "a/b", "a:b", "é", "k1\n"] {
            assert!(KeyId::new(bad).is_err(), "{bad:?} accepted");
        }
        let max = "Az09_-Az09_-Az09";
        assert_eq!(max.len(), 16);
        assert_eq!(KeyId::new(max).unwrap().as_str(), max);
        assert_eq!("k1".parse::<KeyId>().unwrap(), id("k1"));
        assert_eq!(id("k1").to_string(), "k1");
        assert_eq!(format!("{:?}", id("k1")), "KeyId(\"k1\")");
    }

    #[test]
    fn too_long_id_is_not_echoed_in_error() {
        let b64 = test_key(1).to_base64();
        let err = KeyId::new(&b64).unwrap_err();
        assert_no_key_material(&format!("{err} {err:?}"), &test_key(1));
        assert!(err.to_string().contains("44 bytes"), "{err}");
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = KeyId::generate();
        let b = KeyId::generate();
        assert_ne!(a, b);
        for g in [&a, &b] {
            let s = g.as_str();
            assert_eq!(s.len(), 9);
            assert!(s.starts_with('k'));
            assert!(
                s[1..]
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            );
            assert_eq!(KeyId::new(s).unwrap(), *g);
        }
    }

    #[test]
    fn get_finds_by_bytes_and_none_for_unknown() {
        let (k1, k2) = (test_key(1), test_key(2));
        let ring = KeyRing::new((id("k1"), k1.clone()), [(id("k2"), k2.clone())]).unwrap();
        assert_eq!(ring.get(b"k1").unwrap().expose_secret(), k1.expose_secret());
        assert_eq!(ring.get(b"k2").unwrap().expose_secret(), k2.expose_secret());
        assert!(ring.get(b"k3").is_none());
        assert!(ring.get(b"").is_none());
        assert!(ring.get(b"k").is_none());
        assert!(ring.get(b"k1 ").is_none());
    }

    #[test]
    fn new_refuses_duplicate_of_primary() {
        let err = KeyRing::new((id("a"), test_key(1)), [(id("a"), test_key(2))]).unwrap_err();
        assert!(matches!(err, KeyError::DuplicateId { .. }), "{err:?}");
        assert!(err.to_string().contains('a'));
    }

    #[test]
    fn base64_round_trip_and_strictness() {
        let key = Key::generate().unwrap();
        let b64 = key.to_base64();
        assert_eq!(b64.len(), 44);
        let back = Key::from_base64(&format!("\n  {}\t\n", b64.as_str())).unwrap();
        assert_eq!(back.expose_secret(), key.expose_secret());

        // Padding is required.
        assert!(Key::from_base64(b64.trim_end_matches('=')).is_err());
        // URL-safe alphabet is not standard base64.
        let url = STANDARD
            .encode([0xfb; 32])
            .replace('+', "-")
            .replace('/', "_");
        assert!(Key::from_base64(&url).is_err());
        let err = Key::from_base64(&STANDARD.encode([1; 33])).unwrap_err();
        assert!(err.to_string().contains("33 bytes"), "{err}");
    }

    #[test]
    fn generated_keys_differ() {
        let a = Key::generate().unwrap();
        let b = Key::generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
