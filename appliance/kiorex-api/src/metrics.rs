//! Core's Prometheus metrics, served on the management listener (`server.admin_listen`), never
//! on the LAN or the edge's listener: requests by listener, method, route and status, their
//! latency, the requests in progress, and the database pool.
//!
//! The route label is the route's template (`/fhir/{type}/{id}`), never the path that was
//! asked for, so no identifier of a patient or a record reaches a time series; paths that match
//! no route share the one label `unmatched`, so a scanner cannot grow the series without bound.

use crate::health;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use http::{Method, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

/// Which of core's listeners a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The hospital LAN: staff portal, LAN API.
    Lan,
    /// The mutual-TLS listener only the edge reaches: partners from outside.
    Internal,
}

impl Listener {
    fn label(self) -> &'static str {
        match self {
            Listener::Lan => "lan",
            Listener::Internal => "internal",
        }
    }
}

/// The label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds of the latency buckets, in seconds: from a cached read to a slow report.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: &'static str,
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    listener: &'static str,
    method: &'static str,
    route: String,
}

/// The registry and the series core updates.
pub struct CoreMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    in_progress: Gauge,
    pool_open: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        // Help texts without a final period: the encoder adds one.
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS)) as fn() -> Histogram,
        );
        let in_progress = Gauge::default();
        let (pool_open, pool_idle, pool_max) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "kiorex_build",
            "The running version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "kiorex_http_requests",
            "Requests answered, by listener, method, route template and status",
            requests.clone(),
        );
        registry.register(
            "kiorex_http_request_duration_seconds",
            "Time from a request's head to its answer's head, by listener, method and route template",
            duration.clone(),
        );
        registry.register(
            "kiorex_http_requests_in_progress",
            "Requests being served now",
            in_progress.clone(),
        );
        registry.register(
            "kiorex_db_pool_connections_open",
            "Database connections the pool holds",
            pool_open.clone(),
        );
        registry.register(
            "kiorex_db_pool_connections_idle",
            "Database connections free for a request; 0 for long means requests wait for one",
            pool_idle.clone(),
        );
        registry.register(
            "kiorex_db_pool_connections_max",
            "The pool's ceiling (database.pool_size)",
            pool_max.clone(),
        );
        CoreMetrics {
            registry,
            requests,
            duration,
            in_progress,
            pool_open,
            pool_idle,
            pool_max,
        }
    }
}

impl CoreMetrics {
    /// Counts one answered request and its latency.
    pub fn answered(
        &self,
        listener: Listener,
        method: &Method,
        route: Option<&str>,
        status: u16,
        seconds: f64,
    ) {
        let (listener, method) = (listener.label(), method_label(method));
        let route = route.unwrap_or(UNMATCHED).to_owned();
        self.duration
            .get_or_create(&RouteLabels {
                listener,
                method,
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                listener,
                method,
                route,
                status,
            })
            .inc();
    }

    /// The OpenMetrics text, with the pool's state as of now.
    pub fn render(&self, pool: kiorex_store::PoolState) -> String {
        self.pool_open.set(pool.open.into());
        self.pool_idle.set(pool.idle.into());
        self.pool_max.set(pool.max.into());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A fixed label per method: anything else a client sends is `other`, so an invented method
/// cannot grow the series.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 7] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("other", |(_, label)| label)
}

/// Takes a request out of the in-progress gauge however its handling ends (a client that goes
/// away drops the handler's future).
struct InProgress(Gauge);

impl InProgress {
    fn start(gauge: &Gauge) -> InProgress {
        gauge.inc();
        InProgress(gauge.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Clone)]
struct Recorder {
    metrics: Arc<CoreMetrics>,
    listener: Listener,
}

async fn record(State(recorder): State<Recorder>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let _in_progress = InProgress::start(&recorder.metrics.in_progress);
    let response = next.run(request).await;
    recorder.metrics.answered(
        recorder.listener,
        &method,
        route.as_deref(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `router` with every request counted under `listener`. Added with `Router::layer`, so it runs
/// after routing and sees the matched route's template.
pub fn instrument(router: Router, metrics: Arc<CoreMetrics>, listener: Listener) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Recorder { metrics, listener },
        record,
    ))
}

/// The management listener's router: `/metrics` and the health endpoints, nothing else.
pub fn admin_router(state: AppState, metrics: Arc<CoreMetrics>) -> Router {
    health::routes()
        .route("/metrics", get(scrape))
        .layer(Extension(metrics))
        .with_state(state)
}

async fn scrape(
    State(state): State<AppState>,
    Extension(metrics): Extension<Arc<CoreMetrics>>,
) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(state.store.pool_state()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: kiorex_store::PoolState = kiorex_store::PoolState {
        open: 4,
        idle: 3,
        max: 16,
    };

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    }

    #[test]
    fn requests_are_counted_by_route_template_and_status() {
        let metrics = CoreMetrics::default();
        for _ in 0..2 {
            metrics.answered(
                Listener::Internal,
                &Method::GET,
                Some("/fhir/{type}/{id}"),
                200,
                0.004,
            );
        }
        metrics.answered(Listener::Lan, &Method::GET, None, 404, 0.0005);
        let text = metrics.render(POOL);
        assert_eq!(
            value(
                &text,
                "kiorex_http_requests_total{listener=\"internal\",method=\"GET\",route=\"/fhir/{type}/{id}\",status=\"200\"}"
            ),
            2.0
        );
        assert_eq!(
            value(
                &text,
                "kiorex_http_requests_total{listener=\"lan\",method=\"GET\",route=\"unmatched\",status=\"404\"}"
            ),
            1.0
        );
        let fhir_read = "listener=\"internal\",method=\"GET\",route=\"/fhir/{type}/{id}\"";
        assert_eq!(
            value(
                &text,
                &format!(
                    "kiorex_http_request_duration_seconds_bucket{{le=\"0.0025\",{fhir_read}}}"
                )
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                &format!("kiorex_http_request_duration_seconds_bucket{{le=\"0.005\",{fhir_read}}}")
            ),
            2.0
        );
    }

    #[test]
    fn the_pool_and_the_version_are_reported_and_invented_methods_share_one_label() {
        let metrics = CoreMetrics::default();
        let brew = Method::from_bytes(b"BREW").unwrap();
        metrics.answered(Listener::Lan, &brew, None, 405, 0.001);
        let text = metrics.render(POOL);
        assert_eq!(value(&text, "kiorex_db_pool_connections_open"), 4.0);
        assert_eq!(value(&text, "kiorex_db_pool_connections_idle"), 3.0);
        assert_eq!(value(&text, "kiorex_db_pool_connections_max"), 16.0);
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(!text.contains("BREW"), "{text}");
        assert!(
            text.contains(&format!(
                "kiorex_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
}
