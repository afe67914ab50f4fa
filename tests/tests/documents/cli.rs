use kiorex_objects::{Keyring, ObjectStore, Shelf};
use kiorex_testkit::{Site, ceph, clamav, s3_settings};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// The environment that points `kiorex` at the test Ceph and clamd, with buckets named by
/// `settings` and a keyring in the site's directory.
pub(crate) fn documents_env(
    site: &Site,
    settings: &kiorex_objects::S3Settings,
) -> Vec<(String, String)> {
    let keyring = site.dir.path().join("kek");
    if !keyring.exists() {
        std::fs::write(&keyring, Keyring::generate_line("test")).unwrap();
        std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    [
        ("KIOREX_OBJECTS__ENDPOINT", settings.endpoint.clone()),
        ("KIOREX_OBJECTS__ACCESS_KEY", settings.access_key.clone()),
        ("KIOREX_OBJECTS__SECRET_KEY", settings.secret_key.clone()),
        ("KIOREX_OBJECTS__BUCKET", settings.bucket.clone()),
        (
            "KIOREX_OBJECTS__QUARANTINE_BUCKET",
            settings.quarantine_bucket.clone(),
        ),
        (
            "KIOREX_OBJECTS__KEY_ENCRYPTION_KEYS_FILE",
            keyring.display().to_string(),
        ),
        ("KIOREX_SCAN__CLAMD", clamav().address()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `kiorex` pointed at the test Ceph and clamd, with buckets named by `settings`.
pub(crate) fn with_documents(
    site: &Site,
    settings: &kiorex_objects::S3Settings,
    args: &[&str],
) -> Command {
    let mut command = site.command(args);
    command.envs(documents_env(site, settings));
    command
}

pub(crate) fn json_of(command: &mut Command) -> (bool, serde_json::Value) {
    let output = command.output().expect("run kiorex");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| {
            panic!(
                "JSON from kiorex: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    (output.status.success(), value)
}

#[test]
fn configtest_checks_the_buckets_and_the_scanner_and_gc_removes_orphans() {
    let site = Site::with_admin();
    let settings = s3_settings(&ceph().endpoint());

    let (ok, missing) = json_of(&mut with_documents(
        &site,
        &settings,
        &["configtest", "--output", "json"],
    ));
    assert!(!ok, "missing buckets fail the check: {missing}");
    let objects = missing["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "objects")
        .unwrap()
        .clone();
    assert_eq!(objects["status"], "fail");
    assert!(
        objects["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{objects}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = ObjectStore::new(&settings).unwrap();
    runtime.block_on(store.create_missing_buckets()).unwrap();
    let (ok, passed) = json_of(&mut with_documents(
        &site,
        &settings,
        &["configtest", "--output", "json"],
    ));
    assert!(ok, "{passed}");
    assert_eq!(passed["ok"], true);
    let scanner = passed["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "scan.clamd")
        .unwrap()
        .clone();
    assert_eq!(scanner["status"], "pass", "{scanner}");

    let orphan = format!(
        "{}/{}/report/{}",
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4()
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"left by a crash").unwrap();
    runtime
        .block_on(store.put_file(
            Shelf::Documents,
            &orphan,
            file.path(),
            "application/octet-stream",
            &[],
        ))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (ok, dry) = json_of(&mut with_documents(
        &site,
        &settings,
        &[
            "objects",
            "gc",
            "--dry-run",
            "--grace-minutes",
            "0",
            "--output",
            "json",
        ],
    ));
    assert!(ok, "{dry}");
    assert_eq!(dry["orphans"], serde_json::json!([orphan]));
    assert_eq!(dry["removed"], 0);
    let (ok, swept) = json_of(&mut with_documents(
        &site,
        &settings,
        &["objects", "gc", "--grace-minutes", "0", "--output", "json"],
    ));
    assert!(ok, "{swept}");
    assert_eq!(swept["removed"], 1);
    assert!(
        runtime
            .block_on(store.list(Shelf::Documents, ""))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn objects_help_explains_the_commands() {
    let site = Site::unmigrated(String::new());
    let help = site.kiorex(&["objects", "gc", "--help"]).success();
    assert!(help.contains("no document row names"), "{help}");
    assert!(help.contains("--dry-run"));
    let keyring = site.dir.path().join("new-kek");
    site.kiorex(&[
        "objects",
        "new-kek",
        "--id",
        "2026",
        "--out",
        keyring.to_str().unwrap(),
    ])
    .success();
    let mode = std::fs::metadata(&keyring).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the keyring is readable by its owner only");
    assert!(Keyring::parse(&std::fs::read_to_string(&keyring).unwrap()).is_ok());
}
