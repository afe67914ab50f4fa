//! One error type for the API and one place that turns it into HTTP: `problem+json` on REST,
//! `OperationOutcome` on FHIR. A 5xx shows the caller only the request id; the detail is logged
//! once, here.

use crate::REQUEST_ID;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use kiorex_fhir::outcome::operation_outcome;
use kiorex_fhir::{Issue, IssueCode};
use kiorex_store::StoreError;
use serde_json::{Value, json};

/// Which dialect an error is reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Problem,
    Fhir,
}

/// An error on its way to the caller. Boxed: it travels through every `Result` of the API, and
/// the happy path should not pay for its size.
#[derive(Debug)]
pub struct ApiError(Box<Problem>);

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    /// Stable, greppable code (`KX-PAT-004`) that the docs explain.
    pub code: &'static str,
    pub title: String,
    pub issues: Vec<Issue>,
    /// Extra members of the problem document (e.g. duplicate candidates).
    pub extra: Option<Value>,
    /// Logged, never shown: why a 5xx happened.
    pub internal: Option<String>,
}

impl std::ops::Deref for ApiError {
    type Target = Problem;
    fn deref(&self) -> &Problem {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut Problem {
        &mut self.0
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, title: impl Into<String>) -> Self {
        ApiError(Box::new(Problem {
            status,
            code,
            title: title.into(),
            issues: Vec::new(),
            extra: None,
            internal: None,
        }))
    }

    pub fn with_issues(mut self, issues: Vec<Issue>) -> Self {
        self.issues = issues;
        self
    }

    pub fn with_extra(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    pub fn invalid(issues: Vec<Issue>) -> Self {
        let status = if issues
            .iter()
            .any(|i| matches!(i.code, IssueCode::Structure))
        {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError::new(status, "KX-REQ-001", "The request is not valid").with_issues(issues)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(StatusCode::BAD_REQUEST, code, message.clone())
            .with_issues(vec![Issue::new(IssueCode::Invalid, message)])
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(StatusCode::UNAUTHORIZED, "KX-AUTH-001", message.clone())
            .with_issues(vec![Issue::new(IssueCode::Login, message)])
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(StatusCode::FORBIDDEN, "KX-ACC-001", message.clone())
            .with_issues(vec![Issue::new(IssueCode::Forbidden, message)])
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        let message = format!("{} was not found", what.into());
        ApiError::new(StatusCode::NOT_FOUND, "KX-REC-404", message.clone())
            .with_issues(vec![Issue::new(IssueCode::NotFound, message)])
    }

    pub fn gone(what: impl Into<String>) -> Self {
        let message = format!("{} was deleted", what.into());
        ApiError::new(StatusCode::GONE, "KX-REC-410", message.clone())
            .with_issues(vec![Issue::new(IssueCode::Deleted, message)])
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(StatusCode::CONFLICT, code, message.clone())
            .with_issues(vec![Issue::new(IssueCode::Conflict, message)])
    }

    pub fn precondition_failed(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "KX-REC-412",
            message.clone(),
        )
        .with_issues(vec![Issue::new(IssueCode::Conflict, message)])
    }

    pub fn not_supported(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "KX-REQ-405",
            message.clone(),
        )
        .with_issues(vec![Issue::new(IssueCode::NotSupported, message)])
    }

    pub fn unavailable(internal: impl Into<String>) -> Self {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "KX-SYS-503",
            "The service is temporarily unavailable; try again shortly",
        );
        e.internal = Some(internal.into());
        e
    }

    pub fn internal(internal: impl Into<String>) -> Self {
        let mut e = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "KX-SYS-500",
            "An unexpected error occurred",
        );
        e.internal = Some(internal.into());
        e
    }

    /// Renders the error in `dialect` for the request `request_id`.
    pub fn render(self, dialect: Dialect, request_id: &str) -> Response {
        if let Some(internal) = &self.internal {
            tracing::error!(code = self.code, request_id, error = %internal, "request failed");
        }
        let (content_type, body) = match dialect {
            Dialect::Fhir => {
                let issues = if self.issues.is_empty() {
                    vec![Issue::new(
                        IssueCode::Exception,
                        format!("{} [{}]", self.title, self.code),
                    )]
                } else {
                    self.issues
                        .iter()
                        .map(|i| Issue {
                            message: format!("{} [{}]", i.message, self.code),
                            ..i.clone()
                        })
                        .collect()
                };
                (
                    "application/fhir+json",
                    operation_outcome(&issues, request_id),
                )
            }
            Dialect::Problem => ("application/problem+json", self.problem(request_id)),
        };
        let mut response = (self.status, body.to_string()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }

    fn problem(&self, request_id: &str) -> Value {
        let errors: Vec<Value> = self
            .issues
            .iter()
            .map(|i| json!({"field": i.expression, "message": i.message}))
            .collect();
        let mut body = json!({
            "type": format!("https://docs.kiorex.org/errors/{}", self.code),
            "title": self.title,
            "status": self.status.as_u16(),
            "code": self.code,
            "request_id": request_id,
        });
        if !errors.is_empty() {
            body["errors"] = Value::Array(errors);
        }
        if let (Some(extra), Some(map)) = (&self.extra, body.as_object_mut())
            && let Some(extra) = extra.as_object()
        {
            map.extend(extra.clone());
        }
        body
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("The record"),
            StoreError::Gone => ApiError::gone("The record"),
            StoreError::VersionConflict { current } => ApiError::precondition_failed(format!(
                "the record was changed by someone else (it is now at version {current}); reload it and try again"
            )),
            StoreError::Conflict(message) => ApiError::conflict("KX-REC-409", message),
            StoreError::Unavailable(detail) => ApiError::unavailable(detail),
            // PostgreSQL aborted the whole transaction to untangle it from a concurrent one:
            // nothing was written, and the same request can simply be sent again.
            StoreError::Database(ref db) if is_concurrency_abort(db) => {
                ApiError::unavailable(e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// A serialization failure (40001) or a deadlock (40P01, which diesel reports by its message).
fn is_concurrency_abort(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::from(e).into()
    }
}

/// The request id that `SetRequestIdLayer` gave this request.
pub fn request_id_of(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// Turns the framework's own rejections (body too large, unsupported path) into our error
/// documents, so that no caller ever sees a bare text error.
pub async fn catch_unhandled(request: Request, next: Next) -> Response {
    let request_id = request_id_of(request.headers());
    let dialect = if request.uri().path().starts_with("/fhir") {
        Dialect::Fhir
    } else {
        Dialect::Problem
    };
    let response = next.run(request).await;
    let is_ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // JSON errors are the API's own; HTML ones are the portal's error pages.
        .is_some_and(|ct| ct.contains("json") || ct.starts_with("text/html"));
    if is_ours || response.status().is_success() || response.status().is_redirection() {
        return response;
    }
    let status = response.status();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "KX-REQ-413", "The request body is too large").with_issues(vec![
                Issue::new(
                    IssueCode::TooCostly,
                    "the request body is larger than this server accepts",
                ),
            ])
        }
        StatusCode::NOT_FOUND => ApiError::not_found("This address"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::not_supported("This method is not allowed here")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "KX-REQ-415",
            "Send JSON (application/json or application/fhir+json)",
        ),
        s if s.is_client_error() => {
            ApiError::new(s, "KX-REQ-400", "The request could not be read").with_issues(vec![
                Issue::new(IssueCode::Invalid, "the request could not be read"),
            ])
        }
        s => ApiError::internal(format!("unhandled status {s}")),
    };
    error.render(dialect, &request_id)
}

#[cfg(test)]
mod concurrency_tests {
    use super::*;
    use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error};

    struct Info(&'static str);

    impl DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn status_of(e: Error) -> StatusCode {
        ApiError::from(StoreError::Database(e)).status
    }

    #[test]
    fn a_transaction_aborted_for_a_concurrent_one_is_retryable_not_a_server_fault() {
        let deadlock = Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(Info("deadlock detected")),
        );
        let serialization = Error::DatabaseError(
            DatabaseErrorKind::SerializationFailure,
            Box::new(Info("could not serialize access")),
        );
        assert_eq!(status_of(deadlock), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(serialization), StatusCode::SERVICE_UNAVAILABLE);
        let other = Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(Info("disk full")));
        assert_eq!(status_of(other), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
