//! The shared search suite, written once and run against each engine (see
//! [`crate::on_each_engine`]): the front desk's queries, a new patient found within a second
//! through the worker, access limits for patients and documents, the formulary, and reindex.

use crate::on_each_engine;
use crate::rig::Rig;
use kiorex_search::Engine;
use kiorex_search::meili::IndexKind;
use kiorex_testkit::{Site, User};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn names(hits: &[Value]) -> Vec<&str> {
    hits.iter()
        .map(|h| h["name"].as_str().unwrap_or_default())
        .collect()
}

async fn the_right_patient_is_in_the_top_three(rig: &Rig) {
    let (target, mrn) = rig
        .register("Ngozi", "Okafor", "1980-03-12", Some("+44 20 7946 0958"))
        .await;
    for (given, family, born) in [
        ("Ngozi", "Okonkwo", "1979-01-01"),
        ("Nkechi", "Okafor", "1985-06-06"),
        ("Obinna", "Okafor", "1980-03-12"),
        ("Grace", "Okoro", "1990-02-02"),
        ("Ngozika", "Adeyemi", "1980-12-03"),
        ("John", "Smith", "1980-03-12"),
    ] {
        rig.register(given, family, born, None).await;
    }
    rig.settled().await;
    for q in [
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
    ] {
        let hits = rig.patients(User::FrontDeskA, q).await;
        let rank = hits.iter().position(|h| h["id"] == target.as_str());
        assert!(
            rank.is_some_and(|r| r < 3),
            "{q:?}: the patient is at {rank:?} in {:?}",
            names(&hits)
        );
    }
    let dated = rig.patients(User::FrontDeskA, "12/03/1980").await;
    assert_eq!(
        dated.len(),
        3,
        "exactly the patients born that day: {:?}",
        names(&dated)
    );
    assert!(rig.patients(User::FrontDeskA, "zzzzqx").await.is_empty());
}
on_each_engine!(the_right_patient_is_in_the_top_three);

async fn a_new_patient_is_found_within_a_second(rig: &Rig) {
    let (id, _) = rig.register("Chiamaka", "Eze", "1991-07-21", None).await;
    let registered = Instant::now();
    loop {
        let hits = rig.patients(User::FrontDeskA, "chiamaka eze").await;
        if hits.iter().any(|h| h["id"] == id.as_str()) {
            break;
        }
        assert!(
            registered.elapsed() < Duration::from_secs(1),
            "not findable a second after registration"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = rig.app.count(&format!(
        "SELECT count(*) AS n FROM outbox WHERE resource_id = '{id}' AND delivered_at IS NOT NULL"
    ));
    rig.settled().await;
    assert!(delivered <= 1, "one registration, one event");
}
on_each_engine!(a_new_patient_is_found_within_a_second);

/// A document of `patient` as the store writes it after an upload (the object store and the
/// scanner are the documents tests' business; search needs the row and its text).
fn document(rig: &Rig, patient: &str, title: &str, text: &str) -> Uuid {
    let id = Uuid::new_v4();
    let patient = Uuid::parse_str(patient).unwrap();
    let mut conn = kiorex_store::connect_once(&rig.app.database_url).unwrap();
    kiorex_store::documents::create(
        &mut conn,
        &kiorex_store::documents::NewDocument {
            id,
            facility_id: rig.app.facility_a,
            patient_id: patient,
            category: "discharge-letter".into(),
            title: title.into(),
        },
        &kiorex_store::documents::Version {
            document_id: id,
            version: 1,
            object_key: format!("{}/{patient}/discharge-letter/{id}", rig.app.facility_a),
            key_id: "k1".into(),
            wrapped_key: vec![0; 40],
            sha256: "0".repeat(64),
            size_bytes: text.len() as i64,
            content_type: "text/plain".into(),
            file_name: "letter.txt".into(),
            extracted_text: Some(text.into()),
            author: "test".into(),
            request_id: "test".into(),
            created_at: chrono::Utc::now(),
        },
    )
    .unwrap();
    id
}

async fn a_user_without_access_finds_neither_the_patient_nor_their_documents(rig: &Rig) {
    let (patient, _) = rig.register("Private", "Person", "1985-05-05", None).await;
    let doc = document(
        rig,
        &patient,
        "Discharge letter",
        "Laparoscopic appendicectomy, recovery uneventful.",
    );
    rig.settled().await;
    for user in [User::DoctorB, User::AuditorA] {
        assert!(
            rig.patients(user, "private person").await.is_empty(),
            "{user:?} finds the patient"
        );
        assert!(
            rig.search(user, "/api/v1/search/documents", "appendicectomy")
                .await
                .is_empty(),
            "{user:?} finds the document"
        );
    }
    // Documents are clinical: even a nurse of the facility needs a care relationship.
    assert!(
        rig.search(User::NurseA, "/api/v1/search/documents", "appendicectomy")
            .await
            .is_empty()
    );
    rig.app.care_for(User::NurseA, &patient);
    let found = rig
        .search(User::NurseA, "/api/v1/search/documents", "appendicectomy")
        .await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], doc.to_string());
    let hits = rig.patients(User::NurseA, "person priv").await;
    assert_eq!(hits.len(), 1);
    let audited = rig.app.count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE action = 'search' AND actor = 'nurse.a' AND patient_id = '{patient}'"
    ));
    assert_eq!(
        audited, 2,
        "the patient hit and the document hit are audited"
    );
}
on_each_engine!(a_user_without_access_finds_neither_the_patient_nor_their_documents);

async fn add_medicine(rig: &Rig, name: &str, ingredient: &str, form: &str) -> String {
    let reply = rig
        .app
        .post(
            User::Admin,
            "/fhir/Medication",
            &json!({"resourceType": "Medication",
                "code": {"coding": [{"system": "urn:example:formulary", "code": name.to_uppercase().replace(' ', "-"), "display": name}]},
                "form": {"text": form},
                "ingredient": [{"itemCodeableConcept": {"text": ingredient}}]}),
        )
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn medicines_are_found_by_name_ingredient_and_form_with_typos(rig: &Rig) {
    let amoxicillin = add_medicine(
        rig,
        "Amoxicillin 500 mg",
        "amoxicillin trihydrate",
        "capsule",
    )
    .await;
    add_medicine(rig, "Paracetamol 500 mg", "paracetamol", "tablet").await;
    add_medicine(rig, "Ibuprofen 400 mg", "ibuprofen", "tablet").await;
    rig.settled().await;
    let medicines = |q: &'static str, user: User| async move {
        rig.search(user, "/api/v1/search/medicines", q).await
    };
    for q in ["amoxi", "Amoxicilin", "amoxicillin capsule", "trihydrate"] {
        let hits = medicines(q, User::NurseA).await;
        assert_eq!(
            hits.first().map(|h| &h["id"]),
            Some(&json!(amoxicillin)),
            "{q}: {hits:?}"
        );
        assert_eq!(hits[0]["form"], "capsule");
    }
    assert_eq!(medicines("tablet", User::NurseA).await.len(), 2);
    assert!(medicines("zzqxv", User::NurseA).await.is_empty());
    assert!(
        medicines("amoxi", User::FrontDeskA).await.is_empty(),
        "no medication:read"
    );
    assert!(
        medicines("amoxi", User::DoctorB).await.is_empty(),
        "another facility's formulary"
    );
    let audited = rig.app.count(
        "SELECT count(*) AS n FROM audit_log WHERE action = 'search' AND resource_type = 'Medication'",
    );
    assert_eq!(audited, 0, "the formulary is not patient data");
}
on_each_engine!(medicines_are_found_by_name_ingredient_and_form_with_typos);

/// Drops a patient from the engine's index, as a lost or corrupted index would.
async fn forget(rig: &Rig, patient: &str) {
    match &rig.engine {
        Engine::Postgres(_) => {
            for table in ["search_string", "search_token", "search_date"] {
                rig.app.sql(&format!(
                    "DELETE FROM {table} WHERE resource_id = '{patient}'"
                ));
            }
        }
        Engine::Meilisearch(m) => m
            .remove(IndexKind::Patients, &[Uuid::parse_str(patient).unwrap()])
            .await
            .unwrap(),
    }
}

async fn reindex_makes_a_lost_patient_findable_again(rig: &Rig) {
    let (patient, mrn) = rig
        .register("Folasade", "Bankole", "1977-11-02", None)
        .await;
    rig.register("Tunde", "Bankole", "1975-01-09", None).await;
    rig.settled().await;
    forget(rig, &patient).await;
    assert!(
        !rig.patients(User::FrontDeskA, "folasade bankole")
            .await
            .iter()
            .any(|h| h["id"] == patient.as_str()),
        "the patient's index entries are gone"
    );
    let site = Site::unmigrated(rig.app.database_url.clone());
    let mut command = site.command(&["reindex", "patients", "--output", "json"]);
    if let Some(meili) = &rig.meili {
        command
            .env("KIOREX_SEARCH__ENGINE", "meilisearch")
            .env("KIOREX_SEARCH__MEILISEARCH_URL", &meili.url)
            .env("KIOREX_SEARCH__INDEX_PREFIX", &meili.index_prefix);
        if let Some(key) = &meili.api_key {
            command.env("KIOREX_SEARCH__API_KEY", key);
        }
    }
    let run = command.output().expect("run kiorex reindex");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("JSON report");
    assert_eq!(report["ok"], true);
    assert_eq!(report["indexes"][0]["index"], "patients");
    assert_eq!(report["indexes"][0]["indexed"], 2, "{report}");
    for q in ["folasade bankole", "folsade", mrn.as_str(), "02/11/1977"] {
        let hits = rig.patients(User::FrontDeskA, q).await;
        assert_eq!(
            hits.first().map(|h| &h["id"]),
            Some(&json!(patient)),
            "{q}: {:?}",
            names(&hits)
        );
    }
}
on_each_engine!(reindex_makes_a_lost_patient_findable_again);
