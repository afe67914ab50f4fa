use crate::{count_documents, download, upload};
use kiorex_api::documents::holds::rescan;
use kiorex_objects::Shelf;
use kiorex_testkit::{ClamAv, DocumentSite, EICAR, User, documents_on};
use reqwest::StatusCode;

/// With holding on and clamd down, uploads are held (202, nothing in the record); a rescan while
/// clamd is still down changes nothing; once clamd is started, the clean file joins the record
/// and the infected one stays quarantined, audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_held_while_clamd_is_down_are_decided_by_a_rescan_once_it_is_back() {
    // clamd's port: nothing listens there until the scanner is started below.
    let port = kiorex_testkit::free_port();
    let site = DocumentSite {
        clamd: format!("127.0.0.1:{port}"),
        hold_unscanned: true,
        ..DocumentSite::default()
    };
    let (app, objects) = documents_on(site).await;
    let patient = app.patient("Okafor", "Chidi", "1972-07-07").await;

    let letter = b"Discharge letter: home on day 3.".to_vec();
    let held = upload(
        &app,
        User::Admin,
        &patient,
        "discharge-letter",
        "letter.txt",
        letter.clone(),
    )
    .await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.body);
    assert_eq!(held.body["status"], "pending-scan");
    assert!(
        held.body["message"]
            .as_str()
            .unwrap()
            .contains("not part of the patient's record yet")
    );
    let status_url = held.body["status_url"].as_str().unwrap().to_owned();
    assert_eq!(held.header("location"), Some(status_url.as_str()));

    let mut infected = crate::pdf("Referral");
    infected.extend_from_slice(EICAR.as_bytes());
    let held_infected = upload(
        &app,
        User::Admin,
        &patient,
        "referral",
        "referral.pdf",
        infected,
    )
    .await;
    assert_eq!(
        held_infected.status,
        StatusCode::ACCEPTED,
        "{}",
        held_infected.body
    );

    // Held, not recorded: no row, no document object, two sealed files in quarantine.
    assert_eq!(count_documents(&app), 0);
    let listed = app
        .get(
            User::Admin,
            &format!("/api/v1/patients/{patient}/documents"),
        )
        .await;
    assert_eq!(listed.body, serde_json::json!([]));
    assert!(
        objects
            .store
            .list(Shelf::Documents, "")
            .await
            .unwrap()
            .is_empty()
    );
    let in_quarantine = objects
        .store
        .list(Shelf::Quarantine, "held/")
        .await
        .unwrap();
    assert_eq!(in_quarantine.len(), 2);
    let stored = objects
        .store
        .get_stored(Shelf::Quarantine, &in_quarantine[0].key)
        .await
        .unwrap();
    assert!(
        !stored.windows(letter.len()).any(|w| w == letter.as_slice()),
        "held files are sealed"
    );
    let status = app.get(User::Admin, &status_url).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.body["status"], "pending-scan");

    // The scanner is still down: the rescan leaves everything held and says so.
    let store = kiorex_store::Store::connect(&app.database_url, 2).unwrap();
    let early = rescan(&store, &objects, "test", |_| {}).await.unwrap();
    assert!(early.scanner_unavailable);
    assert!(early.decided.is_empty());
    assert_eq!(early.pending, 2);
    assert_eq!(count_documents(&app), 0);

    let _clamd = tokio::task::spawn_blocking(move || ClamAv::start_on(port))
        .await
        .unwrap()
        .expect("clamd on the held port");
    let done = rescan(&store, &objects, "test", |_| {}).await.unwrap();
    assert!(!done.scanner_unavailable);
    assert_eq!(done.pending, 0);
    let outcomes: Vec<&str> = done.decided.iter().map(|d| d.outcome).collect();
    assert_eq!(outcomes, ["accepted", "infected"], "{done:?}");

    // The clean file is now a document like any other, with its uploader as author.
    let document = done.decided[0].document.unwrap();
    assert_eq!(count_documents(&app), 1);
    let (code, _, body) = download(
        &app,
        User::Admin,
        &format!("/api/v1/documents/{document}/content"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, letter);
    let accepted = app.get(User::Admin, &status_url).await;
    assert_eq!(accepted.body["status"], "accepted");
    assert_eq!(accepted.body["document_id"], document.to_string());

    // The infected one stays quarantined, audited; the clean one's held copy is gone.
    let remaining = objects
        .store
        .list(Shelf::Quarantine, "held/")
        .await
        .unwrap();
    assert_eq!(remaining.len(), 1);
    let infected_status = app
        .get(
            User::Admin,
            held_infected.body["status_url"].as_str().unwrap(),
        )
        .await;
    assert_eq!(infected_status.body["status"], "infected");
    let audited = app.count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE action = 'document.quarantine' AND outcome = 'refused' AND patient_id = '{patient}' AND detail LIKE '%Kiorex.Test.EICAR%'"
    ));
    assert_eq!(audited, 1);

    // Decided once: a second rescan finds nothing to do.
    let again = rescan(&store, &objects, "test", |_| {}).await.unwrap();
    assert!(again.decided.is_empty());
    assert_eq!(count_documents(&app), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_status_is_only_shown_to_someone_who_may_see_the_patient() {
    let site = DocumentSite {
        clamd: format!("127.0.0.1:{}", kiorex_testkit::free_port()),
        hold_unscanned: true,
        ..DocumentSite::default()
    };
    let (app, _objects) = documents_on(site).await;
    let patient = app.patient("Haddad", "Rami", "1981-01-01").await;
    let held = upload(
        &app,
        User::Admin,
        &patient,
        "report",
        "report.txt",
        b"lab report".to_vec(),
    )
    .await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.body);
    let url = held.body["status_url"].as_str().unwrap();
    let other = app.get(User::DoctorB, url).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{}", other.body);
    let unknown = app
        .get(
            User::Admin,
            &format!("/api/v1/document-holds/{}", uuid::Uuid::new_v4()),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
