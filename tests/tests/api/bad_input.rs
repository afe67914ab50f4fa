//! Bad input never gives a 500 and never changes data.

use kiorex_testkit::{Reply, TestApp, User};
use reqwest::StatusCode;
use serde_json::json;

fn records(app: &TestApp) -> i64 {
    app.count("SELECT count(*) AS n FROM resource_version")
}

fn expression(reply: &Reply) -> String {
    reply.body["issue"][0]["expression"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn raw_post(app: &TestApp, path: &str, body: &str) -> Reply {
    app.send(
        app.client()
            .post(app.url(path))
            .bearer_auth(app.token(User::Admin))
            .header("content-type", "application/fhir+json")
            .body(body.to_owned()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_invalid_resources_are_refused_with_the_field_named() {
    let app = TestApp::spawn().await;
    let patient = app.patient("Valid", "Patient", "1970-01-01").await;
    let before = records(&app);

    let malformed = raw_post(&app, "/fhir/Patient", "{\"resourceType\": \"Patient\", ").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["resourceType"], "OperationOutcome");
    assert!(
        malformed.body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("request"),
        "names the request id"
    );

    let cases = [
        (
            json!({"resourceType": "Patient", "name": [{"family": "X"}], "birthDate": 19700101}),
            "Patient.birthDate",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"family": "X"}], "gender": "robot"}),
            "Patient.gender",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"family": "X"}], "birthDate": "1970-02-30"}),
            "Patient.birthDate",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"family": "X"}], "shoeSize": 42}),
            "Patient.shoeSize",
        ),
        (
            json!({"resourceType": "Patient", "gender": "male"}),
            "Patient.name",
        ),
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
            "Observation.subject",
        ),
    ];
    for (body, field) in cases {
        let path = format!("/fhir/{}", body["resourceType"].as_str().unwrap());
        let reply = app.post(User::Admin, &path, &body).await;
        assert!(reply.status.is_client_error(), "{body}: {}", reply.status);
        assert_eq!(expression(&reply), field, "{body}: {}", reply.body);
    }

    let unknown_code = json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{patient}")},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "not-a-code"}]}});
    let reply = app
        .post(User::Admin, "/fhir/Condition", &unknown_code)
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(expression(&reply), "Condition.code.coding[0].code");

    let wrong_unit = json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "valueQuantity": {"value": 98.6, "system": "http://unitsofmeasure.org", "code": "[degF]"}});
    assert_eq!(
        expression(
            &app.post(User::Admin, "/fhir/Observation", &wrong_unit)
                .await
        ),
        "Observation.valueQuantity.code"
    );

    let missing = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/00000000-0000-4000-8000-000000000000"}});
    let reply = app.post(User::Admin, "/fhir/Observation", &missing).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(expression(&reply), "Observation.subject");

    let wrong_type = app
        .post(
            User::Admin,
            "/fhir/Observation",
            &json!({"resourceType": "Patient", "name": [{"family": "X"}]}),
        )
        .await;
    assert_eq!(expression(&wrong_type), "resourceType");

    assert_eq!(records(&app), before, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_searches_and_addresses_are_clear_errors() {
    let app = TestApp::spawn().await;
    for (query, status) in [
        ("/fhir/Patient?nmae=smith", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/fhir/Patient?birthdate=last-tuesday",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/fhir/Patient?_count=100000",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/fhir/Patient?_sort=shoeSize",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/fhir/Observation?patient=not-an-id",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/fhir/Spaceship?name=x", StatusCode::NOT_FOUND),
        ("/fhir/Patient/not-a-uuid", StatusCode::NOT_FOUND),
        (
            "/fhir/Patient/00000000-0000-4000-8000-000000000000",
            StatusCode::NOT_FOUND,
        ),
        (
            "/fhir/Patient/00000000-0000-4000-8000-000000000000/_history/abc",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let reply = app.get(User::Admin, query).await;
        assert_eq!(reply.status, status, "{query}: {}", reply.body);
        assert_eq!(reply.body["resourceType"], "OperationOutcome", "{query}");
    }
    let unknown_path = app.get(User::Admin, "/api/v1/nothing-here").await;
    assert_eq!(unknown_path.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown_path.header("content-type"),
        Some("application/problem+json")
    );
    let bad_if_match = app
        .put(
            User::Admin,
            "/fhir/Patient/00000000-0000-4000-8000-000000000000",
            &json!({"resourceType": "Patient", "name": [{"family": "X"}]}),
            Some("yesterday"),
        )
        .await;
    assert_eq!(bad_if_match.status, StatusCode::BAD_REQUEST);
}

/// Announces a 2 MB body (over the test limit of 1 MB), sends only its first bytes, and reads
/// the answer: the server must refuse from the headers alone, before reading the body.
fn announce_large_body(app: &TestApp, path: &str, content_type: &str) -> String {
    use std::io::{Read, Write};
    let address = app.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{{\"resourceType\": \"Patient\"",
        app.token(User::Admin),
        2 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
        if String::from_utf8_lossy(&answer).contains("\r\n\r\n{") && answer.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_from_the_headers_before_anything_is_written() {
    let app = TestApp::spawn().await;
    let before = records(&app);
    let fhir = tokio::task::block_in_place(|| {
        announce_large_body(&app, "/fhir/Patient", "application/fhir+json")
    });
    assert!(fhir.starts_with("HTTP/1.1 413"), "{fhir}");
    assert!(
        fhir.contains("OperationOutcome") && fhir.contains("too-costly"),
        "{fhir}"
    );
    let rest = tokio::task::block_in_place(|| {
        announce_large_body(&app, "/api/v1/patients", "application/json")
    });
    assert!(rest.starts_with("HTTP/1.1 413"), "{rest}");
    assert!(rest.contains("application/problem+json"), "{rest}");
    assert_eq!(records(&app), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_errors_are_problem_documents_naming_the_field() {
    let app = TestApp::spawn().await;
    let post = |body: serde_json::Value| {
        app.send(
            app.client()
                .post(app.url("/api/v1/patients"))
                .bearer_auth(app.token(User::FrontDeskA))
                .json(&body),
        )
    };
    let wrong_type =
        post(json!({"family": "A", "given": ["B"], "gender": "female", "birth_date": 1990})).await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        wrong_type.header("content-type"),
        Some("application/problem+json")
    );
    assert!(
        wrong_type.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("birth_date"),
        "{}",
        wrong_type.body
    );
    assert!(
        wrong_type.body["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert_eq!(
        wrong_type.header("x-request-id"),
        wrong_type.body["request_id"].as_str()
    );
    let unknown_field = post(json!({"family": "A", "given": ["B"], "gender": "female", "birth_date": "1990-01-01", "shoe": 1})).await;
    assert_eq!(unknown_field.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_gender =
        post(json!({"family": "A", "given": ["B"], "gender": "robot", "birth_date": "1990-01-01"}))
            .await;
    assert_eq!(bad_gender.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_gender.body["errors"][0]["field"], "Patient.gender");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM resource WHERE resource_type = 'Patient'"),
        0
    );
}
