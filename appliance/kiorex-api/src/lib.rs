//! The HTTP surface of the `core` role: REST for the portals under `/api/v1`, FHIR R4 under
//! `/fhir`, the OpenAPI document, and health. Handlers are thin: they extract, call the records
//! service, and map the result; every patient-data path goes through an access check and the
//! audit trail.

pub mod admin;
pub mod audit;
pub mod audit_review;
pub mod auth;
pub mod care;
pub mod chart;
pub mod documents;
pub mod error;
pub mod facility_settings;
pub mod fhir;
pub mod formulary;
pub mod health;
pub mod history;
pub mod identity;
pub mod metrics;
pub mod openapi;
pub mod patient_search;
pub mod records;
pub mod registration;
pub mod rest;
pub mod state;
pub mod system_health;
pub mod terminology;

pub use state::{ApiSettings, AppState};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use http::HeaderName;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole router of the `core` role.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The router with `extra` routes under the same layers (the staff portal, on the LAN
/// listener only; the internal listener the edge reaches serves [`router`] alone).
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let body_limit = state.settings.max_body_bytes;
    let upload_limit = state
        .documents
        .as_ref()
        .map_or(body_limit, |d| d.spooler.max_bytes as usize);
    Router::new()
        .merge(extra)
        .merge(health::routes())
        .merge(identity::routes::oauth_routes())
        .nest(
            "/api/v1",
            rest::routes()
                .merge(identity::routes::routes())
                .merge(care::routes())
                .merge(audit_review::routes()),
        )
        .nest("/fhir", audit_review::fhir_routes().merge(fhir::routes()))
        .merge(patient_search::routes())
        .merge(terminology::routes())
        // Refuse an announced oversized body from its Content-Length, before reading any of it;
        // bodies without a length are cut off when they pass the limit.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(body_limit))
        // Documents carry their own (upload) limit, so they are added after the JSON limit.
        .merge(documents::routes::routes(upload_limit))
        .layer(axum::middleware::from_fn(error::catch_unhandled))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}
