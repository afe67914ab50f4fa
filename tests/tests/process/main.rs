//! The `kiorex` binary as hospital IT runs it: killed mid-stream, misconfigured, started too
//! early, asked to verify its audit trail.

mod backup;

use kiorex_testkit::{ADMIN, ADMIN_PASSWORD, Site, empty_database};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn token(client: &reqwest::Client, base: &str) -> String {
    sign_in(client, base, ADMIN, ADMIN_PASSWORD).await
}

async fn sign_in(client: &reqwest::Client, base: &str, username: &str, password: &str) -> String {
    let reply: Value = client
        .post(format!("{base}/api/v1/auth/token"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["access_token"].as_str().expect("token").to_owned()
}

/// Writers stream patient creates; the server is killed with SIGKILL in the middle. Every create
/// that was acknowledged (201 received) must be readable after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_mid_stream_loses_no_acknowledged_write() {
    let site = tokio::task::spawn_blocking(Site::with_admin).await.unwrap();
    let mut core = site.serve();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let bearer = token(&client, &core.base).await;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    // The writers signal once enough writes are acknowledged: that is when the server is killed.
    let enough = Arc::new(tokio::sync::Notify::new());
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, base, bearer, acknowledged, enough) = (
            client.clone(),
            core.base.clone(),
            bearer.clone(),
            acknowledged.clone(),
            enough.clone(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let body = json!({"resourceType": "Patient", "name": [{"family": format!("Crash{w}"), "given": [format!("N{i}")]}]});
                let sent = client.post(format!("{base}/fhir/Patient")).bearer_auth(&bearer).header("content-type", "application/fhir+json").body(body.to_string()).send().await;
                match sent {
                    Ok(r) if r.status() == 201 => {
                        let created: Value = match r.json().await {
                            Ok(v) => v,
                            Err(_) => break,
                        };
                        let mut ids = acknowledged.lock().unwrap();
                        ids.push(created["id"].as_str().unwrap().to_owned());
                        if ids.len() >= 150 {
                            enough.notify_one();
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), enough.notified()).await;
    core.kill_hard();
    for w in writers {
        let _ = w.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 150,
        "the writers made progress before the kill: {}",
        acknowledged.len()
    );

    let core = site.serve();
    let bearer = token(&client, &core.base).await;
    for id in &acknowledged {
        let read = client
            .get(format!("{}/fhir/Patient/{id}", core.base))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(
            read.status(),
            200,
            "acknowledged Patient/{id} is missing after the crash"
        );
    }
    let verify = site.kiorex(&["audit", "verify", "--output", "json"]);
    let report: Value = serde_json::from_str(&verify.success()).unwrap();
    assert_eq!(
        report["ok"], true,
        "the audit chain survives a crash: {report}"
    );
}

/// Core's metrics are served on the management listener only, and name routes by their
/// template: the identifiers in the paths that were asked for never reach a time series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_metrics_count_route_templates_on_the_management_listener_only() {
    let site = tokio::task::spawn_blocking(Site::with_admin).await.unwrap();
    let admin_port = kiorex_testkit::free_port();
    let core = site.serve_with(&[(
        "KIOREX_SERVER__ADMIN_LISTEN".into(),
        format!("127.0.0.1:{admin_port}"),
    )]);
    let admin = format!("http://127.0.0.1:{admin_port}");
    let client = reqwest::Client::new();
    let bearer = token(&client, &core.base).await;
    let get = |url: String| {
        let (client, bearer) = (client.clone(), bearer.clone());
        async move { client.get(url).bearer_auth(bearer).send().await.unwrap() }
    };
    let missing = uuid::Uuid::new_v4();
    let read = get(format!("{}/fhir/Patient/{missing}", core.base)).await;
    assert_eq!(read.status(), 404);
    let created: Value = client
        .post(format!("{}/fhir/Patient", core.base))
        .bearer_auth(&bearer)
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "name": [{"family": "Metrics"}]}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(format!("{}/fhir/Patient/{id}", core.base))
            .await
            .status(),
        200
    );
    let probe = uuid::Uuid::new_v4();
    assert_eq!(
        get(format!("{}/no-such-page/{probe}", core.base))
            .await
            .status(),
        404
    );
    assert_eq!(
        get(format!("{}/metrics", core.base)).await.status(),
        404,
        "the LAN listener does not serve the metrics"
    );

    let scrape = client.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(
        scrape.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = scrape.text().await.unwrap();
    let reads = |status: u16| {
        format!(
            "kiorex_http_requests_total{{listener=\"lan\",method=\"GET\",route=\"/fhir/{{type}}/{{id}}\",status=\"{status}\"}} 1\n"
        )
    };
    assert!(text.contains(&reads(200)), "{text}");
    assert!(text.contains(&reads(404)), "{text}");
    assert!(
        text.contains("route=\"unmatched\",status=\"404\"} "),
        "{text}"
    );
    for asked in [missing.to_string(), id, probe.to_string()] {
        assert!(
            !text.contains(&asked),
            "{asked} reached the metrics:\n{text}"
        );
    }
    let open: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("kiorex_db_pool_connections_open ")?
                .parse()
                .ok()
        })
        .expect("pool gauge");
    assert!(open >= 1.0, "{text}");
    let ready = client
        .get(format!("{admin}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_with_pending_migrations() {
    let site = Site::unmigrated(tokio::task::spawn_blocking(empty_database).await.unwrap());
    let run = site.kiorex(&["serve", "core"]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr().contains("KX-DB-002") && run.stderr().contains("kiorex migrate"),
        "{}",
        run.stderr()
    );
    let check = site.kiorex(&["configtest", "--output", "json"]);
    assert_ne!(check.code(), Some(0));
    let report: Value = serde_json::from_str(&check.stdout()).unwrap();
    assert!(
        report["checks"]
            .to_string()
            .contains("migration(s) pending"),
        "{report}"
    );
    let migrated = site.kiorex(&["migrate", "--output", "json"]);
    let applied: Value = serde_json::from_str(&migrated.success()).unwrap();
    let shipped = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../appliance/kiorex-store/migrations"),
    )
    .unwrap()
    .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
    .count();
    assert_eq!(
        applied["applied"].as_array().unwrap().len(),
        shipped,
        "every shipped migration applied"
    );
    let again: Value =
        serde_json::from_str(&site.kiorex(&["migrate", "--output", "json"]).success()).unwrap();
    assert!(
        again["applied"].as_array().unwrap().is_empty(),
        "migrate is safe to re-run"
    );
    assert!(
        site.kiorex(&["configtest"])
            .success()
            .contains("migrations applied")
    );
}

#[test]
fn configuration_errors_name_the_key_and_the_fix() {
    let site = Site::unmigrated("postgres://nobody@127.0.0.1:1/none".into());
    let mut cmd = site.command(&["configtest"]);
    cmd.env("KIOREX_DATABASE__POOL_SIZE", "0")
        .env("KIOREX_SERVER__LISTEN", "everywhere");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("database.pool_size: must be between 1 and 200, got 0"),
        "{stderr}"
    );
    assert!(stderr.contains("server.listen"), "{stderr}");
    let unreachable = site.kiorex(&["configtest", "--output", "json"]);
    let report: Value = serde_json::from_str(&unreachable.stdout()).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"][2]["status"], "fail", "{report}");
}

#[test]
fn audit_verify_exits_2_when_the_trail_was_tampered_with() {
    let site = Site::with_admin();
    let intact: Value = serde_json::from_str(
        &site
            .kiorex(&["audit", "verify", "--output", "json"])
            .success(),
    )
    .unwrap();
    assert_eq!(intact["ok"], true);
    assert!(intact["entries"].as_u64().unwrap() >= 2);
    kiorex_testkit::postgres()
        .psql(site.database_url.rsplit('/').next().unwrap(), "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update; UPDATE audit_log SET detail = 'edited' WHERE seq = 1")
        .unwrap();
    let tampered = site.kiorex(&["audit", "verify"]);
    assert_eq!(tampered.code(), Some(2));
    assert!(
        tampered.stdout().contains("TAMPERED"),
        "{}",
        tampered.stdout()
    );
}

#[test]
fn every_command_has_help_for_an_administrator() {
    let site = Site::unmigrated("postgres://unused@127.0.0.1:1/x".into());
    for args in [
        &["--help"][..],
        &["serve", "core", "--help"],
        &["migrate", "--help"],
        &["healthcheck", "--help"],
        &["configtest", "--help"],
        &["audit", "verify", "--help"],
        &["facility", "create", "--help"],
        &["user", "create", "--help"],
        &["keygen", "--help"],
        &["serve", "edge", "--help"],
    ] {
        let help = site.kiorex(args).success();
        assert!(help.contains("Usage:"), "{args:?}: {help}");
    }
    assert!(
        site.kiorex(&["user", "create", "--help"])
            .stdout()
            .contains("ROLE@FACILITY_CODE")
    );
}

#[test]
fn every_error_code_is_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let documented = std::fs::read_to_string(root.join("docs/ops/errors.md")).unwrap();
    let mut missing = Vec::new();
    for dir in ["appliance", "installer"] {
        for code in codes_in(&root.join(dir)) {
            if !documented.contains(&code) {
                missing.push(code);
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "error codes used in the code but missing from docs/ops/errors.md: {missing:?}"
    );
}

/// `KX-ABC-123` codes in the Rust and SQL sources under `dir`.
fn codes_in(dir: &std::path::Path) -> Vec<String> {
    let mut codes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            codes.extend(codes_in(&path));
        } else if path.extension().is_some_and(|e| e == "rs" || e == "sql") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (i, _) in text.match_indices("KX-") {
                let code: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if code.matches('-').count() == 2 && !code.ends_with('-') {
                    codes.push(code);
                }
            }
        }
    }
    codes
}

/// README command 1 in miniature: `kiorexctl up` brings up PostgreSQL, the core and demo data,
/// prints where and how to sign in, and a second run reuses everything.
#[test]
fn kiorexctl_up_starts_a_single_node_appliance_with_demo_data() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    // PostgreSQL runs as its own user when we are root: it must be able to enter the directory.
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let kiorexctl = kiorex_testkit::kiorex_binary().with_file_name("kiorexctl");
    let port = kiorex_testkit::free_port().to_string();
    let [
        edge_port,
        internal_port,
        edge_admin_port,
        worker_port,
        core_admin_port,
    ] = [(); 5].map(|()| kiorex_testkit::free_port().to_string());
    let up = |extra: &[&str]| {
        let mut args = vec![
            "up",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--port",
            &port,
            "--edge-port",
            &edge_port,
            "--internal-port",
            &internal_port,
            "--edge-admin-port",
            &edge_admin_port,
            "--worker-port",
            &worker_port,
            "--core-admin-port",
            &core_admin_port,
            // As root the roles run as their own users; these existing accounts keep the host's
            // user database untouched, and the firewall is written, not loaded into the host
            // (the zones test loads it in a namespace of its own).
            "--edge-user",
            "nobody",
            "--core-user",
            "daemon",
            "--firewall",
            "write",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(&kiorexctl)
            .args(&args)
            .output()
            .unwrap()
    };
    let started = up(&["--detach", "--demo-patients", "12"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let report: Value = serde_json::from_slice(&started.stdout).unwrap();
    let password = std::fs::read_to_string(report["password_file"].as_str().unwrap()).unwrap();
    let mode = std::fs::metadata(report["password_file"].as_str().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "secrets are readable by their owner only");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = report["url"].as_str().unwrap().to_owned();
    let patients = runtime.block_on(async {
        let client = reqwest::Client::new();
        let token = sign_in(
            &client,
            &base,
            report["username"].as_str().unwrap(),
            password.trim(),
        )
        .await;
        let bundle: Value = client
            .get(format!("{base}/fhir/Patient?_count=100"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        bundle["entry"].as_array().map_or(0, Vec::len)
    });
    assert_eq!(patients, 12, "the demo patients were loaded");

    // The worker runs beside core and delivers the outbox the demo data filled.
    let worker = report["worker"].as_str().unwrap().to_owned();
    let drained = kiorex_testkit::wait_until(std::time::Duration::from_secs(30), || {
        runtime.block_on(async {
            let metrics = reqwest::get(format!("{worker}/metrics")).await;
            match metrics {
                Ok(r) => r
                    .text()
                    .await
                    .unwrap_or_default()
                    .contains("kiorex_outbox_pending 0\n"),
                Err(_) => false,
            }
        })
    });
    assert!(drained, "the worker delivered the outbox");

    // The edge runs beside core and forwards the partner FHIR API over mutual TLS.
    let capability = runtime.block_on(async {
        let ca = std::fs::read(report["edge_ca_file"].as_str().unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        let edge = report["edge"].as_str().unwrap();
        let reply: Value = client
            .get(format!("{edge}/fhir/metadata"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply
    });
    assert_eq!(capability["resourceType"], "CapabilityStatement");
    // Core counted that read as one that came in through the edge.
    let core_metrics = runtime.block_on(async {
        let url = report["core_metrics"].as_str().unwrap();
        reqwest::get(url).await.unwrap().text().await.unwrap()
    });
    assert!(
        core_metrics.contains(
            "kiorex_http_requests_total{listener=\"internal\",method=\"GET\",route=\"/fhir/metadata\",status=\"200\"} 1\n"
        ),
        "{core_metrics}"
    );
    let ruleset = std::fs::read_to_string(report["nftables_ruleset"].as_str().unwrap()).unwrap();
    assert!(
        ruleset.contains(&format!("tcp dport {edge_port} accept")),
        "{ruleset}"
    );

    let stopped = up(&["--stop"]);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let again = up(&["--detach", "--demo-patients", "12"]);
    assert!(
        again.status.success(),
        "a second run reuses the data directory: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(up(&["--stop"]).status.success());
}

#[test]
fn configtest_checks_the_directory_from_this_node() {
    let slapd = kiorex_testkit::ldap::Slapd::start();
    let site = Site::with_admin();
    let ca = slapd.ca_file.clone();
    let run = |password: &str| {
        let out = site
            .command(&["configtest", "--output", "json"])
            .env("KIOREX_LDAP__URL", &slapd.ldaps_url)
            .env("KIOREX_LDAP__CA_FILE", &ca)
            .env("KIOREX_LDAP__BIND_DN", kiorex_testkit::ldap::SERVICE_DN)
            .env("KIOREX_LDAP__BIND_PASSWORD", password)
            .env("KIOREX_LDAP__USER_BASE", kiorex_testkit::ldap::BASE)
            .output()
            .expect("configtest");
        let report: Value = serde_json::from_slice(&out.stdout).expect("json");
        let ldap = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "ldap")
            .cloned()
            .expect("an ldap check");
        (out.status.success(), ldap)
    };
    let (ok, check) = run(kiorex_testkit::ldap::SERVICE_PASSWORD);
    assert!(ok, "{check}");
    assert_eq!(check["status"], "pass");
    let (ok, check) = run("wrong-password");
    assert!(!ok);
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("service account"),
        "{check}"
    );
}
