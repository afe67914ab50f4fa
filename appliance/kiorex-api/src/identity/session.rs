//! Browser sessions: a random token in a `__Host-` cookie (Secure, HttpOnly, SameSite=Strict),
//! only its SHA-256 in PostgreSQL; idle and absolute timeouts; a CSRF token per session that
//! every state-changing request must echo in `X-CSRF-Token`.

use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, Duration, Utc};
use http::request::Parts;
use http::{HeaderMap, Method};
use kiorex_domain::permission::{Grant, Principal};
use kiorex_store::sessions::{self, NewSession, Session};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const COOKIE: &str = "__Host-kiorex-session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A live session and who it belongs to.
#[derive(Debug, Clone)]
pub struct Live {
    pub session: Session,
    pub principal: Principal,
}

impl Live {
    /// When the session ends if nothing more happens: the idle limit or the absolute one.
    pub fn ends_at(&self, idle_seconds: i64) -> DateTime<Utc> {
        (self.session.last_seen_at + Duration::seconds(idle_seconds)).min(self.session.expires_at)
    }
}

/// How a person signed in, for the session row and the audit trail.
pub struct SignedIn<'a> {
    pub user_id: Uuid,
    pub username: &'a str,
    pub grants: &'a [Grant],
    pub method: &'a str,
    pub id_token: Option<&'a str>,
    pub source_address: &'a str,
    pub user_agent: &'a str,
}

/// A new session: the cookie token (only the browser keeps it) and the CSRF token.
pub struct Started {
    pub id: Uuid,
    pub token: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Starts a session. Always a new token: a session id from before sign-in is never reused
/// (session fixation).
pub async fn start(state: &AppState, who: SignedIn<'_>) -> Result<Started, ApiError> {
    let now = Utc::now();
    let settings = &state.identity.settings;
    let started = Started {
        id: Uuid::new_v4(),
        token: random_token(),
        csrf_token: random_token(),
        expires_at: now + Duration::seconds(settings.session_absolute_seconds),
    };
    let hash = token_hash(&started.token);
    let grants = serde_json::to_value(who.grants).map_err(|e| ApiError::internal(e.to_string()))?;
    let (id, csrf, expires_at) = (started.id, started.csrf_token.clone(), started.expires_at);
    let (user_id, method) = (who.user_id, who.method.to_owned());
    let id_token = who.id_token.map(str::to_owned);
    let (source, agent) = (who.source_address.to_owned(), who.user_agent.to_owned());
    state
        .store
        .run(move |conn| {
            sessions::create(
                conn,
                NewSession {
                    id,
                    token_hash: &hash,
                    user_id,
                    csrf_token: &csrf,
                    method: &method,
                    grants,
                    id_token: id_token.as_deref(),
                    source_address: &source,
                    user_agent: &agent,
                    now,
                    expires_at,
                },
            )
        })
        .await?;
    Ok(started)
}

/// `Set-Cookie` for a new session. No `Max-Age`: the cookie dies with the browser, and the
/// server enforces the timeouts.
pub fn cookie_header(token: &str) -> String {
    format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

pub fn clear_cookie_header() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session token from the request's cookies, if any.
pub fn token_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// Resolves the session cookie: `None` without a cookie; an error when the session is unknown,
/// revoked, idle too long, or past its absolute end.
pub async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Option<Live>, ApiError> {
    let Some(token) = token_of(headers) else {
        return Ok(None);
    };
    let hash = token_hash(&token);
    let now = Utc::now();
    let idle = Duration::seconds(state.identity.settings.session_idle_seconds);
    let found = state
        .store
        .run(move |conn| {
            let Some((session, username)) = sessions::find_live(conn, &hash, now)? else {
                return Ok(None);
            };
            if session.last_seen_at + idle <= now {
                sessions::revoke(conn, session.id, now)?;
                return Ok(None);
            }
            // Touch at most every 30 s: a page with twenty partial updates writes once.
            if now - session.last_seen_at > Duration::seconds(30) {
                sessions::touch(conn, session.id, now)?;
            }
            Ok(Some((session, username)))
        })
        .await?;
    let (session, username) = found.ok_or_else(|| {
        ApiError::unauthenticated("your session has ended; sign in again")
            .with_extra(serde_json::json!({"reason": "session-ended"}))
    })?;
    let grants: Vec<Grant> = serde_json::from_value(session.grants.clone()).unwrap_or_default();
    let principal = Principal::person(session.user_id, username, grants);
    Ok(Some(Live { session, principal }))
}

/// State-changing requests made with a session cookie must carry the session's CSRF token: a
/// page from another site can make the browser send the cookie, but cannot read the token.
pub fn check_csrf(method: &Method, headers: &HeaderMap, live: &Live) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if constant_time_eq(sent.as_bytes(), live.session.csrf_token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "KX-AUTH-004",
            "this form has expired or did not come from Kiorex; reload the page and try again",
        ))
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session behind a request, for the routes that act on the session itself.
pub async fn live_from(parts: &Parts, state: &AppState) -> Result<Live, ApiError> {
    let live = resolve(state, &parts.headers)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("sign in first"))?;
    check_csrf(&parts.method, &parts.headers, &live)?;
    Ok(live)
}

/// The client's address: the TCP peer, or the first `X-Forwarded-For` hop when the peer is a
/// trusted proxy (the edge).
pub fn source_address(parts: &Parts, trusted: &[std::net::IpAddr]) -> String {
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded = || {
        parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned())
    };
    match peer {
        Some(ip) if trusted.contains(&ip) => forwarded().unwrap_or_else(|| ip.to_string()),
        Some(ip) => ip.to_string(),
        None => "unknown".to_owned(),
    }
}
