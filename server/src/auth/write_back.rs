//! A password change written into the users file: only that user's `password_hash` changes,
//! comments and layout are kept, and a new file is renamed over the old one, so a reader (another
//! node sharing the file) never sees half of it.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::users_file::parse_users_file;

/// Sets `username`'s `password_hash` in the users file at `path`, keeping everything else in
/// it as it is; `false` if the file has no such user. The new text is checked like a users file
/// at startup, written to a temporary file beside it with the same permissions, flushed to disk
/// and renamed over the old one. Blocking I/O.
pub(super) fn rewrite_hash(path: &Path, username: &str, new_hash: &str) -> anyhow::Result<bool> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read users file {origin}"))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|_| anyhow::anyhow!("users file {origin} no longer parses"))?;
    let Some(users) = doc
        .get_mut("user")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
    else {
        return Ok(false);
    };
    let mut found = false;
    for table in users.iter_mut() {
        if table.get("username").and_then(toml_edit::Item::as_str) != Some(username) {
            continue;
        }
        let Some(value) = table
            .get_mut("password_hash")
            .and_then(toml_edit::Item::as_value_mut)
        else {
            continue;
        };
        let decor = value.decor().clone();
        *value = toml_edit::Value::from(new_hash);
        *value.decor_mut() = decor;
        found = true;
    }
    if !found {
        return Ok(false);
    }
    let out = doc.to_string();
    parse_users_file(&out, &origin)?;

    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "users".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let permissions = std::fs::metadata(path)?.permissions();
    let write = || -> std::io::Result<()> {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        // Owner-only from the start; the old file's permissions are applied next.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        let mut f = open.open(&tmp)?;
        f.set_permissions(permissions)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot rewrite users file {origin}"));
    }
    Ok(true)
}
