use super::kiorexctl;

const INIT: &[&str] = &[
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

/// Nothing runs here: status says so in the JSON the rollout's health gate reads, and exits 3.
#[test]
fn status_reports_components_certificates_and_backups() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(kiorexctl(dir.path(), INIT).status, 0);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = kiorexctl(
        dir.path(),
        &[
            "status",
            "--data-dir",
            "nowhere",
            "--site-dir",
            "site",
            "--backups",
            "backups",
            "--url",
            &url,
            "--output",
            "json",
        ],
    );
    assert_eq!(run.status, 3, "{}", run.stderr);
    assert!(run.stderr.contains("KX-CTL-070"));
    let r = run.json();
    assert_eq!(r["healthy"], false);
    assert_eq!(r["site"], "north");
    assert!(r["version"].is_string());
    assert!(
        r["migrations"]["pending"].is_null(),
        "unknown while the core is down"
    );
    let names: Vec<_> = r["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["ready"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("postgres", false), ("core", false)]);
    let certs = r["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 9, "the CA and eight service certificates");
    for c in certs {
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c["days_left"].as_i64().unwrap() >= 364, "{c}");
    }
    assert_eq!(r["backup"]["status"], "warn");
}

#[test]
fn rotate_certs_reissues_what_expires_and_keeps_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(kiorexctl(dir.path(), INIT).status, 0);
    let site = dir.path().join("site");
    let ca = std::fs::read(site.join("pki/ca.crt")).unwrap();
    let core = std::fs::read(site.join("pki/core-internal.crt")).unwrap();

    let none = kiorexctl(
        dir.path(),
        &["rotate-certs", "--site-dir", "site", "--output", "json"],
    );
    assert_eq!(none.status, 0, "{}", none.stderr);
    assert_eq!(
        none.json()["reissued"],
        serde_json::json!([]),
        "nothing expires within 60 days"
    );

    // Within 400 days: every one-year certificate is due.
    let due = kiorexctl(
        dir.path(),
        &[
            "rotate-certs",
            "--site-dir",
            "site",
            "--within-days",
            "400",
            "--output",
            "json",
        ],
    );
    assert_eq!(due.json()["reissued"].as_array().unwrap().len(), 8);
    assert_eq!(std::fs::read(site.join("pki/ca.crt")).unwrap(), ca);
    assert_ne!(
        std::fs::read(site.join("pki/core-internal.crt")).unwrap(),
        core
    );
}
