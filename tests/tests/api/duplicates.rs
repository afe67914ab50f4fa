use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn registration(family: &str, given: &str, birth_date: &str, phone: &str) -> Value {
    json!({"family": family, "given": [given], "gender": "female", "birth_date": birth_date, "phone": phone})
}

async fn register(app: &TestApp, body: &Value) -> kiorex_testkit::Reply {
    app.send(
        app.client()
            .post(app.url("/api/v1/patients"))
            .bearer_auth(app.token(User::FrontDeskA))
            .json(body),
    )
    .await
}

/// Asks to retire `loser` into `survivor`.
async fn request_merge(
    app: &TestApp,
    user: User,
    loser: &str,
    survivor: &str,
) -> kiorex_testkit::Reply {
    app.post(
        user,
        &format!("/api/v1/patients/{loser}/merge"),
        &json!({"survivor_id": survivor}),
    )
    .await
}

/// Asks to undo a merge, as the front desk.
async fn request_undo(app: &TestApp, merge_id: &str) -> kiorex_testkit::Reply {
    app.post(
        User::FrontDeskA,
        &format!("/api/v1/merges/{merge_id}/undo"),
        &json!({}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_a_strong_duplicate_without_an_override() {
    let app = TestApp::spawn().await;
    let first = register(
        &app,
        &registration("Johansson", "Ingrid", "1984-09-12", "+46 70 123 45 67"),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(first.body["mrn"].as_str().unwrap().starts_with("FACA-"));
    let first_id = first.body["patient"]["id"].as_str().unwrap().to_owned();

    let again = register(
        &app,
        &registration("Johanson", "Ingrid", "1984-09-12", "0046-70-1234567"),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.body["code"], "KX-PAT-001");
    let candidate = &again.body["duplicates"][0];
    assert_eq!(candidate["patient_id"], json!(first_id));
    assert_eq!(candidate["strength"], "strong");
    assert!(candidate["score"].as_f64().unwrap() >= 0.88);
    assert!(
        candidate["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "same birth date")
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM resource WHERE resource_type = 'Patient'"),
        1,
        "nothing created"
    );

    let mut anyway = registration("Johanson", "Ingrid", "1984-09-12", "0046-70-1234567");
    anyway["override_reason"] = json!("twin sisters, confirmed with ID cards");
    let created = register(&app, &anyway).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        created.body["possible_duplicates"][0]["patient_id"],
        json!(first_id)
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM audit_log WHERE detail LIKE 'registered despite a strong match: twin sisters%'"), 1);

    let different = register(
        &app,
        &registration("Johansson", "Ingrid", "1950-01-01", "+1 555 0100"),
    )
    .await;
    assert_eq!(
        different.status,
        StatusCode::CREATED,
        "same name, other birth date and phone: {}",
        different.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_creates_go_on_the_review_list_and_merges_are_reversible() {
    let app = TestApp::spawn().await;
    let registered = register(
        &app,
        &registration("Kowalski", "Jan", "1966-03-03", "+48 601 000 111"),
    )
    .await;
    let survivor = registered.body["patient"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let partner = json!({"resourceType": "Patient", "name": [{"family": "Kowalsky", "given": ["Jan"]}], "gender": "female", "birthDate": "1966-03-03"});
    let created = app.post(User::Admin, "/fhir/Patient", &partner).await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "partners are not refused"
    );
    let loser = created.body["id"].as_str().unwrap().to_owned();
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "note"}, "subject": {"reference": format!("Patient/{loser}")}});
    let obs_id = app.post(User::Admin, "/fhir/Observation", &obs).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let review = app
        .send(
            app.client()
                .get(app.url("/api/v1/duplicates"))
                .bearer_auth(app.token(User::FrontDeskA)),
        )
        .await;
    assert_eq!(review.status, StatusCode::OK, "{}", review.body);
    assert_eq!(review.body[0]["patient_id"], json!(loser));
    assert_eq!(review.body[0]["candidate_id"], json!(survivor));

    let merge = request_merge(&app, User::FrontDeskA, &loser, &survivor).await;
    assert_eq!(merge.status, StatusCode::OK, "{}", merge.body);
    assert_eq!(merge.body["records_moved"], 1);
    let moved = app
        .get(User::Admin, &format!("/fhir/Observation/{obs_id}"))
        .await;
    assert_eq!(
        moved.body["subject"]["reference"],
        format!("Patient/{survivor}"),
        "references follow the survivor"
    );
    let retired = app
        .get(User::Admin, &format!("/fhir/Patient/{loser}"))
        .await;
    assert_eq!(retired.body["active"], false);
    assert_eq!(retired.body["link"][0]["type"], "replaced-by");
    let everything = app
        .get(
            User::Admin,
            &format!("/fhir/Patient/{survivor}/$everything"),
        )
        .await;
    assert_eq!(everything.body["entry"].as_array().unwrap().len(), 2);
    let review = app
        .send(
            app.client()
                .get(app.url("/api/v1/duplicates"))
                .bearer_auth(app.token(User::FrontDeskA)),
        )
        .await;
    assert!(
        review.body.as_array().unwrap().is_empty(),
        "the review item is closed by the merge"
    );
    let twice = request_merge(&app, User::FrontDeskA, &loser, &survivor).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);

    let merge_id = merge.body["merge_id"].as_str().unwrap();
    let undo = request_undo(&app, merge_id).await;
    assert_eq!(undo.status, StatusCode::OK, "{}", undo.body);
    let back = app
        .get(User::Admin, &format!("/fhir/Observation/{obs_id}"))
        .await;
    assert_eq!(
        back.body["subject"]["reference"],
        format!("Patient/{loser}")
    );
    assert_eq!(
        back.body["meta"]["versionId"], "3",
        "undo is a new version, history keeps the merge"
    );
    let restored = app
        .get(User::Admin, &format!("/fhir/Patient/{loser}"))
        .await;
    assert!(
        restored.body.get("link").is_none() && restored.body.get("active").is_none(),
        "{}",
        restored.body
    );
    let undo_again = request_undo(&app, merge_id).await;
    assert_eq!(undo_again.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nurses_cannot_merge() {
    let app = TestApp::spawn().await;
    let a = app.patient("Merge", "Guard", "1970-01-01").await;
    let b = app.patient("Merge", "Guard", "1970-01-01").await;
    let reply = request_merge(&app, User::NurseA, &a, &b).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}
