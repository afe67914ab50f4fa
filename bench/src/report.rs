//! Report header (machine, command line) and result table / JSON.

use std::fs;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{Output, RunArgs};
use crate::run::Tally;

/// The machine the benchmark client runs on.
pub struct Machine {
    cores: usize,
    cpu: Option<String>,
    memory_gib: Option<f64>,
}

impl Machine {
    pub fn detect() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpu_model(),
            memory_gib: memory_gib(),
        }
    }

    fn describe(&self) -> String {
        let mut text = format!("{} cores", self.cores);
        if let Some(cpu) = &self.cpu {
            text += &format!(" ({cpu})");
        }
        if let Some(memory) = self.memory_gib {
            text += &format!(", {memory:.1} GiB RAM");
        }
        text + &format!(", {}/{}", std::env::consts::OS, std::env::consts::ARCH)
    }

    fn to_json(&self) -> Value {
        json!({
            "cores": self.cores,
            "cpu": self.cpu,
            "memory_gib": self.memory_gib.map(|gib| (gib * 10.0).round() / 10.0),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        })
    }
}

fn cpu_model() -> Option<String> {
    let info = fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|line| line.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

fn memory_gib() -> Option<f64> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / (1024.0 * 1024.0))
}

/// The command line as typed, with the password masked.
pub fn command_line() -> String {
    masked(std::env::args())
}

fn masked(args: impl Iterator<Item = String>) -> String {
    let mut hide_next = false;
    let words: Vec<String> = args
        .map(|arg| {
            let word = if hide_next {
                "***".to_owned()
            } else if arg.starts_with("--password=") {
                "--password=***".to_owned()
            } else {
                arg.clone()
            };
            hide_next = arg == "--password";
            quoted(&word)
        })
        .collect();
    words.join(" ")
}

fn quoted(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@%+*".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Machine and command line, printed at the top of every report.
pub fn print_preamble() {
    println!("client machine: {}", Machine::detect().describe());
    println!("command: {}", command_line());
}

/// `42s`, `2.5s`, `3m05s`, `1h07m`.
pub fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 if duration.subsec_millis() == 0 => format!("{seconds}s"),
        0..60 => format!("{:.1}s", duration.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

/// Figures of one scenario; latencies in milliseconds (None without any success).
pub struct Row {
    scenario: &'static str,
    requests: u64,
    errors: u64,
    throughput: f64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    elapsed: Duration,
}

impl Row {
    pub fn new(scenario: &'static str, tally: &Tally, elapsed: Duration) -> Self {
        let latency = &tally.latency;
        let millis = |micros: u64| (!latency.is_empty()).then(|| micros as f64 / 1000.0);
        let successes = tally.requests - tally.errors;
        Self {
            scenario,
            requests: tally.requests,
            errors: tally.errors,
            throughput: successes as f64 / elapsed.as_secs_f64(),
            p50: millis(latency.value_at_quantile(0.50)),
            p95: millis(latency.value_at_quantile(0.95)),
            p99: millis(latency.value_at_quantile(0.99)),
            max: millis(latency.max()),
            elapsed,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "requests": self.requests,
            "errors": self.errors,
            "throughput_rps": round2(self.throughput),
            "p50_ms": self.p50.map(round2),
            "p95_ms": self.p95.map(round2),
            "p99_ms": self.p99.map(round2),
            "max_ms": self.max.map(round2),
            "elapsed_s": round2(self.elapsed.as_secs_f64()),
        })
    }

    fn table_line(&self) -> String {
        let ms = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.2}"));
        format!(
            "| {:<18} | {:>9} | {:>7} | {:>9.1} | {:>8} | {:>8} | {:>8} | {:>8} |",
            self.scenario,
            self.requests,
            self.errors,
            self.throughput,
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            ms(self.max),
        )
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

const TABLE_HEADER: &str = "\
| scenario           |  requests |  errors |     req/s |   p50 ms |   p95 ms |   p99 ms |   max ms |
|--------------------|----------:|--------:|----------:|---------:|---------:|---------:|---------:|";

/// Everything `run` prints.
pub struct Report {
    date: String,
    machine: Machine,
    command: String,
    url: String,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    pool_size: usize,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(args: &RunArgs, url: &str, pool_size: usize, rows: Vec<Row>) -> Self {
        Self {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            machine: Machine::detect(),
            command: command_line(),
            url: url.to_owned(),
            concurrency: args.concurrency,
            duration: args.duration,
            warmup: args.warmup,
            pool_size,
            rows,
        }
    }

    pub fn print(&self, output: Output) {
        match output {
            Output::Text => println!("{}", self.text()),
            Output::Json => println!("{:#}", self.to_json()),
        }
    }

    fn text(&self) -> String {
        let mut lines = vec![
            format!("Kiorex benchmark, {}", self.date),
            format!("client machine: {}", self.machine.describe()),
            format!("command: {}", self.command),
            format!(
                "server {}: {} concurrent clients, {} per scenario after {} warm-up, {} patients in the read pool",
                self.url,
                self.concurrency,
                human(self.duration),
                human(self.warmup),
                self.pool_size
            ),
            String::new(),
            TABLE_HEADER.to_owned(),
        ];
        lines.extend(self.rows.iter().map(Row::table_line));
        lines.push(String::new());
        lines.push(
            "req/s counts successful (2xx) answers; latencies are of successful requests.".into(),
        );
        lines.join("\n")
    }

    fn to_json(&self) -> Value {
        json!({
            "date": self.date,
            "machine": self.machine.to_json(),
            "command": self.command,
            "url": self.url,
            "concurrency": self.concurrency,
            "duration_s": self.duration.as_secs_f64(),
            "warmup_s": self.warmup.as_secs_f64(),
            "pool_size": self.pool_size,
            "results": self.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> String {
        masked(words.iter().map(|w| w.to_string()))
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            args(&[
                "kiorex-bench",
                "run",
                "--password",
                "s3cret",
                "--user",
                "a b"
            ]),
            "kiorex-bench run --password *** --user 'a b'"
        );
        assert_eq!(args(&["x", "--password=s3cret"]), "x --password=***");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(30)), "30s");
        assert_eq!(human(Duration::from_millis(2500)), "2.5s");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(human(Duration::from_secs(4000)), "1h06m");
    }

    #[test]
    fn rows_use_milliseconds() {
        let mut tally = Tally {
            requests: 4,
            errors: 1,
            latency: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
        };
        for micros in [1000, 2000, 3000] {
            tally.latency.saturating_record(micros);
        }
        let row = Row::new("patient-read", &tally, Duration::from_secs(1));
        let close = |value: Option<f64>, expected: f64| (value.unwrap() - expected).abs() < 0.01;
        assert_eq!(row.throughput, 3.0);
        assert!(close(row.p50, 2.0) && close(row.max, 3.0) && close(row.p99, 3.0));
        let line = row.table_line();
        assert_eq!(line.len(), TABLE_HEADER.lines().next().unwrap().len());
        assert!((row.to_json()["p95_ms"].as_f64().unwrap() - 3.0).abs() < 0.01);
        tally.errors = tally.requests;
        tally.latency.reset();
        let failed = Row::new("x", &tally, Duration::from_secs(1));
        assert_eq!(failed.to_json()["p50_ms"], Value::Null);
        assert!(failed.table_line().contains(" - "));
    }
}
