//! `[search]` (which engine answers searches) and `[worker]` (the outbox delivery role).

use crate::config::{ConfigError, KeyDoc, err, in_range, secret};
use kiorex_search::meili::MeiliSettings;
use kiorex_worker::WorkerSettings;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    engine: Option<String>,
    meilisearch_url: Option<String>,
    api_key: Option<String>,
    api_key_file: Option<PathBuf>,
    index_prefix: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWorker {
    listen: Option<String>,
    batch_size: Option<i64>,
    poll_interval_ms: Option<i64>,
    lease_seconds: Option<i64>,
    max_backoff_seconds: Option<i64>,
}

/// The engine; `None` settings mean the embedded PostgreSQL engine.
#[derive(Debug, Clone, Default)]
pub struct SearchConfig {
    pub meilisearch: Option<MeiliSettings>,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Health and metrics port of `serve worker`.
    pub listen: SocketAddr,
    pub settings: WorkerSettings,
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "search.engine",
        default: "postgres",
        secret: false,
        meaning: "postgres (embedded: PostgreSQL full text and trigram search, nothing else to run) or meilisearch (derived indexes on a Meilisearch server, fed by `serve worker`; build them first with `kiorex reindex all`).",
    },
    KeyDoc {
        key: "search.meilisearch_url",
        default: "(required with engine = meilisearch)",
        secret: false,
        meaning: "URL of the Meilisearch server in the data zone, e.g. http://search.data.hospital.local:7700.",
    },
    KeyDoc {
        key: "search.api_key",
        default: "(none)",
        secret: true,
        meaning: "Meilisearch API key (the master key or a key allowed to search, add documents and manage indexes).",
    },
    KeyDoc {
        key: "search.index_prefix",
        default: "kiorex",
        secret: false,
        meaning: "Prefix of the index names (<prefix>_patients, _documents, _medicines), so several appliances can share one server.",
    },
    KeyDoc {
        key: "worker.listen",
        default: "127.0.0.1:8082",
        secret: false,
        meaning: "Address of `serve worker`'s /health/live, /health/ready and /metrics.",
    },
    KeyDoc {
        key: "worker.batch_size",
        default: "100",
        secret: false,
        meaning: "Outbox events claimed at once (1 to 10000).",
    },
    KeyDoc {
        key: "worker.poll_interval_ms",
        default: "200",
        secret: false,
        meaning: "Wait when the outbox is empty (10 to 10000 ms); a new patient is searchable within about this long plus indexing time.",
    },
    KeyDoc {
        key: "worker.lease_seconds",
        default: "60",
        secret: false,
        meaning: "How long a claimed batch is reserved; a worker that dies leaves it to be delivered again after this (1 to 3600).",
    },
    KeyDoc {
        key: "worker.max_backoff_seconds",
        default: "300",
        secret: false,
        meaning: "Longest wait between attempts of an event that fails (1 to 86400); waits double from one second. Events are never dropped.",
    },
];

pub fn validate_search(errors: &mut Vec<ConfigError>, raw: RawSearch) -> SearchConfig {
    let prefix = raw.index_prefix.unwrap_or_else(|| "kiorex".into());
    let prefix_ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !prefix_ok {
        errors.push(err(
            "search.index_prefix",
            format!("{prefix:?} must be 1 to 64 letters, digits, '-' or '_'"),
        ));
    }
    match raw.engine.as_deref().unwrap_or("postgres") {
        "postgres" => SearchConfig::default(),
        "meilisearch" => {
            let Some(url) = raw.meilisearch_url else {
                errors.push(err(
                    "search.meilisearch_url",
                    "is required with search.engine = \"meilisearch\"",
                ));
                return SearchConfig::default();
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                errors.push(err(
                    "search.meilisearch_url",
                    format!("{url:?} must start with http:// or https://"),
                ));
            }
            let api_key = (raw.api_key.is_some() || raw.api_key_file.is_some()).then(|| {
                secret(
                    errors,
                    "search.api_key",
                    raw.api_key,
                    raw.api_key_file.as_deref(),
                )
            });
            SearchConfig {
                meilisearch: Some(MeiliSettings {
                    url,
                    api_key,
                    index_prefix: prefix,
                }),
            }
        }
        other => {
            errors.push(err(
                "search.engine",
                format!("{other:?} is not one of postgres, meilisearch"),
            ));
            SearchConfig::default()
        }
    }
}

pub fn validate_worker(errors: &mut Vec<ConfigError>, raw: RawWorker) -> WorkerConfig {
    let listen = raw.listen.unwrap_or_else(|| "127.0.0.1:8082".into());
    let listen = listen.parse().unwrap_or_else(|_| {
        errors.push(err(
            "worker.listen",
            format!("{listen:?} is not an address:port such as 0.0.0.0:8082"),
        ));
        ([127, 0, 0, 1], 8082).into()
    });
    let mut number = |key: &str, value: Option<i64>, default: i64, min: i64, max: i64| {
        in_range(errors, key, value.unwrap_or(default), min, max) as u64
    };
    let settings = WorkerSettings {
        batch_size: number("worker.batch_size", raw.batch_size, 100, 1, 10_000) as usize,
        poll_interval: Duration::from_millis(number(
            "worker.poll_interval_ms",
            raw.poll_interval_ms,
            200,
            10,
            10_000,
        )),
        lease: Duration::from_secs(number(
            "worker.lease_seconds",
            raw.lease_seconds,
            60,
            1,
            3600,
        )),
        max_backoff: Duration::from_secs(number(
            "worker.max_backoff_seconds",
            raw.max_backoff_seconds,
            300,
            1,
            86_400,
        )),
    };
    WorkerConfig { listen, settings }
}
