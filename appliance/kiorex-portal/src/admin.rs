//! Pages for IT administrators (directory mapping, people's sessions) and auditors (the log).
//! Each calls the same rule as the API, so the portal cannot do what the API would refuse.

use crate::pages::csrf_ok;
use crate::{Staff, error_banner, page};
use axum::extract::{Form, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use kiorex_api::AppState;
use kiorex_api::audit_review::{AuditQuery, search_log};
use kiorex_api::auth::RequestId;
use kiorex_api::error::ApiError;
use kiorex_api::identity::routes::{
    GroupRoleRow, end_session, group_mapping, replace_group_mapping, sessions_of,
};
use kiorex_api::identity::session::Live;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

fn show(state: &AppState, live: &Live, title: &str, body: Markup) -> Response {
    let idle = state.identity.settings.session_idle_seconds;
    Html(page(title, Some(live), idle, body).into_string()).into_response()
}

fn refused(state: &AppState, live: &Live, rid: &RequestId, e: &ApiError) -> Response {
    (
        e.status,
        show(state, live, "Not allowed", error_banner(e, &rid.0)),
    )
        .into_response()
}

fn stale_form() -> ApiError {
    ApiError::new(
        http::StatusCode::FORBIDDEN,
        "KX-AUTH-004",
        "This form has expired. Reload the page and try again.",
    )
}

#[derive(Debug, Deserialize)]
pub struct Who {
    username: Option<String>,
}

/// The directory mapping (one row per line: group, facility id, role) and a person's sessions.
pub async fn page_admin(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Query(who): Query<Who>,
) -> Response {
    let mapping = match group_mapping(&state, &live.principal).await {
        Ok(rows) => rows,
        Err(e) => return refused(&state, &live, &rid, &e),
    };
    let lines: Vec<String> = mapping
        .iter()
        .map(|r| format!("{} | {} | {}", r.group, r.facility_id, r.role))
        .collect();
    let username = who.username.filter(|u| !u.trim().is_empty());
    let sessions = match &username {
        Some(name) => Some(sessions_of(&state, &live.principal, Some(name.clone())).await),
        None => None,
    };
    let csrf = live.session.csrf_token.clone();
    show(
        &state,
        &live,
        "Administration",
        html! {
            h1 { "Administration" }
            p { a href="/admin/facility" { "Facility settings" } " · " a href="/admin/health" { "System health" } }
            section.panel {
                h2 { "Directory groups and roles" }
                p.muted { "One line per mapping: group (its name or DN) | facility id | role. People get the new roles at their next sign-in." }
                form method="post" action="/admin/group-roles" {
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="mapping" { "Mapping" }
                    textarea #mapping name="mapping" rows="8" style="max-width: 100%" { (lines.join("\n")) }
                    p { button type="submit" { "Save the mapping" } }
                }
            }
            section.panel {
                h2 { "A person's sessions" }
                form method="get" action="/admin" {
                    label for="username" { "Username" }
                    input #username name="username" value=(username.clone().unwrap_or_default());
                    p { button type="submit" { "Show sessions" } }
                }
                @match sessions {
                    Some(Ok(rows)) if rows.is_empty() => p { "No open sessions." },
                    Some(Ok(rows)) => table {
                        thead { tr { th { "Signed in" } th { "Last seen" } th { "How" } th { "From" } th { "" } } }
                        tbody { @for s in rows { tr {
                            td { (s.created_at.format("%Y-%m-%d %H:%M")) } td { (s.last_seen_at.format("%H:%M")) }
                            td { (s.method) } td { (s.source_address) }
                            td { form method="post" action="/admin/sessions/end" {
                                input type="hidden" name="csrf_token" value=(csrf);
                                input type="hidden" name="id" value=(s.id);
                                input type="hidden" name="username" value=(username.clone().unwrap_or_default());
                                button.secondary type="submit" { "End this session" }
                            } }
                        } } }
                    },
                    Some(Err(e)) => (error_banner(&e, &rid.0)),
                    None => {},
                }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct MappingForm {
    csrf_token: String,
    mapping: String,
}

fn parse_mapping(text: &str) -> Result<Vec<GroupRoleRow>, ApiError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let parts: Vec<&str> = line.split('|').map(str::trim).collect();
            let [group, facility, role] = parts.as_slice() else {
                return Err(ApiError::bad_request(
                    "KX-REQ-001",
                    format!("write each line as group | facility id | role: {line:?}"),
                ));
            };
            let facility_id = Uuid::parse_str(facility).map_err(|_| {
                ApiError::bad_request("KX-REQ-001", format!("{facility:?} is not a facility id"))
            })?;
            Ok(GroupRoleRow {
                group: (*group).to_owned(),
                facility_id,
                role: (*role).to_owned(),
            })
        })
        .collect()
}

pub async fn save_mapping(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Form(form): Form<MappingForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return refused(&state, &live, &rid, &stale_form());
    }
    let result = async {
        let rows = parse_mapping(&form.mapping)?;
        replace_group_mapping(&state, &live.principal, &rows, &rid.0).await
    };
    match result.await {
        Ok(_) => Redirect::to("/admin").into_response(),
        Err(e) => refused(&state, &live, &rid, &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct EndForm {
    csrf_token: String,
    id: Uuid,
    username: String,
}

pub async fn end(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Form(form): Form<EndForm>,
) -> Response {
    if !csrf_ok(&live, &form.csrf_token) {
        return refused(&state, &live, &rid, &stale_form());
    }
    match end_session(&state, &live.principal, form.id, &rid.0).await {
        Ok(()) => Redirect::to(&format!("/admin?username={}", form.username)).into_response(),
        Err(e) => refused(&state, &live, &rid, &e),
    }
}

/// The audit search for auditors.
pub async fn audit(
    State(state): State<AppState>,
    rid: RequestId,
    Staff(live): Staff,
    Query(q): Query<AuditQuery>,
) -> Response {
    let asked = q.user.is_some() || q.patient.is_some() || q.action.is_some();
    let found = if asked {
        Some(search_log(&state, &live.principal, &q, &rid.0).await)
    } else {
        None
    };
    if let Some(Err(e)) = &found
        && e.status == http::StatusCode::FORBIDDEN
    {
        return refused(&state, &live, &rid, e);
    }
    show(
        &state,
        &live,
        "Audit log",
        html! {
            h1 { "Audit log" }
            form method="get" action="/audit" {
                div.grid {
                    div { label for="user" { "User" } input #user name="user" value=(q.user.clone().unwrap_or_default()); }
                    div { label for="patient" { "Patient id" } input #patient name="patient" value=(q.patient.map(|p| p.to_string()).unwrap_or_default()); }
                    div { label for="action" { "Action" } input #action name="action" value=(q.action.clone().unwrap_or_default()) placeholder="read, break-glass, sign-in …"; }
                }
                p { button type="submit" { "Search" } }
            }
            @match found {
                Some(Ok(entries)) => table {
                    thead { tr { th { "When" } th { "User" } th { "Action" } th { "Outcome" } th { "Record" } th { "Detail" } } }
                    tbody { @for e in &entries { tr {
                        td { (e.recorded_at.format("%Y-%m-%d %H:%M:%S")) } td { (e.actor) } td { (e.action) } td { (e.outcome) }
                        td { (e.resource_type) " " (e.resource_id) } td { (e.detail) }
                    } } }
                },
                Some(Err(e)) => (error_banner(&e, &rid.0)),
                None => p.muted { "Search by user, patient or action. Searches are themselves recorded." },
            }
        },
    )
}
