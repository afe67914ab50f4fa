//! What delivering an event means. Today: keeping the search indexes. The PostgreSQL engine's
//! index is written in the write's own transaction, so there is nothing left to do; Meilisearch
//! gets the record's current state (or its removal) read from PostgreSQL, so an event delivered
//! twice or late still leaves the index right.

use crate::outbox::Event;
use kiorex_search::Engine;
use kiorex_search::meili::mapping::{DocumentDoc, medicine_doc, patient_doc};
use kiorex_search::meili::{IndexKind, MeiliSearch};
use kiorex_store::{Store, documents, resources};
use std::collections::HashMap;
use uuid::Uuid;

/// Delivers a batch of events; one result per event, in the same order.
pub trait Delivery: Send + Sync + 'static {
    fn deliver(&self, events: &[Event]) -> impl Future<Output = Vec<Result<(), String>>> + Send;
}

/// Feeds the configured search engine.
#[derive(Clone)]
pub struct SearchDelivery {
    store: Store,
    engine: Engine,
}

impl SearchDelivery {
    pub fn new(store: Store, engine: Engine) -> SearchDelivery {
        SearchDelivery { store, engine }
    }
}

/// The index an event's resource lives in, if any.
pub fn index_of(resource_type: &str) -> Option<IndexKind> {
    match resource_type {
        "Patient" => Some(IndexKind::Patients),
        "DocumentReference" => Some(IndexKind::Documents),
        "Medication" => Some(IndexKind::Medicines),
        _ => None,
    }
}

impl Delivery for SearchDelivery {
    async fn deliver(&self, events: &[Event]) -> Vec<Result<(), String>> {
        let Engine::Meilisearch(meili) = &self.engine else {
            return events.iter().map(|_| Ok(())).collect();
        };
        let mut outcome: HashMap<IndexKind, Result<(), String>> = HashMap::new();
        for kind in IndexKind::ALL {
            let ids: Vec<Uuid> = events
                .iter()
                .filter(|e| index_of(&e.resource_type) == Some(kind))
                .map(|e| e.resource_id)
                .collect();
            if !ids.is_empty() {
                let result = refresh(&self.store, meili, kind, ids).await;
                outcome.insert(kind, result);
            }
        }
        events
            .iter()
            .map(|e| match index_of(&e.resource_type) {
                Some(kind) => outcome.get(&kind).cloned().unwrap_or(Ok(())),
                None => Ok(()),
            })
            .collect()
    }
}

/// Writes the current state of these records into one index: upserts the live ones, removes the
/// deleted ones.
pub async fn refresh(
    store: &Store,
    meili: &MeiliSearch,
    kind: IndexKind,
    ids: Vec<Uuid>,
) -> Result<(), String> {
    match kind {
        IndexKind::Documents => {
            let (live, gone) = store
                .run(move |conn| {
                    let mut live = Vec::new();
                    let mut gone = Vec::new();
                    for id in ids {
                        match document_doc(conn, id)? {
                            Some(doc) => live.push(doc),
                            None => gone.push(id),
                        }
                    }
                    Ok((live, gone))
                })
                .await
                .map_err(|e| e.to_string())?;
            meili.upsert(kind, &live).await.map_err(|e| e.to_string())?;
            meili.remove(kind, &gone).await.map_err(|e| e.to_string())
        }
        IndexKind::Patients | IndexKind::Medicines => {
            let wanted = ids.clone();
            let found = store
                .run(move |conn| resources::read_many(conn, &wanted))
                .await
                .map_err(|e| e.to_string())?;
            let live: Vec<&resources::Stored> = found.iter().filter(|s| !s.deleted).collect();
            let gone: Vec<Uuid> = ids
                .iter()
                .copied()
                .filter(|id| !live.iter().any(|s| s.id == *id))
                .collect();
            let result = if kind == IndexKind::Patients {
                let docs: Vec<_> = live
                    .iter()
                    .map(|s| patient_doc(s.id, s.facility_id, &s.content))
                    .collect();
                meili.upsert(kind, &docs).await
            } else {
                let docs: Vec<_> = live
                    .iter()
                    .map(|s| medicine_doc(s.id, s.facility_id, &s.content))
                    .collect();
                meili.upsert(kind, &docs).await
            };
            result.map_err(|e| e.to_string())?;
            meili.remove(kind, &gone).await.map_err(|e| e.to_string())
        }
    }
}

/// A document's search entry from its current version; `None` when it is deleted or missing.
pub fn document_doc(
    conn: &mut diesel::PgConnection,
    id: Uuid,
) -> kiorex_store::StoreResult<Option<DocumentDoc>> {
    let document = match documents::read(conn, id) {
        Ok(d) => d,
        Err(kiorex_store::StoreError::NotFound | kiorex_store::StoreError::Gone) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if document.deleted_at.is_some() {
        return Ok(None);
    }
    let version = documents::version(conn, id, document.current_version)?;
    Ok(Some(DocumentDoc {
        id: document.id,
        patient_id: document.patient_id,
        facility_id: document.facility_id,
        title: document.title,
        category: document.category,
        text: version.extracted_text.unwrap_or_default(),
    }))
}
