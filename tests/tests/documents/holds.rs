use crate::cli::documents_env;
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
    // FHIR clients get the same hold, as an informational OperationOutcome.
    let posted = serde_json::json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": format!("Patient/{patient}")},
        "category": [{"coding": [{"system": "urn:kiorex:document-category", "code": "report"}]}],
        "content": [{"attachment": {"contentType": "text/plain", "title": "report.txt",
            "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"second report")}}]
    });
    let fhir = app
        .post(User::Admin, "/fhir/DocumentReference", &posted)
        .await;
    assert_eq!(fhir.status, StatusCode::ACCEPTED, "{}", fhir.body);
    assert_eq!(fhir.body["resourceType"], "OperationOutcome");
    assert_eq!(fhir.body["issue"][0]["severity"], "information");
    assert!(
        fhir.header("location")
            .unwrap()
            .starts_with("/api/v1/document-holds/")
    );
    assert_eq!(crate::count_documents(&app), 0);
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

/// `kiorex objects rescan` as a timer runs it: JSON, exit status 3 while clamd is still down,
/// then the held file joins the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rescan_command_reports_in_json_and_exits_3_while_clamd_is_down() {
    let dead = format!("127.0.0.1:{}", kiorex_testkit::free_port());
    let site = DocumentSite {
        clamd: dead.clone(),
        hold_unscanned: true,
        ..DocumentSite::default()
    };
    let keyring = site.keyring.clone();
    let (app, objects) = documents_on(site).await;
    let patient = app.patient("Moreau", "Louis", "1958-08-08").await;
    let held = upload(
        &app,
        User::Admin,
        &patient,
        "report",
        "report.txt",
        b"ward report".to_vec(),
    )
    .await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.body);

    let cli = kiorex_testkit::Site::unmigrated(app.database_url.clone());
    std::fs::write(cli.dir.path().join("kek"), &keyring).unwrap();
    std::fs::set_permissions(
        cli.dir.path().join("kek"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let settings = crate::failures::settings_of(&objects, &kiorex_testkit::ceph().endpoint());
    let env = documents_env(&cli, &settings);
    let cli = std::sync::Arc::new(cli);
    let (cli_for_runs, env_for_runs) = (cli.clone(), env.clone());
    let run = move |clamd: String| {
        let (cli, env) = (cli_for_runs.clone(), env_for_runs.clone());
        tokio::task::spawn_blocking(move || {
            let output = cli
                .command(&["objects", "rescan", "--output", "json"])
                .envs(env)
                .env("KIOREX_SCAN__CLAMD", clamd)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let report: serde_json::Value = serde_json::from_str(stdout.trim())
                .unwrap_or_else(|_| panic!("{stdout} {}", String::from_utf8_lossy(&output.stderr)));
            (output.status.code(), report)
        })
    };
    let configtest = {
        let output = cli
            .command(&["configtest", "--output", "json"])
            .envs(env.clone())
            .env("KIOREX_SCAN__CLAMD", &dead)
            .env("KIOREX_SCAN__HOLD_WHEN_UNAVAILABLE", "true")
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let held_check = configtest["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "scan.held_uploads")
        .cloned()
        .unwrap_or_else(|| panic!("{configtest}"));
    assert!(
        held_check["message"]
            .as_str()
            .unwrap()
            .starts_with("1 held upload(s) wait for a scan"),
        "{held_check}"
    );
    let (code, report) = run(dead).await.unwrap();
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["scanner_unavailable"], true);
    assert_eq!(report["pending"], 1);

    let (code, report) = run(kiorex_testkit::clamav().address()).await.unwrap();
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["decided"][0]["outcome"], "accepted", "{report}");
    assert_eq!(report["pending"], 0);
    assert_eq!(count_documents(&app), 1);
}
