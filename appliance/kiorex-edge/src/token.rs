//! Partner tokens as the edge sees them: core's EdDSA JWTs, verified with core's PUBLIC key.
//! The edge reads only `client_id` (who, for the per-client rate limit and the logs) and `scope`.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Claims {
    client_id: String,
    #[serde(default)]
    scope: String,
}

/// A verified client-credentials token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerToken {
    pub client_id: String,
    pub scope: String,
}

pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    /// From core's Ed25519 public key (SPKI PEM).
    pub fn from_public_pem(pem: &str) -> Result<TokenVerifier, String> {
        let key = DecodingKey::from_ed_pem(pem.as_bytes())
            .map_err(|e| format!("not an Ed25519 public key (PEM): {e}"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&["kiorex-core"]);
        validation.set_audience(&["kiorex"]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 30;
        Ok(TokenVerifier { key, validation })
    }

    /// The token from an `Authorization` header value; None when absent, forged, expired, for
    /// another audience, or not a client-credentials token.
    pub fn verify_header(&self, authorization: Option<&str>) -> Option<PartnerToken> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .ok()?
            .claims;
        if claims.client_id.is_empty() {
            return None;
        }
        Some(PartnerToken {
            client_id: claims.client_id,
            scope: claims.scope,
        })
    }
}
