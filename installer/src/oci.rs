//! A minimal OCI image layout, written without a container engine (none runs on the build
//! machines): one gzip layer holding the kiorex binary at /usr/local/bin/kiorex and the shared
//! libraries `ldd` says it loads, copied from the build host at the same paths. No shell, no
//! package manager. containerd (`k3s ctr images import`, or k3s's agent/images/ directory) reads
//! this layout and names the image from the `io.containerd.image.name` annotation.

use anyhow::{Context, Result, bail};
use flate2::{Compression, GzBuilder};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Image {
    pub manifest_digest: String,
    pub layers: usize,
    /// Paths inside the image.
    pub contents: Vec<String>,
}

/// Writes the image layout as a tar file at `out`.
pub fn write_image_layout(
    binary: &Path,
    reference: &str,
    version: &str,
    out: &Path,
) -> Result<Image> {
    let mut files: Vec<(String, PathBuf, u32)> =
        vec![("usr/local/bin/kiorex".into(), binary.to_owned(), 0o755)];
    for lib in shared_libraries(binary)? {
        let inside = lib.to_string_lossy().trim_start_matches('/').to_owned();
        files.push((inside, lib, 0o755));
    }
    let layer_tar = layer(&files)?;
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer_tar)));
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    gz.write_all(&layer_tar)?;
    let layer_gz = gz.finish()?;
    let layer_digest = digest(&layer_gz);

    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            // The manifests run every pod as 65532 with a read-only root file system.
            "User": "65532:65532",
            "Entrypoint": ["/usr/local/bin/kiorex"],
            "Cmd": ["serve", "core"],
            "Env": ["PATH=/usr/local/bin"],
            "Labels": {"org.opencontainers.image.version": version, "org.opencontainers.image.title": "kiorex"}
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "kiorexctl bundle create"}]
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_gz.len()}]
    }))?;
    let manifest_digest = digest(&manifest);
    let tag = reference.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": tag}
        }]
    }))?;

    let mut layout = tar::Builder::new(std::fs::File::create(out)?);
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    for (name, data) in [
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_owned(), index),
        (blob(&manifest_digest), manifest),
        (blob(&digest(&config)), config),
        (blob(&layer_digest), layer_gz),
    ] {
        append_bytes(&mut layout, &name, 0o644, &data)?;
    }
    layout.into_inner()?.sync_all()?;
    Ok(Image {
        manifest_digest,
        layers: 1,
        contents: files.into_iter().map(|(n, _, _)| format!("/{n}")).collect(),
    })
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn layer(files: &[(String, PathBuf, u32)]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (name, _, _) in files {
        let mut at = String::new();
        for part in name
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, d)| d)
            .unwrap_or(&[])
        {
            at.push_str(part);
            at.push('/');
            dirs.insert(at.clone());
        }
    }
    for dir in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_size(0);
        builder.append_data(&mut h, dir, std::io::empty())?;
    }
    for (name, path, mode) in files {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        append_bytes(&mut builder, name, *mode, &data)?;
    }
    Ok(builder.into_inner()?)
}

fn append_bytes<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    mode: u32,
    data: &[u8],
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    builder.append_data(&mut h, name, data)?;
    Ok(())
}

/// The shared libraries (resolved, real paths) the dynamic loader maps for `binary`.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd").arg(binary).output();
    let Ok(out) = out else {
        bail!(
            "ldd is needed to find the libraries of {}",
            binary.display()
        );
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}
