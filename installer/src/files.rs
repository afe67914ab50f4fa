//! File helpers shared by the commands: secrets readable only by their owner, idempotent writes.

use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and parents) readable only by the owner. An existing directory is left as it
/// is: it may be the admin's working directory.
pub fn private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Writes a secret with mode 0600 from the first byte on (never briefly world-readable).
pub fn write_secret(path: &Path, content: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its old mode on open; force it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(content)?;
    file.sync_all()?;
    Ok(())
}

/// Writes a secret only if the file does not exist yet; returns whether it wrote.
pub fn write_secret_once(path: &Path, content: impl FnOnce() -> Result<Vec<u8>>) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    write_secret(path, &content()?)?;
    Ok(true)
}

/// A random secret of `len` characters without look-alike characters (0/O, 1/l).
pub fn random_secret(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}
