//! The OAuth 2.0 client-credentials grant (RFC 6749 §4.4) for systems that call Kiorex: lab
//! analysers' middleware, the national hub. A client authenticates with its id and secret and
//! gets a short-lived EdDSA token carrying its grants and its SMART scopes, which the edge and
//! core both check.

use crate::auth::{dummy_hash, scope_text, verify_password};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, StatusCode};
use kiorex_domain::identity::{Scope, parse_scopes};
use kiorex_domain::permission::Principal;
use kiorex_store::directory;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

#[derive(Debug, Serialize)]
struct Issued {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
}

/// An RFC 6749 §5.2 error: what OAuth client libraries expect, not problem+json.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"kiorex\""),
        );
    }
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// `client_id:client_secret` from HTTP Basic, or from the form.
fn client_credentials(headers: &HeaderMap, form: &TokenForm) -> Option<(String, String)> {
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    basic.or_else(|| Some((form.client_id.clone()?, form.client_secret.clone()?)))
}

/// Issues a client token, or answers an OAuth error.
pub async fn token(
    state: &AppState,
    headers: &HeaderMap,
    form: TokenForm,
    request_id: &str,
) -> Response {
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is offered here; people sign in through the portal",
        );
    }
    let Some((client_id, secret)) = client_credentials(headers, &form) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required",
        );
    };
    match issue(
        state,
        &client_id,
        &secret,
        form.scope.as_deref(),
        request_id,
    )
    .await
    {
        Ok(issued) => {
            let mut response = Json(issued).into_response();
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            response
        }
        Err(IssueError::Client) => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        ),
        Err(IssueError::Scope(why)) => oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &why),
        Err(IssueError::Api(e)) => e.render(crate::error::Dialect::Problem, request_id),
    }
}

enum IssueError {
    Client,
    Scope(String),
    Api(ApiError),
}

impl From<ApiError> for IssueError {
    fn from(e: ApiError) -> Self {
        IssueError::Api(e)
    }
}

impl From<kiorex_store::StoreError> for IssueError {
    fn from(e: kiorex_store::StoreError) -> Self {
        IssueError::Api(e.into())
    }
}

async fn issue(
    state: &AppState,
    client_id: &str,
    secret: &str,
    requested: Option<&str>,
    request_id: &str,
) -> Result<Issued, IssueError> {
    let id = client_id.to_owned();
    let client = state
        .store
        .run(move |conn| directory::find_client(conn, &id))
        .await?;
    let hash = client.as_ref().map(|c| c.secret_hash.clone());
    let secret = secret.to_owned();
    let matches = tokio::task::spawn_blocking(move || {
        verify_password(&secret, &hash.unwrap_or_else(dummy_hash))
    })
    .await
    .unwrap_or(false);
    let actor = format!("client:{client_id}");
    let client = match client.filter(|c| matches && !c.disabled) {
        Some(c) => c,
        None => {
            super::local::audit_sign_in(state, &actor, request_id, "failure", "client credentials")
                .await?;
            return Err(IssueError::Client);
        }
    };
    let registered = parse_scopes(&client.scopes).map_err(IssueError::Scope)?;
    let scopes = granted_scopes(&registered, requested)?;
    let principal = Principal {
        user_id: client.user_id,
        username: actor.clone(),
        grants: client.grants,
        scopes: Some(scopes.clone()),
    };
    let ttl = state.identity.settings.client_token_ttl_seconds;
    let access_token = state
        .tokens
        .issue_client(&principal, &client.client_id, ttl)?;
    super::local::audit_sign_in(state, &actor, request_id, "success", "client credentials").await?;
    Ok(Issued {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: scopes.iter().map(scope_text).collect::<Vec<_>>().join(" "),
    })
}

/// The scopes to grant: all registered ones when none are asked for, otherwise those asked
/// for, each of which must be within a registered one.
fn granted_scopes(registered: &[Scope], requested: Option<&str>) -> Result<Vec<Scope>, IssueError> {
    let Some(text) = requested.filter(|t| !t.trim().is_empty()) else {
        return Ok(registered.to_vec());
    };
    let asked = parse_scopes(text).map_err(IssueError::Scope)?;
    for scope in &asked {
        let within = registered.iter().any(|r| {
            (r.resource_type == "*" || r.resource_type == scope.resource_type)
                && (r.read || !scope.read)
                && (r.write || !scope.write)
        });
        if !within {
            return Err(IssueError::Scope(format!(
                "{} was not granted to this client",
                scope_text(scope)
            )));
        }
    }
    Ok(asked)
}
