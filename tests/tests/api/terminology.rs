//! ICD-10-CM search: the bundled April 2026 list is loaded by the migrations, found by code
//! prefix or by words, with the loaded release named; bad input is a clear 400.

use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use serde_json::Value;

fn codes(body: &Value) -> Vec<&str> {
    body["concepts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icd10cm_is_searched_by_code_prefix_or_by_words() {
    let app = TestApp::spawn().await;
    let app = &app;
    let get = |q: &str| {
        let path = format!("/api/v1/terminology/icd-10-cm?q={q}");
        async move { app.get(User::NurseA, &path).await }
    };

    let by_code = get("e119").await;
    assert_eq!(by_code.status, StatusCode::OK, "{}", by_code.body);
    assert_eq!(by_code.body["version"], "April 2026");
    assert_eq!(by_code.body["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(codes(&by_code.body), ["E11.9"], "no dot, lower case");
    assert_eq!(by_code.body["concepts"][0]["billable"], true);

    let prefix = get("E11").await;
    let found = codes(&prefix.body);
    assert_eq!(found[0], "E11", "the heading first, then its codes");
    assert!(
        found.len() > 5 && found.iter().all(|c| c.starts_with("E11")),
        "{found:?}"
    );

    let words = get("diabetes%20type%202").await;
    let found = codes(&words.body);
    assert!(found.contains(&"E11.9"), "words in any order: {found:?}");
    assert!(
        words.body["concepts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["display"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("diabetes")),
        "{}",
        words.body
    );

    let nothing = get("zzzqqq").await;
    assert_eq!(nothing.status, StatusCode::OK);
    assert!(codes(&nothing.body).is_empty());

    let wildcard = get("%25%25").await;
    assert_eq!(
        wildcard.status,
        StatusCode::BAD_REQUEST,
        "{}",
        wildcard.body
    );
    assert_eq!(wildcard.body["code"], "KX-TERM-400");
    let missing = app.get(User::NurseA, "/api/v1/terminology/icd-10-cm").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);
    assert_eq!(missing.body["code"], "KX-TERM-400");

    let anonymous = app
        .send(
            app.client()
                .get(app.url("/api/v1/terminology/icd-10-cm?q=E11")),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let loaded = app.count(
        "SELECT count(*) AS n FROM code_system WHERE id = 'icd-10-cm' AND version = 'April 2026'",
    );
    assert_eq!(loaded, 1, "the loaded source is recorded");
}
