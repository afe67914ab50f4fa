use kiorex_domain::audit::ChainBreak;
use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;

fn verify(app: &TestApp) -> kiorex_store::audit::Verification {
    let mut conn = kiorex_store::connect_once(&app.database_url).unwrap();
    kiorex_store::audit::verify(&mut conn, |_| {}).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_patient_read_and_search_hit_is_audited_and_the_chain_verifies() {
    let app = TestApp::spawn().await;
    let id = app.patient("Audited", "Person", "1970-01-01").await;
    assert_eq!(
        app.get(User::NurseA, &format!("/fhir/Patient/{id}"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(User::NurseA, "/fhir/Patient?name=audited")
            .await
            .status,
        StatusCode::OK
    );
    let by_nurse = |action: &str| {
        app.count(&format!("SELECT count(*) AS n FROM audit_log WHERE patient_id = '{id}' AND actor = 'nurse.a' AND action = '{action}'"))
    };
    assert_eq!(by_nurse("read"), 1);
    assert_eq!(by_nurse("search"), 1);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE patient_id = '{id}' AND action = 'create'"
        )),
        1
    );
    let verification = verify(&app);
    assert_eq!(verification.first_break, None);
    assert!(
        verification.entries >= 5,
        "facility setup, users, create, read, search"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_entry_is_caught() {
    let app = TestApp::spawn().await;
    let id = app.patient("Tamper", "Target", "1970-01-01").await;
    app.get(User::NurseA, &format!("/fhir/Patient/{id}")).await;
    app.get(User::NurseA, &format!("/fhir/Patient/{id}")).await;
    let refused = app.try_sql("UPDATE audit_log SET actor = 'someone.else' WHERE action = 'read'");
    assert!(
        refused.is_err_and(|e| e.contains("KX-AUD-001")),
        "the append-only trigger refuses changes"
    );
    // A superuser can get around the trigger; the chain still tells.
    app.sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update");
    let seq = app.count("SELECT min(seq) AS n FROM audit_log WHERE action = 'read'");
    app.sql(&format!(
        "UPDATE audit_log SET actor = 'someone.else' WHERE seq = {seq}"
    ));
    assert_eq!(verify(&app).first_break, Some(ChainBreak::Altered { seq }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_entry_is_caught() {
    let app = TestApp::spawn().await;
    let id = app.patient("Delete", "Trail", "1970-01-01").await;
    app.get(User::NurseA, &format!("/fhir/Patient/{id}")).await;
    app.get(User::NurseA, &format!("/fhir/Patient/{id}")).await;
    app.sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update");
    let seq = app.count("SELECT min(seq) AS n FROM audit_log WHERE action = 'read'");
    app.sql(&format!("DELETE FROM audit_log WHERE seq = {seq}"));
    assert_eq!(
        verify(&app).first_break,
        Some(ChainBreak::Gap {
            after: seq - 1,
            next: seq + 1
        })
    );
}
