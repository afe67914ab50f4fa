//! Partner tokens as the edge sees them: core's EdDSA JWTs, verified with core's PUBLIC key.
//! The edge reads only `client_id` (who, for the per-client rate limit and the logs) and `scope`.
//!
//! A partner sends the same token with every request until it expires, and checking an Ed25519
//! signature was a third of the edge's CPU under load. So a token whose signature has been
//! checked is remembered (the whole token as the key, so a changed byte is a different token)
//! until it expires; only good tokens are remembered, so a flood of forged ones cannot fill the
//! cache. Core checks every token again whatever the edge does.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Deserialize)]
struct Claims {
    client_id: String,
    #[serde(default)]
    scope: String,
    exp: u64,
}

/// Tokens remembered at most: far more than a hospital has partners, each with a token or two
/// at a time.
const REMEMBERED: usize = 4_096;

/// Seconds of clock skew allowed on `exp`, as core allows.
const LEEWAY_SECS: u64 = 30;

/// A verified token and the second after which it no longer is.
#[derive(Debug, Clone)]
struct Remembered {
    token: PartnerToken,
    valid_until: u64,
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
    verified: Mutex<HashMap<Box<str>, Remembered>>,
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
        validation.leeway = LEEWAY_SECS;
        Ok(TokenVerifier {
            key,
            validation,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The token from an `Authorization` header value; None when absent, forged, expired, for
    /// another audience, or not a client-credentials token.
    pub fn verify_header(&self, authorization: Option<&str>) -> Option<PartnerToken> {
        self.verify_at(authorization, unix_now())
    }

    fn verify_at(&self, authorization: Option<&str>, now: u64) -> Option<PartnerToken> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if let Some(known) = self.remembered(token, now) {
            return known;
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .ok()?
            .claims;
        if claims.client_id.is_empty() {
            return None;
        }
        let verified = PartnerToken {
            client_id: claims.client_id,
            scope: claims.scope,
        };
        self.remember(
            token,
            &verified,
            claims.exp.saturating_add(LEEWAY_SECS),
            now,
        );
        Some(verified)
    }

    /// Some(answer) when the token was verified before: the token while it is valid, None once
    /// it has expired. None when it was not seen.
    fn remembered(&self, token: &str, now: u64) -> Option<Option<PartnerToken>> {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        let known = verified.get(token)?;
        if now <= known.valid_until {
            return Some(Some(known.token.clone()));
        }
        verified.remove(token);
        Some(None)
    }

    fn remember(&self, token: &str, verified: &PartnerToken, valid_until: u64, now: u64) {
        let mut remembered = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if remembered.len() >= REMEMBERED {
            remembered.retain(|_, r| now <= r.valid_until);
        }
        if remembered.len() >= REMEMBERED {
            remembered.clear();
        }
        remembered.insert(
            token.into(),
            Remembered {
                token: verified.clone(),
                valid_until,
            },
        );
    }

    #[cfg(test)]
    fn remembered_count(&self) -> usize {
        self.verified.lock().map(|v| v.len()).unwrap_or(0)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn keys() -> (EncodingKey, TokenVerifier) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let signing = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap();
        let verifier = TokenVerifier::from_public_pem(&pair.public_key_pem()).unwrap();
        (signing, verifier)
    }

    fn token(key: &EncodingKey, exp: u64) -> String {
        let claims = json!({"iss": "kiorex-core", "aud": "kiorex", "exp": exp,
            "client_id": "lab-1", "scope": "system/Observation.write"});
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, key).unwrap();
        format!("Bearer {jwt}")
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires() {
        let (key, verifier) = keys();
        let now = unix_now();
        let header = token(&key, now + 60);
        let first = verifier.verify_at(Some(&header), now).expect("valid");
        assert_eq!(first.client_id, "lab-1");
        assert_eq!(verifier.remembered_count(), 1);
        assert_eq!(verifier.verify_at(Some(&header), now + 10), Some(first));
        assert_eq!(
            verifier.verify_at(Some(&header), now + 60 + LEEWAY_SECS + 1),
            None,
            "expired, although its signature was checked before"
        );
        assert_eq!(verifier.remembered_count(), 0);
    }

    #[test]
    fn a_changed_token_is_checked_again_and_bad_ones_are_not_remembered() {
        let (key, verifier) = keys();
        let now = unix_now();
        let header = token(&key, now + 60);
        assert!(verifier.verify_at(Some(&header), now).is_some());
        // The same claims signed by another key, and the genuine token with its signature
        // cut short: both differ from the remembered token and fail their own check.
        let (other_key, _) = keys();
        let forged = token(&other_key, now + 60);
        assert_eq!(verifier.verify_at(Some(&forged), now), None);
        let truncated = &header[..header.len() - 2];
        assert_eq!(verifier.verify_at(Some(truncated), now), None);
        assert_eq!(verifier.remembered_count(), 1);
    }

    #[test]
    fn expired_tokens_make_room_when_the_cache_is_full() {
        let (key, verifier) = keys();
        let now = unix_now();
        for i in 0..REMEMBERED as u64 {
            let valid = PartnerToken {
                client_id: format!("c{i}"),
                scope: String::new(),
            };
            verifier.remember(&format!("t{i}"), &valid, now + (i % 2) * 100, now);
        }
        let header = token(&key, now + 600);
        assert!(verifier.verify_at(Some(&header), now + 50).is_some());
        // The half that expired at `now` went; the other half and the new token stay.
        assert_eq!(verifier.remembered_count(), REMEMBERED / 2 + 1);
    }
}
