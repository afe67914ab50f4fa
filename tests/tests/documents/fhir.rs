use crate::{download, pdf};
use base64::Engine;
use kiorex_testkit::{DocumentSite, User, documents_on};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_reference_with_an_inline_attachment_is_stored_and_its_binary_streams() {
    let (app, _) = documents_on(DocumentSite::default()).await;
    let patient = app.patient("Fhir", "Felix", "1982-12-03").await;
    app.care_for(User::NurseA, &patient);
    let report = pdf("Radiology report: no fracture");
    let posted = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": format!("Patient/{patient}")},
        "category": [{"coding": [{"system": "urn:kiorex:document-category", "code": "imaging-report"}]}],
        "description": "Wrist X-ray report",
        "content": [{"attachment": {"contentType": "application/pdf", "title": "wrist.pdf",
            "data": base64::engine::general_purpose::STANDARD.encode(&report)}}]
    });
    let created = app
        .post(User::Admin, "/fhir/DocumentReference", &posted)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        created.body["content"][0]["attachment"]["contentType"],
        "application/pdf"
    );
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(
        created.body["content"][0]["attachment"]["url"],
        format!("Binary/{id}")
    );

    let read = app
        .get(User::NurseA, &format!("/fhir/DocumentReference/{id}"))
        .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["description"], "Wrist X-ray report");
    let found = app
        .get(
            User::NurseA,
            &format!("/fhir/DocumentReference?patient={patient}&category=imaging-report"),
        )
        .await;
    assert_eq!(found.body["total"], 1, "{}", found.body);
    let (status, _, bytes) = download(
        &app,
        User::NurseA,
        &format!("/fhir/Binary/{id}"),
        Some("bytes=0-7"),
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(bytes, report[..8]);

    let denied = app
        .get(
            User::DoctorB,
            &format!("/fhir/DocumentReference?patient={patient}"),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.body["resourceType"], "OperationOutcome");
    let (status, _, _) = download(&app, User::DoctorB, &format!("/fhir/Binary/{id}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let spoofed = json!({
        "resourceType": "DocumentReference",
        "subject": {"reference": format!("Patient/{patient}")},
        "category": [{"coding": [{"code": "referral"}]}],
        "content": [{"attachment": {"contentType": "application/pdf", "title": "run-me.pdf",
            "data": base64::engine::general_purpose::STANDARD.encode(b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0")}}]
    });
    let refused = app
        .post(User::Admin, "/fhir/DocumentReference", &spoofed)
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["resourceType"], "OperationOutcome");
}
