//! The CapabilityStatement, generated from the same tables that drive the server, so that it
//! says exactly what the server does.

use crate::kind::ResourceKind;
use crate::params::params_of;
use serde_json::{Value, json};

pub fn capability_statement(base_url: &str, software_version: &str, published: &str) -> Value {
    let resources: Vec<Value> = ResourceKind::ALL.into_iter().map(resource_entry).collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "publisher": "Kiorex",
        "kind": "instance",
        "software": {"name": "Kiorex", "version": software_version},
        "implementation": {"description": "Kiorex clinical core", "url": base_url},
        "fhirVersion": crate::FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "description": "Bearer tokens from /api/v1/auth/token; every request is checked against the caller's role at the record's facility and audited.",
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth"}]}]
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "operation": [{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
        }]
    })
}

fn resource_entry(kind: ResourceKind) -> Value {
    let interactions: Vec<Value> = [
        "read",
        "vread",
        "update",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ]
    .iter()
    .map(|code| json!({"code": code}))
    .collect();
    let mut params: Vec<Value> = vec![
        json!({"name": "_id", "type": "token", "documentation": "Resource id"}),
        json!({"name": "_lastUpdated", "type": "date", "documentation": "When the resource last changed"}),
    ];
    params.extend(params_of(kind).iter().map(
        |p| json!({"name": p.name, "type": p.kind.fhir_type(), "documentation": p.documentation}),
    ));
    let includes: Vec<String> = params_of(kind)
        .iter()
        .filter(|p| p.kind.fhir_type() == "reference")
        .map(|p| format!("{}:{}", kind.name(), p.name))
        .collect();
    let mut entry = json!({
        "type": kind.name(),
        "interaction": interactions,
        "versioning": "versioned-update",
        "readHistory": true,
        "updateCreate": false,
        "conditionalCreate": true,
        "conditionalUpdate": false,
        "conditionalDelete": "not-supported",
        "searchInclude": includes,
        "searchParam": params,
    });
    if kind == ResourceKind::Patient {
        entry["operation"] = json!([{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_model::r4b::resources::CapabilityStatement;

    #[test]
    fn is_a_valid_capability_statement_listing_every_kind() {
        let value = capability_statement("http://x/fhir", "0.1.0", "2026-11-22");
        let parsed: CapabilityStatement =
            serde_json::from_value(value.clone()).expect("valid CapabilityStatement");
        assert_eq!(parsed.rest.len(), 1);
        assert_eq!(
            value["rest"][0]["resource"].as_array().unwrap().len(),
            ResourceKind::ALL.len()
        );
    }
}
