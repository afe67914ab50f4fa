//! `kiorexctl status`: is this Kiorex healthy? Components (PostgreSQL, core), versions,
//! certificate expiry (a warning 60 days ahead: an expired internal certificate stops the
//! services talking to each other), and the age of the last backup. The JSON is the contract
//! the Ansible rollout's health gate reads (docs/ops/ansible-rollout.md): `healthy`, `version`,
//! `components[].ready`, `migrations.pending`.

use crate::Output;
use crate::failure::{exit, fail};
use crate::single_node::{Layout, postgres_bin};
use anyhow::Result;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The single-node data directory.
    #[arg(long, env = "KIOREX_DATA_DIR", default_value = ".kiorex")]
    data_dir: PathBuf,
    /// The site directory from `kiorexctl init`; its pki/ certificates are checked.
    #[arg(long, env = "KIOREX_SITE_DIR")]
    site_dir: Option<PathBuf>,
    /// The backup target; the age of the newest backup is reported.
    #[arg(long, env = "KIOREX_BACKUP_TARGET")]
    backups: Option<PathBuf>,
    /// The core's base URL.
    #[arg(long, env = "KIOREX_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A backup older than this many hours is a warning.
    #[arg(long, default_value_t = 26)]
    backup_max_age_hours: i64,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Debug, Serialize)]
pub struct Component {
    pub name: String,
    pub ready: bool,
    pub version: Option<String>,
    pub detail: String,
}

#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Expired,
}

/// A certificate's standing `days_left` days before it expires.
pub fn cert_level(days_left: i64) -> Level {
    if days_left < 0 {
        Level::Expired
    } else if days_left <= crate::pki::WARN_DAYS {
        Level::Warn
    } else {
        Level::Ok
    }
}

pub fn run(args: StatusArgs) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    let bar = crate::progress::spinner(args.output == Output::Text, "asking the components");
    // On a k3s node the cluster is asked; elsewhere the single-node processes are.
    let (components, version, pending) = match cluster() {
        Some(found) => found,
        None => {
            let mut components = vec![postgres(&args.data_dir), core(&args.url)];
            let version = kiorex_version();
            components[1].version = version.clone();
            // The core refuses to start with a migration pending, so a ready core means none.
            let pending = components[1].ready.then_some(0);
            (components, version, pending)
        }
    };
    bar.finish_and_clear();
    let certificates = certificates(args.site_dir.as_deref(), now);
    let backup = backup_age(args.backups.as_deref(), now, args.backup_max_age_hours);
    let certs_valid = certificates.iter().all(|c| c["status"] != "expired");
    let healthy = components.iter().all(|c| c.ready) && certs_valid;
    let report = json!({
        "site": args.site_dir.as_deref().and_then(site_name),
        "version": version.clone().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        "healthy": healthy,
        "components": components,
        "migrations": {"pending": pending},
        "certificates": certificates,
        "backup": backup,
    });
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print_text(&report),
    }
    if !healthy {
        return Err(fail(
            "KX-CTL-070",
            exit::CHECK_FAILED,
            "Kiorex is not healthy; see the lines marked DOWN or EXPIRED",
        ));
    }
    Ok(())
}

fn print_text(r: &serde_json::Value) {
    println!(
        "Kiorex {}  {}",
        r["version"].as_str().unwrap_or("?"),
        if r["healthy"] == true {
            "healthy"
        } else {
            "NOT HEALTHY"
        }
    );
    for c in r["components"].as_array().into_iter().flatten() {
        let state = if c["ready"] == true { "up" } else { "DOWN" };
        println!(
            "  {:<12} {:<5} {}",
            c["name"].as_str().unwrap_or(""),
            state,
            c["detail"].as_str().unwrap_or("")
        );
    }
    for c in r["certificates"].as_array().into_iter().flatten() {
        println!(
            "  cert {:<15} {:<7} expires {} ({} days)",
            c["name"].as_str().unwrap_or(""),
            c["status"].as_str().unwrap_or("").to_uppercase(),
            c["not_after"].as_str().unwrap_or(""),
            c["days_left"]
        );
    }
    let b = &r["backup"];
    println!(
        "  backup            {:<7} {}",
        b["status"].as_str().unwrap_or("").to_uppercase(),
        b["detail"].as_str().unwrap_or("")
    );
}

/// The cluster's view through k3s's kubectl: every Kiorex Deployment, the PostgreSQL cluster and
/// the migrate Job. None when this host has no k3s.
fn cluster() -> Option<(Vec<Component>, Option<String>, Option<u32>)> {
    let kubectl = |args: &[&str]| -> Option<serde_json::Value> {
        let out = std::process::Command::new("k3s")
            .arg("kubectl")
            .args(args)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    std::process::Command::new("k3s")
        .arg("--version")
        .output()
        .ok()?;
    let deployments = kubectl(&[
        "get",
        "deployments",
        "-A",
        "-l",
        "app.kubernetes.io/part-of=kiorex",
        "-o",
        "json",
    ])
    .unwrap_or(json!({}));
    let postgres = kubectl(&[
        "get",
        "cluster.postgresql.cnpg.io/kiorex-pg",
        "-n",
        "kiorex-data",
        "-o",
        "json",
    ])
    .unwrap_or(json!({}));
    let job = kubectl(&[
        "get",
        "job/kiorex-migrate",
        "-n",
        "kiorex-clinical",
        "-o",
        "json",
    ])
    .unwrap_or(json!({}));
    Some(from_cluster(&deployments, &postgres, &job))
}

/// Components, version and pending migrations from `kubectl get -o json` answers.
pub fn from_cluster(
    deployments: &serde_json::Value,
    postgres: &serde_json::Value,
    job: &serde_json::Value,
) -> (Vec<Component>, Option<String>, Option<u32>) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let mut components = Vec::new();
    let mut version = None;
    for d in deployments["items"].as_array().into_iter().flatten() {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        // Kubernetes' default is 1 replica; 0 is a component switched off on purpose (hl7 in
        // a release without that role), which is not a fault.
        let want = d["spec"]["replicas"].as_u64().unwrap_or(1);
        let (ready, updated) = (
            n(&d["status"]["readyReplicas"]),
            n(&d["status"]["updatedReplicas"]),
        );
        let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default();
        let tag = image.rsplit_once(':').map(|(_, t)| t.to_owned());
        if name == "kiorex-core" {
            version = tag.clone();
        }
        components.push(Component {
            name: name.trim_start_matches("kiorex-").to_owned(),
            ready: ready >= want && updated >= want,
            version: tag,
            detail: if want == 0 {
                "scaled to 0 replicas".to_owned()
            } else {
                format!("{ready}/{want} ready, {updated} updated")
            },
        });
    }
    let (ready, want) = (
        n(&postgres["status"]["readyInstances"]),
        n(&postgres["spec"]["instances"]).max(1),
    );
    components.push(Component {
        name: "postgres".into(),
        ready: ready >= want,
        version: None,
        detail: format!(
            "{ready}/{want} instances ready ({})",
            postgres["status"]["phase"].as_str().unwrap_or("not found")
        ),
    });
    let pending = (n(&job["status"]["succeeded"]) > 0).then_some(0);
    (components, version, pending)
}

fn site_name(dir: &Path) -> Option<String> {
    crate::site::SiteConfig::load(&dir.join(crate::site::FILE_NAME))
        .ok()
        .map(|s| s.site.name)
}

fn postgres(data_dir: &Path) -> Component {
    let mut c = Component {
        name: "postgres".into(),
        ready: false,
        version: None,
        detail: String::new(),
    };
    let (Ok(layout), Ok(bin)) = (Layout::new(data_dir), postgres_bin()) else {
        c.detail = format!("no single-node data directory at {}", data_dir.display());
        return c;
    };
    if !layout.postgres_running(&bin) {
        c.detail = "not running (start: kiorexctl up --detach)".into();
        return c;
    }
    match layout.sql(&bin, "postgres", "SHOW server_version") {
        Ok(v) => {
            c.ready = true;
            c.version = Some(v);
            c.detail = "accepting connections".into();
        }
        Err(e) => c.detail = format!("running but not answering: {e}"),
    }
    c
}

fn core(url: &str) -> Component {
    let mut c = Component {
        name: "core".into(),
        ready: false,
        version: None,
        detail: String::new(),
    };
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| {
            rt.block_on(async {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(3))
                    .build()
                    .ok()?;
                let r = client.get(format!("{url}/health/ready")).send().await;
                Some(r.map(|r| r.status()))
            })
        });
    match answer {
        Some(Ok(s)) if s.is_success() => {
            c.ready = true;
            c.detail = format!("{url}/health/ready answers {s}");
        }
        Some(Ok(s)) => {
            c.detail =
                format!("{url}/health/ready answers {s} (database down or migrations pending)")
        }
        Some(Err(e)) => c.detail = format!("{url} does not answer: {e}"),
        None => c.detail = "cannot start an HTTP client".into(),
    }
    c
}

/// `kiorex --version` of the binary next to kiorexctl (what `up` runs).
fn kiorex_version() -> Option<String> {
    let bin = std::env::current_exe().ok()?.parent()?.join("kiorex");
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1).map(str::to_owned)
}

fn certificates(site_dir: Option<&Path>, now: OffsetDateTime) -> Vec<serde_json::Value> {
    let Some(dir) = site_dir.map(|d| d.join("pki")) else {
        return Vec::new();
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|p| {
            let info = crate::pki::describe_pem(&std::fs::read(p).ok()?).ok()?;
            let days = info.days_left_at(now);
            Some(json!({
                "name": p.file_stem()?.to_string_lossy(), "not_after": info.not_after, "days_left": days,
                "status": cert_level(days), "names": info.names,
            }))
        })
        .collect()
}

fn backup_age(target: Option<&Path>, now: OffsetDateTime, max_hours: i64) -> serde_json::Value {
    let Some(target) = target else {
        return json!({"status": "warn", "detail": "not checked (pass --backups DIR)"});
    };
    let newest = crate::backup::base_backups(target)
        .into_iter()
        .filter_map(|(id, _)| crate::backup::parse_id(&id).map(|t| (id, t)))
        .next_back();
    match newest {
        None => {
            json!({"status": "warn", "latest": null, "detail": format!("no backup in {}: run kiorexctl backup", target.display())})
        }
        Some((id, t)) => {
            let hours = (now - t).whole_hours();
            json!({"status": if hours > max_hours { "warn" } else { "ok" }, "latest": id, "age_hours": hours,
                   "detail": format!("newest backup {id}, {hours} h old")})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_view_follows_the_deployments_and_the_migrate_job() {
        let deployments = json!({"items": [
            {"metadata": {"name": "kiorex-core"}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "registry.kiorex.local/kiorex/kiorex:0.2.0"}]}}},
             "status": {"readyReplicas": 2, "updatedReplicas": 2}},
            {"metadata": {"name": "kiorex-edge"}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "registry.kiorex.local/kiorex/kiorex:0.2.0"}]}}},
             "status": {"readyReplicas": 1, "updatedReplicas": 2}},
            {"metadata": {"name": "kiorex-hl7"}, "spec": {"replicas": 0, "template": {"spec": {"containers": [{"image": "registry.kiorex.local/kiorex/kiorex:0.2.0"}]}}},
             "status": {}}
        ]});
        let postgres = json!({"spec": {"instances": 3}, "status": {"readyInstances": 3, "phase": "Cluster in healthy state"}});
        let (components, version, pending) = from_cluster(
            &deployments,
            &postgres,
            &json!({"status": {"succeeded": 1}}),
        );
        assert_eq!(version.as_deref(), Some("0.2.0"));
        assert_eq!(pending, Some(0));
        let ready: Vec<_> = components
            .iter()
            .map(|c| (c.name.as_str(), c.ready))
            .collect();
        assert_eq!(
            ready,
            [
                ("core", true),
                ("edge", false),
                ("hl7", true),
                ("postgres", true)
            ]
        );
        assert_eq!(components[2].detail, "scaled to 0 replicas");
        let (_, _, pending) = from_cluster(&deployments, &postgres, &json!({}));
        assert_eq!(
            pending, None,
            "no finished migrate Job: unknown, so not healthy for the gate"
        );
    }

    #[test]
    fn certificates_warn_sixty_days_ahead() {
        assert_eq!(cert_level(61), Level::Ok);
        assert_eq!(cert_level(60), Level::Warn);
        assert_eq!(cert_level(0), Level::Warn);
        assert_eq!(cert_level(-1), Level::Expired);
    }
}
