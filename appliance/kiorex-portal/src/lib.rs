//! The staff portal: what clinicians use all day on the hospital LAN. Pages are rendered on the
//! server with `maud` (compile-time checked templates that escape everything by default), with
//! the vendored htmx for partial updates and one small script of our own. Every page goes
//! through the same records service, permission checks and audit as the API: the portal is a
//! face on `core`, not a second way to the data.
//!
//! Served by `core` on its LAN listener only; never on the internal listener the DMZ edge
//! reaches.

mod admin;
mod documents;
mod drafts;
mod history;
mod label;
mod notes;
mod pages;
mod picker;
mod settings;
pub mod trend;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use kiorex_api::AppState;
use kiorex_api::error::ApiError;
use kiorex_api::identity::session::{self, Live};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The portal's routes, with its security headers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/signin", get(pages::signin_form).post(pages::signin))
        .route("/signout", post(pages::signout))
        .route("/patients/search", get(pages::search))
        .route(
            "/patients/new",
            get(pages::register_form).post(pages::register),
        )
        .route("/patients/{id}", get(pages::chart))
        .route("/patients/{id}/vitals", post(pages::record_vitals))
        .route("/patients/{id}/break-glass", post(pages::break_glass))
        .route("/patients/{id}/label", get(label::label))
        .route(
            "/patients/{id}/demographics",
            get(pages::demographics_form).post(pages::save_demographics),
        )
        .route("/patients/{id}/clinical", post(pages::clinical))
        .route("/review", get(pages::review_queue))
        .route("/review/{id}", post(pages::review))
        .route("/admin", get(admin::page_admin))
        .route("/admin/group-roles", post(admin::save_mapping))
        .route("/admin/sessions/end", post(admin::end))
        .route("/admin/facility", get(settings::facility_page))
        .route("/admin/facility/{id}", post(settings::save_facility))
        .route("/admin/health", get(settings::health_page))
        .route("/audit", get(admin::audit))
        .route("/documents/{id}/view", get(documents::view))
        .route("/encounters/{id}/notes", post(notes::create))
        .route("/notes/{id}/edit", get(notes::edit_form))
        .route("/notes/{id}", post(notes::save))
        .route("/history/{kind}/{id}", get(history::page_history))
        .route("/terminology/icd-10-cm", get(picker::options))
        .route("/drafts/{key}", get(drafts::load).put(drafts::save))
        .route("/static/{file}", get(static_file))
        .layer(axum::middleware::from_fn(security_headers))
}

/// A strict Content-Security-Policy (no inline script, nothing from elsewhere), no framing, no
/// sniffing, no referrer, and pages are not cached (patient data).
async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    if h.contains_key(header::CONTENT_SECURITY_POLICY) {
        // A page that set its own, stricter policy (a document in the viewer) keeps it.
        return response;
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "htmx.min.js" => (include_bytes!("../static/htmx.min.js"), "text/javascript"),
        "portal.js" => (include_bytes!("../static/portal.js"), "text/javascript"),
        "portal.css" => (include_bytes!("../static/portal.css"), "text/css"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A signed-in member of staff, or a redirect to the sign-in page.
pub struct Staff(pub Live);

impl FromRequestParts<AppState> for Staff {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match session::resolve(state, &parts.headers).await {
            Ok(Some(live)) => Ok(Staff(live)),
            Ok(None) | Err(_) => {
                // Only the path (an opaque id at most) goes into the URL, never patient data.
                let next = parts.uri.path();
                Err(Redirect::to(&format!("/signin?next={}", next)).into_response())
            }
        }
    }
}

/// The page shell: navigation for the person's roles, the session-timeout warning, and the
/// CSRF token that htmx sends with every request it makes.
pub(crate) fn page(title: &str, staff: Option<&Live>, idle_seconds: i64, body: Markup) -> Markup {
    let ends = staff
        .map(|l| l.ends_at(idle_seconds).to_rfc3339())
        .unwrap_or_default();
    let csrf = staff
        .map(|l| l.session.csrf_token.clone())
        .unwrap_or_default();
    let hx_headers = serde_json::json!({ "X-CSRF-Token": csrf }).to_string();
    use kiorex_domain::permission::Role;
    let holds = |roles: &[Role]| {
        staff.is_some_and(|l| l.principal.grants.iter().any(|g| roles.contains(&g.role)))
    };
    let auditor = holds(&[Role::Auditor, Role::Administrator]);
    let it_admin = holds(&[Role::ItAdmin, Role::Administrator]);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Kiorex" }
                link rel="stylesheet" href="/static/portal.css";
                script src="/static/htmx.min.js" defer {}
                script src="/static/portal.js" defer {}
            }
            body data-session-ends=(ends) hx-headers=(hx_headers) {
                @if let Some(live) = staff {
                    header.top {
                        strong { "Kiorex" }
                        nav aria-label="Main" {
                            a href="/" { "Find a patient" }
                            a href="/patients/new" { "Register" }
                            @if auditor {
                                a href="/review" { "Break-the-glass review" }
                                a href="/audit" { "Audit log" }
                            }
                            @if it_admin { a href="/admin" { "Administration" } }
                        }
                        span { (live.principal.username) }
                        form method="post" action="/signout" {
                            input type="hidden" name="csrf_token" value=(csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                    div #session-warning .banner.warn role="alert" hidden {
                        "Your session ends in two minutes because nothing has happened for a while. "
                        button #stay-signed-in type="button" { "Stay signed in" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error in words a nurse understands, with the request id for IT.
pub(crate) fn error_banner(error: &ApiError, request_id: &str) -> Markup {
    html! {
        div.banner.error role="alert" {
            p { (error.title) }
            p.request-id { "If you call IT, give them this reference: " (request_id) }
        }
    }
}

pub(crate) fn raw(svg: String) -> PreEscaped<String> {
    PreEscaped(svg)
}
