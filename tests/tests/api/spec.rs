//! The published descriptions of the API tell the truth and do not drift.

use fhir_model::r4b::resources::CapabilityStatement;
use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_statement_lists_what_the_server_does() {
    let app = TestApp::spawn().await;
    let reply = app.send(app.client().get(app.url("/fhir/metadata"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let _: CapabilityStatement =
        serde_json::from_value(reply.body.clone()).expect("a valid R4 CapabilityStatement");
    assert_eq!(reply.body["fhirVersion"], "4.0.1");
    let resources = reply.body["rest"][0]["resource"].as_array().unwrap();
    // Every advertised search parameter is accepted by the server.
    for resource in resources {
        let kind = resource["type"].as_str().unwrap();
        for param in resource["searchParam"].as_array().unwrap() {
            let name = param["name"].as_str().unwrap();
            let value = match param["type"].as_str().unwrap() {
                "date" => "ge2000-01-01".to_owned(),
                "reference" | "token" if name == "_id" || param["type"] == "reference" => {
                    "00000000-0000-4000-8000-000000000000".to_owned()
                }
                _ => "x".to_owned(),
            };
            let reply = app
                .get(User::Admin, &format!("/fhir/{kind}?{name}={value}"))
                .await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{kind}?{name}: {}",
                reply.body
            );
        }
    }
}

#[test]
fn openapi_document_matches_docs() {
    let generated = serde_json::to_string_pretty(&kiorex_api::openapi::document()).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("KIOREX_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run `KIOREX_UPDATE_SNAPSHOTS=1 cargo test -p kiorex-e2e --test api spec` and commit it"
    );
}
