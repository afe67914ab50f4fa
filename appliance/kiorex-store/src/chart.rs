//! The records a patient's chart shows, in one query.
//!
//! Unlike `Patient/$everything`, which returns whole resources, the chart needs a few fields of
//! each observation (what, value, when, flag), and a patient followed for years has thousands
//! of them. Observations come back trimmed to those fields (a third of their size), so a
//! five-year chart is read and parsed in a fraction of the time. Other records come whole.

use crate::StoreResult;
use crate::resources::Stored;
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Int4, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use serde_json::Value;
use uuid::Uuid;

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    resource_type: String,
    #[diesel(sql_type = SqlUuid)]
    facility_id: Uuid,
    #[diesel(sql_type = Int4)]
    version_id: i32,
    #[diesel(sql_type = Timestamptz)]
    last_updated: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    deleted: bool,
    #[diesel(sql_type = Jsonb)]
    content: Value,
}

/// The live records that refer to `patient` (observations trimmed to what a chart shows).
pub fn records_of(conn: &mut PgConnection, patient: Uuid) -> StoreResult<Vec<Stored>> {
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT r.id, r.resource_type, r.facility_id, r.version_id, r.last_updated, r.deleted, \
           CASE WHEN r.resource_type = 'Observation' THEN jsonb_build_object( \
             'resourceType', 'Observation', \
             'code', r.content->'code', \
             'category', r.content->'category', \
             'valueQuantity', r.content->'valueQuantity', \
             'effectiveDateTime', r.content->'effectiveDateTime', \
             'interpretation', r.content->'interpretation', \
             'subject', r.content->'subject') \
           ELSE r.content END AS content \
         FROM resource r \
         WHERE r.id IN (SELECT resource_id FROM search_reference WHERE target_id = $1) \
           AND NOT r.deleted",
    )
    .bind::<SqlUuid, _>(patient)
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| Stored {
            id: r.id,
            resource_type: r.resource_type,
            facility_id: r.facility_id,
            version_id: r.version_id,
            last_updated: r.last_updated,
            deleted: r.deleted,
            content: r.content,
        })
        .collect())
}
