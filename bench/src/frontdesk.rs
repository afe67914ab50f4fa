//! `kiorex-bench frontdesk`: latency of front-desk patient search (`/api/v1/search/patients`)
//! and whether the right patient comes back in the top three. Queries are made from patients
//! already in the server (read through FHIR), in the shapes people type: name fragments,
//! reversed order, one typo, a birth date, a family name with a birth date.

use std::time::Instant;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::api::{Api, Call};
use crate::cli::{FrontDeskArgs, Output};

struct Person {
    id: String,
    given: String,
    family: String,
    born: String,
}

const SHAPES: [&str; 5] = ["fragments", "reversed", "typo", "birth-date", "family+date"];

pub async fn run(args: FrontDeskArgs) -> Result<()> {
    let api = Api::new(&args.server, 2)?;
    api.login().await?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let people = sample(
        &api,
        args.queries.div_ceil(SHAPES.len()),
        args.population,
        &mut rng,
    )
    .await?;
    let mut latency: Vec<Histogram<u64>> = SHAPES
        .iter()
        .map(|_| Histogram::new(3).expect("histogram"))
        .collect();
    let mut found = [0u64; SHAPES.len()];
    let mut asked = [0u64; SHAPES.len()];
    let engine = match &args.engine_database_url {
        Some(url) => Some(Engine::connect(url)?),
        None => None,
    };
    let mut engine_latency = Histogram::<u64>::new(3)?;
    for person in &people {
        for (shape, q) in queries(person, &mut rng).into_iter().enumerate() {
            if let Some(engine) = &engine {
                engine_latency.record(engine.time(&q).await?)?;
            }
            let started = Instant::now();
            let hits = api
                .fetch_json(&Call::get("/api/v1/search/patients").query("q", q.clone()))
                .await
                .with_context(|| format!("searching {q:?}"))?;
            latency[shape].record(started.elapsed().as_micros().max(1) as u64)?;
            asked[shape] += 1;
            let top3 = hits
                .as_array()
                .map(|h| h.iter().take(3).any(|h| h["id"] == person.id.as_str()));
            found[shape] += u64::from(top3 == Some(true));
        }
    }
    let mut all = Histogram::<u64>::new(3)?;
    for h in &latency {
        all.add(h)?;
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    match args.output {
        Output::Json => {
            let rows: Vec<Value> = SHAPES
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"shape": s, "queries": asked[i], "top3": found[i], "p50_ms": ms(&latency[i], 0.5), "p95_ms": ms(&latency[i], 0.95), "p99_ms": ms(&latency[i], 0.99)}))
                .collect();
            println!(
                "{}",
                json!({"shapes": rows, "all": {"queries": all.len(), "p50_ms": ms(&all, 0.5), "p95_ms": ms(&all, 0.95), "p99_ms": ms(&all, 0.99)},
                    "engine_only": engine.is_some().then(|| json!({"p50_ms": ms(&engine_latency, 0.5), "p95_ms": ms(&engine_latency, 0.95), "p99_ms": ms(&engine_latency, 0.99)}))})
            );
        }
        Output::Text => {
            println!(
                "| query shape | queries | right patient in top 3 | p50 ms | p95 ms | p99 ms |"
            );
            println!("|---|---:|---:|---:|---:|---:|");
            for (i, s) in SHAPES.iter().enumerate() {
                println!(
                    "| {s} | {} | {} | {:.1} | {:.1} | {:.1} |",
                    asked[i],
                    found[i],
                    ms(&latency[i], 0.5),
                    ms(&latency[i], 0.95),
                    ms(&latency[i], 0.99)
                );
            }
            println!(
                "| all | {} | {} | {:.1} | {:.1} | {:.1} |",
                all.len(),
                found.iter().sum::<u64>(),
                ms(&all, 0.5),
                ms(&all, 0.95),
                ms(&all, 0.99)
            );
            if engine.is_some() {
                println!(
                    "| engine only (no HTTP, no audit) | {} | | {:.1} | {:.1} | {:.1} |",
                    engine_latency.len(),
                    ms(&engine_latency, 0.5),
                    ms(&engine_latency, 0.95),
                    ms(&engine_latency, 0.99)
                );
            }
        }
    }
    Ok(())
}

/// The PostgreSQL search engine called directly, over every facility: what the search itself
/// costs, without HTTP, the caller's permissions and the audit write of the hits.
struct Engine {
    search: kiorex_search::postgres::PostgresSearch,
    facilities: Vec<uuid::Uuid>,
}

impl Engine {
    fn connect(url: &str) -> Result<Engine> {
        let store = kiorex_store::Store::connect(url, 2)
            .map_err(|e| anyhow::anyhow!("--engine-database-url: {e}"))?;
        let mut conn = store.get().map_err(|e| anyhow::anyhow!("{e}"))?;
        let facilities = kiorex_store::facilities::all(&mut conn)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_iter()
            .map(|f| f.id)
            .collect();
        Ok(Engine {
            search: kiorex_search::postgres::PostgresSearch::new(store),
            facilities,
        })
    }

    /// Microseconds one query takes.
    async fn time(&self, typed: &str) -> Result<u64> {
        use kiorex_search::PatientSearch;
        let query = kiorex_search::parse(typed);
        let started = Instant::now();
        self.search
            .find_patients(&query, &self.facilities, 10)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(started.elapsed().as_micros().max(1) as u64)
    }
}

/// Patients read at random offsets through FHIR search.
async fn sample(
    api: &Api,
    wanted: usize,
    population: u64,
    rng: &mut StdRng,
) -> Result<Vec<Person>> {
    let mut total = population.max(1);
    let mut people = Vec::new();
    while people.len() < wanted {
        let offset = rng.gen_range(0..total.saturating_sub(20).max(1));
        let page = api
            .fetch_json(
                &Call::get("/fhir/Patient")
                    .query("_count", "20")
                    .query("_offset", offset.to_string()),
            )
            .await?;
        if page["entry"].as_array().is_none_or(Vec::is_empty) {
            // Fewer patients than --population: sample from the first part only.
            anyhow::ensure!(total > 20, "the server has no patients to search for");
            total = offset.max(20);
            continue;
        }
        for entry in page["entry"].as_array().into_iter().flatten() {
            let p = &entry["resource"];
            let (Some(id), Some(family), Some(given), Some(born)) = (
                p["id"].as_str(),
                p["name"][0]["family"].as_str(),
                p["name"][0]["given"][0].as_str(),
                p["birthDate"].as_str(),
            ) else {
                continue;
            };
            if people.len() < wanted && rng.gen_bool(0.25) {
                people.push(Person {
                    id: id.into(),
                    given: given.into(),
                    family: family.into(),
                    born: born.into(),
                });
            }
        }
    }
    Ok(people)
}

fn queries(p: &Person, rng: &mut StdRng) -> Vec<String> {
    let prefix = |s: &str| s.chars().take(3).collect::<String>();
    let (y, rest) = p.born.split_once('-').unwrap_or(("", ""));
    let (m, d) = rest.split_once('-').unwrap_or(("", ""));
    let typed_date = format!("{d}/{m}/{y}");
    vec![
        format!("{} {}", prefix(&p.given), prefix(&p.family)),
        format!("{} {}", p.family, p.given),
        format!("{} {}", p.given, typo(&p.family, rng)),
        typed_date.clone(),
        format!("{} {typed_date}", p.family),
    ]
}

/// One letter replaced by its neighbour in the alphabet, away from the first two letters.
fn typo(name: &str, rng: &mut StdRng) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    if chars.len() < 4 {
        return name.to_owned();
    }
    let at = rng.gen_range(2..chars.len());
    chars[at] = match chars[at] {
        'z' => 'y',
        'Z' => 'Y',
        c if c.is_ascii_alphabetic() => ((c as u8) + 1) as char,
        c => c,
    };
    chars.into_iter().collect()
}
