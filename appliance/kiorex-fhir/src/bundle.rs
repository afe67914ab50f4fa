//! Bundles: reading `transaction` and `batch` requests, resolving `urn:uuid:` references between
//! their entries, and writing the Bundles the server answers with.

use crate::outcome::{Issue, IssueCode};
use fhir_model::r4b::codes::HTTPVerb;
use fhir_model::r4b::resources::BundleEntryRequest;
use serde_json::{Value, json};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// All entries succeed or nothing is written.
    Transaction,
    /// Each entry on its own.
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// One request inside a Bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct InEntry {
    pub index: usize,
    pub full_url: Option<String>,
    pub resource: Option<Value>,
    pub method: Method,
    pub url: String,
    pub if_match: Option<String>,
    pub if_none_exist: Option<String>,
}

impl InEntry {
    /// FHIRPath of the entry, for issues.
    pub fn path(&self) -> String {
        format!("Bundle.entry[{}]", self.index)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InBundle {
    pub kind: BundleKind,
    pub entries: Vec<InEntry>,
}

/// The most entries one Bundle may carry; larger loads go in several Bundles.
pub const MAX_ENTRIES: usize = 1_000;

pub fn parse_bundle(body: &[u8]) -> Result<InBundle, Vec<Issue>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        vec![Issue::new(
            IssueCode::Structure,
            format!("the body is not valid JSON: {e}"),
        )]
    })?;
    if value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(vec![
            Issue::new(IssueCode::Invalid, "POST to the base URL takes a Bundle")
                .at("resourceType"),
        ]);
    }
    let kind = match value.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        other => {
            return Err(vec![
                Issue::new(
                    IssueCode::Invalid,
                    format!("Bundle.type must be transaction or batch, got {other:?}"),
                )
                .at("Bundle.type"),
            ]);
        }
    };
    let raw_entries = value
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if raw_entries.len() > MAX_ENTRIES {
        return Err(vec![
            Issue::new(
                IssueCode::TooCostly,
                format!("a Bundle may carry at most {MAX_ENTRIES} entries"),
            )
            .at("Bundle.entry"),
        ]);
    }
    let mut entries = Vec::with_capacity(raw_entries.len());
    let mut issues = Vec::new();
    for (index, raw) in raw_entries.into_iter().enumerate() {
        match entry(index, raw) {
            Ok(e) => entries.push(e),
            Err(issue) => issues.push(issue.within(&format!("Bundle.entry[{index}]"))),
        }
    }
    if issues.is_empty() {
        Ok(InBundle { kind, entries })
    } else {
        Err(issues)
    }
}

fn entry(index: usize, mut raw: Value) -> Result<InEntry, Issue> {
    let request_json = raw.get_mut("request").map(Value::take).ok_or_else(|| {
        Issue::new(IssueCode::Required, "each entry needs a request").at("request")
    })?;
    let request: BundleEntryRequest =
        serde_path_to_error::deserialize(&request_json).map_err(|e| {
            Issue::new(IssueCode::Value, e.inner().to_string()).at(format!("request.{}", e.path()))
        })?;
    let method = match request.method {
        HTTPVerb::Get => Method::Get,
        HTTPVerb::Post => Method::Post,
        HTTPVerb::Put => Method::Put,
        HTTPVerb::Delete => Method::Delete,
        other => {
            return Err(Issue::new(
                IssueCode::NotSupported,
                format!("{other} entries are not supported"),
            )
            .at("request.method"));
        }
    };
    let resource = raw.get_mut("resource").map(Value::take);
    if matches!(method, Method::Post | Method::Put) && resource.is_none() {
        return Err(
            Issue::new(IssueCode::Required, "POST and PUT entries need a resource").at("resource"),
        );
    }
    Ok(InEntry {
        index,
        full_url: raw
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_owned),
        resource,
        method,
        url: request.url,
        if_match: request.if_match,
        if_none_exist: request.if_none_exist,
    })
}

/// Replaces every `reference` whose value is a key of `resolved` (a `urn:uuid:` fullUrl of
/// another entry) with the `Type/id` that entry was given.
pub fn resolve_references(value: &mut Value, resolved: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if key == "reference" => {
                        if let Some(target) = resolved.get(s.as_str()) {
                            *s = target.clone();
                        }
                    }
                    _ => resolve_references(v, resolved),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| resolve_references(v, resolved)),
        _ => {}
    }
}

/// A `searchset` Bundle. `entries` are (fullUrl, resource, mode) triples.
pub fn searchset(
    self_link: &str,
    next_link: Option<&str>,
    previous_link: Option<&str>,
    entries: Vec<(String, Value, &str)>,
) -> Value {
    let mut links = vec![json!({"relation": "self", "url": self_link})];
    if let Some(next) = next_link {
        links.push(json!({"relation": "next", "url": next}));
    }
    if let Some(previous) = previous_link {
        links.push(json!({"relation": "previous", "url": previous}));
    }
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|(full_url, resource, mode)| json!({"fullUrl": full_url, "resource": resource, "search": {"mode": mode}}))
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries})
}

/// One version in a `history` Bundle.
pub struct HistoryItem {
    pub full_url: String,
    pub resource: Option<Value>,
    pub method: &'static str,
    pub url: String,
    pub last_modified: String,
}

pub fn history(self_link: &str, next_link: Option<&str>, items: Vec<HistoryItem>) -> Value {
    let mut links = vec![json!({"relation": "self", "url": self_link})];
    if let Some(next) = next_link {
        links.push(json!({"relation": "next", "url": next}));
    }
    let entries: Vec<Value> = items
        .into_iter()
        .map(|i| {
            let mut e = json!({"fullUrl": i.full_url, "request": {"method": i.method, "url": i.url},
                               "response": {"status": if i.method == "DELETE" { "204" } else { "200" }, "lastModified": i.last_modified}});
            if let Some(resource) = i.resource {
                e["resource"] = resource;
            }
            e
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "history", "link": links, "entry": entries})
}

/// The answer to one entry of a transaction or batch.
pub struct EntryResponse {
    pub status: String,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub resource: Option<Value>,
    pub outcome: Option<Value>,
}

pub fn transaction_response(kind: BundleKind, responses: Vec<EntryResponse>) -> Value {
    let entries: Vec<Value> = responses
        .into_iter()
        .map(|r| {
            let mut response = json!({"status": r.status});
            for (key, value) in [
                ("location", r.location),
                ("etag", r.etag),
                ("lastModified", r.last_modified),
            ] {
                if let Some(v) = value {
                    response[key] = Value::String(v);
                }
            }
            if let Some(outcome) = r.outcome {
                response["outcome"] = outcome;
            }
            let mut entry = json!({"response": response});
            if let Some(resource) = r.resource {
                entry["resource"] = resource;
            }
            entry
        })
        .collect();
    let kind = match kind {
        BundleKind::Transaction => "transaction-response",
        BundleKind::Batch => "batch-response",
    };
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_model::r4b::resources::Bundle;

    #[test]
    fn reads_a_transaction_and_resolves_urn_references() {
        let body = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:aaa", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:aaa"}}, "request": {"method": "POST", "url": "Observation"}}
        ]});
        let mut bundle = parse_bundle(body.to_string().as_bytes()).unwrap();
        assert_eq!(bundle.kind, BundleKind::Transaction);
        let resolved = HashMap::from([("urn:uuid:aaa".to_owned(), "Patient/123".to_owned())]);
        let obs = bundle.entries[1].resource.as_mut().unwrap();
        resolve_references(obs, &resolved);
        assert_eq!(obs["subject"]["reference"], "Patient/123");
    }

    #[test]
    fn a_bad_method_names_the_entry() {
        let body = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "FETCH", "url": "Patient"}}]});
        let issues = parse_bundle(body.to_string().as_bytes()).unwrap_err();
        assert!(
            issues[0]
                .expression
                .as_deref()
                .unwrap()
                .starts_with("Bundle.entry[0].request"),
            "{:?}",
            issues[0]
        );
    }

    #[test]
    fn responses_are_valid_r4_bundles() {
        let set = searchset(
            "http://x/fhir/Patient",
            Some("http://x/fhir/Patient?_offset=20"),
            None,
            vec![(
                "http://x/fhir/Patient/1".into(),
                json!({"resourceType": "Patient", "id": "1"}),
                "match",
            )],
        );
        let _: Bundle = serde_json::from_value(set).expect("searchset");
        let tx = transaction_response(
            BundleKind::Transaction,
            vec![EntryResponse {
                status: "201 Created".into(),
                location: Some("Patient/1/_history/1".into()),
                etag: Some("W/\"1\"".into()),
                last_modified: Some("2026-11-22T10:00:00Z".into()),
                resource: None,
                outcome: None,
            }],
        );
        let _: Bundle = serde_json::from_value(tx).expect("transaction-response");
        let h = history(
            "http://x/fhir/Patient/1/_history",
            None,
            vec![HistoryItem {
                full_url: "http://x/fhir/Patient/1".into(),
                resource: None,
                method: "DELETE",
                url: "Patient/1".into(),
                last_modified: "2026-11-22T10:00:00Z".into(),
            }],
        );
        let _: Bundle = serde_json::from_value(h).expect("history");
    }
}
