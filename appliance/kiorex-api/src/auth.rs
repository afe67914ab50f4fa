//! Who is calling: local accounts checked with argon2, and short-lived EdDSA-signed bearer
//! tokens that carry the caller's grants. The edge can verify these tokens with the public key
//! alone; only `core` holds the signing key.

use crate::error::{ApiError, Dialect};
use crate::state::AppState;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePublicKey};
use http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kiorex_domain::identity::{Scope, parse_scopes};
use kiorex_domain::permission::{Grant, Principal};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ISSUER: &str = "kiorex-core";
const AUDIENCE: &str = "kiorex";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    name: String,
    grants: Vec<Grant>,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: Uuid,
    /// API clients only: the client id and the space-separated SMART scopes it was given. The
    /// edge checks the scope of a partner route from this claim alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// Signs and verifies access tokens.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_seconds: i64,
}

impl TokenService {
    /// From an Ed25519 private key in PKCS#8 PEM (what `kiorex keygen` writes).
    pub fn from_pem(private_pem: &str, ttl_seconds: i64) -> Result<TokenService, String> {
        let signing = SigningKey::from_pkcs8_pem(private_pem)
            .map_err(|e| format!("not an Ed25519 PKCS#8 private key: {e}"))?;
        let public_pem = signing
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| e.to_string())?;
        let encoding =
            EncodingKey::from_ed_pem(private_pem.as_bytes()).map_err(|e| e.to_string())?;
        let decoding =
            DecodingKey::from_ed_pem(public_pem.as_bytes()).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 30;
        Ok(TokenService {
            encoding,
            decoding,
            validation,
            ttl_seconds,
        })
    }

    pub fn ttl_seconds(&self) -> i64 {
        self.ttl_seconds
    }

    pub fn issue(&self, principal: &Principal) -> Result<String, ApiError> {
        self.sign(principal, None, self.ttl_seconds)
    }

    /// A token for an API client: its grants, limited by `scope`, for `ttl_seconds`.
    pub fn issue_client(
        &self,
        principal: &Principal,
        client_id: &str,
        ttl_seconds: i64,
    ) -> Result<String, ApiError> {
        self.sign(principal, Some(client_id), ttl_seconds)
    }

    fn sign(
        &self,
        principal: &Principal,
        client_id: Option<&str>,
        ttl_seconds: i64,
    ) -> Result<String, ApiError> {
        let now = Utc::now().timestamp();
        let scope = principal
            .scopes
            .as_ref()
            .map(|scopes| scopes.iter().map(scope_text).collect::<Vec<_>>().join(" "));
        let claims = Claims {
            sub: principal.user_id,
            name: principal.username.clone(),
            grants: principal.grants.clone(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + ttl_seconds,
            jti: Uuid::new_v4(),
            client_id: client_id.map(str::to_owned),
            scope,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("token signing failed: {e}")))
    }

    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| {
                ApiError::unauthenticated(
                    "the access token is invalid or has expired; sign in again",
                )
            })?;
        let c = data.claims;
        let scopes = match &c.scope {
            Some(text) => Some(parse_scopes(text).map_err(|_| {
                ApiError::unauthenticated("the access token carries an unknown scope")
            })?),
            None => None,
        };
        Ok(Principal {
            user_id: c.sub,
            username: c.name,
            grants: c.grants,
            scopes,
        })
    }
}

/// `system/Observation.write` from its parts.
pub fn scope_text(scope: &Scope) -> String {
    let access = match (scope.read, scope.write) {
        (true, true) => "*",
        (true, false) => "read",
        _ => "write",
    };
    format!("system/{}.{access}", scope.resource_type)
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored argon2 hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// The authenticated caller of a REST route.
pub struct Caller(pub Principal);

/// The authenticated caller of a FHIR route (errors as OperationOutcome).
pub struct FhirCaller(pub Principal);

/// Who is calling: a bearer token (API clients, scripts) or the session cookie (the portal;
/// state-changing requests must then carry the CSRF token).
async fn principal_from(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    if let Some(header) = parts.headers.get(http::header::AUTHORIZATION) {
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthenticated("the Authorization header must be a Bearer token")
            })?;
        return state.tokens.verify(token.trim());
    }
    let live = crate::identity::session::resolve(state, &parts.headers)
        .await?
        .ok_or_else(|| {
            ApiError::unauthenticated("sign in first: send Authorization: Bearer <token>")
        })?;
    crate::identity::session::check_csrf(&parts.method, &parts.headers, &live)?;
    Ok(live.principal)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        principal_from(parts, state).await.map(Caller).map_err(|e| {
            e.render(
                Dialect::Problem,
                &crate::error::request_id_of(&parts.headers),
            )
            .into_response()
        })
    }
}

impl FromRequestParts<AppState> for FhirCaller {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        principal_from(parts, state)
            .await
            .map(FhirCaller)
            .map_err(|e| {
                e.render(Dialect::Fhir, &crate::error::request_id_of(&parts.headers))
                    .into_response()
            })
    }
}

/// An argon2 hash of nothing anyone knows: unknown users are checked against it so that the
/// time taken does not reveal which usernames exist.
pub fn dummy_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("kiorex-dummy-password").unwrap_or_default())
        .clone()
}

/// A request id extractor for handlers.
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(crate::error::request_id_of(&parts.headers)))
    }
}

/// The public key (SPKI PEM) of an Ed25519 private key, for the edge, which verifies tokens
/// without being able to sign them.
pub fn public_key_pem(private_pem: &str) -> Result<String, String> {
    SigningKey::from_pkcs8_pem(private_pem)
        .map_err(|e| format!("not an Ed25519 PKCS#8 private key: {e}"))?
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| e.to_string())
}

/// Generates a new Ed25519 signing key as PKCS#8 PEM (for `kiorex keygen` and tests).
pub fn generate_signing_key_pem() -> Result<String, String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    key.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal::person(Uuid::new_v4(), "nurse.a", vec![])
    }

    #[test]
    fn a_token_round_trips_and_a_forged_one_fails() {
        let service = TokenService::from_pem(&generate_signing_key_pem().unwrap(), 900).unwrap();
        let other = TokenService::from_pem(&generate_signing_key_pem().unwrap(), 900).unwrap();
        let token = service.issue(&principal()).unwrap();
        assert_eq!(service.verify(&token).unwrap().username, "nurse.a");
        assert!(
            other.verify(&token).is_err(),
            "a token signed with another key must fail"
        );
        assert!(service.verify(&format!("{token}x")).is_err());
    }

    #[test]
    fn an_expired_token_fails() {
        let service = TokenService::from_pem(&generate_signing_key_pem().unwrap(), -120).unwrap();
        let token = service.issue(&principal()).unwrap();
        assert!(service.verify(&token).is_err());
    }

    #[test]
    fn passwords_verify_only_when_right() {
        let hash = hash_password("correct horse battery staple").unwrap();
        assert!(verify_password("correct horse battery staple", &hash));
        assert!(!verify_password("Correct horse battery staple", &hash));
        assert!(!verify_password("x", "not a hash"));
    }
}
