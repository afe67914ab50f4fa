//! install / upgrade / uninstall need a k3s cluster, which cannot run here: their plans are
//! tested instead (order, the files they apply exist after render, refusals).

use super::{kiorexctl, repo_root};
use std::path::Path;

fn init(dir: &Path, version_flags: &[&str]) {
    let mut args = vec![
        "init",
        "--dir",
        "site",
        "--non-interactive",
        "--site-name",
        "north",
        "--facility",
        "NRT=North",
        "--lan-portal",
        "kiorex.north.lan",
        "--dmz-portal",
        "patients.north.org",
    ];
    args.extend(version_flags);
    let run = kiorexctl(dir, &args);
    assert_eq!(run.status, 0, "{}", run.stderr);
}

fn ids(plan: &serde_json::Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

fn before(ids: &[String], a: &str, b: &str) {
    let pos = |x: &str| {
        ids.iter()
            .position(|i| i == x)
            .unwrap_or_else(|| panic!("{x} not in {ids:?}"))
    };
    assert!(pos(a) < pos(b), "{a} must come before {b}: {ids:?}");
}

#[test]
fn install_plan_applies_in_dependency_order_the_files_render_writes() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), &[]);
    let run = kiorexctl(
        dir.path(),
        &[
            "install",
            "--bundle",
            "kiorex-0.1.0.tar",
            "--site",
            "site/kiorex-site.toml",
            "--dry-run",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let plan = run.json();
    let ids = ids(&plan);
    for (a, b) in [
        ("verify", "unpack"),
        ("images-import", "workloads"),
        ("namespaces", "network-policies"),
        ("network-policies", "config"),
        ("network-policies", "data"),
        ("secrets", "data"),
        ("data-ready", "migrate"),
        ("migrate-clear", "migrate"),
        ("migrate-done", "workloads"),
        ("ready-kiorex-core", "first-admin"),
    ] {
        before(&ids, a, b);
    }
    before(&ids, "facility-NRT", "first-admin");
    let admin = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "first-admin")
        .unwrap();
    assert!(
        admin["stdin"]
            .as_str()
            .unwrap()
            .ends_with("site/secrets/admin-password"),
        "the password goes on stdin: {admin}"
    );
    assert!(
        !admin.to_string().contains(
            std::fs::read_to_string(dir.path().join("site/secrets/admin-password"))
                .unwrap()
                .trim()
        )
    );
    // Every file the plan applies is one that render (or secrets) writes.
    let rendered = dir.path().join("rendered");
    let manifests = repo_root().join("k3s-manifests");
    assert_eq!(
        kiorexctl(
            dir.path(),
            &[
                "render",
                "--site",
                "site/kiorex-site.toml",
                "--manifests",
                manifests.to_str().unwrap(),
                "--out",
                "rendered"
            ]
        )
        .status,
        0
    );
    assert_eq!(
        kiorexctl(
            dir.path(),
            &[
                "secrets",
                "--site-dir",
                "site",
                "--out",
                "rendered/00-secrets.yaml"
            ]
        )
        .status,
        0
    );
    for s in plan["steps"].as_array().unwrap() {
        let cmd: Vec<&str> = s["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        if let Some(i) = cmd.iter().position(|c| *c == "-f") {
            let file = Path::new(cmd[i + 1]).file_name().unwrap();
            assert!(
                rendered.join(file).exists(),
                "{} applies {file:?}, which render does not write",
                s["id"]
            );
        }
    }
    // Without k3s on this machine the real install refuses instead of half-running.
    let real = kiorexctl(
        dir.path(),
        &[
            "install",
            "--bundle",
            "kiorex-0.1.0.tar",
            "--site",
            "site/kiorex-site.toml",
        ],
    );
    assert_eq!(real.status, 5);
    assert!(real.stderr.contains("KX-CTL-060"), "{}", real.stderr);
}

#[test]
fn upgrade_plan_backs_up_first_gates_on_health_and_refuses_a_skipped_major() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), &[]);
    let run = kiorexctl(
        dir.path(),
        &[
            "upgrade",
            "--bundle",
            "b.tar",
            "--site",
            "site/kiorex-site.toml",
            "--from-version",
            "0.0.4",
            "--dry-run",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let plan = run.json();
    let ids = ids(&plan);
    before(&ids, "verify", "backup");
    before(&ids, "backup-done", "namespaces");
    before(&ids, "migrate-done", "workloads");
    before(&ids, "ready-kiorex-edge", "health-gate");
    let last = plan["steps"].as_array().unwrap().last().unwrap();
    assert_eq!(last["rollback"], true);
    assert!(
        last["command"].as_array().unwrap().iter().any(|c| c
            .as_str()
            .unwrap()
            .contains("/0.0.4/rendered/06-workloads.yaml")),
        "{last}"
    );

    let site = std::fs::read_to_string(dir.path().join("site/kiorex-site.toml")).unwrap();
    std::fs::write(
        dir.path().join("site/kiorex-site.toml"),
        site.replace("version = \"0.1.0\"", "version = \"0.3.0\""),
    )
    .unwrap();
    let skip = kiorexctl(
        dir.path(),
        &[
            "upgrade",
            "--bundle",
            "b.tar",
            "--site",
            "site/kiorex-site.toml",
            "--from-version",
            "0.1.2",
            "--dry-run",
        ],
    );
    assert_eq!(skip.status, 5, "{}", skip.stderr);
    assert!(
        skip.stderr.contains("skips a major version") && skip.stderr.contains("0.2.x"),
        "{}",
        skip.stderr
    );
}

#[test]
fn uninstall_keeps_or_deletes_data_only_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let refused = kiorexctl(dir.path(), &["uninstall"]);
    assert_eq!(refused.status, 5);
    assert!(refused.stderr.contains("KX-CTL-062"));
    let keep = kiorexctl(
        dir.path(),
        &["uninstall", "--keep-data", "--dry-run", "--output", "json"],
    )
    .json();
    let text = keep.to_string();
    assert!(
        !text.contains("\"kiorex-data\""),
        "the data namespace is kept: {text}"
    );
    let all = kiorexctl(dir.path(), &["uninstall", "--dry-run", "--output", "json"]).json();
    assert!(all.to_string().contains("\"kiorex-data\""));
}

#[test]
fn secrets_are_made_from_the_site_pki_and_kept_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), &[]);
    let run = kiorexctl(
        dir.path(),
        &[
            "secrets",
            "--site-dir",
            "site",
            "--out",
            "secrets.yaml",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let path = dir.path().join("secrets.yaml");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<serde_norway::Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let find = |ns: &str, name: &str| {
        docs.iter()
            .find(|d| d["metadata"]["namespace"] == ns && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{ns}/{name}"))
            .clone()
    };
    let password =
        std::fs::read_to_string(dir.path().join("site/secrets/database-password")).unwrap();
    let url = find("kiorex-clinical", "kiorex-database")["stringData"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.contains(password.trim()) && url.contains("sslmode=verify-full"));
    assert_eq!(
        find("kiorex-data", "kiorex-pg-app-credentials")["stringData"]["password"]
            .as_str()
            .unwrap(),
        password.trim()
    );
    let staff = find("kiorex-clinical", "kiorex-staff-portal-tls");
    assert_eq!(staff["type"], "kubernetes.io/tls");
    assert_eq!(
        staff["stringData"]["tls.crt"].as_str().unwrap(),
        std::fs::read_to_string(dir.path().join("site/pki/staff-portal.crt")).unwrap()
    );
    // The edge gets the public half of core's token signing key, and nothing more of it.
    use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
    let signing =
        std::fs::read_to_string(dir.path().join("site/secrets/token-signing-key.pem")).unwrap();
    let public = find("kiorex-dmz", "kiorex-edge-token-key")["data"]["token-public-key.pem"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        ed25519_dalek::VerifyingKey::from_public_key_pem(&public).unwrap(),
        ed25519_dalek::SigningKey::from_pkcs8_pem(&signing)
            .unwrap()
            .verifying_key()
    );
    let signing_body: String = signing
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for dmz in docs
        .iter()
        .filter(|d| d["metadata"]["namespace"] == "kiorex-dmz")
    {
        let yaml = serde_norway::to_string(dmz).unwrap();
        assert!(
            !yaml.contains(&signing_body),
            "the signing key reached the DMZ"
        );
    }
    // Core's internal listener trusts the site CA, which issued the edge's client certificate.
    assert_eq!(
        find("kiorex-clinical", "kiorex-core-internal-tls")["stringData"]["ca.crt"]
            .as_str()
            .unwrap(),
        std::fs::read_to_string(dir.path().join("site/pki/ca.crt")).unwrap()
    );
    for (ns, name) in [
        ("kiorex-dmz", "kiorex-edge-upstream-mtls"),
        ("kiorex-data", "meilisearch-config"),
        ("kiorex-clinical", "kiorex-trust-bundle"),
        ("kiorex-data", "kiorex-pg-server-tls"),
    ] {
        find(ns, name);
    }
}
