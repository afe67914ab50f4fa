//! The `[edge]` and `[core.internal]` sections: raw keys, their reference, and validation into
//! the edge crate's typed settings. Loaded with the rest of the configuration; what only
//! `serve edge` needs (certificate files, core's address) is required when the edge starts.

use crate::config::{ConfigError, KeyDoc, err};
use kiorex_edge::settings::{Limits, Route, RouteAuth, default_routes};
use kiorex_edge::{EdgeSettings, InternalSettings};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    listen: Option<String>,
    admin_listen: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    ocsp_response_file: Option<PathBuf>,
    allow_tls12: Option<bool>,
    reload_interval_seconds: Option<i64>,
    hsts_max_age_seconds: Option<i64>,
    server_timing: Option<bool>,
    core_url: Option<String>,
    core_ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    token_public_key_file: Option<PathBuf>,
    routes: Option<Vec<RawRoute>>,
    max_connections: Option<i64>,
    max_header_bytes: Option<i64>,
    max_body_bytes: Option<i64>,
    header_read_timeout_seconds: Option<i64>,
    body_read_timeout_seconds: Option<i64>,
    upstream_timeout_seconds: Option<i64>,
    per_ip_per_second: Option<i64>,
    per_ip_burst: Option<i64>,
    per_client_per_second: Option<i64>,
    per_client_burst: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    methods: Vec<String>,
    /// Absent: no token checked at the edge; "fhir": derived from the path; else a SMART scope.
    scope: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCore {
    internal: Option<RawInternal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInternal {
    listen: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    allowed_client_names: Option<Vec<String>>,
    reload_interval_seconds: Option<i64>,
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "edge.listen",
        default: "0.0.0.0:8443",
        secret: false,
        meaning: "Address and port of the edge's public TLS listener (`serve edge`).",
    },
    KeyDoc {
        key: "edge.admin_listen",
        default: "(off)",
        secret: false,
        meaning: "Plain-HTTP listener for `/metrics` and `/health/*`, for the management network only.",
    },
    KeyDoc {
        key: "edge.cert_file",
        default: "(required by serve edge)",
        secret: false,
        meaning: "The edge's certificate chain (PEM, leaf first). Reloaded when it changes.",
    },
    KeyDoc {
        key: "edge.key_file",
        default: "(required by serve edge)",
        secret: false,
        meaning: "The edge's private key (PEM, mode 0600). Reloaded when it changes.",
    },
    KeyDoc {
        key: "edge.ocsp_response_file",
        default: "(no stapling)",
        secret: false,
        meaning: "A DER OCSP response for the edge's certificate, refreshed by a management-zone job (the edge fetches nothing itself). Stapled while it is successful, \"good\", for this certificate and current; re-read when it changes.",
    },
    KeyDoc {
        key: "edge.allow_tls12",
        default: "false",
        secret: false,
        meaning: "Also offer TLS 1.2 (ECDHE with AES-GCM or ChaCha20-Poly1305 only). TLS 1.3 is always offered.",
    },
    KeyDoc {
        key: "edge.reload_interval_seconds",
        default: "5",
        secret: false,
        meaning: "How often the certificate files are checked for a change (1 to 3600).",
    },
    KeyDoc {
        key: "edge.hsts_max_age_seconds",
        default: "31536000",
        secret: false,
        meaning: "`max-age` of the Strict-Transport-Security header.",
    },
    KeyDoc {
        key: "edge.server_timing",
        default: "false",
        secret: false,
        meaning: "Tell callers how long core took, in a `Server-Timing: core;dur=<ms>` header on forwarded answers, so that a load test can separate the edge's share from core's. Off on a site: it hands the internet a timing of the inside.",
    },
    KeyDoc {
        key: "edge.core_url",
        default: "(required by serve edge)",
        secret: false,
        meaning: "Core's internal listener, e.g. https://10.20.0.10:8443 (the name or IP address in core's certificate).",
    },
    KeyDoc {
        key: "edge.core_ca_file",
        default: "(required by serve edge)",
        secret: false,
        meaning: "The internal CA (PEM) that signed core's internal certificate.",
    },
    KeyDoc {
        key: "edge.client_cert_file",
        default: "(required by serve edge)",
        secret: false,
        meaning: "The edge's client certificate for core (PEM), from the internal CA.",
    },
    KeyDoc {
        key: "edge.client_key_file",
        default: "(required by serve edge)",
        secret: false,
        meaning: "The edge's client key for core (PEM, mode 0600).",
    },
    KeyDoc {
        key: "edge.token_public_key_file",
        default: "(required by serve edge)",
        secret: false,
        meaning: "Core's token-signing PUBLIC key (SPKI PEM; `kiorex keygen` prints where it is written). The edge never holds the private key.",
    },
    KeyDoc {
        key: "edge.routes",
        default: "(partner FHIR API)",
        secret: false,
        meaning: "The allow-list: `[[edge.routes]]` with `prefix`, `methods` and `scope` (absent: no token; \"fhir\": derived from the path; or a SMART scope). Everything else is 404 at the edge.",
    },
    KeyDoc {
        key: "edge.max_connections",
        default: "1024",
        secret: false,
        meaning: "Client connections open at once; more are closed at once.",
    },
    KeyDoc {
        key: "edge.max_header_bytes",
        default: "16384",
        secret: false,
        meaning: "Largest request head (8192 to 1048576); larger ones get 431.",
    },
    KeyDoc {
        key: "edge.max_body_bytes",
        default: "16777216",
        secret: false,
        meaning: "Largest request body; an announced larger one is refused before it is read, an unannounced one is cut off at this size.",
    },
    KeyDoc {
        key: "edge.header_read_timeout_seconds",
        default: "10",
        secret: false,
        meaning: "Time for the TLS handshake and for the request head (slowloris defence).",
    },
    KeyDoc {
        key: "edge.body_read_timeout_seconds",
        default: "60",
        secret: false,
        meaning: "Time for the whole request body.",
    },
    KeyDoc {
        key: "edge.upstream_timeout_seconds",
        default: "30",
        secret: false,
        meaning: "Time core has to answer.",
    },
    KeyDoc {
        key: "edge.per_ip_per_second",
        default: "50",
        secret: false,
        meaning: "Requests per second from one source address (sustained).",
    },
    KeyDoc {
        key: "edge.per_ip_burst",
        default: "100",
        secret: false,
        meaning: "Requests one source address may send at once before the rate applies.",
    },
    KeyDoc {
        key: "edge.per_client_per_second",
        default: "100",
        secret: false,
        meaning: "Requests per second of one partner client (the token's client_id).",
    },
    KeyDoc {
        key: "edge.per_client_burst",
        default: "200",
        secret: false,
        meaning: "Burst of one partner client.",
    },
    KeyDoc {
        key: "core.internal.listen",
        default: "(off)",
        secret: false,
        meaning: "Core's internal mutual-TLS listener for the edge, e.g. 10.20.0.10:8443. Setting it requires the three files below.",
    },
    KeyDoc {
        key: "core.internal.cert_file",
        default: "(required with listen)",
        secret: false,
        meaning: "Core's internal certificate chain (PEM). Reloaded when it changes.",
    },
    KeyDoc {
        key: "core.internal.key_file",
        default: "(required with listen)",
        secret: false,
        meaning: "Core's internal private key (PEM, mode 0600).",
    },
    KeyDoc {
        key: "core.internal.client_ca_file",
        default: "(required with listen)",
        secret: false,
        meaning: "The internal CA (PEM); only client certificates it signed, and not expired, complete the handshake.",
    },
    KeyDoc {
        key: "core.internal.allowed_client_names",
        default: "[]",
        secret: false,
        meaning: "DNS names of which the client certificate must carry one, e.g. [\"edge.kiorex.internal\"]; empty accepts any certificate from the CA.",
    },
    KeyDoc {
        key: "core.internal.reload_interval_seconds",
        default: "5",
        secret: false,
        meaning: "How often the internal certificate files are checked for a change.",
    },
];

/// The `[edge]` section, checked for types and ranges; what is required only to serve the edge
/// is checked by [`EdgeConfig::settings`].
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    listen: SocketAddr,
    admin_listen: Option<SocketAddr>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    ocsp_response_file: Option<PathBuf>,
    allow_tls12: bool,
    reload_interval: Duration,
    hsts_max_age: u64,
    server_timing: bool,
    core_url: Option<http::Uri>,
    core_ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    token_public_key_file: Option<PathBuf>,
    routes: Vec<Route>,
    limits: Limits,
}

pub(crate) fn address(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<String>,
) -> Option<SocketAddr> {
    let value = value?;
    value
        .parse()
        .map_err(|_| {
            errors.push(err(
                key,
                format!("{value:?} is not an address:port such as 0.0.0.0:8443"),
            ))
        })
        .ok()
}

fn number(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
) -> u64 {
    let value = value.unwrap_or(default);
    if !(min..=max).contains(&value) {
        errors.push(err(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    value.clamp(min, max) as u64
}

fn routes(errors: &mut Vec<ConfigError>, raw: Option<Vec<RawRoute>>) -> Vec<Route> {
    let Some(raw) = raw else {
        return default_routes();
    };
    raw.into_iter()
        .filter_map(|r| {
            if !r.prefix.starts_with('/') || r.prefix.contains("..") {
                errors.push(err("edge.routes", format!("prefix {:?} must be an absolute path such as /fhir", r.prefix)));
                return None;
            }
            let methods = r
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase().parse::<http::Method>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| errors.push(err("edge.routes", format!("methods {:?} of {} are not HTTP methods", r.methods, r.prefix))))
                .ok()?;
            let auth = match r.scope.as_deref() {
                None => RouteAuth::Public,
                Some("fhir") => RouteAuth::Fhir,
                Some(s) if s.starts_with("system/") && s.contains('.') => RouteAuth::Scope(s.to_owned()),
                Some(s) => {
                    errors.push(err("edge.routes", format!("scope {s:?} of {} must be \"fhir\" or a scope such as system/Patient.read", r.prefix)));
                    return None;
                }
            };
            Some(Route { prefix: r.prefix, methods, auth })
        })
        .collect()
}

pub fn validate_edge(raw: RawEdge, errors: &mut Vec<ConfigError>) -> EdgeConfig {
    let listen = address(
        errors,
        "edge.listen",
        Some(raw.listen.unwrap_or_else(|| "0.0.0.0:8443".into())),
    )
    .unwrap_or_else(|| ([0, 0, 0, 0], 8443).into());
    let admin_listen = address(errors, "edge.admin_listen", raw.admin_listen);
    let core_url = raw.core_url.and_then(|u| match u.parse::<http::Uri>() {
        Ok(uri)
            if uri.scheme_str() == Some("https") && uri.host().is_some() && uri.path() == "/" =>
        {
            Some(uri)
        }
        _ => {
            errors.push(err(
                "edge.core_url",
                format!("{u:?} must be https://host:port of core's internal listener"),
            ));
            None
        }
    });
    let limits = Limits {
        max_connections: number(
            errors,
            "edge.max_connections",
            raw.max_connections,
            1024,
            1,
            1_000_000,
        ) as usize,
        max_header_bytes: number(
            errors,
            "edge.max_header_bytes",
            raw.max_header_bytes,
            16 * 1024,
            8192,
            1 << 20,
        ) as usize,
        max_body_bytes: number(
            errors,
            "edge.max_body_bytes",
            raw.max_body_bytes,
            16 * 1024 * 1024,
            1024,
            1 << 30,
        ) as usize,
        header_read_timeout: Duration::from_secs(number(
            errors,
            "edge.header_read_timeout_seconds",
            raw.header_read_timeout_seconds,
            10,
            1,
            300,
        )),
        body_read_timeout: Duration::from_secs(number(
            errors,
            "edge.body_read_timeout_seconds",
            raw.body_read_timeout_seconds,
            60,
            1,
            3600,
        )),
        upstream_timeout: Duration::from_secs(number(
            errors,
            "edge.upstream_timeout_seconds",
            raw.upstream_timeout_seconds,
            30,
            1,
            3600,
        )),
        per_ip_per_second: number(
            errors,
            "edge.per_ip_per_second",
            raw.per_ip_per_second,
            50,
            1,
            1_000_000,
        ) as u32,
        per_ip_burst: number(
            errors,
            "edge.per_ip_burst",
            raw.per_ip_burst,
            100,
            1,
            1_000_000,
        ) as u32,
        per_client_per_second: number(
            errors,
            "edge.per_client_per_second",
            raw.per_client_per_second,
            100,
            1,
            1_000_000,
        ) as u32,
        per_client_burst: number(
            errors,
            "edge.per_client_burst",
            raw.per_client_burst,
            200,
            1,
            1_000_000,
        ) as u32,
    };
    EdgeConfig {
        listen,
        admin_listen,
        cert_file: raw.cert_file,
        key_file: raw.key_file,
        ocsp_response_file: raw.ocsp_response_file,
        allow_tls12: raw.allow_tls12.unwrap_or(false),
        reload_interval: Duration::from_secs(number(
            errors,
            "edge.reload_interval_seconds",
            raw.reload_interval_seconds,
            5,
            1,
            3600,
        )),
        hsts_max_age: number(
            errors,
            "edge.hsts_max_age_seconds",
            raw.hsts_max_age_seconds,
            31_536_000,
            0,
            63_072_000,
        ),
        server_timing: raw.server_timing.unwrap_or(false),
        core_url,
        core_ca_file: raw.core_ca_file,
        client_cert_file: raw.client_cert_file,
        client_key_file: raw.client_key_file,
        token_public_key_file: raw.token_public_key_file,
        routes: routes(errors, raw.routes),
        limits,
    }
}

fn required<T: Clone>(errors: &mut Vec<ConfigError>, key: &str, value: &Option<T>) -> Option<T> {
    if value.is_none() {
        errors.push(err(
            key,
            format!(
                "is required to serve the edge (set {key} or KIOREX_{})",
                key.to_ascii_uppercase().replace('.', "__")
            ),
        ));
    }
    value.clone()
}

/// A private key file must not be readable by other users.
fn private(errors: &mut Vec<ConfigError>, key: &str, path: &Option<PathBuf>) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(path) = path
        && let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o037 != 0
    {
        errors.push(err(
            key,
            format!(
                "{} is readable by other users; run: chmod 600 {}",
                path.display(),
                path.display()
            ),
        ));
    }
}

impl EdgeConfig {
    /// Everything `serve edge` needs, or what is missing.
    pub fn settings(&self) -> Result<EdgeSettings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let cert_file = required(&mut errors, "edge.cert_file", &self.cert_file);
        let key_file = required(&mut errors, "edge.key_file", &self.key_file);
        let core_url = required(&mut errors, "edge.core_url", &self.core_url);
        let core_ca_file = required(&mut errors, "edge.core_ca_file", &self.core_ca_file);
        let client_cert_file =
            required(&mut errors, "edge.client_cert_file", &self.client_cert_file);
        let client_key_file = required(&mut errors, "edge.client_key_file", &self.client_key_file);
        let public_key_file = required(
            &mut errors,
            "edge.token_public_key_file",
            &self.token_public_key_file,
        );
        private(&mut errors, "edge.key_file", &self.key_file);
        private(&mut errors, "edge.client_key_file", &self.client_key_file);
        let token_public_key = public_key_file.as_ref().and_then(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| {
                    errors.push(err(
                        "edge.token_public_key_file",
                        format!("cannot read {}: {e}", p.display()),
                    ))
                })
                .ok()
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(EdgeSettings {
            listen: self.listen,
            admin_listen: self.admin_listen,
            cert_file: cert_file.expect("checked"),
            key_file: key_file.expect("checked"),
            ocsp_response_file: self.ocsp_response_file.clone(),
            allow_tls12: self.allow_tls12,
            reload_interval: self.reload_interval,
            hsts_max_age: self.hsts_max_age,
            server_timing: self.server_timing,
            core_url: core_url.expect("checked"),
            core_ca_file: core_ca_file.expect("checked"),
            client_cert_file: client_cert_file.expect("checked"),
            client_key_file: client_key_file.expect("checked"),
            token_public_key: token_public_key.expect("checked"),
            routes: self.routes.clone(),
            limits: self.limits.clone(),
        })
    }
}

/// `[core.internal]`: off when absent; when present, the listener and its three files.
pub fn validate_internal(raw: RawCore, errors: &mut Vec<ConfigError>) -> Option<InternalSettings> {
    let raw = raw.internal?;
    let mut missing = |key: &str, v: Option<PathBuf>| {
        if v.is_none() {
            errors.push(err(key, "is required when core.internal.listen is set"));
        }
        v
    };
    let (cert, key, ca) = (
        missing("core.internal.cert_file", raw.cert_file),
        missing("core.internal.key_file", raw.key_file),
        missing("core.internal.client_ca_file", raw.client_ca_file),
    );
    let Some(listen) = raw.listen else {
        errors.push(err(
            "core.internal.listen",
            "is required when [core.internal] is present",
        ));
        return None;
    };
    let listen = address(errors, "core.internal.listen", Some(listen))?;
    private(errors, "core.internal.key_file", &key);
    let reload = number(
        errors,
        "core.internal.reload_interval_seconds",
        raw.reload_interval_seconds,
        5,
        1,
        3600,
    );
    Some(InternalSettings {
        listen,
        cert_file: cert?,
        key_file: key?,
        client_ca_file: ca?,
        allowed_client_names: raw.allowed_client_names.unwrap_or_default(),
        reload_interval: Duration::from_secs(reload),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{load, load_for_edge};

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_edge_needs_no_database_and_refuses_credentials() {
        let edge_only = env(&[("KIOREX_EDGE__LISTEN", "127.0.0.1:9443")]);
        assert!(load_for_edge(None, &edge_only).is_ok());
        let with_db = env(&[("KIOREX_DATABASE__URL", "postgres://k@db/k")]);
        let errors = load_for_edge(None, &with_db).unwrap_err();
        assert!(
            errors[0].to_string().contains("KX-CFG-002"),
            "{}",
            errors[0]
        );
        let with_key = env(&[("KIOREX_AUTH__TOKEN_SIGNING_KEY", "pem")]);
        assert!(load_for_edge(None, &with_key).is_err());
    }

    #[test]
    fn serving_the_edge_names_every_missing_file() {
        let config = load_for_edge(None, &[]).unwrap();
        let errors = config.edge.settings().unwrap_err();
        let keys: Vec<String> = errors.iter().map(|e| e.key.clone()).collect();
        for key in [
            "edge.cert_file",
            "edge.key_file",
            "edge.core_url",
            "edge.core_ca_file",
            "edge.client_cert_file",
            "edge.client_key_file",
            "edge.token_public_key_file",
        ] {
            assert!(
                keys.contains(&key.to_owned()),
                "{key} not reported: {keys:?}"
            );
        }
    }

    #[test]
    fn bad_routes_and_a_half_internal_listener_are_refused() {
        let base = [("KIOREX_DATABASE__URL", "postgres://k@db/k")];
        let mut pairs = base.to_vec();
        pairs.push(("KIOREX_EDGE__ROUTES", r#"[{prefix = "fhir", methods = ["GET"]}, {prefix = "/x", methods = ["GET"], scope = "admin"}]"#));
        let errors = load(None, &env(&pairs)).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        let mut pairs = base.to_vec();
        pairs.push(("KIOREX_CORE__INTERNAL__LISTEN", "127.0.0.1:9443"));
        let errors = load(None, &env(&pairs)).unwrap_err();
        assert_eq!(errors.len(), 3, "cert, key and CA are required: {errors:?}");
        let mut pairs = base.to_vec();
        pairs.push(("KIOREX_EDGE__CORE_URL", "http://core:8080"));
        assert!(
            load(None, &env(&pairs)).is_err(),
            "core is reached over TLS only"
        );
    }
}
