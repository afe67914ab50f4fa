//! `run`: measures throughput and latency of FHIR scenarios.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hdrhistogram::Histogram;
use kiorex_synth::Synth;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::Value;

use crate::api::{Api, Call, snippet};
use crate::cli::{RunArgs, Scenario};
use crate::report::{self, Report, Row};

/// Error answers printed to stderr (all are counted).
const PRINTED_ERRORS: u64 = 5;
/// Fewer existing patients than this and some are created first.
const MIN_POOL: usize = 100;
const PAGE_SIZE: usize = 100;
/// Highest latency the histograms keep exactly, in microseconds.
const MAX_LATENCY_US: u64 = 600_000_000;
/// Keeps the run's synthetic data apart from `load`'s with the same seed.
const RUN_SALT: u64 = 0x6b69_6f72_6578_7275;
/// Patients one worker may create without national-id overlap.
const PATIENTS_PER_WORKER: u64 = 1_000_000;

/// Shared by all workers of a run.
struct Shared {
    api: Api,
    pool: Vec<String>,
    seed: u64,
    /// Hands every worker its own slice of synthetic data.
    next_part: AtomicU64,
    errors_printed: AtomicU64,
}

/// Counts and latencies of one or more workers.
pub struct Tally {
    pub requests: u64,
    pub errors: u64,
    /// Latency of successful requests, in microseconds.
    pub latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            requests: 0,
            errors: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds"),
        }
    }

    fn merge(&mut self, other: &Tally) -> Result<()> {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency
            .add(&other.latency)
            .map_err(|error| anyhow::anyhow!("cannot merge histograms: {error:?}"))
    }
}

pub async fn run(args: RunArgs) -> Result<()> {
    ensure!(
        !args.duration.is_zero(),
        "--duration must be longer than 0s"
    );
    let scenarios = args.scenario.scenarios();
    let api = Api::new(&args.server, args.concurrency)?;
    api.login().await?;
    let mut synth = Synth::for_part(args.seed ^ RUN_SALT, 0, PATIENTS_PER_WORKER);
    let pool = if scenarios.iter().any(|s| s.needs_pool()) {
        patient_pool(&api, args.pool, &mut synth).await?
    } else {
        Vec::new()
    };
    let shared = Arc::new(Shared {
        api,
        pool,
        seed: args.seed,
        next_part: AtomicU64::new(1),
        errors_printed: AtomicU64::new(0),
    });
    if !args.warmup.is_zero() {
        eprintln!("warming up for {}", report::human(args.warmup));
        measure(&shared, &scenarios, args.concurrency, args.warmup).await?;
    }
    let mut rows = Vec::new();
    for scenario in scenarios {
        eprintln!("measuring {scenario} for {}", report::human(args.duration));
        let (tally, elapsed) =
            measure(&shared, &[scenario], args.concurrency, args.duration).await?;
        rows.push(Row::new(scenario.name(), &tally, elapsed));
    }
    let report = Report::new(&args, shared.api.base(), shared.pool.len(), rows);
    report.print(args.output);
    Ok(())
}

/// Ids of existing patients (paging through `GET /fhir/Patient`), topped up
/// with new ones if the server has fewer than [`MIN_POOL`].
async fn patient_pool(api: &Api, wanted: usize, synth: &mut Synth) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut next = Some(Call::get("/fhir/Patient").query("_count", PAGE_SIZE.to_string()));
    while let Some(call) = next.take() {
        let page = api.fetch_json(&call).await.context("listing patients")?;
        let before = ids.len();
        ids.extend(patient_ids(&page));
        if ids.len() < wanted && ids.len() > before {
            next = next_page(&page);
        }
    }
    ids.truncate(wanted);
    while ids.len() < MIN_POOL.min(wanted) {
        let created = api
            .fetch_json(&Call::post("/fhir/Patient", &synth.patient()))
            .await;
        let id = created.context("creating patients for the read scenarios")?["id"]
            .as_str()
            .context("created Patient has no id")?
            .to_owned();
        ids.push(id);
    }
    eprintln!(
        "using {} existing patients for reads and searches",
        ids.len()
    );
    Ok(ids)
}

fn patient_ids(page: &Value) -> impl Iterator<Item = String> + '_ {
    page["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["resource"]["resourceType"] == "Patient")
        .filter_map(|entry| entry["resource"]["id"].as_str().map(str::to_owned))
}

/// The `next` link of a search Bundle, as a path on the same server.
fn next_page(page: &Value) -> Option<Call> {
    let links = page["link"].as_array()?;
    let next = links.iter().find(|link| link["relation"] == "next")?;
    let url = next["url"].as_str()?;
    let path = match url.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => url,
    };
    Some(Call::get(path))
}

/// Runs `concurrency` workers until `duration` has passed; each worker
/// cycles through `scenarios`.
async fn measure(
    shared: &Arc<Shared>,
    scenarios: &[Scenario],
    concurrency: usize,
    duration: Duration,
) -> Result<(Tally, Duration)> {
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|index| {
            let order: Vec<_> = scenarios
                .iter()
                .cycle()
                .skip(index)
                .take(scenarios.len())
                .copied()
                .collect();
            tokio::spawn(worker(shared.clone(), order, deadline))
        })
        .collect();
    let mut total = Tally::new();
    for worker in workers {
        total.merge(&worker.await?)?;
    }
    Ok((total, started.elapsed()))
}

async fn worker(shared: Arc<Shared>, scenarios: Vec<Scenario>, deadline: Instant) -> Tally {
    let part = shared.next_part.fetch_add(1, Relaxed);
    let mut synth = Synth::for_part(shared.seed ^ RUN_SALT, part, PATIENTS_PER_WORKER);
    let mut rng = StdRng::seed_from_u64(shared.seed ^ part);
    let mut tally = Tally::new();
    for scenario in scenarios.iter().cycle() {
        if Instant::now() >= deadline {
            break;
        }
        let call = next_call(*scenario, &mut synth, &mut rng, &shared.pool);
        let started = Instant::now();
        let outcome = execute(&shared.api, &call).await;
        let elapsed = started.elapsed();
        tally.requests += 1;
        match outcome {
            Ok(()) => tally.latency.saturating_record(micros(elapsed)),
            Err(message) => {
                tally.errors += 1;
                report_error(&shared, *scenario, &call, &message);
            }
        }
    }
    tally
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn report_error(shared: &Shared, scenario: Scenario, call: &Call, message: &str) {
    if shared.errors_printed.fetch_add(1, Relaxed) < PRINTED_ERRORS {
        eprintln!(
            "{scenario}: {} {} failed: {message}",
            call.method, call.path
        );
    }
}

/// The next request of `scenario`; request bodies are built here, before the clock starts.
fn next_call(scenario: Scenario, synth: &mut Synth, rng: &mut StdRng, pool: &[String]) -> Call {
    let mut existing = || pool.choose(rng).cloned().unwrap_or_default();
    match scenario {
        Scenario::PatientCreate => Call::post("/fhir/Patient", &synth.patient()),
        Scenario::PatientRead => Call::get(format!("/fhir/Patient/{}", existing())),
        Scenario::PatientSearch => Call::get("/fhir/Patient")
            .query("name", synth.name_fragment())
            .query("_count", "20"),
        Scenario::ObservationSearch => Call::get("/fhir/Observation").query("patient", existing()),
        Scenario::Transaction20 => Call::post("/fhir", &synth.observation_bundle(20)),
    }
}

/// Sends `call` and reads the whole answer; anything but 2xx is an error.
async fn execute(api: &Api, call: &Call) -> Result<(), String> {
    let response = api.send(call).await.map_err(|error| format!("{error:#}"))?;
    let status = response.status();
    if status.is_success() {
        response
            .bytes()
            .await
            .map(drop)
            .map_err(|error| format!("reading the answer: {error}"))
    } else {
        let text = response.text().await.unwrap_or_default();
        Err(format!("HTTP {status}: {}", snippet(&text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn next_link_becomes_a_path() {
        let page = json!({"link": [
            {"relation": "self", "url": "http://x/fhir/Patient?_count=100"},
            {"relation": "next", "url": "http://kiorex.local:8080/fhir/Patient?_count=100&_page=2"},
        ]});
        assert_eq!(
            next_page(&page).unwrap().path,
            "/fhir/Patient?_count=100&_page=2"
        );
        let relative = json!({"link": [{"relation": "next", "url": "/fhir/Patient?page=3"}]});
        assert_eq!(next_page(&relative).unwrap().path, "/fhir/Patient?page=3");
        assert!(next_page(&json!({"link": []})).is_none());
    }

    #[test]
    fn patient_ids_come_from_entries() {
        let page = json!({"entry": [
            {"resource": {"resourceType": "Patient", "id": "a"}},
            {"resource": {"resourceType": "OperationOutcome"}},
            {"resource": {"resourceType": "Patient", "id": "b"}},
        ]});
        assert_eq!(patient_ids(&page).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(patient_ids(&json!({"total": 0})).count(), 0);
    }

    #[test]
    fn calls_match_the_server_contract() {
        let mut synth = Synth::new(1);
        let mut rng = StdRng::seed_from_u64(1);
        let pool = vec!["p1".to_owned()];
        let mut call = |s| next_call(s, &mut synth, &mut rng, &pool);
        assert_eq!(call(Scenario::PatientRead).path, "/fhir/Patient/p1");
        let search = call(Scenario::PatientSearch);
        assert_eq!(search.query[1], ("_count", "20".to_owned()));
        assert_eq!(
            call(Scenario::ObservationSearch).query,
            [("patient", "p1".to_owned())]
        );
        let transaction = call(Scenario::Transaction20);
        assert_eq!(transaction.path, "/fhir");
        let body: Value = serde_json::from_slice(transaction.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["entry"].as_array().unwrap().len(), 20);
        assert_eq!(call(Scenario::PatientCreate).method, reqwest::Method::POST);
    }

    #[test]
    fn tallies_merge() {
        let mut first = Tally::new();
        first.requests = 2;
        first.latency.saturating_record(1000);
        let mut second = Tally::new();
        second.requests = 1;
        second.errors = 1;
        second.latency.saturating_record(3000);
        first.merge(&second).unwrap();
        assert_eq!(
            (first.requests, first.errors, first.latency.len()),
            (3, 1, 2)
        );
    }
}
