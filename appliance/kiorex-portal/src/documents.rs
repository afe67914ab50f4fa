//! Documents in the chart: the list, the in-page viewer, and upload by drag and drop (the page's
//! script sends the file to the documents API with the session's CSRF token).

use crate::Staff;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderValue, header};
use kiorex_api::AppState;
use kiorex_api::auth::RequestId;
use kiorex_api::documents::DocumentView;
use kiorex_api::identity::session::Live;
use kiorex_api::records::Ctx;
use maud::{Markup, html};
use uuid::Uuid;

/// The patient's documents, or why there are none to show.
pub async fn list(state: &AppState, ctx: &Ctx, patient: Uuid) -> Result<Vec<DocumentView>, String> {
    if state.documents.is_none() {
        return Err("Documents are not set up on this appliance.".into());
    }
    kiorex_api::documents::list(state, ctx, patient, Default::default())
        .await
        .map_err(|e| e.title.clone())
}

pub fn panel(live: &Live, patient: Uuid, documents: &Result<Vec<DocumentView>, String>) -> Markup {
    html! {
        section.panel #documents {
            h2 { "Documents" }
            @match documents {
                Err(why) => p.muted { (why) },
                Ok(list) => {
                    @if list.is_empty() { p.muted { "No documents yet." } } @else {
                        table {
                            thead { tr { th { "Title" } th { "Category" } th { "Date" } th { "" } } }
                            tbody { @for d in list { tr {
                                td { (d.title) } td { (d.category) } td { (d.updated_at.format("%Y-%m-%d")) }
                                td { a.view-document href={ "/documents/" (d.id) "/view" } data-viewer="viewer" { "View" } }
                            } } }
                        }
                    }
                    iframe #viewer name="viewer" title="Document viewer" hidden {}
                    form #upload data-patient=(patient) data-csrf=(live.session.csrf_token) {
                        div #drop-zone .panel tabindex="0" { "Drop a file here, or choose one below (PDF, image, text)." }
                        div.grid {
                            div { label for="doc-file" { "File" } input #doc-file type="file" name="file" required; }
                            div {
                                label for="doc-category" { "Category" }
                                select #doc-category name="category" {
                                    @for (v, l) in [("referral", "Referral"), ("consent", "Consent form"), ("discharge-letter", "Discharge letter"), ("report", "Report"), ("photo", "Photo")] {
                                        option value=(v) { (l) }
                                    }
                                }
                            }
                            div { label for="doc-title" { "Title" } input #doc-title name="title"; }
                        }
                        p { button type="submit" { "Upload" } }
                        p #upload-status role="status" {}
                    }
                }
            }
        }
    }
}

/// The document itself, for the in-page viewer: shown inline, in a sandbox, never cached.
pub async fn view(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Path(id): Path<Uuid>,
) -> Response {
    let ctx = Ctx::new(&state, live.principal.clone(), &rid.0);
    match kiorex_api::documents::open(&state, &ctx, id, None, None).await {
        Ok(content) => {
            let mut response = Response::new(Body::from_stream(content.body));
            let h = response.headers_mut();
            let kind = content.version.content_type.as_str();
            // PDFs and images open in the browser's own viewer, framed only by this site. Text
            // and XML (CDA) are shown as plain text in a sandbox: markup in them runs nothing.
            let (shown_as, policy) = if kind == "application/pdf" || kind.starts_with("image/") {
                (kind, "frame-ancestors 'self'")
            } else {
                (
                    "text/plain; charset=utf-8",
                    "sandbox; default-src 'none'; frame-ancestors 'self'",
                )
            };
            if let Ok(v) = HeaderValue::from_str(shown_as) {
                h.insert(header::CONTENT_TYPE, v);
            }
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("inline"),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(policy),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
            response
        }
        Err(e) => e.render(kiorex_api::error::Dialect::Problem, &rid.0),
    }
}
