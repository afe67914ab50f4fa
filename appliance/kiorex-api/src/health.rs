//! `/health/live` (the process answers) and `/health/ready` (it can serve: the database answers
//! and no migration is pending). Kubernetes probes and `kiorex healthcheck` use them.

use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

async fn live() -> Response {
    axum::Json(json!({"status": "pass"})).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => {
            axum::Json(json!({"status": "pass", "checks": {"database": "pass"}})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "fail", "checks": {"database": "fail"}})),
            )
                .into_response()
        }
    }
}
