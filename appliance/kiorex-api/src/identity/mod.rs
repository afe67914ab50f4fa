//! Sign-in and sessions: local break-glass accounts (argon2, TOTP, lockout), the hospital
//! directory over LDAPS/StartTLS, an OpenID Connect IdP, and API clients with the
//! client-credentials grant. Whatever the path, the result is the same: an account whose grants
//! were worked out at this sign-in, and a session (browser) or a short-lived token (API).

pub mod clients;
pub mod ldap;
pub mod local;
pub mod oidc;
pub mod routes;
pub mod session;

use kiorex_domain::identity::LockoutPolicy;
use std::sync::Arc;

/// How sign-in behaves, from the `[identity]`, `[ldap]` and `[oidc]` configuration sections.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// A session ends after this long without a request.
    pub session_idle_seconds: i64,
    /// A session ends this long after sign-in, active or not.
    pub session_absolute_seconds: i64,
    /// How long a break-the-glass access to one patient lasts.
    pub break_glass_seconds: i64,
    /// Lifetime of API client tokens.
    pub client_token_ttl_seconds: i64,
    pub lockout: LockoutPolicy,
    /// Whether treating roles need a care relationship to open a patient's clinical record.
    pub require_care_relationship: bool,
    /// Addresses of proxies (the edge) whose `X-Forwarded-For` names the real client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub ldap: Option<ldap::LdapSettings>,
    pub oidc: Option<oidc::OidcSettings>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            session_idle_seconds: 15 * 60,
            session_absolute_seconds: 12 * 3600,
            break_glass_seconds: 3600,
            client_token_ttl_seconds: 300,
            lockout: LockoutPolicy::default(),
            require_care_relationship: true,
            trusted_proxies: Vec::new(),
            ldap: None,
            oidc: None,
        }
    }
}

/// Identity settings plus what sign-in keeps between requests (the IdP's discovery document).
pub struct Identity {
    pub settings: IdentitySettings,
    pub oidc: Option<oidc::OidcClient>,
}

impl Identity {
    pub fn new(settings: IdentitySettings) -> Result<Arc<Identity>, String> {
        let oidc = match &settings.oidc {
            Some(s) => Some(oidc::OidcClient::new(s.clone())?),
            None => None,
        };
        Ok(Arc::new(Identity { settings, oidc }))
    }
}
