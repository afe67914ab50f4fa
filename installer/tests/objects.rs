//! `kiorexctl backup` / `restore` of the document objects against the test kit's real Ceph
//! (mon, memstore OSD, RGW) and a core that stores documents there: back up, lose the bucket's
//! objects, restore, and read the documents through the core again; a damaged backup is refused.

use kiorex_objects::{ObjectStore, S3Settings, Shelf};
use kiorex_testkit::{ACCESS_KEY, DocumentSite, SECRET_KEY, TestApp, User, documents_on};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use std::path::Path;
use std::process::Command;

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs kiorexctl with the S3 credentials in the environment, as the core's env file has them.
fn kiorexctl(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_kiorexctl"))
        .args(args)
        .env("KIOREX_OBJECTS__ACCESS_KEY", ACCESS_KEY)
        .env("KIOREX_OBJECTS__SECRET_KEY", SECRET_KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("kiorexctl runs");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn objects_json(run: &Run) -> serde_json::Value {
    assert_eq!(
        run.status, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    value["objects"].clone()
}

async fn upload(app: &TestApp, patient: &str, name: &str, bytes: Vec<u8>) -> String {
    let form = Form::new()
        .text("category", "discharge-letter")
        .text("title", "discharge letter")
        .part("file", Part::bytes(bytes).file_name(name.to_owned()));
    let created = app
        .send(
            app.client()
                .post(app.url(&format!("/api/v1/patients/{patient}/documents")))
                .bearer_auth(app.token(User::Admin))
                .multipart(form),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["id"].as_str().expect("id").to_owned()
}

async fn content(app: &TestApp, id: &str) -> (StatusCode, Vec<u8>) {
    let response = app
        .client()
        .get(app.url(&format!("/api/v1/documents/{id}/content")))
        .bearer_auth(app.token(User::Admin))
        .send()
        .await
        .expect("download");
    let status = response.status();
    (status, response.bytes().await.expect("body").to_vec())
}

/// The first saved object file under `<target>/objects/blobs`.
fn a_saved_object(target: &Path) -> std::path::PathBuf {
    let blobs = target.join("objects/blobs");
    std::fs::read_dir(blobs)
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|e| e.path())
        .next()
        .expect("a saved object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_lost_from_the_bucket_come_back_byte_identical_and_a_damaged_backup_is_refused() {
    let (app, objects) = documents_on(DocumentSite::default()).await;
    let endpoint = kiorex_testkit::ceph().endpoint();
    let bucket = objects.store.bucket_name(Shelf::Documents);
    let patient = app.patient("Backup", "Bea", "1975-06-01").await;
    let letters: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("Discharge letter {i}: recovery uneventful.\n").repeat(200 * (i + 1)))
        .map(String::into_bytes)
        .collect();
    let mut ids = Vec::new();
    for (i, letter) in letters.iter().enumerate() {
        ids.push(upload(&app, &patient, &format!("letter-{i}.txt"), letter.clone()).await);
    }
    let target = tempfile::tempdir().unwrap();
    let target_s = target.path().to_str().unwrap();
    let common = [
        "--parts",
        "objects",
        "--objects-endpoint",
        &endpoint,
        "--objects-bucket",
        &bucket,
        "--output",
        "json",
    ];
    let backup: Vec<&str> = [&["backup", "--target", target_s][..], &common].concat();

    let first = objects_json(&kiorexctl(&backup));
    assert_eq!(first["objects"], 3, "{first}");
    assert_eq!(first["copied"], 3, "{first}");
    // The backup holds the sealed bytes, never the plaintext.
    let saved = std::fs::read(a_saved_object(target.path())).unwrap();
    assert!(
        !letters
            .iter()
            .any(|l| saved.windows(24).any(|w| w == &l[..24])),
        "a saved object holds plaintext"
    );
    // The second run finds the gateway in the site config instead of a flag.
    let site = target.path().join("site");
    let site_s = site.to_str().unwrap();
    let init = kiorexctl(&[
        "init",
        "--dir",
        site_s,
        "--non-interactive",
        "--site-name",
        "north",
        "--facility",
        "NRT=North",
        "--lan-portal",
        "kiorex.north.lan",
        "--dmz-portal",
        "patients.north.org",
        "--ceph-endpoint",
        &endpoint,
    ]);
    assert_eq!(init.status, 0, "{}", init.stderr);
    let again = objects_json(&kiorexctl(&[
        "backup",
        "--target",
        target_s,
        "--parts",
        "objects",
        "--site-dir",
        site_s,
        "--objects-bucket",
        &bucket,
        "--output",
        "json",
    ]));
    assert_eq!(
        (again["copied"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(3)),
        "an unchanged object was copied again: {again}"
    );

    for listed in objects.store.list(Shelf::Documents, "").await.unwrap() {
        objects
            .store
            .delete(Shelf::Documents, &listed.key)
            .await
            .unwrap();
    }
    assert_ne!(content(&app, &ids[0]).await.0, StatusCode::OK);

    let restore: Vec<&str> = [&["restore", "--from", target_s][..], &common].concat();
    let restored = objects_json(&kiorexctl(&restore));
    assert_eq!(restored["copied"], 3, "{restored}");
    for (id, letter) in ids.iter().zip(&letters) {
        let (status, body) = content(&app, id).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body == *letter, "document {id} differs after the restore");
    }

    // A new bucket (a restore drill, a rebuilt gateway) is created and gets the same bytes.
    let fresh = format!("{bucket}-drill");
    let into_fresh: Vec<&str> = restore
        .iter()
        .map(|a| if *a == bucket { fresh.as_str() } else { a })
        .collect();
    assert_eq!(objects_json(&kiorexctl(&into_fresh))["copied"], 3);
    let drill = ObjectStore::new(&S3Settings {
        bucket: fresh.clone(),
        ..kiorex_testkit::s3_settings(&endpoint)
    })
    .unwrap();
    let listed = objects.store.list(Shelf::Documents, "").await.unwrap();
    assert_eq!(drill.list(Shelf::Documents, "").await.unwrap().len(), 3);
    for object in &listed {
        assert_eq!(
            drill
                .get_stored(Shelf::Documents, &object.key)
                .await
                .unwrap(),
            objects
                .store
                .get_stored(Shelf::Documents, &object.key)
                .await
                .unwrap(),
            "{} differs in the new bucket",
            object.key
        );
    }

    let damaged = a_saved_object(target.path());
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&damaged, bytes).unwrap();
    let sha = damaged.file_name().unwrap().to_str().unwrap().to_owned();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(target.path().join("objects/manifest.json")).unwrap(),
    )
    .unwrap();
    let key = manifest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["sha256"] == sha.as_str())
        .and_then(|e| e["key"].as_str())
        .unwrap()
        .to_owned();
    let refused = kiorexctl(&restore);
    assert_eq!(refused.status, 4, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("KX-CTL-058") && refused.stderr.contains(&key),
        "the refusal does not name the damaged object {key}: {}",
        refused.stderr
    );
}
