//! Code lookup for the portals: `GET /api/v1/terminology/icd-10-cm?q=diabetes type 2` or
//! `?q=E11.9`. Any signed-in member of staff may search: a code list holds no patient data, so
//! a search is not audited. The answer names the loaded release, which the picker shows.

use crate::auth::{Caller, RequestId};
use crate::error::{ApiError, Dialect};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use kiorex_store::terminology::{self, ICD10CM};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/terminology/icd-10-cm", get(search_icd10cm))
}

/// One code of a code system.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConceptView {
    pub code: String,
    pub display: String,
    /// Whether the code may be recorded and reported (it has no more specific children).
    pub billable: bool,
}

/// The codes found, and which release of the code system they come from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConceptHits {
    /// e.g. `ICD-10-CM (CDC/NCHS), via simple-icd-10-cm 1.5.0`
    pub system: String,
    /// e.g. `April 2026`
    pub version: String,
    /// The SHA-256 of the loaded file, as recorded when it was loaded.
    pub sha256: String,
    pub concepts: Vec<ConceptView>,
}

fn not_loaded() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "KX-TERM-503",
        "The ICD-10-CM code list is not loaded. IT: run `kiorex migrate`.",
    )
}

/// ICD-10-CM codes matching `typed` (a code prefix, or words of the description).
pub async fn find_icd10cm(
    state: &AppState,
    typed: &str,
    limit: Option<i64>,
) -> Result<ConceptHits, ApiError> {
    let parsed = terminology::parse_typed(typed).ok_or_else(|| {
        ApiError::bad_request(
            "KX-TERM-400",
            "type the start of a code (E11) or words of the diagnosis (type 2 diabetes)",
        )
    })?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let (system, concepts) = state
        .store
        .run(move |conn| {
            let system = terminology::system(conn, ICD10CM)?;
            let concepts = match system {
                Some(_) => terminology::search(conn, ICD10CM, &parsed, limit)?,
                None => Vec::new(),
            };
            Ok((system, concepts))
        })
        .await?;
    let system = system.ok_or_else(not_loaded)?;
    Ok(ConceptHits {
        system: system.name,
        version: system.version,
        sha256: system.sha256,
        concepts: concepts
            .into_iter()
            .map(|c| ConceptView {
                code: c.code,
                display: c.display,
                billable: c.billable,
            })
            .collect(),
    })
}

/// The ICD-10-CM code exactly as typed (dot or not, any case), or a clear refusal: a diagnosis
/// is recorded only with a code that exists in the loaded list.
pub async fn icd10cm_code(state: &AppState, code: &str) -> Result<ConceptView, ApiError> {
    let typed = code.to_owned();
    let (system, concept) = state
        .store
        .run(move |conn| {
            Ok((
                terminology::system(conn, ICD10CM)?,
                terminology::lookup(conn, ICD10CM, &typed)?,
            ))
        })
        .await?;
    system.ok_or_else(not_loaded)?;
    concept
        .map(|c| ConceptView {
            code: c.code,
            display: c.display,
            billable: c.billable,
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "KX-TERM-404",
                format!(
                    "{:?} is not an ICD-10-CM code: pick one from the list",
                    code.trim()
                ),
            )
        })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    q: String,
    limit: Option<i64>,
}

/// Searches ICD-10-CM: a code prefix (`E11`, `e119`) or words of the description in any order
/// (`diabetes type 2`). Billable codes come first.
#[utoipa::path(get, path = "/api/v1/terminology/icd-10-cm", security(("bearer" = [])),
    params(("q" = String, Query, description = "e.g. `E11.9`, `e11`, `diabetes type 2`"),
           ("limit" = Option<i64>, Query, description = "1 to 100, default 20")),
    responses((status = 200, body = ConceptHits), (status = 400, description = "Empty query"),
              (status = 503, description = "The code list is not loaded")))]
async fn search_icd10cm(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    rid: RequestId,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let Query(params) =
            params.map_err(|e| ApiError::bad_request("KX-TERM-400", e.body_text()))?;
        find_icd10cm(&state, &params.q, params.limit).await
    };
    match result.await {
        Ok(hits) => (StatusCode::OK, Json(hits)).into_response(),
        Err(e) => e.render(Dialect::Problem, &rid.0),
    }
}
