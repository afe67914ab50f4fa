use crate::{code, count_documents, upload};
use kiorex_objects::Shelf;
use kiorex_testkit::{DocumentSite, EICAR, User, documents_on};
use reqwest::StatusCode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malware_is_refused_quarantined_audited_and_kept_out_of_the_record() {
    let (app, objects) = documents_on(DocumentSite::default()).await;
    let patient = app.patient("Silva", "Ana", "1988-02-02").await;
    // The test signature hidden in a PDF, not just a bare EICAR file.
    let mut infected = crate::pdf("Referral");
    infected.extend_from_slice(EICAR.as_bytes());
    let refused = upload(
        &app,
        User::Admin,
        &patient,
        "referral",
        "referral.pdf",
        infected,
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(code(&refused.body), "KX-DOC-422");
    assert_eq!(count_documents(&app), 0, "nothing appears in the record");
    assert!(
        objects
            .store
            .list(Shelf::Documents, "")
            .await
            .unwrap()
            .is_empty()
    );
    let quarantined = objects.store.list(Shelf::Quarantine, "").await.unwrap();
    assert_eq!(
        quarantined.len(),
        1,
        "the file is kept for the security team"
    );
    assert!(quarantined[0].key.starts_with(&app.facility_a.to_string()));
    let audited = app.count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE action = 'document.quarantine' AND outcome = 'refused' AND patient_id = '{patient}' AND detail LIKE '%Kiorex.Test.EICAR%'"
    ));
    assert_eq!(audited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executable_named_pdf_is_refused_by_its_content() {
    let (app, objects) = documents_on(DocumentSite::default()).await;
    let patient = app.patient("Novak", "Petra", "1979-09-09").await;
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0".to_vec();
    elf.resize(4096, 0x90);
    let refused = upload(&app, User::Admin, &patient, "referral", "referral.pdf", elf).await;
    assert_eq!(
        refused.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        refused.body
    );
    assert_eq!(code(&refused.body), "KX-DOC-415");
    assert!(
        refused.body["title"]
            .as_str()
            .unwrap()
            .contains("PDF, PNG, JPEG, TIFF")
    );
    assert_eq!(count_documents(&app), 0);
    assert!(
        objects
            .store
            .list(Shelf::Documents, "")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_clamd_down_uploads_are_refused_as_retryable_and_nothing_is_stored() {
    let site = DocumentSite {
        // Nothing listens there.
        clamd: format!("127.0.0.1:{}", kiorex_testkit::free_port()),
        ..DocumentSite::default()
    };
    let (app, objects) = documents_on(site).await;
    let patient = app.patient("Kowalski", "Jan", "1966-06-06").await;
    let refused = upload(
        &app,
        User::Admin,
        &patient,
        "report",
        "report.txt",
        b"clean text".to_vec(),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert_eq!(code(&refused.body), "KX-DOC-503");
    assert_eq!(refused.header("retry-after"), Some("30"));
    assert_eq!(count_documents(&app), 0);
    assert!(
        objects
            .store
            .list(Shelf::Documents, "")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        objects
            .store
            .list(Shelf::Quarantine, "")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stopped_during_an_upload_gives_a_clear_error_and_no_row() {
    let ceph = tokio::task::spawn_blocking(kiorex_testkit::ceph)
        .await
        .unwrap();
    let gateway = tokio::task::spawn_blocking(|| kiorex_testkit::ceph().start_gateway())
        .await
        .unwrap()
        .expect("a second gateway");
    let site = DocumentSite {
        endpoint: gateway.endpoint(),
        ..DocumentSite::default()
    };
    let (app, objects) = documents_on(site).await;
    let patient = app.patient("Tanaka", "Yui", "1995-04-04").await;

    // The body arrives in two halves; the gateway dies between them.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(tokio_stream(receiver));
    let part = reqwest::multipart::Part::stream(body).file_name("notes.txt");
    let form = reqwest::multipart::Form::new()
        .text("category", "notes")
        .part("file", part);
    let request = app
        .client()
        .post(app.url(&format!("/api/v1/patients/{patient}/documents")))
        .bearer_auth(app.token(User::Admin))
        .multipart(form);
    let pending = tokio::spawn(request.send());
    sender
        .send(Ok(bytes::Bytes::from(vec![b'a'; 64 * 1024])))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gateway.stop();
    sender
        .send(Ok(bytes::Bytes::from(vec![b'b'; 64 * 1024])))
        .await
        .unwrap();
    drop(sender);
    let response = pending.await.unwrap().expect("an answer");
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "KX-OBJ-503");
    assert!(body["title"].as_str().unwrap().contains("not saved"));
    assert_eq!(count_documents(&app), 0, "no row without its object");
    // Through the shared gateway, the buckets hold nothing either.
    let store = kiorex_objects::ObjectStore::new(&settings_of(&objects, &ceph.endpoint())).unwrap();
    assert!(store.list(Shelf::Documents, "").await.unwrap().is_empty());
}

/// The settings of a test app's buckets, on `endpoint`.
pub(crate) fn settings_of(
    objects: &kiorex_objects::Objects,
    endpoint: &str,
) -> kiorex_objects::S3Settings {
    kiorex_objects::S3Settings {
        endpoint: endpoint.to_owned(),
        region: "default".into(),
        path_style: true,
        access_key: kiorex_testkit::ACCESS_KEY.into(),
        secret_key: kiorex_testkit::SECRET_KEY.into(),
        bucket: objects.store.bucket_name(Shelf::Documents),
        quarantine_bucket: objects.store.bucket_name(Shelf::Quarantine),
    }
}

fn tokio_stream<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_limit_is_refused_and_not_kept() {
    let site = DocumentSite {
        max_upload_bytes: 4096,
        ..DocumentSite::default()
    };
    let (app, objects) = documents_on(site).await;
    let patient = app.patient("Ivanova", "Olga", "1970-10-10").await;
    let refused = upload(
        &app,
        User::Admin,
        &patient,
        "report",
        "big.txt",
        vec![b'x'; 5000],
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        refused.body
    );
    assert_eq!(code(&refused.body), "KX-DOC-413");
    assert_eq!(count_documents(&app), 0);
    assert!(
        objects
            .store
            .list(Shelf::Documents, "")
            .await
            .unwrap()
            .is_empty()
    );
}
