//! A core with documents: buckets of its own on the test Ceph, the test clamd (or a dead
//! address), a fresh keyring, and a small upload limit.

use crate::TestApp;
use kiorex_objects::{Clamd, Keyring, ObjectStore, Objects, S3Settings, Spooler};
use std::sync::Arc;
use std::time::Duration;

/// How a test wants its document services.
pub struct DocumentSite {
    /// S3 endpoint (the shared gateway unless a test stops its own).
    pub endpoint: String,
    /// clamd `host:port`.
    pub clamd: String,
    pub max_upload_bytes: u64,
}

impl Default for DocumentSite {
    fn default() -> Self {
        DocumentSite {
            endpoint: crate::ceph().endpoint(),
            clamd: crate::clamav().address(),
            max_upload_bytes: 64 * 1024 * 1024,
        }
    }
}

/// S3 settings for a pair of new buckets on `endpoint`.
pub fn s3_settings(endpoint: &str) -> S3Settings {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
    S3Settings {
        endpoint: endpoint.to_owned(),
        region: "default".into(),
        path_style: true,
        access_key: crate::ACCESS_KEY.into(),
        secret_key: crate::SECRET_KEY.into(),
        bucket: format!("kx-{id}-docs"),
        quarantine_bucket: format!("kx-{id}-quarantine"),
    }
}

/// Starts a [`TestApp`] with documents as `site` says; its buckets are created first (on the
/// shared gateway, which stays up, so that a test may use a gateway it stops later).
pub async fn documents_on(site: DocumentSite) -> (TestApp, Objects) {
    let ceph = tokio::task::spawn_blocking(crate::ceph)
        .await
        .expect("ceph");
    let settings = s3_settings(&site.endpoint);
    let creator = ObjectStore::new(&S3Settings {
        endpoint: ceph.endpoint(),
        ..settings.clone()
    })
    .expect("object store");
    creator.create_missing_buckets().await.expect("buckets");
    let objects = Objects {
        store: ObjectStore::new(&settings).expect("object store"),
        keyring: Arc::new(Keyring::parse(&Keyring::generate_line("test-1")).expect("keyring")),
        clamd: Clamd::new(site.clamd, Duration::from_secs(10)),
        spooler: Spooler {
            dir: None,
            max_bytes: site.max_upload_bytes,
        },
        retention_days: 30,
    };
    let app = TestApp::spawn_with_documents(Some(objects.clone())).await;
    (app, objects)
}
