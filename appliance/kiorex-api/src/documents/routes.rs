//! HTTP for documents: REST under `/api/v1` (multipart upload, streamed download with Range,
//! list, versions, soft delete) and the FHIR `DocumentReference`/`Binary` reads under `/fhir`.
//! These routes carry their own body limit (the upload limit), not the JSON one.

use super::range::Wanted;
use super::{Described, DocumentView};
use crate::auth::{Caller, RequestId};
use crate::error::{ApiError, Dialect};
use crate::records::Ctx;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use kiorex_domain::permission::Action;
use serde::Deserialize;
use tower_http::limit::RequestBodyLimitLayer;
use uuid::Uuid;

/// Room for the multipart envelope and the form's text fields around the file.
const FORM_OVERHEAD: usize = 64 * 1024;

pub fn routes(upload_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/api/v1/patients/{id}/documents", post(upload).get(list))
        .route("/api/v1/documents/{id}", get(describe).delete(delete))
        .route("/api/v1/documents/{id}/versions", post(upload_version))
        .route("/api/v1/documents/{id}/content", get(download))
        .route("/api/v1/document-holds/{id}", get(hold_status))
        .route(
            "/api/v1/documents/{id}/versions/{version}/content",
            get(download_version),
        )
        .merge(super::fhir::routes())
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(
            upload_limit.saturating_add(FORM_OVERHEAD),
        ))
}

fn ctx(state: &AppState, principal: kiorex_domain::permission::Principal, rid: &RequestId) -> Ctx {
    Ctx::new(state, principal, &rid.0)
}

/// Renders a refusal; the retryable ones say when to come back.
fn refusal(e: ApiError, request_id: &str) -> Response {
    refusal_in(e, request_id, Dialect::Problem)
}

fn refusal_in(e: ApiError, request_id: &str, dialect: Dialect) -> Response {
    let retry = e.status == StatusCode::SERVICE_UNAVAILABLE;
    let mut response = e.render(dialect, request_id);
    if retry {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(super::RETRY_AFTER_SECONDS),
        );
    }
    response
}

/// 201 with the document, or 202 with the hold's status and where to ask again.
fn accepted(rid: &RequestId, result: Result<super::Accepted, ApiError>) -> Response {
    match result {
        Ok(super::Accepted::Stored(doc)) => (StatusCode::CREATED, Json(doc)).into_response(),
        Ok(super::Accepted::Held(hold)) => {
            let mut response = (StatusCode::ACCEPTED, Json(&hold)).into_response();
            if let Ok(location) = HeaderValue::from_str(&hold.status_url) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e) => refusal(e, &rid.0),
    }
}

fn reply<T: serde::Serialize>(
    status: StatusCode,
    rid: &RequestId,
    result: Result<T, ApiError>,
) -> Response {
    match result {
        Ok(body) => (status, Json(body)).into_response(),
        Err(e) => refusal(e, &rid.0),
    }
}

/// Reads the form: `category` and `title` text fields, then the `file` part, spooled to disk as
/// it arrives. The file must come last so that it is checked against a known category.
async fn read_form(
    state: &AppState,
    form: Result<Multipart, MultipartRejection>,
    need_category: bool,
) -> Result<
    (
        Option<String>,
        Option<String>,
        String,
        kiorex_objects::Spooled,
    ),
    ApiError,
> {
    let objects = super::objects(state)?;
    let mut form = form.map_err(|_| {
        ApiError::bad_request(
            "KX-DOC-400",
            "send the document as multipart/form-data with the fields category, title and file",
        )
    })?;
    let form_error = |detail: String| {
        ApiError::bad_request(
            "KX-DOC-400",
            format!("the upload form could not be read: {detail}"),
        )
    };
    let (mut category, mut title) = (None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| form_error(e.body_text()))?
    {
        match field.name().unwrap_or_default() {
            "category" => {
                category = Some(field.text().await.map_err(|e| form_error(e.body_text()))?)
            }
            "title" => title = Some(field.text().await.map_err(|e| form_error(e.body_text()))?),
            "file" => {
                if need_category && category.is_none() {
                    return Err(ApiError::bad_request(
                        "KX-DOC-400",
                        "send the category field before the file",
                    ));
                }
                if let Some(c) = &category
                    && !kiorex_objects::valid_category(c)
                {
                    return Err(super::bad_category(c));
                }
                let file_name = field
                    .file_name()
                    .map(clean_file_name)
                    .unwrap_or_else(|| "document".to_owned());
                let spooled = objects
                    .spooler
                    .spool(Box::pin(field))
                    .await
                    .map_err(super::spool_error)?;
                return Ok((category, title, file_name, spooled));
            }
            other => {
                return Err(ApiError::bad_request(
                    "KX-DOC-400",
                    format!("unknown form field {other:?}; send category, title and file"),
                ));
            }
        }
    }
    Err(ApiError::bad_request(
        "KX-DOC-400",
        "the form has no file field",
    ))
}

/// A file name for display and Content-Disposition: the last path segment, printable, short.
fn clean_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    if cleaned.trim().is_empty() {
        "document".to_owned()
    } else {
        cleaned
    }
}

/// Uploads a document for a patient (multipart form: `category`, optional `title`, `file`).
#[utoipa::path(post, path = "/api/v1/patients/{id}/documents", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", description = "Fields: category (e.g. consent), title (optional), then file"),
    params(("id" = Uuid, Path, description = "The patient")),
    responses((status = 201, body = DocumentView),
              (status = 202, body = super::holds::HoldView, description = "Scanner unavailable and scan.hold_when_unavailable on: held unscanned, not in the record yet; poll Location"),
              (status = 415, description = "Type not allowed (checked by content)"),
              (status = 422, description = "Malware found; quarantined"), (status = 503, description = "Scanner or store unavailable; retry")))]
async fn upload(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    Path(id): Path<Uuid>,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let ctx = ctx(&state, principal, &rid);
    let result = async {
        let patient =
            super::patient_for(&state, &ctx, id, Action::Write, "document.upload").await?;
        let (category, title, file_name, spooled) = read_form(&state, form, true).await?;
        let category = category.unwrap_or_default();
        let described = Described {
            title: title
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| file_name.clone()),
            category,
            file_name,
        };
        super::accept(&state, &ctx, &patient, described, spooled, None).await
    };
    accepted(&rid, result.await)
}

/// Uploads a new version of a document; earlier versions are kept.
#[utoipa::path(post, path = "/api/v1/documents/{id}/versions", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", description = "Fields: title (optional), then file"),
    params(("id" = Uuid, Path, description = "The document")),
    responses((status = 201, body = DocumentView),
              (status = 202, body = super::holds::HoldView, description = "Held unscanned (scanner unavailable); poll Location"),
              (status = 410, description = "The document was deleted")))]
async fn upload_version(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    Path(id): Path<Uuid>,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let ctx = ctx(&state, principal, &rid);
    let result = async {
        let (doc, patient) = super::for_new_version(&state, &ctx, id).await?;
        let (_, title, file_name, spooled) = read_form(&state, form, false).await?;
        let described = Described {
            category: doc.category.clone(),
            title: title.unwrap_or(doc.title),
            file_name,
        };
        super::accept(&state, &ctx, &patient, described, spooled, Some(id)).await
    };
    accepted(&rid, result.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    category: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// A patient's documents, newest first, optionally by category and date (`from` ≤ created < `to`).
#[utoipa::path(get, path = "/api/v1/patients/{id}/documents", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The patient"),
           ("category" = Option<String>, Query, description = "e.g. referral"),
           ("from" = Option<String>, Query, description = "2026-11-01"), ("to" = Option<String>, Query, description = "2026-12-01")),
    responses((status = 200, body = Vec<DocumentView>)))]
async fn list(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    Path(id): Path<Uuid>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ctx = ctx(&state, principal, &rid);
    let result = async {
        let Query(q) = query.map_err(|e| ApiError::bad_request("KX-DOC-400", e.body_text()))?;
        let filter = super::filter(q.category, q.from.as_deref(), q.to.as_deref())?;
        super::list(&state, &ctx, id, filter).await
    };
    reply(StatusCode::OK, &rid, result.await)
}

/// A document with its version history.
#[utoipa::path(get, path = "/api/v1/documents/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The document")), responses((status = 200, body = DocumentView)))]
async fn describe(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    Path(id): Path<Uuid>,
) -> Response {
    let ctx = ctx(&state, principal, &rid);
    reply(
        StatusCode::OK,
        &rid,
        super::describe(&state, &ctx, id).await,
    )
}

/// The status of an upload held unscanned while the virus scanner was unavailable.
#[utoipa::path(get, path = "/api/v1/document-holds/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The hold, from the 202 answer to an upload")),
    responses((status = 200, body = super::holds::HoldView)))]
async fn hold_status(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    Path(id): Path<Uuid>,
) -> Response {
    let ctx = ctx(&state, principal, &rid);
    reply(
        StatusCode::OK,
        &rid,
        super::holds::status(&state, &ctx, id).await,
    )
}

/// Soft-deletes a document (kept for the retention period).
#[utoipa::path(delete, path = "/api/v1/documents/{id}", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The document")), responses((status = 200, body = DocumentView)))]
async fn delete(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    Path(id): Path<Uuid>,
) -> Response {
    let ctx = ctx(&state, principal, &rid);
    reply(StatusCode::OK, &rid, super::delete(&state, &ctx, id).await)
}

/// The current version's content, streamed; honours a single `Range`.
#[utoipa::path(get, path = "/api/v1/documents/{id}/content", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The document")),
    responses((status = 200, description = "The content"), (status = 206, description = "The requested range"),
              (status = 416, description = "Range outside the document")))]
async fn download(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Response {
    content(
        &state,
        ctx(&state, principal, &rid),
        &rid,
        id,
        None,
        &headers,
        Dialect::Problem,
    )
    .await
}

/// One version's content, streamed; honours a single `Range`.
#[utoipa::path(get, path = "/api/v1/documents/{id}/versions/{version}/content", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The document"), ("version" = i32, Path, description = "1, 2, …")),
    responses((status = 200, description = "The content"), (status = 206, description = "The requested range")))]
async fn download_version(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    Path((id, version)): Path<(Uuid, i32)>,
    headers: HeaderMap,
) -> Response {
    content(
        &state,
        ctx(&state, principal, &rid),
        &rid,
        id,
        Some(version),
        &headers,
        Dialect::Problem,
    )
    .await
}

/// Streams a version's content (shared by REST and FHIR Binary).
pub(super) async fn content(
    state: &AppState,
    ctx: Ctx,
    rid: &RequestId,
    id: Uuid,
    version: Option<i32>,
    headers: &HeaderMap,
    dialect: Dialect,
) -> Response {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let opened = match super::open(state, &ctx, id, version, range).await {
        Ok(opened) => opened,
        Err(e) => {
            let size = e.extra.as_ref().and_then(|x| x["size"].as_i64());
            let mut response = refusal_in(e, &rid.0, dialect);
            if let Some(size) = size {
                response.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
                );
            }
            return response;
        }
    };
    let size = opened.version.size_bytes as u64;
    let (status, length, content_range) = match opened.range {
        Wanted::Part(first, last) => (
            StatusCode::PARTIAL_CONTENT,
            last - first + 1,
            Some(format!("bytes {first}-{last}/{size}")),
        ),
        _ => (StatusCode::OK, size, None),
    };
    let mut response = Response::new(Body::from_stream(opened.body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("-"));
    h.insert(header::CONTENT_TYPE, value(&opened.version.content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::ETAG,
        value(&format!("\"{}\"", opened.version.sha256)),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        value(&format!(
            "attachment; filename=\"{}\"",
            opened
                .version
                .file_name
                .replace(|c: char| !c.is_ascii(), "_")
        )),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Some(content_range) = content_range {
        h.insert(header::CONTENT_RANGE, value(&content_range));
    }
    response
}
