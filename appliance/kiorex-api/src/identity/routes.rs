//! HTTP routes of sign-in, sessions, second factor, API clients and the directory mapping.

use super::local::{self, Credentials, Person};
use super::oidc::OidcError;
use super::session::{self, Live, SignedIn};
use crate::auth::{Caller, RequestId, hash_password};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use kiorex_domain::identity::{GroupRole, parse_scopes, password_problems};
use kiorex_domain::permission::{Action, Grant, Permission, Principal, Resource, Role};
use kiorex_store::{accounts, directory, sessions};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Routes under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/session", get(current_session))
        .route("/auth/oidc/login", get(oidc_login))
        .route("/auth/oidc/callback", get(oidc_callback))
        .route("/auth/totp/enroll", post(totp_enroll))
        .route("/auth/totp/confirm", post(totp_confirm))
        .route("/auth/sessions", get(list_sessions))
        .route("/auth/sessions/{id}", delete(revoke_session))
        .route(
            "/admin/group-roles",
            get(get_group_roles).put(put_group_roles),
        )
        .route("/admin/clients", post(create_client))
        .route(
            "/admin/users/{username}/practitioner",
            put(link_practitioner),
        )
}

/// Routes at the root: the OAuth token endpoint.
pub fn oauth_routes() -> Router<AppState> {
    Router::new().route("/oauth/token", post(oauth_token))
}

fn reply<T: Serialize>(rid: &str, result: Result<T, ApiError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.render(crate::error::Dialect::Problem, rid),
    }
}

/// The caller's session, for routes that act on it (CSRF checked on state changes).
pub struct SessionCaller(pub Live);

impl FromRequestParts<AppState> for SessionCaller {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        session::live_from(parts, state)
            .await
            .map(SessionCaller)
            .map_err(|e| {
                e.render(
                    crate::error::Dialect::Problem,
                    &crate::error::request_id_of(&parts.headers),
                )
            })
    }
}

/// The client's address and browser, for lockout and the session list.
pub struct Origin {
    pub address: String,
    pub user_agent: String,
}

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Origin {
            address: session::source_address(parts, &state.identity.settings.trusted_proxies),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    pub totp_code: Option<String>,
    pub recovery_code: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub user_id: Uuid,
    pub username: String,
    #[schema(value_type = Vec<Object>)]
    pub grants: Vec<Grant>,
    pub method: String,
    /// Echo this in `X-CSRF-Token` on every POST, PUT and DELETE.
    pub csrf_token: String,
    pub idle_timeout_seconds: i64,
    /// When the session ends if nothing more happens.
    pub ends_at: DateTime<Utc>,
    /// When it ends regardless.
    pub expires_at: DateTime<Utc>,
}

fn view(live: &Live, idle: i64) -> SessionView {
    SessionView {
        user_id: live.principal.user_id,
        username: live.principal.username.clone(),
        grants: live.principal.grants.clone(),
        method: live.session.method.clone(),
        csrf_token: live.session.csrf_token.clone(),
        idle_timeout_seconds: idle,
        ends_at: live.ends_at(idle),
        expires_at: live.session.expires_at,
    }
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Signs in with a username and password (local account or the directory), plus a TOTP or
/// recovery code when the account has a second factor. Sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginRequest,
    responses((status = 200, body = SessionView), (status = 401, description = "Wrong credentials or second factor needed"),
              (status = 403, description = "Signed in but no role"), (status = 429, description = "Locked out")))]
pub(crate) async fn login(
    State(state): State<AppState>,
    rid: RequestId,
    origin: Origin,
    payload: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let result = async {
        let Json(request) =
            payload.map_err(|e| ApiError::bad_request("KX-REQ-001", e.body_text()))?;
        let creds = Credentials {
            username: request.username,
            password: request.password,
            totp_code: request.totp_code,
            recovery_code: request.recovery_code,
        };
        let account = local::sign_in(&state, &creds, &origin.address, &rid.0).await?;
        start_session(&state, &account, None, &origin).await
    };
    match result.await {
        Ok((token, body)) => {
            with_cookie(Json(body).into_response(), &session::cookie_header(&token))
        }
        Err(e) => e.render(crate::error::Dialect::Problem, &rid.0),
    }
}

/// Opens a session for a signed-in account (the portal's sign-in form uses it too).
pub async fn start_session(
    state: &AppState,
    account: &local::Account,
    id_token: Option<&str>,
    origin: &Origin,
) -> Result<(String, SessionView), ApiError> {
    let started = session::start(
        state,
        SignedIn {
            user_id: account.user_id,
            username: &account.username,
            grants: &account.grants,
            method: account.method,
            id_token,
            source_address: &origin.address,
            user_agent: &origin.user_agent,
        },
    )
    .await?;
    let idle = state.identity.settings.session_idle_seconds;
    let now = Utc::now();
    Ok((
        started.token,
        SessionView {
            user_id: account.user_id,
            username: account.username.clone(),
            grants: account.grants.clone(),
            method: account.method.to_owned(),
            csrf_token: started.csrf_token,
            idle_timeout_seconds: idle,
            ends_at: (now + chrono::Duration::seconds(idle)).min(started.expires_at),
            expires_at: started.expires_at,
        },
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoggedOut {
    /// Where to send the browser to end the IdP session too, when the IdP offers it.
    pub idp_logout_url: Option<String>,
}

/// Ends the session (and tells where to end the IdP's).
#[utoipa::path(post, path = "/api/v1/auth/logout", responses((status = 200, body = LoggedOut)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    rid: RequestId,
    SessionCaller(live): SessionCaller,
) -> Response {
    let result = async {
        let id = live.session.id;
        let now = Utc::now();
        state
            .store
            .run(move |conn| sessions::revoke(conn, id, now))
            .await?;
        state
            .audit
            .record(
                &live.principal.username,
                &rid.0,
                vec![local::security_event(
                    "sign-out",
                    "success",
                    live.session.method.clone(),
                )],
            )
            .await?;
        let idp_logout_url = match (&state.identity.oidc, &live.session.id_token) {
            (Some(oidc), Some(token)) => oidc.logout_url(token).await,
            _ => None,
        };
        Ok::<_, ApiError>(LoggedOut { idp_logout_url })
    };
    match result.await {
        Ok(body) => with_cookie(Json(body).into_response(), &session::clear_cookie_header()),
        Err(e) => e.render(crate::error::Dialect::Problem, &rid.0),
    }
}

/// The current session: who, which roles, the CSRF token and when it times out (the portal
/// warns before it does).
#[utoipa::path(get, path = "/api/v1/auth/session", responses((status = 200, body = SessionView)))]
pub(crate) async fn current_session(
    State(state): State<AppState>,
    SessionCaller(live): SessionCaller,
) -> Response {
    Json(view(&live, state.identity.settings.session_idle_seconds)).into_response()
}

#[derive(Debug, Deserialize)]
struct ReturnTo {
    return_to: Option<String>,
}

/// Only paths on this site: an open redirect would let a phishing mail borrow Kiorex's name.
fn safe_return(path: Option<String>) -> String {
    path.filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or_else(|| "/".to_owned())
}

fn oidc_unavailable(e: OidcError) -> ApiError {
    match e {
        OidcError::Unavailable(why) => {
            tracing::error!(target: "kiorex::security", error = %why, "identity provider unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "KX-AUTH-007",
                "the hospital sign-in service cannot be reached; try again shortly, or ask IT \
                 (local administrator accounts still work)",
            )
        }
        OidcError::Rejected(why) => {
            tracing::warn!(target: "kiorex::security", reason = %why, "identity provider answer refused");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "KX-AUTH-008",
                "the sign-in could not be completed; start again",
            )
        }
    }
}

/// Starts an OpenID Connect sign-in: redirects to the IdP.
async fn oidc_login(
    State(state): State<AppState>,
    rid: RequestId,
    Query(q): Query<ReturnTo>,
) -> Response {
    let result = async {
        let oidc = state.identity.oidc.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "KX-AUTH-009",
                "single sign-on is not configured here",
            )
        })?;
        let redirect = oidc.begin().await.map_err(oidc_unavailable)?;
        let pending = sessions::PendingLogin {
            state: redirect.state.clone(),
            nonce: redirect.nonce.clone(),
            pkce_verifier: redirect.pkce_verifier.clone(),
            return_to: safe_return(q.return_to),
            created_at: Utc::now(),
        };
        state
            .store
            .run(move |conn| sessions::save_pending_login(conn, &pending))
            .await?;
        Ok::<_, ApiError>(redirect.url)
    };
    match result.await {
        Ok(url) => see_other(&url),
        Err(e) => e.render(crate::error::Dialect::Problem, &rid.0),
    }
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The IdP sends the browser back here with a code; the session starts and the browser goes
/// where it was.
async fn oidc_callback(
    State(state): State<AppState>,
    rid: RequestId,
    origin: Origin,
    Query(q): Query<Callback>,
) -> Response {
    let result = async {
        let oidc = state.identity.oidc.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "KX-AUTH-009",
                "single sign-on is not configured here",
            )
        })?;
        if let Some(error) = q.error {
            local::audit_sign_in(&state, "", &rid.0, "failure", &format!("idp: {error}")).await?;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "KX-AUTH-008",
                "the sign-in service refused the sign-in",
            ));
        }
        let (Some(code), Some(key)) = (q.code, q.state) else {
            return Err(ApiError::bad_request(
                "KX-AUTH-008",
                "the sign-in answer is incomplete; start again",
            ));
        };
        let not_before = Utc::now() - chrono::Duration::minutes(10);
        let pending = state
            .store
            .run(move |conn| sessions::take_pending_login(conn, &key, not_before))
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "KX-AUTH-008",
                    "this sign-in has expired or was already used; start again",
                )
            })?;
        let (person, id_token) = match oidc
            .complete(&code, &pending.nonce, &pending.pkce_verifier)
            .await
        {
            Ok(done) => done,
            Err(e) => {
                local::audit_sign_in(&state, "", &rid.0, "failure", "oidc token refused").await?;
                return Err(oidc_unavailable(e));
            }
        };
        let account = federated_account(&state, &person, &rid.0).await?;
        let (token, _) = start_session(&state, &account, Some(&id_token), &origin).await?;
        Ok((token, pending.return_to))
    };
    match result.await {
        Ok((token, to)) => with_cookie(see_other(&to), &session::cookie_header(&token)),
        Err(e) => e.render(crate::error::Dialect::Problem, &rid.0),
    }
}

async fn federated_account(
    state: &AppState,
    person: &Person,
    rid: &str,
) -> Result<local::Account, ApiError> {
    let account = local::sync_person(state, person, "oidc").await?;
    if account.grants.is_empty() {
        local::audit_sign_in(state, &person.username, rid, "failure", "no mapped role").await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "KX-AUTH-005",
            "you signed in, but none of your groups gives access to Kiorex; ask IT to add you to the right group",
        ));
    }
    local::audit_sign_in(state, &person.username, rid, "success", "oidc").await?;
    Ok(account)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// The secret in base32, for typing into an app by hand.
    pub secret: String,
    pub otpauth_url: String,
    /// The same as a QR code (SVG), for scanning.
    pub qr_svg: String,
}

/// Starts TOTP enrolment for the signed-in local account.
async fn totp_enroll(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
) -> Response {
    let result = async {
        let username = principal.username.clone();
        let account = state
            .store
            .run(move |conn| accounts::find_by_username(conn, &username))
            .await?
            .filter(|a| a.source == "local")
            .ok_or_else(|| {
                ApiError::bad_request(
                    "KX-AUTH-010",
                    "directory and single-sign-on accounts use the hospital's own second factor",
                )
            })?;
        let secret = local::new_totp_secret();
        let totp = local::totp_for(&secret, &account.username).map_err(ApiError::internal)?;
        let url = totp.get_url();
        let qr = qrcode::QrCode::new(url.as_bytes())
            .map_err(|e| ApiError::internal(e.to_string()))?
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        let stored = secret.clone();
        state
            .store
            .run(move |conn| directory::set_totp_pending(conn, account.id, &stored))
            .await?;
        Ok(Enrolment {
            secret,
            otpauth_url: url,
            qr_svg: qr,
        })
    };
    reply(&rid.0, result.await)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Confirm {
    pub code: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    /// Shown once: print them or keep them somewhere safe.
    pub recovery_codes: Vec<String>,
}

/// Confirms enrolment with a first code; from now on the code is required at sign-in.
async fn totp_confirm(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Json(body): Json<Confirm>,
) -> Response {
    let result = async {
        let user_id = principal.user_id;
        let (secret, _) = state
            .store
            .run(move |conn| directory::totp_of(conn, user_id))
            .await?;
        let secret = secret
            .ok_or_else(|| ApiError::bad_request("KX-AUTH-010", "start the enrolment first"))?;
        let totp = local::totp_for(&secret, &principal.username).map_err(ApiError::internal)?;
        if !totp.check_current(body.code.trim()).unwrap_or(false) {
            return Err(ApiError::bad_request(
                "KX-AUTH-003",
                "that code is not right; check the time on your phone and try the next one",
            ));
        }
        let (codes, hashes) = local::new_recovery_codes();
        state
            .store
            .run(move |conn| directory::enable_totp(conn, user_id, &hashes))
            .await?;
        state
            .audit
            .record(
                &principal.username,
                &rid.0,
                vec![local::security_event(
                    "totp-enrolled",
                    "success",
                    String::new(),
                )],
            )
            .await?;
        Ok(RecoveryCodes {
            recovery_codes: codes,
        })
    };
    reply(&rid.0, result.await)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionRow {
    pub id: Uuid,
    pub method: String,
    pub source_address: String,
    pub user_agent: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct SessionsOf {
    username: Option<String>,
}

fn is_user_admin(principal: &Principal, action: Action) -> bool {
    !principal
        .facilities_with(Permission::new(Resource::User, action))
        .is_empty()
}

/// Active sessions: your own, or (IT admin) another person's.
async fn list_sessions(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Query(q): Query<SessionsOf>,
) -> Response {
    reply(&rid.0, sessions_of(&state, &principal, q.username).await)
}

/// The rule behind the session list, shared by the API and the portal's admin page.
pub async fn sessions_of(
    state: &AppState,
    principal: &Principal,
    username: Option<String>,
) -> Result<Vec<SessionRow>, ApiError> {
    let username = match username {
        Some(name) if name != principal.username => {
            if !is_user_admin(principal, Action::Read) {
                return Err(ApiError::forbidden(
                    "only IT administrators see other people's sessions",
                ));
            }
            name
        }
        _ => principal.username.clone(),
    };
    let now = Utc::now();
    let rows = state
        .store
        .run(move |conn| {
            let Some(account) = accounts::find_by_username(conn, &username)? else {
                return Ok(Vec::new());
            };
            sessions::live_for_user(conn, account.id, now)
        })
        .await?;
    Ok(rows
        .into_iter()
        .map(|s| SessionRow {
            id: s.id,
            method: s.method,
            source_address: s.source_address,
            user_agent: s.user_agent,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
        })
        .collect())
}

/// Ends a session: your own, or (IT admin) anyone's — for a lost badge or a shared PC.
async fn revoke_session(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Path(id): Path<Uuid>,
) -> Response {
    match end_session(&state, &principal, id, &rid.0).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.render(crate::error::Dialect::Problem, &rid.0),
    }
}

/// The rule behind ending a session, shared by the API and the portal.
pub async fn end_session(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    request_id: &str,
) -> Result<(), ApiError> {
    let admin = is_user_admin(principal, Action::Write);
    let me = principal.user_id;
    let now = Utc::now();
    let revoked = state
        .store
        .run(move |conn| {
            let own = sessions::live_for_user(conn, me, now)?
                .iter()
                .any(|s| s.id == id);
            if !own && !admin {
                return Ok(None);
            }
            sessions::revoke(conn, id, now).map(Some)
        })
        .await?;
    match revoked {
        None => Err(ApiError::forbidden("you may end only your own sessions")),
        Some(false) => Err(ApiError::not_found(format!("session {id}"))),
        Some(true) => {
            state
                .audit
                .record(
                    &principal.username,
                    request_id,
                    vec![local::security_event(
                        "session-revoked",
                        "success",
                        id.to_string(),
                    )],
                )
                .await
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupRoleRow {
    /// The group's DN or its name (`cn`).
    pub group: String,
    pub facility_id: Uuid,
    /// physician, nurse, front-desk, pharmacist, lab-technician, billing, auditor, it-admin.
    pub role: String,
}

/// The directory group → role table.
async fn get_group_roles(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
) -> Response {
    reply(&rid.0, group_mapping(&state, &principal).await)
}

/// The mapping as rows, for IT administrators.
pub async fn group_mapping(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<GroupRoleRow>, ApiError> {
    if !is_user_admin(principal, Action::Read) {
        return Err(ApiError::forbidden(
            "only IT administrators see the directory mapping",
        ));
    }
    let rows = state.store.run(directory::group_roles).await?;
    Ok(rows
        .into_iter()
        .map(|r| GroupRoleRow {
            group: r.group,
            facility_id: r.facility_id,
            role: accounts::role_name(r.role),
        })
        .collect())
}

/// Replaces the directory group → role table. People get the new roles at their next sign-in.
async fn put_group_roles(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Json(rows): Json<Vec<GroupRoleRow>>,
) -> Response {
    reply(
        &rid.0,
        replace_group_mapping(&state, &principal, &rows, &rid.0)
            .await
            .map(|count| serde_json::json!({"rows": count})),
    )
}

/// The rule behind changing the mapping, shared by the API and the portal.
pub async fn replace_group_mapping(
    state: &AppState,
    principal: &Principal,
    rows: &[GroupRoleRow],
    request_id: &str,
) -> Result<usize, ApiError> {
    let allowed = principal.facilities_with(Permission::new(Resource::User, Action::Write));
    let mut mapping = Vec::new();
    for row in rows {
        let role: Role = row
            .role
            .parse()
            .map_err(|e: String| ApiError::bad_request("KX-REQ-001", e))?;
        if role == Role::Administrator {
            return Err(ApiError::bad_request(
                "KX-REQ-001",
                "the administrator role is for local break-glass accounts only",
            ));
        }
        if !allowed.contains(&row.facility_id) {
            return Err(ApiError::forbidden(
                "you may map groups only at facilities you administer",
            ));
        }
        if row.group.trim().is_empty() {
            return Err(ApiError::bad_request("KX-REQ-001", "a group name is empty"));
        }
        mapping.push(GroupRole {
            group: row.group.trim().to_owned(),
            facility_id: row.facility_id,
            role,
        });
    }
    let count = mapping.len();
    state
        .store
        .run(move |conn| directory::replace_group_roles(conn, &mapping))
        .await?;
    state
        .audit
        .record(
            &principal.username,
            request_id,
            vec![local::security_event(
                "group-mapping-changed",
                "success",
                format!("{count} rows"),
            )],
        )
        .await?;
    Ok(count)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub client_id: String,
    pub name: String,
    /// Space-separated SMART scopes, e.g. `system/Observation.write system/Patient.read`.
    pub scopes: String,
    pub facility_id: Uuid,
    /// The role whose permissions the client acts with (e.g. lab-technician).
    pub role: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientSecret {
    pub client_id: String,
    /// Shown once. Store it in the calling system's secret store.
    pub client_secret: String,
}

/// Registers an API client (or gives an existing one a new secret).
async fn create_client(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Json(body): Json<NewClient>,
) -> Response {
    let result = async {
        if !principal.may(
            Permission::new(Resource::User, Action::Write),
            body.facility_id,
        ) {
            return Err(ApiError::forbidden(
                "only IT administrators of that facility register API clients",
            ));
        }
        parse_scopes(&body.scopes).map_err(|e| ApiError::bad_request("KX-REQ-001", e))?;
        let role: Role = body
            .role
            .parse()
            .map_err(|e: String| ApiError::bad_request("KX-REQ-001", e))?;
        let valid_id = !body.client_id.is_empty()
            && body
                .client_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_id {
            return Err(ApiError::bad_request(
                "KX-REQ-001",
                "client_id may hold only letters, digits, - and _",
            ));
        }
        let secret = session::random_token();
        let hash = {
            let secret = secret.clone();
            tokio::task::spawn_blocking(move || hash_password(&secret))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(ApiError::internal)?
        };
        let grants = vec![Grant {
            facility_id: body.facility_id,
            role,
        }];
        let (id, name, scopes) = (
            body.client_id.clone(),
            body.name.clone(),
            body.scopes.clone(),
        );
        state
            .store
            .run(move |conn| directory::upsert_client(conn, &id, &name, &hash, &scopes, &grants))
            .await?;
        state
            .audit
            .record(
                &principal.username,
                &rid.0,
                vec![local::security_event(
                    "client-registered",
                    "success",
                    body.client_id.clone(),
                )],
            )
            .await?;
        Ok(ClientSecret {
            client_id: body.client_id,
            client_secret: secret,
        })
    };
    reply(&rid.0, result.await)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PractitionerLink {
    pub practitioner_id: Option<Uuid>,
}

/// Links an account to its Practitioner record, so encounters it takes part in form a care
/// relationship.
async fn link_practitioner(
    State(state): State<AppState>,
    rid: RequestId,
    Caller(principal): Caller,
    Path(username): Path<String>,
    Json(body): Json<PractitionerLink>,
) -> Response {
    let result = async {
        if !is_user_admin(&principal, Action::Write) {
            return Err(ApiError::forbidden(
                "only IT administrators link accounts to practitioners",
            ));
        }
        let name = username.clone();
        state
            .store
            .run(move |conn| {
                let account = accounts::find_by_username(conn, &name)?
                    .ok_or(kiorex_store::StoreError::NotFound)?;
                directory::link_practitioner(conn, account.id, body.practitioner_id)
            })
            .await?;
        Ok(serde_json::json!({"username": username, "practitioner_id": body.practitioner_id}))
    };
    reply(&rid.0, result.await)
}

/// The OAuth 2.0 token endpoint (client-credentials grant, form-encoded).
async fn oauth_token(
    State(state): State<AppState>,
    rid: RequestId,
    headers: HeaderMap,
    form: Result<Form<super::clients::TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    match form {
        Ok(Form(form)) => super::clients::token(&state, &headers, form, &rid.0).await,
        Err(_) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_request", "error_description": "send application/x-www-form-urlencoded with grant_type=client_credentials"})),
        )
            .into_response(),
    }
}

/// Why a password is refused, for forms that set one.
pub fn check_password_policy(username: &str, password: &str) -> Result<(), ApiError> {
    let problems = password_problems(username, password);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "KX-AUTH-011",
            format!("choose another password: {}", problems.join("; ")),
        ))
    }
}
