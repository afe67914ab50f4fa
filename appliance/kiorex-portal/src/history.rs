//! A record's history: every version, newest first, with who made it, when, and which fields
//! changed from the version before (old value → new value). Read through the same history
//! service as FHIR `_history`, so it is permission-checked and audited like any read.

use crate::pages::{ctx as request_ctx, error_page, html_page, idle};
use crate::{Staff, page};
use axum::extract::{Path, State};
use axum::response::Response;
use kiorex_api::AppState;
use kiorex_api::auth::RequestId;
use kiorex_api::error::ApiError;
use kiorex_api::history::{self, Wanted};
use kiorex_fhir::ResourceKind;
use kiorex_store::resources::HistoryEntry;
use maud::{Markup, html};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// At most this many versions on the page (a record edited more often than this is rare; the
/// FHIR `_history` pages through all of them).
const MAX_VERSIONS: i64 = 200;

/// One field that differs between two versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The fields that differ between `before` and `after`, by readable path (`name.family`,
/// `telecom[2].value`), leaving out what the server stamps on every version (`meta`, `id`).
pub fn changed_fields(before: Option<&Value>, after: &Value) -> Vec<FieldChange> {
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    if let Some(b) = before {
        flatten("", b, &mut old);
    }
    flatten("", after, &mut new);
    let fields: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    fields
        .into_iter()
        .filter(|f| old.get(*f) != new.get(*f))
        .map(|f| FieldChange {
            field: f.clone(),
            before: old.get(f).cloned(),
            after: new.get(f).cloned(),
        })
        .collect()
}

fn flatten(path: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if path.is_empty() && matches!(key.as_str(), "meta" | "id" | "resourceType") {
                    continue;
                }
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                // The first element reads as the field itself; later ones are numbered from 2.
                let p = if i == 0 {
                    path.to_owned()
                } else {
                    format!("{path}[{}]", i + 1)
                };
                flatten(&p, v, out);
            }
        }
        Value::String(s) => {
            out.insert(path.to_owned(), s.clone());
        }
        Value::Null => {}
        other => {
            out.insert(path.to_owned(), other.to_string());
        }
    }
}

fn change_words(change: &str) -> &'static str {
    match change {
        "create" => "Created",
        "update" => "Changed",
        "delete" => "Deleted",
        "merge" => "Merged",
        "unmerge" => "Merge undone",
        _ => "Changed",
    }
}

/// `GET /history/{type}/{id}`: the history of one record.
pub async fn page_history(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path((kind, id)): Path<(String, Uuid)>,
) -> Response {
    let Some(kind) = ResourceKind::from_name(&kind) else {
        let e = ApiError::not_found(format!("A record of type {kind:?}"));
        return error_page(&state, &live, &rid, "History", &e);
    };
    let ctx = request_ctx(&state, &live, &rid);
    let wanted = Wanted {
        kind: Some(kind),
        id: Some(id),
        since: None,
        count: MAX_VERSIONS,
        offset: 0,
    };
    match history::versions(&state, &ctx, wanted).await {
        Ok((versions, _)) if versions.is_empty() => {
            // Nothing released: the record belongs to a patient outside the caller's care.
            let e = ApiError::forbidden("This record's patient is not under your care.");
            error_page(&state, &live, &rid, "History", &e)
        }
        Ok((versions, more)) => html_page(page(
            "Record history",
            Some(&live),
            idle(&state),
            body(kind, &versions, more),
        )),
        Err(e) => error_page(&state, &live, &rid, "History", &e),
    }
}

fn body(kind: ResourceKind, versions: &[HistoryEntry], more: bool) -> Markup {
    let patient = versions
        .first()
        .and_then(|v| kiorex_api::records::patient_of(&v.resource_type, v.id, &v.content));
    html! {
        h1 { "History of this " (kind_words(kind)) }
        @if let Some(p) = patient { p { a href={ "/patients/" (p) } { "Back to the chart" } } }
        @if more { p.banner.warn { "Only the latest " (MAX_VERSIONS) " versions are shown." } }
        ol.history reversed {
            @for (i, v) in versions.iter().enumerate() {
                @let previous = versions.get(i + 1).map(|p| &p.content);
                li.panel {
                    h2 { "Version " (v.version_id) " · " (change_words(&v.change)) }
                    p { (v.last_updated.format("%Y-%m-%d %H:%M:%S UTC")) " by " strong { (v.author) } }
                    @if v.deleted {
                        p { "The record was deleted. Its earlier versions stay readable." }
                    } @else {
                        @let changes = changed_fields(previous, &v.content);
                        @if changes.is_empty() {
                            p.muted { "No field changed." }
                        } @else {
                            table {
                                thead { tr { th { "Field" } th { "Before" } th { "After" } } }
                                tbody {
                                    @for c in &changes {
                                        tr {
                                            td { (c.field) }
                                            td { @if let Some(b) = &c.before { del { (b) } } @else { span.muted { "—" } } }
                                            td { @if let Some(a) = &c.after { ins { (a) } } @else { span.muted { "(removed)" } } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn kind_words(kind: ResourceKind) -> &'static str {
    match kind.name() {
        "Patient" => "patient record",
        "Encounter" => "encounter",
        "Condition" => "diagnosis",
        "Observation" => "observation",
        "AllergyIntolerance" => "allergy",
        "MedicationRequest" => "prescription",
        "ClinicalImpression" => "note",
        _ => "record",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_changed_name_and_a_new_phone_are_listed_with_before_and_after() {
        let v1 = json!({"resourceType": "Patient", "id": "x", "meta": {"versionId": "1"},
            "name": [{"family": "Browne", "given": ["Amelia"]}], "gender": "female"});
        let v2 = json!({"resourceType": "Patient", "id": "x", "meta": {"versionId": "2"},
            "name": [{"family": "Brown", "given": ["Amelia"]}], "gender": "female",
            "telecom": [{"system": "phone", "value": "+254 700"}]});
        let changes = changed_fields(Some(&v1), &v2);
        assert_eq!(
            changes,
            vec![
                FieldChange {
                    field: "name.family".into(),
                    before: Some("Browne".into()),
                    after: Some("Brown".into())
                },
                FieldChange {
                    field: "telecom.system".into(),
                    before: None,
                    after: Some("phone".into())
                },
                FieldChange {
                    field: "telecom.value".into(),
                    before: None,
                    after: Some("+254 700".into())
                },
            ]
        );
    }

    #[test]
    fn the_first_version_lists_every_field_and_meta_is_left_out() {
        let v1 = json!({"resourceType": "Encounter", "id": "e", "meta": {"versionId": "1"},
            "status": "in-progress", "class": {"code": "AMB"}});
        let changes = changed_fields(None, &v1);
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["class.code", "status"]);
    }

    #[test]
    fn later_list_elements_are_numbered_and_removals_show() {
        let before = json!({"given": ["Ann", "Marie"]});
        let after = json!({"given": ["Ann"]});
        assert_eq!(
            changed_fields(Some(&before), &after),
            vec![FieldChange {
                field: "given[2]".into(),
                before: Some("Marie".into()),
                after: None
            }]
        );
    }
}
