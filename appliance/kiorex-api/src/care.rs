//! Care relationships and break-the-glass: a clinician outside a patient's care gives a reason
//! and gets time-limited access to that one patient; the privacy officer reviews every such
//! access afterwards (approve or flag).

use crate::auth::{Caller, RequestId};
use crate::error::ApiError;
use crate::identity::local::security_event;
use crate::records::{Ctx, patient_of_stored};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use http::StatusCode;
use kiorex_domain::identity::{is_clinical, needs_care_relationship};
use kiorex_domain::permission::{Action, Permission, Principal, Resource};
use kiorex_fhir::ResourceKind;
use kiorex_store::care::{self, Assignment, BreakGlass};
use kiorex_store::{accounts, resources};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/patients/{id}/break-glass", post(break_glass))
        .route("/break-glass", get(review_queue))
        .route("/break-glass/{id}/review", post(review))
        .route("/care-assignments", post(assign))
}

fn reply<T: Serialize>(rid: &str, status: StatusCode, result: Result<T, ApiError>) -> Response {
    match result {
        Ok(body) => (status, Json(body)).into_response(),
        Err(e) => e.render(crate::error::Dialect::Problem, rid),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    /// Why: at least a few words ("cardiac arrest in corridor B, patient's nurse unreachable").
    pub reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BreakGlassGranted {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// Breaks the glass for one patient: time-limited access, audited with the reason, queued for
/// review.
async fn break_glass(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Path(patient_id): Path<Uuid>,
    Json(body): Json<BreakGlassRequest>,
) -> Response {
    let result = open_the_glass(&state, &principal, patient_id, &body.reason, &rid.0).await;
    reply(&rid.0, StatusCode::CREATED, result)
}

/// The rule behind break-the-glass, shared by the API and the portal.
pub async fn open_the_glass(
    state: &AppState,
    principal: &Principal,
    patient_id: Uuid,
    reason: &str,
    request_id: &str,
) -> Result<BreakGlassGranted, ApiError> {
    let reason = reason.trim().to_owned();
    if reason.chars().count() < 10 {
        return Err(ApiError::bad_request(
            "KX-ACC-003",
            "say why you need this record (at least a few words); the reason is reviewed",
        ));
    }
    let patient = state
        .store
        .run(move |conn| resources::read(conn, ResourceKind::Patient.name(), patient_id))
        .await
        .map_err(|e| match e {
            kiorex_store::StoreError::NotFound => {
                ApiError::not_found(format!("Patient/{patient_id}"))
            }
            other => other.into(),
        })?;
    // Only people who could see the chart with a care relationship may break the glass:
    // the glass opens the care rule, not the role's limits.
    let treats_here = principal.grants.iter().any(|g| {
        g.facility_id == patient.facility_id
            && needs_care_relationship(g.role)
            && g.role
                .permissions()
                .iter()
                .any(|p| is_clinical(p.resource) && p.action == Action::Read)
    });
    if !treats_here {
        return Err(ApiError::forbidden(
            "breaking the glass is for clinicians of this patient's facility",
        ));
    }
    let now = Utc::now();
    let grant = BreakGlass {
        id: Uuid::new_v4(),
        user_id: principal.user_id,
        username: principal.username.clone(),
        patient_id,
        facility_id: patient.facility_id,
        reason: reason.clone(),
        granted_at: now,
        expires_at: now + Duration::seconds(state.identity.settings.break_glass_seconds),
        review_status: "pending".into(),
        reviewed_by: None,
        reviewed_at: None,
        review_note: None,
    };
    let saved = grant.clone();
    state
        .store
        .run(move |conn| care::grant_break_glass(conn, &saved))
        .await?;
    tracing::warn!(target: "kiorex::security", event = "break-glass", user = %principal.username, request_id, "break-the-glass access granted");
    state
        .audit
        .by(
            principal,
            request_id,
            vec![crate::audit::Event {
                action: "break-glass",
                outcome: "success",
                resource_type: "Patient",
                resource_id: patient_id.to_string(),
                patient_id: Some(patient_id),
                facility_id: Some(patient.facility_id),
                detail: reason,
            }],
        )
        .await?;
    Ok(BreakGlassGranted {
        id: grant.id,
        patient_id,
        expires_at: grant.expires_at,
    })
}

#[derive(Debug, Deserialize)]
struct QueueQuery {
    status: Option<String>,
}

/// The privacy officer's queue of break-the-glass events (auditor role).
async fn review_queue(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Query(q): Query<QueueQuery>,
) -> Response {
    let status = q.status.filter(|s| !s.is_empty() && s != "all");
    reply(
        &rid.0,
        StatusCode::OK,
        queue_for(&state, &principal, status).await,
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// `approve` or `flag`.
    pub decision: String,
    #[serde(default)]
    pub note: String,
}

/// Records the privacy officer's decision on one break-the-glass event.
async fn review(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Review>,
) -> Response {
    let result = decide(&state, &principal, id, &body.decision, &body.note, &rid.0).await;
    reply(&rid.0, StatusCode::OK, result)
}

/// The review rule, shared by the API and the portal: auditors of the event's facility decide,
/// nobody on their own access.
pub async fn decide(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    decision: &str,
    note: &str,
    request_id: &str,
) -> Result<serde_json::Value, ApiError> {
    let status = match decision {
        "approve" => "approved",
        "flag" => "flagged",
        _ => {
            return Err(ApiError::bad_request(
                "KX-REQ-001",
                "decision is approve or flag",
            ));
        }
    };
    let event = state
        .store
        .run(move |conn| care::find_break_glass(conn, id))
        .await?;
    if !principal.may(
        Permission::new(Resource::Audit, Action::Read),
        event.facility_id,
    ) {
        return Err(ApiError::forbidden(
            "you do not review this facility's events",
        ));
    }
    if event.username == principal.username {
        return Err(ApiError::forbidden(
            "nobody reviews their own break-the-glass access",
        ));
    }
    let (by, saved_note) = (principal.username.clone(), note.to_owned());
    let now = Utc::now();
    state
        .store
        .run(move |conn| care::review(conn, id, status, &by, &saved_note, now))
        .await?;
    let mut audited = security_event("break-glass-review", "success", format!("{status}: {note}"));
    audited.patient_id = Some(event.patient_id);
    audited.facility_id = Some(event.facility_id);
    audited.resource_type = "Patient";
    audited.resource_id = event.patient_id.to_string();
    state.audit.by(principal, request_id, vec![audited]).await?;
    Ok(serde_json::json!({"id": id, "review_status": status}))
}

/// Break-the-glass events the auditor may review, pending first.
pub async fn queue_for(
    state: &AppState,
    principal: &Principal,
    status: Option<String>,
) -> Result<Vec<BreakGlass>, ApiError> {
    let facilities = principal.facilities_with(Permission::new(Resource::Audit, Action::Read));
    if facilities.is_empty() {
        return Err(ApiError::forbidden("the review queue is for auditors"));
    }
    if let Some(s) = &status
        && !["pending", "approved", "flagged"].contains(&s.as_str())
    {
        return Err(ApiError::bad_request(
            "KX-REQ-001",
            "status is pending, approved, flagged or all",
        ));
    }
    Ok(state
        .store
        .run(move |conn| care::review_queue(conn, &facilities, status.as_deref(), 500))
        .await?)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRequest {
    pub username: String,
    pub patient_id: Uuid,
    /// Ward list, care team, consult …
    pub reason: String,
    pub until: Option<DateTime<Utc>>,
}

/// Puts a patient on a clinician's list (ward sister, charge nurse, IT for feeds).
async fn assign(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Json(body): Json<AssignmentRequest>,
) -> Response {
    let result = async {
        let ctx = Ctx::new(&state, principal.clone(), &rid.0);
        let patient =
            crate::records::read(&state, &ctx, ResourceKind::Patient, body.patient_id).await?;
        let facility = patient.facility_id;
        let allowed = principal.may(
            Permission::new(Resource::Encounter, Action::Write),
            facility,
        ) || principal.may(Permission::new(Resource::User, Action::Write), facility);
        if !allowed {
            return Err(ApiError::forbidden(
                "you may not assign patients at this facility",
            ));
        }
        let until = body.until;
        let name = body.username.clone();
        let by = principal.username.clone();
        let reason = body.reason.clone();
        let patient_id = patient_of_stored(&patient).unwrap_or(body.patient_id);
        let id = state
            .store
            .run(move |conn| {
                let user = accounts::find_by_username(conn, &name)?
                    .ok_or(kiorex_store::StoreError::NotFound)?;
                care::assign(
                    conn,
                    &Assignment {
                        user_id: user.id,
                        patient_id,
                        facility_id: facility,
                        reason: &reason,
                        from: Utc::now(),
                        until,
                        created_by: &by,
                    },
                )
            })
            .await
            .map_err(|e| match e {
                kiorex_store::StoreError::NotFound => {
                    ApiError::not_found(format!("user {}", body.username))
                }
                other => other.into(),
            })?;
        Ok(serde_json::json!({"id": id}))
    };
    reply(&rid.0, StatusCode::CREATED, result.await)
}
