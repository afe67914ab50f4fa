//! The chart's results (`chart_result`) follow every write of an observation, and the migration
//! that created them fills them from stored observations exactly as the write path does.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Float8, Nullable, Text, Timestamptz};
use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The migration that created the table; its last statement fills it from stored observations.
const MIGRATION: &str = include_str!(
    "../../../appliance/kiorex-store/migrations/2026-11-23-000800_chart_result/up.sql"
);

#[derive(Debug, PartialEq, QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    code: String,
    #[diesel(sql_type = Text)]
    display: String,
    #[diesel(sql_type = Nullable<Float8>)]
    value: Option<f64>,
    #[diesel(sql_type = Text)]
    unit: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    effective_at: Option<chrono::DateTime<chrono::Utc>>,
    #[diesel(sql_type = Text)]
    flag: String,
    #[diesel(sql_type = Bool)]
    vital: bool,
}

fn rows(app: &TestApp, patient: &str) -> Vec<Row> {
    let mut conn = kiorex_store::connect_once(&app.database_url).unwrap();
    diesel::sql_query(
        "SELECT resource_id::text AS id, code, display, value, unit, effective_at, flag, vital \
         FROM chart_result WHERE patient_id = $1::uuid ORDER BY resource_id",
    )
    .bind::<Text, _>(patient)
    .load(&mut conn)
    .unwrap()
}

fn heart_rate(patient: &str, value: f64, at: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": at,
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
}

async fn create(app: &TestApp, body: &Value) -> String {
    let reply = app.post(User::Admin, "/fhir/Observation", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_results_follow_each_write_and_the_migration_fills_them_the_same_way() {
    let app = TestApp::spawn().await;
    let patient = app.patient("Chart", "Rows", "1961-02-03").await;
    let fast = create(&app, &heart_rate(&patient, 131.0, "2026-10-01T08:30:00Z")).await;
    let normal = create(&app, &heart_rate(&patient, 70.0, "2026-10-02")).await;
    let note = create(
        &app,
        &json!({"resourceType": "Observation", "status": "final", "code": {"text": "Smoking status"},
                "subject": {"reference": format!("Patient/{patient}")}, "valueString": "never"}),
    )
    .await;

    let written = rows(&app, &patient);
    assert_eq!(written.len(), 3, "{written:?}");
    let fast_row = written.iter().find(|r| r.id == fast).unwrap();
    assert_eq!(
        (
            fast_row.code.as_str(),
            fast_row.display.as_str(),
            fast_row.value
        ),
        ("8867-4", "Heart rate", Some(131.0))
    );
    assert_eq!(
        (
            fast_row.unit.as_str(),
            fast_row.flag.as_str(),
            fast_row.vital
        ),
        ("/min", "H", true),
        "the server's interpretation of a fast pulse is what the chart flags"
    );
    let note_row = written.iter().find(|r| r.id == note).unwrap();
    assert_eq!(
        (
            note_row.display.as_str(),
            note_row.value,
            note_row.effective_at,
            note_row.vital
        ),
        ("Smoking status", None, None, false)
    );

    // An update replaces the row; a delete removes it.
    let path = format!("/fhir/Observation/{fast}");
    let mut changed = app.get(User::Admin, &path).await.body;
    changed["valueQuantity"]["value"] = json!(64);
    changed.as_object_mut().unwrap().remove("interpretation");
    let updated = app.put(User::Admin, &path, &changed, None).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let deleted = app
        .delete(User::Admin, &format!("/fhir/Observation/{normal}"))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let after = rows(&app, &patient);
    assert_eq!(after.len(), 2, "{after:?}");
    let fast_row = after.iter().find(|r| r.id == fast).unwrap();
    assert_eq!((fast_row.value, fast_row.flag.as_str()), (Some(64.0), "N"));
    assert!(after.iter().all(|r| r.id != normal));

    // The migration's fill, run again over the same observations, gives the same rows.
    let fill = &MIGRATION[MIGRATION.find("INSERT INTO chart_result").unwrap()..];
    let mut conn = kiorex_store::connect_once(&app.database_url).unwrap();
    diesel::sql_query("DELETE FROM chart_result")
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query(fill).execute(&mut conn).unwrap();
    assert_eq!(rows(&app, &patient), after);
}
