//! `kiorex objects purge`: documents deleted longer ago than `objects.retention_days` lose every
//! object version in the object store, then their rows become a tombstone with an audit entry
//! (who purged which document when; never its content). A dry run (the default) only reports.
//! Objects go first and the row is marked after, so a crash leaves a deleted row whose objects
//! are gone, which the next run finishes; rerunning is always safe.

use chrono::{DateTime, Duration, Utc};
use kiorex_objects::{Objects, Shelf};
use kiorex_store::audit::{AuditRecord, append};
use kiorex_store::document_purge::{self as purge_rows, Due};
use serde::Serialize;
use uuid::Uuid;

/// One document the purge removed (or, in a dry run, would remove).
#[derive(Debug, Serialize)]
pub struct PurgedDocument {
    pub document: Uuid,
    pub facility: Uuid,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Versions the rows name.
    pub versions: usize,
    /// Object versions and delete markers removed from the object store (0 in a dry run).
    pub object_versions_removed: usize,
}

/// What a purge did.
#[derive(Debug, Serialize)]
pub struct Purge {
    pub dry_run: bool,
    pub retention_days: u32,
    /// Documents deleted at or before this time were due.
    pub cutoff: DateTime<Utc>,
    pub documents: Vec<PurgedDocument>,
    pub object_versions_removed: usize,
}

/// Purges (or with `dry_run`, lists) the documents deleted before `now - retention_days`.
/// `actor` names who runs it in the audit log; `progress` sees each document as it is done,
/// with its position and the total.
pub async fn purge(
    store: &kiorex_store::Store,
    objects: &Objects,
    actor: &str,
    now: DateTime<Utc>,
    dry_run: bool,
    mut progress: impl FnMut(usize, usize, &PurgedDocument),
) -> Result<Purge, String> {
    let retention_days = objects.retention_days;
    let cutoff = now - Duration::days(i64::from(retention_days));
    let due = store
        .run(move |conn| purge_rows::due(conn, cutoff))
        .await
        .map_err(|e| format!("reading deleted documents: {e}"))?;
    let total = due.len();
    let mut documents = Vec::with_capacity(total);
    for (n, item) in due.into_iter().enumerate() {
        let done = if dry_run {
            summary(&item, 0)
        } else {
            purge_one(store, objects, actor, item).await?
        };
        progress(n + 1, total, &done);
        documents.push(done);
    }
    Ok(Purge {
        dry_run,
        retention_days,
        cutoff,
        object_versions_removed: documents.iter().map(|d| d.object_versions_removed).sum(),
        documents,
    })
}

fn summary(item: &Due, removed: usize) -> PurgedDocument {
    PurgedDocument {
        document: item.document.id,
        facility: item.document.facility_id,
        deleted_at: item.document.deleted_at,
        versions: item.object_keys.len(),
        object_versions_removed: removed,
    }
}

/// Removes every version of every object of one document, then marks it purged with its audit
/// entry in one transaction.
async fn purge_one(
    store: &kiorex_store::Store,
    objects: &Objects,
    actor: &str,
    item: Due,
) -> Result<PurgedDocument, String> {
    let id = item.document.id;
    // Read again just before anything is removed: only a document still deleted and not purged
    // by a concurrent run loses its objects.
    let now = store
        .run(move |conn| kiorex_store::documents::read(conn, id))
        .await
        .map_err(|e| format!("document {id}: {e}"))?;
    if now.deleted_at.is_none() {
        return Err(format!(
            "document {id} is no longer deleted; it was left alone"
        ));
    }
    let mut removed = 0;
    for key in &item.object_keys {
        let versions = objects
            .store
            .versions(Shelf::Documents, key)
            .await
            .map_err(|e| format!("document {id}: listing the versions of {key}: {e}"))?;
        // The prefix also matches longer keys; only this key's versions go.
        for version in versions.iter().filter(|v| &v.key == key) {
            objects
                .store
                .delete_version(Shelf::Documents, key, &version.version_id)
                .await
                .map_err(|e| format!("document {id}: removing a version of {key}: {e}"))?;
            removed += 1;
        }
    }
    let done = summary(&item, removed);
    let entry = AuditRecord {
        recorded_at: Utc::now(),
        actor: actor.to_owned(),
        action: "document.purge".into(),
        outcome: "success".into(),
        resource_type: "DocumentReference".into(),
        resource_id: id.to_string(),
        patient_id: item.document.patient_id.to_string(),
        facility_id: item.document.facility_id.to_string(),
        request_id: "cli".into(),
        detail: format!(
            "retention over (deleted {}); {} versions, {removed} object versions removed; rows kept as a tombstone",
            item.document
                .deleted_at
                .map(|d| d.to_rfc3339())
                .unwrap_or_default(),
            item.object_keys.len()
        ),
    };
    let by = actor.to_owned();
    store
        .transaction(move |conn| {
            if purge_rows::mark_purged(conn, id, Utc::now(), &by)? {
                append(conn, &[entry])?;
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("document {id}: marking it purged: {e}"))?;
    Ok(done)
}
