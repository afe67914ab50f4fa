use crate::cli::{json_of, with_documents};
use crate::{download, upload};
use kiorex_objects::{Objects, Shelf};
use kiorex_testkit::{DocumentSite, Site, TestApp, User, documents_on};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

/// Uploads a text document and returns its id.
async fn document(app: &TestApp, patient: &str, text: &str) -> Uuid {
    let reply = upload(app, User::Admin, patient, "notes", "notes.txt", text.into()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().parse().unwrap()
}

async fn object_keys(app: &TestApp, id: Uuid) -> Vec<String> {
    let store = kiorex_store::Store::connect(&app.database_url, 1).unwrap();
    let versions = store
        .run(move |conn| kiorex_store::documents::versions(conn, id))
        .await
        .unwrap();
    versions.into_iter().map(|v| v.object_key).collect()
}

async fn stored_versions(objects: &Objects, keys: &[String]) -> usize {
    let mut n = 0;
    for key in keys {
        n += objects
            .store
            .versions(Shelf::Documents, key)
            .await
            .unwrap()
            .len();
    }
    n
}

fn purge(site: &Site, objects: &Objects, args: &[&str]) -> Value {
    let settings = crate::failures::settings_of(objects, &kiorex_testkit::ceph().endpoint());
    let mut command = with_documents(site, &settings, args);
    command.env("KIOREX_OBJECTS__RETENTION_DAYS", "30");
    let (ok, report) = json_of(&mut command);
    assert!(ok, "{report}");
    report
}

fn ids(report: &Value) -> Vec<String> {
    report["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["document"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_every_version_of_documents_deleted_past_retention_and_keeps_a_tombstone() {
    let (app, objects) = documents_on(DocumentSite::default()).await;
    objects
        .store
        .enable_versioning(Shelf::Documents)
        .await
        .unwrap();
    let patient = app.patient("Lindqvist", "Sara", "1964-04-14").await;

    // Old: deleted 40 days ago (retention 30), with two versions and a delete marker left by
    // an earlier removal of its first object.
    let old = document(&app, &patient, "old note").await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"old note, v2".to_vec()).file_name("notes.txt"),
    );
    let second = app
        .send(
            app.client()
                .post(app.url(&format!("/api/v1/documents/{old}/versions")))
                .bearer_auth(app.token(User::Admin))
                .multipart(form),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    let old_keys = object_keys(&app, old).await;
    objects
        .store
        .delete(Shelf::Documents, &old_keys[0])
        .await
        .unwrap();
    assert_eq!(stored_versions(&objects, &old_keys).await, 3);
    // Crashed: deleted long ago, its objects already removed by a purge that died before
    // marking the row.
    let crashed = document(&app, &patient, "crashed purge").await;
    let crashed_keys = object_keys(&app, crashed).await;
    // Recent: deleted today, still within retention. Live: not deleted.
    let recent = document(&app, &patient, "recent note").await;
    let live = document(&app, &patient, "live note").await;
    for id in [old, crashed, recent] {
        let deleted = app
            .delete(User::Admin, &format!("/api/v1/documents/{id}"))
            .await;
        assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    }
    app.sql(&format!(
        "UPDATE document SET deleted_at = now() - interval '40 days' WHERE id IN ('{old}', '{crashed}')"
    ));
    for version in objects
        .store
        .versions(Shelf::Documents, &crashed_keys[0])
        .await
        .unwrap()
    {
        objects
            .store
            .delete_version(Shelf::Documents, &version.key, &version.version_id)
            .await
            .unwrap();
    }

    let site = Site::unmigrated(app.database_url.clone());
    let dry = purge(&site, &objects, &["objects", "purge", "--output", "json"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(ids(&dry), [old.to_string(), crashed.to_string()], "{dry}");
    assert_eq!(
        stored_versions(&objects, &old_keys).await,
        3,
        "a dry run removes nothing"
    );

    let applied = purge(
        &site,
        &objects,
        &["objects", "purge", "--apply", "--output", "json"],
    );
    assert_eq!(
        ids(&applied),
        [old.to_string(), crashed.to_string()],
        "{applied}"
    );
    assert_eq!(applied["object_versions_removed"], 3, "{applied}");
    assert_eq!(
        stored_versions(&objects, &old_keys).await,
        0,
        "every version and marker is gone"
    );

    // Tombstones: the rows stay, emptied of what they said; one audit entry each.
    let tombstones = app.count(&format!(
        "SELECT count(*) AS n FROM document WHERE id IN ('{old}', '{crashed}') AND purged_at IS NOT NULL AND purged_by LIKE 'cli:%' AND title = ''"
    ));
    assert_eq!(tombstones, 2);
    let emptied = app.count(&format!(
        "SELECT count(*) AS n FROM document_version WHERE document_id = '{old}' AND wrapped_key = ''::bytea AND file_name = '' AND extracted_text IS NULL"
    ));
    assert_eq!(emptied, 2);
    let audited = app.count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE action = 'document.purge' AND resource_id IN ('{old}', '{crashed}') AND patient_id = '{patient}'"
    ));
    assert_eq!(audited, 2);

    // Within retention or live: untouched.
    assert!(stored_versions(&objects, &object_keys(&app, recent).await).await > 0);
    let (status, _, body) = download(
        &app,
        User::Admin,
        &format!("/api/v1/documents/{live}/content"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"live note");

    // Safe to rerun: nothing is left to do.
    let again = purge(
        &site,
        &objects,
        &["objects", "purge", "--apply", "--output", "json"],
    );
    assert_eq!(again["documents"], serde_json::json!([]));
}

#[test]
fn purge_help_says_it_is_a_dry_run_without_apply() {
    let site = Site::unmigrated(String::new());
    let help = site.kiorex(&["objects", "purge", "--help"]).success();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("Without --apply, only shows what would go"),
        "{help}"
    );
    assert!(help.contains("--output"));
    let rescan = site.kiorex(&["objects", "rescan", "--help"]).success();
    let rescan = rescan.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        rescan.contains("when clamd still does not answer"),
        "{rescan}"
    );
}
