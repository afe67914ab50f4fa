//! System health as IT sees it in the portal: the components `kiorexctl status` reports,
//! checked from core itself (the database and its migrations, the code lists, the object store
//! and the virus scanner, the directory, the identity provider, search, the outbox), each as
//! green, amber or red with words that say what to do.

use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

/// How long one component may take to answer before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Green: working. Amber: working, but someone should look. Red: not working. Off: not
/// configured on this appliance (documents, directory, single sign-on are optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Green,
    Amber,
    Red,
    Off,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentHealth {
    pub name: &'static str,
    pub level: Level,
    pub words: String,
}

fn component(name: &'static str, level: Level, words: impl Into<String>) -> ComponentHealth {
    ComponentHealth {
        name,
        level,
        words: words.into(),
    }
}

async fn within<T>(work: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(CHECK_TIMEOUT, work).await.ok()
}

/// An outbox backlog older than this is amber (deliveries are late).
const OUTBOX_AMBER_MINUTES: i64 = 10;

/// How the outbox stands: a queue with a worker delivering it, or one that only grows.
pub fn outbox_level(
    undelivered: i64,
    oldest: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Level, String) {
    match oldest {
        None => (Level::Green, "Nothing waiting to be delivered.".into()),
        Some(oldest) => {
            let minutes = (now - oldest).num_minutes();
            let level = if minutes >= OUTBOX_AMBER_MINUTES {
                Level::Amber
            } else {
                Level::Green
            };
            (
                level,
                format!(
                    "{undelivered} change(s) waiting for delivery; the oldest for {minutes} min. Deliveries (search indexing, notifications, HL7) are made by the worker role."
                ),
            )
        }
    }
}

/// Every component, checked now (concurrently, each within a few seconds).
pub async fn check(state: &AppState) -> Vec<ComponentHealth> {
    let (database, directory, oidc, objects) = tokio::join!(
        database(state),
        directory(state),
        identity_provider(state),
        objects(state)
    );
    let mut all = database;
    all.push(directory);
    all.push(oidc);
    all.extend(objects);
    all.push(component(
        "Search",
        Level::Green,
        "Patient and document search run in PostgreSQL (the embedded engine); no Meilisearch is configured.",
    ));
    all
}

async fn database(state: &AppState) -> Vec<ComponentHealth> {
    let figures = within(state.store.run(|conn| {
        let pending = kiorex_store::pending_migrations(conn)?;
        let codes = kiorex_store::terminology::system(conn, kiorex_store::terminology::ICD10CM)?;
        let outbox = kiorex_store::system_health::outbox_backlog(conn)?;
        Ok((pending, codes, outbox))
    }))
    .await;
    let (pending, codes, outbox) = match figures {
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "health: database");
            return vec![component(
                "Database",
                Level::Red,
                "PostgreSQL does not answer: nothing can be read or saved. IT: check the database server and `kiorex configtest`.",
            )];
        }
        None => {
            return vec![component(
                "Database",
                Level::Red,
                "PostgreSQL did not answer within 3 seconds. IT: check its load and the network.",
            )];
        }
    };
    let mut out = vec![component("Database", Level::Green, "PostgreSQL answers.")];
    out.push(if pending.is_empty() {
        component(
            "Migrations",
            Level::Green,
            "The database schema is up to date.",
        )
    } else {
        component(
            "Migrations",
            Level::Red,
            format!(
                "{} migration(s) pending: run `kiorex migrate` (KX-DB-002).",
                pending.len()
            ),
        )
    });
    out.push(match codes {
        Some(c) => component(
            "Code lists",
            Level::Green,
            format!(
                "{}, {} release: {} codes (sha256 {}…).",
                c.name,
                c.version,
                c.concept_count,
                &c.sha256[..12.min(c.sha256.len())]
            ),
        ),
        None => component(
            "Code lists",
            Level::Amber,
            "ICD-10-CM is not loaded, so diagnoses cannot be coded: run `kiorex migrate`.",
        ),
    });
    let (level, words) = outbox_level(outbox.undelivered, outbox.oldest, Utc::now());
    out.push(component("Outbox", level, words));
    out
}

async fn directory(state: &AppState) -> ComponentHealth {
    let Some(ldap) = &state.identity.settings.ldap else {
        return component(
            "Directory (LDAP/AD)",
            Level::Off,
            "Not configured: staff sign in with single sign-on or local accounts.",
        );
    };
    match within(crate::identity::ldap::check_service_account(ldap)).await {
        Some(Ok(m)) => component("Directory (LDAP/AD)", Level::Green, m),
        Some(Err(e)) => component(
            "Directory (LDAP/AD)",
            Level::Red,
            format!(
                "Directory sign-in does not work: {e}. Local break-glass accounts still sign in (KX-AUTH-006)."
            ),
        ),
        None => component(
            "Directory (LDAP/AD)",
            Level::Red,
            "The directory did not answer within 3 seconds (KX-AUTH-006).",
        ),
    }
}

async fn identity_provider(state: &AppState) -> ComponentHealth {
    let Some(oidc) = &state.identity.oidc else {
        return component("Single sign-on (OIDC)", Level::Off, "Not configured.");
    };
    match within(oidc.check()).await {
        Some(Ok(m)) => component("Single sign-on (OIDC)", Level::Green, m),
        Some(Err(e)) => component(
            "Single sign-on (OIDC)",
            Level::Red,
            format!("The identity provider cannot be reached: {e} (KX-AUTH-007)."),
        ),
        None => component(
            "Single sign-on (OIDC)",
            Level::Red,
            "The identity provider did not answer within 3 seconds (KX-AUTH-007).",
        ),
    }
}

async fn objects(state: &AppState) -> Vec<ComponentHealth> {
    let Some(objects) = &state.documents else {
        return vec![
            component(
                "Documents (object store)",
                Level::Off,
                "Not configured: documents are off.",
            ),
            component(
                "Virus scanner (clamd)",
                Level::Off,
                "Not configured: documents are off.",
            ),
        ];
    };
    let (store, scanner) =
        tokio::join!(within(objects.store.check()), within(objects.clamd.ping()));
    vec![
        match store {
            Some(Ok(())) => component(
                "Documents (object store)",
                Level::Green,
                "The RGW buckets are reachable.",
            ),
            Some(Err(e)) => component(
                "Documents (object store)",
                Level::Red,
                format!("Documents cannot be stored or opened: {e} (KX-OBJ-503)."),
            ),
            None => component(
                "Documents (object store)",
                Level::Red,
                "RGW did not answer within 3 seconds (KX-OBJ-503).",
            ),
        },
        match scanner {
            Some(Ok(())) => component(
                "Virus scanner (clamd)",
                Level::Green,
                format!("clamd at {} answers.", objects.clamd.address()),
            ),
            Some(Err(e)) => component(
                "Virus scanner (clamd)",
                Level::Red,
                format!("Uploads are refused until the scanner answers: {e} (KX-DOC-503)."),
            ),
            None => component(
                "Virus scanner (clamd)",
                Level::Red,
                "clamd did not answer within 3 seconds (KX-DOC-503).",
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_old_outbox_backlog_is_amber_and_an_empty_one_green() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        assert_eq!(outbox_level(0, None, now).0, Level::Green);
        assert_eq!(
            outbox_level(3, Some(now - chrono::Duration::minutes(2)), now).0,
            Level::Green
        );
        let (level, words) = outbox_level(40, Some(now - chrono::Duration::minutes(45)), now);
        assert_eq!(level, Level::Amber);
        assert!(
            words.contains("40 change(s)") && words.contains("45 min"),
            "{words}"
        );
    }
}
