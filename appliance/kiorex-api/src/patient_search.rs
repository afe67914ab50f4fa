//! Search for the portals. Front-desk patient search: `GET /api/v1/search/patients?q=okafor
//! 12/03/1980`; document search: `GET /api/v1/search/documents?q=appendicectomy`. The box takes
//! name fragments in any order, with a typo, a birth date, an MRN or a phone number
//! ([`kiorex_search::frontdesk`]). Only patients of facilities where the caller may read
//! patients are searched, and every hit is audited like a read before the list leaves.

use crate::audit::Event;
use crate::auth::{Caller, RequestId};
use crate::error::{ApiError, Dialect};
use crate::records::MRN_SYSTEM_PREFIX;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use kiorex_domain::permission::{Action, Permission, Resource};
use kiorex_search::{DocumentSearch, MedicineSearch, PatientSearch, parse};
use kiorex_store::resources;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/search/patients", get(search_patients))
        .route("/api/v1/search/documents", get(search_documents))
        .route("/api/v1/search/medicines", get(search_medicines))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    q: String,
    limit: Option<usize>,
}

/// One patient in a front-desk hit list.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientHit {
    pub id: Uuid,
    pub facility_id: Uuid,
    pub name: String,
    pub birth_date: Option<String>,
    pub mrn: Option<String>,
    pub score: f64,
}

fn hit(content: &Value, id: Uuid, facility_id: Uuid, score: f64) -> PatientHit {
    let name = content["name"][0].clone();
    let given: Vec<&str> = name["given"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let family = name["family"].as_str().unwrap_or_default();
    let mrn = content["identifier"].as_array().and_then(|ids| {
        ids.iter()
            .find(|i| {
                i["system"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(MRN_SYSTEM_PREFIX))
            })
            .and_then(|i| i["value"].as_str().map(str::to_owned))
    });
    PatientHit {
        id,
        facility_id,
        name: format!("{} {family}", given.join(" ")).trim().to_owned(),
        birth_date: content["birthDate"].as_str().map(str::to_owned),
        mrn,
        score,
    }
}

/// The front-desk search, shared by the API and the portal: what was typed, parsed; hits bounded
/// by the facilities where the caller reads patients; every hit audited.
pub async fn find_patients(
    state: &AppState,
    principal: &kiorex_domain::permission::Principal,
    typed: &str,
    limit: Option<usize>,
    request_id: &str,
) -> Result<Vec<PatientHit>, ApiError> {
    let query = parse(typed);
    if query.is_empty() {
        return Err(ApiError::bad_request(
            "KX-SRCH-400",
            "type a name, a birth date (12/03/1980), an MRN or a phone number",
        ));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let facilities = principal.facilities_with(Permission::new(Resource::Patient, Action::Read));
    let hits = state
        .search
        .find_patients(&query, &facilities, limit)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let ids: Vec<Uuid> = hits.iter().map(|h| h.patient_id).collect();
    let found = state
        .store
        .run(move |conn| resources::read_many(conn, &ids))
        .await?;
    let shown: Vec<PatientHit> = hits
        .iter()
        .filter_map(|h| {
            let stored = found.iter().find(|s| s.id == h.patient_id)?;
            Some(hit(&stored.content, h.patient_id, h.facility_id, h.score))
        })
        .collect();
    let events = shown
        .iter()
        .map(|p| Event {
            action: "search",
            outcome: "success",
            resource_type: "Patient",
            resource_id: p.id.to_string(),
            patient_id: Some(p.id),
            facility_id: Some(p.facility_id),
            detail: "front-desk search".into(),
        })
        .collect();
    state.audit.by(principal, request_id, events).await?;
    Ok(shown)
}

/// Finds patients by name fragments (any order, one typo), birth date (`12/03/1980` or
/// `1980-03-12`), MRN or phone, best first.
#[utoipa::path(get, path = "/api/v1/search/patients", security(("bearer" = [])),
    params(("q" = String, Query, description = "e.g. `okafor ngozi`, `ngo oka 12/03/1980`, `GEN-0001234-7`"),
           ("limit" = Option<usize>, Query, description = "1 to 50, default 10")),
    responses((status = 200, body = Vec<PatientHit>), (status = 400, description = "Empty or unreadable query")))]
async fn search_patients(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let Query(params) =
            params.map_err(|e| ApiError::bad_request("KX-SRCH-400", e.body_text()))?;
        find_patients(&state, &principal, &params.q, params.limit, &rid.0).await
    };
    match result.await {
        Ok(shown) => (StatusCode::OK, Json(shown)).into_response(),
        Err(e) => e.render(Dialect::Problem, &rid.0),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentParams {
    q: String,
    patient: Option<Uuid>,
    limit: Option<usize>,
}

/// One document in a search hit list.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentSearchHit {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub facility_id: Uuid,
    pub title: String,
    pub category: String,
    pub score: f64,
}

/// Finds documents whose extracted text or title holds every word of `q`, optionally of one
/// patient; only documents of patients the caller may read.
#[utoipa::path(get, path = "/api/v1/search/documents", security(("bearer" = [])),
    params(("q" = String, Query, description = "Words from the document, e.g. `appendicectomy`"),
           ("patient" = Option<Uuid>, Query, description = "Only this patient's documents"),
           ("limit" = Option<usize>, Query, description = "1 to 50, default 10")),
    responses((status = 200, body = Vec<DocumentSearchHit>), (status = 400, description = "Empty query")))]
async fn search_documents(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    params: Result<Query<DocumentParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let Query(params) =
            params.map_err(|e| ApiError::bad_request("KX-SRCH-400", e.body_text()))?;
        if params.q.trim().is_empty() {
            return Err(ApiError::bad_request(
                "KX-SRCH-400",
                "type words to look for",
            ));
        }
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let facilities =
            principal.facilities_with(Permission::new(Resource::Patient, Action::Read));
        let hits = state
            .search
            .find_documents(&params.q, params.patient, &facilities, limit)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        // Documents are clinical: a treating role sees only its patients' (care relationship).
        let ctx = crate::records::Ctx::new(&state, principal.clone(), &rid.0);
        let pairs = hits.iter().map(|h| (h.patient_id, h.facility_id)).collect();
        let open = crate::records::patients_open_to(&state, &ctx, pairs).await?;
        let hits: Vec<_> = hits
            .into_iter()
            .filter(|h| open.contains(&h.patient_id))
            .collect();
        let events = hits
            .iter()
            .map(|h| Event {
                action: "search",
                outcome: "success",
                resource_type: "DocumentReference",
                resource_id: h.document_id.to_string(),
                patient_id: Some(h.patient_id),
                facility_id: Some(h.facility_id),
                detail: "document search".into(),
            })
            .collect();
        state.audit.by(&principal, &rid.0, events).await?;
        Ok(hits
            .into_iter()
            .map(|h| DocumentSearchHit {
                id: h.document_id,
                patient_id: h.patient_id,
                facility_id: h.facility_id,
                title: h.title,
                category: h.category,
                score: h.score,
            })
            .collect::<Vec<_>>())
    };
    match result.await {
        Ok(shown) => (StatusCode::OK, Json(shown)).into_response(),
        Err(e) => e.render(Dialect::Problem, &rid.0),
    }
}

/// One formulary entry in a medicines hit list.
#[derive(Debug, Serialize, ToSchema)]
pub struct MedicineSearchHit {
    /// The FHIR `Medication` id.
    pub id: Uuid,
    pub facility_id: Uuid,
    pub name: String,
    pub ingredients: Vec<String>,
    pub form: Option<String>,
    pub score: f64,
}

/// Finds medicines of the hospital formulary (FHIR `Medication`) by name, ingredient or form,
/// by prefix or with a typo. Staff with medication read permission; the formulary is not
/// patient data, so the search is not audited as patient access.
#[utoipa::path(get, path = "/api/v1/search/medicines", security(("bearer" = [])),
    params(("q" = String, Query, description = "e.g. `amoxi`, `amoxicilin 500`, `capsule`"),
           ("limit" = Option<usize>, Query, description = "1 to 50, default 10")),
    responses((status = 200, body = Vec<MedicineSearchHit>), (status = 400, description = "Empty query")))]
async fn search_medicines(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let Query(params) =
            params.map_err(|e| ApiError::bad_request("KX-SRCH-400", e.body_text()))?;
        if params.q.trim().is_empty() {
            return Err(ApiError::bad_request(
                "KX-SRCH-400",
                "type a medicine's name, an ingredient or a form",
            ));
        }
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let facilities =
            principal.facilities_with(Permission::new(Resource::Medication, Action::Read));
        let hits = state
            .search
            .find_medicines(&params.q, &facilities, limit)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        Ok(hits
            .into_iter()
            .map(|h| MedicineSearchHit {
                id: h.medication_id,
                facility_id: h.facility_id,
                name: h.name,
                ingredients: h.ingredients,
                form: h.form,
                score: h.score,
            })
            .collect::<Vec<_>>())
    };
    match result.await {
        Ok(shown) => (StatusCode::OK, Json(shown)).into_response(),
        Err(e) => e.render(Dialect::Problem, &rid.0),
    }
}
