//! `load`: bulk-creates synthetic patients through FHIR transaction bundles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use kiorex_synth::Synth;
use serde_json::Value;

use crate::api::{Api, Call, snippet};
use crate::cli::LoadArgs;
use crate::report::{self, human};

const PROGRESS_EVERY: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// Failed transactions whose cause is printed (the rest are only counted).
const PRINTED_FAILURES: u64 = 5;

/// What to load, split into transactions of `batch` patients.
#[derive(Clone, Copy)]
struct Plan {
    patients: usize,
    batch: usize,
    records: usize,
    seed: u64,
}

impl Plan {
    fn batches(self) -> usize {
        self.patients.div_ceil(self.batch)
    }

    fn patients_in(self, batch: usize) -> usize {
        self.batch.min(self.patients - batch * self.batch)
    }

    fn bundle(self, batch: usize) -> Value {
        let part = batch as u64;
        Synth::for_part(self.seed, part, self.batch as u64)
            .patient_bundle(self.patients_in(batch), self.records)
    }
}

#[derive(Default)]
struct Progress {
    patients: AtomicU64,
    resources: AtomicU64,
    failed_batches: AtomicU64,
    failed_patients: AtomicU64,
}

impl Progress {
    fn done(&self, patients: usize, resources: usize) {
        self.patients.fetch_add(patients as u64, Relaxed);
        self.resources.fetch_add(resources as u64, Relaxed);
    }

    fn failed(&self, batch: usize, patients: usize, error: &anyhow::Error) {
        let previous = self.failed_batches.fetch_add(1, Relaxed);
        self.failed_patients.fetch_add(patients as u64, Relaxed);
        if previous < PRINTED_FAILURES {
            eprintln!("transaction {batch} failed ({patients} patients not loaded): {error:#}");
        }
    }
}

pub async fn run(args: LoadArgs) -> Result<()> {
    let plan = Plan {
        patients: args.patients,
        batch: args.batch,
        records: args.records,
        seed: args.seed,
    };
    let api = Arc::new(Api::new(&args.server, args.concurrency)?);
    report::print_preamble();
    println!(
        "loading {} patients with {} records each into {} ({} transactions of up to {}, {} at a time)",
        plan.patients,
        plan.records,
        api.base(),
        plan.batches(),
        plan.batch,
        args.concurrency
    );
    api.login().await?;
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let reporter = tokio::spawn(show_progress(progress.clone(), plan.patients, started));
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(api.clone(), plan, next.clone(), progress.clone())))
        .collect();
    for worker in workers {
        worker.await?;
    }
    reporter.abort();
    summarize(&progress, plan, started.elapsed())
}

async fn worker(api: Arc<Api>, plan: Plan, next: Arc<AtomicUsize>, progress: Arc<Progress>) {
    loop {
        let batch = next.fetch_add(1, Relaxed);
        if batch >= plan.batches() {
            return;
        }
        let patients = plan.patients_in(batch);
        let bundle = plan.bundle(batch);
        let entries = bundle["entry"].as_array().map_or(0, Vec::len);
        match post_with_retries(&api, &Call::post("/fhir", &bundle), entries).await {
            Ok(()) => progress.done(patients, entries - patients),
            Err(error) => progress.failed(batch, patients, &error),
        }
    }
}

/// Result of one attempt to post a transaction.
enum Attempt {
    Done,
    Retry(anyhow::Error),
    Fail(anyhow::Error),
}

async fn post_with_retries(api: &Api, call: &Call, entries: usize) -> Result<()> {
    let mut attempt = 1;
    loop {
        match post_once(api, call, entries).await {
            Attempt::Done => return Ok(()),
            Attempt::Retry(error) if attempt < ATTEMPTS => {
                eprintln!("transaction attempt {attempt} failed, retrying: {error:#}");
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
                attempt += 1;
            }
            Attempt::Retry(error) | Attempt::Fail(error) => return Err(error),
        }
    }
}

/// Network errors, 429 and 5xx are retried; other answers are final.
async fn post_once(api: &Api, call: &Call, entries: usize) -> Attempt {
    let response = match api.send(call).await {
        Ok(response) => response,
        Err(error) => return Attempt::Retry(error),
    };
    let status = response.status();
    let text = match response.text().await {
        Ok(text) => text,
        Err(error) => return Attempt::Retry(error.into()),
    };
    if status.is_success() {
        return match check_response(&text, entries) {
            Ok(()) => Attempt::Done,
            Err(error) => Attempt::Fail(error),
        };
    }
    let error = anyhow!("HTTP {status}: {}", snippet(&text));
    if status.is_server_error() || status.as_u16() == 429 {
        Attempt::Retry(error)
    } else {
        Attempt::Fail(error)
    }
}

/// The server must answer with a transaction-response holding one entry per
/// resource sent.
fn check_response(text: &str, entries: usize) -> Result<()> {
    let answer: Value = serde_json::from_str(text)?;
    if answer["type"] != "transaction-response" {
        bail!(
            "answer is not a transaction-response Bundle: {}",
            snippet(text)
        );
    }
    let answered = answer["entry"].as_array().map_or(0, Vec::len);
    if answered != entries {
        bail!("sent {entries} entries but the answer has {answered}");
    }
    Ok(())
}

async fn show_progress(progress: Arc<Progress>, total: usize, started: Instant) {
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    ticks.tick().await; // the first tick is immediate
    loop {
        ticks.tick().await;
        let elapsed = started.elapsed();
        let done = progress.patients.load(Relaxed);
        let failed = progress.failed_patients.load(Relaxed);
        let rate = done as f64 / elapsed.as_secs_f64();
        let remaining = total as u64 - (done + failed).min(total as u64);
        let eta = if rate > 0.0 {
            human(Duration::from_secs_f64(remaining as f64 / rate))
        } else {
            "unknown".into()
        };
        eprintln!(
            "[{:>7}] {done}/{total} patients ({:.1}%), {rate:.0} patients/s, \
             {:.0} resources/s, {failed} failed, about {eta} left",
            human(elapsed),
            100.0 * done as f64 / total as f64,
            resources_per_second(&progress, elapsed),
        );
    }
}

/// Patients and clinical resources together.
fn resources_per_second(progress: &Progress, elapsed: Duration) -> f64 {
    let all = progress.patients.load(Relaxed) + progress.resources.load(Relaxed);
    all as f64 / elapsed.as_secs_f64()
}

fn summarize(progress: &Progress, plan: Plan, elapsed: Duration) -> Result<()> {
    let patients = progress.patients.load(Relaxed);
    let records = progress.resources.load(Relaxed);
    println!(
        "loaded {patients} patients and {records} clinical records in {} \
         ({:.1} patients/s, {:.1} resources/s)",
        human(elapsed),
        patients as f64 / elapsed.as_secs_f64(),
        resources_per_second(progress, elapsed),
    );
    let failed = progress.failed_batches.load(Relaxed);
    if failed > 0 {
        bail!(
            "{failed} of {} transactions failed; {} patients were not loaded",
            plan.batches(),
            progress.failed_patients.load(Relaxed)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(patients: usize, batch: usize) -> Plan {
        Plan {
            patients,
            batch,
            records: 2,
            seed: 1,
        }
    }

    #[test]
    fn batches_cover_all_patients() {
        let plan = plan(250, 100);
        assert_eq!(plan.batches(), 3);
        let sizes: Vec<_> = (0..3).map(|b| plan.patients_in(b)).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(self::plan(100_000, 100).batches(), 1000);
    }

    #[test]
    fn bundles_are_deterministic_and_sized() {
        let plan = plan(150, 100);
        let last = plan.bundle(1);
        assert_eq!(last["entry"].as_array().unwrap().len(), 50 * 3);
        assert_eq!(last, plan.bundle(1));
        assert_ne!(plan.bundle(0), last);
    }

    #[test]
    fn transaction_answers_are_checked() {
        let ok = r#"{"resourceType":"Bundle","type":"transaction-response","entry":[{},{}]}"#;
        assert!(check_response(ok, 2).is_ok());
        assert!(check_response(ok, 3).is_err());
        assert!(check_response(r#"{"resourceType":"OperationOutcome"}"#, 2).is_err());
        assert!(check_response("not json", 2).is_err());
    }
}
