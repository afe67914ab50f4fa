//! Front-desk patient search through the API against real PostgreSQL (the embedded engine):
//! the right patient in the top three for fragments, reversed order, a typo, birth dates as
//! people type them, an MRN and a phone number; nothing from facilities the caller cannot see.

use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn register(
    app: &TestApp,
    given: &str,
    family: &str,
    birth_date: &str,
    phone: Option<&str>,
) -> (String, String) {
    let reply = app
        .post(
            User::Admin,
            "/api/v1/patients",
            &json!({"family": family, "given": [given], "gender": "female", "birth_date": birth_date, "phone": phone}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (
        reply.body["patient"]["id"].as_str().unwrap().to_owned(),
        reply.body["mrn"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn search(app: &TestApp, user: User, q: &str) -> Vec<Value> {
    let reply = app
        .send(
            app.client()
                .get(app.url("/api/v1/search/patients"))
                .query(&[("q", q)])
                .bearer_auth(app.token(user)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{q}: {}", reply.body);
    reply.body.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_patient_is_in_the_top_three_however_the_front_desk_types_it() {
    let app = TestApp::spawn().await;
    let (target, mrn) = register(
        &app,
        "Ngozi",
        "Okafor",
        "1980-03-12",
        Some("+44 20 7946 0958"),
    )
    .await;
    for (given, family, born) in [
        ("Ngozi", "Okonkwo", "1979-01-01"),
        ("Nkechi", "Okafor", "1985-06-06"),
        ("Obinna", "Okafor", "1980-03-12"),
        ("Grace", "Okoro", "1990-02-02"),
        ("Ngozika", "Adeyemi", "1980-12-03"),
        ("John", "Smith", "1980-03-12"),
        ("Oksana", "Fedorova", "1981-04-04"),
    ] {
        register(&app, given, family, born, None).await;
    }
    assert!(!mrn.is_empty(), "registration assigns an MRN");
    let queries = [
        "ngo oka",
        "Okafor Ngozi",
        "Ngozi Okafr",
        "Ngoxi Okafor",
        "12/03/1980",
        "1980-03-12",
        "okafor 12/03/1980",
        mrn.as_str(),
        &mrn.to_lowercase(),
        "+44 20 7946 0958",
    ];
    for q in queries {
        let hits = search(&app, User::FrontDeskA, q).await;
        let rank = hits.iter().position(|h| h["id"] == target.as_str());
        assert!(
            rank.is_some_and(|r| r < 3),
            "{q:?}: the patient is at {rank:?} in {:?}",
            hits.iter()
                .map(|h| h["name"].as_str().unwrap_or_default())
                .collect::<Vec<_>>()
        );
    }
    let top = &search(&app, User::FrontDeskA, "okafor ngozi").await[0];
    assert_eq!(top["id"], target.as_str());
    assert_eq!(top["mrn"], mrn.as_str());
    assert_eq!(top["birth_date"], "1980-03-12");
    let dated = search(&app, User::FrontDeskA, "12/03/1980").await;
    assert_eq!(
        dated.len(),
        3,
        "a birth date alone finds exactly the patients born that day"
    );
    assert!(search(&app, User::FrontDeskA, "zzzzqx").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patients_the_caller_may_not_see_are_never_found_and_hits_are_audited() {
    let app = TestApp::spawn().await;
    let (id, _) = register(&app, "Private", "Person", "1985-05-05", None).await;
    assert!(
        search(&app, User::DoctorB, "private person")
            .await
            .is_empty(),
        "another facility"
    );
    assert!(
        search(&app, User::AuditorA, "private person")
            .await
            .is_empty(),
        "no patient:read"
    );
    let hits = search(&app, User::NurseA, "person priv").await;
    assert_eq!(hits.len(), 1);
    let audited = app.count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE action = 'search' AND actor = 'nurse.a' AND resource_id = '{id}'"
    ));
    assert_eq!(audited, 1, "the hit list is audited like a read");
    let empty = app
        .send(
            app.client()
                .get(app.url("/api/v1/search/patients?q=%20"))
                .bearer_auth(app.token(User::NurseA)),
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_eq!(empty.body["code"], "KX-SRCH-400");
}
