//! Care relationships (who is treating whom) and break-the-glass access with its review queue.

use crate::identity_schema::{break_glass, care_assignment};
use crate::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Text, Timestamptz, Uuid as SqlUuid};
use std::collections::HashSet;
use uuid::Uuid;

/// Of `patients`, those the user is caring for at `now`: an assignment in force, an open
/// encounter where the user's practitioner record takes part, or unexpired break-the-glass.
pub fn patients_in_care(
    conn: &mut PgConnection,
    user_id: Uuid,
    patients: &[Uuid],
    open_statuses: &[&str],
    now: DateTime<Utc>,
) -> StoreResult<HashSet<Uuid>> {
    if patients.is_empty() {
        return Ok(HashSet::new());
    }
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        patient_id: Uuid,
    }
    let statuses: Vec<String> = open_statuses.iter().map(|s| (*s).to_owned()).collect();
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT patient_id FROM care_assignment \
          WHERE user_id = $1 AND patient_id = ANY($2) AND valid_from <= $3 \
            AND (valid_until IS NULL OR valid_until > $3) \
         UNION \
         SELECT patient_id FROM break_glass \
          WHERE user_id = $1 AND patient_id = ANY($2) AND granted_at <= $3 AND expires_at > $3 \
         UNION \
         SELECT subj.target_id FROM search_reference subj \
           JOIN search_reference part ON part.resource_id = subj.resource_id \
                AND part.param = 'participant' \
           JOIN user_account u ON u.practitioner_id = part.target_id AND u.id = $1 \
           JOIN search_token st ON st.resource_id = subj.resource_id AND st.param = 'status' \
                AND st.code = ANY($4) \
          WHERE subj.resource_type = 'Encounter' AND subj.param = 'subject' \
            AND subj.target_id = ANY($2)",
    )
    .bind::<SqlUuid, _>(user_id)
    .bind::<Array<SqlUuid>, _>(patients)
    .bind::<Timestamptz, _>(now)
    .bind::<Array<Text>, _>(&statuses)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.patient_id).collect())
}

/// Puts a patient on a clinician's list (ward list, care team) from `from` until `until`.
pub struct Assignment<'a> {
    pub user_id: Uuid,
    pub patient_id: Uuid,
    pub facility_id: Uuid,
    pub reason: &'a str,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub created_by: &'a str,
}

pub fn assign(conn: &mut PgConnection, a: &Assignment<'_>) -> StoreResult<Uuid> {
    let id = Uuid::new_v4();
    diesel::insert_into(care_assignment::table)
        .values((
            care_assignment::id.eq(id),
            care_assignment::user_id.eq(a.user_id),
            care_assignment::patient_id.eq(a.patient_id),
            care_assignment::facility_id.eq(a.facility_id),
            care_assignment::reason.eq(a.reason),
            care_assignment::valid_from.eq(a.from),
            care_assignment::valid_until.eq(a.until),
            care_assignment::created_by.eq(a.created_by),
        ))
        .execute(conn)?;
    Ok(id)
}

/// One break-the-glass access, as granted and as reviewed.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = break_glass)]
pub struct BreakGlass {
    pub id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub patient_id: Uuid,
    pub facility_id: Uuid,
    pub reason: String,
    pub granted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub review_status: String,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub review_note: Option<String>,
}

pub fn grant_break_glass(conn: &mut PgConnection, g: &BreakGlass) -> StoreResult<()> {
    diesel::insert_into(break_glass::table)
        .values((
            break_glass::id.eq(g.id),
            break_glass::user_id.eq(g.user_id),
            break_glass::username.eq(&g.username),
            break_glass::patient_id.eq(g.patient_id),
            break_glass::facility_id.eq(g.facility_id),
            break_glass::reason.eq(&g.reason),
            break_glass::granted_at.eq(g.granted_at),
            break_glass::expires_at.eq(g.expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Break-the-glass events at these facilities, pending ones first, newest first.
pub fn review_queue(
    conn: &mut PgConnection,
    facilities: &[Uuid],
    status: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<BreakGlass>> {
    let mut query = break_glass::table
        .filter(break_glass::facility_id.eq_any(facilities))
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(break_glass::review_status.eq(status.to_owned()));
    }
    Ok(query
        .order(break_glass::granted_at.desc())
        .limit(limit)
        .select(BreakGlass::as_select())
        .load(conn)?)
}

pub fn find_break_glass(conn: &mut PgConnection, id: Uuid) -> StoreResult<BreakGlass> {
    break_glass::table
        .find(id)
        .select(BreakGlass::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound)
}

/// Records the privacy officer's decision on one event.
pub fn review(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let n = diesel::update(break_glass::table.find(id))
        .set((
            break_glass::review_status.eq(status),
            break_glass::reviewed_by.eq(by),
            break_glass::reviewed_at.eq(now),
            break_glass::review_note.eq(note),
        ))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The caller's break-the-glass access to this patient that is in force now, if any (the chart
/// shows a banner while it lasts).
pub fn active_break_glass(
    conn: &mut PgConnection,
    user_id: Uuid,
    patient_id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<Option<BreakGlass>> {
    Ok(break_glass::table
        .filter(break_glass::user_id.eq(user_id))
        .filter(break_glass::patient_id.eq(patient_id))
        .filter(break_glass::granted_at.le(now))
        .filter(break_glass::expires_at.gt(now))
        .order(break_glass::expires_at.desc())
        .select(BreakGlass::as_select())
        .first(conn)
        .optional()?)
}
