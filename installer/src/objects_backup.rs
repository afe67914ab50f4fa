//! The document objects in `backup` / `restore`: every current object of the documents bucket
//! (Ceph RGW, S3 API) copied into the backup target as files, with a manifest of key, size,
//! ETag and SHA-256. Only the current version of each object is saved: Kiorex never overwrites
//! an object (keys end in a fresh UUID), so older versions hold nothing a restore needs.
//!
//! ```text
//! <target>/objects/manifest.json           bucket, when, and per object: key, size, ETag, SHA-256
//! <target>/objects/blobs/ab/ab12…          the stored bytes, named by their SHA-256
//! ```
//!
//! Objects stay sealed (AES-256-GCM, data keys wrapped by the key-encryption keys): the target
//! never holds a plaintext document, but the keys are in the secrets part of the same backup,
//! so the target must be protected like the database (docs/ops/backup-dr.md).
//!
//! Naming the files by content keeps the object keys (which name patients) out of file names
//! and makes the copy incremental: an object whose key, ETag and size are already in the
//! manifest, with its file present, is not downloaded again.
//!
//! rust-s3 is the S3 client, the same crate the core stores documents with, so both speak to
//! RGW the same way (path-style addressing, SigV4).

use crate::Output;
use crate::failure::{exit, fail};
use anyhow::{Context, Result};
use s3::creds::Credentials;
use s3::{Bucket, BucketConfiguration, Region};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::AsyncWriteExt;

/// Where the documents bucket is; the same settings as the core's `[objects]` section, and the
/// same environment variables, so that the core's environment file can be reused.
#[derive(clap::Args, Clone)]
pub struct ObjectsArgs {
    /// S3 endpoint of the Ceph RADOS gateway, e.g. https://rgw.data.hospital.local:7480
    /// (default: ceph.endpoint of the site config given with --site-dir). Without one the
    /// document objects are not backed up or restored.
    #[arg(long, env = "KIOREX_OBJECTS__ENDPOINT")]
    pub objects_endpoint: Option<String>,
    /// The documents bucket (objects.bucket in the core's config; default: ceph.documents_bucket
    /// of the site config given with --site-dir, else kiorex-documents). A restore puts the
    /// objects into this bucket, which may be the old one or a new, empty one (created if missing).
    #[arg(long, env = "KIOREX_OBJECTS__BUCKET")]
    pub objects_bucket: Option<String>,
    /// S3 region name (the RGW zonegroup).
    #[arg(long, env = "KIOREX_OBJECTS__REGION", default_value = "default")]
    pub objects_region: String,
    /// File holding the S3 access key (else the environment variable KIOREX_OBJECTS__ACCESS_KEY).
    #[arg(long)]
    pub objects_access_key_file: Option<PathBuf>,
    /// File holding the S3 secret key (else the environment variable KIOREX_OBJECTS__SECRET_KEY).
    #[arg(long)]
    pub objects_secret_key_file: Option<PathBuf>,
    /// PEM file of the hospital CA that signed the gateway's certificate (trusted in addition
    /// to the system roots).
    #[arg(long, env = "KIOREX_OBJECTS__CA_BUNDLE")]
    pub objects_ca_bundle: Option<PathBuf>,
}

impl ObjectsArgs {
    /// Trusts the CA bundle: rust-s3 builds its own HTTP client, whose TLS stack loads the
    /// platform roots, which honour `SSL_CERT_FILE`. Must run before any thread starts.
    pub fn trust_ca_bundle(&self) {
        if let Some(bundle) = &self.objects_ca_bundle {
            // SAFETY: called from main before the runtime or any other thread exists.
            unsafe { std::env::set_var("SSL_CERT_FILE", bundle) };
        }
    }

    fn bucket_name(&self) -> &str {
        self.objects_bucket.as_deref().unwrap_or("kiorex-documents")
    }

    /// Fills the endpoint and bucket that were not given from the site config's `[ceph]`
    /// section, when the site directory has one: flags and environment come first.
    pub fn with_site(&self, site_dir: Option<&Path>) -> Result<ObjectsArgs> {
        let mut args = self.clone();
        let config = site_dir.map(|d| d.join(crate::site::FILE_NAME));
        let site = match config.filter(|c| c.exists()) {
            Some(config) => Some(crate::site::SiteConfig::load(&config)?),
            None => None,
        };
        if let Some(ceph) = site.and_then(|s| s.ceph) {
            args.objects_endpoint.get_or_insert(ceph.endpoint);
            args.objects_bucket.get_or_insert(ceph.documents_bucket);
        }
        Ok(args)
    }

    fn bucket(&self, endpoint: &str) -> Result<Box<Bucket>> {
        let secret = |file: &Option<PathBuf>, var: &str| -> Result<String> {
            match file {
                Some(path) => Ok(std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .trim()
                    .to_owned()),
                None => std::env::var(var).map_err(|_| {
                    fail(
                        "KX-CTL-056",
                        exit::FAILED,
                        format!("no S3 credentials: give --objects-access-key-file and --objects-secret-key-file, or set {var}"),
                    )
                }),
            }
        };
        let access = secret(&self.objects_access_key_file, "KIOREX_OBJECTS__ACCESS_KEY")?;
        let secret_key = secret(&self.objects_secret_key_file, "KIOREX_OBJECTS__SECRET_KEY")?;
        let credentials = Credentials::new(Some(&access), Some(&secret_key), None, None, None)
            .context("S3 credentials")?;
        let region = Region::Custom {
            region: self.objects_region.clone(),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        };
        Ok(Bucket::new(self.bucket_name(), region, credentials)?.with_path_style())
    }
}

/// One saved object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub sha256: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Manifest {
    pub bucket: String,
    pub taken: String,
    pub objects: Vec<Entry>,
}

/// What a run did, for `--output json` and the summary line.
#[derive(Serialize, Debug, Default)]
pub struct Counts {
    pub objects: usize,
    pub copied: usize,
    pub unchanged: usize,
    pub bytes_copied: u64,
}

fn objects_dir(target: &Path) -> PathBuf {
    target.join("objects")
}

fn blob_path(target: &Path, sha256: &str) -> PathBuf {
    objects_dir(target)
        .join("blobs")
        .join(&sha256[..2])
        .join(sha256)
}

fn read_manifest(target: &Path) -> Result<Option<Manifest>> {
    let path = objects_dir(target).join("manifest.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)?;
    Ok(Some(serde_json::from_str(&text).with_context(|| {
        format!("{} is not a Kiorex objects manifest", path.display())
    })?))
}

/// The entry of the previous backup that can be reused for a listed object: same key, ETag
/// and size (S3 changes the ETag when the bytes change).
pub fn reusable<'a>(
    previous: &'a HashMap<&str, &Entry>,
    key: &str,
    etag: &str,
    size: u64,
) -> Option<&'a Entry> {
    previous
        .get(key)
        .copied()
        .filter(|e| e.etag == etag && e.size == size)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn unreachable(bucket: &str, e: impl std::fmt::Display) -> anyhow::Error {
    fail(
        "KX-CTL-057",
        exit::FAILED,
        format!("cannot read or write the documents bucket {bucket:?}: {e}"),
    )
}

/// Copies every current object of the bucket into `<target>/objects`; returns the counts.
pub fn backup(args: &ObjectsArgs, endpoint: &str, target: &Path, output: Output) -> Result<Counts> {
    let bucket = args.bucket(endpoint)?;
    let name = args.bucket_name().to_owned();
    runtime()?.block_on(async {
        let listed: Vec<s3::serde_types::Object> = bucket
            .list(String::new(), None)
            .await
            .map_err(|e| unreachable(&name, e))?
            .into_iter()
            .flat_map(|page| page.contents)
            .collect();
        let previous = read_manifest(target)?;
        let previous_by_key: HashMap<&str, &Entry> = previous
            .iter()
            .flat_map(|m| &m.objects)
            .map(|e| (e.key.as_str(), e))
            .collect();
        let total: u64 = listed.iter().map(|o| o.size).sum();
        let bar = crate::progress::bar(output == Output::Text, total, "document objects");
        let mut counts = Counts::default();
        let mut entries = Vec::with_capacity(listed.len());
        for object in &listed {
            let etag = object.e_tag.clone().unwrap_or_default();
            let kept = reusable(&previous_by_key, &object.key, &etag, object.size)
                .filter(|e| blob_path(target, &e.sha256).exists());
            let entry = match kept {
                Some(e) => {
                    counts.unchanged += 1;
                    e.clone()
                }
                None => {
                    let sha256 = download(&bucket, &object.key, target)
                        .await
                        .map_err(|e| unreachable(&name, format!("{}: {e:#}", object.key)))?;
                    counts.copied += 1;
                    counts.bytes_copied += object.size;
                    Entry {
                        key: object.key.clone(),
                        size: object.size,
                        etag,
                        sha256,
                    }
                }
            };
            bar.inc(object.size);
            entries.push(entry);
        }
        bar.finish_and_clear();
        counts.objects = entries.len();
        write_manifest(
            target,
            &Manifest {
                bucket: name.clone(),
                taken: OffsetDateTime::now_utc().format(&Rfc3339)?,
                objects: entries,
            },
        )?;
        Ok(counts)
    })
}

/// Downloads one object into a temporary file, hashing it on the way, and files it under its
/// SHA-256. Returns the hash.
async fn download(bucket: &Bucket, key: &str, target: &Path) -> Result<String> {
    let blobs = objects_dir(target).join("blobs");
    std::fs::create_dir_all(&blobs)?;
    let temp = tempfile::NamedTempFile::new_in(&blobs)?;
    let mut writer = HashingWriter {
        file: tokio::fs::File::from_std(temp.reopen()?),
        hasher: Sha256::new(),
    };
    let status = bucket.get_object_to_writer(key, &mut writer).await?;
    if !(200..300).contains(&status) {
        anyhow::bail!("HTTP {status}");
    }
    writer.file.flush().await?;
    writer.file.sync_all().await?;
    let sha256 = hex::encode(writer.hasher.finalize());
    let dest = blob_path(target, &sha256);
    std::fs::create_dir_all(dest.parent().unwrap_or(&blobs))?;
    temp.persist(&dest)?;
    Ok(sha256)
}

/// Writes to a file and hashes what it writes.
struct HashingWriter {
    file: tokio::fs::File,
    hasher: Sha256,
}

impl tokio::io::AsyncWrite for HashingWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = std::pin::Pin::new(&mut this.file).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = written {
            this.hasher.update(&buf[..n]);
        }
        written
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

/// Written to a temporary file and renamed, so a crash never leaves half a manifest.
fn write_manifest(target: &Path, manifest: &Manifest) -> Result<()> {
    let dir = objects_dir(target);
    std::fs::create_dir_all(&dir)?;
    let temp = tempfile::NamedTempFile::new_in(&dir)?;
    serde_json::to_writer_pretty(temp.as_file(), manifest)?;
    temp.as_file().sync_all()?;
    temp.persist(dir.join("manifest.json"))?;
    Ok(())
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Checks every saved object against the manifest before anything is uploaded, so a damaged
/// backup changes nothing in the bucket. Names the first damaged or missing object.
pub fn verify(target: &Path, manifest: &Manifest) -> Result<()> {
    for entry in &manifest.objects {
        let path = blob_path(target, &entry.sha256);
        let intact = path.exists()
            && std::fs::metadata(&path)?.len() == entry.size
            && sha256_of(&path)? == entry.sha256;
        if !intact {
            return Err(fail(
                "KX-CTL-058",
                exit::NOT_AUTHENTIC,
                format!(
                    "document object {} in the backup ({}) is damaged or missing; nothing was restored",
                    entry.key,
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Puts every object of the manifest into the bucket (created if missing); returns the counts.
pub fn restore(args: &ObjectsArgs, endpoint: &str, from: &Path, output: Output) -> Result<Counts> {
    let manifest = read_manifest(from)?.ok_or_else(|| {
        fail(
            "KX-CTL-059",
            exit::FAILED,
            format!(
                "no document objects in the backup at {} (objects/manifest.json is missing)",
                from.display()
            ),
        )
    })?;
    verify(from, &manifest)?;
    let bucket = args.bucket(endpoint)?;
    let name = args.bucket_name().to_owned();
    runtime()?.block_on(async {
        create_if_missing(&bucket)
            .await
            .map_err(|e| unreachable(&name, format!("{e:#}")))?;
        let total = manifest.objects.iter().map(|e| e.size).sum();
        let bar = crate::progress::bar(output == Output::Text, total, "document objects");
        let mut counts = Counts {
            objects: manifest.objects.len(),
            ..Counts::default()
        };
        for entry in &manifest.objects {
            let mut file = tokio::fs::File::open(blob_path(from, &entry.sha256)).await?;
            bucket
                .put_object_stream(&mut file, &entry.key)
                .await
                .map_err(|e| unreachable(&name, format!("{}: {e}", entry.key)))?;
            counts.copied += 1;
            counts.bytes_copied += entry.size;
            bar.inc(entry.size);
        }
        bar.finish_and_clear();
        Ok(counts)
    })
}

async fn create_if_missing(bucket: &Bucket) -> Result<()> {
    // A one-key listing needs only ListBucket, which the Kiorex user's bucket policy grants.
    match bucket
        .list_page(String::new(), None, None, None, Some(1))
        .await
    {
        Ok(_) => return Ok(()),
        Err(s3::error::S3Error::HttpFailWithBody(404, _)) => {}
        Err(e) => return Err(e.into()),
    }
    let created = Bucket::create_with_path_style(
        &bucket.name(),
        bucket.region(),
        bucket.credentials().await?,
        BucketConfiguration::default(),
    )
    .await?;
    if !created.success() {
        anyhow::bail!(
            "creating the bucket: HTTP {} {}",
            created.response_code,
            created.response_text
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_copied_again_only_when_its_etag_or_size_changed() {
        let saved = Entry {
            key: "f/p/c/1".into(),
            size: 10,
            etag: "\"abc\"".into(),
            sha256: "00".repeat(32),
        };
        let previous: HashMap<&str, &Entry> = [("f/p/c/1", &saved)].into();
        assert_eq!(reusable(&previous, "f/p/c/1", "\"abc\"", 10), Some(&saved));
        assert_eq!(reusable(&previous, "f/p/c/1", "\"abd\"", 10), None);
        assert_eq!(reusable(&previous, "f/p/c/1", "\"abc\"", 11), None);
        assert_eq!(reusable(&previous, "f/p/c/2", "\"abc\"", 10), None);
    }
}
