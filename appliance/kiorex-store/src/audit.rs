//! The audit log in PostgreSQL. Entries are appended in batches under an advisory lock, so that
//! several `core` replicas extend one chain; verification walks the whole chain in order.

use crate::StoreResult;
use crate::schema::audit_log;
use chrono::{DateTime, SubsecRound, Utc};
use diesel::prelude::*;
use kiorex_domain::audit::{AuditFacts, ChainBreak, GENESIS, chain_hash, verify_link};

/// Serialises appends across every process that writes the chain.
const CHAIN_LOCK: i64 = 0x4b58_4155_4449_5400; // "KXAUDIT"

/// An audit entry before it joins the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub resource_type: String,
    pub resource_id: String,
    pub patient_id: String,
    pub facility_id: String,
    pub request_id: String,
    pub detail: String,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub seq: i64,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub resource_type: String,
    pub resource_id: String,
    pub patient_id: String,
    pub facility_id: String,
    pub request_id: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    fn facts<'a>(&'a self, recorded_at: &'a str) -> AuditFacts<'a> {
        AuditFacts {
            seq: self.seq,
            recorded_at,
            actor: &self.actor,
            action: &self.action,
            outcome: &self.outcome,
            resource_type: &self.resource_type,
            resource_id: &self.resource_id,
            patient_id: &self.patient_id,
            facility_id: &self.facility_id,
            request_id: &self.request_id,
            detail: &self.detail,
        }
    }
}

/// The timestamp as hashed: microseconds, the precision PostgreSQL keeps.
fn hashed_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Appends `records` to the chain in one transaction.
pub fn append(conn: &mut PgConnection, records: &[AuditRecord]) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    conn.transaction(|conn| {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({CHAIN_LOCK})")).execute(conn)?;
        let head: Option<(i64, String)> = audit_log::table
            .select((audit_log::seq, audit_log::hash))
            .order(audit_log::seq.desc())
            .first(conn)
            .optional()?;
        let (mut seq, mut previous) = head.unwrap_or((0, GENESIS.to_owned()));
        let mut entries = Vec::with_capacity(records.len());
        for r in records {
            seq += 1;
            let recorded_at = r.recorded_at.trunc_subsecs(6);
            let mut entry = AuditEntry {
                seq,
                recorded_at,
                actor: r.actor.clone(),
                action: r.action.clone(),
                outcome: r.outcome.clone(),
                resource_type: r.resource_type.clone(),
                resource_id: r.resource_id.clone(),
                patient_id: r.patient_id.clone(),
                facility_id: r.facility_id.clone(),
                request_id: r.request_id.clone(),
                detail: r.detail.clone(),
                prev_hash: previous.clone(),
                hash: String::new(),
            };
            entry.hash = chain_hash(&previous, &entry.facts(&hashed_time(recorded_at)));
            previous = entry.hash.clone();
            entries.push(entry);
        }
        insert(conn, &entries)
    })
}

fn insert(conn: &mut PgConnection, entries: &[AuditEntry]) -> StoreResult<()> {
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                audit_log::seq.eq(e.seq),
                audit_log::recorded_at.eq(e.recorded_at),
                audit_log::actor.eq(&e.actor),
                audit_log::action.eq(&e.action),
                audit_log::outcome.eq(&e.outcome),
                audit_log::resource_type.eq(&e.resource_type),
                audit_log::resource_id.eq(&e.resource_id),
                audit_log::patient_id.eq(&e.patient_id),
                audit_log::facility_id.eq(&e.facility_id),
                audit_log::request_id.eq(&e.request_id),
                audit_log::detail.eq(&e.detail),
                audit_log::prev_hash.eq(&e.prev_hash),
                audit_log::hash.eq(&e.hash),
            )
        })
        .collect();
    // Bound parameters per statement are limited; 13 columns × 2,000 rows stays well inside.
    for chunk in rows.chunks(2_000) {
        diesel::insert_into(audit_log::table)
            .values(chunk)
            .execute(conn)?;
    }
    Ok(())
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub entries: u64,
    /// The last entry's sequence number and hash: record them elsewhere to detect truncation.
    pub head: Option<(i64, String)>,
    pub first_break: Option<ChainBreak>,
}

/// Walks the whole chain in order, `progress` called after each batch with the entries checked.
pub fn verify(conn: &mut PgConnection, mut progress: impl FnMut(u64)) -> StoreResult<Verification> {
    const BATCH: i64 = 10_000;
    let mut checked = 0u64;
    let mut previous = GENESIS.to_owned();
    let mut previous_seq: Option<i64> = None;
    loop {
        let batch: Vec<AuditEntry> = audit_log::table
            .filter(audit_log::seq.gt(previous_seq.unwrap_or(0)))
            .order(audit_log::seq.asc())
            .limit(BATCH)
            .select(AuditEntry::as_select())
            .load(conn)?;
        if batch.is_empty() {
            break;
        }
        for entry in &batch {
            let recorded_at = hashed_time(entry.recorded_at);
            let facts = entry.facts(&recorded_at);
            if let Err(broken) = verify_link(
                previous_seq,
                &previous,
                &entry.prev_hash,
                &entry.hash,
                &facts,
            ) {
                return Ok(Verification {
                    entries: checked,
                    head: None,
                    first_break: Some(broken),
                });
            }
            previous = entry.hash.clone();
            previous_seq = Some(entry.seq);
            checked += 1;
        }
        progress(checked);
    }
    let head = previous_seq.map(|seq| (seq, previous));
    Ok(Verification {
        entries: checked,
        head,
        first_break: None,
    })
}

/// Entries about one patient, newest first (the "who saw my record" report).
pub fn for_patient(
    conn: &mut PgConnection,
    patient_id: &str,
    limit: i64,
) -> StoreResult<Vec<AuditEntry>> {
    Ok(audit_log::table
        .filter(audit_log::patient_id.eq(patient_id))
        .order(audit_log::seq.desc())
        .limit(limit)
        .select(AuditEntry::as_select())
        .load(conn)?)
}

/// What an auditor searches the log by. Every given criterion must hold.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub patient_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Facilities the auditor covers; entries without a facility (sign-ins) are always included.
    pub facility_ids: Vec<String>,
    pub limit: i64,
}

/// Entries matching `filter`, newest first.
pub fn search(conn: &mut PgConnection, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
    let mut facilities = filter.facility_ids.clone();
    facilities.push(String::new());
    let mut query = audit_log::table
        .filter(audit_log::facility_id.eq_any(facilities))
        .into_boxed();
    if let Some(p) = &filter.patient_id {
        query = query.filter(audit_log::patient_id.eq(p.clone()));
    }
    if let Some(a) = &filter.actor {
        query = query.filter(audit_log::actor.eq(a.clone()));
    }
    if let Some(a) = &filter.action {
        query = query.filter(audit_log::action.eq(a.clone()));
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_log::recorded_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_log::recorded_at.lt(to));
    }
    Ok(query
        .order(audit_log::seq.desc())
        .limit(filter.limit)
        .select(AuditEntry::as_select())
        .load(conn)?)
}

/// One entry by its sequence number.
pub fn by_seq(conn: &mut PgConnection, seq: i64) -> StoreResult<Option<AuditEntry>> {
    Ok(audit_log::table
        .find(seq)
        .select(AuditEntry::as_select())
        .first(conn)
        .optional()?)
}
