use crate::{code, download, upload};
use kiorex_testkit::{DocumentSite, User, documents_on};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_access_to_the_patient_can_neither_list_read_nor_write_documents() {
    let (app, _) = documents_on(DocumentSite::default()).await;
    let patient = app.patient("Confidential", "Claire", "1983-08-08").await;
    let created = upload(
        &app,
        User::Admin,
        &patient,
        "consent",
        "consent.txt",
        b"Claire's consent".to_vec(),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap();

    for user in [User::DoctorB, User::AuditorA] {
        let list = app
            .get(user, &format!("/api/v1/patients/{patient}/documents"))
            .await;
        assert_eq!(list.status, StatusCode::FORBIDDEN, "{user:?} lists");
        assert_eq!(code(&list.body), "KX-ACC-001");
        let described = app.get(user, &format!("/api/v1/documents/{id}")).await;
        assert_eq!(
            described.status,
            StatusCode::FORBIDDEN,
            "{user:?} reads metadata"
        );
        assert!(
            !described.body.to_string().contains("consent.txt"),
            "nothing leaks"
        );
        let (status, _, body) =
            download(&app, user, &format!("/api/v1/documents/{id}/content"), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{user:?} downloads");
        assert!(!String::from_utf8_lossy(&body).contains("Claire"));
        let write = upload(&app, user, &patient, "consent", "x.txt", b"forged".to_vec()).await;
        assert_eq!(write.status, StatusCode::FORBIDDEN, "{user:?} uploads");
        let delete = app.delete(user, &format!("/api/v1/documents/{id}")).await;
        assert_eq!(delete.status, StatusCode::FORBIDDEN, "{user:?} deletes");
    }
    assert_eq!(crate::count_documents(&app), 1);
    let denied = app.count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE patient_id = '{patient}' AND outcome = 'denied' AND actor IN ('doctor.b', 'auditor.a')"
    ));
    assert_eq!(denied, 10, "every refused attempt is audited");
    // A nurse of the patient's facility: not without a care relationship (documents are
    // clinical records); then she may read but not change.
    let outside = app
        .get(
            User::NurseA,
            &format!("/api/v1/patients/{patient}/documents"),
        )
        .await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
    assert_eq!(code(&outside.body), "KX-ACC-002");
    app.care_for(User::NurseA, &patient);
    let nurse = app
        .get(
            User::NurseA,
            &format!("/api/v1/patients/{patient}/documents"),
        )
        .await;
    assert_eq!(nurse.status, StatusCode::OK);
    let nurse_write = upload(
        &app,
        User::NurseA,
        &patient,
        "consent",
        "x.txt",
        b"note".to_vec(),
    )
    .await;
    assert_eq!(nurse_write.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let (app, _) = documents_on(DocumentSite::default()).await;
    let patient = app.patient("Form", "Filler", "1991-01-01").await;
    let bad_category = upload(
        &app,
        User::Admin,
        &patient,
        "../../etc",
        "a.txt",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(bad_category.status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&bad_category.body), "KX-DOC-400");
    let no_file = app
        .send(
            app.client()
                .post(app.url(&format!("/api/v1/patients/{patient}/documents")))
                .bearer_auth(app.token(User::Admin))
                .multipart(reqwest::multipart::Form::new().text("category", "consent")),
        )
        .await;
    assert_eq!(no_file.status, StatusCode::BAD_REQUEST);
    assert!(no_file.body["title"].as_str().unwrap().contains("no file"));
    let not_a_form = app
        .send(
            app.client()
                .post(app.url(&format!("/api/v1/patients/{patient}/documents")))
                .bearer_auth(app.token(User::Admin))
                .body("just bytes"),
        )
        .await;
    assert_eq!(
        not_a_form.status,
        StatusCode::BAD_REQUEST,
        "{}",
        not_a_form.body
    );
    assert_eq!(
        not_a_form.headers["content-type"],
        "application/problem+json"
    );
    let unknown = app
        .get(
            User::Admin,
            &format!("/api/v1/patients/{}/documents", uuid::Uuid::new_v4()),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let empty = upload(
        &app,
        User::Admin,
        &patient,
        "consent",
        "empty.txt",
        Vec::new(),
    )
    .await;
    assert_eq!(empty.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}
