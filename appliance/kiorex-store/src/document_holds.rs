//! Uploads held unscanned while clamd was unreachable (`scan.hold_when_unavailable`). The sealed
//! file waits in the quarantine bucket; this row says whose it is and what became of it. It is
//! not a document: nothing here appears in a patient's record until a rescan accepts it.

use crate::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

diesel::table! {
    document_hold (id) {
        id -> Uuid,
        facility_id -> Uuid,
        patient_id -> Uuid,
        document_id -> Nullable<Uuid>,
        quarantine_key -> Text,
        key_id -> Text,
        wrapped_key -> Bytea,
        upload -> Jsonb,
        status -> Text,
        detail -> Text,
        accepted_document -> Nullable<Uuid>,
        accepted_version -> Nullable<Int4>,
        claimed_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        decided_at -> Nullable<Timestamptz>,
    }
}

/// What the uploader sent and said about it, kept until the rescan writes the document rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeldUpload {
    pub category: String,
    pub title: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// Lower-case hex SHA-256 of the content, checked again when the held file is opened.
    pub sha256: String,
    pub author: String,
    pub request_id: String,
}

/// What became of a held upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    Pending,
    Accepted,
    Infected,
    Rejected,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Pending => "pending",
            HoldStatus::Accepted => "accepted",
            HoldStatus::Infected => "infected",
            HoldStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> HoldStatus {
        match s {
            "accepted" => HoldStatus::Accepted,
            "infected" => HoldStatus::Infected,
            "rejected" => HoldStatus::Rejected,
            _ => HoldStatus::Pending,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = document_hold)]
struct HoldRow {
    id: Uuid,
    facility_id: Uuid,
    patient_id: Uuid,
    document_id: Option<Uuid>,
    quarantine_key: String,
    key_id: String,
    wrapped_key: Vec<u8>,
    upload: serde_json::Value,
    status: String,
    detail: String,
    accepted_document: Option<Uuid>,
    accepted_version: Option<i32>,
    claimed_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
}

/// A held upload and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub id: Uuid,
    pub facility_id: Uuid,
    pub patient_id: Uuid,
    /// The document this upload adds a version to; `None` for a new document.
    pub document_id: Option<Uuid>,
    pub quarantine_key: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub upload: HeldUpload,
    pub status: HoldStatus,
    pub detail: String,
    pub accepted_document: Option<Uuid>,
    pub accepted_version: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl Hold {
    /// A new pending hold.
    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        id: Uuid,
        facility_id: Uuid,
        patient_id: Uuid,
        document_id: Option<Uuid>,
        quarantine_key: String,
        key_id: String,
        wrapped_key: Vec<u8>,
        upload: HeldUpload,
        created_at: DateTime<Utc>,
    ) -> Hold {
        Hold {
            id,
            facility_id,
            patient_id,
            document_id,
            quarantine_key,
            key_id,
            wrapped_key,
            upload,
            status: HoldStatus::Pending,
            detail: String::new(),
            accepted_document: None,
            accepted_version: None,
            created_at,
            decided_at: None,
        }
    }
}

impl TryFrom<HoldRow> for Hold {
    type Error = StoreError;

    fn try_from(row: HoldRow) -> StoreResult<Hold> {
        let upload = serde_json::from_value(row.upload).map_err(|e| {
            StoreError::Conflict(format!("hold {}: unreadable upload: {e}", row.id))
        })?;
        Ok(Hold {
            id: row.id,
            facility_id: row.facility_id,
            patient_id: row.patient_id,
            document_id: row.document_id,
            quarantine_key: row.quarantine_key,
            key_id: row.key_id,
            wrapped_key: row.wrapped_key,
            upload,
            status: HoldStatus::parse(&row.status),
            detail: row.detail,
            accepted_document: row.accepted_document,
            accepted_version: row.accepted_version,
            created_at: row.created_at,
            decided_at: row.decided_at,
        })
    }
}

pub fn insert(conn: &mut PgConnection, hold: &Hold) -> StoreResult<()> {
    let upload = serde_json::to_value(&hold.upload)
        .map_err(|e| StoreError::Conflict(format!("hold {}: {e}", hold.id)))?;
    let row = HoldRow {
        id: hold.id,
        facility_id: hold.facility_id,
        patient_id: hold.patient_id,
        document_id: hold.document_id,
        quarantine_key: hold.quarantine_key.clone(),
        key_id: hold.key_id.clone(),
        wrapped_key: hold.wrapped_key.clone(),
        upload,
        status: hold.status.as_str().to_owned(),
        detail: hold.detail.clone(),
        accepted_document: hold.accepted_document,
        accepted_version: hold.accepted_version,
        claimed_until: None,
        created_at: hold.created_at,
        decided_at: hold.decided_at,
    };
    diesel::insert_into(document_hold::table)
        .values(&row)
        .execute(conn)?;
    Ok(())
}

pub fn read(conn: &mut PgConnection, id: Uuid) -> StoreResult<Hold> {
    document_hold::table
        .find(id)
        .select(HoldRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound)?
        .try_into()
}

/// Takes the oldest pending hold nobody else is working on, leased until `lease_until`; `None`
/// when none is left. Two rescans (or a rescan and the worker) never take the same hold.
pub fn claim_next(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> StoreResult<Option<Hold>> {
    conn.transaction(|conn| {
        let next: Option<Uuid> = document_hold::table
            .filter(document_hold::status.eq(HoldStatus::Pending.as_str()))
            .filter(
                document_hold::claimed_until
                    .is_null()
                    .or(document_hold::claimed_until.lt(now)),
            )
            .order(document_hold::created_at.asc())
            .select(document_hold::id)
            .for_update()
            .skip_locked()
            .first(conn)
            .optional()?;
        let Some(id) = next else { return Ok(None) };
        let row = diesel::update(document_hold::table.find(id))
            .set(document_hold::claimed_until.eq(Some(lease_until)))
            .returning(HoldRow::as_returning())
            .get_result(conn)?;
        Ok(Some(row.try_into()?))
    })
}

/// Gives a claimed hold back untouched (the scanner went away again).
pub fn release(conn: &mut PgConnection, id: Uuid) -> StoreResult<()> {
    diesel::update(document_hold::table.find(id))
        .set(document_hold::claimed_until.eq(None::<DateTime<Utc>>))
        .execute(conn)?;
    Ok(())
}

/// The outcome of a scan, recorded once: a hold that is no longer pending is left alone, and
/// `false` is returned.
pub struct Decision<'a> {
    pub status: HoldStatus,
    pub detail: &'a str,
    pub document: Option<(Uuid, i32)>,
    pub at: DateTime<Utc>,
}

pub fn decide(conn: &mut PgConnection, id: Uuid, decision: &Decision<'_>) -> StoreResult<bool> {
    let changed = diesel::update(
        document_hold::table
            .find(id)
            .filter(document_hold::status.eq(HoldStatus::Pending.as_str())),
    )
    .set((
        document_hold::status.eq(decision.status.as_str()),
        document_hold::detail.eq(decision.detail),
        document_hold::accepted_document.eq(decision.document.map(|(d, _)| d)),
        document_hold::accepted_version.eq(decision.document.map(|(_, v)| v)),
        document_hold::decided_at.eq(Some(decision.at)),
        document_hold::claimed_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// How many holds still wait for a scan (readiness, configtest, the rescan report).
pub fn pending_count(conn: &mut PgConnection) -> StoreResult<i64> {
    Ok(document_hold::table
        .filter(document_hold::status.eq(HoldStatus::Pending.as_str()))
        .count()
        .get_result(conn)?)
}
