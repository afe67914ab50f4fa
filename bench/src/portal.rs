//! `kiorex-bench portal`: server time of the staff portal's two hot pages.
//!
//! 1. The chart of a patient with five years of history: the tool creates one patient with
//!    `--encounters` encounters, `--observations` vital signs spread over five years and tied to
//!    them, and `--documents` small PDFs, then requests `GET /patients/{id}` (the whole page,
//!    every record read, permission-checked and audited) `--renders` times, one at a time.
//! 2. Search as you type: the search box's request (`GET /patients/search?q=`) for every
//!    keystroke of typing a patient's name, from the second letter on, `--rounds` times.
//!
//! Requests go with a portal session (cookie), as the browser sends them; each figure is the
//! time from sending the request to the last byte of the answer over loopback.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use chrono::{Duration as Days, TimeZone, Utc};
use hdrhistogram::Histogram;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::api::{Api, Call};
use crate::cli::{Output, PortalArgs};
use crate::documents::{Upload, upload_one};

/// Vital signs in turn: LOINC, display, UCUM unit, a typical value and its spread.
const VITALS: [(&str, &str, &str, f64, f64); 7] = [
    ("8867-4", "Heart rate", "/min", 76.0, 18.0),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 128.0, 22.0),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 80.0, 12.0),
    ("8310-5", "Body temperature", "Cel", 36.9, 0.9),
    ("9279-1", "Respiratory rate", "/min", 16.0, 5.0),
    ("59408-5", "Oxygen saturation", "%", 97.0, 3.0),
    ("29463-7", "Body weight", "kg", 72.0, 4.0),
];

pub async fn run(args: PortalArgs) -> Result<()> {
    let api = Api::new(&args.server, 2)?;
    api.login().await?;
    // Letters only: a word with a digit in the search box is read as an MRN, not a name.
    let family = format!("Chartbench{}", letters(args.seed));
    let patient = match &args.patient {
        Some(id) => id.clone(),
        None => make_history(&api, &args, &family).await?,
    };
    let cookie = portal_session(&api, &args).await?;
    let chart_path = format!("/patients/{patient}");
    let mut chart = Histogram::<u64>::new(3)?;
    let mut bytes = 0;
    for i in 0..(args.renders + 5) {
        let started = Instant::now();
        bytes = get(&api, &cookie, &chart_path).await?;
        if i >= 5 {
            // The first few warm the caches and are not counted.
            chart.record(micros(started))?;
        }
    }
    let typed = format!("{family} Portal").to_lowercase();
    let mut search = Histogram::<u64>::new(3)?;
    let mut keystrokes: Vec<(String, Vec<u64>)> = (2..=typed.chars().count())
        .map(|end| (typed.chars().take(end).collect(), Vec::new()))
        .collect();
    for _ in 0..args.rounds {
        for (q, times) in &mut keystrokes {
            let path = format!("/patients/search?q={}", q.replace(' ', "+"));
            let started = Instant::now();
            get(&api, &cookie, &path).await?;
            search.record(micros(started))?;
            times.push(micros(started));
        }
    }
    let slowest = slowest_keystrokes(keystrokes);
    // The diagnosis picker, typed the same way.
    let diagnosis = "type 2 diabetes without";
    let mut picker = Histogram::<u64>::new(3)?;
    for _ in 0..args.rounds {
        for end in 2..=diagnosis.len() {
            let path = format!(
                "/terminology/icd-10-cm?q={}",
                diagnosis[..end].replace(' ', "+")
            );
            let started = Instant::now();
            get(&api, &cookie, &path).await?;
            picker.record(micros(started))?;
        }
    }
    report(&args, &chart, bytes, (&search, &slowest), &typed, &picker);
    Ok(())
}

/// The three keystrokes (what was in the box) with the slowest median answer, in ms: where a
/// search tail comes from.
fn slowest_keystrokes(keystrokes: Vec<(String, Vec<u64>)>) -> Vec<(String, f64)> {
    let mut medians: Vec<(String, f64)> = keystrokes
        .into_iter()
        .map(|(q, mut times)| {
            times.sort_unstable();
            let median = times.get(times.len() / 2).copied().unwrap_or(0);
            (q, median as f64 / 1e3)
        })
        .collect();
    medians.sort_by(|a, b| b.1.total_cmp(&a.1));
    medians.truncate(3);
    medians
}

/// What the measured chart holds: what the tool created, or a patient given with `--patient`
/// (whose history the tool does not know).
fn history(args: &PortalArgs) -> String {
    match &args.patient {
        Some(id) => format!("patient {id}, history as given"),
        None => format!(
            "{} encounters, {} observations, {} documents",
            args.encounters, args.observations, args.documents
        ),
    }
}

/// 1 → "a", 2 → "b", 27 → "aa": a seed as a name suffix.
fn letters(mut n: u64) -> String {
    let mut out = Vec::new();
    while n > 0 {
        n -= 1;
        out.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn micros(started: Instant) -> u64 {
    started.elapsed().as_micros().max(1) as u64
}

/// A GET with the portal session; returns the size of the page.
async fn get(api: &Api, cookie: &str, path: &str) -> Result<usize> {
    let response = api
        .http()
        .get(format!("{}{path}", api.base()))
        .header(COOKIE, cookie)
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    ensure!(status.is_success(), "{path} answered HTTP {status}");
    Ok(body.len())
}

/// Signs in as the portal does and keeps the session cookie.
async fn portal_session(api: &Api, args: &PortalArgs) -> Result<String> {
    let response = api
        .http()
        .post(format!("{}/api/v1/auth/login", api.base()))
        .json(&json!({"username": args.server.user, "password": args.server.password}))
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "portal sign-in answered HTTP {}",
        response.status()
    );
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?;
    Ok(cookie.to_owned())
}

/// The patient and five years of history; returns the patient's id.
async fn make_history(api: &Api, args: &PortalArgs, family: &str) -> Result<String> {
    let patient = api
        .fetch_json(&Call::post(
            "/fhir/Patient",
            &json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Portal"]}],
                    "gender": "female", "birthDate": "1958-06-14"}),
        ))
        .await
        .context("creating the patient")?;
    let patient = patient["id"].as_str().context("patient id")?.to_owned();
    let start = Utc.with_ymd_and_hms(2021, 11, 1, 8, 0, 0).unwrap();
    let step = Days::minutes(5 * 365 * 24 * 60 / args.encounters.max(1) as i64);
    let encounters: Vec<Value> = (0..args.encounters)
        .map(|i| {
            let begins = start + step * i as i32;
            json!({"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                "subject": {"reference": format!("Patient/{patient}")},
                "period": {"start": begins.to_rfc3339(), "end": (begins + Days::hours(1)).to_rfc3339()}})
        })
        .collect();
    let mut encounter_ids = Vec::new();
    for chunk in encounters.chunks(100) {
        encounter_ids.extend(transaction(api, "Encounter", chunk).await?);
    }
    let per_encounter = args.observations.div_ceil(encounter_ids.len().max(1));
    let observations: Vec<Value> = (0..args.observations)
        .map(|i| {
            let (loinc, display, unit, typical, spread) = VITALS[i % VITALS.len()];
            let encounter_index = (i / per_encounter).min(encounter_ids.len().saturating_sub(1));
            let at = start + step * encounter_index as i32 + Days::minutes((i % per_encounter) as i64);
            // A deterministic wobble around the typical value, now and then outside the range.
            let wobble = ((i * 7919) % 200) as f64 / 100.0 - 1.0;
            let value = ((typical + wobble * spread) * 10.0).round() / 10.0;
            let mut o = json!({"resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": display}]},
                "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": at.to_rfc3339(),
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}});
            if let Some(e) = encounter_ids.get(encounter_index) {
                o["encounter"] = json!({"reference": format!("Encounter/{e}")});
            }
            o
        })
        .collect();
    for chunk in observations.chunks(200) {
        transaction(api, "Observation", chunk).await?;
    }
    for i in 0..args.documents {
        upload(api, &patient, i).await?;
    }
    eprintln!(
        "patient {patient}: {} encounters, {} observations, {} documents",
        encounter_ids.len(),
        args.observations,
        args.documents
    );
    Ok(patient)
}

/// Creates `resources` in one transaction Bundle; returns their ids in order.
async fn transaction(api: &Api, kind: &str, resources: &[Value]) -> Result<Vec<String>> {
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| json!({"resource": r, "request": {"method": "POST", "url": kind}}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let answer = api.fetch_json(&Call::post("/fhir", &bundle)).await?;
    answer["entry"]
        .as_array()
        .context("transaction-response without entries")?
        .iter()
        .map(|e| {
            let location = e["response"]["location"].as_str().context("location")?;
            location
                .split('/')
                .nth(1)
                .map(str::to_owned)
                .context("id in location")
        })
        .collect()
}

/// One small PDF, as a referral letter would be.
async fn upload(api: &Api, patient: &str, i: usize) -> Result<()> {
    let pdf = format!("%PDF-1.4\n% referral letter {i}\n").into_bytes();
    let title = format!("Referral letter {i}");
    let letter = Upload {
        category: "correspondence",
        title: Some(&title),
        file_name: "letter.pdf",
    };
    upload_one(api, patient, letter, pdf)
        .await
        .context("use --documents 0 on a server without documents")?;
    Ok(())
}

fn report(
    args: &PortalArgs,
    chart: &Histogram<u64>,
    bytes: usize,
    (search, slowest): (&Histogram<u64>, &[(String, f64)]),
    typed: &str,
    picker: &Histogram<u64>,
) {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    match args.output {
        Output::Json => println!(
            "{}",
            json!({
                "chart": {"history": history(args),
                          "requests": chart.len(), "page_bytes": bytes,
                          "p50_ms": ms(chart, 0.5), "p95_ms": ms(chart, 0.95), "p99_ms": ms(chart, 0.99), "target_p95_ms": 50},
                "search_as_you_type": {"typed": typed, "requests": search.len(),
                          "slowest_keystrokes_median_ms": slowest,
                          "p50_ms": ms(search, 0.5), "p95_ms": ms(search, 0.95), "p99_ms": ms(search, 0.99), "target_p95_ms": 30},
                "icd10_picker": {"requests": picker.len(),
                          "p50_ms": ms(picker, 0.5), "p95_ms": ms(picker, 0.95), "p99_ms": ms(picker, 0.99)}
            })
        ),
        Output::Text => {
            println!("| page | requests | p50 ms | p95 ms | p99 ms | target p95 | met? |");
            println!("|---|---:|---:|---:|---:|---|---|");
            let met = |h: &Histogram<u64>, target: f64| {
                if ms(h, 0.95) < target {
                    "yes"
                } else {
                    "**no**"
                }
            };
            println!(
                "| chart ({}; {} kB) | {} | {:.1} | {:.1} | {:.1} | < 50 ms | {} |",
                history(args),
                bytes / 1000,
                chart.len(),
                ms(chart, 0.5),
                ms(chart, 0.95),
                ms(chart, 0.99),
                met(chart, 50.0)
            );
            println!(
                "| search as you type (\"{typed}\", one request per keystroke) | {} | {:.1} | {:.1} | {:.1} | < 30 ms | {} |",
                search.len(),
                ms(search, 0.5),
                ms(search, 0.95),
                ms(search, 0.99),
                met(search, 30.0)
            );
            let slow: Vec<String> = slowest
                .iter()
                .map(|(q, ms)| format!("\"{q}\" {ms:.1} ms"))
                .collect();
            println!(
                "| … slowest keystrokes (median of each): {} | | | | | | |",
                slow.join(", ")
            );
            println!(
                "| ICD-10-CM picker (\"type 2 diabetes without\", one request per keystroke) | {} | {:.1} | {:.1} | {:.1} | — | — |",
                picker.len(),
                ms(picker, 0.5),
                ms(picker, 0.95),
                ms(picker, 0.99)
            );
        }
    }
}
