use std::collections::{HashMap, HashSet};

use chrono::DateTime;
use serde_json::Value;

use super::*;

fn entries(bundle: &Value) -> &Vec<Value> {
    bundle["entry"].as_array().expect("entry array")
}

fn resources<'a>(bundle: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    entries(bundle)
        .iter()
        .map(|e| &e["resource"])
        .filter(move |r| r["resourceType"] == kind)
}

/// Every `reference` string anywhere inside `value`.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner.as_str()) {
                    ("reference", Some(target)) => out.push(target.to_owned()),
                    _ => references(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, out)),
        _ => {}
    }
}

/// fullUrl → resourceType of every entry.
fn full_urls(bundle: &Value) -> HashMap<String, String> {
    entries(bundle)
        .iter()
        .map(|e| {
            let url = e["fullUrl"].as_str().expect("fullUrl").to_owned();
            let kind = e["resource"]["resourceType"].as_str().expect("type");
            (url, kind.to_owned())
        })
        .collect()
}

fn reference_target<'a>(
    resource: &Value,
    field: &str,
    urls: &'a HashMap<String, String>,
) -> &'a str {
    let target = resource[field]["reference"].as_str().expect("reference");
    urls.get(target)
        .expect("reference resolves inside the bundle")
}

#[test]
fn same_seed_gives_same_output() {
    let run = |seed| {
        let mut synth = Synth::new(seed);
        (
            synth.patient(),
            synth.patient_bundle(4, 11),
            synth.observation_bundle(20),
            synth.name_fragment(),
        )
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn patient_is_plausible() {
    let mut synth = Synth::new(1);
    for _ in 0..500 {
        let patient = synth.patient();
        assert_eq!(patient["resourceType"], "Patient");
        assert!(patient.get("id").is_none());
        let gender = patient["gender"].as_str().unwrap();
        assert!(["male", "female", "other", "unknown"].contains(&gender));
        let birth = NaiveDate::parse_from_str(patient["birthDate"].as_str().unwrap(), "%Y-%m-%d")
            .expect("birthDate is YYYY-MM-DD");
        assert!(age_at(birth, synth.reference_date()) <= 95);
        assert!(birth <= synth.reference_date());
        let id = &patient["identifier"][0];
        assert_eq!(id["system"], NATIONAL_ID_SYSTEM);
        let value = id["value"].as_str().unwrap();
        assert!(value.len() == 12 && value.starts_with("NID"));
        assert!(value[3..].chars().all(|c| c.is_ascii_digit()));
        let name = &patient["name"][0];
        assert!(!name["family"].as_str().unwrap().is_empty());
        assert!(!name["given"].as_array().unwrap().is_empty());
        assert_eq!(patient["telecom"][0]["system"], "phone");
        let address = &patient["address"][0];
        assert!(address["line"][0].is_string() && address["city"].is_string());
        assert_eq!(address["postalCode"].as_str().unwrap().len(), 5);
    }
}

#[test]
fn patient_bundle_shape() {
    let bundle = Synth::new(2).patient_bundle(3, 10);
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "transaction");
    let entries = entries(&bundle);
    assert_eq!(entries.len(), 3 * 11);
    let mut seen = HashSet::new();
    for entry in entries {
        let url = entry["fullUrl"].as_str().unwrap();
        let id = url.strip_prefix("urn:uuid:").expect("urn:uuid fullUrl");
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        assert!(seen.insert(url), "duplicate fullUrl {url}");
        assert_eq!(entry["request"]["method"], "POST");
        assert_eq!(entry["request"]["url"], entry["resource"]["resourceType"]);
    }
    for (index, entry) in entries.iter().enumerate() {
        let expected = match index % 11 {
            0 => "Patient",
            1 | 9 => "Encounter",
            _ => continue,
        };
        assert_eq!(entry["resource"]["resourceType"], expected, "entry {index}");
    }
}

#[test]
fn references_resolve_inside_bundle() {
    let bundle = Synth::new(3).patient_bundle(20, 12);
    let urls = full_urls(&bundle);
    let mut all = Vec::new();
    references(&bundle, &mut all);
    assert!(all.len() > 20 * 11);
    assert!(
        all.iter().all(|r| urls.contains_key(r)),
        "dangling reference"
    );
    for entry in entries(&bundle) {
        let resource = &entry["resource"];
        let kind = resource["resourceType"].as_str().unwrap();
        let subject_field = match kind {
            "Patient" => continue,
            "AllergyIntolerance" => "patient",
            _ => "subject",
        };
        assert_eq!(reference_target(resource, subject_field, &urls), "Patient");
        if kind != "Encounter" {
            assert_eq!(reference_target(resource, "encounter", &urls), "Encounter");
        }
    }
}

#[test]
fn records_per_patient_edge_cases() {
    let mut synth = Synth::new(4);
    assert_eq!(entries(&synth.patient_bundle(2, 0)).len(), 2);
    let one = synth.patient_bundle(1, 1);
    let kinds: Vec<_> = entries(&one)
        .iter()
        .map(|e| &e["resource"]["resourceType"])
        .collect();
    assert_eq!(kinds, ["Patient", "Encounter"]);
    assert_eq!(entries(&synth.patient_bundle(0, 5)).len(), 0);
}

#[test]
fn observation_bundle_shape() {
    let mut synth = Synth::new(5);
    let bundle = synth.observation_bundle(20);
    assert_eq!(entries(&bundle).len(), 20);
    assert_eq!(resources(&bundle, "Patient").count(), 1);
    assert_eq!(resources(&bundle, "Observation").count(), 19);
    let urls = full_urls(&bundle);
    for observation in resources(&bundle, "Observation") {
        assert_eq!(reference_target(observation, "subject", &urls), "Patient");
    }
    assert_eq!(entries(&synth.observation_bundle(1)).len(), 1);
    assert_eq!(entries(&synth.observation_bundle(0)).len(), 0);
}

#[test]
fn encounters_are_finished_ambulatory_after_birth() {
    let bundle = Synth::new(6).patient_bundle(100, 1);
    let births: Vec<_> = resources(&bundle, "Patient")
        .map(|p| p["birthDate"].clone())
        .collect();
    for (encounter, birth) in resources(&bundle, "Encounter").zip(births) {
        assert_eq!(encounter["status"], "finished");
        assert_eq!(encounter["class"]["system"], ACT_CODE);
        assert_eq!(encounter["class"]["code"], "AMB");
        let start = DateTime::parse_from_rfc3339(encounter["period"]["start"].as_str().unwrap());
        let end = DateTime::parse_from_rfc3339(encounter["period"]["end"].as_str().unwrap());
        let (start, end) = (start.unwrap(), end.unwrap());
        assert!(start < end);
        let birth = NaiveDate::parse_from_str(birth.as_str().unwrap(), "%Y-%m-%d").unwrap();
        assert!(start.date_naive() >= birth);
    }
}

/// Outer bounds no generated value (normal or abnormal, any age) may leave.
fn plausible(code: &str) -> (f64, f64) {
    match code {
        clinical::HEART_RATE => (30.0, 210.0),
        clinical::SYSTOLIC => (70.0, 200.0),
        clinical::DIASTOLIC => (40.0, 120.0),
        clinical::TEMPERATURE => (34.0, 41.0),
        clinical::RESPIRATORY_RATE => (6.0, 70.0),
        clinical::SPO2 => (80.0, 100.0),
        clinical::WEIGHT => (2.5, 165.0),
        clinical::HEIGHT => (45.0, 200.0),
        other => panic!("unexpected LOINC {other}"),
    }
}

#[test]
fn vital_signs_are_valid_and_plausible() {
    let bundle = Synth::new(7).patient_bundle(300, 8);
    let (mut flaggable, mut flagged) = (0, 0);
    for observation in resources(&bundle, "Observation") {
        assert_eq!(observation["status"], "final");
        let category = &observation["category"][0]["coding"][0];
        assert_eq!(category["system"], OBSERVATION_CATEGORY);
        assert_eq!(category["code"], "vital-signs");
        let coding = &observation["code"]["coding"][0];
        assert_eq!(coding["system"], LOINC);
        let code = coding["code"].as_str().unwrap();
        assert!(VITAL_SIGN_CODES.contains(&code));
        let when = observation["effectiveDateTime"].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(when).is_ok() && when.ends_with("+00:00"));
        let quantity = &observation["valueQuantity"];
        assert_eq!(quantity["system"], UCUM);
        assert!(
            ["/min", "mm[Hg]", "Cel", "%", "kg", "cm"]
                .contains(&quantity["code"].as_str().unwrap())
        );
        let value = quantity["value"].as_f64().unwrap();
        let (low, high) = plausible(code);
        assert!((low..=high).contains(&value), "{code} = {value}");
        if ![clinical::WEIGHT, clinical::HEIGHT].contains(&code) {
            flaggable += 1;
            flagged += usize::from(observation.get("interpretation").is_some());
        }
    }
    let share = flagged as f64 / flaggable as f64;
    assert!((0.05..0.16).contains(&share), "abnormal share {share}");
}

#[test]
fn other_clinical_resources_are_valid() {
    let bundle = Synth::new(8).patient_bundle(100, 16);
    for condition in resources(&bundle, "Condition") {
        let status = &condition["clinicalStatus"]["coding"][0];
        assert_eq!(status["system"], CONDITION_CLINICAL);
        assert_eq!(status["code"], "active");
        assert_eq!(condition["code"]["coding"][0]["system"], ICD10_CM);
        assert!(condition["code"]["coding"][0]["display"].is_string());
    }
    for allergy in resources(&bundle, "AllergyIntolerance") {
        let status = &allergy["clinicalStatus"]["coding"][0];
        assert_eq!(status["system"], ALLERGY_CLINICAL);
        assert_eq!(status["code"], "active");
        assert!(allergy["code"]["text"].is_string());
    }
    for request in resources(&bundle, "MedicationRequest") {
        assert_eq!(request["status"], "active");
        assert_eq!(request["intent"], "order");
        assert!(request["medicationCodeableConcept"]["text"].is_string());
    }
    for procedure in resources(&bundle, "Procedure") {
        assert_eq!(procedure["status"], "completed");
        assert!(procedure["code"]["text"].is_string());
    }
    for kind in [
        "Condition",
        "AllergyIntolerance",
        "MedicationRequest",
        "Procedure",
    ] {
        assert!(resources(&bundle, kind).count() > 10, "too few {kind}");
    }
}

#[test]
fn name_pools_are_large_unique_and_international() {
    let given = names::GIVEN_MALE.len() + names::GIVEN_FEMALE.len();
    assert!(given >= 300 && names::FAMILY.len() >= 300);
    for pool in [names::FAMILY, names::GIVEN_MALE, names::GIVEN_FEMALE] {
        let unique: HashSet<_> = pool.iter().collect();
        assert_eq!(unique.len(), pool.len(), "duplicate name in pool");
    }
    for name in ["José", "Müller", "Nguyễn"] {
        assert!(names::FAMILY.contains(&name) || names::GIVEN_MALE.contains(&name));
    }
}

#[test]
fn name_fragments_match_family_names() {
    let mut synth = Synth::new(9);
    let mut distinct = HashSet::new();
    for _ in 0..200 {
        let fragment = synth.name_fragment();
        assert!((2..=3).contains(&fragment.chars().count()));
        assert_eq!(fragment, fragment.to_lowercase());
        assert!(
            names::FAMILY
                .iter()
                .any(|f| f.to_lowercase().starts_with(&fragment))
        );
        distinct.insert(fragment);
    }
    assert!(distinct.len() > 20);
}

#[test]
fn national_ids_are_unique_across_parts() {
    let mut seen = HashSet::new();
    for part in 0..50 {
        let bundle = Synth::for_part(1, part, 100).patient_bundle(100, 0);
        for patient in resources(&bundle, "Patient") {
            let id = patient["identifier"][0]["value"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(seen.insert(id), "duplicate national id");
        }
    }
    let first = Synth::for_part(1, 0, 100).patient_bundle(3, 2);
    assert_eq!(first, Synth::for_part(1, 0, 100).patient_bundle(3, 2));
    assert_ne!(first, Synth::for_part(1, 1, 100).patient_bundle(3, 2));
}
