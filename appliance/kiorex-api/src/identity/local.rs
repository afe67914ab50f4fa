//! Password sign-in, local or through the directory, behind one lockout: the account and the
//! source address each count failures and are locked with back-off. Local accounts may require
//! a TOTP code (RFC 6238, via `totp-rs`) or a one-time recovery code.

use super::ldap::{self, DirectoryError};
use crate::audit::Event;
use crate::error::ApiError;
use crate::state::AppState;
use chrono::Utc;
use http::StatusCode;
use kiorex_domain::identity::grants_from_groups;
use kiorex_domain::permission::Grant;
use kiorex_store::{accounts, directory, sessions};
use rand::RngCore;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Secret, TOTP};
use uuid::Uuid;

/// What a person typed on the sign-in form.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub totp_code: Option<String>,
    pub recovery_code: Option<String>,
}

/// Who signed in, with the grants this sign-in gave them.
#[derive(Debug, Clone)]
pub struct Account {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub grants: Vec<Grant>,
    pub method: &'static str,
}

/// Why a password sign-in did not succeed, before it becomes an HTTP answer.
enum Refusal {
    /// Wrong username or password (or a disabled account): counts towards lockout.
    Wrong(&'static str),
    /// The password was right but the second factor is missing or wrong.
    SecondFactor(&'static str, bool),
    /// Signed in, but no role anywhere: a clear "no access" rather than an error.
    NoAccess,
    /// The directory could not be asked.
    Unavailable(String),
}

/// Checks credentials against the local account or the directory, applying lockout.
pub async fn sign_in(
    state: &AppState,
    creds: &Credentials,
    source: &str,
    request_id: &str,
) -> Result<Account, ApiError> {
    let username = creds.username.trim().to_owned();
    if username.is_empty() || creds.password.is_empty() {
        return Err(ApiError::unauthenticated(
            "enter your username and password",
        ));
    }
    let subjects = vec![
        format!("user:{}", username.to_lowercase()),
        format!("addr:{source}"),
    ];
    let now = Utc::now();
    let locked = {
        let subjects = subjects.clone();
        state
            .store
            .run(move |conn| sessions::locked_until(conn, &subjects, now))
            .await?
    };
    if let Some(until) = locked {
        audit_sign_in(
            state,
            &username,
            request_id,
            "locked",
            "sign-in while locked out",
        )
        .await?;
        let seconds = (until - now).num_seconds().max(1);
        return Err(locked_out(seconds));
    }
    match check(state, creds, &username).await {
        Ok(account) => {
            let subject = subjects[0].clone();
            state
                .store
                .run(move |conn| sessions::clear_failures(conn, &subject))
                .await?;
            audit_sign_in(
                state,
                &account.username,
                request_id,
                "success",
                account.method,
            )
            .await?;
            Ok(account)
        }
        Err(Refusal::Wrong(why)) => {
            let locked = count_failure(state, &subjects).await?;
            audit_sign_in(state, &username, request_id, "failure", why).await?;
            if locked {
                audit_sign_in(state, &username, request_id, "lockout", "too many failures").await?;
            }
            Err(ApiError::unauthenticated("wrong username or password"))
        }
        Err(Refusal::SecondFactor(message, counts)) => {
            if counts {
                count_failure(state, &subjects).await?;
                audit_sign_in(
                    state,
                    &username,
                    request_id,
                    "failure",
                    "wrong second factor",
                )
                .await?;
            }
            Err(
                ApiError::new(StatusCode::UNAUTHORIZED, "KX-AUTH-003", message)
                    .with_extra(serde_json::json!({"second_factor": "totp"})),
            )
        }
        Err(Refusal::NoAccess) => {
            audit_sign_in(state, &username, request_id, "failure", "no mapped role").await?;
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "KX-AUTH-005",
                "you signed in, but none of your directory groups gives access to Kiorex; \
                 ask IT to add you to the right group",
            ))
        }
        Err(Refusal::Unavailable(why)) => {
            audit_sign_in(
                state,
                &username,
                request_id,
                "failure",
                "directory unavailable",
            )
            .await?;
            tracing::error!(target: "kiorex::security", error = %why, "directory unavailable");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "KX-AUTH-006",
                "the hospital directory cannot be reached, so directory accounts cannot sign in \
                 now; try again shortly, or ask IT (local administrator accounts still work)",
            ))
        }
    }
}

fn locked_out(seconds: i64) -> ApiError {
    let minutes = (seconds + 59) / 60;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "KX-AUTH-002",
        format!("too many failed sign-ins; try again in {minutes} minute(s) or ask IT to unlock"),
    )
    .with_extra(serde_json::json!({"retry_after_seconds": seconds}))
}

/// Counts a failure against the account and the address; answers whether either is now locked.
async fn count_failure(state: &AppState, subjects: &[String]) -> Result<bool, ApiError> {
    let policy = state.identity.settings.lockout;
    let subjects = subjects.to_vec();
    let now = Utc::now();
    let window = chrono::Duration::seconds(policy.max_seconds.max(900));
    Ok(state
        .store
        .run(move |conn| {
            let account = sessions::record_failure(conn, &subjects[0], now, window, |n| {
                policy.lock_seconds(n, policy.account_threshold)
            })?;
            let address = sessions::record_failure(conn, &subjects[1], now, window, |n| {
                policy.lock_seconds(n, policy.address_threshold)
            })?;
            Ok(account >= policy.account_threshold || address >= policy.address_threshold)
        })
        .await?)
}

async fn check(state: &AppState, creds: &Credentials, username: &str) -> Result<Account, Refusal> {
    let name = username.to_owned();
    let local = state
        .store
        .run(move |conn| accounts::find_by_username(conn, &name))
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    match local {
        Some(account) if account.source == "local" => check_local(state, creds, account).await,
        Some(_) | None => match &state.identity.settings.ldap {
            Some(settings) => check_directory(state, settings, creds).await,
            None => {
                // Spend the same time as a real check: timing must not reveal unknown users.
                verify_password_blocking(creds.password.clone(), None).await;
                Err(Refusal::Wrong("unknown user"))
            }
        },
    }
}

async fn check_local(
    state: &AppState,
    creds: &Credentials,
    account: accounts::Account,
) -> Result<Account, Refusal> {
    let ok = verify_password_blocking(creds.password.clone(), account.password_hash.clone()).await;
    if !ok || account.disabled {
        return Err(Refusal::Wrong(if ok {
            "account disabled"
        } else {
            "wrong password"
        }));
    }
    if account.totp_enabled {
        check_second_factor(state, account.id, &account.username, creds).await?;
    }
    Ok(Account {
        user_id: account.id,
        username: account.username,
        display_name: account.display_name,
        grants: account.grants,
        method: "local",
    })
}

async fn check_second_factor(
    state: &AppState,
    user_id: Uuid,
    username: &str,
    creds: &Credentials,
) -> Result<(), Refusal> {
    if let Some(code) = &creds.recovery_code {
        let hash = recovery_hash(code);
        let now = Utc::now();
        let used = state
            .store
            .run(move |conn| directory::use_recovery_code(conn, user_id, &hash, now))
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        return if used {
            Ok(())
        } else {
            Err(Refusal::SecondFactor(
                "that recovery code is wrong or was used already",
                true,
            ))
        };
    }
    let Some(code) = creds.totp_code.as_deref().filter(|c| !c.trim().is_empty()) else {
        return Err(Refusal::SecondFactor(
            "enter the 6-digit code from your authenticator app",
            false,
        ));
    };
    let (secret, _) = state
        .store
        .run(move |conn| directory::totp_of(conn, user_id))
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    let valid = secret
        .and_then(|s| totp_for(&s, username).ok())
        .is_some_and(|totp| totp.check_current(code.trim()).unwrap_or(false));
    if valid {
        Ok(())
    } else {
        Err(Refusal::SecondFactor(
            "that code is not right; check the time on your phone",
            true,
        ))
    }
}

async fn check_directory(
    state: &AppState,
    settings: &ldap::LdapSettings,
    creds: &Credentials,
) -> Result<Account, Refusal> {
    let person = match ldap::authenticate(settings, &creds.username, &creds.password).await {
        Ok(person) => person,
        Err(DirectoryError::WrongCredentials) => return Err(Refusal::Wrong("wrong password")),
        Err(DirectoryError::Disabled) => return Err(Refusal::Wrong("directory account disabled")),
        Err(DirectoryError::Unavailable(why)) => return Err(Refusal::Unavailable(why)),
    };
    let account = sync_person(state, &person, "ldap")
        .await
        .map_err(|e| Refusal::Unavailable(e.title.clone()))?;
    if account.grants.is_empty() {
        return Err(Refusal::NoAccess);
    }
    Ok(account)
}

/// A person as the directory or the IdP describes them.
#[derive(Debug, Clone)]
pub struct Person {
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

/// Creates or refreshes the account of a directory/IdP person with the grants their groups give
/// today, and audits a change of roles.
pub async fn sync_person(
    state: &AppState,
    person: &Person,
    method: &'static str,
) -> Result<Account, ApiError> {
    let p = person.clone();
    let (user_id, grants, before) = state
        .store
        .run(move |conn| {
            let mapping = directory::group_roles(conn)?;
            let grants = grants_from_groups(&p.groups, &mapping);
            let before = accounts::find_by_username(conn, &p.username)?.map(|a| a.grants);
            let id = directory::sync_external(
                conn,
                &directory::ExternalPerson {
                    username: &p.username,
                    display_name: &p.display_name,
                    email: p.email.as_deref(),
                    source: method,
                },
                &grants,
            )?;
            Ok((id, grants, before))
        })
        .await?;
    if before.as_deref().is_some_and(|b| !same_grants(b, &grants)) {
        let detail = format!("roles from directory groups are now: {}", describe(&grants));
        tracing::info!(target: "kiorex::security", event = "role-change", user = %person.username, roles = %detail, "roles changed at sign-in");
        state
            .audit
            .record(
                &person.username,
                "",
                vec![security_event("role-change", "success", detail)],
            )
            .await?;
    }
    Ok(Account {
        user_id,
        username: person.username.clone(),
        display_name: person.display_name.clone(),
        grants,
        method,
    })
}

fn same_grants(a: &[Grant], b: &[Grant]) -> bool {
    a.len() == b.len() && a.iter().all(|g| b.contains(g))
}

fn describe(grants: &[Grant]) -> String {
    if grants.is_empty() {
        return "none".to_owned();
    }
    grants
        .iter()
        .map(|g| format!("{} at {}", accounts::role_name(g.role), g.facility_id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An audit event about a person's sign-in or security settings (no patient, no record).
pub fn security_event(
    action: &'static str,
    outcome: &'static str,
    detail: String,
) -> Event<'static> {
    Event {
        action,
        outcome,
        resource_type: "",
        resource_id: String::new(),
        patient_id: None,
        facility_id: None,
        detail,
    }
}

/// Audits a sign-in attempt, and tells journald (security events are what IT watches).
pub async fn audit_sign_in(
    state: &AppState,
    username: &str,
    request_id: &str,
    outcome: &'static str,
    detail: &str,
) -> Result<(), ApiError> {
    let action = if outcome == "lockout" {
        "lockout"
    } else {
        "sign-in"
    };
    let outcome = if outcome == "lockout" {
        "success"
    } else {
        outcome
    };
    tracing::info!(target: "kiorex::security", event = action, outcome, user = %username, detail, request_id, "sign-in");
    state
        .audit
        .record(
            username,
            request_id,
            vec![security_event(action, outcome, detail.to_owned())],
        )
        .await
}

async fn verify_password_blocking(password: String, hash: Option<String>) -> bool {
    // argon2 is deliberately slow: keep it off the async workers. Unknown users are checked
    // against a dummy hash so that timing does not reveal which usernames exist.
    tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(crate::auth::dummy_hash);
        crate::auth::verify_password(&password, &hash)
    })
    .await
    .unwrap_or(false)
}

/// The TOTP generator of an account: SHA-1, 6 digits, 30 s, one step of clock skew either way
/// (what every authenticator app supports).
pub fn totp_for(secret_base32: &str, username: &str) -> Result<TOTP, String> {
    let bytes = Secret::Encoded(secret_base32.to_owned())
        .to_bytes()
        .map_err(|e| format!("{e:?}"))?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        Some("Kiorex".to_owned()),
        username.to_owned(),
    )
    .map_err(|e| e.to_string())
}

/// A new random TOTP secret (160 bits, as RFC 4226 recommends), base32-encoded.
pub fn new_totp_secret() -> String {
    let mut bytes = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::Raw(bytes).to_encoded().to_string()
}

/// Ten one-time recovery codes like `k7qmd-x2p9a`, and their hashes for the store.
pub fn new_recovery_codes() -> (Vec<String>, Vec<Vec<u8>>) {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let codes: Vec<String> = (0..10)
        .map(|_| {
            let mut bytes = [0u8; 10];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let chars: String = bytes
                .iter()
                .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

/// Recovery codes compare without case or dashes, as people type them.
pub fn recovery_hash(code: &str) -> Vec<u8> {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(normalized.as_bytes()).to_vec()
}
