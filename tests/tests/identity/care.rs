//! Care relationships, break-the-glass with its review queue, and audit review.

use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use serde_json::json;

async fn heart_rate(app: &TestApp, patient: &str) -> String {
    let reply = app
        .post(User::Admin, "/fhir/Observation", &json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "valueQuantity": {"value": 80, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaking_the_glass_opens_one_patient_for_a_while_and_is_reviewed() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (
        app.patient("Glass", "Alice", "1961-01-01").await,
        app.patient("Glass", "Bob", "1962-02-02").await,
    );
    let (obs_alice, obs_bob) = (heart_rate(&app, &alice).await, heart_rate(&app, &bob).await);
    // Demographics identify the patient; the clinical record needs a care relationship.
    assert_eq!(
        app.get(User::NurseA, &format!("/fhir/Patient/{alice}"))
            .await
            .status,
        StatusCode::OK
    );
    let refused = app
        .get(User::NurseA, &format!("/fhir/Observation/{obs_alice}"))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("KX-ACC-002"),
        "{}",
        refused.body
    );
    let chart = app
        .get(User::NurseA, &format!("/fhir/Patient/{alice}/$everything"))
        .await;
    assert_eq!(chart.status, StatusCode::FORBIDDEN);
    let search = app
        .get(User::NurseA, &format!("/fhir/Observation?patient={alice}"))
        .await;
    assert_eq!(
        search.body["total"].as_u64().unwrap_or(0) as usize,
        0,
        "no hits outside care: {}",
        search.body
    );
    assert_eq!(search.body["entry"].as_array().map_or(0, Vec::len), 0);
    let history = app
        .get(
            User::NurseA,
            &format!("/fhir/Observation/{obs_alice}/_history"),
        )
        .await;
    assert_eq!(
        history.body["entry"].as_array().map_or(0, Vec::len),
        0,
        "no versions outside care: {}",
        history.body
    );

    let glass = |patient: &str, reason: &str| {
        let path = format!("/api/v1/patients/{patient}/break-glass");
        let body = json!({"reason": reason});
        let app = &app;
        async move {
            app.send(
                app.client()
                    .post(app.url(&path))
                    .bearer_auth(app.token(User::NurseA))
                    .json(&body),
            )
            .await
        }
    };
    assert_eq!(
        glass(&alice, "need").await.status,
        StatusCode::BAD_REQUEST,
        "a reason is required"
    );
    let granted = glass(
        &alice,
        "collapsed in the corridor, her ward nurse is in theatre",
    )
    .await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.body);
    assert_eq!(
        app.get(User::NurseA, &format!("/fhir/Observation/{obs_alice}"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(User::NurseA, &format!("/fhir/Patient/{alice}/$everything"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(User::NurseA, &format!("/fhir/Observation/{obs_bob}"))
            .await
            .status,
        StatusCode::FORBIDDEN,
        "exactly one patient"
    );
    // Front desk cannot break the glass: it opens the care rule, not a role's limits.
    let desk = app
        .send(
            app.client()
                .post(app.url(&format!("/api/v1/patients/{bob}/break-glass")))
                .bearer_auth(app.token(User::FrontDeskA))
                .json(&json!({"reason": "curious about the results"})),
        )
        .await;
    assert_eq!(desk.status, StatusCode::FORBIDDEN);

    // The privacy officer's queue.
    let queue = app
        .get(User::AuditorA, "/api/v1/break-glass?status=pending")
        .await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    let items = queue.body.as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["username"], "nurse.a");
    assert!(items[0]["reason"].as_str().unwrap().contains("corridor"));
    assert_eq!(
        app.get(User::NurseA, "/api/v1/break-glass").await.status,
        StatusCode::FORBIDDEN
    );
    let id = items[0]["id"].as_str().unwrap();
    let reviewed = app
        .send(
            app.client()
                .post(app.url(&format!("/api/v1/break-glass/{id}/review")))
                .bearer_auth(app.token(User::AuditorA))
                .json(&json!({"decision": "approve", "note": "confirmed with ward"})),
        )
        .await;
    assert_eq!(reviewed.status, StatusCode::OK, "{}", reviewed.body);
    assert_eq!(
        app.get(User::AuditorA, "/api/v1/break-glass?status=pending")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The audit trail has the event with its reason; time runs out and the glass closes.
    assert_eq!(app.count("SELECT count(*) AS n FROM audit_log WHERE action = 'break-glass' AND detail LIKE '%corridor%'"), 1);
    app.sql("UPDATE break_glass SET expires_at = now() - interval '1 second'");
    assert_eq!(
        app.get(User::NurseA, &format!("/fhir/Observation/{obs_alice}"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_encounter_with_the_clinician_is_a_care_relationship() {
    let app = TestApp::spawn().await;
    let patient = app.patient("Ward", "Walter", "1955-05-05").await;
    let obs = heart_rate(&app, &patient).await;
    let practitioner = app
        .post(User::Admin, "/fhir/Practitioner", &json!({"resourceType": "Practitioner", "name": [{"family": "Nightingale", "given": ["Flo"]}]}))
        .await;
    assert_eq!(
        practitioner.status,
        StatusCode::CREATED,
        "{}",
        practitioner.body
    );
    let pid = practitioner.body["id"].as_str().unwrap();
    let linked = app
        .send(
            app.client()
                .put(app.url("/api/v1/admin/users/nurse.a/practitioner"))
                .bearer_auth(app.token(User::Admin))
                .json(&json!({"practitioner_id": pid})),
        )
        .await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
    let encounter = json!({"resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": format!("Patient/{patient}")},
        "participant": [{"individual": {"reference": format!("Practitioner/{pid}")}}]});
    let created = app
        .post(User::FrontDeskA, "/fhir/Encounter", &encounter)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        app.get(User::NurseA, &format!("/fhir/Observation/{obs}"))
            .await
            .status,
        StatusCode::OK
    );
    let eid = created.body["id"].as_str().unwrap();
    let mut finished = created.body.clone();
    finished["status"] = json!("finished");
    let closed = app
        .put(
            User::FrontDeskA,
            &format!("/fhir/Encounter/{eid}"),
            &finished,
            None,
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.body);
    assert_eq!(
        app.get(User::NurseA, &format!("/fhir/Observation/{obs}"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_search_the_log_and_export_who_saw_a_record() {
    let app = TestApp::spawn().await;
    let patient = app.patient("Audit", "Ada", "1970-10-10").await;
    app.get(User::NurseA, &format!("/fhir/Patient/{patient}"))
        .await;
    let found = app
        .get(
            User::AuditorA,
            &format!("/api/v1/audit?patient={patient}&user=nurse.a"),
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    let rows = found.body.as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["user"] == "nurse.a" && r["patient_id"] == patient.as_str())
    );
    assert!(rows.iter().any(|r| r["action"] == "read"), "{}", found.body);
    let report = app
        .send(
            app.client()
                .get(app.url(&format!(
                    "/api/v1/patients/{patient}/access-report?format=csv"
                )))
                .bearer_auth(app.token(User::AuditorA)),
        )
        .await;
    assert_eq!(report.status, StatusCode::OK);
    assert_eq!(
        report.header("content-type"),
        Some("text/csv; charset=utf-8")
    );
    let bundle = app
        .get(
            User::AuditorA,
            &format!("/fhir/AuditEvent?patient={patient}&agent=nurse.a"),
        )
        .await;
    assert_eq!(bundle.status, StatusCode::OK, "{}", bundle.body);
    let event = &bundle.body["entry"][0]["resource"];
    assert_eq!(event["resourceType"], "AuditEvent");
    assert_eq!(event["agent"][0]["who"]["display"], "nurse.a");
    assert_eq!(
        event["entity"][0]["what"]["reference"],
        format!("Patient/{patient}")
    );
    let one = app
        .get(
            User::AuditorA,
            &format!("/fhir/AuditEvent/{}", event["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(one.status, StatusCode::OK);
    // Nurses do not read the audit log; the auditor's own searches are audited.
    assert_eq!(
        app.get(User::NurseA, "/api/v1/audit").await.status,
        StatusCode::FORBIDDEN
    );
    assert!(app.count("SELECT count(*) AS n FROM audit_log WHERE action = 'audit-search' AND actor = 'auditor.a'") >= 2);
    let bad = app
        .get(User::AuditorA, "/api/v1/audit?from=yesterday")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
