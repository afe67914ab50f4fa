//! What every handler shares.

use crate::audit::AuditSink;
use crate::auth::TokenService;
use kiorex_store::Store;
use std::sync::Arc;

/// Settings of the API, validated by the binary's configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The external base URL (`https://kiorex.hospital.local`), used in FHIR links.
    pub base_url: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Lifetime of access tokens, in seconds.
    pub token_ttl_seconds: i64,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub tokens: Arc<TokenService>,
    pub audit: AuditSink,
    pub settings: Arc<ApiSettings>,
    pub identity: Arc<crate::identity::Identity>,
    /// Documents (object store, scanner, keys); `None` when no object store is configured.
    pub documents: Option<Arc<kiorex_objects::Objects>>,
    /// The search engine the site configured (PostgreSQL by default, or Meilisearch).
    pub search: kiorex_search::Engine,
}

impl AppState {
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.settings.base_url.trim_end_matches('/'))
    }
}
