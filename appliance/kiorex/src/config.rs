//! Configuration: a TOML file, then `KIOREX_<SECTION>__<KEY>` environment variables, read into a
//! raw structure that refuses unknown keys, then validated into [`Config`] with messages that
//! name the key, what is wrong and what is expected. Each secret comes as a value or a `_file`,
//! never both; secret files must be readable by their owner only.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    identity: crate::identity_config::RawIdentity,
    #[serde(default)]
    ldap: crate::identity_config::RawLdap,
    #[serde(default)]
    oidc: crate::identity_config::RawOidc,
    #[serde(default)]
    edge: crate::edge_config::RawEdge,
    #[serde(default)]
    core: crate::edge_config::RawCore,
    #[serde(default)]
    objects: RawObjects,
    #[serde(default)]
    scan: RawScan,
    #[serde(default)]
    search: crate::search_config::RawSearch,
    #[serde(default)]
    worker: crate::search_config::RawWorker,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawObjects {
    endpoint: Option<String>,
    region: Option<String>,
    path_style: Option<bool>,
    access_key: Option<String>,
    access_key_file: Option<PathBuf>,
    secret_key: Option<String>,
    secret_key_file: Option<PathBuf>,
    ca_bundle: Option<PathBuf>,
    bucket: Option<String>,
    quarantine_bucket: Option<String>,
    key_encryption_keys: Option<String>,
    key_encryption_keys_file: Option<PathBuf>,
    max_upload_bytes: Option<i64>,
    retention_days: Option<i64>,
    spool_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScan {
    clamd: Option<String>,
    timeout_seconds: Option<i64>,
    hold_when_unavailable: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_listen: Option<String>,
    base_url: Option<String>,
    max_body_bytes: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    url_file: Option<PathBuf>,
    pool_size: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    token_signing_key: Option<String>,
    token_signing_key_file: Option<PathBuf>,
    token_ttl_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

/// One configuration key, as the reference documents it.
pub struct KeyDoc {
    pub key: &'static str,
    pub default: &'static str,
    pub secret: bool,
    pub meaning: &'static str,
}

/// Every key Kiorex reads. `kiorex config-reference` prints this table; a test keeps
/// `docs/ops/configuration.md` equal to it and checks that each key is accepted.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "server.listen",
        default: "127.0.0.1:8080",
        secret: false,
        meaning: "Address and port the core API listens on.",
    },
    KeyDoc {
        key: "server.admin_listen",
        default: "(none)",
        secret: false,
        meaning: "Core's management listener: /metrics (Prometheus) and /health/*, plain HTTP, for the management network only. Unset: no such listener.",
    },
    KeyDoc {
        key: "server.base_url",
        default: "http://<listen>",
        secret: false,
        meaning: "External URL of the API, used in FHIR links (Location, Bundle links).",
    },
    KeyDoc {
        key: "server.max_body_bytes",
        default: "16777216",
        secret: false,
        meaning: "Largest request body accepted; larger ones are refused with 413 before they are read.",
    },
    KeyDoc {
        key: "database.url",
        default: "(required)",
        secret: true,
        meaning: "PostgreSQL URL, e.g. postgres://kiorex@db:5432/kiorex.",
    },
    KeyDoc {
        key: "database.pool_size",
        default: "16",
        secret: false,
        meaning: "Connections kept to PostgreSQL (1 to 200).",
    },
    KeyDoc {
        key: "auth.token_signing_key",
        default: "(required by serve core)",
        secret: true,
        meaning: "Ed25519 private key (PKCS#8 PEM) that signs access tokens; create one with `kiorex keygen`.",
    },
    KeyDoc {
        key: "auth.token_ttl_seconds",
        default: "900",
        secret: false,
        meaning: "Lifetime of access tokens, 60 to 86400 seconds.",
    },
    KeyDoc {
        key: "log.format",
        default: "auto",
        secret: false,
        meaning: "auto (journald under systemd, JSON otherwise), json, text or journal.",
    },
    KeyDoc {
        key: "log.level",
        default: "info",
        secret: false,
        meaning: "error, warn, info, debug or trace. KIOREX_LOG overrides it with a full filter.",
    },
    KeyDoc {
        key: "objects.endpoint",
        default: "(none: documents off)",
        secret: false,
        meaning: "S3 endpoint of the Ceph RADOS gateway, e.g. https://rgw.data.hospital.local:7480. Setting it turns documents on.",
    },
    KeyDoc {
        key: "objects.region",
        default: "default",
        secret: false,
        meaning: "S3 region name (the RGW zonegroup).",
    },
    KeyDoc {
        key: "objects.path_style",
        default: "true",
        secret: false,
        meaning: "Path-style bucket addressing (endpoint/bucket/key), as RGW without wildcard DNS needs.",
    },
    KeyDoc {
        key: "objects.access_key",
        default: "(required with objects.endpoint)",
        secret: true,
        meaning: "S3 access key of Kiorex's RGW user.",
    },
    KeyDoc {
        key: "objects.secret_key",
        default: "(required with objects.endpoint)",
        secret: true,
        meaning: "S3 secret key of Kiorex's RGW user.",
    },
    KeyDoc {
        key: "objects.ca_bundle",
        default: "(system roots)",
        secret: false,
        meaning: "PEM file of the hospital CA that signed the RGW certificate. With it, Kiorex's HTTPS clients trust this file and the public web roots built in, instead of the operating system's store (the file is handed to the TLS stack as SSL_CERT_FILE); put any other private CA they need in it too.",
    },
    KeyDoc {
        key: "objects.bucket",
        default: "kiorex-documents",
        secret: false,
        meaning: "Bucket for documents; keys are facility/patient/category/uuid.",
    },
    KeyDoc {
        key: "objects.quarantine_bucket",
        default: "kiorex-quarantine",
        secret: false,
        meaning: "Bucket where infected uploads are kept for the security team.",
    },
    KeyDoc {
        key: "objects.key_encryption_keys",
        default: "(required with objects.endpoint)",
        secret: true,
        meaning: "Keyring of key-encryption keys, one `id:base64-32-bytes` a line, current first; create a line with `kiorex keygen --kek ID`.",
    },
    KeyDoc {
        key: "objects.max_upload_bytes",
        default: "209715200",
        secret: false,
        meaning: "Largest document accepted (1 KiB to 5 GiB); larger uploads are refused with KX-DOC-413.",
    },
    KeyDoc {
        key: "objects.retention_days",
        default: "90",
        secret: false,
        meaning: "Days a deleted document stays restorable before it may be purged (1 to 36500).",
    },
    KeyDoc {
        key: "objects.spool_dir",
        default: "(system temp dir)",
        secret: false,
        meaning: "Directory where uploads are written while they are checked and scanned; needs room for concurrent uploads.",
    },
    KeyDoc {
        key: "scan.clamd",
        default: "127.0.0.1:3310",
        secret: false,
        meaning: "host:port of clamd's TCP socket; every upload is scanned there before it is accepted.",
    },
    KeyDoc {
        key: "scan.timeout_seconds",
        default: "60",
        secret: false,
        meaning: "How long a scan may take before the upload is refused as retryable (1 to 3600).",
    },
    KeyDoc {
        key: "scan.hold_when_unavailable",
        default: "false",
        secret: false,
        meaning: "With clamd unreachable, hold uploads sealed in the quarantine bucket (202, not in the record) until `kiorex objects rescan` scans them, instead of refusing them with 503 KX-DOC-503.",
    },
];

/// Every key: the core ones and those of each feature's section.
pub fn all_keys() -> impl Iterator<Item = &'static KeyDoc> {
    KEYS.iter()
        .chain(crate::identity_config::IDENTITY_KEYS.iter())
        .chain(crate::edge_config::KEYS.iter())
        .chain(crate::search_config::KEYS.iter())
}

/// The configuration reference in Markdown.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated by `kiorex config-reference`; a test fails when this file and the binary disagree.\n\n\
         Kiorex reads the file given with `--config` (default `/etc/kiorex/kiorex.toml` when it exists), then \
         environment variables `KIOREX_<SECTION>__<KEY>`, which win. Unknown keys are refused. A secret is given \
         either as its value or as `<key>_file` naming a file readable only by its owner (mode 0600; 0640/0440 is \
         accepted for Kubernetes Secret volumes), never both.\n\n\
         | key | environment variable | default | meaning |\n|---|---|---|---|\n",
    );
    for k in all_keys() {
        let env = format!("KIOREX_{}", k.key.to_ascii_uppercase().replace('.', "__"));
        let (key, env) = if k.secret {
            (
                format!("`{0}` or `{0}_file`", k.key),
                format!("`{env}` or `{env}_FILE`"),
            )
        } else {
            (format!("`{}`", k.key), format!("`{env}`"))
        };
        out.push_str(&format!(
            "| {key} | {env} | {} | {} |\n",
            k.default, k.meaning
        ));
    }
    out
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: std::net::SocketAddr,
    /// `server.admin_listen`: /metrics and /health/* for the management network, when set.
    pub admin_listen: Option<std::net::SocketAddr>,
    pub base_url: String,
    pub max_body_bytes: usize,
    pub database_url: String,
    pub pool_size: u32,
    /// Only the roles that issue tokens need it (`serve core`).
    pub token_signing_key: Option<String>,
    pub token_ttl_seconds: i64,
    pub log_format: LogFormat,
    pub log_level: String,
    pub identity: kiorex_api::identity::IdentitySettings,
    /// `[edge]`: what `serve edge` reads.
    pub edge: crate::edge_config::EdgeConfig,
    /// `[core.internal]`: core's mutual-TLS listener for the edge, when configured.
    pub core_internal: Option<kiorex_edge::InternalSettings>,
    /// Documents; `None` when no object store is configured.
    pub objects: Option<ObjectsConfig>,
    /// `[search]`: the engine searches use.
    pub search: crate::search_config::SearchConfig,
    /// `[worker]`: what `serve worker` reads.
    pub worker: crate::search_config::WorkerConfig,
}

/// Where documents go and how they are checked.
#[derive(Debug, Clone)]
pub struct ObjectsConfig {
    pub s3: kiorex_objects::S3Settings,
    pub ca_bundle: Option<PathBuf>,
    pub keyring: String,
    pub max_upload_bytes: u64,
    pub retention_days: u32,
    pub spool_dir: Option<PathBuf>,
    pub clamd: String,
    pub scan_timeout_seconds: u64,
    /// `scan.hold_when_unavailable`.
    pub hold_when_unavailable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// journald when started by systemd (JOURNAL_STREAM set), JSON lines otherwise.
    Auto,
    Json,
    Text,
    Journal,
}

/// A configuration problem, said the way an administrator fixes it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

pub(crate) fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// Reads the file (if any) and the environment, and validates.
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, Vec<ConfigError>> {
    load_for(file, env, true)
}

/// The same, for `serve edge`: the edge has no database, so `database.url` is not required, and
/// it is refused when present (the edge must hold no database credentials).
pub fn load_for_edge(
    file: Option<&Path>,
    env: &[(String, String)],
) -> Result<Config, Vec<ConfigError>> {
    let config = load_for(file, env, false)?;
    let mut errors = Vec::new();
    if !config.database_url.is_empty() {
        errors.push(err(
            "database.url",
            "is set, but the edge must hold no database credentials (KX-CFG-002): give `serve edge` a configuration without [database]",
        ));
    }
    if config.token_signing_key.is_some() {
        errors.push(err(
            "auth.token_signing_key",
            "is set, but the edge must not be able to sign tokens (KX-CFG-002): give it edge.token_public_key_file only",
        ));
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn load_for(
    file: Option<&Path>,
    env: &[(String, String)],
    needs_database: bool,
) -> Result<Config, Vec<ConfigError>> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                vec![err(
                    &path.display().to_string(),
                    format!("cannot read the config file: {e}"),
                )]
            })?;
            text.parse::<toml::Table>().map_err(|e| {
                vec![err(
                    &path.display().to_string(),
                    format!("not valid TOML: {e}"),
                )]
            })?
        }
        None => toml::Table::new(),
    };
    apply_env(&mut table, env).map_err(|e| vec![e])?;
    let raw: Raw = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| vec![err("config", plain(&e.to_string()))])?;
    validate(raw, needs_database)
}

fn plain(message: &str) -> String {
    message
        .replace("unknown field", "unknown key")
        .trim()
        .to_owned()
}

/// `KIOREX_DATABASE__POOL_SIZE=32` sets `database.pool_size`. Values are read as TOML when they
/// parse as such (numbers, booleans), as strings otherwise.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(path) = name.strip_prefix("KIOREX_") else {
            continue;
        };
        // KIOREX_CORE__INTERNAL__LISTEN sets core.internal.listen.
        let mut names: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if names.len() < 2 {
            continue;
        }
        let key = names.pop().expect("two names at least");
        let value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let mut section_table = &mut *table;
        for section in names {
            let entry = section_table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(inner) = entry else {
                return Err(err(name, format!("{section} is not a section")));
            };
            section_table = inner;
        }
        section_table.insert(key, value);
    }
    Ok(())
}

fn validate(raw: Raw, needs_database: bool) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let edge = crate::edge_config::validate_edge(raw.edge, &mut errors);
    let core_internal = crate::edge_config::validate_internal(raw.core, &mut errors);
    let listen = raw.server.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = listen
        .parse()
        .map_err(|_| {
            err(
                "server.listen",
                format!("{listen:?} is not an address:port such as 0.0.0.0:8080"),
            )
        })
        .unwrap_or_else(|e| {
            errors.push(e);
            ([127, 0, 0, 1], 8080).into()
        });
    let admin_listen =
        crate::edge_config::address(&mut errors, "server.admin_listen", raw.server.admin_listen);
    let base_url = raw
        .server
        .base_url
        .unwrap_or_else(|| format!("http://{listen}"));
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        errors.push(err(
            "server.base_url",
            format!("{base_url:?} must start with http:// or https://"),
        ));
    }
    let max_body_bytes = in_range(
        &mut errors,
        "server.max_body_bytes",
        raw.server.max_body_bytes.unwrap_or(16 * 1024 * 1024),
        1024,
        1 << 30,
    );
    let pool_size = in_range(
        &mut errors,
        "database.pool_size",
        raw.database.pool_size.unwrap_or(16),
        1,
        200,
    );
    let token_ttl_seconds = in_range(
        &mut errors,
        "auth.token_ttl_seconds",
        raw.auth.token_ttl_seconds.unwrap_or(900),
        60,
        86_400,
    );
    let database_url =
        if needs_database || raw.database.url.is_some() || raw.database.url_file.is_some() {
            secret(
                &mut errors,
                "database.url",
                raw.database.url,
                raw.database.url_file.as_deref(),
            )
        } else {
            String::new()
        };
    if !database_url.is_empty()
        && !database_url.starts_with("postgres://")
        && !database_url.starts_with("postgresql://")
    {
        errors.push(err(
            "database.url",
            "must be a PostgreSQL URL: postgres://user@host:5432/kiorex",
        ));
    }
    let token_signing_key = match (
        &raw.auth.token_signing_key,
        &raw.auth.token_signing_key_file,
    ) {
        (None, None) => None,
        _ => Some(secret(
            &mut errors,
            "auth.token_signing_key",
            raw.auth.token_signing_key,
            raw.auth.token_signing_key_file.as_deref(),
        )),
    };
    let log_format = match raw.log.format.as_deref().unwrap_or("auto") {
        "auto" => LogFormat::Auto,
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        "journal" => LogFormat::Journal,
        other => {
            errors.push(err(
                "log.format",
                format!("{other:?} is not one of auto, json, text, journal"),
            ));
            LogFormat::Auto
        }
    };
    let identity =
        crate::identity_config::validate_identity(&mut errors, raw.identity, raw.ldap, raw.oidc);
    let log_level = raw.log.level.unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
        errors.push(err(
            "log.level",
            format!("{log_level:?} is not one of error, warn, info, debug, trace"),
        ));
    }
    let objects = objects(&mut errors, raw.objects, raw.scan);
    let search = crate::search_config::validate_search(&mut errors, raw.search);
    let worker = crate::search_config::validate_worker(&mut errors, raw.worker);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Config {
        listen,
        admin_listen,
        base_url,
        max_body_bytes: max_body_bytes as usize,
        database_url,
        pool_size: pool_size as u32,
        token_signing_key,
        token_ttl_seconds,
        log_format,
        log_level,
        identity,
        edge,
        core_internal,
        objects,
        search,
        worker,
    })
}

fn objects(errors: &mut Vec<ConfigError>, raw: RawObjects, scan: RawScan) -> Option<ObjectsConfig> {
    let endpoint = raw.endpoint?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        errors.push(err(
            "objects.endpoint",
            format!("{endpoint:?} must start with http:// or https://"),
        ));
    }
    let access_key = secret(
        errors,
        "objects.access_key",
        raw.access_key,
        raw.access_key_file.as_deref(),
    );
    let secret_key = secret(
        errors,
        "objects.secret_key",
        raw.secret_key,
        raw.secret_key_file.as_deref(),
    );
    let keyring = secret(
        errors,
        "objects.key_encryption_keys",
        raw.key_encryption_keys,
        raw.key_encryption_keys_file.as_deref(),
    );
    if !keyring.is_empty()
        && let Err(e) = kiorex_objects::Keyring::parse(&keyring)
    {
        errors.push(err("objects.key_encryption_keys", e.to_string()));
    }
    if let Some(ca) = &raw.ca_bundle {
        const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";
        match std::fs::read(ca) {
            Err(e) => errors.push(err(
                "objects.ca_bundle",
                format!("{} is not a readable file: {e}", ca.display()),
            )),
            // A bundle without a certificate would leave RGW untrusted with a puzzling error later.
            Ok(bytes) if !bytes.windows(PEM.len()).any(|w| w == PEM) => errors.push(err(
                "objects.ca_bundle",
                format!(
                    "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    ca.display()
                ),
            )),
            Ok(_) => {}
        }
    }
    let bucket = raw.bucket.unwrap_or_else(|| "kiorex-documents".into());
    let quarantine_bucket = raw
        .quarantine_bucket
        .unwrap_or_else(|| "kiorex-quarantine".into());
    for (key, name) in [
        ("objects.bucket", &bucket),
        ("objects.quarantine_bucket", &quarantine_bucket),
    ] {
        let valid = (3..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            errors.push(err(
                key,
                format!(
                    "{name:?} is not a bucket name (3 to 63 lower-case letters, digits, '-' or '.')"
                ),
            ));
        }
    }
    if bucket == quarantine_bucket {
        errors.push(err(
            "objects.quarantine_bucket",
            "must differ from objects.bucket",
        ));
    }
    let max_upload_bytes = in_range(
        errors,
        "objects.max_upload_bytes",
        raw.max_upload_bytes.unwrap_or(200 * 1024 * 1024),
        1024,
        5 << 30,
    );
    let retention_days = in_range(
        errors,
        "objects.retention_days",
        raw.retention_days.unwrap_or(90),
        1,
        36_500,
    );
    let scan_timeout_seconds = in_range(
        errors,
        "scan.timeout_seconds",
        scan.timeout_seconds.unwrap_or(60),
        1,
        3600,
    );
    Some(ObjectsConfig {
        s3: kiorex_objects::S3Settings {
            endpoint,
            region: raw.region.unwrap_or_else(|| "default".into()),
            path_style: raw.path_style.unwrap_or(true),
            access_key,
            secret_key,
            bucket,
            quarantine_bucket,
        },
        ca_bundle: raw.ca_bundle,
        keyring,
        max_upload_bytes: max_upload_bytes as u64,
        retention_days: retention_days as u32,
        spool_dir: raw.spool_dir,
        clamd: scan.clamd.unwrap_or_else(|| "127.0.0.1:3310".into()),
        scan_timeout_seconds: scan_timeout_seconds as u64,
        hold_when_unavailable: scan.hold_when_unavailable.unwrap_or(false),
    })
}

pub(crate) fn in_range(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: i64,
    min: i64,
    max: i64,
) -> i64 {
    if !(min..=max).contains(&value) {
        errors.push(err(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    value.clamp(min, max)
}

/// A secret from its value or from `<key>_file`, never both; the file must not be readable by
/// other users (group read is allowed, for Kubernetes Secret volumes).
pub(crate) fn secret(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<String>,
    file: Option<&Path>,
) -> String {
    match (value, file) {
        (Some(_), Some(_)) => {
            errors.push(err(
                key,
                format!("set either {key} or {key}_file, not both"),
            ));
            String::new()
        }
        (Some(v), None) => v,
        (None, Some(path)) => match read_secret_file(path) {
            Ok(v) => v,
            Err(problem) => {
                errors.push(err(&format!("{key}_file"), problem));
                String::new()
            }
        },
        (None, None) => {
            errors.push(err(
                key,
                format!(
                    "is required (set {key} or {key}_file, or KIOREX_{}__{}_FILE)",
                    section_of(key),
                    name_of(key)
                ),
            ));
            String::new()
        }
    }
}

/// A secret that may be left out altogether.
pub(crate) fn optional_secret(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<String>,
    file: Option<&Path>,
) -> Option<String> {
    if value.is_none() && file.is_none() {
        return None;
    }
    Some(secret(errors, key, value, file))
}

fn section_of(key: &str) -> String {
    key.split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

fn name_of(key: &str) -> String {
    key.split('.')
        .nth(1)
        .unwrap_or_default()
        .to_ascii_uppercase()
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // Group read is allowed: Kubernetes mounts Secret files 0440 with the pod's fsGroup, the only
    // way a non-root container reads them. Anything more (others, group write) is refused.
    if meta.permissions().mode() & 0o037 != 0 {
        return Err(format!(
            "{} is readable by other users; run: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("KIOREX_DATABASE__URL", "postgres://k@localhost/k"),
        ("KIOREX_AUTH__TOKEN_SIGNING_KEY", "pem"),
    ];

    /// What documents need besides the minimal settings.
    const OBJECTS: &[(&str, &str)] = &[
        ("KIOREX_OBJECTS__ENDPOINT", "http://127.0.0.1:7480"),
        ("KIOREX_OBJECTS__ACCESS_KEY", "ak"),
        ("KIOREX_OBJECTS__SECRET_KEY", "sk"),
        (
            "KIOREX_OBJECTS__KEY_ENCRYPTION_KEYS",
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
    ];

    #[test]
    fn a_ca_bundle_must_hold_a_certificate_and_holding_is_off_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.der");
        std::fs::write(&not_pem, [0x30, 0x82, 0x01]).unwrap();
        let mut pairs = MINIMAL.to_vec();
        pairs.extend_from_slice(OBJECTS);
        let objects = load(None, &env(&pairs)).unwrap().objects.unwrap();
        assert!(
            !objects.hold_when_unavailable,
            "uploads are refused by default"
        );
        let path = not_pem.display().to_string();
        pairs.push(("KIOREX_OBJECTS__CA_BUNDLE", &path));
        let errors = load(None, &env(&pairs)).unwrap_err();
        assert!(
            errors[0].to_string().contains("holds no PEM certificate"),
            "{errors:?}"
        );
    }

    #[test]
    fn documents_are_off_without_an_endpoint_and_need_keys_with_one() {
        assert!(load(None, &env(MINIMAL)).unwrap().objects.is_none());
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KIOREX_OBJECTS__ENDPOINT", "http://127.0.0.1:7480"));
        let errors = load(None, &env(&pairs)).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|e| e.starts_with("objects.key_encryption_keys")),
            "{text:?}"
        );
        let mut pairs = MINIMAL.to_vec();
        pairs.extend_from_slice(OBJECTS);
        let objects = load(None, &env(&pairs)).unwrap().objects.unwrap();
        assert_eq!(objects.max_upload_bytes, 200 * 1024 * 1024);
        assert_eq!(objects.s3.bucket, "kiorex-documents");
        pairs.push(("KIOREX_OBJECTS__KEY_ENCRYPTION_KEYS", "k1:short"));
        pairs.retain(|(k, v)| *k != "KIOREX_OBJECTS__KEY_ENCRYPTION_KEYS" || *v == "k1:short");
        let errors = load(None, &env(&pairs)).unwrap_err();
        assert!(
            errors[0].to_string().contains("keyring line 1"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn environment_alone_is_enough_and_numbers_are_numbers() {
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KIOREX_DATABASE__POOL_SIZE", "32"));
        let config = load(None, &env(&pairs)).unwrap();
        assert_eq!(config.pool_size, 32);
        assert_eq!(config.listen.port(), 8080);
    }

    #[test]
    fn unknown_key_is_refused_by_name() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[database]\npool_sise = 3").unwrap();
        let errors = load(Some(file.path()), &env(MINIMAL)).unwrap_err();
        assert!(errors[0].to_string().contains("pool_sise"), "{}", errors[0]);
    }

    #[test]
    fn out_of_range_value_names_key_and_range() {
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KIOREX_DATABASE__POOL_SIZE", "0"));
        let errors = load(None, &env(&pairs)).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "database.pool_size: must be between 1 and 200, got 0"
        );
    }

    #[test]
    fn secret_value_and_file_together_are_refused() {
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KIOREX_DATABASE__URL_FILE", "/etc/kiorex/db"));
        let errors = load(None, &env(&pairs)).unwrap_err();
        assert!(errors.iter().any(|e| e.to_string().contains("not both")));
    }

    #[test]
    fn world_readable_secret_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let pairs = env(&[
            ("KIOREX_DATABASE__URL", "postgres://k@h/k"),
            (
                "KIOREX_AUTH__TOKEN_SIGNING_KEY_FILE",
                file.path().to_str().unwrap(),
            ),
        ]);
        let errors = load(None, &pairs).unwrap_err();
        assert!(errors[0].to_string().contains("chmod 600"), "{}", errors[0]);
    }

    #[test]
    fn every_documented_key_is_accepted() {
        let ca =
            std::env::temp_dir().join(format!("kiorex-config-test-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let ca = ca.display().to_string();
        for k in all_keys() {
            let section = k.key.split('.').next().unwrap();
            let mut pairs = MINIMAL.to_vec();
            // A directory or IdP key is only valid beside the keys its section requires.
            match section {
                "ldap" => pairs.extend([
                    ("KIOREX_LDAP__URL", "ldaps://dc.example:636"),
                    ("KIOREX_LDAP__BIND_DN", "cn=svc"),
                    ("KIOREX_LDAP__BIND_PASSWORD", "pw"),
                    ("KIOREX_LDAP__USER_BASE", "ou=Staff"),
                ]),
                "oidc" => pairs.extend([
                    ("KIOREX_OIDC__ISSUER_URL", "https://idp.example"),
                    ("KIOREX_OIDC__CLIENT_ID", "kiorex"),
                    ("KIOREX_OIDC__REDIRECT_URL", "https://kiorex.example/cb"),
                ]),
                _ => {}
            }
            let var = format!("KIOREX_{}", k.key.to_ascii_uppercase().replace('.', "__"));
            let value = match k.key {
                "ldap.ca_file" | "oidc.ca_file" => ca.as_str(),
                "server.listen" | "server.admin_listen" => "127.0.0.1:9000",
                "server.base_url" => "https://kiorex.example",
                "log.format" => "json",
                "log.level" => "debug",
                "database.url" => "postgres://a@b/c",
                "auth.token_signing_key" => "pem",
                "server.max_body_bytes" => "2048",
                "objects.endpoint" => "http://127.0.0.1:7480",
                "objects.path_style" => "true",
                "objects.region" => "default",
                "objects.access_key" | "objects.secret_key" => "key",
                "objects.spool_dir" => "/var/tmp",
                "objects.ca_bundle" => ca.as_str(),
                "objects.bucket" | "objects.quarantine_bucket" => "kiorex-other",
                "objects.key_encryption_keys" => "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "objects.max_upload_bytes" => "4096",
                "scan.clamd" => "127.0.0.1:3310",
                "scan.hold_when_unavailable" => "true",
                "search.engine" => "postgres",
                "search.api_key" => "key",
                "search.index_prefix" => "site-a",
                "worker.listen" => "127.0.0.1:9001",
                "edge.listen" | "edge.admin_listen" => "127.0.0.1:9443",
                "edge.allow_tls12" | "edge.server_timing" => "true",
                "edge.core_url" => "https://127.0.0.1:9444",
                "edge.routes" => "[{prefix = \"/fhir\", methods = [\"GET\"], scope = \"fhir\"}]",
                "edge.max_header_bytes" => "8192",
                "edge.max_body_bytes" => "4096",
                k if k.ends_with("_file") => "/etc/kiorex/x.pem",
                "core.internal.listen" => "127.0.0.1:9445",
                "core.internal.allowed_client_names" => "[\"edge.kiorex.internal\"]",
                "ldap.start_tls" => "false",
                "ldap.url" => "ldaps://dc2.example:636",
                "ldap.user_filter" => "(uid={username})",
                "ldap.disabled_attribute" => "nsAccountLock=true",
                "identity.trusted_proxies" => "127.0.0.1",
                "oidc.scopes" => "openid groups",
                "oidc.clock_skew_seconds" | "ldap.timeout_seconds" => "30",
                "identity.session_absolute_hours" => "12",
                key if key.ends_with("_url") => "https://x.example/y",
                key if key.starts_with("ldap.") || key.starts_with("oidc.") => {
                    if matches!(key, "ldap.allow_insecure" | "ldap.active_directory") {
                        "true"
                    } else {
                        "value"
                    }
                }
                "identity.require_care_relationship" => "false",
                "identity.client_token_ttl_seconds" | "identity.lockout_max_seconds" => "300",
                key if key.starts_with("identity.") => "10",
                _ => "100",
            };
            if section == "objects" {
                pairs.extend_from_slice(OBJECTS);
            }
            pairs.retain(|(k, _)| *k != var);
            pairs.push((&var, value));
            // [core.internal] is all or nothing: give the other keys too.
            if k.key.starts_with("core.internal.") {
                for (other, v) in [
                    ("KIOREX_CORE__INTERNAL__LISTEN", "127.0.0.1:9445"),
                    ("KIOREX_CORE__INTERNAL__CERT_FILE", "/etc/kiorex/c.pem"),
                    ("KIOREX_CORE__INTERNAL__KEY_FILE", "/etc/kiorex/k.pem"),
                    (
                        "KIOREX_CORE__INTERNAL__CLIENT_CA_FILE",
                        "/etc/kiorex/ca.pem",
                    ),
                ] {
                    if other != var {
                        pairs.push((other, v));
                    }
                }
            }
            assert!(
                load(None, &env(&pairs)).is_ok(),
                "{} is documented but refused",
                k.key
            );
        }
    }

    #[test]
    fn the_identity_examples_in_the_docs_are_valid_configurations() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ops/identity.md"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        for name in ["ldap-bind-password", "oidc-client-secret"] {
            let path = dir.path().join(name);
            std::fs::write(&path, "s3cret").unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        std::fs::write(
            dir.path().join("hospital-ca.pem"),
            "-----BEGIN CERTIFICATE-----\n",
        )
        .unwrap();
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert!(blocks.len() >= 4, "the examples are missing");
        for block in blocks {
            let text = block
                .replace(
                    "/etc/kiorex/secrets/",
                    &format!("{}/", dir.path().display()),
                )
                .replace("/etc/kiorex/ca/", &format!("{}/", dir.path().display()));
            let file = dir.path().join("example.toml");
            std::fs::write(&file, &text).unwrap();
            if let Err(errors) = load(Some(&file), &env(MINIMAL)) {
                panic!("docs/ops/identity.md example refused: {errors:?}\n{text}");
            }
        }
    }

    #[test]
    fn the_reference_in_docs_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/ops/configuration.md");
        if std::env::var_os("KIOREX_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, reference_markdown()).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == reference_markdown(),
            "docs/ops/configuration.md is out of date: run `kiorex config-reference > docs/ops/configuration.md`"
        );
    }

    #[test]
    fn group_readable_secret_file_is_accepted_for_kubernetes() {
        use std::os::unix::fs::PermissionsExt;
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "postgres://k@h/k\n").unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o440)).unwrap();
        let pairs = env(&[("KIOREX_DATABASE__URL_FILE", file.path().to_str().unwrap())]);
        assert_eq!(load(None, &pairs).unwrap().database_url, "postgres://k@h/k");
    }

    #[test]
    fn missing_secret_says_how_to_set_it() {
        let errors = load(None, &[]).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains("KIOREX_DATABASE__URL_FILE")),
            "{errors:?}"
        );
    }
}
