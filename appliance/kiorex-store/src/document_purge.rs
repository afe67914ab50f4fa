//! The purge of soft-deleted documents once the retention period is over. The caller removes
//! every object version first and marks the document purged after, so a crash in between
//! leaves a deleted row whose objects are gone (the next purge marks it), never a live row
//! without its object. A purged document stays as a tombstone: ids, category, dates, sizes and
//! checksums, who purged it and when; its title, file names, extracted text and wrapped data
//! keys are emptied (without the key, no copy of an object that survived anywhere opens).

use crate::documents::{self, Document, document, document_version};
use crate::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

/// A deleted document whose retention is over, and the objects its versions name.
#[derive(Debug, Clone)]
pub struct Due {
    pub document: Document,
    pub object_keys: Vec<String>,
}

/// Documents deleted at or before `cutoff` and not purged yet, oldest deletion first.
pub fn due(conn: &mut PgConnection, cutoff: DateTime<Utc>) -> StoreResult<Vec<Due>> {
    let docs: Vec<Document> = document::table
        .filter(document::deleted_at.le(cutoff))
        .filter(document::purged_at.is_null())
        .order(document::deleted_at.asc())
        .select(Document::as_select())
        .load(conn)?;
    let ids: Vec<Uuid> = docs.iter().map(|d| d.id).collect();
    let keys: Vec<(Uuid, String)> = document_version::table
        .filter(document_version::document_id.eq_any(&ids))
        .order((
            document_version::document_id,
            document_version::version.asc(),
        ))
        .select((document_version::document_id, document_version::object_key))
        .load(conn)?;
    Ok(docs
        .into_iter()
        .map(|document| {
            let object_keys = keys
                .iter()
                .filter(|(id, _)| *id == document.id)
                .map(|(_, key)| key.clone())
                .collect();
            Due {
                document,
                object_keys,
            }
        })
        .collect())
}

/// Marks a deleted document purged, empties what it said, and queues `document.purge` (so that
/// derived indexes drop it for good). `false` when it was purged already (a concurrent run).
pub fn mark_purged(
    conn: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
    by: &str,
) -> StoreResult<bool> {
    let locked = documents::lock(conn, id)?;
    if locked.deleted_at.is_none() {
        return Err(StoreError::Conflict(format!(
            "document {id} is not deleted; only deleted documents are purged"
        )));
    }
    let changed = diesel::update(
        document::table
            .find(id)
            .filter(document::purged_at.is_null()),
    )
    .set((
        document::purged_at.eq(Some(at)),
        document::purged_by.eq(Some(by)),
        document::title.eq(""),
    ))
    .execute(conn)?;
    if changed == 0 {
        return Ok(false);
    }
    diesel::update(document_version::table.filter(document_version::document_id.eq(id)))
        .set((
            document_version::file_name.eq(""),
            document_version::extracted_text.eq(None::<String>),
            document_version::wrapped_key.eq(Vec::<u8>::new()),
        ))
        .execute(conn)?;
    documents::enqueue(conn, &locked, "document.purge")?;
    Ok(true)
}
