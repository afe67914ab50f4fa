//! Incoming resources: parsed into the `fhir-model` R4 types, so that a wrong type, a bad date or
//! an unknown code is refused with the path of the element; then checked for elements the model
//! does not know (FHIR servers must not silently drop data) and for Kiorex's own rules.

use crate::kind::ResourceKind;
use crate::outcome::{Issue, IssueCode};
use fhir_model::r4b::resources as r;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A parsed, checked resource of one of the kinds Kiorex holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Clinical {
    Patient(r::Patient),
    Practitioner(r::Practitioner),
    Organization(r::Organization),
    Encounter(r::Encounter),
    Observation(r::Observation),
    Condition(r::Condition),
    AllergyIntolerance(r::AllergyIntolerance),
    MedicationRequest(r::MedicationRequest),
    Procedure(r::Procedure),
    ClinicalImpression(r::ClinicalImpression),
    Medication(r::Medication),
}

/// A resource ready to be stored: the typed model and its canonical JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub resource: Clinical,
    pub json: Value,
}

impl Clinical {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Clinical::Patient(_) => ResourceKind::Patient,
            Clinical::Practitioner(_) => ResourceKind::Practitioner,
            Clinical::Organization(_) => ResourceKind::Organization,
            Clinical::Encounter(_) => ResourceKind::Encounter,
            Clinical::Observation(_) => ResourceKind::Observation,
            Clinical::Condition(_) => ResourceKind::Condition,
            Clinical::AllergyIntolerance(_) => ResourceKind::AllergyIntolerance,
            Clinical::MedicationRequest(_) => ResourceKind::MedicationRequest,
            Clinical::Procedure(_) => ResourceKind::Procedure,
            Clinical::ClinicalImpression(_) => ResourceKind::ClinicalImpression,
            Clinical::Medication(_) => ResourceKind::Medication,
        }
    }
}

/// Parses request body bytes as a resource of `expected` kind.
pub fn parse_bytes(expected: ResourceKind, body: &[u8]) -> Result<Parsed, Vec<Issue>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        vec![Issue::new(
            IssueCode::Structure,
            format!("the body is not valid JSON: {e}"),
        )]
    })?;
    parse_value(expected, value)
}

/// Parses a JSON value as a resource of `expected` kind.
pub fn parse_value(expected: ResourceKind, value: Value) -> Result<Parsed, Vec<Issue>> {
    let type_name = expected.name();
    match value.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == type_name => {}
        Some(other) => {
            return Err(vec![
                Issue::new(
                    IssueCode::Invalid,
                    format!("expected a {type_name}, got a {other}"),
                )
                .at("resourceType"),
            ]);
        }
        None => {
            return Err(vec![
                Issue::new(
                    IssueCode::Required,
                    format!("resourceType is missing; expected \"{type_name}\""),
                )
                .at("resourceType"),
            ]);
        }
    }
    let (resource, json) = match expected {
        ResourceKind::Patient => typed(&value, type_name, Clinical::Patient)?,
        ResourceKind::Practitioner => typed(&value, type_name, Clinical::Practitioner)?,
        ResourceKind::Organization => typed(&value, type_name, Clinical::Organization)?,
        ResourceKind::Encounter => typed(&value, type_name, Clinical::Encounter)?,
        ResourceKind::Observation => typed(&value, type_name, Clinical::Observation)?,
        ResourceKind::Condition => typed(&value, type_name, Clinical::Condition)?,
        ResourceKind::AllergyIntolerance => typed(&value, type_name, Clinical::AllergyIntolerance)?,
        ResourceKind::MedicationRequest => typed(&value, type_name, Clinical::MedicationRequest)?,
        ResourceKind::Procedure => typed(&value, type_name, Clinical::Procedure)?,
        ResourceKind::ClinicalImpression => typed(&value, type_name, Clinical::ClinicalImpression)?,
        ResourceKind::Medication => typed(&value, type_name, Clinical::Medication)?,
    };
    let mut issues = Vec::new();
    unknown_elements(&value, &json, type_name, &mut issues);
    if !issues.is_empty() {
        return Err(issues);
    }
    crate::extract::check_rules(&resource)?;
    Ok(Parsed { resource, json })
}

/// Deserialises into the model type `T`, reporting the failing element's path, and serialises
/// back to get the canonical JSON.
fn typed<T, F>(value: &Value, type_name: &str, wrap: F) -> Result<(Clinical, Value), Vec<Issue>>
where
    T: DeserializeOwned + serde::Serialize,
    F: FnOnce(T) -> Clinical,
{
    let model: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = plain_serde_message(&e.inner().to_string());
        let at = if path == "." {
            type_name.to_owned()
        } else {
            format!("{type_name}.{path}")
        };
        vec![Issue::new(IssueCode::Value, message).at(at)]
    })?;
    let json = serde_json::to_value(&model).map_err(|e| {
        vec![Issue::new(
            IssueCode::Processing,
            format!("could not re-encode the resource: {e}"),
        )]
    })?;
    Ok((wrap(model), json))
}

/// serde's messages mention Rust; say it in FHIR's words.
fn plain_serde_message(message: &str) -> String {
    message
        .replace("invalid type: ", "wrong type: ")
        .replace("unknown variant", "unknown code")
        .replace("missing field", "missing required element")
}

/// Every element of `input` must survive the round trip through the model; what does not is an
/// element FHIR R4 does not define there (or an empty one, which FHIR JSON forbids).
fn unknown_elements(input: &Value, canonical: &Value, path: &str, issues: &mut Vec<Issue>) {
    match (input, canonical) {
        (Value::Object(i), Value::Object(c)) => compare_objects(i, c, path, issues),
        (Value::Array(i), Value::Array(c)) => {
            for (n, item) in i.iter().enumerate() {
                let here = format!("{path}[{n}]");
                match c.get(n) {
                    Some(other) => unknown_elements(item, other, &here, issues),
                    None => issues
                        .push(Issue::new(IssueCode::Structure, "unexpected array item").at(here)),
                }
            }
        }
        _ => {}
    }
}

fn compare_objects(
    input: &Map<String, Value>,
    canonical: &Map<String, Value>,
    path: &str,
    issues: &mut Vec<Issue>,
) {
    for (key, value) in input {
        let here = format!("{path}.{key}");
        if is_empty(value) {
            issues.push(
                Issue::new(
                    IssueCode::Structure,
                    "empty elements are not allowed in FHIR JSON",
                )
                .at(here),
            );
            continue;
        }
        match canonical.get(key) {
            Some(other) => unknown_elements(value, other, &here, issues),
            None => issues.push(
                Issue::new(
                    IssueCode::Structure,
                    format!("unknown element \"{key}\": FHIR R4 does not define it here"),
                )
                .at(here),
            ),
        }
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient(extra: Value) -> Value {
        let mut p = json!({"resourceType": "Patient", "name": [{"family": "Okafor", "given": ["Chidi"]}],
                           "gender": "male", "birthDate": "1990-03-07"});
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        p
    }

    fn first_issue(value: Value) -> Issue {
        parse_value(ResourceKind::Patient, value)
            .unwrap_err()
            .remove(0)
    }

    #[test]
    fn a_valid_patient_parses_and_round_trips() {
        let parsed = parse_value(ResourceKind::Patient, patient(json!({}))).unwrap();
        assert_eq!(parsed.json["birthDate"], "1990-03-07");
        assert_eq!(parsed.resource.kind(), ResourceKind::Patient);
    }

    #[test]
    fn wrong_type_names_the_element() {
        let issue = first_issue(patient(json!({"birthDate": 19900307})));
        assert_eq!(
            issue.expression.as_deref(),
            Some("Patient.birthDate"),
            "{issue}"
        );
    }

    #[test]
    fn unknown_code_names_the_element() {
        let issue = first_issue(patient(json!({"gender": "robot"})));
        assert_eq!(
            issue.expression.as_deref(),
            Some("Patient.gender"),
            "{issue}"
        );
        assert!(issue.message.contains("robot"), "{issue}");
    }

    #[test]
    fn impossible_date_is_refused() {
        let issue = first_issue(patient(json!({"birthDate": "1990-02-30"})));
        assert_eq!(
            issue.expression.as_deref(),
            Some("Patient.birthDate"),
            "{issue}"
        );
    }

    #[test]
    fn unknown_element_is_refused_not_dropped() {
        let issue = first_issue(patient(json!({"favouriteColour": "blue"})));
        assert_eq!(issue.expression.as_deref(), Some("Patient.favouriteColour"));
        let nested = first_issue(patient(json!({"name": [{"family": "A", "nickname": "B"}]})));
        assert_eq!(
            nested.expression.as_deref(),
            Some("Patient.name[0].nickname")
        );
    }

    #[test]
    fn wrong_resource_type_is_refused() {
        let issue = parse_value(ResourceKind::Observation, patient(json!({})))
            .unwrap_err()
            .remove(0);
        assert_eq!(issue.expression.as_deref(), Some("resourceType"));
    }

    #[test]
    fn malformed_json_is_a_structure_issue() {
        let issues =
            parse_bytes(ResourceKind::Patient, b"{\"resourceType\": \"Patient\",").unwrap_err();
        assert_eq!(issues[0].code, IssueCode::Structure);
    }

    #[test]
    fn an_encounter_note_links_its_patient_encounter_and_author() {
        let note = json!({"resourceType": "ClinicalImpression", "status": "completed",
            "subject": {"reference": "Patient/6f1c2a1e-0000-4000-8000-000000000001"},
            "encounter": {"reference": "Encounter/6f1c2a1e-0000-4000-8000-000000000002"},
            "assessor": {"reference": "Practitioner/6f1c2a1e-0000-4000-8000-000000000003"},
            "date": "2026-11-23T08:00:00Z", "summary": "Chest pain since this morning."});
        let parsed = parse_value(ResourceKind::ClinicalImpression, note).unwrap();
        assert_eq!(parsed.resource.kind(), ResourceKind::ClinicalImpression);
        let links = crate::extract::links(&parsed.resource).unwrap();
        let params: Vec<Option<&str>> = links.iter().map(|l| l.param).collect();
        assert_eq!(params, [Some("subject"), Some("encounter"), None]);
        let without_patient = json!({"resourceType": "ClinicalImpression", "status": "completed",
            "subject": {"reference": "Encounter/6f1c2a1e-0000-4000-8000-000000000002"}});
        assert!(parse_value(ResourceKind::ClinicalImpression, without_patient).is_err());
    }
}
