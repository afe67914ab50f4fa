//! The edge in front of core, both as processes: core with its internal mutual-TLS listener,
//! the edge with its own public certificate, the internal CA's client certificate and core's
//! public token key, and no database settings at all.

use crate::pki::{CertFiles, Pki};
use crate::process::{Core, Site};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

/// The DNS name the edge's client certificate carries, and core requires.
pub const EDGE_CLIENT_NAME: &str = "edge.kiorex.internal";

pub struct EdgeStack {
    pub site: Site,
    /// The internal CA: core's internal certificate and the edge's client certificate.
    pub internal: Pki,
    /// The CA of the edge's public certificate (the partners' trust anchor in tests).
    pub public: Pki,
    pub public_cert: CertFiles,
    pub edge_client: CertFiles,
    /// The public half of core's token signing key, as the edge reads it.
    pub token_public_key: PathBuf,
    pub core: Core,
    pub internal_port: u16,
    pub edge: EdgeProcess,
}

/// A running `kiorex serve edge`; killed when dropped.
pub struct EdgeProcess {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub log: PathBuf,
}

impl EdgeProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Resident memory of the edge process, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Runs `command` (a `kiorex serve edge` listening on `port`) with its output in `log`,
    /// and waits until it listens; panics with the log if it exits instead.
    pub fn spawn(
        mut command: std::process::Command,
        port: u16,
        admin_port: u16,
        log: PathBuf,
    ) -> EdgeProcess {
        let log_file = std::fs::File::create(&log).expect("edge log");
        command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        let child = command.spawn().expect("start kiorex serve edge");
        let mut edge = EdgeProcess {
            child,
            port,
            admin_port,
            log,
        };
        let up = crate::wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                || matches!(edge.child.try_wait(), Ok(Some(_)))
        });
        assert!(
            up && matches!(edge.child.try_wait(), Ok(None)),
            "kiorex serve edge did not start:\n{}",
            std::fs::read_to_string(&edge.log).unwrap_or_default()
        );
        edge
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EdgeStack {
    /// Core and edge on free loopback ports; `edge_env` adds or overrides edge settings
    /// (e.g. `("KIOREX_EDGE__PER_IP_BURST", "3")`).
    pub fn start(edge_env: &[(&str, &str)]) -> EdgeStack {
        let site = Site::with_admin();
        let internal = Pki::new("Kiorex test internal CA");
        let public = Pki::new("Kiorex test public CA");
        let core_cert = internal.server("core-internal", &["127.0.0.1"]);
        let edge_client = internal.client("edge-client", EDGE_CLIENT_NAME);
        let public_cert = public.server("edge-public", &["127.0.0.1", "localhost"]);
        let internal_port = crate::free_port();
        let path = |p: &PathBuf| p.to_str().expect("utf-8 path").to_owned();
        let core = site.serve_with(&[
            (
                "KIOREX_CORE__INTERNAL__LISTEN".into(),
                format!("127.0.0.1:{internal_port}"),
            ),
            (
                "KIOREX_CORE__INTERNAL__CERT_FILE".into(),
                path(&core_cert.cert),
            ),
            (
                "KIOREX_CORE__INTERNAL__KEY_FILE".into(),
                path(&core_cert.key),
            ),
            (
                "KIOREX_CORE__INTERNAL__CLIENT_CA_FILE".into(),
                path(&internal.ca_file),
            ),
            (
                "KIOREX_CORE__INTERNAL__ALLOWED_CLIENT_NAMES".into(),
                format!("[\"{EDGE_CLIENT_NAME}\"]"),
            ),
        ]);
        let up = crate::wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", internal_port)).is_ok()
        });
        assert!(
            up,
            "core's internal listener did not open on {internal_port}"
        );
        let public_key = site.dir.path().join("token.pub.pem");
        let private = std::fs::read_to_string(&site.key_file).expect("token key");
        std::fs::write(
            &public_key,
            kiorex_api::auth::public_key_pem(&private).expect("public key"),
        )
        .expect("public key file");
        let (port, admin_port) = (crate::free_port(), crate::free_port());
        let log = site.dir.path().join(format!("edge-{port}.log"));
        let mut command = std::process::Command::new(crate::kiorex_binary());
        command
            .args(["serve", "edge"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KIOREX_LOG__FORMAT", "json")
            .env("KIOREX_EDGE__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "KIOREX_EDGE__ADMIN_LISTEN",
                format!("127.0.0.1:{admin_port}"),
            )
            .env("KIOREX_EDGE__CERT_FILE", &public_cert.cert)
            .env("KIOREX_EDGE__KEY_FILE", &public_cert.key)
            .env(
                "KIOREX_EDGE__CORE_URL",
                format!("https://127.0.0.1:{internal_port}"),
            )
            .env("KIOREX_EDGE__CORE_CA_FILE", &internal.ca_file)
            .env("KIOREX_EDGE__CLIENT_CERT_FILE", &edge_client.cert)
            .env("KIOREX_EDGE__CLIENT_KEY_FILE", &edge_client.key)
            .env("KIOREX_EDGE__TOKEN_PUBLIC_KEY_FILE", &public_key)
            .envs(edge_env.iter().copied());
        let edge = EdgeProcess::spawn(command, port, admin_port, log);
        EdgeStack {
            site,
            internal,
            public,
            public_cert,
            edge_client,
            token_public_key: public_key,
            core,
            internal_port,
            edge,
        }
    }

    /// A partner token signed with core's key, as core's `/oauth/token` issues them.
    pub fn partner_token(&self, client_id: &str, scope: &str) -> String {
        let private = std::fs::read_to_string(&self.site.key_file).expect("token key");
        sign_partner_token(&private, client_id, scope, 300)
    }
}

/// A client-credentials token: EdDSA, iss `kiorex-core`, aud `kiorex`, `client_id`, `scope`.
pub fn sign_partner_token(private_pem: &str, client_id: &str, scope: &str, ttl: i64) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let claims = serde_json::json!({
        "sub": client_id, "client_id": client_id, "scope": scope,
        "iss": "kiorex-core", "aud": "kiorex", "iat": now, "exp": now + ttl,
        "jti": uuid::Uuid::new_v4(),
    });
    let key = EncodingKey::from_ed_pem(private_pem.as_bytes()).expect("Ed25519 key");
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).expect("sign")
}
