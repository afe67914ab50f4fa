use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_read_vread_update_delete_and_history() {
    let app = TestApp::spawn().await;
    let id = app.patient("Okafor", "Chidi", "1990-03-07").await;
    let path = format!("/fhir/Patient/{id}");

    let read = app.get(User::NurseA, &path).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.header("etag"), Some("W/\"1\""));
    assert_eq!(read.header("content-type"), Some("application/fhir+json"));
    assert_eq!(read.body["name"][0]["family"], "Okafor");
    assert!(
        read.body["identifier"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("FACA-"),
        "an MRN is assigned: {}",
        read.body
    );

    let mut changed = read.body.clone();
    changed["name"][0]["family"] = json!("Okafor-Eze");
    let updated = app.put(User::Admin, &path, &changed, Some("W/\"1\"")).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["meta"]["versionId"], "2");

    let stale = app.put(User::Admin, &path, &changed, Some("W/\"1\"")).await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert_eq!(stale.body["resourceType"], "OperationOutcome");

    let v1 = app.get(User::Admin, &format!("{path}/_history/1")).await;
    assert_eq!(v1.body["name"][0]["family"], "Okafor");
    let v2 = app.get(User::Admin, &format!("{path}/_history/2")).await;
    assert_eq!(v2.body["name"][0]["family"], "Okafor-Eze");

    assert_eq!(
        app.delete(User::Admin, &path).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(User::Admin, &path).await.status,
        StatusCode::NO_CONTENT,
        "delete is idempotent"
    );
    assert_eq!(app.get(User::Admin, &path).await.status, StatusCode::GONE);
    assert_eq!(
        app.get(User::Admin, &format!("{path}/_history/2"))
            .await
            .status,
        StatusCode::OK,
        "old versions stay readable"
    );

    let history = app.get(User::Admin, &format!("{path}/_history")).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    assert_eq!(history.body["type"], "history");
    let methods: Vec<&str> = history.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["DELETE", "PUT", "POST"], "newest first");

    let audited = app.count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE action = 'history' AND patient_id = '{id}'"
    ));
    assert_eq!(
        audited, 3,
        "each version shown in a history is audited against its patient"
    );

    let type_history = app.get(User::Admin, "/fhir/Patient/_history").await;
    assert_eq!(type_history.body["entry"].as_array().unwrap().len(), 3);
    let rows = app.count(&format!(
        "SELECT count(*) AS n FROM resource_version WHERE id = '{id}'"
    ));
    assert_eq!(rows, 3, "every write appended a version");
    let events = app.count(&format!(
        "SELECT count(*) AS n FROM outbox WHERE resource_id = '{id}'"
    ));
    assert_eq!(events, 3, "every write queued an outbox event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_create_returns_the_existing_match() {
    let app = TestApp::spawn().await;
    let body = json!({"resourceType": "Patient", "name": [{"family": "Lab", "given": ["Partner"]}],
                      "identifier": [{"system": "urn:lab:patient", "value": "L-77"}]});
    let send = || {
        app.send(
            app.client()
                .post(app.url("/fhir/Patient"))
                .bearer_auth(app.token(User::Admin))
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", "identifier=urn:lab:patient|L-77")
                .body(body.to_string()),
        )
    };
    let first = send().await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = send().await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(first.body["id"], second.body["id"]);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM resource WHERE resource_type = 'Patient'"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_updates_with_the_same_version_give_one_200_and_one_412() {
    let app = TestApp::spawn().await;
    let id = app.patient("Race", "Condition", "1970-01-01").await;
    let path = format!("/fhir/Patient/{id}");
    let current = app.get(User::Admin, &path).await.body;
    let mut a = current.clone();
    a["gender"] = json!("male");
    let mut b = current.clone();
    b["gender"] = json!("other");
    let (ra, rb) = tokio::join!(
        app.put(User::Admin, &path, &a, Some("W/\"1\"")),
        app.put(User::Admin, &path, &b, Some("W/\"1\""))
    );
    let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 412]);
    assert_eq!(
        app.get(User::Admin, &path).await.body["meta"]["versionId"],
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vital_signs_are_interpreted_with_default_ranges() {
    let app = TestApp::spawn().await;
    let patient = app.patient("Vital", "Signs", "1950-05-05").await;
    app.care_for(User::NurseA, &patient);
    let observation = |value: f64| {
        json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2026-11-01T08:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
    };
    for (value, expected) in [
        (72.0, "N"),
        (115.0, "H"),
        (48.0, "L"),
        (180.0, "HH"),
        (30.0, "LL"),
    ] {
        let reply = app
            .post(User::NurseA, "/fhir/Observation", &observation(value))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(
            reply.body["interpretation"][0]["coding"][0]["code"], expected,
            "heart rate {value}"
        );
        assert!(
            reply.body["referenceRange"][0]["text"]
                .as_str()
                .unwrap()
                .contains("default"),
            "defaults are marked as such"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_results_are_interpreted_against_the_laboratory_range() {
    let app = TestApp::spawn().await;
    let patient = app.patient("Lab", "Result", "1950-05-05").await;
    let potassium = |value: f64| {
        json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3", "display": "Potassium"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
        "referenceRange": [{"low": {"value": 3.5, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
                            "high": {"value": 5.1, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}]})
    };
    for (value, expected) in [(4.2, "N"), (5.9, "H"), (3.1, "L")] {
        let reply = app
            .post(User::Admin, "/fhir/Observation", &potassium(value))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(
            reply.body["interpretation"][0]["coding"][0]["code"], expected,
            "potassium {value}"
        );
        assert!(
            reply.body["referenceRange"][0].get("text").is_none(),
            "the laboratory's range is kept as sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_everything_returns_the_record() {
    let app = TestApp::spawn().await;
    let patient = app.patient("Every", "Thing", "1980-01-01").await;
    let other = app.patient("Someone", "Else", "1981-01-01").await;
    for p in [&patient, &patient, &other] {
        let condition = json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{p}")},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10", "display": "Essential hypertension"}]}});
        assert_eq!(
            app.post(User::Admin, "/fhir/Condition", &condition)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let all = app
        .get(User::Admin, &format!("/fhir/Patient/{patient}/$everything"))
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let types: Vec<&str> = all.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Patient", "Condition", "Condition"]);
}
