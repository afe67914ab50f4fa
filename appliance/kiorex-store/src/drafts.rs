//! Half-filled portal forms, kept on the server per person and form, so that what a nurse typed
//! survives a session timeout and a new sign-in. Deleted when the form is sent, and after a day.

use crate::StoreResult;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use uuid::Uuid;

diesel::table! {
    form_draft (user_id, form_key) {
        user_id -> Uuid,
        form_key -> Text,
        content -> Jsonb,
        updated_at -> Timestamptz,
    }
}

/// How long an abandoned draft is kept.
pub const KEEP_HOURS: i64 = 24;

pub fn save(
    conn: &mut PgConnection,
    user_id: Uuid,
    key: &str,
    content: &serde_json::Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::delete(
        form_draft::table.filter(form_draft::updated_at.lt(now - Duration::hours(KEEP_HOURS))),
    )
    .execute(conn)?;
    diesel::insert_into(form_draft::table)
        .values((
            form_draft::user_id.eq(user_id),
            form_draft::form_key.eq(key),
            form_draft::content.eq(content),
            form_draft::updated_at.eq(now),
        ))
        .on_conflict((form_draft::user_id, form_draft::form_key))
        .do_update()
        .set((
            form_draft::content.eq(content),
            form_draft::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn load(
    conn: &mut PgConnection,
    user_id: Uuid,
    key: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<serde_json::Value>> {
    Ok(form_draft::table
        .filter(form_draft::user_id.eq(user_id))
        .filter(form_draft::form_key.eq(key))
        .filter(form_draft::updated_at.ge(now - Duration::hours(KEEP_HOURS)))
        .select(form_draft::content)
        .first(conn)
        .optional()?)
}

pub fn discard(conn: &mut PgConnection, user_id: Uuid, key: &str) -> StoreResult<()> {
    diesel::delete(
        form_draft::table
            .filter(form_draft::user_id.eq(user_id))
            .filter(form_draft::form_key.eq(key)),
    )
    .execute(conn)?;
    Ok(())
}
