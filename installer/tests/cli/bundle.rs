use super::{kiorexctl, repo_root};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One signed bundle per test run (building it is the slow part); each test tampers with a copy.
/// kiorexctl itself stands in for the kiorex binary: a real dynamically linked ELF, so the
/// image gets its shared libraries, but without building the whole server for this test.
struct Fixture {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    public_key: PathBuf,
    other_key: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        assert_eq!(
            kiorexctl(p, &["bundle", "keygen", "--out", "signing.key"]).status,
            0
        );
        assert_eq!(
            kiorexctl(p, &["bundle", "keygen", "--out", "other.key"]).status,
            0
        );
        let root = repo_root();
        let run = kiorexctl(
            p,
            &[
                "bundle",
                "create",
                "--kiorex-bin",
                env!("CARGO_BIN_EXE_kiorexctl"),
                "--manifests",
                root.join("k3s-manifests").to_str().unwrap(),
                "--lockfile",
                root.join("Cargo.lock").to_str().unwrap(),
                "--signing-key",
                "signing.key",
                "--out",
                "kiorex.bundle",
                "--output",
                "json",
            ],
        );
        assert_eq!(run.status, 0, "{}", run.stderr);
        Fixture {
            bundle: p.join("kiorex.bundle"),
            public_key: p.join("signing.key.pub"),
            other_key: p.join("other.key.pub"),
            _dir: dir,
        }
    })
}

fn verify(bundle: &Path, key: &Path) -> super::Run {
    kiorexctl(
        bundle.parent().unwrap(),
        &[
            "bundle",
            "verify",
            bundle.to_str().unwrap(),
            "--public-key",
            key.to_str().unwrap(),
            "--output",
            "json",
        ],
    )
}

/// Where `name`'s content starts and how long it is, read with an ordinary tar reader.
fn data_range(bundle: &Path, name: &str) -> (u64, u64) {
    let mut archive = tar::Archive::new(std::fs::File::open(bundle).unwrap());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            return (entry.raw_file_position(), entry.size());
        }
    }
    panic!("{name} not in the bundle");
}

/// A copy of the bundle with the byte at `offset` flipped.
fn tampered(offset: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("kiorex.bundle");
    let mut bytes = std::fs::read(&fixture().bundle).unwrap();
    bytes[offset as usize] ^= 0x01;
    std::fs::write(&copy, bytes).unwrap();
    (dir, copy)
}

#[test]
fn a_fresh_bundle_verifies_and_lists_what_it_holds() {
    let f = fixture();
    let run = verify(&f.bundle, &f.public_key);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.json()["verified"], true);

    let inspect = kiorexctl(
        f.bundle.parent().unwrap(),
        &["bundle", "inspect", "kiorex.bundle", "--output", "json"],
    )
    .json();
    let names: Vec<&str> = inspect["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for want in [
        "bin/kiorex",
        "bin/kiorexctl",
        "images/kiorex.oci.tar",
        "sbom/kiorex.cdx.json",
        "SHA256SUMS",
        "SHA256SUMS.sig",
        "manifests/base/kustomization.yaml",
        "manifests/overlays/single-site/kustomization.yaml",
    ] {
        assert!(names.contains(&want), "{want}: {names:?}");
    }
    assert_eq!(
        inspect["info"]["images"][0]["ref"],
        "registry.kiorex.local/kiorex/kiorex:0.1.0"
    );
}

#[test]
fn the_image_is_an_oci_layout_containerd_can_import() {
    let f = fixture();
    let mut archive = tar::Archive::new(std::fs::File::open(&f.bundle).unwrap());
    let mut image = Vec::new();
    let mut sbom = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        use std::io::Read;
        match name.as_str() {
            "images/kiorex.oci.tar" => {
                entry.read_to_end(&mut image).unwrap();
            }
            "sbom/kiorex.cdx.json" => {
                entry.read_to_end(&mut sbom).unwrap();
            }
            _ => {}
        }
    }
    let mut blobs = std::collections::HashMap::new();
    let mut layout = tar::Archive::new(image.as_slice());
    for entry in layout.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        use std::io::Read;
        entry.read_to_end(&mut data).unwrap();
        blobs.insert(name, data);
    }
    assert_eq!(blobs["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
    let m = &index["manifests"][0];
    assert_eq!(
        m["annotations"]["io.containerd.image.name"],
        "registry.kiorex.local/kiorex/kiorex:0.1.0"
    );
    // Every blob is stored under its own digest (content addressing is what containerd checks).
    use sha2::Digest;
    let blob = |d: &serde_json::Value| {
        let d = d.as_str().unwrap();
        let data = &blobs[&format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))];
        assert_eq!(
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(data))),
            d
        );
        data.clone()
    };
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&m["digest"])).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&blob(&manifest["config"]["digest"])).unwrap();
    assert_eq!(config["config"]["User"], "65532:65532");
    let layer = blob(&manifest["layers"][0]["digest"]);
    let mut files = Vec::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
    for e in tar.entries().unwrap() {
        files.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert!(
        files.contains(&"usr/local/bin/kiorex".to_owned()),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.contains("libc.so")),
        "the layer carries the C library: {files:?}"
    );

    let sbom: serde_json::Value = serde_json::from_slice(&sbom).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).unwrap();
    assert_eq!(
        sbom["components"].as_array().unwrap().len(),
        lock.matches("[[package]]").count()
    );
    assert!(
        sbom["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["purl"] == "pkg:cargo/ed25519-dalek@2.2.0"
                && c["hashes"][0]["alg"] == "SHA-256")
    );
}

#[test]
fn one_flipped_byte_in_a_file_is_refused_naming_the_file() {
    for name in [
        "bin/kiorex",
        "images/kiorex.oci.tar",
        "manifests/base/dmz/networkpolicies.yaml",
        "bundle.json",
    ] {
        let (start, len) = data_range(&fixture().bundle, name);
        let (_dir, copy) = tampered(start + len / 2);
        let run = verify(&copy, &fixture().public_key);
        assert_eq!(run.status, 4, "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("{name} was changed")),
            "{name}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("KX-CTL-030"), "{}", run.stderr);
    }
}

#[test]
fn a_changed_checksum_list_or_another_key_is_refused() {
    let f = fixture();
    let (start, _) = data_range(&f.bundle, "SHA256SUMS");
    let (_dir, copy) = tampered(start + 3);
    let run = verify(&copy, &f.public_key);
    assert_eq!(run.status, 4);
    assert!(
        run.stderr.contains("KX-CTL-031") && run.stderr.contains("SHA256SUMS"),
        "{}",
        run.stderr
    );

    let wrong = verify(&f.bundle, &f.other_key);
    assert_eq!(wrong.status, 4);
    assert!(
        wrong.stderr.contains("signed with another key"),
        "{}",
        wrong.stderr
    );
}

/// Bytes that belong to no file (tar headers, padding, the end-of-archive blocks) are covered
/// too: flipping one anywhere in the bundle is refused.
#[test]
fn one_flipped_byte_anywhere_is_refused() {
    let f = fixture();
    let len = std::fs::metadata(&f.bundle).unwrap().len();
    let (header, _) = data_range(&f.bundle, "bin/kiorexctl");
    let (sums_start, sums_len) = data_range(&f.bundle, "SHA256SUMS");
    let mut offsets = vec![
        0,
        header - 512 + 130,
        sums_start + sums_len + 1,
        len - 1,
        len - 700,
    ];
    // And a spread of positions through the whole file.
    offsets.extend((1..12).map(|i| len * i / 12 + 7));
    for offset in offsets {
        let (_dir, copy) = tampered(offset);
        let run = verify(&copy, &f.public_key);
        assert_eq!(
            run.status, 4,
            "byte {offset} of {len} flipped, verify said: {}{}",
            run.stdout, run.stderr
        );
    }
}
