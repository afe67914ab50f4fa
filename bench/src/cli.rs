//! Command line interface.

use std::fmt;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  export KIOREX_BENCH_PASSWORD='...'
  kiorex-bench load --url http://127.0.0.1:8080 --user bench --patients 100000
  kiorex-bench run  --url http://127.0.0.1:8080 --user bench --duration 30s
  kiorex-bench run  --url http://127.0.0.1:8080 --user bench --scenario patient-search --output json

Use a test installation or a dedicated test tenant: 'load' and the
patient-create/transaction20 scenarios write synthetic (fictitious) patients.";

#[derive(Parser)]
#[command(
    name = "kiorex-bench",
    version,
    about = "Fill a Kiorex server with synthetic patients and measure how fast its FHIR API answers.",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Load synthetic patients with clinical records into the server (to test with a realistic
    /// database size). Prints progress every few seconds and totals at the end.
    Load(LoadArgs),
    /// Measure requests per second and response times (p50/p95/p99/max) of common FHIR
    /// operations with many simultaneous clients. Prints a table ready for docs/benchmarks.md.
    Run(RunArgs),
    /// Measure document upload and download throughput through the core (needs documents
    /// configured: Ceph RGW and clamd). Writes synthetic (fictitious) documents to one new
    /// synthetic patient.
    Documents(DocumentsArgs),
    /// Measure front-desk patient search (latency p50/p95/p99 and whether the right patient is
    /// in the top three) with queries made from patients already loaded. Read-only.
    Frontdesk(FrontDeskArgs),
    /// Measure the staff portal: server time to render the chart of a patient with five years
    /// of history (it creates that patient), and the search-as-you-type request per keystroke.
    Portal(PortalArgs),
    /// Print one synthetic transaction Bundle as JSON, without contacting any server.
    Sample(SampleArgs),
    /// Measure what the DMZ edge costs: the same FHIR read against core directly and through
    /// the edge (TLS, checks, mutual TLS to core), requests/s and p99 side by side. For test
    /// installations: it signs a token with the installation's key.
    Edge(EdgeArgs),
}

#[derive(Args)]
pub struct EdgeArgs {
    /// Core's LAN address, plain HTTP, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub core_url: String,
    /// The edge's address, e.g. https://localhost:8443
    #[arg(long)]
    pub edge_url: String,
    /// The CA certificate (PEM) that signed the edge's certificate
    #[arg(long)]
    pub edge_ca_file: std::path::PathBuf,
    /// The installation's token signing key (PEM), to sign a token both edge and core accept.
    /// Test installations only
    #[arg(long)]
    pub signing_key_file: std::path::PathBuf,
    /// Staff user allowed to create and read patients
    #[arg(long, env = "KIOREX_BENCH_USER")]
    pub user: String,
    /// Password of that user (prefer the environment variable)
    #[arg(long, env = "KIOREX_BENCH_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// Simultaneous clients (closed loop: each sends its next request when the last is
    /// answered). With --rate, the most requests in flight at once
    #[arg(long, default_value_t = 16, value_parser = at_least_one())]
    pub concurrency: usize,
    /// Open loop: send this many requests per second whatever the answers, and time each from
    /// when it was due (so a stalled server is not hidden by fewer requests). Measures the
    /// latency added at a given load rather than the most a saturated machine can serve
    #[arg(long)]
    pub rate: Option<u32>,
    /// How long each path is measured
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Also measure core's internal listener directly (e.g. https://127.0.0.1:8443), with the
    /// edge's client certificate: the mutual TLS of the edge's hop without the edge
    #[arg(long, requires_all = ["internal_ca_file", "client_cert_file", "client_key_file"])]
    pub internal_url: Option<String>,
    /// The internal CA (PEM) that signed core's internal certificate
    #[arg(long, requires = "internal_url")]
    pub internal_ca_file: Option<std::path::PathBuf>,
    /// The edge's client certificate (PEM) for core's internal listener
    #[arg(long, requires = "internal_url")]
    pub client_cert_file: Option<std::path::PathBuf>,
    /// The edge's client key (PEM) for core's internal listener
    #[arg(long, requires = "internal_url")]
    pub client_key_file: Option<std::path::PathBuf>,
    /// Measure the paths this many times, rotating which goes first, and report each
    /// round and the median: on a shared or virtual machine one pair of runs can be off by
    /// more than the edge costs
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    pub rounds: usize,
    /// Unmeasured warm-up before each path
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// How to reach and log in to the server.
#[derive(Args)]
pub struct ServerArgs {
    /// Address of the Kiorex core, e.g. http://127.0.0.1:8080 (plain HTTP; TLS is not supported)
    #[arg(long, env = "KIOREX_BENCH_URL")]
    pub url: String,
    /// Kiorex user name; the account must be allowed to create and read patients
    #[arg(long, env = "KIOREX_BENCH_USER")]
    pub user: String,
    /// Password of that user. Prefer the environment variable, which keeps it out of the
    /// shell history; it is never printed in reports
    #[arg(long, env = "KIOREX_BENCH_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// Give up on a single request after this long (e.g. 30s, 2m)
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args)]
pub struct DocumentsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Document sizes to measure, in MB (10^6 bytes), comma-separated
    #[arg(long, value_delimiter = ',', default_values_t = [1u64, 20])]
    pub sizes_mb: Vec<u64>,
    /// Uploads (and downloads) per size
    #[arg(long, default_value_t = 10, value_parser = at_least_one())]
    pub count: usize,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args)]
pub struct PortalArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Encounters in the patient's history
    #[arg(long, default_value_t = 200, value_parser = at_least_one())]
    pub encounters: usize,
    /// Vital-sign observations in the history (spread over the encounters)
    #[arg(long, default_value_t = 2000)]
    pub observations: usize,
    /// Documents (small PDFs; needs documents configured on the server, else give 0)
    #[arg(long, default_value_t = 50)]
    pub documents: usize,
    /// Chart requests measured (after 5 unmeasured ones)
    #[arg(long, default_value_t = 200, value_parser = at_least_one())]
    pub renders: usize,
    /// Times the patient's name is typed into the search box
    #[arg(long, default_value_t = 20, value_parser = at_least_one())]
    pub rounds: usize,
    /// Makes the patient's name unique between runs on one server
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Measure this existing patient (from an earlier run with the same --seed) instead of
    /// creating one
    #[arg(long)]
    pub patient: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args)]
pub struct FrontDeskArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Number of searches (spread over five query shapes)
    #[arg(long, default_value_t = 500, value_parser = at_least_one())]
    pub queries: usize,
    /// Seed choosing the sampled patients and typos
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// About how many patients the server holds (patients are sampled at offsets below it)
    #[arg(long, default_value_t = 100_000)]
    pub population: u64,
    /// Also time each query against the PostgreSQL search engine directly (no HTTP, no
    /// permission lookup, no audit write), with this database URL
    #[arg(long, env = "KIOREX_BENCH_DATABASE_URL")]
    pub engine_database_url: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Number of patients to create
    #[arg(long, default_value_t = 1000, value_parser = at_least_one())]
    pub patients: usize,
    /// Clinical records per patient (an encounter, then vital signs, diagnoses, allergies,
    /// prescriptions, procedures). 0 creates bare patients
    #[arg(long, default_value_t = 2)]
    pub records: usize,
    /// Patients per transaction (one HTTP request each)
    #[arg(long, default_value_t = 100, value_parser = at_least_one())]
    pub batch: usize,
    /// Transactions sent at the same time
    #[arg(long, default_value_t = 4, value_parser = at_least_one())]
    pub concurrency: usize,
    /// Seed of the synthetic data: the same seed always produces the same patients,
    /// so use a new seed to add further patients on top of an earlier load
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Simultaneous clients (each waits for its answer before sending the next request)
    #[arg(long, default_value_t = 16, value_parser = at_least_one())]
    pub concurrency: usize,
    /// How long each scenario is measured (e.g. 30s, 5m)
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured warm-up before the first scenario (e.g. 2s; 0s to skip)
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// What to measure
    #[arg(long, value_enum, default_value_t = ScenarioChoice::All)]
    pub scenario: ScenarioChoice,
    /// Report format
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Up to this many existing patients are picked at random for reads and searches
    /// (patients are created if the server has fewer than 100)
    #[arg(long, default_value_t = 1000, value_parser = at_least_one())]
    pub pool: usize,
    /// Seed of the synthetic data sent by the create and transaction scenarios
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args)]
pub struct SampleArgs {
    /// Number of patients in the bundle
    #[arg(long, default_value_t = 1)]
    pub patients: usize,
    /// Clinical records per patient
    #[arg(long, default_value_t = 8)]
    pub records: usize,
    /// Seed of the synthetic data
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioChoice {
    /// Every scenario below, one after the other
    All,
    /// Register a new patient (POST /fhir/Patient)
    PatientCreate,
    /// Open a patient record by id (GET /fhir/Patient/{id})
    PatientRead,
    /// Search patients by a name fragment, 20 per page (GET /fhir/Patient?name=...)
    PatientSearch,
    /// List a patient's observations (GET /fhir/Observation?patient={id})
    ObservationSearch,
    /// One transaction of 20 resources: a patient and 19 vital signs (POST /fhir)
    #[value(name = "transaction20")]
    Transaction20,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    PatientCreate,
    PatientRead,
    PatientSearch,
    ObservationSearch,
    Transaction20,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::PatientCreate,
        Scenario::PatientRead,
        Scenario::PatientSearch,
        Scenario::ObservationSearch,
        Scenario::Transaction20,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::PatientCreate => "patient-create",
            Scenario::PatientRead => "patient-read",
            Scenario::PatientSearch => "patient-search",
            Scenario::ObservationSearch => "observation-search",
            Scenario::Transaction20 => "transaction20",
        }
    }

    /// Whether the scenario needs ids of existing patients.
    pub fn needs_pool(self) -> bool {
        matches!(self, Scenario::PatientRead | Scenario::ObservationSearch)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ScenarioChoice {
    pub fn scenarios(self) -> Vec<Scenario> {
        match self {
            ScenarioChoice::All => Scenario::ALL.to_vec(),
            ScenarioChoice::PatientCreate => vec![Scenario::PatientCreate],
            ScenarioChoice::PatientRead => vec![Scenario::PatientRead],
            ScenarioChoice::PatientSearch => vec![Scenario::PatientSearch],
            ScenarioChoice::ObservationSearch => vec![Scenario::ObservationSearch],
            ScenarioChoice::Transaction20 => vec![Scenario::Transaction20],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable header and Markdown table
    Text,
    /// The same figures as one JSON document
    Json,
}

fn at_least_one() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

/// Parses `30s`, `500ms`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("'{text}' is not a duration like 30s, 500ms, 2m or 1h");
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(invalid()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("10 days").is_err());
    }

    #[test]
    fn run_arguments_parse() {
        let cli = Cli::try_parse_from([
            "kiorex-bench",
            "run",
            "--url",
            "http://h:1",
            "--user",
            "u",
            "--password",
            "p",
            "--duration",
            "10s",
            "--scenario",
            "transaction20",
            "--output",
            "json",
        ])
        .expect("valid arguments");
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.scenario.scenarios(), [Scenario::Transaction20]);
        assert!(args.output == Output::Json && args.concurrency == 16);
    }

    #[test]
    fn zero_batch_is_rejected() {
        let args = [
            "kiorex-bench",
            "load",
            "--url",
            "http://h",
            "--user",
            "u",
            "--password",
            "p",
        ];
        assert!(Cli::try_parse_from(args.iter().chain(&["--batch", "0"])).is_err());
        assert!(Cli::try_parse_from(args).is_ok());
    }
}
