use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn post_entry(full_url: &str, resource: Value) -> Value {
    let kind = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": kind}})
}

fn observation(subject: &str, value: Value) -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": {"reference": subject}, "valueQuantity": value})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_resolves_urn_references_and_writes_everything() {
    let app = TestApp::spawn().await;
    let bundle = transaction(vec![
        // Listed before the patient it refers to: the server orders the work itself.
        post_entry(
            "urn:uuid:obs-1",
            observation(
                "urn:uuid:pat-1",
                json!({"value": 70, "system": "http://unitsofmeasure.org", "code": "/min"}),
            ),
        ),
        post_entry(
            "urn:uuid:pat-1",
            json!({"resourceType": "Patient", "name": [{"family": "Bundle", "given": ["Tx"]}]}),
        ),
    ]);
    let reply = app.post(User::Admin, "/fhir", &bundle).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["type"], "transaction-response");
    let locations: Vec<&str> = reply.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["location"].as_str().unwrap())
        .collect();
    assert!(
        locations[0].starts_with("Observation/") && locations[1].starts_with("Patient/"),
        "responses in request order: {locations:?}"
    );
    let patient_id = locations[1].split('/').nth(1).unwrap();
    let obs = app
        .get(
            User::Admin,
            &format!("/fhir/{}", locations[0].rsplitn(3, '/').nth(2).unwrap()),
        )
        .await;
    assert_eq!(
        obs.body["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_with_one_bad_entry_writes_nothing() {
    let app = TestApp::spawn().await;
    let before = app.count("SELECT count(*) AS n FROM resource_version");
    let outbox = app.count("SELECT count(*) AS n FROM outbox");
    let bundle = transaction(vec![
        post_entry(
            "urn:uuid:pat-1",
            json!({"resourceType": "Patient", "name": [{"family": "Atomic", "given": ["All"]}]}),
        ),
        post_entry(
            "urn:uuid:obs-1",
            observation(
                "urn:uuid:pat-1",
                json!({"value": 70, "system": "http://unitsofmeasure.org", "code": "/min"}),
            ),
        ),
        post_entry(
            "urn:uuid:obs-2",
            observation(
                "urn:uuid:pat-1",
                json!({"value": 70, "system": "http://unitsofmeasure.org", "code": "kg"}),
            ),
        ),
    ]);
    let reply = app.post(User::Admin, "/fhir", &bundle).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(
        reply.body["issue"][0]["expression"][0],
        "Bundle.entry[2].resource.Observation.valueQuantity.code"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM resource_version"),
        before,
        "no version written"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM outbox"),
        outbox,
        "no event queued"
    );
    let malformed = app.post(User::Admin, "/fhir", &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "birthDate": "soon"}, "request": {"method": "POST", "url": "Patient"}}]})).await;
    assert_eq!(
        malformed.body["issue"][0]["expression"][0],
        "Bundle.entry[0].resource.Patient.birthDate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_entry_on_its_own() {
    let app = TestApp::spawn().await;
    let existing = app.patient("Batch", "Read", "1990-01-01").await;
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Batch", "given": ["Good"]}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "robot"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": format!("Patient/{existing}")}},
        {"request": {"method": "DELETE", "url": format!("Patient/{existing}")}}
    ]});
    let reply = app.post(User::Admin, "/fhir", &bundle).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["type"], "batch-response");
    let statuses: Vec<&str> = reply.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "422 Unprocessable Entity",
            "200 OK",
            "204 No Content"
        ]
    );
    assert_eq!(
        reply.body["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(reply.body["entry"][2]["resource"]["id"], json!(existing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_updates_with_stale_versions_roll_back() {
    let app = TestApp::spawn().await;
    let id = app.patient("Stale", "Version", "1990-01-01").await;
    let current = app
        .get(User::Admin, &format!("/fhir/Patient/{id}"))
        .await
        .body;
    let bundle = transaction(vec![
        post_entry(
            "urn:uuid:p2",
            json!({"resourceType": "Patient", "name": [{"family": "New", "given": ["One"]}]}),
        ),
        json!({"resource": current, "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"7\""}}),
    ]);
    let reply = app.post(User::Admin, "/fhir", &bundle).await;
    assert_eq!(
        reply.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        reply.body
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM resource WHERE resource_type = 'Patient'"),
        1
    );
}
