//! Search, behind one interface ([`PatientSearch`], [`DocumentSearch`], [`MedicineSearch`]) so
//! that sites choose the engine ([`Engine`]): PostgreSQL full text and trigram search over the
//! store's own index tables ([`postgres`], the embedded default, indexed in the same transaction
//! as every write), or Meilisearch ([`meili`], derived indexes the worker feeds from the outbox).
//!
//! The caller passes the facilities the user may see; an engine never returns a patient outside
//! them. Auditing the hit list is the caller's job (it knows who asked).

pub mod engine;
pub mod frontdesk;
pub mod medicines;
pub mod meili;
pub mod postgres;

pub use engine::Engine;
pub use frontdesk::{FrontDeskQuery, parse};
use uuid::Uuid;

/// One patient found, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub patient_id: Uuid,
    pub facility_id: Uuid,
    /// Higher is better; comparable within one result list only.
    pub score: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the search engine is unavailable: {0}")]
    Unavailable(String),
}

/// One document found by its text or title, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentHit {
    pub document_id: Uuid,
    pub patient_id: Uuid,
    pub facility_id: Uuid,
    pub title: String,
    pub category: String,
    pub score: f64,
}

/// Finds documents by the words in their text or title.
pub trait DocumentSearch: Send + Sync {
    /// Live documents of `facilities` (of `patient` when given) whose current text or title
    /// holds every word of `text`, best first, at most `limit`.
    fn find_documents(
        &self,
        text: &str,
        patient: Option<Uuid>,
        facilities: &[Uuid],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DocumentHit>, SearchError>> + Send;
}

/// Finds patients for the front desk.
pub trait PatientSearch: Send + Sync {
    /// Patients of `facilities` matching every criterion of `query`, best first, at most `limit`.
    fn find_patients(
        &self,
        query: &FrontDeskQuery,
        facilities: &[Uuid],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Hit>, SearchError>> + Send;
}

/// One formulary entry found, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct MedicineHit {
    pub medication_id: Uuid,
    pub facility_id: Uuid,
    pub name: String,
    pub ingredients: Vec<String>,
    pub form: Option<String>,
    pub score: f64,
}

/// Finds medicines of the hospital formulary (FHIR `Medication`) by name, ingredient or form.
pub trait MedicineSearch: Send + Sync {
    /// Medicines of `facilities` matching every word of `text` (by prefix or with a typo),
    /// best first, at most `limit`.
    fn find_medicines(
        &self,
        text: &str,
        facilities: &[Uuid],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<MedicineHit>, SearchError>> + Send;
}
