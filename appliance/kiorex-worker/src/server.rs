//! The worker's own port: `/health/live`, `/health/ready` (PostgreSQL answers, and Meilisearch
//! when it is the engine) and `/metrics`, for probes, `kiorex healthcheck` and Prometheus.

use crate::metrics::Metrics;
use crate::outbox;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kiorex_search::Engine;
use kiorex_store::Store;
use serde_json::json;
use std::sync::Arc;

#[derive(Clone)]
pub struct Probe {
    pub store: Store,
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
}

pub fn router(probe: Probe) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { axum::Json(json!({"status": "pass"})) }),
        )
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(probe)
}

async fn ready(State(probe): State<Probe>) -> Response {
    let database = probe.store.ping().await.is_ok();
    let search = match &probe.engine {
        Engine::Postgres(_) => true,
        Engine::Meilisearch(m) => m.check().await.is_ok(),
    };
    let word = |ok: bool| if ok { "pass" } else { "fail" };
    let body = json!({
        "status": word(database && search),
        "checks": {"database": word(database), "search": word(search)},
    });
    let status = if database && search {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(probe): State<Probe>) -> Response {
    let lag = probe.store.run(outbox::lag).await.ok();
    (
        [("content-type", "text/plain; version=0.0.4")],
        probe.metrics.render(lag),
    )
        .into_response()
}
