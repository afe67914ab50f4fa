//! Facilities (hospitals, clinics) and their medical record number sequences.

use crate::StoreResult;
use crate::schema::facility;
use diesel::prelude::*;
use diesel::sql_types::Int8;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = facility)]
pub struct Facility {
    pub id: Uuid,
    pub code: String,
    pub name: String,
}

/// Inserts a facility and its MRN sequence. A sequence, unlike a counter row, is not held locked
/// until commit, so registrations at one facility do not queue behind each other.
pub fn insert(conn: &mut PgConnection, id: Uuid, code: &str, name: &str) -> StoreResult<Facility> {
    let facility: Facility = diesel::insert_into(facility::table)
        .values((
            facility::id.eq(id),
            facility::code.eq(code),
            facility::name.eq(name),
        ))
        .returning(Facility::as_returning())
        .get_result(conn)?;
    diesel::sql_query(format!(
        "CREATE SEQUENCE IF NOT EXISTS {}",
        mrn_sequence(id)
    ))
    .execute(conn)?;
    Ok(facility)
}

pub fn all(conn: &mut PgConnection) -> StoreResult<Vec<Facility>> {
    Ok(facility::table
        .order(facility::code)
        .select(Facility::as_select())
        .load(conn)?)
}

pub fn find(conn: &mut PgConnection, id: Uuid) -> StoreResult<Option<Facility>> {
    Ok(facility::table
        .find(id)
        .select(Facility::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_by_code(conn: &mut PgConnection, code: &str) -> StoreResult<Option<Facility>> {
    Ok(facility::table
        .filter(facility::code.eq(code))
        .select(Facility::as_select())
        .first(conn)
        .optional()?)
}

/// The next MRN sequence number of a facility. Numbers are never reused; a rolled-back
/// registration leaves a gap, as in most hospital registries.
pub fn next_mrn_sequence(conn: &mut PgConnection, facility_id: Uuid) -> StoreResult<u64> {
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = Int8)]
        value: i64,
    }
    let next: Next = diesel::sql_query(format!(
        "SELECT nextval('{}') AS value",
        mrn_sequence(facility_id)
    ))
    .get_result(conn)?;
    Ok(u64::try_from(next.value).unwrap_or_default())
}

/// The sequence's name: built from the facility's uuid, never from user input.
fn mrn_sequence(facility_id: Uuid) -> String {
    format!("mrn_seq_{}", facility_id.simple())
}

/// Renames a facility (its code, part of every MRN, never changes).
pub fn rename(conn: &mut PgConnection, id: Uuid, name: &str) -> StoreResult<()> {
    diesel::update(facility::table.find(id))
        .set(facility::name.eq(name))
        .execute(conn)?;
    Ok(())
}
