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
    /// `scan.hold_when_unavailable`: hold uploads while clamd is down.
    pub hold_unscanned: bool,
    /// The keyring (`id:base64` lines), for a test that runs the `kiorex` binary on the same
    /// documents.
    pub keyring: String,
}

impl Default for DocumentSite {
    fn default() -> Self {
        DocumentSite {
            endpoint: crate::ceph().endpoint(),
            clamd: crate::clamav().address(),
            max_upload_bytes: 64 * 1024 * 1024,
            hold_unscanned: false,
            keyring: Keyring::generate_line("test-1"),
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
        keyring: Arc::new(Keyring::parse(&site.keyring).expect("keyring")),
        clamd: Clamd::new(site.clamd, Duration::from_secs(10)),
        spooler: Spooler {
            dir: None,
            max_bytes: site.max_upload_bytes,
        },
        retention_days: 30,
        hold_unscanned: site.hold_unscanned,
    };
    let app = TestApp::spawn_with_documents(Some(objects.clone())).await;
    (app, objects)
}

/// A small but real PDF with a text layer.
pub fn sample_pdf(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 12 Tf 72 712 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{body}\nendobj\n", i + 1).into_bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).into_bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").into_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .into_bytes(),
    );
    out
}
