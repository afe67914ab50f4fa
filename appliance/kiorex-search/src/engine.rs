//! The engine a site configured (`[search] engine`), behind the search traits.

use crate::meili::MeiliSearch;
use crate::postgres::PostgresSearch;
use crate::{
    DocumentHit, DocumentSearch, FrontDeskQuery, Hit, MedicineHit, MedicineSearch, PatientSearch,
    SearchError,
};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Clone)]
pub enum Engine {
    /// The embedded default: the store's own index tables.
    Postgres(Arc<PostgresSearch>),
    /// Derived indexes on a Meilisearch server, fed by the worker.
    Meilisearch(Arc<MeiliSearch>),
}

impl Engine {
    pub fn postgres(store: kiorex_store::Store) -> Engine {
        Engine::Postgres(Arc::new(PostgresSearch::new(store)))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Engine::Postgres(_) => "postgres",
            Engine::Meilisearch(_) => "meilisearch",
        }
    }
}

impl PatientSearch for Engine {
    async fn find_patients(
        &self,
        query: &FrontDeskQuery,
        facilities: &[Uuid],
        limit: usize,
    ) -> Result<Vec<Hit>, SearchError> {
        if query.is_empty() || facilities.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        match self {
            Engine::Postgres(pg) => pg.find_patients(query, facilities, limit).await,
            Engine::Meilisearch(m) => m.find_patients(query, facilities, limit).await,
        }
    }
}

impl DocumentSearch for Engine {
    async fn find_documents(
        &self,
        text: &str,
        patient: Option<Uuid>,
        facilities: &[Uuid],
        limit: usize,
    ) -> Result<Vec<DocumentHit>, SearchError> {
        if text.trim().is_empty() || facilities.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        match self {
            Engine::Postgres(pg) => pg.find_documents(text, patient, facilities, limit).await,
            Engine::Meilisearch(m) => m.find_documents(text, patient, facilities, limit).await,
        }
    }
}

impl MedicineSearch for Engine {
    async fn find_medicines(
        &self,
        text: &str,
        facilities: &[Uuid],
        limit: usize,
    ) -> Result<Vec<MedicineHit>, SearchError> {
        if text.trim().is_empty() || facilities.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        match self {
            Engine::Postgres(pg) => pg.find_medicines(text, facilities, limit).await,
            Engine::Meilisearch(m) => m.find_medicines(text, facilities, limit).await,
        }
    }
}
