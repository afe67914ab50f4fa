//! `kiorex formulary import`: the hospital's formulary from a CSV file into FHIR `Medication`
//! resources of one facility. Kiorex ships no drug data; the pharmacy's own list is the source.
//! Rows are matched to existing entries by their formulary code, so importing the same file
//! twice changes nothing, and an edited file updates the entries it names.
//!
//! The file: a header `code,name,form,ingredients`, one medicine a line; `ingredients` separated
//! by `;`; `form` and `ingredients` may be empty. Read with the `csv` crate (quoted fields with
//! commas, as spreadsheets export them).

use chrono::Utc;
use diesel::{Connection, PgConnection};
use kiorex_domain::query::{Criterion, SearchQuery, TokenValue};
use kiorex_fhir::ResourceKind;
use kiorex_fhir::extract;
use kiorex_fhir::parse::parse_value;
use kiorex_store::audit::{AuditRecord, append};
use kiorex_store::resources::{self, Change, Draft, WriteContext};
use kiorex_store::{StoreError, facilities};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

/// The code system of a facility's formulary codes.
pub fn code_system(facility_code: &str) -> String {
    format!("urn:kiorex:formulary:{facility_code}")
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Entry {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub form: String,
    #[serde(default)]
    pub ingredients: String,
}

/// Reads the file; every bad line is reported with its number.
pub fn parse(text: &str) -> Result<Vec<Entry>, Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, row) in reader.deserialize::<Entry>().enumerate() {
        let line = i + 2;
        match row {
            Ok(e) if e.code.is_empty() || e.name.is_empty() => {
                problems.push(format!("line {line}: code and name are required"))
            }
            Ok(e) if entries.iter().any(|x: &Entry| x.code == e.code) => {
                problems.push(format!("line {line}: code {} appears twice", e.code))
            }
            Ok(e) => entries.push(e),
            Err(e) => problems.push(format!(
                "line {line}: {e} (expected the columns code,name,form,ingredients)"
            )),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// The FHIR Medication for one entry.
pub fn medication(facility_code: &str, entry: &Entry) -> Value {
    let mut medication = json!({
        "resourceType": "Medication",
        "status": "active",
        "code": {"coding": [{"system": code_system(facility_code), "code": entry.code, "display": entry.name}],
                 "text": entry.name},
    });
    if !entry.form.is_empty() {
        medication["form"] = json!({"text": entry.form});
    }
    let ingredients: Vec<Value> = entry
        .ingredients
        .split(';')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|i| json!({"itemCodeableConcept": {"text": i}}))
        .collect();
    if !ingredients.is_empty() {
        medication["ingredient"] = Value::Array(ingredients);
    }
    medication
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Writes the entries as Medication resources of the facility, in one transaction, each change
/// versioned, indexed, queued on the outbox and audited.
pub fn import(
    conn: &mut PgConnection,
    actor: &str,
    facility_code: &str,
    entries: &[Entry],
) -> Result<ImportReport, String> {
    let facility = facilities::find_by_code(conn, facility_code)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no facility with code {facility_code}"))?;
    conn.transaction(|conn| {
        let mut report = ImportReport::default();
        let ctx = WriteContext {
            author: actor.to_owned(),
            request_id: "cli".into(),
            at: Utc::now(),
        };
        for entry in entries {
            let parsed = parse_value(ResourceKind::Medication, medication(facility_code, entry))
                .map_err(|issues| StoreError::Conflict(format!("{}: {issues:?}", entry.code)))?;
            let index = extract::index(&parsed.resource, &[]);
            let existing = find(conn, facility.id, facility_code, &entry.code)?;
            let (id, action) = match &existing {
                Some(current) if same(&current.content, &parsed.json) => {
                    report.unchanged += 1;
                    continue;
                }
                Some(current) => (current.id, "formulary-update"),
                None => (Uuid::new_v4(), "formulary-create"),
            };
            let draft = Draft {
                resource_type: "Medication",
                id,
                facility_id: facility.id,
                content: parsed.json,
                index,
            };
            if existing.is_some() {
                resources::update(conn, &ctx, draft, None, Change::Update)?;
                report.updated += 1;
            } else {
                resources::create(conn, &ctx, draft)?;
                report.created += 1;
            }
            append(
                conn,
                &[AuditRecord {
                    recorded_at: ctx.at,
                    actor: actor.to_owned(),
                    action: action.to_owned(),
                    outcome: "success".into(),
                    resource_type: "Medication".into(),
                    resource_id: id.to_string(),
                    patient_id: String::new(),
                    facility_id: facility.id.to_string(),
                    request_id: "cli".into(),
                    detail: format!("code {}", entry.code),
                }],
            )?;
        }
        Ok::<_, StoreError>(report)
    })
    .map_err(|e| e.to_string())
}

/// The live Medication of this facility with this formulary code.
fn find(
    conn: &mut PgConnection,
    facility: Uuid,
    facility_code: &str,
    code: &str,
) -> Result<Option<resources::Stored>, StoreError> {
    let query = SearchQuery {
        resource_type: "Medication",
        facilities: vec![facility],
        criteria: vec![Criterion::Token {
            param: "code",
            values: vec![TokenValue {
                system: Some(code_system(facility_code)),
                code: code.to_owned(),
            }],
        }],
        sort: Vec::new(),
        count: 1,
        offset: 0,
    };
    Ok(kiorex_store::search::search(conn, &query)?
        .matches
        .into_iter()
        .next())
}

/// Whether stored content already says what the file says (ignoring id and meta).
fn same(stored: &Value, wanted: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("id");
            o.remove("meta");
        }
        v
    };
    strip(stored) == strip(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "code,name,form,ingredients\n\
        AMX500,Amoxicillin 500 mg capsule,capsule,amoxicillin trihydrate\n\
        CoAmox,\"Co-amoxiclav 500/125 mg, tablet\",tablet,amoxicillin; clavulanic acid\n\
        PARA1, Paracetamol 1 g ,,\n";

    #[test]
    fn a_spreadsheet_export_is_read_with_quotes_and_blanks() {
        let entries = parse(FILE).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].name, "Co-amoxiclav 500/125 mg, tablet");
        assert_eq!(entries[2].name, "Paracetamol 1 g");
        let m = medication("GEN", &entries[1]);
        assert_eq!(m["code"]["coding"][0]["system"], "urn:kiorex:formulary:GEN");
        assert_eq!(
            m["ingredient"][1]["itemCodeableConcept"]["text"],
            "clavulanic acid"
        );
        assert!(medication("GEN", &entries[2]).get("form").is_none());
        parse_value(ResourceKind::Medication, m).expect("a valid FHIR Medication");
    }

    #[test]
    fn bad_lines_are_named() {
        let problems = parse("code,name\nX1,\nX2,Two\nX2,Again\n").unwrap_err();
        assert_eq!(
            problems,
            vec![
                "line 2: code and name are required",
                "line 4: code X2 appears twice"
            ]
        );
        assert!(parse("code,name\n\"A,B\n").is_err());
    }
}
