use crate::{code, count_documents, download, filler, pdf, upload};
use kiorex_objects::Shelf;
use kiorex_testkit::{DocumentSite, User, documents_on};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_scanned_stored_and_downloaded_whole_and_by_range() {
    let (app, objects) = documents_on(DocumentSite::default()).await;
    let patient = app.patient("Okafor", "Ngozi", "1980-03-12").await;
    app.care_for(User::NurseA, &patient);
    let letter = pdf("Discharge letter: appendicectomy, recovery uneventful");
    let created = upload(
        &app,
        User::Admin,
        &patient,
        "discharge-letter",
        "letter.pdf",
        letter.clone(),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["content_type"], "application/pdf");
    assert_eq!(created.body["version"], 1);
    assert_eq!(created.body["size"], letter.len());
    let id = created.body["id"].as_str().unwrap().to_owned();

    let (status, headers, body) = download(
        &app,
        User::NurseA,
        &format!("/api/v1/documents/{id}/content"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, letter);
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["content-type"], "application/pdf");

    let (status, headers, body) = download(
        &app,
        User::NurseA,
        &format!("/api/v1/documents/{id}/content"),
        Some("bytes=9-18"),
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, letter[9..=18]);
    assert_eq!(
        headers["content-range"],
        format!("bytes 9-18/{}", letter.len())
    );
    let (status, headers, _) = download(
        &app,
        User::NurseA,
        &format!("/api/v1/documents/{id}/content"),
        Some("bytes=999999-"),
    )
    .await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        headers["content-range"],
        format!("bytes */{}", letter.len())
    );

    let text: Vec<String> = app
        .store
        .run(|c| {
            use diesel::prelude::*;
            Ok(kiorex_store::documents::document_version::table
                .select(kiorex_store::documents::document_version::extracted_text.assume_not_null())
                .load::<String>(c)?)
        })
        .await
        .unwrap();
    assert!(
        text[0].contains("appendicectomy"),
        "text extracted for search: {text:?}"
    );
    let key = &app
        .store
        .run(kiorex_store::documents::all_object_keys)
        .await
        .unwrap()[0];
    let facility = app.facility_a.to_string();
    assert!(
        key.starts_with(&format!("{facility}/{patient}/discharge-letter/")),
        "{key}"
    );
    let audited = app.count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE resource_id = '{id}' AND action = 'document.download' AND actor = 'nurse.a'"
    ));
    assert_eq!(
        audited, 2,
        "each download is audited (the refused range is not a read)"
    );
    drop(objects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_goes_up_in_parts_and_ranges_cross_them() {
    let (app, _) = documents_on(DocumentSite::default()).await;
    let patient = app.patient("Lindqvist", "Astrid", "1975-07-01").await;
    // Past rust-s3's 8 MiB part size: a multipart upload with SSE-C on every part.
    let scan = filler(9 * 1024 * 1024 + 123, 7);
    let created = upload(
        &app,
        User::Admin,
        &patient,
        "imaging",
        "scan.pdf",
        scan.clone(),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let boundary = 8 * 1024 * 1024;
    let range = format!("bytes={}-{}", boundary - 10, boundary + 9);
    let (status, _, body) = download(
        &app,
        User::Admin,
        &format!("/api/v1/documents/{id}/content"),
        Some(&range),
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, scan[boundary - 10..boundary + 10]);
    let (_, _, whole) = download(
        &app,
        User::Admin,
        &format!("/api/v1/documents/{id}/content"),
        None,
    )
    .await;
    assert!(whole == scan, "the whole file comes back intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_versions_keep_old_ones_lists_filter_and_deletes_are_soft() {
    let (app, _) = documents_on(DocumentSite::default()).await;
    let patient = app.patient("Moreau", "Jules", "1990-01-20").await;
    app.care_for(User::NurseA, &patient);
    let consent = upload(
        &app,
        User::FrontDeskA,
        &patient,
        "consent",
        "consent.txt",
        b"I consent. v1".to_vec(),
    )
    .await;
    assert_eq!(consent.status, StatusCode::CREATED, "{}", consent.body);
    let referral = upload(
        &app,
        User::Admin,
        &patient,
        "referral",
        "referral.txt",
        b"Please see".to_vec(),
    )
    .await;
    assert_eq!(referral.status, StatusCode::CREATED);
    let id = consent.body["id"].as_str().unwrap();

    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"I consent. v2, signed".to_vec())
            .file_name("consent-2.txt"),
    );
    let second = app
        .send(
            app.client()
                .post(app.url(&format!("/api/v1/documents/{id}/versions")))
                .bearer_auth(app.token(User::FrontDeskA))
                .multipart(form),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_eq!(second.body["version"], 2);
    let (_, _, v1) = download(
        &app,
        User::NurseA,
        &format!("/api/v1/documents/{id}/versions/1/content"),
        None,
    )
    .await;
    assert_eq!(v1, b"I consent. v1");
    let (_, _, current) = download(
        &app,
        User::NurseA,
        &format!("/api/v1/documents/{id}/content"),
        None,
    )
    .await;
    assert_eq!(current, b"I consent. v2, signed");
    let described = app
        .get(User::NurseA, &format!("/api/v1/documents/{id}"))
        .await;
    assert_eq!(described.body["versions"].as_array().unwrap().len(), 2);

    let all = app
        .get(
            User::NurseA,
            &format!("/api/v1/patients/{patient}/documents"),
        )
        .await;
    assert_eq!(all.body.as_array().unwrap().len(), 2);
    let consents = app
        .get(
            User::NurseA,
            &format!("/api/v1/patients/{patient}/documents?category=consent"),
        )
        .await;
    assert_eq!(consents.body.as_array().unwrap().len(), 1);
    assert_eq!(consents.body[0]["version"], 2);
    let future = app
        .get(
            User::NurseA,
            &format!("/api/v1/patients/{patient}/documents?from=2999-01-01"),
        )
        .await;
    assert!(future.body.as_array().unwrap().is_empty());
    let bad = app
        .get(
            User::NurseA,
            &format!("/api/v1/patients/{patient}/documents?from=yesterday"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&bad.body), "KX-DOC-400");

    let deleted = app
        .delete(User::FrontDeskA, &format!("/api/v1/documents/{id}"))
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(deleted.body["deleted_at"].is_string());
    let after = app
        .get(
            User::NurseA,
            &format!("/api/v1/patients/{patient}/documents"),
        )
        .await;
    assert_eq!(
        after.body.as_array().unwrap().len(),
        1,
        "a deleted document leaves the list"
    );
    let (status, _, _) = download(
        &app,
        User::NurseA,
        &format!("/api/v1/documents/{id}/content"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(
        count_documents(&app),
        3,
        "versions and the deleted document's rows stay (soft delete)"
    );
    let outbox =
        app.count("SELECT count(*) AS n FROM outbox WHERE resource_type = 'DocumentReference'");
    assert_eq!(
        outbox, 4,
        "create, create, version, delete reach the outbox for indexing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_encrypted_at_rest_and_orphans_are_swept() {
    let (app, objects) = documents_on(DocumentSite::default()).await;
    let patient = app.patient("Haddad", "Omar", "1968-11-30").await;
    let created = upload(
        &app,
        User::Admin,
        &patient,
        "report",
        "report.txt",
        b"HbA1c 6.1%".to_vec(),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let key = app
        .store
        .run(kiorex_store::documents::all_object_keys)
        .await
        .unwrap()
        .remove(0);
    let at_rest = objects
        .store
        .get_stored(Shelf::Documents, &key)
        .await
        .unwrap();
    assert_eq!(
        at_rest.len() as u64,
        kiorex_objects::cipher::sealed_size(10)
    );
    assert!(
        !at_rest.windows(5).any(|w| w == b"HbA1c"),
        "what RGW holds is ciphertext"
    );
    let mut wrong_key = objects
        .open(&key, &kiorex_objects::DataKey::generate(), 10, None)
        .await
        .unwrap();
    let opened = futures_util::StreamExt::next(&mut wrong_key).await.unwrap();
    assert!(opened.is_err(), "and it does not open with another key");

    // An object stored by an upload that died before writing its row.
    let orphan = format!(
        "{}/{patient}/report/{}",
        app.facility_a,
        uuid::Uuid::new_v4()
    );
    let spool = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spool.path(), b"half an upload").unwrap();
    objects
        .store
        .put_file(Shelf::Documents, &orphan, spool.path(), "text/plain", &[])
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let young = kiorex_api::documents::sweep_orphans(
        &app.store,
        &objects,
        now - chrono::Duration::minutes(5),
        false,
    )
    .await
    .unwrap();
    assert!(
        young.orphans.is_empty(),
        "objects within the grace period are left alone"
    );
    let swept = kiorex_api::documents::sweep_orphans(
        &app.store,
        &objects,
        now + chrono::Duration::minutes(1),
        false,
    )
    .await
    .unwrap();
    assert_eq!(swept.orphans, vec![orphan]);
    assert_eq!(swept.removed, 1);
    let left: Vec<String> = objects
        .store
        .list(Shelf::Documents, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, vec![key], "the document's own object stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extracted_text_is_searchable_by_those_who_may_see_the_patient() {
    let (app, _) = documents_on(DocumentSite::default()).await;
    let patient = app.patient("Search", "Sofia", "1977-07-07").await;
    let letter = pdf("Referral for cholecystectomy after recurrent biliary colic");
    let created = upload(
        &app,
        User::Admin,
        &patient,
        "referral",
        "referral.pdf",
        letter,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let note = upload(
        &app,
        User::Admin,
        &patient,
        "notes",
        "notes.txt",
        b"Allergic to penicillin".to_vec(),
    )
    .await;
    assert_eq!(note.status, StatusCode::CREATED);
    let not_hers = app
        .get(User::NurseA, "/api/v1/search/documents?q=cholecystectomy")
        .await;
    assert!(
        not_hers.body.as_array().unwrap().is_empty(),
        "no hits outside the nurse's care: {}",
        not_hers.body
    );
    app.care_for(User::NurseA, &patient);
    let found = app
        .get(
            User::NurseA,
            "/api/v1/search/documents?q=cholecystectomy%20biliary",
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    let hits = found.body.as_array().unwrap();
    assert_eq!(hits.len(), 1, "{}", found.body);
    assert_eq!(hits[0]["id"], created.body["id"]);
    let by_patient = app
        .get(
            User::NurseA,
            &format!("/api/v1/search/documents?q=penicillin&patient={patient}"),
        )
        .await;
    assert_eq!(by_patient.body.as_array().unwrap().len(), 1);
    let elsewhere = app
        .get(User::DoctorB, "/api/v1/search/documents?q=cholecystectomy")
        .await;
    assert!(
        elsewhere.body.as_array().unwrap().is_empty(),
        "another facility's documents stay hidden"
    );
    let audited = app.count("SELECT count(*) AS n FROM audit_log WHERE action = 'search' AND resource_type = 'DocumentReference' AND actor = 'nurse.a'");
    assert_eq!(audited, 2);
}
