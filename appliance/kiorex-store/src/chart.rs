//! What a patient's chart shows, read in two short queries.
//!
//! A patient followed for years has thousands of observations, scattered over the record table
//! among everyone else's. Reading them whole for every chart view took most of the chart's time,
//! and PostgreSQL would even scan the whole record table once a patient had a few thousand.
//! The chart reads observations from `chart_result` instead (one narrow row each, written with
//! the observation: see [`kiorex_domain::index::ChartResult`]), from one range of one index,
//! and reads only the patient's other records (encounters, problems, allergies, medications,
//! notes) whole.

use crate::StoreResult;
use crate::resources::Stored;
use crate::schema::{chart_result, resource, search_reference};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

/// One result as the chart shows it.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = chart_result)]
pub struct ChartResultRow {
    pub resource_id: Uuid,
    pub facility_id: Uuid,
    pub code: String,
    pub display: String,
    pub value: Option<f64>,
    pub unit: String,
    pub effective_at: Option<DateTime<Utc>>,
    pub flag: String,
    pub vital: bool,
}

/// The live records that refer to `patient`, other than observations.
pub fn records_of(conn: &mut PgConnection, patient: Uuid) -> StoreResult<Vec<Stored>> {
    let ids: Vec<Uuid> = search_reference::table
        .filter(search_reference::target_id.eq(patient))
        .filter(search_reference::resource_type.ne("Observation"))
        .select(search_reference::resource_id)
        .distinct()
        .load(conn)?;
    // By id from a list, so that PostgreSQL probes the primary key for each: a join lets it
    // pick a scan of the whole table when its estimate for a patient is high.
    Ok(resource::table
        .filter(resource::id.eq_any(&ids))
        .filter(resource::deleted.eq(false))
        .select(Stored::as_select())
        .load(conn)?)
}

/// The patient's results, newest first (those without a time first).
pub fn results_of(conn: &mut PgConnection, patient: Uuid) -> StoreResult<Vec<ChartResultRow>> {
    Ok(chart_result::table
        .filter(chart_result::patient_id.eq(patient))
        .order(chart_result::effective_at.desc())
        .select(ChartResultRow::as_select())
        .load(conn)?)
}
