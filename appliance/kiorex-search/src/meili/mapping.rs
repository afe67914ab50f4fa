//! Our records as Meilisearch documents, and our queries as Meilisearch queries and filters.
//! Pure functions: what reaches the engine is decided (and tested) here, without a server.

use crate::FrontDeskQuery;
use kiorex_domain::names::{fold, phone_digits};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Shortest name prefix indexed for the front desk's fragments (`ngo oka`).
const MIN_PREFIX: usize = 2;

/// A patient in the patients index. Only what the front desk searches by and filters on; the
/// record itself is read from PostgreSQL after the permission check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientDoc {
    pub id: Uuid,
    pub facility_id: Uuid,
    /// Folded words of every name (given, family, text).
    pub names: Vec<String>,
    /// Every prefix of every name word: Meilisearch matches only the last query word by prefix,
    /// while the front desk types fragments of all of them.
    pub name_prefixes: Vec<String>,
    /// Identifier values, upper-cased as the front desk's query is.
    pub identifiers: Vec<String>,
    /// `YYYY-MM-DD`, when known.
    pub birth_date: Option<String>,
    /// Phone digits, as [`phone_digits`] writes them.
    pub phones: Vec<String>,
}

/// A document in the documents index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentDoc {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub facility_id: Uuid,
    pub title: String,
    pub category: String,
    /// Text extracted from the current version (PDF or plain text), empty otherwise.
    pub text: String,
}

/// A formulary entry (FHIR `Medication`) in the medicines index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MedicineDoc {
    pub id: Uuid,
    pub facility_id: Uuid,
    pub name: String,
    pub ingredients: Vec<String>,
    pub form: Option<String>,
}

/// The settings each index needs: what is searched, what is filtered on.
pub struct IndexSettings {
    pub searchable: &'static [&'static str],
    pub filterable: &'static [&'static str],
}

pub const PATIENT_SETTINGS: IndexSettings = IndexSettings {
    searchable: &["names", "name_prefixes"],
    filterable: &["facility_id", "birth_date", "identifiers", "phones"],
};

pub const DOCUMENT_SETTINGS: IndexSettings = IndexSettings {
    searchable: &["title", "text", "category"],
    filterable: &["facility_id", "patient_id"],
};

pub const MEDICINE_SETTINGS: IndexSettings = IndexSettings {
    searchable: &["name", "ingredients", "form"],
    filterable: &["facility_id"],
};

/// A FHIR Patient's JSON as its search document.
pub fn patient_doc(id: Uuid, facility_id: Uuid, patient: &Value) -> PatientDoc {
    let mut names: Vec<String> = Vec::new();
    for name in patient["name"].as_array().into_iter().flatten() {
        let parts = name["given"]
            .as_array()
            .into_iter()
            .flatten()
            .chain([&name["family"], &name["text"]]);
        for part in parts.filter_map(Value::as_str) {
            for word in fold(part).split(' ').filter(|w| !w.is_empty()) {
                if !names.iter().any(|n| n == word) {
                    names.push(word.to_owned());
                }
            }
        }
    }
    let mut name_prefixes = Vec::new();
    for word in &names {
        let chars: Vec<char> = word.chars().collect();
        for len in MIN_PREFIX..chars.len() {
            let prefix: String = chars[..len].iter().collect();
            if !name_prefixes.contains(&prefix) {
                name_prefixes.push(prefix);
            }
        }
    }
    let identifiers = patient["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["value"].as_str())
        .map(str::to_ascii_uppercase)
        .collect();
    let phones = patient["telecom"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| matches!(t["system"].as_str(), Some("phone" | "sms")))
        .filter_map(|t| t["value"].as_str())
        .map(phone_digits)
        .filter(|d| !d.is_empty())
        .collect();
    PatientDoc {
        id,
        facility_id,
        names,
        name_prefixes,
        identifiers,
        birth_date: patient["birthDate"].as_str().map(str::to_owned),
        phones,
    }
}

/// A FHIR Medication's JSON as its search document: the name from `code` (its text, else the
/// first coding's display), the ingredients' names, the form's name.
pub fn medicine_doc(id: Uuid, facility_id: Uuid, medication: &Value) -> MedicineDoc {
    let ingredients = medication["ingredient"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| concept_name(&i["itemCodeableConcept"]))
        .collect();
    MedicineDoc {
        id,
        facility_id,
        name: concept_name(&medication["code"]).unwrap_or_default(),
        ingredients,
        form: concept_name(&medication["form"]),
    }
}

/// A CodeableConcept's human name: its text, else the first coding's display.
pub fn concept_name(concept: &Value) -> Option<String> {
    concept["text"]
        .as_str()
        .or_else(|| {
            concept["coding"]
                .as_array()?
                .iter()
                .find_map(|c| c["display"].as_str())
        })
        .map(str::to_owned)
}

/// A search as Meilisearch takes it: the words to match and a filter.
#[derive(Debug, Clone, PartialEq)]
pub struct MeiliQuery {
    pub q: String,
    pub filter: String,
}

/// The front desk's criteria: names are matched (typos, prefixes), the rest are exact filters,
/// and the caller's facilities always bound the search.
pub fn patient_query(query: &FrontDeskQuery, facilities: &[Uuid]) -> MeiliQuery {
    let mut filters = vec![in_filter(
        "facility_id",
        facilities.iter().map(Uuid::to_string),
    )];
    if let Some(day) = query.birth_date {
        filters.push(format!("birth_date = {}", quoted(&day.to_string())));
    }
    if !query.identifiers.is_empty() {
        filters.push(in_filter("identifiers", query.identifiers.iter().cloned()));
    }
    if let Some(phone) = &query.phone {
        filters.push(format!("phones = {}", quoted(phone)));
    }
    MeiliQuery {
        q: query.names.join(" "),
        filter: filters.join(" AND "),
    }
}

/// Documents of `facilities`, of one patient when given.
pub fn document_query(text: &str, patient: Option<Uuid>, facilities: &[Uuid]) -> MeiliQuery {
    let mut filters = vec![in_filter(
        "facility_id",
        facilities.iter().map(Uuid::to_string),
    )];
    if let Some(patient) = patient {
        filters.push(format!("patient_id = {}", quoted(&patient.to_string())));
    }
    MeiliQuery {
        q: text.trim().to_owned(),
        filter: filters.join(" AND "),
    }
}

/// Medicines of `facilities`' formularies.
pub fn medicine_query(text: &str, facilities: &[Uuid]) -> MeiliQuery {
    MeiliQuery {
        q: text.trim().to_owned(),
        filter: in_filter("facility_id", facilities.iter().map(Uuid::to_string)),
    }
}

fn in_filter(field: &str, values: impl Iterator<Item = String>) -> String {
    let values: Vec<String> = values.map(|v| quoted(&v)).collect();
    format!("{field} IN [{}]", values.join(", "))
}

/// A filter string literal: what a user typed cannot close the quote and add conditions.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_is_found_by_folded_names_their_prefixes_ids_birth_date_and_phone() {
        let patient = json!({
            "resourceType": "Patient",
            "name": [{"family": "Okafor", "given": ["Ngózi", "Ada"]}],
            "identifier": [{"system": "urn:kiorex:mrn:GEN", "value": "gen-0001234-7"}],
            "telecom": [{"system": "phone", "value": "+44 20 7946 0958"}, {"system": "email", "value": "n@x.org"}],
            "birthDate": "1980-03-12"
        });
        let doc = patient_doc(Uuid::nil(), Uuid::max(), &patient);
        assert_eq!(doc.names, vec!["ngozi", "ada", "okafor"]);
        assert!(doc.name_prefixes.contains(&"ngo".to_owned()));
        assert!(doc.name_prefixes.contains(&"okafo".to_owned()));
        assert!(!doc.name_prefixes.contains(&"o".to_owned()), "too short");
        assert!(
            !doc.name_prefixes.contains(&"okafor".to_owned()),
            "whole words are in names"
        );
        assert_eq!(doc.identifiers, vec!["GEN-0001234-7"]);
        assert_eq!(doc.phones, vec!["442079460958"]);
        assert_eq!(doc.birth_date.as_deref(), Some("1980-03-12"));
        assert_eq!(doc.facility_id, Uuid::max());
    }

    #[test]
    fn the_front_desk_query_bounds_by_facility_and_filters_exactly() {
        let query = crate::parse("oka ngozi 12/03/1980 GEN-1");
        let facility = Uuid::nil();
        let meili = patient_query(&query, &[facility]);
        assert_eq!(meili.q, "oka ngozi");
        assert_eq!(
            meili.filter,
            format!(
                "facility_id IN [\"{facility}\"] AND birth_date = \"1980-03-12\" AND identifiers IN [\"GEN-1\"]"
            )
        );
        let phone = patient_query(&crate::parse("+44 20 7946 0958"), &[facility]);
        assert_eq!(phone.q, "");
        assert!(phone.filter.ends_with("AND phones = \"442079460958\""));
    }

    #[test]
    fn typed_quotes_cannot_escape_the_filter() {
        let mut query = crate::FrontDeskQuery::default();
        query
            .identifiers
            .push("X1\" OR facility_id EXISTS OR \"".into());
        let meili = patient_query(&query, &[Uuid::nil()]);
        assert!(
            meili
                .filter
                .contains("IN [\"X1\\\" OR facility_id EXISTS OR \\\"\"]"),
            "{}",
            meili.filter
        );
    }

    #[test]
    fn documents_and_medicines_are_bounded_by_facility() {
        let (f, p) = (Uuid::nil(), Uuid::max());
        let docs = document_query(" appendicectomy ", Some(p), &[f]);
        assert_eq!(docs.q, "appendicectomy");
        assert_eq!(
            docs.filter,
            format!("facility_id IN [\"{f}\"] AND patient_id = \"{p}\"")
        );
        assert_eq!(
            medicine_query("amoxi", &[f, p]).filter,
            format!("facility_id IN [\"{f}\", \"{p}\"]")
        );
    }

    #[test]
    fn a_medication_is_named_by_its_code_ingredients_and_form() {
        let medication = json!({
            "resourceType": "Medication",
            "code": {"coding": [{"system": "urn:hospital:formulary", "code": "AMX500", "display": "Amoxicillin 500 mg capsule"}]},
            "form": {"text": "capsule"},
            "ingredient": [{"itemCodeableConcept": {"text": "amoxicillin trihydrate"}}]
        });
        let doc = medicine_doc(Uuid::nil(), Uuid::nil(), &medication);
        assert_eq!(doc.name, "Amoxicillin 500 mg capsule");
        assert_eq!(doc.ingredients, vec!["amoxicillin trihydrate"]);
        assert_eq!(doc.form.as_deref(), Some("capsule"));
    }
}
