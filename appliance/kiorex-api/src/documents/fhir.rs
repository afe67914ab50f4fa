//! FHIR for documents: `DocumentReference` (create with an inline attachment, read, search by
//! patient and category) and `Binary` (the content, streamed, with Range). A DocumentReference's
//! id is the document's id, and its attachment points at `Binary/<same id>`. Large files are
//! better sent through the REST multipart upload: an inline attachment is base64 inside JSON,
//! bounded by `server.max_body_bytes`.

use super::{Described, DocumentView};
use crate::auth::{FhirCaller, RequestId};
use crate::error::{ApiError, Dialect};
use crate::records::Ctx;
use crate::state::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use kiorex_domain::permission::Action;
use kiorex_fhir::{FHIR_JSON, Issue, IssueCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const CATEGORY_SYSTEM: &str = "urn:kiorex:document-category";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/DocumentReference", get(search).post(create))
        .route("/fhir/DocumentReference/{id}", get(read))
        .route("/fhir/Binary/{id}", get(binary))
}

fn ctx(state: &AppState, caller: FhirCaller, rid: &RequestId) -> Ctx {
    Ctx::new(state, caller.0, &rid.0)
}

fn refusal(e: ApiError, request_id: &str) -> Response {
    let retry = e.status == StatusCode::SERVICE_UNAVAILABLE;
    let mut response = e.render(Dialect::Fhir, request_id);
    if retry {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(super::RETRY_AFTER_SECONDS),
        );
    }
    response
}

fn fhir_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

/// A document as a FHIR DocumentReference.
pub fn document_reference(doc: &DocumentView) -> Value {
    json!({
        "resourceType": "DocumentReference",
        "id": doc.id,
        "meta": {"versionId": doc.version.to_string(), "lastUpdated": doc.updated_at.to_rfc3339()},
        "status": if doc.deleted_at.is_some() { "entered-in-error" } else { "current" },
        "subject": {"reference": format!("Patient/{}", doc.patient_id)},
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": doc.category}]}],
        "description": doc.title,
        "date": doc.created_at.to_rfc3339(),
        "content": [{"attachment": {
            "contentType": doc.content_type,
            "url": format!("Binary/{}", doc.id),
            "size": doc.size,
            "title": doc.file_name,
            "creation": doc.updated_at.to_rfc3339(),
        }}],
    })
}

fn invalid(message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::new(StatusCode::BAD_REQUEST, "KX-DOC-400", message.clone())
        .with_issues(vec![Issue::new(IssueCode::Invalid, message)])
}

/// What a posted DocumentReference asks for: patient, category, title, file name and content.
fn requested(body: &[u8]) -> Result<(Uuid, Described, Vec<u8>), ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| invalid("the body is not valid JSON"))?;
    if value["resourceType"] != "DocumentReference" {
        return Err(invalid("resourceType must be DocumentReference"));
    }
    let patient = value["subject"]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("Patient/"))
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| {
            invalid("subject must reference a Patient: {\"reference\": \"Patient/<id>\"}")
        })?;
    let category = value["category"][0]["coding"][0]["code"]
        .as_str()
        .ok_or_else(|| invalid("category[0].coding[0].code is required, e.g. consent"))?;
    if !kiorex_objects::valid_category(category) {
        return Err(super::bad_category(category));
    }
    let attachment = &value["content"][0]["attachment"];
    let data = attachment["data"]
        .as_str()
        .ok_or_else(|| invalid("content[0].attachment.data (base64) is required; large files go through POST /api/v1/patients/{id}/documents"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| invalid("content[0].attachment.data is not base64"))?;
    let file_name = attachment["title"]
        .as_str()
        .unwrap_or("document")
        .to_owned();
    let title = value["description"]
        .as_str()
        .map_or_else(|| file_name.clone(), str::to_owned);
    Ok((
        patient,
        Described {
            category: category.to_owned(),
            title,
            file_name,
        },
        bytes,
    ))
}

/// 202 for an upload held unscanned: an informational OperationOutcome and where to ask again.
fn held(hold: &super::holds::HoldView) -> Response {
    let outcome = json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": hold.message}],
    });
    let mut response = fhir_json(StatusCode::ACCEPTED, &outcome);
    if let Ok(location) = HeaderValue::from_str(&hold.status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn create(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    body: Bytes,
) -> Response {
    let ctx = ctx(&state, caller, &rid);
    let result = async {
        let objects = super::objects(&state)?;
        let (patient_id, described, bytes) = requested(&body)?;
        let patient =
            super::patient_for(&state, &ctx, patient_id, Action::Write, "document.upload").await?;
        let once =
            futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(bytes))]);
        let spooled = objects
            .spooler
            .spool(once)
            .await
            .map_err(super::spool_error)?;
        super::accept(&state, &ctx, &patient, described, spooled, None).await
    };
    match result.await {
        Ok(super::Accepted::Held(hold)) => held(&hold),
        Ok(super::Accepted::Stored(doc)) => {
            let mut response = fhir_json(StatusCode::CREATED, &document_reference(&doc));
            if let Ok(location) = HeaderValue::from_str(&format!(
                "{}/DocumentReference/{}/_history/{}",
                state.fhir_base(),
                doc.id,
                doc.version
            )) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e) => refusal(e, &rid.0),
    }
}

async fn read(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path(id): Path<String>,
) -> Response {
    let ctx = ctx(&state, caller, &rid);
    let result = async {
        let id = Uuid::parse_str(&id)
            .map_err(|_| ApiError::not_found(format!("DocumentReference/{id}")))?;
        super::describe(&state, &ctx, id).await
    };
    match result.await {
        Ok(doc) => fhir_json(StatusCode::OK, &document_reference(&doc)),
        Err(e) => refusal(e, &rid.0),
    }
}

/// `GET /fhir/DocumentReference?patient=<id>[&category=<code>]`.
async fn search(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let ctx = ctx(&state, caller, &rid);
    let result = async {
        let mut patient = None;
        let mut category = None;
        for (name, value) in &pairs {
            match name.as_str() {
                "patient" | "subject" => {
                    let id = value.strip_prefix("Patient/").unwrap_or(value);
                    patient = Some(
                        Uuid::parse_str(id)
                            .map_err(|_| invalid(format!("{name}={value} is not a patient id")))?,
                    );
                }
                "category" => {
                    category = Some(value.rsplit('|').next().unwrap_or_default().to_owned());
                }
                other => {
                    return Err(invalid(format!(
                        "search parameter {other:?} is not supported for DocumentReference; use patient and category"
                    )));
                }
            }
        }
        let patient = patient
            .ok_or_else(|| invalid("give patient=<id>: documents are searched per patient"))?;
        let filter = super::filter(category, None, None)?;
        super::list(&state, &ctx, patient, filter).await
    };
    match result.await {
        Ok(docs) => {
            let entries: Vec<Value> = docs
                .iter()
                .map(|d| json!({"fullUrl": format!("{}/DocumentReference/{}", state.fhir_base(), d.id), "resource": document_reference(d), "search": {"mode": "match"}}))
                .collect();
            fhir_json(
                StatusCode::OK,
                &json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
            )
        }
        Err(e) => refusal(e, &rid.0),
    }
}

/// The document's current content as raw bytes (FHIR Binary read with the content's own type).
async fn binary(
    State(state): State<AppState>,
    caller: FhirCaller,
    rid: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return refusal(ApiError::not_found(format!("Binary/{id}")), &rid.0);
    };
    super::routes::content(
        &state,
        ctx(&state, caller, &rid),
        &rid,
        id,
        None,
        &headers,
        Dialect::Fhir,
    )
    .await
}
