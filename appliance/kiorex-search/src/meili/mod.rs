//! The Meilisearch engine (meilisearch-sdk, the official client): three derived indexes,
//! `<prefix>_patients`, `<prefix>_documents`, `<prefix>_medicines`, fed by the worker from the
//! outbox and rebuilt from PostgreSQL by `kiorex reindex` (new index, fill, swap, delete the old).
//! What goes in and what a query becomes is decided in [`mapping`]; this module only talks to
//! the server.

pub mod mapping;

use crate::{DocumentHit, FrontDeskQuery, Hit, MedicineHit, SearchError};
use mapping::{DocumentDoc, IndexSettings, MedicineDoc, MeiliQuery, PatientDoc};
use meilisearch_sdk::client::{Client, SwapIndexes};
use meilisearch_sdk::search::MatchingStrategies;
use meilisearch_sdk::settings::Settings;
use meilisearch_sdk::task_info::TaskInfo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use uuid::Uuid;

/// How long an indexing task may take before delivery counts as failed (and is retried). Kept
/// well under the worker's lease (60 s by default): a delivery that outlived its lease could
/// write a record's older state after another worker wrote the newer one.
const TASK_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a task's state is asked while waiting; indexing one patient takes milliseconds.
const TASK_POLL: Duration = Duration::from_millis(10);

/// One of the three indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexKind {
    Patients,
    Documents,
    Medicines,
}

impl IndexKind {
    pub const ALL: [IndexKind; 3] = [
        IndexKind::Patients,
        IndexKind::Documents,
        IndexKind::Medicines,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Patients => "patients",
            IndexKind::Documents => "documents",
            IndexKind::Medicines => "medicines",
        }
    }

    fn settings(self) -> &'static IndexSettings {
        match self {
            IndexKind::Patients => &mapping::PATIENT_SETTINGS,
            IndexKind::Documents => &mapping::DOCUMENT_SETTINGS,
            IndexKind::Medicines => &mapping::MEDICINE_SETTINGS,
        }
    }
}

/// Where the server is and how the indexes are named.
#[derive(Debug, Clone)]
pub struct MeiliSettings {
    pub url: String,
    pub api_key: Option<String>,
    /// Prefix of the index names, so that several appliances (or tests) can share a server.
    pub index_prefix: String,
}

#[derive(Clone)]
pub struct MeiliSearch {
    client: Client,
    prefix: String,
}

fn unavailable(e: impl std::fmt::Display) -> SearchError {
    SearchError::Unavailable(format!("Meilisearch: {e}"))
}

impl MeiliSearch {
    pub fn new(settings: &MeiliSettings) -> Result<MeiliSearch, SearchError> {
        let client = Client::new(
            settings.url.trim_end_matches('/'),
            settings.api_key.as_deref(),
        )
        .map_err(unavailable)?;
        Ok(MeiliSearch {
            client,
            prefix: settings.index_prefix.clone(),
        })
    }

    /// The live index's name.
    pub fn uid(&self, kind: IndexKind) -> String {
        format!("{}_{}", self.prefix, kind.name())
    }

    /// Whether the server answers (readiness, `configtest`).
    pub async fn check(&self) -> Result<(), SearchError> {
        self.client.health().await.map(|_| ()).map_err(unavailable)
    }

    /// Creates the index if it is missing and applies its settings (idempotent).
    pub async fn prepare(&self, kind: IndexKind) -> Result<(), SearchError> {
        self.prepare_uid(&self.uid(kind), kind).await
    }

    async fn prepare_uid(&self, uid: &str, kind: IndexKind) -> Result<(), SearchError> {
        if self.client.get_index(uid).await.is_err() {
            let task = self
                .client
                .create_index(uid, Some("id"))
                .await
                .map_err(unavailable)?;
            // "index already exists" from a concurrent worker is fine.
            let _ = self.wait(task).await;
        }
        let settings = kind.settings();
        let settings = Settings::new()
            .with_searchable_attributes(settings.searchable)
            .with_filterable_attributes(settings.filterable);
        let task = self
            .client
            .index(uid)
            .set_settings(&settings)
            .await
            .map_err(unavailable)?;
        self.wait(task).await
    }

    /// Waits until Meilisearch has applied a task: delivery is only done once the change is
    /// searchable.
    async fn wait(&self, task: TaskInfo) -> Result<(), SearchError> {
        let task = task
            .wait_for_completion(&self.client, Some(TASK_POLL), Some(TASK_TIMEOUT))
            .await
            .map_err(unavailable)?;
        if task.is_failure() {
            return Err(unavailable(task.unwrap_failure()));
        }
        Ok(())
    }

    /// Adds or replaces documents in the live index and waits until they are searchable.
    pub async fn upsert<T: Serialize + Send + Sync>(
        &self,
        kind: IndexKind,
        docs: &[T],
    ) -> Result<(), SearchError> {
        self.upsert_into(&self.uid(kind), docs).await
    }

    async fn upsert_into<T: Serialize + Send + Sync>(
        &self,
        uid: &str,
        docs: &[T],
    ) -> Result<(), SearchError> {
        if docs.is_empty() {
            return Ok(());
        }
        let task = self
            .client
            .index(uid)
            .add_or_replace(docs, Some("id"))
            .await
            .map_err(unavailable)?;
        self.wait(task).await
    }

    /// Removes documents (deleted records) from the live index.
    pub async fn remove(&self, kind: IndexKind, ids: &[Uuid]) -> Result<(), SearchError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let task = self
            .client
            .index(self.uid(kind))
            .delete_documents(&ids)
            .await
            .map_err(unavailable)?;
        self.wait(task).await
    }

    /// Starts a rebuild: an empty new index beside the live one.
    pub async fn begin_rebuild(&self, kind: IndexKind) -> Result<Rebuild, SearchError> {
        let live = self.uid(kind);
        let next = format!("{live}_rebuild_{}", Uuid::new_v4().simple());
        // The swap needs both indexes to exist.
        self.prepare_uid(&live, kind).await?;
        self.prepare_uid(&next, kind).await?;
        Ok(Rebuild { kind, live, next })
    }

    /// Adds a batch of documents to the index being rebuilt.
    pub async fn rebuild_batch<T: Serialize + Send + Sync>(
        &self,
        rebuild: &Rebuild,
        docs: &[T],
    ) -> Result<(), SearchError> {
        self.upsert_into(&rebuild.next, docs).await
    }

    /// Swaps the rebuilt index in (searches never see a half-filled index) and deletes the old.
    pub async fn finish_rebuild(&self, rebuild: Rebuild) -> Result<(), SearchError> {
        let swap = SwapIndexes {
            indexes: (rebuild.live.clone(), rebuild.next.clone()),
            rename: None,
        };
        let task = self
            .client
            .swap_indexes([&swap])
            .await
            .map_err(unavailable)?;
        self.wait(task).await?;
        let task = self
            .client
            .delete_index(&rebuild.next)
            .await
            .map_err(unavailable)?;
        self.wait(task).await
    }

    async fn search<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        kind: IndexKind,
        query: &MeiliQuery,
        limit: usize,
    ) -> Result<Vec<(T, f64)>, SearchError> {
        let index = self.client.index(self.uid(kind));
        let results = index
            .search()
            .with_query(&query.q)
            .with_filter(&query.filter)
            .with_limit(limit)
            .with_matching_strategy(MatchingStrategies::ALL)
            .with_show_ranking_score(true)
            .execute::<T>()
            .await
            .map_err(unavailable)?;
        Ok(results
            .hits
            .into_iter()
            .map(|h| (h.result, h.ranking_score.unwrap_or(0.0)))
            .collect())
    }

    pub(crate) async fn find_patients(
        &self,
        query: &FrontDeskQuery,
        facilities: &[Uuid],
        limit: usize,
    ) -> Result<Vec<Hit>, SearchError> {
        let meili = mapping::patient_query(query, facilities);
        let found: Vec<(PatientDoc, f64)> = self.search(IndexKind::Patients, &meili, limit).await?;
        Ok(found
            .into_iter()
            .map(|(doc, score)| Hit {
                patient_id: doc.id,
                facility_id: doc.facility_id,
                score,
            })
            .collect())
    }

    pub(crate) async fn find_documents(
        &self,
        text: &str,
        patient: Option<Uuid>,
        facilities: &[Uuid],
        limit: usize,
    ) -> Result<Vec<DocumentHit>, SearchError> {
        let meili = mapping::document_query(text, patient, facilities);
        let found: Vec<(DocumentDoc, f64)> =
            self.search(IndexKind::Documents, &meili, limit).await?;
        Ok(found
            .into_iter()
            .map(|(doc, score)| DocumentHit {
                document_id: doc.id,
                patient_id: doc.patient_id,
                facility_id: doc.facility_id,
                title: doc.title,
                category: doc.category,
                score,
            })
            .collect())
    }

    pub(crate) async fn find_medicines(
        &self,
        text: &str,
        facilities: &[Uuid],
        limit: usize,
    ) -> Result<Vec<MedicineHit>, SearchError> {
        let meili = mapping::medicine_query(text, facilities);
        let found: Vec<(MedicineDoc, f64)> =
            self.search(IndexKind::Medicines, &meili, limit).await?;
        Ok(found
            .into_iter()
            .map(|(doc, score)| MedicineHit {
                medication_id: doc.id,
                facility_id: doc.facility_id,
                name: doc.name,
                ingredients: doc.ingredients,
                form: doc.form,
                score,
            })
            .collect())
    }
}

/// A rebuild under way: the live index keeps answering until [`MeiliSearch::finish_rebuild`].
pub struct Rebuild {
    pub kind: IndexKind,
    live: String,
    next: String,
}
