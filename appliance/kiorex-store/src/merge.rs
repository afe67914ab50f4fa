//! Records of patient merges: which resources a merge rewrote and at which versions, so that an
//! undo can put each one back.

use crate::schema::patient_merge;
use crate::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One resource a merge changed: the version before and the version the merge wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedResource {
    pub id: Uuid,
    pub before: i32,
    pub after: i32,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = patient_merge)]
pub struct MergeRecord {
    pub id: Uuid,
    pub facility_id: Uuid,
    pub survivor_id: Uuid,
    pub loser_id: Uuid,
    pub merged_at: DateTime<Utc>,
    pub merged_by: String,
    pub request_id: String,
    pub changes: serde_json::Value,
    pub undone_at: Option<DateTime<Utc>>,
    pub undone_by: Option<String>,
}

impl MergeRecord {
    pub fn changed_resources(&self) -> Vec<MergedResource> {
        serde_json::from_value(self.changes.clone()).unwrap_or_default()
    }
}

pub fn insert(conn: &mut PgConnection, record: &MergeRecord) -> StoreResult<()> {
    diesel::insert_into(patient_merge::table)
        .values((
            patient_merge::id.eq(record.id),
            patient_merge::facility_id.eq(record.facility_id),
            patient_merge::survivor_id.eq(record.survivor_id),
            patient_merge::loser_id.eq(record.loser_id),
            patient_merge::merged_at.eq(record.merged_at),
            patient_merge::merged_by.eq(&record.merged_by),
            patient_merge::request_id.eq(&record.request_id),
            patient_merge::changes.eq(&record.changes),
        ))
        .execute(conn)?;
    Ok(())
}

/// Locks a merge record for undo.
pub fn lock(conn: &mut PgConnection, id: Uuid) -> StoreResult<MergeRecord> {
    patient_merge::table
        .find(id)
        .select(MergeRecord::as_select())
        .for_update()
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound)
}

pub fn mark_undone(
    conn: &mut PgConnection,
    id: Uuid,
    by: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::update(patient_merge::table.find(id))
        .set((
            patient_merge::undone_at.eq(at),
            patient_merge::undone_by.eq(by),
        ))
        .execute(conn)?;
    Ok(())
}

/// The active (not undone) merge that retired `loser_id`, if any.
pub fn active_for_loser(
    conn: &mut PgConnection,
    loser_id: Uuid,
) -> StoreResult<Option<MergeRecord>> {
    Ok(patient_merge::table
        .filter(patient_merge::loser_id.eq(loser_id))
        .filter(patient_merge::undone_at.is_null())
        .select(MergeRecord::as_select())
        .first(conn)
        .optional()?)
}
