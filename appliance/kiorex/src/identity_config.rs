//! The `[identity]`, `[ldap]` and `[oidc]` sections: sessions and lockout, the hospital
//! directory, and the OpenID Connect provider. Validated like the rest of the configuration.

use crate::config::{ConfigError, KeyDoc, err, in_range, optional_secret, secret};
use kiorex_api::identity::IdentitySettings;
use kiorex_api::identity::ldap::{GroupSource, LdapSettings};
use kiorex_api::identity::oidc::OidcSettings;
use kiorex_domain::identity::LockoutPolicy;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    session_idle_minutes: Option<i64>,
    session_absolute_hours: Option<i64>,
    break_glass_minutes: Option<i64>,
    client_token_ttl_seconds: Option<i64>,
    lockout_threshold: Option<i64>,
    lockout_address_threshold: Option<i64>,
    lockout_base_seconds: Option<i64>,
    lockout_max_seconds: Option<i64>,
    require_care_relationship: Option<bool>,
    trusted_proxies: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLdap {
    url: Option<String>,
    start_tls: Option<bool>,
    allow_insecure: Option<bool>,
    ca_file: Option<PathBuf>,
    bind_dn: Option<String>,
    bind_password: Option<String>,
    bind_password_file: Option<PathBuf>,
    user_base: Option<String>,
    user_filter: Option<String>,
    username_attribute: Option<String>,
    display_name_attribute: Option<String>,
    email_attribute: Option<String>,
    group_search_base: Option<String>,
    group_search_filter: Option<String>,
    active_directory: Option<bool>,
    disabled_attribute: Option<String>,
    timeout_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    issuer_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    redirect_url: Option<String>,
    scopes: Option<String>,
    username_claim: Option<String>,
    email_claim: Option<String>,
    name_claim: Option<String>,
    groups_claim: Option<String>,
    ca_file: Option<PathBuf>,
    clock_skew_seconds: Option<i64>,
    post_logout_redirect_url: Option<String>,
}

macro_rules! key {
    ($key:literal, $default:literal, $meaning:literal) => {
        KeyDoc {
            key: $key,
            default: $default,
            secret: false,
            meaning: $meaning,
        }
    };
    (secret $key:literal, $default:literal, $meaning:literal) => {
        KeyDoc {
            key: $key,
            default: $default,
            secret: true,
            meaning: $meaning,
        }
    };
}

pub const IDENTITY_KEYS: &[KeyDoc] = &[
    key!(
        "identity.session_idle_minutes",
        "15",
        "A portal session ends after this many minutes without activity (1 to 720)."
    ),
    key!(
        "identity.session_absolute_hours",
        "12",
        "A portal session ends this many hours after sign-in, active or not (1 to 72)."
    ),
    key!(
        "identity.break_glass_minutes",
        "60",
        "How long break-the-glass access to one patient lasts (5 to 1440)."
    ),
    key!(
        "identity.client_token_ttl_seconds",
        "300",
        "Lifetime of API client (client-credentials) tokens (60 to 3600)."
    ),
    key!(
        "identity.lockout_threshold",
        "5",
        "Failed sign-ins of one account before it is locked (3 to 50)."
    ),
    key!(
        "identity.lockout_address_threshold",
        "20",
        "Failed sign-ins from one address before it is locked (5 to 1000)."
    ),
    key!(
        "identity.lockout_base_seconds",
        "30",
        "First lock length; it doubles with each further failure (1 to 3600)."
    ),
    key!(
        "identity.lockout_max_seconds",
        "900",
        "Longest lock (10 to 86400)."
    ),
    key!(
        "identity.require_care_relationship",
        "true",
        "Whether physicians, nurses, pharmacists and lab technicians need a care relationship (or break-the-glass) to open a patient's clinical record."
    ),
    key!(
        "identity.trusted_proxies",
        "(none)",
        "Comma-separated addresses of proxies (the edge) whose X-Forwarded-For names the client, for lockout by address."
    ),
    key!(
        "ldap.url",
        "(no directory)",
        "Directory URL: ldaps://dc1.hospital.local:636, or ldap://… with ldap.start_tls = true."
    ),
    key!(
        "ldap.start_tls",
        "false",
        "Upgrade an ldap:// connection with StartTLS."
    ),
    key!(
        "ldap.allow_insecure",
        "false",
        "Allow plain ldap:// without TLS (passwords in clear). Test labs only; logged as a warning at every start."
    ),
    key!(
        "ldap.ca_file",
        "(system roots)",
        "PEM bundle of the CA that signed the directory's certificate."
    ),
    key!(
        "ldap.bind_dn",
        "(required with ldap.url)",
        "Service account that searches for users, e.g. cn=kiorex-svc,ou=Service,dc=hospital,dc=local."
    ),
    key!(secret "ldap.bind_password", "(required with ldap.url)", "Password of the service account."),
    key!(
        "ldap.user_base",
        "(required with ldap.url)",
        "Where users are searched, e.g. ou=Staff,dc=hospital,dc=local."
    ),
    key!(
        "ldap.user_filter",
        "(uid={username})",
        "Filter that finds one user; {username} is escaped. AD: (sAMAccountName={username}) or (userPrincipalName={username})."
    ),
    key!(
        "ldap.username_attribute",
        "uid",
        "Attribute holding the Kiorex username (AD: sAMAccountName)."
    ),
    key!(
        "ldap.display_name_attribute",
        "cn",
        "Attribute with the person's display name (AD: displayName)."
    ),
    key!(
        "ldap.email_attribute",
        "mail",
        "Attribute with the person's e-mail."
    ),
    key!(
        "ldap.group_search_base",
        "(use memberOf)",
        "Search groups here instead of reading memberOf."
    ),
    key!(
        "ldap.group_search_filter",
        "(member={dn})",
        "Group search filter; {dn} is the user's DN, {username} the username."
    ),
    key!(
        "ldap.active_directory",
        "false",
        "Active Directory: refuse accounts whose userAccountControl has the ACCOUNTDISABLE bit."
    ),
    key!(
        "ldap.disabled_attribute",
        "(none)",
        "attribute=value that marks a disabled account in other directories, e.g. nsAccountLock=true."
    ),
    key!(
        "ldap.timeout_seconds",
        "5",
        "Connect and operation timeout for the directory (1 to 60)."
    ),
    key!(
        "oidc.issuer_url",
        "(no single sign-on)",
        "OpenID Connect issuer; its /.well-known/openid-configuration is read."
    ),
    key!(
        "oidc.client_id",
        "(required with oidc.issuer_url)",
        "Client id registered at the IdP for Kiorex."
    ),
    key!(secret "oidc.client_secret", "(none: public client with PKCE)", "Client secret, for confidential clients."),
    key!(
        "oidc.redirect_url",
        "(required with oidc.issuer_url)",
        "https://<portal>/api/v1/auth/oidc/callback, registered at the IdP."
    ),
    key!(
        "oidc.scopes",
        "openid profile email",
        "Scopes to ask for, space-separated (add groups where the IdP needs it)."
    ),
    key!(
        "oidc.username_claim",
        "preferred_username",
        "ID token claim with the username (Entra ID: upn or preferred_username)."
    ),
    key!(
        "oidc.email_claim",
        "email",
        "ID token claim with the e-mail."
    ),
    key!(
        "oidc.name_claim",
        "name",
        "ID token claim with the display name."
    ),
    key!(
        "oidc.groups_claim",
        "groups",
        "ID token claim with the person's groups (mapped to roles)."
    ),
    key!(
        "oidc.ca_file",
        "(system roots)",
        "PEM bundle of the CA that signed the IdP's certificate."
    ),
    key!(
        "oidc.clock_skew_seconds",
        "60",
        "Tolerated clock difference with the IdP when checking token times (0 to 300)."
    ),
    key!(
        "oidc.post_logout_redirect_url",
        "(none)",
        "Where the IdP sends the browser after logout."
    ),
];

fn read_ca(errors: &mut Vec<ConfigError>, key: &str, path: Option<&Path>) -> Option<Vec<u8>> {
    let path = path?;
    match std::fs::read(path) {
        Ok(pem) if String::from_utf8_lossy(&pem).contains("BEGIN CERTIFICATE") => Some(pem),
        Ok(_) => {
            errors.push(err(
                key,
                format!("{} holds no PEM certificate", path.display()),
            ));
            None
        }
        Err(e) => {
            errors.push(err(key, format!("cannot read {}: {e}", path.display())));
            None
        }
    }
}

pub fn validate_identity(
    errors: &mut Vec<ConfigError>,
    identity: RawIdentity,
    ldap: RawLdap,
    oidc: RawOidc,
) -> IdentitySettings {
    let minutes = |errors: &mut Vec<ConfigError>, key, v: Option<i64>, d, min, max| {
        in_range(errors, key, v.unwrap_or(d), min, max) * 60
    };
    let session_idle_seconds = minutes(
        errors,
        "identity.session_idle_minutes",
        identity.session_idle_minutes,
        15,
        1,
        720,
    );
    let session_absolute_seconds = in_range(
        errors,
        "identity.session_absolute_hours",
        identity.session_absolute_hours.unwrap_or(12),
        1,
        72,
    ) * 3600;
    let break_glass_seconds = minutes(
        errors,
        "identity.break_glass_minutes",
        identity.break_glass_minutes,
        60,
        5,
        1440,
    );
    let lockout = LockoutPolicy {
        account_threshold: in_range(
            errors,
            "identity.lockout_threshold",
            identity.lockout_threshold.unwrap_or(5),
            3,
            50,
        ) as i32,
        address_threshold: in_range(
            errors,
            "identity.lockout_address_threshold",
            identity.lockout_address_threshold.unwrap_or(20),
            5,
            1000,
        ) as i32,
        base_seconds: in_range(
            errors,
            "identity.lockout_base_seconds",
            identity.lockout_base_seconds.unwrap_or(30),
            1,
            3600,
        ),
        max_seconds: in_range(
            errors,
            "identity.lockout_max_seconds",
            identity.lockout_max_seconds.unwrap_or(900),
            10,
            86_400,
        ),
    };
    let mut trusted_proxies = Vec::new();
    for part in identity
        .trusted_proxies
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match part.parse() {
            Ok(ip) => trusted_proxies.push(ip),
            Err(_) => errors.push(err(
                "identity.trusted_proxies",
                format!("{part:?} is not an IP address"),
            )),
        }
    }
    IdentitySettings {
        session_idle_seconds,
        session_absolute_seconds,
        break_glass_seconds,
        client_token_ttl_seconds: in_range(
            errors,
            "identity.client_token_ttl_seconds",
            identity.client_token_ttl_seconds.unwrap_or(300),
            60,
            3600,
        ),
        lockout,
        require_care_relationship: identity.require_care_relationship.unwrap_or(true),
        trusted_proxies,
        ldap: validate_ldap(errors, ldap),
        oidc: validate_oidc(errors, oidc),
    }
}

fn required(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<String>,
    because: &str,
) -> String {
    value.filter(|v| !v.trim().is_empty()).unwrap_or_else(|| {
        errors.push(err(key, format!("is required when {because} is set")));
        String::new()
    })
}

fn validate_ldap(errors: &mut Vec<ConfigError>, raw: RawLdap) -> Option<LdapSettings> {
    let url = raw.url?;
    let start_tls = raw.start_tls.unwrap_or(false);
    let allow_insecure = raw.allow_insecure.unwrap_or(false);
    if !(url.starts_with("ldaps://") || url.starts_with("ldap://")) {
        errors.push(err("ldap.url", "must start with ldaps:// or ldap://"));
    } else if url.starts_with("ldap://") && !start_tls && !allow_insecure {
        errors.push(err(
            "ldap.url",
            "plain ldap:// would send passwords in clear: use ldaps://, or set ldap.start_tls = true (ldap.allow_insecure = true only for a test lab)",
        ));
    } else if url.starts_with("ldaps://") && start_tls {
        errors.push(err(
            "ldap.start_tls",
            "StartTLS is for ldap:// URLs; ldaps:// is TLS already",
        ));
    }
    if url.starts_with("ldap://") && !start_tls && allow_insecure {
        tracing::warn!(target: "kiorex::security", "ldap.allow_insecure is set: directory passwords cross the network in clear text");
    }
    let bind_dn = required(errors, "ldap.bind_dn", raw.bind_dn, "ldap.url");
    let bind_password = secret(
        errors,
        "ldap.bind_password",
        raw.bind_password,
        raw.bind_password_file.as_deref(),
    );
    let user_base = required(errors, "ldap.user_base", raw.user_base, "ldap.url");
    let user_filter = raw.user_filter.unwrap_or_else(|| "(uid={username})".into());
    if !user_filter.contains("{username}") {
        errors.push(err(
            "ldap.user_filter",
            "must contain {username}, e.g. (uid={username})",
        ));
    }
    let disabled_attribute = match raw.disabled_attribute {
        None => None,
        Some(pair) => match pair.split_once('=') {
            Some((a, v)) if !a.trim().is_empty() => {
                Some((a.trim().to_owned(), v.trim().to_owned()))
            }
            _ => {
                errors.push(err(
                    "ldap.disabled_attribute",
                    "write it as attribute=value, e.g. nsAccountLock=true",
                ));
                None
            }
        },
    };
    let groups = match raw.group_search_base {
        Some(base) => GroupSource::Search {
            base,
            filter: raw
                .group_search_filter
                .unwrap_or_else(|| "(member={dn})".into()),
        },
        None => GroupSource::MemberOf,
    };
    Some(LdapSettings {
        ca_pem: read_ca(errors, "ldap.ca_file", raw.ca_file.as_deref()),
        url,
        start_tls,
        allow_insecure,
        bind_dn,
        bind_password,
        user_base,
        user_filter,
        username_attribute: raw.username_attribute.unwrap_or_else(|| "uid".into()),
        display_name_attribute: raw.display_name_attribute.unwrap_or_else(|| "cn".into()),
        email_attribute: raw.email_attribute.unwrap_or_else(|| "mail".into()),
        groups,
        active_directory: raw.active_directory.unwrap_or(false),
        disabled_attribute,
        timeout: Duration::from_secs(in_range(
            errors,
            "ldap.timeout_seconds",
            raw.timeout_seconds.unwrap_or(5),
            1,
            60,
        ) as u64),
    })
}

fn validate_oidc(errors: &mut Vec<ConfigError>, raw: RawOidc) -> Option<OidcSettings> {
    let issuer_url = raw.issuer_url?;
    if !(issuer_url.starts_with("https://")
        || issuer_url.starts_with("http://127.0.0.1")
        || issuer_url.starts_with("http://localhost"))
    {
        errors.push(err(
            "oidc.issuer_url",
            "must be an https:// URL (plain http only on localhost, for tests)",
        ));
    }
    let client_id = required(errors, "oidc.client_id", raw.client_id, "oidc.issuer_url");
    let redirect_url = required(
        errors,
        "oidc.redirect_url",
        raw.redirect_url,
        "oidc.issuer_url",
    );
    let scopes = raw.scopes.unwrap_or_else(|| "openid profile email".into());
    Some(OidcSettings {
        client_secret: optional_secret(
            errors,
            "oidc.client_secret",
            raw.client_secret,
            raw.client_secret_file.as_deref(),
        ),
        ca_pem: read_ca(errors, "oidc.ca_file", raw.ca_file.as_deref()),
        issuer_url,
        client_id,
        redirect_url,
        scopes: scopes
            .split_whitespace()
            .filter(|s| *s != "openid")
            .map(str::to_owned)
            .collect(),
        username_claim: raw
            .username_claim
            .unwrap_or_else(|| "preferred_username".into()),
        email_claim: raw.email_claim.unwrap_or_else(|| "email".into()),
        name_claim: raw.name_claim.unwrap_or_else(|| "name".into()),
        groups_claim: raw.groups_claim.unwrap_or_else(|| "groups".into()),
        clock_skew_seconds: in_range(
            errors,
            "oidc.clock_skew_seconds",
            raw.clock_skew_seconds.unwrap_or(60),
            0,
            300,
        ),
        post_logout_redirect_url: raw.post_logout_redirect_url,
    })
}
