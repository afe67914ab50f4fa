//! Accounts that come from outside: directory and IdP users (their grants recomputed at every
//! sign-in from the group mapping), API clients, TOTP enrolment and recovery codes.

use crate::identity_schema::{api_client, group_role, recovery_code};
use crate::schema::{role_grant, user_account};
use crate::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use kiorex_domain::identity::GroupRole;
use kiorex_domain::permission::{Grant, Role};
use uuid::Uuid;

/// The directory group → role table, as the sign-in needs it.
pub fn group_roles(conn: &mut PgConnection) -> StoreResult<Vec<GroupRole>> {
    let rows: Vec<(String, Uuid, String)> = group_role::table
        .select((
            group_role::group_name,
            group_role::facility_id,
            group_role::role,
        ))
        .order((group_role::group_name, group_role::role))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(group, facility_id, role)| {
            role.parse::<Role>().ok().map(|role| GroupRole {
                group,
                facility_id,
                role,
            })
        })
        .collect())
}

/// Replaces the whole mapping table (what the admin page and `kiorex identity` save).
pub fn replace_group_roles(conn: &mut PgConnection, rows: &[GroupRole]) -> StoreResult<()> {
    conn.transaction(|conn| {
        diesel::delete(group_role::table).execute(conn)?;
        let values: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    group_role::group_name.eq(&r.group),
                    group_role::facility_id.eq(r.facility_id),
                    group_role::role.eq(crate::accounts::role_name(r.role)),
                )
            })
            .collect();
        diesel::insert_into(group_role::table)
            .values(values)
            .on_conflict_do_nothing()
            .execute(conn)?;
        Ok::<_, StoreError>(())
    })
}

/// A person from the directory or IdP as their sign-in found them.
pub struct ExternalPerson<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub email: Option<&'a str>,
    pub source: &'a str,
}

/// Creates or refreshes the account of a directory/IdP user and replaces their grants with the
/// ones their groups give today. Refuses to take over a local account of the same name.
pub fn sync_external(
    conn: &mut PgConnection,
    person: &ExternalPerson<'_>,
    grants: &[Grant],
) -> StoreResult<Uuid> {
    conn.transaction(|conn| {
        let existing: Option<(Uuid, String)> = user_account::table
            .filter(user_account::username.eq(person.username))
            .select((user_account::id, user_account::source))
            .first(conn)
            .optional()?;
        let id = match existing {
            Some((_, source)) if source != person.source => {
                return Err(StoreError::Conflict(format!(
                    "the username {:?} belongs to a {source} account",
                    person.username
                )));
            }
            Some((id, _)) => {
                diesel::update(user_account::table.find(id))
                    .set((
                        user_account::display_name.eq(person.display_name),
                        user_account::email.eq(person.email),
                    ))
                    .execute(conn)?;
                id
            }
            None => diesel::insert_into(user_account::table)
                .values((
                    user_account::id.eq(Uuid::new_v4()),
                    user_account::username.eq(person.username),
                    user_account::display_name.eq(person.display_name),
                    user_account::email.eq(person.email),
                    user_account::source.eq(person.source),
                ))
                .returning(user_account::id)
                .get_result(conn)?,
        };
        crate::accounts::replace_grants(conn, id, grants)?;
        Ok(id)
    })
}

/// Links an account to the Practitioner record it acts as (encounter participants).
pub fn link_practitioner(
    conn: &mut PgConnection,
    user_id: Uuid,
    practitioner_id: Option<Uuid>,
) -> StoreResult<()> {
    let n = diesel::update(user_account::table.find(user_id))
        .set(user_account::practitioner_id.eq(practitioner_id))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Stores a TOTP secret waiting for its first code (not yet required at sign-in).
pub fn set_totp_pending(conn: &mut PgConnection, user_id: Uuid, secret: &str) -> StoreResult<()> {
    diesel::update(user_account::table.find(user_id))
        .set((
            user_account::totp_secret.eq(secret),
            user_account::totp_enabled.eq(false),
        ))
        .execute(conn)?;
    Ok(())
}

/// Turns the second factor on and replaces the recovery codes, in one transaction.
pub fn enable_totp(
    conn: &mut PgConnection,
    user_id: Uuid,
    recovery_hashes: &[Vec<u8>],
) -> StoreResult<()> {
    conn.transaction(|conn| {
        diesel::update(user_account::table.find(user_id))
            .set(user_account::totp_enabled.eq(true))
            .execute(conn)?;
        diesel::delete(recovery_code::table.filter(recovery_code::user_id.eq(user_id)))
            .execute(conn)?;
        let rows: Vec<_> = recovery_hashes
            .iter()
            .map(|h| {
                (
                    recovery_code::user_id.eq(user_id),
                    recovery_code::code_hash.eq(h),
                )
            })
            .collect();
        diesel::insert_into(recovery_code::table)
            .values(rows)
            .execute(conn)?;
        Ok::<_, StoreError>(())
    })
}

/// The TOTP secret and whether it is required at sign-in.
pub fn totp_of(conn: &mut PgConnection, user_id: Uuid) -> StoreResult<(Option<String>, bool)> {
    Ok(user_account::table
        .find(user_id)
        .select((user_account::totp_secret, user_account::totp_enabled))
        .first(conn)?)
}

/// Uses up a recovery code; answers whether it was valid and unused.
pub fn use_recovery_code(
    conn: &mut PgConnection,
    user_id: Uuid,
    code_hash: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let n = diesel::update(
        recovery_code::table
            .filter(recovery_code::user_id.eq(user_id))
            .filter(recovery_code::code_hash.eq(code_hash))
            .filter(recovery_code::used_at.is_null()),
    )
    .set(recovery_code::used_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}

/// An API client as the token endpoint checks it.
pub struct ApiClient {
    pub client_id: String,
    pub user_id: Uuid,
    pub secret_hash: String,
    pub scopes: String,
    pub disabled: bool,
    pub grants: Vec<Grant>,
}

/// Registers (or re-keys) an API client with its scopes and grants.
pub fn upsert_client(
    conn: &mut PgConnection,
    client_id: &str,
    display_name: &str,
    secret_hash: &str,
    scopes: &str,
    grants: &[Grant],
) -> StoreResult<Uuid> {
    conn.transaction(|conn| {
        let username = format!("client:{client_id}");
        let user_id: Uuid = diesel::insert_into(user_account::table)
            .values((
                user_account::id.eq(Uuid::new_v4()),
                user_account::username.eq(&username),
                user_account::display_name.eq(display_name),
                user_account::source.eq("client"),
            ))
            .on_conflict(user_account::username)
            .do_update()
            .set(user_account::display_name.eq(display_name))
            .returning(user_account::id)
            .get_result(conn)?;
        crate::accounts::replace_grants(conn, user_id, grants)?;
        diesel::insert_into(api_client::table)
            .values((
                api_client::client_id.eq(client_id),
                api_client::user_id.eq(user_id),
                api_client::secret_hash.eq(secret_hash),
                api_client::scopes.eq(scopes),
            ))
            .on_conflict(api_client::client_id)
            .do_update()
            .set((
                api_client::secret_hash.eq(secret_hash),
                api_client::scopes.eq(scopes),
            ))
            .execute(conn)?;
        Ok::<_, StoreError>(user_id)
    })
}

pub fn find_client(conn: &mut PgConnection, client_id: &str) -> StoreResult<Option<ApiClient>> {
    let row: Option<(String, Uuid, String, String, bool)> = api_client::table
        .inner_join(user_account::table.on(user_account::id.eq(api_client::user_id)))
        .filter(api_client::client_id.eq(client_id))
        .select((
            api_client::client_id,
            api_client::user_id,
            api_client::secret_hash,
            api_client::scopes,
            user_account::disabled,
        ))
        .first(conn)
        .optional()?;
    let Some((client_id, user_id, secret_hash, scopes, disabled)) = row else {
        return Ok(None);
    };
    let grants = crate::accounts::grants_of(conn, user_id)?;
    Ok(Some(ApiClient {
        client_id,
        user_id,
        secret_hash,
        scopes,
        disabled,
        grants,
    }))
}

/// Grants of an account, by role, for the admin listing.
pub fn role_grants(conn: &mut PgConnection, user_id: Uuid) -> StoreResult<Vec<(Uuid, String)>> {
    Ok(role_grant::table
        .filter(role_grant::user_id.eq(user_id))
        .select((role_grant::facility_id, role_grant::role))
        .load(conn)?)
}

/// The Practitioner record an account acts as, if linked.
pub fn practitioner_of(conn: &mut PgConnection, user_id: Uuid) -> StoreResult<Option<Uuid>> {
    Ok(user_account::table
        .find(user_id)
        .select(user_account::practitioner_id)
        .first::<Option<Uuid>>(conn)
        .optional()?
        .flatten())
}
