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
        hold_unscanned: config.hold_when_unavailable,
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
        .map_err(|e| match e {
            kiorex_objects::ObjectError::Tls(_) => format!("{e} (KX-OBJ-495)"),
            other => format!("{other} (KX-OBJ-503)"),
        });
    let scanner = objects
        .clamd
        .ping()
        .await
        .map(|()| format!("clamd at {} answers", objects.clamd.address()))
        .map_err(|e| format!("{e} (KX-DOC-503)"));
    vec![("objects", buckets), ("scan.clamd", scanner)]
}

/// configtest's look at the uploads held unscanned (with `scan.hold_when_unavailable`).
pub fn held_uploads(config: &crate::config::Config) -> Result<String, String> {
    let mut conn = kiorex_store::connect_once(&config.database_url).map_err(|e| e.to_string())?;
    match kiorex_store::document_holds::pending_count(&mut conn) {
        Ok(0) => Ok("no upload is held unscanned".to_owned()),
        Ok(n) => Ok(format!(
            "{n} held upload(s) wait for a scan: run `kiorex objects rescan` once clamd answers"
        )),
        Err(e) => Err(e.to_string()),
    }
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

/// The document services and a small pool, for a command-line task.
fn for_task(config: &crate::config::Config) -> Result<(Objects, kiorex_store::Store)> {
    let objects_config = config.objects.as_ref().ok_or_else(|| {
        anyhow::anyhow!("documents are not configured: set objects.endpoint (KX-DOC-501)")
    })?;
    let built = build(objects_config)?;
    let store = kiorex_store::Store::connect(&config.database_url, 2)
        .map_err(|e| anyhow::anyhow!("cannot reach PostgreSQL (KX-DB-001): {e}"))?;
    Ok((built, store))
}

fn task_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

/// `kiorex objects purge`: a dry run unless `apply`; progress on stderr in text mode.
pub fn purge(config: &crate::config::Config, actor: &str, apply: bool, json: bool) -> Result<()> {
    let (built, store) = for_task(config)?;
    let report = task_runtime()?
        .block_on(kiorex_api::documents::purge::purge(
            &store,
            &built,
            actor,
            chrono::Utc::now(),
            !apply,
            |n, total, done| {
                if !json {
                    let verb = if apply { "purged" } else { "would purge" };
                    eprintln!(
                        "[{n}/{total}] {verb} document {} (deleted {}, {} versions, {} object versions removed)",
                        done.document,
                        done.deleted_at.map(|d| d.to_rfc3339()).unwrap_or_default(),
                        done.versions,
                        done.object_versions_removed
                    );
                }
            },
        ))
        .map_err(|e| {
            anyhow::anyhow!("the purge stopped (KX-OBJ-503): {e}; what was done is kept, run it again")
        })?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else if apply {
        println!(
            "{} documents deleted before {} purged ({} object versions removed)",
            report.documents.len(),
            report.cutoff.to_rfc3339(),
            report.object_versions_removed
        );
    } else {
        println!(
            "{} documents deleted before {} (retention {} days) would be purged; nothing was changed. Run with --apply to purge them.",
            report.documents.len(),
            report.cutoff.to_rfc3339(),
            report.retention_days
        );
    }
    Ok(())
}

/// `kiorex objects rescan`: scans held uploads; exit status 3 when clamd still does not answer
/// and files remain held (so a timer's failure shows in `systemctl status`).
pub fn rescan(config: &crate::config::Config, actor: &str, json: bool) -> Result<()> {
    let (built, store) = for_task(config)?;
    let report = task_runtime()?
        .block_on(kiorex_api::documents::holds::rescan(
            &store,
            &built,
            actor,
            |done| {
                if !json {
                    let document = done
                        .document
                        .map(|d| format!(" as document {d}"))
                        .unwrap_or_default();
                    println!(
                        "{:<9} hold {}{document} {}",
                        done.outcome, done.hold, done.detail
                    );
                }
            },
        ))
        .map_err(|e| anyhow::anyhow!("the rescan failed (KX-OBJ-503): {e}"))?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for failed in &report.failed {
            println!("failed    hold {} {}", failed.hold, failed.error);
        }
        println!(
            "{} held uploads decided, {} still held{}",
            report.decided.len(),
            report.pending,
            if report.scanner_unavailable {
                " (the virus scanner is still unavailable, KX-DOC-503)"
            } else {
                ""
            }
        );
    }
    if report.scanner_unavailable {
        std::process::exit(3);
    }
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} held uploads could not be rescanned (KX-OBJ-503); they stay held and are tried again later",
            report.failed.len()
        );
    }
    Ok(())
}
