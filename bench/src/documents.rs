//! `kiorex-bench documents`: upload and download throughput of documents through the core
//! (multipart upload → spool → clamd scan → sealing → RGW; download → RGW → opening → client).
//! One request at a time, so each figure is the cost of one document end to end.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hdrhistogram::Histogram;
use serde_json::json;

use crate::api::{Api, Call, snippet};
use crate::cli::{DocumentsArgs, Output};

struct Measured {
    size_mb: u64,
    upload: Histogram<u64>,
    download: Histogram<u64>,
}

pub async fn run(args: DocumentsArgs) -> Result<()> {
    let api = Api::new(&args.server, 2)?;
    api.login().await?;
    let patient = api
        .fetch_json(&Call::post(
            "/fhir/Patient",
            &json!({"resourceType": "Patient", "name": [{"family": "Benchmark", "given": ["Documents"]}],
                    "gender": "unknown", "birthDate": "1970-01-01"}),
        ))
        .await
        .context("creating the synthetic patient")?;
    let patient = patient["id"].as_str().context("patient id")?.to_owned();
    let mut results = Vec::new();
    for &size_mb in &args.sizes_mb {
        results.push(measure(&api, &patient, size_mb, args.count).await?);
    }
    print(&results, args.count, args.output);
    Ok(())
}

/// A synthetic scanned document: a PDF header, then reproducible noise (incompressible, like
/// the image data of a scan).
fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = b"%PDF-1.7\n".to_vec();
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size);
    out
}

async fn measure(api: &Api, patient: &str, size_mb: u64, count: usize) -> Result<Measured> {
    let size = (size_mb * 1_000_000) as usize;
    let mut upload = Histogram::<u64>::new(3)?;
    let mut download = Histogram::<u64>::new(3)?;
    for i in 0..count {
        let bytes = payload(size, i as u64 + size_mb * 1000);
        let started = Instant::now();
        let scan = Upload {
            category: "benchmark",
            title: None,
            file_name: "scan.pdf",
        };
        let id = upload_one(api, patient, scan, bytes).await?;
        upload.record(micros(started.elapsed()))?;
        let started = Instant::now();
        let received = download_one(api, &id).await?;
        download.record(micros(started.elapsed()))?;
        ensure!(received == size, "downloaded {received} bytes of {size}");
    }
    Ok(Measured {
        size_mb,
        upload,
        download,
    })
}

fn micros(d: Duration) -> u64 {
    d.as_micros().max(1) as u64
}

/// Uploads one file to a patient's record; returns the document's id.
pub(crate) async fn upload_one(
    api: &Api,
    patient: &str,
    file: Upload<'_>,
    bytes: Vec<u8>,
) -> Result<String> {
    let mut form = reqwest::multipart::Form::new().text("category", file.category.to_owned());
    if let Some(title) = file.title {
        form = form.text("title", title.to_owned());
    }
    let form = form.part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(file.file_name.to_owned()),
    );
    let response = api
        .http()
        .post(format!(
            "{}/api/v1/patients/{patient}/documents",
            api.base()
        ))
        .bearer_auth(api.bearer().await?)
        .multipart(form)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(
        status.is_success(),
        "upload answered HTTP {status}: {} (documents need [objects] configured on the server)",
        snippet(&text)
    );
    let body: serde_json::Value = serde_json::from_str(&text)?;
    Ok(body["id"].as_str().context("document id")?.to_owned())
}

/// How an uploaded file is filed.
pub(crate) struct Upload<'a> {
    pub category: &'a str,
    pub title: Option<&'a str>,
    pub file_name: &'a str,
}

async fn download_one(api: &Api, id: &str) -> Result<usize> {
    let mut response = api
        .http()
        .get(format!("{}/api/v1/documents/{id}/content", api.base()))
        .bearer_auth(api.bearer().await?)
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "download answered HTTP {}",
        response.status()
    );
    let mut received = 0;
    while let Some(chunk) = response.chunk().await? {
        received += chunk.len();
    }
    Ok(received)
}

fn mb_per_s(size_mb: u64, micros: u64) -> f64 {
    size_mb as f64 / (micros as f64 / 1e6)
}

fn print(results: &[Measured], count: usize, output: Output) {
    match output {
        Output::Json => {
            let rows: Vec<_> = results
                .iter()
                .map(|m| {
                    json!({
                        "size_mb": m.size_mb, "count": count,
                        "upload_ms": {"p50": m.upload.value_at_quantile(0.5) as f64 / 1e3, "p95": m.upload.value_at_quantile(0.95) as f64 / 1e3},
                        "download_ms": {"p50": m.download.value_at_quantile(0.5) as f64 / 1e3, "p95": m.download.value_at_quantile(0.95) as f64 / 1e3},
                        "upload_mb_per_s_p50": mb_per_s(m.size_mb, m.upload.value_at_quantile(0.5)),
                        "download_mb_per_s_p50": mb_per_s(m.size_mb, m.download.value_at_quantile(0.5)),
                    })
                })
                .collect();
            println!("{}", json!({"documents": rows}));
        }
        Output::Text => {
            println!(
                "| size | n | upload p50 ms | upload p95 ms | upload MB/s (p50) | download p50 ms | download p95 ms | download MB/s (p50) |"
            );
            println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
            for m in results {
                let (u50, u95) = (
                    m.upload.value_at_quantile(0.5),
                    m.upload.value_at_quantile(0.95),
                );
                let (d50, d95) = (
                    m.download.value_at_quantile(0.5),
                    m.download.value_at_quantile(0.95),
                );
                println!(
                    "| {} MB | {count} | {:.0} | {:.0} | {:.1} | {:.0} | {:.0} | {:.1} |",
                    m.size_mb,
                    u50 as f64 / 1e3,
                    u95 as f64 / 1e3,
                    mb_per_s(m.size_mb, u50),
                    d50 as f64 / 1e3,
                    d95 as f64 / 1e3,
                    mb_per_s(m.size_mb, d50)
                );
            }
        }
    }
}
