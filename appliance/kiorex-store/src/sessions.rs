//! Browser sessions and the sign-in failure counters behind lockout.

use crate::StoreResult;
use crate::identity_schema::{sign_in_failure, user_session};
use crate::schema::user_account;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

/// A session as the API checks it on every request.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = user_session)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub csrf_token: String,
    pub method: String,
    pub grants: serde_json::Value,
    pub id_token: Option<String>,
    pub source_address: String,
    pub user_agent: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a new session is made of; the token itself never reaches the store, only its hash.
pub struct NewSession<'a> {
    pub id: Uuid,
    pub token_hash: &'a [u8],
    pub user_id: Uuid,
    pub csrf_token: &'a str,
    pub method: &'a str,
    pub grants: serde_json::Value,
    pub id_token: Option<&'a str>,
    pub source_address: &'a str,
    pub user_agent: &'a str,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub fn create(conn: &mut PgConnection, s: NewSession<'_>) -> StoreResult<()> {
    diesel::insert_into(user_session::table)
        .values((
            user_session::id.eq(s.id),
            user_session::token_hash.eq(s.token_hash),
            user_session::user_id.eq(s.user_id),
            user_session::csrf_token.eq(s.csrf_token),
            user_session::method.eq(s.method),
            user_session::grants.eq(s.grants),
            user_session::id_token.eq(s.id_token),
            user_session::source_address.eq(s.source_address),
            user_session::user_agent.eq(s.user_agent),
            user_session::created_at.eq(s.now),
            user_session::last_seen_at.eq(s.now),
            user_session::expires_at.eq(s.expires_at),
        ))
        .execute(conn)?;
    diesel::update(user_account::table.find(s.user_id))
        .set(user_account::last_sign_in_at.eq(s.now))
        .execute(conn)?;
    Ok(())
}

/// The live session with this token hash and its user's name, if any.
pub fn find_live(
    conn: &mut PgConnection,
    token_hash: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<Option<(Session, String)>> {
    Ok(user_session::table
        .inner_join(user_account::table.on(user_account::id.eq(user_session::user_id)))
        .filter(user_session::token_hash.eq(token_hash))
        .filter(user_session::revoked_at.is_null())
        .filter(user_session::expires_at.gt(now))
        .filter(user_account::disabled.eq(false))
        .select((Session::as_select(), user_account::username))
        .first(conn)
        .optional()?)
}

pub fn touch(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
    diesel::update(user_session::table.find(id))
        .set(user_session::last_seen_at.eq(now))
        .execute(conn)?;
    Ok(())
}

/// Ends a session; answers whether there was a live one to end.
pub fn revoke(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool> {
    let n = diesel::update(user_session::table.find(id))
        .filter(user_session::revoked_at.is_null())
        .set(user_session::revoked_at.eq(now))
        .execute(conn)?;
    Ok(n == 1)
}

/// The sessions a person has open now, newest first.
pub fn live_for_user(
    conn: &mut PgConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Session>> {
    Ok(user_session::table
        .filter(user_session::user_id.eq(user_id))
        .filter(user_session::revoked_at.is_null())
        .filter(user_session::expires_at.gt(now))
        .order(user_session::created_at.desc())
        .select(Session::as_select())
        .load(conn)?)
}

/// Until when any of these subjects (`user:<name>`, `addr:<ip>`) is locked, if it is.
pub fn locked_until(
    conn: &mut PgConnection,
    subjects: &[String],
    now: DateTime<Utc>,
) -> StoreResult<Option<DateTime<Utc>>> {
    let until: Option<Option<DateTime<Utc>>> = sign_in_failure::table
        .filter(sign_in_failure::subject.eq_any(subjects))
        .filter(sign_in_failure::locked_until.gt(now))
        .select(diesel::dsl::max(sign_in_failure::locked_until))
        .first(conn)
        .optional()?;
    Ok(until.flatten())
}

/// Counts one more failure for `subject` and sets its lock from `lock_seconds(failures)`.
/// Failures older than `window` are forgotten, so a shared ward PC does not collect a day's
/// typos into a lockout. Returns the failure count.
pub fn record_failure(
    conn: &mut PgConnection,
    subject: &str,
    now: DateTime<Utc>,
    window: chrono::Duration,
    lock_seconds: impl Fn(i32) -> i64,
) -> StoreResult<i32> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        failures: i32,
    }
    let count: Count = diesel::sql_query(
        "INSERT INTO sign_in_failure (subject, failures, last_failure_at) VALUES ($1, 1, $2) \
         ON CONFLICT (subject) DO UPDATE SET \
           failures = CASE WHEN sign_in_failure.last_failure_at < $3 THEN 1 \
                           ELSE sign_in_failure.failures + 1 END, \
           last_failure_at = $2 \
         RETURNING failures",
    )
    .bind::<diesel::sql_types::Text, _>(subject)
    .bind::<diesel::sql_types::Timestamptz, _>(now)
    .bind::<diesel::sql_types::Timestamptz, _>(now - window)
    .get_result(conn)?;
    let seconds = lock_seconds(count.failures);
    if seconds > 0 {
        diesel::update(sign_in_failure::table.find(subject))
            .set(sign_in_failure::locked_until.eq(now + chrono::Duration::seconds(seconds)))
            .execute(conn)?;
    }
    Ok(count.failures)
}

/// A successful sign-in clears the account's counter (not the address's: one right password
/// must not reset a script's count of wrong ones from that address).
pub fn clear_failures(conn: &mut PgConnection, subject: &str) -> StoreResult<()> {
    diesel::delete(sign_in_failure::table.find(subject)).execute(conn)?;
    Ok(())
}

/// An OpenID Connect sign-in waiting for the IdP to send the browser back.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = crate::identity_schema::oidc_login)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub created_at: DateTime<Utc>,
}

pub fn save_pending_login(conn: &mut PgConnection, login: &PendingLogin) -> StoreResult<()> {
    use crate::identity_schema::oidc_login as t;
    // Abandoned sign-ins are cleared as new ones start.
    diesel::delete(
        t::table.filter(t::created_at.lt(login.created_at - chrono::Duration::hours(1))),
    )
    .execute(conn)?;
    diesel::insert_into(t::table)
        .values((
            t::state.eq(&login.state),
            t::nonce.eq(&login.nonce),
            t::pkce_verifier.eq(&login.pkce_verifier),
            t::return_to.eq(&login.return_to),
            t::created_at.eq(login.created_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Takes (and deletes) the pending sign-in with this `state`: each can be completed once.
pub fn take_pending_login(
    conn: &mut PgConnection,
    state: &str,
    not_before: DateTime<Utc>,
) -> StoreResult<Option<PendingLogin>> {
    use crate::identity_schema::oidc_login as t;
    Ok(diesel::delete(
        t::table
            .filter(t::state.eq(state))
            .filter(t::created_at.ge(not_before)),
    )
    .returning(PendingLogin::as_returning())
    .get_result(conn)
    .optional()?)
}
