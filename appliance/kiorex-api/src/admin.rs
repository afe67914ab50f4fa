//! Administration that runs from the command line: facilities and local accounts. Each change
//! is written with its audit entry.

use crate::auth::hash_password;
use chrono::Utc;
use diesel::{Connection, PgConnection};
use kiorex_domain::permission::{Grant, Role};
use kiorex_fhir::ResourceKind;
use kiorex_fhir::extract;
use kiorex_fhir::parse::parse_value;
use kiorex_store::audit::{AuditRecord, append};
use kiorex_store::facilities::{self, Facility};
use kiorex_store::resources::{self, Draft, WriteContext};
use kiorex_store::{StoreError, accounts};
use serde_json::json;
use uuid::Uuid;

pub const FACILITY_SYSTEM: &str = "urn:kiorex:facility";

fn admin_event(
    actor: &str,
    action: &str,
    resource_type: &str,
    resource_id: &str,
    facility: &str,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        recorded_at: Utc::now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        outcome: "success".into(),
        resource_type: resource_type.to_owned(),
        resource_id: resource_id.to_owned(),
        patient_id: String::new(),
        facility_id: facility.to_owned(),
        request_id: "cli".into(),
        detail,
    }
}

/// Creates a facility (and the FHIR Organization that stands for it), or returns the existing one
/// with this code, so that setup scripts can run twice.
pub fn ensure_facility(
    conn: &mut PgConnection,
    actor: &str,
    code: &str,
    name: &str,
) -> Result<(Facility, bool), String> {
    if !code
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        || !(2..=10).contains(&code.len())
    {
        return Err(format!(
            "facility code {code:?} must be 2 to 10 capital letters or digits, such as GEN or NORTH2"
        ));
    }
    conn.transaction(|conn| {
        if let Some(existing) = facilities::find_by_code(conn, code)? {
            return Ok((existing, false));
        }
        let id = Uuid::new_v4();
        let facility = facilities::insert(conn, id, code, name)?;
        let organization = json!({"resourceType": "Organization", "active": true, "name": name,
                                  "identifier": [{"system": FACILITY_SYSTEM, "value": code}]});
        let parsed = parse_value(ResourceKind::Organization, organization)
            .map_err(|e| StoreError::Conflict(format!("{e:?}")))?;
        let links = extract::links(&parsed.resource).unwrap_or_default();
        let index = extract::index(&parsed.resource, &links);
        let wctx = WriteContext {
            author: actor.to_owned(),
            request_id: "cli".into(),
            at: Utc::now(),
        };
        resources::create(
            conn,
            &wctx,
            Draft {
                resource_type: "Organization",
                id,
                facility_id: id,
                content: parsed.json,
                index,
            },
        )?;
        append(
            conn,
            &[admin_event(
                actor,
                "facility-create",
                "Organization",
                &id.to_string(),
                &id.to_string(),
                format!("code {code}"),
            )],
        )?;
        Ok::<_, StoreError>((facility, true))
    })
    .map_err(|e| e.to_string())
}

/// Creates or resets a local account with these roles at these facilities (by code).
pub fn upsert_user(
    conn: &mut PgConnection,
    actor: &str,
    username: &str,
    display_name: &str,
    password: &str,
    roles: &[(String, Role)],
) -> Result<Uuid, String> {
    let problems = kiorex_domain::identity::password_problems(username, password);
    if !problems.is_empty() {
        return Err(format!(
            "choose another password: {} (KX-AUTH-011)",
            problems.join("; ")
        ));
    }
    let mut grants = Vec::new();
    for (code, role) in roles {
        let facility = facilities::find_by_code(conn, code)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no facility with code {code:?}"))?;
        grants.push(Grant {
            facility_id: facility.id,
            role: *role,
        });
    }
    let hash = hash_password(password)?;
    let id = accounts::upsert(conn, username, display_name, &hash, &grants)
        .map_err(|e| e.to_string())?;
    let detail = roles
        .iter()
        .map(|(code, role)| format!("{role:?}@{code}"))
        .collect::<Vec<_>>()
        .join(",");
    append(
        conn,
        &[admin_event(
            actor,
            "user-upsert",
            "User",
            &id.to_string(),
            "",
            detail,
        )],
    )
    .map_err(|e| e.to_string())?;
    Ok(id)
}
