//! Sign-in through the hospital's OpenID Connect provider (Keycloak, ADFS, Entra ID,
//! Authentik …) with the `openidconnect` crate: authorization code flow with PKCE (S256), state
//! and nonce checked, the ID token's signature checked against the provider's JWKS (fetched
//! again when the provider rotates its keys), issuer, audience and expiry checked with a bounded
//! clock skew. Claim names for username, email, display name and groups come from config.

use super::local::Person;
use chrono::{DateTime, Duration, Utc};
use openidconnect::core::{CoreClient, CoreResponseType};
use openidconnect::{
    AdditionalProviderMetadata, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadata, RedirectUrl, Scope,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::RwLock;

#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Where the IdP sends the browser back: `https://<portal>/api/v1/auth/oidc/callback`.
    pub redirect_url: String,
    /// Extra scopes besides `openid` (e.g. `profile email groups`).
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub email_claim: String,
    pub name_claim: String,
    pub groups_claim: String,
    /// PEM bundle of the CA that signed the IdP's certificate, when it is the hospital's own.
    pub ca_pem: Option<Vec<u8>>,
    pub clock_skew_seconds: i64,
    /// Where the IdP sends the browser after logout.
    pub post_logout_redirect_url: Option<String>,
}

/// The one discovery field Kiorex needs beyond the core ones: RP-initiated logout.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogoutMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

type Metadata = ProviderMetadata<
    LogoutMetadata,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreClientAuthMethod,
    openidconnect::core::CoreClaimName,
    openidconnect::core::CoreClaimType,
    openidconnect::core::CoreGrantType,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJweKeyManagementAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreResponseMode,
    openidconnect::core::CoreResponseType,
    openidconnect::core::CoreSubjectIdentifierType,
>;

pub type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What the provider told us at discovery, refreshed hourly and whenever a token is signed by
/// a key we do not have yet.
struct Discovered {
    client: Client,
    end_session: Option<String>,
    at: DateTime<Utc>,
}

pub struct OidcClient {
    pub settings: OidcSettings,
    http: reqwest::Client,
    discovered: RwLock<Option<std::sync::Arc<Discovered>>>,
}

/// How a signature failure starts, so that the caller fetches the provider's keys again.
const UNKNOWN_KEY: &str = "signature not verified by the known keys";

#[derive(Debug)]
pub enum OidcError {
    /// The IdP cannot be reached or answered nonsense.
    Unavailable(String),
    /// The answer is not acceptable (bad state, bad token): someone is replaying or forging.
    Rejected(String),
}

/// Where to send the browser, and what to keep until it comes back.
pub struct Redirect {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

impl OidcClient {
    pub fn new(settings: OidcSettings) -> Result<OidcClient, String> {
        let mut builder = reqwest::Client::builder()
            // The token endpoint must not redirect (RFC 6749 security considerations).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10));
        if let Some(pem) = &settings.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("oidc.ca_file: {e}"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(OidcClient {
            settings,
            http,
            discovered: RwLock::new(None),
        })
    }

    async fn discovered(&self, force: bool) -> Result<std::sync::Arc<Discovered>, OidcError> {
        if !force {
            let cached = self.discovered.read().ok().and_then(|d| d.clone());
            if let Some(d) = cached.filter(|d| Utc::now() - d.at < Duration::hours(1)) {
                return Ok(d);
            }
        }
        let issuer = IssuerUrl::new(self.settings.issuer_url.clone())
            .map_err(|e| OidcError::Unavailable(format!("oidc.issuer_url: {e}")))?;
        let metadata = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(format!("discovery failed: {e}")))?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let redirect = RedirectUrl::new(self.settings.redirect_url.clone())
            .map_err(|e| OidcError::Unavailable(format!("oidc.redirect_url: {e}")))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        let d = std::sync::Arc::new(Discovered {
            client,
            end_session,
            at: Utc::now(),
        });
        if let Ok(mut slot) = self.discovered.write() {
            *slot = Some(d.clone());
        }
        Ok(d)
    }

    /// For `kiorex configtest`: discovery and the key set can be fetched.
    pub async fn check(&self) -> Result<String, String> {
        match self.discovered(true).await {
            Ok(_) => Ok(format!("{} discovered", self.settings.issuer_url)),
            Err(OidcError::Unavailable(why) | OidcError::Rejected(why)) => Err(why),
        }
    }

    /// The IdP's authorization URL with a fresh state, nonce and PKCE challenge.
    pub async fn begin(&self) -> Result<Redirect, OidcError> {
        let d = self.discovered(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = d.client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Redirect {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code and checks the ID token; answers the person and the raw ID token
    /// (kept for the logout hint).
    pub async fn complete(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<(Person, String), OidcError> {
        let d = self.discovered(false).await?;
        let response = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Unavailable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Rejected(format!("code exchange refused: {e}")))?;
        use openidconnect::TokenResponse;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::Rejected("the provider sent no ID token".into()))?
            .to_string();
        let claims = match self.verify(&d.client, &id_token, nonce) {
            Ok(claims) => claims,
            // A key we do not know: the provider may have rotated its keys. Fetch them again
            // once, then decide.
            Err(OidcError::Rejected(why)) if why.starts_with(UNKNOWN_KEY) => {
                let fresh = self.discovered(true).await?;
                self.verify(&fresh.client, &id_token, nonce)?
            }
            Err(e) => return Err(e),
        };
        Ok((self.person(&claims)?, id_token))
    }

    /// Checks an ID token against the client's keys, issuer, audience, expiry and nonce, and
    /// returns its claims as JSON.
    fn verify(&self, client: &Client, id_token: &str, nonce: &str) -> Result<Value, OidcError> {
        verify_id_token(client, id_token, nonce, self.settings.clock_skew_seconds)
    }

    fn person(&self, claims: &Value) -> Result<Person, OidcError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let username = text(&self.settings.username_claim).ok_or_else(|| {
            OidcError::Rejected(format!(
                "the ID token has no {:?} claim (oidc.username_claim)",
                self.settings.username_claim
            ))
        })?;
        let groups = match claims.get(&self.settings.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(Person {
            display_name: text(&self.settings.name_claim).unwrap_or_else(|| username.clone()),
            email: text(&self.settings.email_claim),
            username,
            groups,
        })
    }

    /// The provider's logout URL for RP-initiated logout, when it offers one.
    pub async fn logout_url(&self, id_token: &str) -> Option<String> {
        let d = self.discovered(false).await.ok()?;
        let mut url = reqwest::Url::parse(d.end_session.as_deref()?).ok()?;
        url.query_pairs_mut().append_pair("id_token_hint", id_token);
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id);
        if let Some(back) = &self.settings.post_logout_redirect_url {
            url.query_pairs_mut()
                .append_pair("post_logout_redirect_uri", back);
        }
        Some(url.to_string())
    }
}

/// Verifies an ID token with the `openidconnect` verifier (signature against the JWKS, issuer,
/// audience, expiry and issue time within `skew_seconds`, nonce) and returns all its claims —
/// custom ones such as `groups` included — from the verified token's payload.
pub fn verify_id_token(
    client: &Client,
    id_token: &str,
    nonce: &str,
    skew_seconds: i64,
) -> Result<Value, OidcError> {
    use openidconnect::core::CoreIdToken;
    let token: CoreIdToken = id_token
        .parse()
        .map_err(|e| OidcError::Rejected(format!("malformed ID token: {e}")))?;
    let skew = Duration::seconds(skew_seconds);
    let verifier = client
        .id_token_verifier()
        .set_time_fn(move || Utc::now() - skew)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > Utc::now() + skew {
                Err(format!("issued in the future ({iat})"))
            } else {
                Ok(())
            }
        });
    token
        .claims(&verifier, &Nonce::new(nonce.to_owned()))
        .map_err(|e| match e {
            // A signature that no known key verifies: the provider may have rotated its keys.
            openidconnect::ClaimsVerificationError::SignatureVerification(_) => {
                OidcError::Rejected(format!("{UNKNOWN_KEY}: {e}"))
            }
            other => OidcError::Rejected(format!("ID token refused: {other}")),
        })?;
    payload_of(id_token)
}

/// The JSON payload of a compact JWS (only called once its signature has been checked).
fn payload_of(jws: &str) -> Result<Value, OidcError> {
    use base64::Engine;
    let part = jws
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::Rejected("malformed ID token".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| OidcError::Rejected("malformed ID token payload".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| OidcError::Rejected("malformed ID token payload".into()))
}

/// Builds a client from a provider's metadata document and key set directly (for tests that
/// check the verifier against tokens signed with their own keys).
pub fn client_from_parts(
    metadata_json: &str,
    jwks_json: &str,
    client_id: &str,
) -> Result<Client, String> {
    let metadata: Metadata = serde_json::from_str(metadata_json).map_err(|e| e.to_string())?;
    let metadata = metadata.set_jwks(serde_json::from_str(jwks_json).map_err(|e| e.to_string())?);
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.to_owned()),
        None,
    ))
}
