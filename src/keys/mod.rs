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

// The parts: this file holds the types (KeyError, KeyId, Key, KeyRing); `dir.rs` the key
// directory (loading, listing); `env.rs` the environment variable.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::rng::{self, RandomError};

mod dir;
mod env;

pub use dir::{KEY_FILE_EXT, KeyFileInfo, LoadOptions, PRIMARY_FILE, list_dir};
pub use env::ENV_VAR;

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;

/// Maximum length of a [`KeyId`] in bytes.
pub const MAX_ID_LEN: usize = 16;

/// Errors from parsing and loading keys.
///
/// No variant ever carries key bytes or base64 key text. `Debug` shows the message and its
/// causes, so a `main` that returns this with `?` prints the fix (`chmod 600 …`).
#[derive(thiserror::Error)]
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
        reason: IdProblem,
        /// The key file whose name gave the id, if it came from a directory.
        path: Option<PathBuf>,
    },

    /// A base64 key string passed to [`Key::from_base64`] is malformed.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// What is wrong with it (never the content itself).
        reason: KeyTextProblem,
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
        source: RandomError,
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
        reason: KeyTextProblem,
    },

    /// The `PRIMARY` file does not contain a valid key id.
    #[error("malformed primary file {path}: {reason}")]
    MalformedPrimary {
        /// The `PRIMARY` file.
        path: PathBuf,
        /// What is wrong with it (never the content itself, in case a key
        /// was pasted there).
        reason: PrimaryProblem,
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
        reason: EnvProblem,
    },

    /// A key-ring environment variable is set but not valid unicode.
    #[error("environment variable {var} is not valid unicode")]
    EnvNotUnicode {
        /// The variable's name.
        var: String,
    },
}

crate::report::debug_as_chain!(KeyError);

/// Renders " (from file <path>)" for [`KeyError::InvalidId`].
fn in_file(path: Option<&Path>) -> String {
    path.map(|p| format!(" (from file {})", p.display()))
        .unwrap_or_default()
}

/// Why a string is not a [`KeyId`] ([`KeyError::InvalidId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdProblem {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The id has a character outside `[A-Za-z0-9_-]`.
    BadCharacter,
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdProblem::Empty => f.write_str("is empty"),
            IdProblem::TooLong { len } => {
                write!(f, "is {len} bytes long, at most {MAX_ID_LEN} allowed")
            }
            IdProblem::BadCharacter => f.write_str("may only contain A-Z, a-z, 0-9, '_' and '-'"),
        }
    }
}

/// What is wrong with key text: [`Key::from_base64`]'s input, a key file's content
/// ([`KeyError::MalformedKeyFile`]) or an environment entry's key. Never quotes the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyTextProblem {
    /// Nothing but whitespace.
    Empty,
    /// Not standard base64 with padding. (base64's own error names the offending character,
    /// so it is not kept.)
    NotBase64,
    /// Base64 of other than [`KEY_LEN`] bytes.
    WrongLength {
        /// The decoded length.
        len: usize,
    },
    /// A key file that is not a regular file.
    NotAFile,
    /// A key file far larger than any key file (refused before reading).
    TooLarge {
        /// The file's size in bytes.
        len: u64,
    },
}

impl fmt::Display for KeyTextProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyTextProblem::Empty => f.write_str("empty"),
            KeyTextProblem::NotBase64 => {
                f.write_str("not base64 (standard alphabet, with padding)")
            }
            KeyTextProblem::WrongLength { len } => {
                write!(f, "decodes to {len} bytes, expected {KEY_LEN}")
            }
            KeyTextProblem::NotAFile => f.write_str("not a regular file"),
            KeyTextProblem::TooLarge { len } => {
                write!(f, "is {len} bytes, too large for a key file")
            }
        }
    }
}

/// What is wrong with a `PRIMARY` file ([`KeyError::MalformedPrimary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrimaryProblem {
    /// Far larger than a key id (refused before reading).
    TooLarge,
    /// Nothing but whitespace.
    Empty,
    /// Its content is not a valid key id.
    InvalidId,
}

impl fmt::Display for PrimaryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrimaryProblem::TooLarge => "too large to hold a key id",
            PrimaryProblem::Empty => "is empty; it should hold the primary key's id",
            PrimaryProblem::InvalidId => "does not hold a valid key id",
        })
    }
}

/// What is wrong with a key-ring environment value ([`KeyError::MalformedEnv`]). Entries are
/// numbered from 1; no variant holds key text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvProblem {
    /// The value holds no entry.
    NoEntries,
    /// An entry is not `id:BASE64`.
    NotIdAndKey {
        /// The entry's number.
        entry: usize,
    },
    /// An entry's id is not a valid [`KeyId`] (not shown: in a malformed list it may be key
    /// text).
    InvalidId {
        /// The entry's number.
        entry: usize,
    },
    /// An entry's key is malformed.
    InvalidKey {
        /// The entry's number.
        entry: usize,
        /// The entry's key id.
        id: KeyId,
        /// What is wrong with the key.
        problem: KeyTextProblem,
    },
}

impl fmt::Display for EnvProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvProblem::NoEntries => f.write_str("no entries"),
            EnvProblem::NotIdAndKey { entry } => {
                write!(f, "entry {entry} is not of the form id:BASE64")
            }
            EnvProblem::InvalidId { entry } => write!(f, "entry {entry} has an invalid key id"),
            EnvProblem::InvalidKey { entry, id, problem } => {
                write!(f, "entry {entry} (key {id}): {problem}")
            }
        }
    }
}

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
        let n = match rng::fill(&mut b) {
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
fn id_problem(s: &str) -> Option<IdProblem> {
    if s.is_empty() {
        Some(IdProblem::Empty)
    } else if s.len() > MAX_ID_LEN {
        Some(IdProblem::TooLong { len: s.len() })
    } else if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        Some(IdProblem::BadCharacter)
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
        rng::fill(&mut key.0).map_err(|source| KeyError::Rng { source })?;
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

/// Decodes key text; the error never quotes the input (base64's own errors name the offending
/// character, so they are dropped).
fn parse_key(text: &[u8]) -> Result<Key, KeyTextProblem> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(KeyTextProblem::Empty);
    }
    let decoded = Zeroizing::new(
        STANDARD
            .decode(text)
            .map_err(|_| KeyTextProblem::NotBase64)?,
    );
    if decoded.len() != KEY_LEN {
        return Err(KeyTextProblem::WrongLength { len: decoded.len() });
    }
    let mut key = Key([0; KEY_LEN]);
    key.0.copy_from_slice(&decoded);
    Ok(key)
}

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

/// Helpers for the key tests here and in `dir` and `env`.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod test_support {
    use super::*;

    pub(super) fn id(s: &str) -> KeyId {
        KeyId::new(s).unwrap()
    }

    /// A key whose bytes are all distinct, so leaks are easy to spot.
    pub(super) fn test_key(seed: u8) -> Key {
        let mut b = [0u8; KEY_LEN];
        for (i, x) in b.iter_mut().enumerate() {
            *x = seed.wrapping_mul(31).wrapping_add(i as u8 * 7 + 1);
        }
        Key::from_bytes(b)
    }

    pub(super) fn ids_of(ring: &KeyRing) -> Vec<&str> {
        ring.ids().map(KeyId::as_str).collect()
    }

    pub(super) fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Asserts `text` shows none of the key's encodings.
    pub(super) fn assert_no_key_material(text: &str, key: &Key) {
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::test_support::*;
    use super::*;

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
