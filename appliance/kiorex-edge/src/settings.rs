//! The edge's typed settings. The binary reads `[edge]` from the configuration file and builds
//! these; nothing here reads files or the environment.

use http::Method;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `kiorex serve edge` needs.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// The public TLS listener.
    pub listen: SocketAddr,
    /// Plain-HTTP listener for `/metrics` and `/health/*`, for the management zone only.
    pub admin_listen: Option<SocketAddr>,
    /// The edge's certificate chain (PEM) and private key (PEM), watched for changes.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// A DER OCSP response for the certificate, refreshed by a management job; stapled while it
    /// is current. The edge never fetches it itself (it opens no connection but to core).
    pub ocsp_response_file: Option<PathBuf>,
    /// Also offer TLS 1.2 (AEAD suites only). TLS 1.3 is always offered.
    pub allow_tls12: bool,
    /// How often the certificate files are checked for a change.
    pub reload_interval: Duration,
    /// HSTS `max-age` in seconds.
    pub hsts_max_age: u64,
    /// Send `Server-Timing: core;dur=<ms>` on forwarded answers (load tests only).
    pub server_timing: bool,
    /// Core's internal listener, `https://host:port`.
    pub core_url: http::Uri,
    /// The CA that signed core's internal certificate.
    pub core_ca_file: PathBuf,
    /// The edge's client certificate and key for core (mutual TLS).
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// Core's token-signing PUBLIC key (SPKI PEM); the edge never holds the private key.
    pub token_public_key: String,
    pub routes: Vec<Route>,
    pub limits: Limits,
}

/// One allow-listed route: a path prefix (matched at segment boundaries) and its methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub methods: Vec<Method>,
    pub auth: RouteAuth,
}

/// What a route asks of the caller's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// No token checked at the edge (e.g. `/fhir/metadata`).
    Public,
    /// This SMART scope, e.g. `system/Observation.write`.
    Scope(String),
    /// The FHIR scope derived from the path and method: `GET /fhir/Patient/1` needs
    /// `system/Patient.read`, `POST /fhir/Observation` needs `system/Observation.write`.
    Fhir,
}

/// The limits that keep a hostile internet from hurting the hospital.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    /// Time allowed for the TLS handshake and for the request head (slowloris).
    pub header_read_timeout: Duration,
    /// Time allowed for the whole request body.
    pub body_read_timeout: Duration,
    /// Time allowed for core to answer.
    pub upstream_timeout: Duration,
    pub per_ip_per_second: u32,
    pub per_ip_burst: u32,
    pub per_client_per_second: u32,
    pub per_client_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            upstream_timeout: Duration::from_secs(30),
            per_ip_per_second: 50,
            per_ip_burst: 100,
            per_client_per_second: 100,
            per_client_burst: 200,
        }
    }
}

/// The default allow-list: the partner FHIR API (scopes derived per resource) and the
/// capability statement.
pub fn default_routes() -> Vec<Route> {
    vec![
        Route {
            prefix: "/fhir/metadata".into(),
            methods: vec![Method::GET],
            auth: RouteAuth::Public,
        },
        Route {
            prefix: "/fhir".into(),
            methods: vec![
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ],
            auth: RouteAuth::Fhir,
        },
    ]
}

/// Core's internal listener: TLS that requires a client certificate from the internal CA.
#[derive(Debug, Clone)]
pub struct InternalSettings {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: PathBuf,
    /// DNS names one of which the client certificate must carry (e.g. `edge.kiorex.internal`);
    /// empty accepts any certificate from the CA.
    pub allowed_client_names: Vec<String>,
    pub reload_interval: Duration,
}
