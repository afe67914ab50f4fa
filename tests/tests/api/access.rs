use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_of_facility_b_cannot_read_facility_a_patients() {
    let app = TestApp::spawn().await;
    let id = app.patient("Private", "Person", "1985-05-05").await;
    let read = app.get(User::DoctorB, &format!("/fhir/Patient/{id}")).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    assert_eq!(read.body["resourceType"], "OperationOutcome");
    assert!(
        !read.body.to_string().contains("Private"),
        "nothing of the record leaks"
    );
    let search = app.get(User::DoctorB, "/fhir/Patient?name=private").await;
    assert_eq!(search.status, StatusCode::OK);
    assert!(
        search.body["entry"].as_array().unwrap().is_empty(),
        "searches only see the caller's facilities"
    );
    let everything = app
        .get(User::DoctorB, &format!("/fhir/Patient/{id}/$everything"))
        .await;
    assert_eq!(everything.status, StatusCode::FORBIDDEN);
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{id}")}});
    let write = app
        .post(User::DoctorB, "/fhir/Observation", &observation)
        .await;
    assert_eq!(
        write.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another facility's patient is not visible: {}",
        write.body
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM resource WHERE resource_type = 'Observation'"),
        0
    );
    let denied = app.count(&format!("SELECT count(*) AS n FROM audit_log WHERE resource_id = '{id}' AND outcome = 'denied' AND actor = 'doctor.b'"));
    assert_eq!(
        denied, 2,
        "the refused read and the refused $everything are audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_actions() {
    let app = TestApp::spawn().await;
    let id = app.patient("Role", "Check", "1985-05-05").await;
    let med = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"text": "Amoxicillin"}, "subject": {"reference": format!("Patient/{id}")}});
    assert_eq!(
        app.post(User::NurseA, "/fhir/MedicationRequest", &med)
            .await
            .status,
        StatusCode::FORBIDDEN,
        "nurses do not prescribe"
    );
    assert_eq!(
        app.get(User::AuditorA, &format!("/fhir/Patient/{id}"))
            .await
            .status,
        StatusCode::FORBIDDEN,
        "auditors see the trail, not charts"
    );
    assert_eq!(
        app.post(User::Admin, "/fhir/MedicationRequest", &med)
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_no_data_and_forged_tokens_fail() {
    let app = TestApp::spawn().await;
    let id = app.patient("Token", "Check", "1985-05-05").await;
    let anonymous = app
        .send(app.client().get(app.url(&format!("/fhir/Patient/{id}"))))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.body["resourceType"], "OperationOutcome");
    let forged = format!("{}x", app.token(User::Admin));
    let reply = app
        .send(
            app.client()
                .get(app.url(&format!("/fhir/Patient/{id}")))
                .bearer_auth(forged),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_a_local_account() {
    let app = TestApp::spawn().await;
    let token = app
        .send(
            app.client()
                .post(app.url("/api/v1/auth/token"))
                .json(&json!({"username": "nurse.a", "password": kiorex_testkit_password()})),
        )
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.body);
    let bearer = token.body["access_token"].as_str().unwrap();
    let facilities = app
        .send(
            app.client()
                .get(app.url("/api/v1/facilities"))
                .bearer_auth(bearer),
        )
        .await;
    assert_eq!(
        facilities.body.as_array().unwrap().len(),
        1,
        "a nurse at A sees facility A only"
    );
    let wrong = app
        .send(
            app.client()
                .post(app.url("/api/v1/auth/token"))
                .json(&json!({"username": "nurse.a", "password": "wrong-password"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.header("content-type"),
        Some("application/problem+json")
    );
    assert!(wrong.body["request_id"].is_string());
    let unknown = app
        .send(
            app.client()
                .post(app.url("/api/v1/auth/token"))
                .json(&json!({"username": "nobody", "password": "x"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM audit_log WHERE action = 'sign-in' AND outcome = 'failure'"
        ),
        2
    );
}

fn kiorex_testkit_password() -> &'static str {
    "test-password-123"
}
