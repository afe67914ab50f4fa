//! The public listener: accept under a connection limit, TLS handshake under a timeout, HTTP/1.1
//! with a header-read timeout and a header-size limit, then [`Edge::handle`] for each request.

use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::problem::{EdgeBody, Reject, json};
use crate::proxy::{self, CoreClient};
use crate::routes;
use crate::scope;
use crate::settings::EdgeSettings;
use crate::tls::{self, ReloadingCert};
use crate::token::TokenVerifier;
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json as j;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// The request handler's shared state.
pub struct Edge {
    settings: EdgeSettings,
    tokens: TokenVerifier,
    limits: Arc<RateLimits>,
    client: CoreClient,
    /// The edge's client certificate for core, followed on disk (renewals need no restart).
    client_cert: Arc<ReloadingCert>,
    core_base: String,
    pub metrics: Arc<Metrics>,
}

/// The route name of the edge's own health endpoints (answered, not forwarded).
const HEALTH: &str = "health";

/// What the log line of a request says: never the path or query (they can hold patient
/// identifiers), only the route, the scope (a resource type) and the client.
#[derive(Default)]
struct LogFields {
    route: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    /// How long core took to answer, as the edge saw it; None when core was not asked.
    upstream: Option<Duration>,
}

impl Edge {
    /// Builds the edge from its settings: loads the token key and the client certificate.
    pub fn new(settings: EdgeSettings) -> Result<Arc<Edge>> {
        let tokens = TokenVerifier::from_public_pem(&settings.token_public_key)
            .map_err(|e| anyhow::anyhow!("edge.token_public_key: {e}"))?;
        let client_cert = Arc::new(ReloadingCert::load(
            &settings.client_cert_file,
            &settings.client_key_file,
            tls::client_provider(),
        )?);
        let client_config = tls::core_client_config(&settings.core_ca_file, client_cert.clone())?;
        let core_base = settings
            .core_url
            .to_string()
            .trim_end_matches('/')
            .to_owned();
        Ok(Arc::new(Edge {
            limits: RateLimits::new(&settings.limits),
            tokens,
            client: proxy::core_client(client_config),
            client_cert,
            core_base,
            metrics: Arc::new(Metrics::default()),
            settings,
        }))
    }

    /// Handles one request; never fails, every refusal is a uniform problem document.
    pub async fn handle(
        self: Arc<Self>,
        peer: IpAddr,
        request: Request<Incoming>,
    ) -> Response<EdgeBody> {
        let started = Instant::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let method = request.method().clone();
        let mut log = LogFields::default();
        let mut response = match self.route(peer, &request_id, request, &mut log).await {
            Ok(response) => {
                if let Some(upstream) = log.upstream {
                    self.metrics.forwarded(started.elapsed(), upstream);
                }
                response
            }
            Err(reject) => {
                self.metrics.rejected(reject, started.elapsed());
                reject.response(&request_id)
            }
        };
        security_headers(response.headers_mut(), self.settings.hsts_max_age);
        if let (true, Some(upstream)) = (self.settings.server_timing, log.upstream)
            && let Ok(v) = core_timing(upstream)
        {
            response.headers_mut().insert(proxy::SERVER_TIMING, v);
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        tracing::info!(
            request_id,
            method = %method,
            route = log.route.as_deref().unwrap_or("-"),
            scope = log.scope.as_deref().unwrap_or("-"),
            client_id = log.client_id.as_deref().unwrap_or("-"),
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            upstream_micros = log.upstream.map_or(0, |d| d.as_micros() as u64),
            "edge request"
        );
        response
    }

    async fn route(
        &self,
        peer: IpAddr,
        request_id: &str,
        request: Request<Incoming>,
        log: &mut LogFields,
    ) -> Result<Response<EdgeBody>, Reject> {
        self.limits
            .check_ip(peer)
            .map_err(|retry_after_secs| Reject::RateLimited { retry_after_secs })?;
        let path = request.uri().path();
        if request.method() == Method::GET && path.starts_with("/health/") {
            log.route = Some(HEALTH.into());
            return match path {
                "/health/live" => Ok(json(StatusCode::OK, j!({"status": "pass"}))),
                "/health/ready" => Ok(self.ready().await),
                _ => Err(Reject::NotFound),
            };
        }
        let admitted =
            routes::admit(&self.settings.routes, request.method(), path).ok_or(Reject::NotFound)?;
        log.route = Some(admitted.route.prefix.clone());
        if let Some(required) = &admitted.scope {
            log.scope = Some(required.clone());
            let authorization = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let token = self
                .tokens
                .verify_header(authorization)
                .ok_or(Reject::Unauthenticated)?;
            log.client_id = Some(token.client_id.clone());
            if !scope::allows(&token.scope, required) {
                return Err(Reject::InsufficientScope);
            }
            self.limits
                .check_client(&token.client_id)
                .map_err(|retry_after_secs| Reject::RateLimited { retry_after_secs })?;
        }
        let (parts, body) = request.into_parts();
        let body = self.read_body(&parts.headers, body).await?;
        let upstream = proxy::to_core(&self.core_base, parts, body, request_id, peer)
            .map_err(|_| Reject::NotFound)?;
        let asked = Instant::now();
        let answer = async {
            let response = self.client.request(upstream).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(proxy::from_core(response).await?)
        };
        match tokio::time::timeout(self.settings.limits.upstream_timeout, answer).await {
            Ok(Ok(response)) => {
                log.upstream = Some(asked.elapsed());
                Ok(response)
            }
            Ok(Err(e)) => {
                tracing::warn!(request_id, error = %e, "core did not answer");
                Err(Reject::CoreUnavailable)
            }
            Err(_) => Err(Reject::CoreTimeout),
        }
    }

    /// The whole body, at most `max_body_bytes` and within `body_read_timeout`. An announced
    /// length over the limit is refused before reading a byte; a body without a length is cut
    /// off as soon as it passes the limit.
    async fn read_body(&self, headers: &HeaderMap, body: Incoming) -> Result<Bytes, Reject> {
        let max = self.settings.limits.max_body_bytes;
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > max as u64) {
            return Err(Reject::BodyTooLarge);
        }
        let read = Limited::new(body, max).collect();
        match tokio::time::timeout(self.settings.limits.body_read_timeout, read).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Reject::BodyTooLarge),
            Ok(Err(_)) => Err(Reject::BodyTimeout),
            Err(_) => Err(Reject::BodyTimeout),
        }
    }

    /// Ready when core's internal listener answers over mutual TLS.
    pub async fn ready(&self) -> Response<EdgeBody> {
        let probe = Request::get(format!("{}/health/live", self.core_base))
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("a valid request");
        let core_ok = matches!(
            tokio::time::timeout(Duration::from_secs(3), self.client.request(probe)).await,
            Ok(Ok(r)) if r.status().is_success()
        );
        if core_ok {
            json(
                StatusCode::OK,
                j!({"status": "pass", "checks": {"core": "pass"}}),
            )
        } else {
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                j!({"status": "fail", "checks": {"core": "fail"}}),
            )
        }
    }
}

/// `core;dur=<ms>` (W3C Server Timing): how long core took, as the edge saw it.
fn core_timing(upstream: Duration) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let millis = upstream.as_secs_f64() * 1e3;
    HeaderValue::from_str(&format!("core;dur={millis:.3}"))
}

/// HSTS and the usual hardening headers, on every response the edge sends.
fn security_headers(headers: &mut HeaderMap, hsts_max_age: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={hsts_max_age}; includeSubDomains")) {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    let fixed = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        http::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

/// Runs the edge until `shutdown` completes: the public TLS listener, the certificate watcher,
/// and the management listener when configured.
pub async fn run(
    settings: EdgeSettings,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let cert = Arc::new(ReloadingCert::load_with_ocsp(
        &settings.cert_file,
        &settings.key_file,
        settings.ocsp_response_file.as_deref(),
        tls::server_provider(settings.allow_tls12),
    )?);
    cert.watch(settings.reload_interval, "edge");
    let acceptor = TlsAcceptor::from(Arc::new(tls::edge_server_config(
        cert,
        settings.allow_tls12,
    )?));
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (KX-NET-001)", settings.listen))?;
    let admin = match settings.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (KX-NET-001)"))?,
        ),
        None => None,
    };
    let edge = Edge::new(settings)?;
    edge.client_cert
        .watch(edge.settings.reload_interval, "edge client certificate");
    edge.limits.forget_idle(Duration::from_secs(60));
    if let Some(admin) = admin {
        tokio::spawn(serve_admin(admin, edge.clone()));
    }
    tracing::info!(listen = %edge.settings.listen, core = %edge.core_base, version = env!("CARGO_PKG_VERSION"), "edge is serving");
    let connections = Arc::new(Semaphore::new(edge.settings.limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            edge.metrics.connection_refused();
            drop(stream);
            continue;
        };
        let (edge, acceptor) = (edge.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _permit = permit;
            edge.metrics.connection_opened();
            serve_connection(&edge, acceptor, stream, peer.ip()).await;
            edge.metrics.connection_closed();
        });
    }
    // Let requests in flight finish, for a while.
    let max = edge.settings.limits.max_connections as u32;
    let _ = tokio::time::timeout(Duration::from_secs(10), connections.acquire_many(max)).await;
    tracing::info!("edge stopped");
    Ok(())
}

async fn serve_connection(
    edge: &Arc<Edge>,
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: IpAddr,
) {
    let _ = stream.set_nodelay(true);
    let limits = &edge.settings.limits;
    let tls = match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await
    {
        Ok(Ok(tls)) => tls,
        _ => {
            edge.metrics.handshake_failed();
            return;
        }
    };
    let handler = edge.clone();
    let service = service_fn(move |request| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(peer, request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

/// `/metrics` and `/health/*` in plain HTTP for the management zone.
async fn serve_admin(listener: TcpListener, edge: Arc<Edge>) {
    use axum::routing::get;
    let metrics = edge.metrics.clone();
    let ready_edge = edge.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                }
            }),
        )
        .route(
            "/health/live",
            get(|| async { axum::Json(j!({"status": "pass"})) }),
        )
        .route(
            "/health/ready",
            get(move || {
                let edge = ready_edge.clone();
                async move {
                    let response = edge.ready().await;
                    let (parts, body) = response.into_parts();
                    Response::from_parts(parts, axum::body::Body::new(body))
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "management listener stopped");
    }
}
