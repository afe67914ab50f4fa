//! Drafts of half-filled forms, kept on the server (see `kiorex_store::drafts`): the page's
//! script saves what is typed a moment after each change and asks for it back when the form is
//! shown again, also after a new sign-in.

use crate::Staff;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::{HeaderMap, StatusCode};
use kiorex_api::AppState;
use kiorex_api::identity::session::{CSRF_HEADER, constant_time_eq};
use serde_json::Value;

/// Form keys are short names chosen by the pages (`register`, `vitals-<patient id>`).
fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 80 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// At most 64 KiB of typed text per form.
const MAX_DRAFT_BYTES: usize = 64 * 1024;

pub async fn load(
    State(state): State<AppState>,
    Staff(live): Staff,
    Path(key): Path<String>,
) -> Response {
    if !valid_key(&key) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let user = live.principal.user_id;
    match state
        .store
        .run(move |conn| kiorex_store::drafts::load(conn, user, &key, Utc::now()))
        .await
    {
        Ok(Some(content)) => Json(content).into_response(),
        Ok(None) => Json(Value::Object(Default::default())).into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

pub async fn save(
    State(state): State<AppState>,
    Staff(live): Staff,
    Path(key): Path<String>,
    headers: HeaderMap,
    Json(content): Json<Value>,
) -> Response {
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !constant_time_eq(sent.as_bytes(), live.session.csrf_token.as_bytes()) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let fields_only = content
        .as_object()
        .is_some_and(|o| o.values().all(Value::is_string));
    if !valid_key(&key) || !fields_only || content.to_string().len() > MAX_DRAFT_BYTES {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let user = live.principal.user_id;
    match state
        .store
        .run(move |conn| kiorex_store::drafts::save(conn, user, &key, &content, Utc::now()))
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Forgets a draft once its form has been sent.
pub async fn discard(state: &AppState, user: uuid::Uuid, key: &str) {
    let key = key.to_owned();
    let _ = state
        .store
        .run(move |conn| kiorex_store::drafts::discard(conn, user, &key))
        .await;
}
