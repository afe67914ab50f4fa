//! What went wrong, as FHIR says it: `OperationOutcome` issues with a code, a plain-language
//! message and the FHIRPath of the offending element.

use serde_json::{Value, json};

/// The FHIR `IssueType` codes Kiorex uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    Invalid,
    Structure,
    Required,
    Value,
    CodeInvalid,
    NotSupported,
    NotFound,
    Deleted,
    Conflict,
    Duplicate,
    Forbidden,
    Login,
    TooCostly,
    Exception,
    Processing,
    Informational,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::NotSupported => "not-supported",
            IssueCode::NotFound => "not-found",
            IssueCode::Deleted => "deleted",
            IssueCode::Conflict => "conflict",
            IssueCode::Duplicate => "duplicate",
            IssueCode::Forbidden => "forbidden",
            IssueCode::Login => "login",
            IssueCode::TooCostly => "too-costly",
            IssueCode::Exception => "exception",
            IssueCode::Processing => "processing",
            IssueCode::Informational => "informational",
        }
    }
}

/// One problem with a request, located by a FHIRPath expression where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub code: IssueCode,
    pub message: String,
    pub expression: Option<String>,
}

impl Issue {
    pub fn new(code: IssueCode, message: impl Into<String>) -> Self {
        Issue {
            code,
            message: message.into(),
            expression: None,
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    /// The same issue, located inside a containing element (a Bundle entry).
    pub fn within(mut self, prefix: &str) -> Self {
        self.expression = Some(match self.expression.take() {
            Some(inner) => format!("{prefix}.{inner}"),
            None => prefix.to_owned(),
        });
        self
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.expression {
            Some(at) => write!(f, "{}: {}", at, self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// An OperationOutcome with error issues; `request_id` lets IT find the request in the logs.
pub fn operation_outcome(issues: &[Issue], request_id: &str) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut issue = json!({
                "severity": if i.code == IssueCode::Informational { "information" } else { "error" },
                "code": i.code.as_str(),
                "diagnostics": format!("{} (request {request_id})", i.message),
            });
            if let Some(at) = &i.expression {
                issue["expression"] = json!([at]);
            }
            issue
        })
        .collect();
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_model::r4b::resources::OperationOutcome;

    #[test]
    fn outcome_is_a_valid_r4_operation_outcome() {
        let issue = Issue::new(IssueCode::Value, "not a date")
            .at("Patient.birthDate")
            .within("Bundle.entry[2].resource");
        let value = operation_outcome(&[issue], "req-1");
        let parsed: OperationOutcome =
            serde_json::from_value(value.clone()).expect("valid OperationOutcome");
        assert_eq!(parsed.issue.len(), 1);
        assert_eq!(
            value["issue"][0]["expression"][0],
            "Bundle.entry[2].resource.Patient.birthDate"
        );
        assert!(
            value["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("req-1")
        );
    }
}
