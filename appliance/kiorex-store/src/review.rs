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
    /// The birth date and the dates a registrar's typing slip turns it into (the domain decides).
    pub birth_dates: Vec<chrono::NaiveDate>,
    pub identifiers: Vec<String>,
    pub phones: Vec<String>,
}

/// Patients of these facilities that share a blocking key with the new one: a birth date (or one
/// of its likely typos), an identifier or a phone number. Each key is an index lookup, so the
/// cost does not grow with the number of patients sharing a common family name. Scoring is the
/// domain's job; this only keeps the candidate list short.
pub fn candidates(
    conn: &mut PgConnection,
    facilities: &[Uuid],
    keys: &BlockingKeys,
    limit: i64,
) -> StoreResult<Vec<crate::resources::Stored>> {
    use crate::schema::resource;
    use diesel::pg::Pg;
    use diesel::sql_types::{Int8, Text, Timestamptz, Uuid as SqlUuid};
    #[derive(QueryableByName)]
    struct Candidate {
        #[diesel(sql_type = SqlUuid)]
        resource_id: Uuid,
    }
    // One equality lookup per key, so that every condition is an index condition whatever the
    // planner believes about table sizes (a join with `= ANY` scanned every patient while the
    // statistics were stale), sent together as one statement.
    let days: Vec<DateTime<Utc>> = keys
        .birth_dates
        .iter()
        .filter_map(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .collect();
    let tokens: Vec<(&str, &String)> = keys
        .identifiers
        .iter()
        .map(|c| ("identifier", c))
        .chain(keys.phones.iter().map(|c| ("phone", c)))
        .collect();
    let mut branches = Vec::new();
    let mut n = 1;
    for _ in &days {
        branches.push(format!(
            "(SELECT resource_id FROM search_date WHERE resource_type = 'Patient' AND param = 'birthdate' AND low = ${n} LIMIT ${})",
            n + 1
        ));
        n += 2;
    }
    for _ in &tokens {
        branches.push(format!(
            "(SELECT resource_id FROM search_token WHERE code = ${n} AND param = ${} AND resource_type = 'Patient' LIMIT ${})",
            n + 1,
            n + 2
        ));
        n += 3;
    }
    if branches.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = diesel::sql_query(branches.join(" UNION ALL ")).into_boxed::<Pg>();
    for day in days {
        query = query.bind::<Timestamptz, _>(day).bind::<Int8, _>(limit);
    }
    for (param, code) in tokens {
        query = query
            .bind::<Text, _>(code.clone())
            .bind::<Text, _>(param)
            .bind::<Int8, _>(limit);
    }
    let mut ids: Vec<Uuid> = query
        .load::<Candidate>(conn)?
        .into_iter()
        .map(|c| c.resource_id)
        .collect();
    ids.sort();
    ids.dedup();
    Ok(resource::table
        .filter(resource::id.eq_any(&ids))
        .filter(resource::resource_type.eq("Patient"))
        .filter(resource::deleted.eq(false))
        .filter(resource::facility_id.eq_any(facilities))
        .select(crate::resources::Stored::as_select())
        .load(conn)?)
}
