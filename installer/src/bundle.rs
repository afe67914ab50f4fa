//! `kiorexctl bundle`: the one file an air-gapped site receives. An uncompressed tar (so a
//! damaged byte can be traced to the file it belongs to) holding
//!
//! ```text
//! bundle.json             what is inside: version, image references, build notes
//! bin/kiorex, bin/kiorexctl
//! images/kiorex.oci.tar   OCI image layout for `k3s ctr images import` or agent/images/
//! manifests/...           k3s-manifests/ as released
//! sbom/kiorex.cdx.json    CycloneDX SBOM of every crate in Cargo.lock
//! SHA256SUMS              sha256sum format, one line per file above
//! SHA256SUMS.sig          Ed25519 signature over SHA256SUMS (hex)
//! ```
//!
//! `verify` checks the signature first, then every file against SHA256SUMS, then that nothing
//! outside the files (tar headers are checksummed by tar itself, padding must be zero) changed.

use crate::Output;
use crate::failure::{exit, fail};
use anyhow::{Context, Result};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum BundleCommand {
    /// Create the Ed25519 key pair that signs bundles: KEY (private, mode 0600, keep it on the
    /// build host) and KEY.pub (give it to the sites).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a bundle on a connected build host from a release build.
    Create(CreateArgs),
    /// Check a bundle's signature and every file in it. Exit 4 names the first file that differs.
    Verify {
        /// The bundle file, e.g. kiorex-0.1.0.tar.
        bundle: PathBuf,
        /// The public key (KEY.pub from `bundle keygen`) the site trusts.
        #[arg(long)]
        public_key: PathBuf,
        /// text for people, json for scripts.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// List what a bundle holds, without verifying it.
    Inspect {
        /// The bundle file, e.g. kiorex-0.1.0.tar.
        bundle: PathBuf,
        /// text for people, json for scripts.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The release build of the kiorex binary (`cargo build --release -p kiorex`).
    #[arg(long)]
    kiorex_bin: PathBuf,
    /// The kiorexctl binary to ship (default: this one).
    #[arg(long)]
    kiorexctl_bin: Option<PathBuf>,
    /// The k3s-manifests directory of the release.
    #[arg(long, default_value = "k3s-manifests")]
    manifests: PathBuf,
    /// Cargo.lock of the release, for the SBOM.
    #[arg(long, default_value = "Cargo.lock")]
    lockfile: PathBuf,
    /// The private key from `bundle keygen`.
    #[arg(long)]
    signing_key: PathBuf,
    /// Release version; the image is tagged registry.kiorex.local/kiorex/kiorex:VERSION.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    version: String,
    /// The bundle file to write.
    #[arg(long)]
    out: PathBuf,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

pub const IMAGE_REPOSITORY: &str = "registry.kiorex.local/kiorex/kiorex";
const SUMS: &str = "SHA256SUMS";
const SIG: &str = "SHA256SUMS.sig";

pub fn run(command: BundleCommand) -> Result<()> {
    match command {
        BundleCommand::Keygen { out } => keygen(&out),
        BundleCommand::Create(args) => create(args),
        BundleCommand::Verify {
            bundle,
            public_key,
            output,
        } => {
            let report = verify(&bundle, &read_public_key(&public_key)?)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Text => println!(
                    "{}: signature good, {} files match SHA256SUMS",
                    bundle.display(),
                    report["files"]
                ),
            }
            Ok(())
        }
        BundleCommand::Inspect { bundle, output } => inspect(&bundle, output),
    }
}

fn keygen(out: &Path) -> Result<()> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let line = ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF;
    let private = key
        .to_pkcs8_pem(line)
        .map_err(|e| anyhow::anyhow!("cannot encode the key: {e}"))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(line)
        .map_err(|e| anyhow::anyhow!("cannot encode the key: {e}"))?;
    if out.exists() {
        return Err(fail(
            "KX-CTL-011",
            exit::REFUSED,
            format!(
                "{} exists; a new key would not verify bundles signed with it",
                out.display()
            ),
        ));
    }
    crate::files::write_secret(out, private.as_bytes())?;
    let public_path = pub_path(out);
    std::fs::write(&public_path, public)?;
    println!(
        "wrote {} (private, 0600) and {}",
        out.display(),
        public_path.display()
    );
    Ok(())
}

fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        fail(
            "KX-CTL-034",
            exit::FAILED,
            format!("{} is not an Ed25519 public key: {e}", path.display()),
        )
    })
}

fn create(args: CreateArgs) -> Result<()> {
    let show = args.output == Output::Text;
    let key_pem = std::fs::read_to_string(&args.signing_key)
        .with_context(|| format!("cannot read {}", args.signing_key.display()))?;
    let key = SigningKey::from_pkcs8_pem(&key_pem).map_err(|e| {
        fail(
            "KX-CTL-034",
            exit::FAILED,
            format!(
                "{} is not an Ed25519 private key: {e}",
                args.signing_key.display()
            ),
        )
    })?;
    let kiorexctl = match &args.kiorexctl_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let parent = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let work = tempfile::TempDir::new_in(parent)?;

    let spinner = crate::progress::spinner(show, "building the OCI image");
    let image_ref = format!("{IMAGE_REPOSITORY}:{}", args.version);
    let image_path = work.path().join("kiorex.oci.tar");
    let image =
        crate::oci::write_image_layout(&args.kiorex_bin, &image_ref, &args.version, &image_path)?;
    spinner.set_message("writing the SBOM");
    let sbom_path = work.path().join("kiorex.cdx.json");
    std::fs::write(
        &sbom_path,
        crate::sbom::cyclonedx(&args.lockfile, &args.version)?,
    )?;
    let info_path = work.path().join("bundle.json");
    std::fs::write(
        &info_path,
        serde_json::to_string_pretty(&json!({
            "kiorex_version": args.version,
            "created": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
            "images": [{"ref": image_ref, "file": "images/kiorex.oci.tar", "manifest_digest": image.manifest_digest, "layers": image.layers}],
            "image_contents": image.contents,
            "notes": "The image is assembled by kiorexctl without a container engine: one layer with the \
                      kiorex binary and the shared libraries it links, from the build host.",
        }))?,
    )?;
    spinner.finish_and_clear();

    let mut files: Vec<(String, PathBuf)> = vec![
        ("bundle.json".into(), info_path),
        ("bin/kiorex".into(), args.kiorex_bin.clone()),
        ("bin/kiorexctl".into(), kiorexctl),
        ("images/kiorex.oci.tar".into(), image_path),
        ("sbom/kiorex.cdx.json".into(), sbom_path),
    ];
    files.extend(tree(&args.manifests, "manifests")?);
    let total: u64 = files
        .iter()
        .map(|(_, p)| p.metadata().map_or(0, |m| m.len()))
        .sum();
    let bar = crate::progress::bar(show, total, "writing the bundle");

    let partial = work.path().join("bundle.tar");
    let mut builder = tar::Builder::new(File::create(&partial)?);
    let mut sums = String::new();
    for (name, path) in &files {
        let mode = if name.starts_with("bin/") {
            0o755
        } else {
            0o644
        };
        let hasher = HashingReader::new(
            File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
            &bar,
        );
        let len = path.metadata()?.len();
        let digest = append(&mut builder, name, mode, len, hasher)?;
        sums.push_str(&format!("{digest}  {name}\n"));
    }
    let signature = hex::encode(key.sign(sums.as_bytes()).to_bytes());
    append(
        &mut builder,
        SUMS,
        0o644,
        sums.len() as u64,
        HashingReader::new(sums.as_bytes(), &bar),
    )?;
    append(
        &mut builder,
        SIG,
        0o644,
        signature.len() as u64,
        HashingReader::new(signature.as_bytes(), &bar),
    )?;
    builder.into_inner()?.sync_all()?;
    std::fs::rename(&partial, &args.out)?;
    bar.finish_and_clear();
    let summary = json!({"bundle": args.out, "files": files.len(), "bytes": args.out.metadata()?.len(), "image": image_ref,
                         "manifest_digest": image.manifest_digest});
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        Output::Text => println!(
            "wrote {} ({} files, {} MiB, image {image_ref})",
            args.out.display(),
            files.len(),
            summary["bytes"].as_u64().unwrap_or(0) >> 20
        ),
    }
    Ok(())
}

/// Every file under `dir`, sorted, as (name in the bundle, path).
fn tree(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
        if e.file_type()?.is_dir() {
            out.extend(tree(&e.path(), &name)?);
        } else {
            out.push((name, e.path()));
        }
    }
    Ok(out)
}

/// Appends one regular file with a deterministic header; returns its SHA-256.
fn append<W: std::io::Write, R: Read>(
    builder: &mut tar::Builder<W>,
    name: &str,
    mode: u32,
    len: u64,
    mut data: HashingReader<'_, R>,
) -> Result<String> {
    // Names stay in the plain ustar field: a GNU long-name record would be bytes outside any
    // file that `verify` could not account for.
    if name.len() >= 100 {
        return Err(fail(
            "KX-CTL-035",
            exit::FAILED,
            format!("path too long for the bundle: {name}"),
        ));
    }
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(len);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder.append(&header, &mut data)?;
    if data.read != len {
        anyhow::bail!("{name} changed while the bundle was written");
    }
    Ok(hex::encode(data.hasher.finalize()))
}

struct HashingReader<'a, R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    bar: &'a indicatif::ProgressBar,
}

impl<'a, R> HashingReader<'a, R> {
    fn new(inner: R, bar: &'a indicatif::ProgressBar) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
            bar,
        }
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// One file as found in the bundle.
struct Found {
    sha256: String,
    size: u64,
    data: Option<Vec<u8>>,
}

/// Reads every entry, hashing it; small control files are kept in memory. Also checks that the
/// bytes between entries (padding, end of archive) are zero.
fn read_bundle(path: &Path) -> Result<BTreeMap<String, Found>> {
    let damaged = |detail: String| {
        fail(
            "KX-CTL-033",
            exit::NOT_AUTHENTIC,
            format!("{} is damaged: {detail}", path.display()),
        )
    };
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_len = file.metadata()?.len();
    let mut archive = tar::Archive::new(file);
    let mut found = BTreeMap::new();
    let mut covered: Vec<(u64, u64)> = Vec::new();
    let mut last = String::from("(start of the bundle)");
    let entries = archive.entries().map_err(|e| damaged(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(format!("{e} (after {last})")))?;
        let name = entry
            .path()
            .map_err(|e| damaged(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(damaged(format!("{name} is not a regular file")));
        }
        let size = entry.size();
        covered.push((
            entry.raw_header_position(),
            entry.raw_header_position() + 512,
        ));
        covered.push((entry.raw_file_position(), entry.raw_file_position() + size));
        let keep = name == SUMS || name == SIG || name == "bundle.json";
        let mut hasher = Sha256::new();
        let mut data = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| damaged(format!("{name}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if keep {
                data.extend_from_slice(&buf[..n]);
            }
        }
        if found.contains_key(&name) {
            return Err(damaged(format!("{name} appears twice")));
        }
        found.insert(
            name.clone(),
            Found {
                sha256: hex::encode(hasher.finalize()),
                size,
                data: keep.then_some(data),
            },
        );
        last = name;
    }
    check_gaps(path, file_len, &mut covered).map_err(|e| damaged(format!("{e}")))?;
    Ok(found)
}

fn check_gaps(path: &Path, len: u64, covered: &mut [(u64, u64)]) -> Result<()> {
    covered.sort();
    let mut file = File::open(path)?;
    let mut at = 0;
    let mut gaps = Vec::new();
    for &(start, end) in covered.iter() {
        if start > at {
            gaps.push((at, start));
        }
        at = at.max(end);
    }
    gaps.push((at, len));
    for (start, end) in gaps {
        file.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; (end - start) as usize];
        file.read_exact(&mut buf)?;
        if let Some(i) = buf.iter().position(|b| *b != 0) {
            anyhow::bail!(
                "byte {} lies outside every file and is not zero",
                start + i as u64
            );
        }
    }
    Ok(())
}

/// Verifies the signature, then every file; returns a summary for `--output json`.
pub fn verify(path: &Path, key: &VerifyingKey) -> Result<serde_json::Value> {
    let refuse = |code, msg: String| fail(code, exit::NOT_AUTHENTIC, msg);
    let found = read_bundle(path)?;
    let sums = found
        .get(SUMS)
        .and_then(|f| f.data.clone())
        .ok_or_else(|| refuse("KX-CTL-032", format!("{SUMS} is missing from the bundle")))?;
    let sig_hex = found
        .get(SIG)
        .and_then(|f| f.data.clone())
        .ok_or_else(|| refuse("KX-CTL-032", format!("{SIG} is missing from the bundle")))?;
    let signature = hex::decode(String::from_utf8_lossy(&sig_hex).trim())
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| refuse("KX-CTL-031", format!("{SIG} is not a valid signature")))?;
    key.verify(&sums, &signature).map_err(|_| {
        refuse("KX-CTL-031", format!(
            "the signature over {SUMS} does not match this public key: either {SUMS} was changed or the bundle was signed with another key"
        ))
    })?;
    let listed = parse_sums(&String::from_utf8_lossy(&sums))
        .ok_or_else(|| refuse("KX-CTL-033", format!("{SUMS} is not in sha256sum format")))?;
    for (name, want) in &listed {
        let got = found.get(name).ok_or_else(|| {
            refuse(
                "KX-CTL-032",
                format!("{name} is listed in {SUMS} but missing"),
            )
        })?;
        if &got.sha256 != want {
            return Err(refuse(
                "KX-CTL-030",
                format!(
                    "{name} was changed: its SHA-256 is {} but {SUMS} says {want}",
                    got.sha256
                ),
            ));
        }
    }
    if let Some(extra) = found
        .keys()
        .find(|n| *n != SUMS && *n != SIG && !listed.contains_key(*n))
    {
        return Err(refuse(
            "KX-CTL-032",
            format!("{extra} is in the bundle but not in {SUMS}"),
        ));
    }
    let bytes: u64 = found.values().map(|f| f.size).sum();
    Ok(
        json!({"bundle": path, "verified": true, "files": listed.len(), "bytes": bytes,
              "public_key_sha256": hex::encode(Sha256::digest(key.as_bytes()))}),
    )
}

fn parse_sums(text: &str) -> Option<BTreeMap<String, String>> {
    text.lines()
        .map(|l| {
            let (digest, name) = l.split_once("  ")?;
            (digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (name.to_owned(), digest.to_owned()))
        })
        .collect()
}

fn inspect(path: &Path, output: Output) -> Result<()> {
    let found = read_bundle(path)?;
    let info: serde_json::Value = found
        .get("bundle.json")
        .and_then(|f| serde_json::from_slice(f.data.as_deref()?).ok())
        .unwrap_or(json!(null));
    let files: Vec<_> = found
        .iter()
        .map(|(n, f)| json!({"name": n, "bytes": f.size, "sha256": f.sha256}))
        .collect();
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"bundle": path, "info": info, "files": files, "verified": false})
            )?
        ),
        Output::Text => {
            println!(
                "Kiorex bundle {} (not verified: run `kiorexctl bundle verify`)",
                path.display()
            );
            println!(
                "  version: {}",
                info["kiorex_version"].as_str().unwrap_or("?")
            );
            println!("  created: {}", info["created"].as_str().unwrap_or("?"));
            for image in info["images"].as_array().into_iter().flatten() {
                println!(
                    "  image:   {} ({})",
                    image["ref"].as_str().unwrap_or("?"),
                    image["manifest_digest"].as_str().unwrap_or("?")
                );
            }
            for (n, f) in &found {
                println!("  {:>12}  {n}", f.size);
            }
        }
    }
    Ok(())
}
