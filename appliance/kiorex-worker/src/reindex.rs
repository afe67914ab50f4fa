//! `kiorex reindex`: rebuilds a search index from PostgreSQL, the system of record, while
//! searches keep answering. Meilisearch: a new index beside the live one, filled in batches,
//! swapped in, the old one deleted. PostgreSQL: each batch's index rows replaced in one short
//! transaction (a search sees a record's old entries or its new ones, never none). Documents on
//! PostgreSQL have no index rows to rebuild: their text is searched where it is stored.

use crate::delivery::document_doc;
use diesel::prelude::*;
use kiorex_fhir::ResourceKind;
use kiorex_search::Engine;
use kiorex_search::meili::IndexKind;
use kiorex_search::meili::mapping::{medicine_doc, patient_doc};
use kiorex_store::documents::document;
use kiorex_store::resources::{self, Stored};
use kiorex_store::schema::resource;
use kiorex_store::{Store, StoreError};
use serde::Serialize;
use uuid::Uuid;

/// Records read from PostgreSQL at a time.
const BATCH: i64 = 500;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub index: &'static str,
    pub engine: &'static str,
    /// Records written into the rebuilt index.
    pub indexed: u64,
    /// Records that could not be read back as valid resources (logged, left out).
    pub skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    #[error("PostgreSQL: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Search(#[from] kiorex_search::SearchError),
}

/// How many records the rebuild will read (for a progress bar).
pub async fn total(store: &Store, kind: IndexKind) -> Result<u64, ReindexError> {
    let count = store
        .run(move |conn| {
            Ok(match resource_type(kind) {
                Some(t) => resource::table
                    .filter(resource::resource_type.eq(t))
                    .filter(resource::deleted.eq(false))
                    .count()
                    .get_result::<i64>(conn)?,
                None => document::table
                    .filter(document::deleted_at.is_null())
                    .count()
                    .get_result::<i64>(conn)?,
            })
        })
        .await?;
    Ok(count as u64)
}

fn resource_type(kind: IndexKind) -> Option<&'static str> {
    match kind {
        IndexKind::Patients => Some("Patient"),
        IndexKind::Medicines => Some("Medication"),
        IndexKind::Documents => None,
    }
}

/// Rebuilds one index; `progress` is told how many records are done after each batch.
pub async fn reindex(
    store: &Store,
    engine: &Engine,
    kind: IndexKind,
    mut progress: impl FnMut(u64),
) -> Result<Report, ReindexError> {
    let mut report = Report {
        index: kind.name(),
        engine: engine.name(),
        indexed: 0,
        skipped: 0,
    };
    // Changes made while the new index fills go to the live one (the worker keeps delivering);
    // those after this point are applied again to the new index once it is swapped in.
    let since = last_event(store).await?;
    let rebuild = match engine {
        Engine::Meilisearch(m) => Some(m.begin_rebuild(kind).await?),
        Engine::Postgres(_) if kind == IndexKind::Documents => return Ok(report),
        Engine::Postgres(_) => None,
    };
    let mut after = Uuid::nil();
    loop {
        let (ids, records) = next_batch(store, kind, after).await?;
        let Some(last) = ids.last() else { break };
        after = *last;
        match (engine, &rebuild) {
            (Engine::Meilisearch(m), Some(rebuild)) => {
                let written = match kind {
                    IndexKind::Patients => {
                        let docs: Vec<_> = records
                            .iter()
                            .map(|s| patient_doc(s.id, s.facility_id, &s.content))
                            .collect();
                        m.rebuild_batch(rebuild, &docs).await?;
                        docs.len()
                    }
                    IndexKind::Medicines => {
                        let docs: Vec<_> = records
                            .iter()
                            .map(|s| medicine_doc(s.id, s.facility_id, &s.content))
                            .collect();
                        m.rebuild_batch(rebuild, &docs).await?;
                        docs.len()
                    }
                    IndexKind::Documents => {
                        let docs = store
                            .run(move |conn| {
                                let mut docs = Vec::new();
                                for id in ids {
                                    docs.extend(document_doc(conn, id)?);
                                }
                                Ok(docs)
                            })
                            .await?;
                        m.rebuild_batch(rebuild, &docs).await?;
                        docs.len()
                    }
                };
                report.indexed += written as u64;
            }
            _ => {
                let (written, skipped) = rewrite_rows(store, records).await?;
                report.indexed += written;
                report.skipped += skipped;
            }
        }
        progress(report.indexed + report.skipped);
    }
    if let (Engine::Meilisearch(m), Some(rebuild)) = (engine, rebuild) {
        m.finish_rebuild(rebuild).await?;
        let changed = changed_since(store, kind, since).await?;
        crate::delivery::refresh(store, m, kind, changed)
            .await
            .map_err(|e| ReindexError::Search(kiorex_search::SearchError::Unavailable(e)))?;
    }
    Ok(report)
}

async fn last_event(store: &Store) -> Result<i64, ReindexError> {
    use kiorex_store::schema::outbox;
    Ok(store
        .run(|conn| {
            Ok(outbox::table
                .select(diesel::dsl::max(outbox::id))
                .first::<Option<i64>>(conn)?
                .unwrap_or(0))
        })
        .await?)
}

/// Records of this index changed after event `since`.
async fn changed_since(
    store: &Store,
    kind: IndexKind,
    since: i64,
) -> Result<Vec<Uuid>, ReindexError> {
    use kiorex_store::schema::outbox;
    let resource_type = resource_type(kind).unwrap_or("DocumentReference");
    Ok(store
        .run(move |conn| {
            Ok(outbox::table
                .filter(outbox::id.gt(since))
                .filter(outbox::resource_type.eq(resource_type))
                .select(outbox::resource_id)
                .distinct()
                .load(conn)?)
        })
        .await?)
}

/// The next live records after `after` in id order (their ids; for documents, only the ids).
async fn next_batch(
    store: &Store,
    kind: IndexKind,
    after: Uuid,
) -> Result<(Vec<Uuid>, Vec<Stored>), ReindexError> {
    Ok(store
        .run(move |conn| match resource_type(kind) {
            Some(t) => {
                let records: Vec<Stored> = resource::table
                    .filter(resource::resource_type.eq(t))
                    .filter(resource::deleted.eq(false))
                    .filter(resource::id.gt(after))
                    .order(resource::id)
                    .limit(BATCH)
                    .select(Stored::as_select())
                    .load(conn)?;
                Ok((records.iter().map(|r| r.id).collect(), records))
            }
            None => {
                let ids: Vec<Uuid> = document::table
                    .filter(document::deleted_at.is_null())
                    .filter(document::id.gt(after))
                    .order(document::id)
                    .limit(BATCH)
                    .select(document::id)
                    .load(conn)?;
                Ok((ids, Vec::new()))
            }
        })
        .await?)
}

/// Recomputes the PostgreSQL index rows of these records from their content, in one
/// transaction. Returns (rewritten, skipped).
async fn rewrite_rows(store: &Store, records: Vec<Stored>) -> Result<(u64, u64), ReindexError> {
    let mut entries = Vec::with_capacity(records.len());
    let mut skipped = 0;
    for record in records {
        let Some(kind) = ResourceKind::from_name(&record.resource_type) else {
            skipped += 1;
            continue;
        };
        let parsed = kiorex_fhir::parse::parse_value(kind, record.content);
        let index = parsed.ok().and_then(|p| {
            let links = kiorex_fhir::extract::links(&p.resource).ok()?;
            Some(kiorex_fhir::extract::index(&p.resource, &links))
        });
        match index {
            Some(index) => entries.push(resources::RecordIndex {
                id: record.id,
                resource_type: kind.name(),
                facility_id: record.facility_id,
                index,
            }),
            None => {
                tracing::warn!(id = %record.id, resource_type = kind.name(),
                    "a stored record is no longer valid; its index rows are left as they are");
                skipped += 1;
            }
        }
    }
    let written = entries.len() as u64;
    store
        .transaction(move |conn| resources::replace_index(conn, &entries))
        .await?;
    Ok((written, skipped))
}
