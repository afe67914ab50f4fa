//! The edge's own answers: one uniform problem document per reason, with a stable code and the
//! request id, and nothing about the inside (no core address, no upstream error text).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// The body type every edge response has: core's streamed body or the edge's own.
pub type EdgeBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Why the edge answered by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not on the allow-list (any path or method outside it): 404, as if nothing were there.
    NotFound,
    Unauthenticated,
    InsufficientScope,
    RateLimited {
        retry_after_secs: u64,
    },
    BodyTooLarge,
    BodyTimeout,
    CoreUnavailable,
    CoreTimeout,
}

impl Reject {
    pub fn status(self) -> StatusCode {
        match self {
            Reject::NotFound => StatusCode::NOT_FOUND,
            Reject::Unauthenticated => StatusCode::UNAUTHORIZED,
            Reject::InsufficientScope => StatusCode::FORBIDDEN,
            Reject::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Reject::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reject::CoreUnavailable => StatusCode::BAD_GATEWAY,
            Reject::CoreTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Reject::NotFound => "KX-EDGE-404",
            Reject::Unauthenticated => "KX-EDGE-401",
            Reject::InsufficientScope => "KX-EDGE-403",
            Reject::RateLimited { .. } => "KX-EDGE-429",
            Reject::BodyTooLarge => "KX-EDGE-413",
            Reject::BodyTimeout => "KX-EDGE-408",
            Reject::CoreUnavailable => "KX-EDGE-502",
            Reject::CoreTimeout => "KX-EDGE-504",
        }
    }

    /// The reason as a metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::NotFound => "not_found",
            Reject::Unauthenticated => "unauthenticated",
            Reject::InsufficientScope => "insufficient_scope",
            Reject::RateLimited { .. } => "rate_limited",
            Reject::BodyTooLarge => "body_too_large",
            Reject::BodyTimeout => "body_timeout",
            Reject::CoreUnavailable => "core_unavailable",
            Reject::CoreTimeout => "core_timeout",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Reject::NotFound => "Not found",
            Reject::Unauthenticated => "A valid bearer token is required",
            Reject::InsufficientScope => "The token's scope does not allow this request",
            Reject::RateLimited { .. } => "Too many requests; retry later",
            Reject::BodyTooLarge => "The request body is too large",
            Reject::BodyTimeout => "The request body was not received in time",
            Reject::CoreUnavailable | Reject::CoreTimeout => {
                "The service is temporarily unavailable; try again shortly"
            }
        }
    }

    /// The response: problem+json, no caching, and `Retry-After` for rate limits. A rejected
    /// body is not read, so the connection is closed after the answer.
    pub fn response(self, request_id: &str) -> Response<EdgeBody> {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.title(),
            "status": self.status().as_u16(),
            "code": self.code(),
            "request_id": request_id,
        });
        let mut response = Response::new(full(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Reject::RateLimited { retry_after_secs } = self {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        if matches!(self, Reject::BodyTooLarge | Reject::BodyTimeout) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A complete body from bytes.
pub fn full(data: impl Into<Bytes>) -> EdgeBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON response the edge makes itself (health).
pub fn json(status: StatusCode, value: serde_json::Value) -> Response<EdgeBody> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
