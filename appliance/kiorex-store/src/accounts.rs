//! Local accounts and their role grants.

use crate::schema::{role_grant, user_account};
use crate::{StoreError, StoreResult};
use diesel::prelude::*;
use kiorex_domain::permission::{Grant, Role};
use uuid::Uuid;

/// A local account as sign-in needs it.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub grants: Vec<Grant>,
    /// `local`, `ldap`, `oidc` or `client`.
    pub source: String,
    pub totp_enabled: bool,
}

pub fn find_by_username(conn: &mut PgConnection, username: &str) -> StoreResult<Option<Account>> {
    type Row = (Uuid, String, String, Option<String>, bool, String, bool);
    let row: Option<Row> = user_account::table
        .filter(user_account::username.eq(username))
        .select((
            user_account::id,
            user_account::username,
            user_account::display_name,
            user_account::password_hash,
            user_account::disabled,
            user_account::source,
            user_account::totp_enabled,
        ))
        .first(conn)
        .optional()?;
    let Some((id, username, display_name, password_hash, disabled, source, totp_enabled)) = row
    else {
        return Ok(None);
    };
    let grants = grants_of(conn, id)?;
    Ok(Some(Account {
        id,
        username,
        display_name,
        password_hash,
        disabled,
        grants,
        source,
        totp_enabled,
    }))
}

pub fn grants_of(conn: &mut PgConnection, user_id: Uuid) -> StoreResult<Vec<Grant>> {
    let rows: Vec<(Uuid, String)> = role_grant::table
        .filter(role_grant::user_id.eq(user_id))
        .select((role_grant::facility_id, role_grant::role))
        .load(conn)?;
    // A role name this version does not know (from a newer release) grants nothing.
    Ok(rows
        .into_iter()
        .filter_map(|(facility_id, role)| {
            role.parse::<Role>()
                .ok()
                .map(|role| Grant { facility_id, role })
        })
        .collect())
}

/// Creates an account, or replaces the password and grants of an existing one with this username.
pub fn upsert(
    conn: &mut PgConnection,
    username: &str,
    display_name: &str,
    password_hash: &str,
    grants: &[Grant],
) -> StoreResult<Uuid> {
    conn.transaction(|conn| {
        let id: Uuid = diesel::insert_into(user_account::table)
            .values((
                user_account::id.eq(Uuid::new_v4()),
                user_account::username.eq(username),
                user_account::display_name.eq(display_name),
                user_account::password_hash.eq(password_hash),
            ))
            .on_conflict(user_account::username)
            .do_update()
            .set((
                user_account::display_name.eq(display_name),
                user_account::password_hash.eq(password_hash),
            ))
            .returning(user_account::id)
            .get_result(conn)?;
        replace_grants(conn, id, grants)?;
        Ok::<_, StoreError>(id)
    })
}

/// Replaces all grants of an account.
pub fn replace_grants(conn: &mut PgConnection, id: Uuid, grants: &[Grant]) -> StoreResult<()> {
    diesel::delete(role_grant::table.filter(role_grant::user_id.eq(id))).execute(conn)?;
    let rows: Vec<_> = grants
        .iter()
        .map(|g| {
            (
                role_grant::user_id.eq(id),
                role_grant::facility_id.eq(g.facility_id),
                role_grant::role.eq(role_name(g.role)),
            )
        })
        .collect();
    diesel::insert_into(role_grant::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(())
}

pub fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
