use super::kiorexctl;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use x509_parser::prelude::*;

const FLAGS: &[&str] = &[
    "init",
    "--dir",
    "site",
    "--non-interactive",
    "--site-name",
    "example-general",
    "--facility",
    "EGH=Example General Hospital",
    "--lan-portal",
    "kiorex.example-general.lan",
    "--dmz-portal",
    "patients.example-general.org",
    "--ceph-endpoint",
    "https://rgw.storage.example-general.lan",
    "--output",
    "json",
];

fn names(pem: &[u8]) -> (Vec<String>, Vec<u8>) {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names = san
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    (names, pem.contents.clone())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_a_valid_site_with_pki_and_private_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let run = kiorexctl(dir.path(), FLAGS);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let site = dir.path().join("site");
    let text = std::fs::read_to_string(site.join("kiorex-site.toml")).unwrap();
    assert!(text.contains("code = \"EGH\""), "{text}");
    // The config it wrote is one preflight accepts.
    let check = kiorexctl(
        &site,
        &[
            "preflight",
            "--site",
            "kiorex-site.toml",
            "--data-dir",
            ".",
            "--no-ports",
            "--timeout",
            "1",
            "--output",
            "json",
        ],
    );
    assert!(
        check.json()["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "dns.portal_lan")
    );

    for secret in [
        "database-password",
        "meilisearch-master-key",
        "admin-password",
        "token-signing-key.pem",
    ] {
        let p = site.join("secrets").join(secret);
        assert_eq!(mode(&p), 0o600, "{secret}");
        assert!(std::fs::metadata(&p).unwrap().len() >= 32, "{secret}");
    }
    assert!(
        std::fs::read_to_string(site.join("secrets/token-signing-key.pem"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert_eq!(mode(&site.join("pki/ca.key")), 0o600);
    assert_eq!(mode(&site.join("secrets")), 0o700);

    let ca_pem = std::fs::read(site.join("pki/ca.crt")).unwrap();
    let (_, ca_der) = x509_parser::pem::parse_x509_pem(&ca_pem).unwrap();
    let ca = ca_der.parse_x509().unwrap();
    assert!(ca.is_ca());
    for (service, must_name) in [
        ("staff-portal", "kiorex.example-general.lan"),
        ("patient-portal", "patients.example-general.org"),
        ("core-internal", "kiorex-core-internal.kiorex-clinical.svc"),
        ("postgres", "kiorex-pg-rw.kiorex-data.svc.cluster.local"),
        ("meilisearch", "meilisearch.kiorex-data.svc"),
        ("ceph-rgw", "rgw.storage.example-general.lan"),
        ("ceph-rgw", "ceph-rgw.kiorex-data.svc.cluster.local"),
    ] {
        let pem = std::fs::read(site.join(format!("pki/{service}.crt"))).unwrap();
        let (names, der) = names(&pem);
        assert!(
            names.contains(&format!("DNSName({must_name})")),
            "{service}: {names:?}"
        );
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        cert.verify_signature(Some(ca.public_key()))
            .unwrap_or_else(|e| panic!("{service} not signed by the CA: {e}"));
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert!((364..=366).contains(&days), "{service}: {days} days");
        assert_eq!(mode(&site.join(format!("pki/{service}.key"))), 0o600);
    }
}

#[test]
fn init_again_keeps_the_ca_and_secrets_and_reissues_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(kiorexctl(dir.path(), FLAGS).status, 0);
    let site = dir.path().join("site");
    let read = |p: &str| std::fs::read(site.join(p)).unwrap();
    let (ca, password, postgres, staff) = (
        read("pki/ca.crt"),
        read("secrets/database-password"),
        read("pki/postgres.crt"),
        read("pki/staff-portal.crt"),
    );

    let again = kiorexctl(dir.path(), FLAGS);
    assert_eq!(again.status, 0, "{}", again.stderr);
    let report = again.json();
    assert_eq!(report["site_config_action"], "unchanged");
    assert_eq!(report["certificates"], serde_json::json!([]));
    assert_eq!(report["secrets_created"], serde_json::json!([]));

    let mut changed: Vec<&str> = FLAGS.to_vec();
    let i = changed
        .iter()
        .position(|f| *f == "kiorex.example-general.lan")
        .unwrap();
    changed[i] = "staff.example-general.lan";
    let refused = kiorexctl(dir.path(), &changed);
    assert_eq!(
        refused.status, 5,
        "a different site config is not replaced silently"
    );
    assert!(refused.stderr.contains("KX-CTL-011"), "{}", refused.stderr);

    changed.push("--force");
    let forced = kiorexctl(dir.path(), &changed);
    assert_eq!(forced.status, 0, "{}", forced.stderr);
    let issued: Vec<_> = forced.json()["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(issued, ["staff-portal"]);
    assert_eq!(read("pki/ca.crt"), ca);
    assert_eq!(read("secrets/database-password"), password);
    assert_eq!(read("pki/postgres.crt"), postgres);
    assert_ne!(read("pki/staff-portal.crt"), staff);
}

#[test]
fn init_names_missing_flags_and_invalid_values() {
    let dir = tempfile::tempdir().unwrap();
    let missing = kiorexctl(
        dir.path(),
        &["init", "--non-interactive", "--site-name", "x"],
    );
    assert_eq!(missing.status, 1);
    for flag in ["--lan-portal", "--dmz-portal", "--facility"] {
        assert!(missing.stderr.contains(flag), "{flag}: {}", missing.stderr);
    }
    let invalid = kiorexctl(
        dir.path(),
        &[
            "init",
            "--non-interactive",
            "--site-name",
            "Bad Name",
            "--facility",
            "egh=x",
            "--lan-portal",
            "lan",
            "--dmz-portal",
            "p.example.org",
            "--smtp-relay",
            "smtp",
        ],
    );
    assert_eq!(invalid.status, 1);
    for key in [
        "site.name",
        "facility.code",
        "portals.lan",
        "smtp.relay",
        "KX-CTL-010",
    ] {
        assert!(invalid.stderr.contains(key), "{key}: {}", invalid.stderr);
    }
    assert!(
        !dir.path().join("kiorex-site.toml").exists(),
        "nothing is written when invalid"
    );
}
