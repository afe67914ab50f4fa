//! Sign-in against the hospital directory (OpenLDAP or Active Directory) with `ldap3`: a service
//! account finds the person by a configured filter, then a bind as that person checks the
//! password. TLS only (LDAPS or StartTLS) with the hospital's CA, unless an explicit insecure
//! flag says otherwise. Usernames are escaped before they reach a filter.

use super::local::Person;
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;

/// Where group membership comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSource {
    /// The user's `memberOf` attribute (AD; OpenLDAP with the memberof overlay).
    MemberOf,
    /// A search under `base` with `filter`, where `{dn}` is the user's DN and `{username}` the
    /// escaped username; the group's `cn` (or DN) is the group name.
    Search { base: String, filter: String },
}

#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `ldaps://dc1.hospital.local:636` or `ldap://…` with `start_tls`.
    pub url: String,
    pub start_tls: bool,
    /// Allow plain LDAP (passwords in clear on the wire). Only for labs; logged loudly.
    pub allow_insecure: bool,
    /// PEM bundle of the CA(s) that signed the directory's certificate.
    pub ca_pem: Option<Vec<u8>>,
    pub bind_dn: String,
    pub bind_password: String,
    pub user_base: String,
    /// `(uid={username})`, `(sAMAccountName={username})` or `(userPrincipalName={username})`.
    pub user_filter: String,
    pub username_attribute: String,
    pub display_name_attribute: String,
    pub email_attribute: String,
    pub groups: GroupSource,
    /// Active Directory: refuse accounts with the ACCOUNTDISABLE bit of `userAccountControl`.
    pub active_directory: bool,
    /// Another directory's "disabled" marker: attribute and the value that means disabled.
    pub disabled_attribute: Option<(String, String)>,
    pub timeout: Duration,
}

#[derive(Debug)]
pub enum DirectoryError {
    WrongCredentials,
    Disabled,
    Unavailable(String),
}

/// AD `userAccountControl` bit for a disabled account.
const ACCOUNTDISABLE: i64 = 0x2;

/// Finds the person, checks the password with a bind as them, and reads their groups.
pub async fn authenticate(
    settings: &LdapSettings,
    username: &str,
    password: &str,
) -> Result<Person, DirectoryError> {
    // An empty password is an "unauthenticated bind" that many directories accept: never send one.
    if password.is_empty() || username.trim().is_empty() {
        return Err(DirectoryError::WrongCredentials);
    }
    let unavailable = |e: ldap3::LdapError| DirectoryError::Unavailable(e.to_string());
    let mut service = connect(settings).await?;
    service
        .simple_bind(&settings.bind_dn, &settings.bind_password)
        .await
        .and_then(|r| r.success())
        .map_err(|e| DirectoryError::Unavailable(format!("service account bind failed: {e}")))?;
    let filter = settings
        .user_filter
        .replace("{username}", &ldap_escape(username.trim()));
    let mut attributes = vec![
        settings.username_attribute.as_str(),
        settings.display_name_attribute.as_str(),
        settings.email_attribute.as_str(),
        "memberOf",
        "userAccountControl",
    ];
    if let Some((attr, _)) = &settings.disabled_attribute {
        attributes.push(attr);
    }
    let (entries, _) = service
        .search(&settings.user_base, Scope::Subtree, &filter, attributes)
        .await
        .and_then(|r| r.success())
        .map_err(unavailable)?;
    // No match, or an ambiguous filter: either way, nobody to sign in as.
    let [entry] = entries.as_slice() else {
        let _ = service.unbind().await;
        return Err(DirectoryError::WrongCredentials);
    };
    let entry = SearchEntry::construct(entry.clone());
    let groups = match &settings.groups {
        GroupSource::MemberOf => entry.attrs.get("memberOf").cloned().unwrap_or_default(),
        GroupSource::Search { base, filter } => {
            let filter = filter
                .replace("{dn}", &ldap_escape(entry.dn.as_str()))
                .replace("{username}", &ldap_escape(username.trim()));
            let (found, _) = service
                .search(base, Scope::Subtree, &filter, vec!["cn"])
                .await
                .and_then(|r| r.success())
                .map_err(unavailable)?;
            found
                .into_iter()
                .map(|e| SearchEntry::construct(e).dn)
                .collect()
        }
    };
    let _ = service.unbind().await;
    if is_disabled(settings, &entry) {
        return Err(DirectoryError::Disabled);
    }
    let mut user = connect(settings).await?;
    let bound = user
        .simple_bind(&entry.dn, password)
        .await
        .map_err(unavailable)?;
    let _ = user.unbind().await;
    // 49 = invalidCredentials; AD also answers 49 for expired or locked accounts.
    match bound.rc {
        0 => {}
        49 => return Err(DirectoryError::WrongCredentials),
        rc => {
            return Err(DirectoryError::Unavailable(format!(
                "user bind answered {rc}: {}",
                bound.text
            )));
        }
    }
    let first = |attr: &str| entry.attrs.get(attr).and_then(|v| v.first()).cloned();
    Ok(Person {
        username: first(&settings.username_attribute).unwrap_or_else(|| username.trim().to_owned()),
        display_name: first(&settings.display_name_attribute)
            .unwrap_or_else(|| username.trim().to_owned()),
        email: first(&settings.email_attribute),
        groups,
    })
}

fn is_disabled(settings: &LdapSettings, entry: &SearchEntry) -> bool {
    let attr = |name: &str| entry.attrs.get(name).and_then(|v| v.first());
    let ad_disabled = settings.active_directory
        && attr("userAccountControl")
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|flags| flags & ACCOUNTDISABLE != 0);
    let marked = settings
        .disabled_attribute
        .as_ref()
        .is_some_and(|(name, value)| attr(name).is_some_and(|v| v.eq_ignore_ascii_case(value)));
    ad_disabled || marked
}

async fn connect(settings: &LdapSettings) -> Result<ldap3::Ldap, DirectoryError> {
    let plain = settings.url.starts_with("ldap://") && !settings.start_tls;
    if plain && !settings.allow_insecure {
        return Err(DirectoryError::Unavailable(
            "plain ldap:// is refused: use ldaps:// or start_tls".into(),
        ));
    }
    let mut conn_settings = LdapConnSettings::new()
        .set_conn_timeout(settings.timeout)
        .set_starttls(settings.start_tls);
    if let Some(pem) = &settings.ca_pem {
        conn_settings = conn_settings.set_config(tls_config(pem)?);
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &settings.url)
        .await
        .map_err(|e| DirectoryError::Unavailable(format!("cannot reach {}: {e}", settings.url)))?;
    ldap3::drive!(conn);
    ldap.with_timeout(settings.timeout);
    Ok(ldap)
}

/// A TLS client configuration that trusts only the hospital's CA bundle.
pub fn tls_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    let bad = |e: String| DirectoryError::Unavailable(format!("directory CA bundle: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the bundle".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// For `kiorex configtest`: the directory answers over TLS and the service account binds.
pub async fn check_service_account(settings: &LdapSettings) -> Result<String, String> {
    let mut ldap = connect(settings).await.map_err(|e| format!("{e:?}"))?;
    ldap.simple_bind(&settings.bind_dn, &settings.bind_password)
        .await
        .and_then(|r| r.success())
        .map_err(|e| format!("the service account cannot bind: {e}"))?;
    let _ = ldap.unbind().await;
    Ok(format!(
        "{} answers; the service account binds",
        settings.url
    ))
}
