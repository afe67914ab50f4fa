//! `install`, `upgrade` and `uninstall` on a k3s cluster, as plans: ordered steps, each a
//! command an admin could type. `--dry-run` prints the plan; otherwise kiorexctl runs it step by
//! step and stops at the first failure naming the step. Building the plan is pure (tested
//! here); running it needs k3s, which the build machines cannot run (docs/ops/install.md).

use crate::Output;
use crate::failure::{exit, fail};
use crate::site::{SiteConfig, parse_version};
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where a node keeps releases: one directory per version, the previous one kept for rollback.
pub const RELEASES: &str = "/var/lib/kiorex/releases";
/// k3s imports every archive in this directory when it starts.
pub const K3S_IMAGES: &str = "/var/lib/rancher/k3s/agent/images";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    pub id: String,
    pub what: String,
    pub command: Vec<String>,
    /// Run when a later step fails (upgrade only): what puts the previous release back.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
    /// A file given to the command on standard input (passwords never go on a command line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

fn step<S: ToString>(id: &str, what: &str, command: impl IntoIterator<Item = S>) -> Step {
    Step {
        id: id.into(),
        what: what.into(),
        command: command.into_iter().map(|s| s.to_string()).collect(),
        rollback: false,
        stdin: None,
    }
}

/// `k3s kubectl ARGS`: k3s ships its own kubectl, so nothing else is installed on the node.
fn kubectl(args: &[&str]) -> Vec<String> {
    ["k3s", "kubectl"]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect()
}

pub const DEPLOYMENTS: &[(&str, &str)] = &[
    ("kiorex-clinical", "kiorex-core"),
    ("kiorex-clinical", "kiorex-worker"),
    ("kiorex-clinical", "kiorex-hl7"),
    ("kiorex-dmz", "kiorex-edge"),
];

/// The steps that put a release's objects on the cluster, in dependency order.
fn apply_steps(rendered: &str) -> Vec<Step> {
    let f = |name: &str| format!("{rendered}/{name}");
    let mut steps = vec![
        step(
            "namespaces",
            "namespaces with Pod Security restricted",
            kubectl(&["apply", "-f", &f("01-namespaces.yaml")]),
        ),
        step(
            "network-policies",
            "default-deny and zone rules before any pod starts",
            kubectl(&["apply", "-f", &f("02-network-policies.yaml")]),
        ),
        step(
            "secrets",
            "TLS and credential Secrets from the site directory",
            kubectl(&["apply", "-f", &f("00-secrets.yaml")]),
        ),
        step(
            "config",
            "accounts, config, services, ingress controllers",
            kubectl(&["apply", "-f", &f("03-config.yaml")]),
        ),
        step(
            "data",
            "PostgreSQL, Meilisearch, Ceph RGW endpoint",
            kubectl(&["apply", "-f", &f("04-data.yaml")]),
        ),
        step(
            "data-ready",
            "wait for PostgreSQL",
            kubectl(&[
                "wait",
                "--for=condition=Ready",
                "cluster.postgresql.cnpg.io/kiorex-pg",
                "-n",
                "kiorex-data",
                "--timeout=900s",
            ]),
        ),
        step(
            "migrate-clear",
            "remove the previous migrate Job (its template is immutable)",
            kubectl(&[
                "delete",
                "job/kiorex-migrate",
                "-n",
                "kiorex-clinical",
                "--ignore-not-found",
            ]),
        ),
        step(
            "migrate",
            "run kiorex migrate as a Job",
            kubectl(&["apply", "-f", &f("05-migrate.yaml")]),
        ),
        step(
            "migrate-done",
            "wait for the migrations to finish",
            kubectl(&[
                "wait",
                "--for=condition=complete",
                "job/kiorex-migrate",
                "-n",
                "kiorex-clinical",
                "--timeout=1800s",
            ]),
        ),
        step(
            "workloads",
            "edge, core, worker, hl7 and the ingresses (rolling update)",
            kubectl(&["apply", "-f", &f("06-workloads.yaml")]),
        ),
    ];
    for (ns, d) in DEPLOYMENTS {
        steps.push(step(
            &format!("ready-{d}"),
            &format!("wait until {d} is rolled out and ready"),
            kubectl(&[
                "rollout",
                "status",
                &format!("deployment/{d}"),
                "-n",
                ns,
                "--timeout=600s",
            ]),
        ));
    }
    steps
}

fn release_dir(version: &str) -> String {
    format!("{RELEASES}/{version}")
}

fn stage_steps(bundle: &Path, site_dir: &Path, version: &str, public_key: &Path) -> Vec<Step> {
    let rel = release_dir(version);
    let b = bundle.display().to_string();
    let s = site_dir.display().to_string();
    let key = public_key.display().to_string();
    vec![
        step(
            "verify",
            "check the bundle's signature and every file",
            ["kiorexctl", "bundle", "verify", &b, "--public-key", &key],
        ),
        step(
            "release-dir",
            "a directory for this release (the previous one stays for rollback)",
            ["install", "-d", "-m", "0750", &rel],
        ),
        step(
            "unpack",
            "unpack the bundle",
            ["tar", "-xf", &b, "-C", &rel],
        ),
        step(
            "images-dir",
            "place the image where k3s imports it at every start",
            [
                "install",
                "-m",
                "0644",
                &format!("{rel}/images/kiorex.oci.tar"),
                &format!("{K3S_IMAGES}/kiorex-{version}.oci.tar"),
            ],
        ),
        step(
            "images-import",
            "import the image into k3s's containerd now",
            [
                "k3s",
                "ctr",
                "images",
                "import",
                &format!("{rel}/images/kiorex.oci.tar"),
            ],
        ),
        step(
            "render",
            "render the site's manifests for review and apply",
            [
                "kiorexctl",
                "render",
                "--site",
                &format!("{s}/kiorex-site.toml"),
                "--manifests",
                &format!("{rel}/manifests"),
                "--out",
                &format!("{rel}/rendered"),
            ],
        ),
        step(
            "secrets-render",
            "write the Secrets from the site's PKI and secrets (0600)",
            [
                "kiorexctl",
                "secrets",
                "--site-dir",
                &s,
                "--out",
                &format!("{rel}/rendered/00-secrets.yaml"),
            ],
        ),
    ]
}

pub fn install_plan(
    bundle: &Path,
    site: &SiteConfig,
    site_dir: &Path,
    public_key: &Path,
) -> Vec<Step> {
    let version = &site.site.version;
    let mut steps = stage_steps(bundle, site_dir, version, public_key);
    steps.extend(apply_steps(&format!("{}/rendered", release_dir(version))));
    // `kiorex facility create` and `user create` update what exists, so a re-run is safe.
    for f in &site.facilities {
        steps.push(step(
            &format!("facility-{}", f.code),
            &format!("register facility {} ({})", f.code, f.name),
            kubectl(&[
                "exec",
                "-n",
                "kiorex-clinical",
                "deploy/kiorex-core",
                "--",
                "kiorex",
                "facility",
                "create",
                "--code",
                &f.code,
                "--name",
                &f.name,
            ]),
        ));
    }
    let facility = site.facilities.first().map_or("MAIN", |f| f.code.as_str());
    let mut admin = step(
        "first-admin",
        "create the first administrator (password in the site's secrets/admin-password)",
        kubectl(&[
            "exec",
            "-n",
            "kiorex-clinical",
            "deploy/kiorex-core",
            "-i",
            "--",
            "kiorex",
            "user",
            "create",
            "--username",
            "admin",
            "--display-name",
            "Administrator",
            "--password-file",
            "/dev/stdin",
            "--grant",
            &format!("administrator@{facility}"),
        ]),
    );
    admin.stdin = Some(
        site_dir
            .join("secrets/admin-password")
            .display()
            .to_string(),
    );
    steps.push(admin);
    steps.push(step(
        "current",
        "mark this release as the running one",
        [
            "ln",
            "-sfn",
            &release_dir(version),
            &format!("{RELEASES}/current"),
        ],
    ));
    steps
}

/// Why an upgrade from `from` to `to` is refused, if it is.
pub fn upgrade_refusal(from: &str, to: &str) -> Option<String> {
    let (Some(f), Some(t)) = (parse_version(from), parse_version(to)) else {
        return Some(format!("cannot compare versions {from:?} and {to:?}"));
    };
    if t < f {
        return Some(format!(
            "{to} is older than the running {from}; to go back, restore the pre-upgrade backup (docs/ops/upgrade.md)"
        ));
    }
    // Before 1.0 a minor release may break like a major one (semantic versioning).
    let major = |v: (u64, u64, u64)| if v.0 == 0 { (0, v.1) } else { (v.0, 0) };
    let (fm, tm) = (major(f), major(t));
    let next = if fm.0 == 0 {
        (0, fm.1 + 1)
    } else {
        (fm.0 + 1, 0)
    };
    // 1.0 follows the 0.x series (it must carry every 0.x migration).
    let first_stable = fm.0 == 0 && tm == (1, 0);
    if tm != fm && tm != next && !first_stable {
        let via = if fm.0 == 0 {
            format!("0.{}", fm.1 + 1)
        } else {
            format!("{}", fm.0 + 1)
        };
        return Some(format!(
            "{from} → {to} skips a major version; upgrade to the latest {via}.x first, so its migrations run (KX-CTL-061)"
        ));
    }
    None
}

pub fn upgrade_plan(
    bundle: &Path,
    site: &SiteConfig,
    site_dir: &Path,
    running: &str,
    public_key: &Path,
) -> Result<Vec<Step>> {
    if let Some(why) = upgrade_refusal(running, &site.site.version) {
        return Err(fail("KX-CTL-061", exit::REFUSED, why));
    }
    let version = &site.site.version;
    // Staging changes nothing that runs; the backup comes right before the first change.
    let mut steps = stage_steps(bundle, site_dir, version, public_key);
    steps.extend([
        step(
            "backup-clear",
            "remove the previous pre-upgrade Backup object (the backup itself stays in Ceph)",
            kubectl(&[
                "delete",
                "backup.postgresql.cnpg.io/pre-upgrade",
                "-n",
                "kiorex-data",
                "--ignore-not-found",
            ]),
        ),
        step(
            "backup",
            "pre-upgrade backup of PostgreSQL (CloudNativePG on-demand backup to Ceph)",
            kubectl(&[
                "apply",
                "-f",
                &format!(
                    "{}/rendered/{}",
                    release_dir(version),
                    crate::render::PRE_UPGRADE_BACKUP
                ),
            ]),
        ),
        step(
            "backup-done",
            "wait for the backup to complete",
            kubectl(&[
                "wait",
                "--for=jsonpath={.status.phase}=completed",
                "backup.postgresql.cnpg.io/pre-upgrade",
                "-n",
                "kiorex-data",
                "--timeout=3600s",
            ]),
        ),
    ]);
    steps.extend(apply_steps(&format!("{}/rendered", release_dir(version))));
    steps.push(step(
        "health-gate",
        "health gate: every component ready, no migration pending",
        ["kiorexctl", "status", "--output", "json"],
    ));
    steps.push(step(
        "current",
        "mark this release as the running one",
        [
            "ln",
            "-sfn",
            &release_dir(version),
            &format!("{RELEASES}/current"),
        ],
    ));
    // Migrations are expand-only within a major version, so the previous release runs on the
    // migrated schema: rolling back re-applies its workloads with its images.
    let mut back = step(
        "rollback",
        &format!(
            "on failure: re-apply release {running}'s workloads (previous images and manifests)"
        ),
        kubectl(&[
            "apply",
            "-f",
            &format!("{}/rendered/06-workloads.yaml", release_dir(running)),
        ]),
    );
    back.rollback = true;
    steps.push(back);
    Ok(steps)
}

pub fn uninstall_plan(keep_data: bool) -> Vec<Step> {
    let mut steps = vec![step(
        "workloads",
        "stop edge, core, worker and hl7",
        kubectl(&[
            "delete",
            "deployment,job,ingress,pdb",
            "-l",
            "app.kubernetes.io/part-of=kiorex",
            "-A",
            "--ignore-not-found",
        ]),
    )];
    if keep_data {
        steps.push(step(
            "keep-data",
            "keep kiorex-data (PostgreSQL, Meilisearch volumes) for a reinstall",
            ["true"],
        ));
    } else {
        steps.push(step(
            "data",
            "delete PostgreSQL and Meilisearch with their volumes (irreversible; back up first)",
            kubectl(&["delete", "namespace", "kiorex-data", "--ignore-not-found"]),
        ));
    }
    steps.push(step(
        "zones",
        "delete the DMZ and clinical namespaces",
        kubectl(&[
            "delete",
            "namespace",
            "kiorex-dmz",
            "kiorex-clinical",
            "--ignore-not-found",
        ]),
    ));
    steps.push(step(
        "images",
        "remove the imported images",
        ["sh", "-c", &format!("rm -f {K3S_IMAGES}/kiorex-*.oci.tar")],
    ));
    steps
}

#[derive(clap::Args)]
pub struct InstallArgs {
    /// The signed bundle (from `kiorexctl bundle create`).
    #[arg(long)]
    bundle: PathBuf,
    /// The site config file (kiorex-site.toml from `kiorexctl init`); its directory holds pki/ and secrets/.
    #[arg(long)]
    site: PathBuf,
    /// The public key that release bundles are signed with.
    #[arg(long, default_value = "/etc/kiorex/bundle-signing.pub")]
    public_key: PathBuf,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(clap::Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    install: InstallArgs,
    /// The version running now (default: read from the cluster).
    #[arg(long)]
    from_version: Option<String>,
}

#[derive(clap::Args)]
pub struct UninstallArgs {
    /// Keep the data zone (databases and volumes) for a later reinstall.
    #[arg(long)]
    keep_data: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Needed to delete the data zone without --keep-data.
    #[arg(long)]
    yes_delete_all_patient_data: bool,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

fn site_dir(site: &Path) -> PathBuf {
    site.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned()
}

pub fn install(args: InstallArgs) -> Result<()> {
    let site = SiteConfig::load(&args.site)?;
    let steps = install_plan(&args.bundle, &site, &site_dir(&args.site), &args.public_key);
    if !args.dry_run {
        // Re-running on an installed release changes nothing (Ansible reads this line).
        if running_version().ok().as_deref() == Some(site.site.version.as_str()) {
            println!("already at {}", site.site.version);
            return Ok(());
        }
    }
    execute(&steps, args.dry_run, args.output, "install")
}

pub fn upgrade(args: UpgradeArgs) -> Result<()> {
    let site = SiteConfig::load(&args.install.site)?;
    let running = match args.from_version {
        Some(v) => v,
        None => running_version()?,
    };
    let steps = upgrade_plan(
        &args.install.bundle,
        &site,
        &site_dir(&args.install.site),
        &running,
        &args.install.public_key,
    )?;
    execute(&steps, args.install.dry_run, args.install.output, "upgrade")
}

pub fn uninstall(args: UninstallArgs) -> Result<()> {
    if !args.keep_data && !args.yes_delete_all_patient_data && !args.dry_run {
        return Err(fail(
            "KX-CTL-062",
            exit::REFUSED,
            "uninstall without --keep-data deletes every record; pass --yes-delete-all-patient-data after a backup, or --keep-data",
        ));
    }
    execute(
        &uninstall_plan(args.keep_data),
        args.dry_run,
        args.output,
        "uninstall",
    )
}

/// The image tag of the running core.
fn running_version() -> Result<String> {
    let out = std::process::Command::new("k3s")
        .args([
            "kubectl",
            "get",
            "deployment/kiorex-core",
            "-n",
            "kiorex-clinical",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .output()
        .map_err(|_| no_cluster())?;
    let image = String::from_utf8_lossy(&out.stdout).into_owned();
    image
        .rsplit_once(':')
        .map(|(_, t)| t.to_owned())
        .filter(|_| out.status.success())
        .ok_or_else(|| {
            fail(
                "KX-CTL-063",
                exit::FAILED,
                "cannot read the running version from the cluster; pass --from-version",
            )
        })
}

fn no_cluster() -> anyhow::Error {
    fail(
        "KX-CTL-060",
        exit::REFUSED,
        "no k3s on this host (the `k3s` command is missing); run on a k3s server node, or use --dry-run to see the plan",
    )
}

fn execute(steps: &[Step], dry_run: bool, output: Output, what: &str) -> Result<()> {
    if dry_run {
        match output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"plan": what, "steps": steps}))?
            ),
            Output::Text => {
                println!("{what} plan (nothing was changed):");
                for (i, s) in steps.iter().enumerate() {
                    println!(
                        "{:>3}. {:<18} {}\n       $ {}",
                        i + 1,
                        s.id,
                        s.what,
                        s.command.join(" ")
                    );
                }
            }
        }
        return Ok(());
    }
    if std::process::Command::new("k3s")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err(no_cluster());
    }
    let bar = crate::progress::bar(output == Output::Text, steps.len() as u64, what);
    for s in steps.iter().filter(|s| !s.rollback) {
        bar.set_message(s.id.clone());
        let mut command = std::process::Command::new(&s.command[0]);
        command.args(&s.command[1..]);
        if let Some(file) = &s.stdin {
            command.stdin(std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?);
        }
        let status = command.status()?;
        if !status.success() {
            bar.abandon();
            if let Some(back) = steps.iter().find(|s| s.rollback) {
                eprintln!("{} failed; rolling back: {}", s.id, back.what);
                let _ = std::process::Command::new(&back.command[0])
                    .args(&back.command[1..])
                    .status();
            }
            return Err(fail(
                "KX-CTL-064",
                exit::FAILED,
                format!("step {} ({}) failed: {}", s.id, s.what, s.command.join(" ")),
            ));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("{what} done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_may_not_skip_a_major_version_or_go_back() {
        assert_eq!(upgrade_refusal("1.4.2", "1.9.0"), None);
        assert_eq!(upgrade_refusal("1.4.2", "2.0.0"), None);
        assert!(
            upgrade_refusal("1.4.2", "3.0.0")
                .unwrap()
                .contains("latest 2.x first")
        );
        assert_eq!(upgrade_refusal("0.1.0", "0.2.3"), None);
        assert!(
            upgrade_refusal("0.1.0", "0.3.0")
                .unwrap()
                .contains("latest 0.2.x first")
        );
        assert!(upgrade_refusal("0.9.0", "2.0.0").is_some());
        assert_eq!(
            upgrade_refusal("0.9.0", "1.0.0"),
            None,
            "0.x to 1.0 is the next major"
        );
        assert!(upgrade_refusal("1.2.0", "1.1.0").unwrap().contains("older"));
        assert_eq!(
            upgrade_refusal("1.2.0", "1.2.0"),
            None,
            "re-running the same version is allowed"
        );
        assert!(upgrade_refusal("1.2", "1.3.0").is_some());
    }
}
