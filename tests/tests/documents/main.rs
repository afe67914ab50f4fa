//! Documents against real parts: Ceph (mon, memstore OSD, RGW) and clamd started by the test
//! kit, PostgreSQL per test. Upload → scan → store → download with Range, refusals (malware,
//! spoofed type, scanner down, gateway gone), encryption at rest, access, and the orphan sweep.

mod access;
mod cli;
mod failures;
mod fhir;
mod holds;
mod lifecycle;
mod purge;
mod tls;

use kiorex_testkit::{TestApp, User};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

/// Uploads `bytes` as `file_name` for `patient` in `category`.
pub async fn upload(
    app: &TestApp,
    user: User,
    patient: &str,
    category: &str,
    file_name: &str,
    bytes: Vec<u8>,
) -> kiorex_testkit::Reply {
    let form = Form::new()
        .text("category", category.to_owned())
        .text("title", format!("{category} for tests"))
        .part("file", Part::bytes(bytes).file_name(file_name.to_owned()));
    app.send(
        app.client()
            .post(app.url(&format!("/api/v1/patients/{patient}/documents")))
            .bearer_auth(app.token(user))
            .multipart(form),
    )
    .await
}

/// Downloads content (with an optional Range header): status, headers, raw bytes.
pub async fn download(
    app: &TestApp,
    user: User,
    path: &str,
    range: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = app.client().get(app.url(path)).bearer_auth(app.token(user));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.expect("download");
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

/// A small but real PDF with a text layer.
pub fn pdf(text: &str) -> Vec<u8> {
    kiorex_testkit::sample_pdf(text)
}

/// Bytes that look random but are reproducible (an image-like payload after a PDF header).
pub fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = b"%PDF-1.7\n".to_vec();
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn count_documents(app: &TestApp) -> i64 {
    app.count("SELECT count(*) AS n FROM document_version")
}

pub fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}
