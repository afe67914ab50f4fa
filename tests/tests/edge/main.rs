//! The DMZ edge in front of core, both as processes on loopback: what the internet may touch,
//! and what it may not. Each test starts its own core (with the internal mutual-TLS listener)
//! and edge, with a test PKI made by the test kit.

mod k3s;
mod limits;
mod mtls;
mod ocsp;
mod rotation;
mod routes;
mod sslyze;

use kiorex_testkit::edge::EdgeStack;
use kiorex_testkit::{ADMIN, ADMIN_PASSWORD};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Starts a stack on the blocking pool (it runs CLI commands and waits for ports).
async fn stack(edge_env: &[(&'static str, &'static str)]) -> EdgeStack {
    let env = edge_env.to_vec();
    tokio::task::spawn_blocking(move || EdgeStack::start(&env))
        .await
        .unwrap()
}

/// A partner's HTTPS client: trusts the edge's public CA only, HTTP/1.1.
fn https_client(stack: &EdgeStack) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(stack.public.ca_pem.as_bytes()).unwrap(),
        )
        .http1_only()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// A bare TLS connection to the edge, for requests no HTTP client would send.
async fn raw_tls(stack: &EdgeStack) -> TlsStream<TcpStream> {
    try_raw_tls(stack).await.unwrap()
}

/// Like [`raw_tls`], answering the handshake's failure instead of panicking.
async fn try_raw_tls(stack: &EdgeStack) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(stack.public.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", stack.edge.port))
        .await
        .unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// A staff token from core's LAN listener (the edge never offers sign-in).
async fn staff_token(stack: &EdgeStack) -> String {
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/token", stack.core.base))
        .json(&json!({"username": ADMIN, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["access_token"].as_str().expect("token").to_owned()
}

/// Status, headers and JSON body.
async fn call(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("the edge answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// The edge's metrics, from its management listener.
async fn metrics(stack: &EdgeStack) -> String {
    reqwest::get(format!(
        "http://127.0.0.1:{}/metrics",
        stack.edge.admin_port
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap()
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_start} in\n{text}"))
}
