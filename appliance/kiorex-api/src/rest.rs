//! REST for the portals under `/api/v1`: sign-in, registration with duplicate detection,
//! merges, the duplicate review list, facilities, and the OpenAPI document.

use crate::audit::Event;
use crate::auth::{Caller, RequestId};
use crate::error::{ApiError, Dialect};
use crate::records::Ctx;
use crate::registration::{self, Merged, Registered, Registration};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State, rejection::JsonRejection};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use kiorex_domain::permission::{Action, Permission, Resource};
use kiorex_fhir::{Issue, IssueCode};
use kiorex_store::{facilities, review};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/token", post(token))
        .route("/patients", post(register))
        .route("/patients/{id}/merge", post(merge))
        .route("/merges/{id}/undo", post(unmerge))
        .route("/duplicates", get(duplicates))
        .route("/facilities", get(list_facilities))
        .route("/openapi.json", get(openapi))
}

fn rest_result<T: Serialize>(
    request_id: &str,
    status: StatusCode,
    result: Result<T, ApiError>,
) -> Response {
    match result {
        Ok(body) => (status, Json(body)).into_response(),
        Err(e) => e.render(Dialect::Problem, request_id),
    }
}

/// A JSON body, or a problem+json naming what is wrong with it.
fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(v)| v).map_err(|rejection| {
        let message = match &rejection {
            JsonRejection::JsonDataError(e) => {
                std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string)
            }
            JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON".to_owned(),
            JsonRejection::MissingJsonContentType(_) => {
                "send Content-Type: application/json".to_owned()
            }
            other => other.body_text(),
        };
        ApiError::new(
            rejection.status(),
            "KX-REQ-001",
            "The request body is not valid",
        )
        .with_issues(vec![Issue::new(IssueCode::Invalid, message)])
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub username: String,
    pub password: String,
    /// The 6-digit code, for accounts with a second factor.
    pub totp_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

/// Exchanges a local account's username and password for a short-lived bearer token.
#[utoipa::path(post, path = "/api/v1/auth/token", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "Wrong username or password")))]
async fn token(
    State(state): State<AppState>,
    rid: RequestId,
    origin: crate::identity::routes::Origin,
    payload: Result<Json<TokenRequest>, JsonRejection>,
) -> Response {
    let result = async {
        let request = body(payload)?;
        let creds = crate::identity::local::Credentials {
            username: request.username,
            password: request.password,
            totp_code: request.totp_code,
            recovery_code: None,
        };
        let account =
            crate::identity::local::sign_in(&state, &creds, &origin.address, &rid.0).await?;
        let principal = kiorex_domain::permission::Principal::person(
            account.user_id,
            account.username,
            account.grants,
        );
        Ok(TokenResponse {
            access_token: state.tokens.issue(&principal)?,
            token_type: "Bearer",
            expires_in: state.tokens.ttl_seconds(),
        })
    };
    rest_result(&rid.0, StatusCode::OK, result.await)
}

/// Registers a patient. Answers 409 with the likely duplicates when a strong match exists and no
/// `override_reason` is given.
#[utoipa::path(post, path = "/api/v1/patients", request_body = Registration, security(("bearer" = [])),
    responses((status = 201, body = Registered), (status = 409, description = "Likely duplicate; the body lists the matches"),
              (status = 422, description = "Invalid registration")))]
async fn register(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    payload: Result<Json<Registration>, JsonRejection>,
) -> Response {
    let result = async {
        let registration = body(payload)?;
        registration::register(&state, &Ctx::new(&state, principal, &rid.0), registration).await
    };
    rest_result(&rid.0, StatusCode::CREATED, result.await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The record that stays; the one in the path is retired into it.
    pub survivor_id: Uuid,
}

/// Merges the patient in the path into `survivor_id`.
#[utoipa::path(post, path = "/api/v1/patients/{id}/merge", request_body = MergeRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The duplicate record to retire")),
    responses((status = 200, body = Merged), (status = 409, description = "Already merged or different facilities")))]
async fn merge(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    Path(id): Path<Uuid>,
    payload: Result<Json<MergeRequest>, JsonRejection>,
) -> Response {
    let result = async {
        let request = body(payload)?;
        registration::merge_patients(
            &state,
            &Ctx::new(&state, principal, &rid.0),
            id,
            request.survivor_id,
        )
        .await
    };
    rest_result(&rid.0, StatusCode::OK, result.await)
}

/// Undoes a merge, restoring both records and everything that was moved.
#[utoipa::path(post, path = "/api/v1/merges/{id}/undo", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The merge id returned by the merge")),
    responses((status = 200, body = Merged), (status = 409, description = "Already undone, or records changed since")))]
async fn unmerge(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
    Path(id): Path<Uuid>,
) -> Response {
    let result = registration::unmerge(&state, &Ctx::new(&state, principal, &rid.0), id).await;
    rest_result(&rid.0, StatusCode::OK, result)
}

/// Possible duplicates accepted from partner systems, oldest first.
#[utoipa::path(get, path = "/api/v1/duplicates", security(("bearer" = [])), responses((status = 200, description = "Open review items")))]
async fn duplicates(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
) -> Response {
    let result = async {
        let scope = principal.facilities_with(Permission::new(Resource::Patient, Action::Merge));
        if scope.is_empty() {
            return Err(ApiError::forbidden(
                "reviewing duplicates needs the patient:merge permission",
            ));
        }
        let items = state
            .store
            .run(move |conn| review::open(conn, &scope, 200))
            .await?;
        let events = items
            .iter()
            .flat_map(|i| [i.patient_id, i.candidate_id])
            .map(|p| Event {
                action: "duplicate-review",
                outcome: "success",
                resource_type: "Patient",
                resource_id: p.to_string(),
                patient_id: Some(p),
                facility_id: None,
                detail: String::new(),
            })
            .collect();
        state.audit.by(&principal, &rid.0, events).await?;
        Ok(items)
    };
    rest_result(&rid.0, StatusCode::OK, result.await)
}

/// The facilities the caller works at.
#[utoipa::path(get, path = "/api/v1/facilities", security(("bearer" = [])), responses((status = 200, description = "Facilities")))]
async fn list_facilities(
    State(state): State<AppState>,
    Caller(principal): Caller,
    rid: RequestId,
) -> Response {
    let result = async {
        let visible = principal.facilities_with(Permission::new(Resource::Facility, Action::Read));
        let all = state.store.run(facilities::all).await?;
        Ok(all
            .into_iter()
            .filter(|f| visible.contains(&f.id))
            .collect::<Vec<_>>())
    };
    rest_result(&rid.0, StatusCode::OK, result.await)
}

async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}
