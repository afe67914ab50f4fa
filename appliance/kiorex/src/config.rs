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
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: std::net::SocketAddr,
    pub base_url: String,
    pub max_body_bytes: usize,
    pub database_url: String,
    pub pool_size: u32,
    pub token_signing_key: String,
    pub token_ttl_seconds: i64,
    pub log_format: LogFormat,
    pub log_level: String,
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

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// Reads the file (if any) and the environment, and validates.
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, Vec<ConfigError>> {
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
    validate(raw)
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
        let Some((section, key)) = path.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            return Err(err(name, format!("{section} is not a section")));
        };
        section_table.insert(key, value);
    }
    Ok(())
}

fn validate(raw: Raw) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
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
    let database_url = secret(
        &mut errors,
        "database.url",
        raw.database.url,
        raw.database.url_file.as_deref(),
    );
    if !database_url.is_empty()
        && !database_url.starts_with("postgres://")
        && !database_url.starts_with("postgresql://")
    {
        errors.push(err(
            "database.url",
            "must be a PostgreSQL URL: postgres://user@host:5432/kiorex",
        ));
    }
    let token_signing_key = secret(
        &mut errors,
        "auth.token_signing_key",
        raw.auth.token_signing_key,
        raw.auth.token_signing_key_file.as_deref(),
    );
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
    let log_level = raw.log.level.unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
        errors.push(err(
            "log.level",
            format!("{log_level:?} is not one of error, warn, info, debug, trace"),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Config {
        listen,
        base_url,
        max_body_bytes: max_body_bytes as usize,
        database_url,
        pool_size: pool_size as u32,
        token_signing_key,
        token_ttl_seconds,
        log_format,
        log_level,
    })
}

fn in_range(errors: &mut Vec<ConfigError>, key: &str, value: i64, min: i64, max: i64) -> i64 {
    if !(min..=max).contains(&value) {
        errors.push(err(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    value.clamp(min, max)
}

/// A secret from its value or from `<key>_file`, never both; the file must not be readable by
/// other users.
fn secret(
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
    if meta.permissions().mode() & 0o077 != 0 {
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
