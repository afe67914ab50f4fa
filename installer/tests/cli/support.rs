use super::kiorexctl;
use std::io::Read;

/// A support bundle holds the logs and config but no secret value, even one that leaked into a log.
#[test]
fn support_bundle_contains_no_secret_value() {
    let dir = tempfile::tempdir().unwrap();
    let init = kiorexctl(
        dir.path(),
        &[
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
        ],
    );
    assert_eq!(init.status, 0, "{}", init.stderr);
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("secrets")).unwrap();
    std::fs::create_dir_all(data.join("logs")).unwrap();
    let db_password = "Pg-pass-7f3a9c2e1b";
    std::fs::write(
        data.join("secrets/database-url"),
        format!("postgres://kiorex:{db_password}@localhost/kiorex?host=/x"),
    )
    .unwrap();
    std::fs::write(data.join("secrets/admin-password"), "Admin-4b8d2f6a9e").unwrap();
    let site_secret =
        std::fs::read_to_string(dir.path().join("site/secrets/meilisearch-master-key")).unwrap();
    let ca_key = std::fs::read_to_string(dir.path().join("site/pki/ca.key")).unwrap();
    std::fs::write(
        data.join("logs/core.log"),
        format!(
            "{{\"level\":\"INFO\",\"message\":\"core listening\"}}\nconnecting to postgres://kiorex:{db_password}@localhost/kiorex\n\
             debug: admin typed Admin-4b8d2f6a9e into the user field\nmeili key {site_secret}\n{ca_key}\nkeep this line\n"
        ),
    )
    .unwrap();

    let run = kiorexctl(
        dir.path(),
        &[
            "support-bundle",
            "--data-dir",
            "data",
            "--site-dir",
            "site",
            "--out",
            "support.tar.gz",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.json()["redactions"].as_u64().unwrap() >= 4);

    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(dir.path().join("support.tar.gz")).unwrap(),
    ));
    let mut all = String::new();
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        names.push(entry.path().unwrap().to_string_lossy().into_owned());
        entry.read_to_string(&mut all).unwrap();
    }
    for want in [
        "kiorex-support/logs/core.log",
        "kiorex-support/status.json",
        "kiorex-support/site/kiorex-site.toml",
        "kiorex-support/preflight.json",
    ] {
        assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
    }
    assert!(
        all.contains("keep this line")
            && all.contains("core listening")
            && all.contains("patients.north.org")
    );
    let mut secrets = vec![
        db_password.to_owned(),
        "Admin-4b8d2f6a9e".to_owned(),
        site_secret.trim().to_owned(),
    ];
    for file in [
        "database-password",
        "admin-password",
        "token-signing-key.pem",
    ] {
        secrets.push(
            std::fs::read_to_string(dir.path().join("site/secrets").join(file))
                .unwrap()
                .trim()
                .to_owned(),
        );
    }
    for key in std::fs::read_dir(dir.path().join("site/pki"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "key"))
    {
        for line in std::fs::read_to_string(key.path())
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            secrets.push(line.to_owned());
        }
    }
    for s in &secrets {
        assert!(
            !all.contains(s.as_str()),
            "secret {s:?} found in the support bundle"
        );
    }
}
