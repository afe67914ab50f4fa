//! `kiorex-bench edge`: what the DMZ edge costs. The same FHIR read (`GET /fhir/Patient/{id}`)
//! is measured against core's LAN listener directly and through the edge (TLS from the client,
//! allow-list, token and scope check, rate limits, then mutual TLS to core's internal listener),
//! with the same load, one after the other. With `--internal-url`, core's internal listener is
//! measured directly too, with the edge's client certificate. With `--rounds`, all of it is
//! repeated and the medians reported.
//!
//! When the edge runs with `edge.server_timing = true`, each answer through it says how long
//! core took (`Server-Timing: core;dur=<ms>`). Each request's time minus core's is then what
//! the edge added to that very request: the client's TLS, the edge's work, and the hop to core
//! and back. Its p99 does not move with core's own noise, which on a shared machine is larger
//! than the edge's share.
//!
//! The token: the edge admits partner (client-credentials) tokens, core admits staff tokens.
//! On a test installation this tool signs in as the given staff user and re-signs that token's
//! claims with `client_id` and `scope` added, using the installation's signing key, so one
//! token passes both. Never point it at a production signing key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::cli::{EdgeArgs, Output};

struct Measured {
    target: &'static str,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    /// Per request, the time beyond what core took (when the path says, in `Server-Timing`).
    beyond_core: Option<Histogram<u64>>,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
    fn beyond_core_ms(&self, q: f64) -> Option<f64> {
        let h = self.beyond_core.as_ref()?;
        Some(h.value_at_quantile(q) as f64 / 1000.0)
    }
}

pub async fn run(args: EdgeArgs) -> Result<()> {
    let core = args.core_url.trim_end_matches('/').to_owned();
    let edge = args.edge_url.trim_end_matches('/').to_owned();
    ensure!(
        edge.starts_with("https://"),
        "--edge-url must start with https://"
    );
    let ca = std::fs::read(&args.edge_ca_file)
        .with_context(|| format!("cannot read {}", args.edge_ca_file.display()))?;
    let plain = client(None, args.concurrency)?;
    let tls = client(Some((&ca, None)), args.concurrency)?;
    let staff = sign_in(&plain, &core, &args.user, &args.password).await?;
    let key = std::fs::read_to_string(&args.signing_key_file)
        .with_context(|| format!("cannot read {}", args.signing_key_file.display()))?;
    let token = partner_token(&staff, &key)?;
    let id = create_patient(&plain, &core, &token).await?;
    let path = format!("/fhir/Patient/{id}");
    let mut paths = vec![("core", core, plain), ("edge -> core", edge, tls)];
    if let Some(internal) = internal_path(&args)? {
        paths.push(internal);
    }
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        // The path that goes first rotates, so that a machine slowing down or speeding up
        // during the run favours none.
        let mut measured = Vec::new();
        for step in 0..paths.len() {
            let i = (round + step) % paths.len();
            let (target, base, http) = &paths[i];
            let url = format!("{base}{path}");
            let load = Load {
                http,
                url: &url,
                token: &token,
                concurrency: args.concurrency,
            };
            load.measure(args.rate, args.warmup).await?;
            let result = load.measure(args.rate, args.duration).await?;
            measured.push((i, Measured { target, ..result }));
        }
        measured.sort_by_key(|(i, _)| *i);
        rounds.push(Round {
            paths: measured.into_iter().map(|(_, m)| m).collect(),
        });
    }
    print(&rounds, &args);
    Ok(())
}

/// Core's internal listener, reached directly with the edge's client certificate: the same
/// mutual TLS as the edge's hop, without the edge. Separates what the edge costs from what
/// mutual TLS costs core.
fn internal_path(args: &EdgeArgs) -> Result<Option<(&'static str, String, reqwest::Client)>> {
    let (Some(url), Some(ca), Some(cert), Some(key)) = (
        &args.internal_url,
        &args.internal_ca_file,
        &args.client_cert_file,
        &args.client_key_file,
    ) else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let mut identity = read(cert)?;
    identity.extend(read(key)?);
    let http = client(Some((&read(ca)?, Some(&identity))), args.concurrency)?;
    Ok(Some((
        "core internal (mutual TLS)",
        url.trim_end_matches('/').to_owned(),
        http,
    )))
}

/// The paths measured one right after the other under the same load: core directly, through
/// the edge, and core's internal listener when asked for.
struct Round {
    paths: Vec<Measured>,
}

impl Round {
    /// The share of core's direct throughput that path `i` kept.
    fn kept_percent(&self, i: usize) -> f64 {
        self.paths[i].per_second() / self.paths[0].per_second() * 100.0
    }
    /// What path `i` added to core's direct p99.
    fn added_p99_ms(&self, i: usize) -> f64 {
        self.paths[i].quantile_ms(0.99) - self.paths[0].quantile_ms(0.99)
    }
}

/// The middle value (the mean of the two middle ones for an even count), with the smallest
/// and the largest.
fn median_and_range(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

/// A keep-alive HTTP/1.1 client; with `tls`, one that trusts only that CA (PEM) and presents
/// the identity (certificate and key, PEM) when given.
fn client(tls: Option<(&[u8], Option<&[u8]>)>, connections: usize) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .http1_only()
        .timeout(Duration::from_secs(30));
    if let Some((ca, identity)) = tls {
        builder = builder
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca)?);
        if let Some(identity) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(identity)?);
        }
    }
    Ok(builder.build()?)
}

async fn sign_in(http: &reqwest::Client, core: &str, user: &str, password: &str) -> Result<String> {
    let reply: Value = http
        .post(format!("{core}/api/v1/auth/token"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await?
        .json()
        .await?;
    reply["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("sign-in failed: check --user and the password")
}

/// The staff token's claims plus `client_id` and `scope`, signed again with the site's key.
fn partner_token(staff: &str, signing_key_pem: &str) -> Result<String> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let mut claims: Value = jsonwebtoken::dangerous::insecure_decode(staff)?.claims;
    claims["client_id"] = json!("kiorex-bench");
    claims["scope"] = json!("system/Patient.read system/Patient.write");
    let key = EncodingKey::from_ed_pem(signing_key_pem.as_bytes())
        .context("--signing-key-file is not an Ed25519 PEM key")?;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims,
        &key,
    )?)
}

async fn create_patient(http: &reqwest::Client, core: &str, token: &str) -> Result<String> {
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Edgebench", "given": ["Read"]}], "gender": "unknown", "birthDate": "1980-01-01"});
    let response = http
        .post(format!("{core}/fhir/Patient"))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(patient.to_string())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "creating the patient to read failed: HTTP {}",
            response.status()
        );
    }
    let created: Value = response.json().await?;
    created["id"]
        .as_str()
        .map(str::to_owned)
        .context("no id in the created patient")
}

/// The same read, sent to one path.
struct Load<'a> {
    http: &'a reqwest::Client,
    url: &'a str,
    token: &'a str,
    concurrency: usize,
}

impl Load<'_> {
    async fn measure(&self, rate: Option<u32>, duration: Duration) -> Result<Measured> {
        match rate {
            Some(rate) => self.open_loop(rate, duration).await,
            None => self.closed_loop(duration).await,
        }
    }

    /// `concurrency` clients, each sending its next request when the last is answered.
    async fn closed_loop(&self, duration: Duration) -> Result<Measured> {
        let started = Instant::now();
        let deadline = started + duration;
        let workers: Vec<_> = (0..self.concurrency)
            .map(|_| {
                let read = self.read();
                tokio::spawn(async move {
                    let mut tally = Tally::new();
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        tally.add(read.send().await, sent);
                    }
                    tally
                })
            })
            .collect();
        let mut total = Tally::new();
        for worker in workers {
            total.merge(worker.await?)?;
        }
        Ok(total.measured(started.elapsed()))
    }

    /// `rate` requests per second, each timed from when it was due. A request that finds
    /// `concurrency` others still in flight waits for one of them, and its wait counts.
    async fn open_loop(&self, rate: u32, duration: Duration) -> Result<Measured> {
        ensure!(rate > 0, "--rate must be at least 1");
        let interval = Duration::from_secs(1) / rate;
        let in_flight = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        let started = Instant::now();
        let total = Arc::new(std::sync::Mutex::new(Tally::new()));
        let mut tasks = tokio::task::JoinSet::new();
        let mut due = started;
        while due < started + duration {
            tokio::time::sleep_until(due.into()).await;
            let permit = in_flight.clone().acquire_owned().await?;
            let (read, total) = (self.read(), total.clone());
            let sent = due;
            tasks.spawn(async move {
                let outcome = read.send().await;
                drop(permit);
                if let Ok(mut t) = total.lock() {
                    t.add(outcome, sent);
                }
            });
            due += interval;
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let elapsed = started.elapsed();
        let tally = std::mem::replace(
            &mut *total
                .lock()
                .map_err(|_| anyhow::anyhow!("a request task panicked"))?,
            Tally::new(),
        );
        Ok(tally.measured(elapsed))
    }

    fn read(&self) -> Read {
        Read {
            http: self.http.clone(),
            url: self.url.into(),
            token: self.token.into(),
        }
    }
}

/// One GET of the patient, owned by the task that sends it.
struct Read {
    http: reqwest::Client,
    url: Arc<str>,
    token: Arc<str>,
}

impl Read {
    /// Whether the read succeeded, body included, and how long core says it took.
    async fn send(&self) -> Answer {
        match self
            .http
            .get(&*self.url)
            .bearer_auth(&*self.token)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                let core = r
                    .headers()
                    .get("server-timing")
                    .and_then(|v| v.to_str().ok())
                    .and_then(core_time);
                match r.bytes().await {
                    Ok(_) => Answer::Read { core },
                    Err(_) => Answer::Failed,
                }
            }
            _ => Answer::Failed,
        }
    }
}

enum Answer {
    Failed,
    Read { core: Option<Duration> },
}

/// Core's time from the edge's `Server-Timing: core;dur=<ms>`.
fn core_time(server_timing: &str) -> Option<Duration> {
    let millis: f64 = server_timing
        .split(',')
        .find_map(|metric| metric.trim().strip_prefix("core;dur="))?
        .parse()
        .ok()?;
    Duration::try_from_secs_f64(millis / 1e3).ok()
}

/// Answers counted so far on one path.
struct Tally {
    requests: u64,
    errors: u64,
    latency: Histogram<u64>,
    beyond_core: Histogram<u64>,
}

fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

impl Tally {
    fn new() -> Tally {
        Tally {
            requests: 0,
            errors: 0,
            latency: micros_histogram(),
            beyond_core: micros_histogram(),
        }
    }

    fn add(&mut self, answer: Answer, since: Instant) {
        let Answer::Read { core } = answer else {
            self.errors += 1;
            return;
        };
        let took = since.elapsed();
        self.requests += 1;
        let _ = self.latency.record(took.as_micros().max(1) as u64);
        if let Some(core) = core {
            let beyond = took.saturating_sub(core);
            let _ = self.beyond_core.record(beyond.as_micros().max(1) as u64);
        }
    }

    fn merge(&mut self, other: Tally) -> Result<()> {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency
            .add(&other.latency)
            .and_then(|()| self.beyond_core.add(&other.beyond_core))
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    fn measured(self, elapsed: Duration) -> Measured {
        Measured {
            target: "",
            requests: self.requests,
            errors: self.errors,
            elapsed,
            latency: self.latency,
            beyond_core: (!self.beyond_core.is_empty()).then_some(self.beyond_core),
        }
    }
}

/// A path other than core's own, against core directly: its name, and the median and range
/// of the share of throughput kept and of the p99 added.
struct Compared {
    target: &'static str,
    kept: (f64, f64, f64),
    added: (f64, f64, f64),
    /// The p99 of each request's time beyond core's, when every round has it.
    beyond_core: Option<(f64, f64, f64)>,
}

fn compare(rounds: &[Round]) -> Vec<Compared> {
    (1..rounds[0].paths.len())
        .map(|i| Compared {
            target: rounds[0].paths[i].target,
            kept: median_and_range(rounds.iter().map(|r| r.kept_percent(i)).collect()),
            added: median_and_range(rounds.iter().map(|r| r.added_p99_ms(i)).collect()),
            beyond_core: rounds
                .iter()
                .map(|r| r.paths[i].beyond_core_ms(0.99))
                .collect::<Option<Vec<f64>>>()
                .map(median_and_range),
        })
        .collect()
}

fn print(rounds: &[Round], args: &EdgeArgs) {
    let compared = compare(rounds);
    match args.output {
        Output::Json => print_json(rounds, &compared, args),
        Output::Text => print_text(rounds, &compared, args),
    }
}

fn print_json(rounds: &[Round], compared: &[Compared], args: &EdgeArgs) {
    let rows: Vec<Value> = rounds
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.paths.iter().map(move |m| (i, m)))
        .map(|(i, m)| json!({"round": i + 1, "target": m.target, "requests": m.requests, "errors": m.errors,
            "per_second": m.per_second(), "p50_ms": m.quantile_ms(0.5), "p99_ms": m.quantile_ms(0.99),
            "beyond_core_p50_ms": m.beyond_core_ms(0.5), "beyond_core_p99_ms": m.beyond_core_ms(0.99)}))
        .collect();
    let against_core: Vec<Value> = compared
        .iter()
        .map(|c| json!({"target": c.target,
            "throughput_kept_percent": c.kept.0, "throughput_kept_percent_range": [c.kept.1, c.kept.2],
            "p99_added_ms": c.added.0, "p99_added_ms_range": [c.added.1, c.added.2],
            "beyond_core_p99_ms": c.beyond_core.map(|b| b.0),
            "beyond_core_p99_ms_range": c.beyond_core.map(|b| [b.1, b.2])}))
        .collect();
    println!(
        "{}",
        json!({"concurrency": args.concurrency, "rate": args.rate, "duration_s": args.duration.as_secs_f64(),
        "rounds": rounds.len(), "results": rows, "against_core": against_core,
        "throughput_kept_percent": compared[0].kept.0, "p99_added_ms": compared[0].added.0,
        "command": crate::report::command_line()})
    );
}

fn print_text(rounds: &[Round], compared: &[Compared], args: &EdgeArgs) {
    let concurrency = args.concurrency;
    let load = match args.rate {
        Some(rate) => {
            format!("{rate} requests/s offered (open loop, at most {concurrency} in flight)")
        }
        None => format!("{concurrency} clients"),
    };
    crate::report::print_preamble();
    println!(
        "FHIR read (GET /fhir/Patient/{{id}}), {load}, {} each path, {} round(s)\n",
        crate::report::human(args.duration),
        rounds.len()
    );
    println!(
        "| round | path | requests/s | p50 | p99 | beyond core p50 / p99 | errors |\n\
         |---:|---|---:|---:|---:|---:|---:|"
    );
    for (i, round) in rounds.iter().enumerate() {
        for m in &round.paths {
            let beyond = match (m.beyond_core_ms(0.5), m.beyond_core_ms(0.99)) {
                (Some(p50), Some(p99)) => format!("{p50:.2} / {p99:.2} ms"),
                _ => "-".into(),
            };
            println!(
                "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {beyond} | {} |",
                i + 1,
                m.target,
                m.per_second(),
                m.quantile_ms(0.5),
                m.quantile_ms(0.99),
                m.errors
            );
        }
    }
    println!();
    for Compared {
        target,
        kept,
        added,
        beyond_core,
    } in compared
    {
        if rounds.len() == 1 {
            println!(
                "{target}: {:.0}% of core's throughput, p99 {:+.2} ms",
                kept.0, added.0
            );
        } else {
            println!(
                "{target}, median of {} rounds: {:.0}% of core's throughput (rounds {:.0}–{:.0}%), \
                 p99 {:+.2} ms (rounds {:+.2} to {:+.2} ms)",
                rounds.len(),
                kept.0,
                kept.1,
                kept.2,
                added.0,
                added.1,
                added.2
            );
        }
        if let Some((median, low, high)) = beyond_core {
            println!(
                "{target}, each request's time beyond core's (Server-Timing), p99: {median:.2} ms \
                 (rounds {low:.2} to {high:.2} ms)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{core_time, median_and_range};
    use std::time::Duration;

    #[test]
    fn cores_time_is_read_from_server_timing() {
        assert_eq!(
            core_time("core;dur=3.250"),
            Some(Duration::from_micros(3_250))
        );
        assert_eq!(
            core_time("cache;desc=miss, core;dur=12"),
            Some(Duration::from_millis(12))
        );
        assert_eq!(core_time("db;dur=3"), None);
        assert_eq!(core_time("core;dur=soon"), None);
        assert_eq!(core_time("core;dur=-1"), None);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median_and_range(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(
            median_and_range(vec![90.0, 70.0, 100.0, 80.0]),
            (85.0, 70.0, 100.0)
        );
    }
}
