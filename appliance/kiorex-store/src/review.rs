//! The duplicate review list: possible duplicates accepted from partner systems, waiting for a
//! registrar to merge or dismiss them.

use crate::schema::duplicate_review;
use crate::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = duplicate_review)]
pub struct ReviewItem {
    pub id: Uuid,
    pub facility_id: Uuid,
    pub patient_id: Uuid,
    pub candidate_id: Uuid,
    pub score: f64,
    pub reasons: serde_json::Value,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
}

/// Puts a possible duplicate on the list (once per pair).
pub fn add(
    conn: &mut PgConnection,
    facility_id: Uuid,
    patient_id: Uuid,
    candidate_id: Uuid,
    score: f64,
    reasons: &[String],
    at: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::insert_into(duplicate_review::table)
        .values((
            duplicate_review::id.eq(Uuid::new_v4()),
            duplicate_review::facility_id.eq(facility_id),
            duplicate_review::patient_id.eq(patient_id),
            duplicate_review::candidate_id.eq(candidate_id),
            duplicate_review::score.eq(score),
            duplicate_review::reasons.eq(serde_json::json!(reasons)),
            duplicate_review::created_at.eq(at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(())
}

/// Open items of the given facilities, oldest first.
pub fn open(
    conn: &mut PgConnection,
    facilities: &[Uuid],
    limit: i64,
) -> StoreResult<Vec<ReviewItem>> {
    Ok(duplicate_review::table
        .filter(duplicate_review::facility_id.eq_any(facilities))
        .filter(duplicate_review::status.eq("open"))
        .order(duplicate_review::created_at.asc())
        .limit(limit)
        .select(ReviewItem::as_select())
        .load(conn)?)
}

pub fn find(conn: &mut PgConnection, id: Uuid) -> StoreResult<ReviewItem> {
    duplicate_review::table
        .find(id)
        .select(ReviewItem::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound)
}

/// Closes an item as `merged` or `dismissed`.
pub fn resolve(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    by: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let changed = diesel::update(
        duplicate_review::table
            .find(id)
            .filter(duplicate_review::status.eq("open")),
    )
    .set((
        duplicate_review::status.eq(status),
        duplicate_review::resolved_at.eq(at),
        duplicate_review::resolved_by.eq(by),
    ))
    .execute(conn)?;
    if changed == 0 {
        return Err(StoreError::Conflict(
            "the review item is already resolved".into(),
        ));
    }
    Ok(())
}

/// What registration knows about a new patient, to find the records that might be the same person.
#[derive(Debug, Clone, Default)]
pub struct BlockingKeys {
    pub family: String,
    pub birth_date: Option<chrono::NaiveDate>,
    pub identifiers: Vec<String>,
    pub phones: Vec<String>,
}

/// Patients of these facilities that share a blocking key with the new one: the same birth date,
/// identifier or phone, or a similar family name (trigram) born in the same year. Scoring is the
/// domain's job; this only keeps the candidate list short.
pub fn candidates(
    conn: &mut PgConnection,
    facilities: &[Uuid],
    keys: &BlockingKeys,
    limit: i64,
) -> StoreResult<Vec<crate::resources::Stored>> {
    use crate::schema::resource;
    use diesel::sql_types::{Array, Date, Int8, Nullable, Text, Uuid as SqlUuid};
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let ids: Vec<Id> = diesel::sql_query(
        "SELECT r.id FROM resource r \
         WHERE r.resource_type = 'Patient' AND NOT r.deleted AND r.facility_id = ANY($1) AND r.id IN ( \
           SELECT resource_id FROM search_date WHERE resource_type = 'Patient' AND param = 'birthdate' \
             AND $2::date IS NOT NULL AND low = $2::date::timestamp AT TIME ZONE 'UTC' \
           UNION SELECT resource_id FROM search_token WHERE resource_type = 'Patient' AND param = 'identifier' \
             AND code = ANY($3) \
           UNION SELECT resource_id FROM search_token WHERE resource_type = 'Patient' AND param = 'phone' \
             AND code = ANY($4) \
           UNION SELECT s.resource_id FROM search_string s JOIN search_date d ON d.resource_id = s.resource_id \
             AND d.param = 'birthdate' \
             WHERE s.resource_type = 'Patient' AND s.param = 'family' AND s.value % $5 \
             AND $2::date IS NOT NULL AND date_part('year', d.low AT TIME ZONE 'UTC') = date_part('year', $2::date)) \
         LIMIT $6",
    )
    .bind::<Array<SqlUuid>, _>(facilities)
    .bind::<Nullable<Date>, _>(keys.birth_date)
    .bind::<Array<Text>, _>(&keys.identifiers)
    .bind::<Array<Text>, _>(&keys.phones)
    .bind::<Text, _>(&keys.family)
    .bind::<Int8, _>(limit)
    .load(conn)?;
    let ids: Vec<Uuid> = ids.into_iter().map(|i| i.id).collect();
    Ok(resource::table
        .filter(resource::id.eq_any(&ids))
        .select(crate::resources::Stored::as_select())
        .load(conn)?)
}
