//! Forwarding to core's internal listener over mutual TLS, with pooled keep-alive connections.

use crate::problem::EdgeBody;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

pub type CoreClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled HTTP/1.1 client that speaks only TLS with `config` (core's CA, the edge's client
/// certificate).
pub fn core_client(config: rustls::ClientConfig) -> CoreClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// W3C Server Timing: set by the edge only (`edge.server_timing`), never passed on from core.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Headers that describe one hop, never forwarded in either direction (RFC 9110 7.6.1), plus
/// what the edge sets itself.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter_map(|s| HeaderName::from_bytes(s.as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
}

/// Core's answers up to this size are read whole before the edge answers the client.
/// Small enough that `max_connections` slow readers cost at most 256 MiB of the edge's memory.
pub const BUFFERED_ANSWER_MAX_BYTES: u64 = 256 << 10;

/// Whether core's answer is read whole first: only when its length is announced and small.
pub fn buffer_answer(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n <= BUFFERED_ANSWER_MAX_BYTES)
}

/// Core's answer with the edge's response body type. A small answer is read whole first, so
/// core's connection goes back to the pool at once and a client that reads slowly holds only
/// the edge's memory, never a connection or a task in core (nginx's `proxy_buffering`).
/// Larger answers, and those without a length, are passed on as they come.
pub async fn from_core(
    response: Response<hyper::body::Incoming>,
) -> Result<Response<EdgeBody>, hyper::Error> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::SERVER);
    parts.headers.remove("x-powered-by");
    parts.headers.remove(SERVER_TIMING);
    let body = if buffer_answer(&parts.headers) {
        let whole = body.collect().await?.to_bytes();
        Full::new(whole).map_err(|never| match never {}).boxed()
    } else {
        body.map_err(Into::into).boxed()
    };
    Ok(Response::from_parts(parts, body))
}

/// The request to send to core.
pub fn to_core(
    core_base: &str,
    parts: http::request::Parts,
    body: Bytes,
    request_id: &str,
    peer: std::net::IpAddr,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = Request::builder()
        .method(parts.method)
        .uri(format!("{core_base}{path}"));
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    // What the internet claims about forwarding is not believed: the edge states it.
    headers.remove("forwarded");
    headers.remove("x-forwarded-for");
    headers.remove("x-forwarded-proto");
    headers.remove("x-forwarded-host");
    headers.remove("x-real-ip");
    headers.insert("x-request-id", request_id.parse()?);
    headers.insert("x-forwarded-for", peer.to_string().parse()?);
    headers.insert("x-forwarded-proto", http::HeaderValue::from_static("https"));
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    builder.body(Full::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_answers_with_an_announced_length_are_read_whole() {
        let with_length = |n: u64| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_LENGTH, n.into());
            headers
        };
        assert!(buffer_answer(&with_length(2_000)));
        assert!(buffer_answer(&with_length(BUFFERED_ANSWER_MAX_BYTES)));
        assert!(!buffer_answer(&with_length(BUFFERED_ANSWER_MAX_BYTES + 1)));
        assert!(!buffer_answer(&HeaderMap::new()));
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "close, x-secret".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert(header::ACCEPT, "application/fhir+json".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::ACCEPT));
    }
}
