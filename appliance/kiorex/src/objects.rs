//! Documents in the binary: building the document services from the configuration, checking
//! them (`configtest`), the orphan sweep (`kiorex objects gc`) and new key-encryption keys.

use crate::config::ObjectsConfig;
use anyhow::{Context, Result};
use kiorex_objects::{Clamd, Keyring, ObjectStore, Objects, Spooler};
use std::sync::Arc;
use std::time::Duration;

/// Trusts the hospital CA for TLS to RGW. rust-s3 builds its own HTTP client and takes no root
/// certificates, but its TLS stack also loads the platform roots, which honour `SSL_CERT_FILE`;
/// so the bundle is named there. Must run before any thread starts (it sets the environment).
pub fn trust_ca_bundle(config: &ObjectsConfig) {
    if let Some(bundle) = &config.ca_bundle {
        // SAFETY: called at start-up, before the runtime or any other thread exists.
        unsafe { std::env::set_var("SSL_CERT_FILE", bundle) };
    }
}

pub fn build(config: &ObjectsConfig) -> Result<Objects> {
    let keyring = Keyring::parse(&config.keyring).context("objects.key_encryption_keys")?;
    let store = ObjectStore::new(&config.s3).context("objects")?;
    Ok(Objects {
        store,
        keyring: Arc::new(keyring),
        clamd: Clamd::new(
            &config.clamd,
            Duration::from_secs(config.scan_timeout_seconds),
        ),
        spooler: Spooler {
            dir: config.spool_dir.clone(),
            max_bytes: config.max_upload_bytes,
        },
        retention_days: config.retention_days,
    })
}

/// configtest's checks of the document services: buckets and scanner.
pub async fn checks(objects: &Objects) -> Vec<(&'static str, Result<String, String>)> {
    let buckets = objects
        .store
        .check()
        .await
        .map(|()| {
            format!(
                "buckets {} and {} exist and are reachable",
                objects.store.bucket_name(kiorex_objects::Shelf::Documents),
                objects.store.bucket_name(kiorex_objects::Shelf::Quarantine)
            )
        })
        .map_err(|e| format!("{e} (KX-OBJ-503)"));
    let scanner = objects
        .clamd
        .ping()
        .await
        .map(|()| format!("clamd at {} answers", objects.clamd.address()))
        .map_err(|e| format!("{e} (KX-DOC-503)"));
    vec![("objects", buckets), ("scan.clamd", scanner)]
}

/// A new keyring line; the file is created 0600 or appended to (the new key becomes current
/// only when its line is first: see docs/ops/documents.md).
pub fn new_kek(id: &str, out: &std::path::Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let line = Keyring::generate_line(id);
    Keyring::parse(&line).context("--id")?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    writeln!(file, "{line}")?;
    Ok(())
}
