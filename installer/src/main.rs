//! `kiorexctl`: what hospital IT runs on a host to install and operate Kiorex.
//! Exit statuses and error codes: docs/ops/kiorexctl.md.

mod backup;
mod bundle;
mod failure;
mod files;
mod init;
mod kustomize;
mod objects_backup;
mod oci;
mod pki;
mod plan;
mod preflight;
mod progress;
mod render;
mod rotate;
mod sbom;
mod secrets;
mod single_node;
mod site;
mod status;
mod support;
mod tlsprobe;
mod up;
mod zones_cmd;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "kiorexctl",
    version,
    about = "Install and operate the Kiorex hospital information platform.",
    after_help = "Exit status: 0 done, 1 failed (the message has a KX-CTL code), 2 wrong usage, \
                  3 a check found a problem, 4 a bundle or backup is not authentic, 5 refused as \
                  unsafe. Every code: docs/ops/kiorexctl.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check that this host can run a Kiorex node: CPU, memory, disk and fsync latency, kernel
    /// modules, sysctls, time sync, default route, free ports; with --site also DNS and the
    /// directory, IdP, Ceph and SMTP. Changes nothing. Exit 3 if a check fails.
    Preflight(preflight::PreflightArgs),
    /// Write the site config (kiorex-site.toml) from flags or questions, and create the internal
    /// CA, the service certificates and the secrets (mode 0600). Safe to run again.
    Init(init::InitArgs),
    /// Render the site's Kubernetes manifests into a directory to review before installing, in
    /// apply order; no kubectl or kustomize needed.
    Render(render::RenderArgs),
    /// Write the site's Kubernetes Secrets (TLS, database, signing key, Meilisearch) and trust
    /// bundle from its pki/ and secrets/ into one file (mode 0600) that install applies.
    Secrets(secrets::SecretsArgs),
    /// Build (on a connected build host), verify and inspect the signed air-gapped bundle.
    Bundle {
        #[command(subcommand)]
        command: bundle::BundleCommand,
    },
    /// Install a release on a k3s cluster: verify the bundle, import the image, render, apply in
    /// order (namespaces and policies first), migrate, first admin, wait until ready. Needs k3s;
    /// --dry-run prints the plan.
    Install(plan::InstallArgs),
    /// Upgrade to the bundle's release: pre-upgrade backup, migrations, rolling restart, health
    /// gate, rollback to the previous images on failure. Refuses a skipped major version (exit 5).
    Upgrade(plan::UpgradeArgs),
    /// Remove Kiorex from the cluster (--keep-data keeps the databases). --dry-run prints the plan.
    Uninstall(plan::UninstallArgs),
    /// Single-node mode: a PostgreSQL base backup (turning on continuous WAL archiving the first
    /// time), plus the secrets, site config and PKI, and with --objects-endpoint the document
    /// objects (incremental). Run it daily (cron or a systemd timer).
    Backup(backup::BackupArgs),
    /// Single-node mode: restore a backup, to the latest state or to a moment (--to-time), and
    /// with --objects-endpoint the document objects, each checked against its SHA-256 first.
    /// The current database is kept aside, never deleted.
    Restore(backup::RestoreArgs),
    /// Show whether Kiorex is healthy: components, versions, certificate expiry (warns 60 days
    /// ahead), backup age. Exit 3 when not healthy. `--output json` is what Ansible reads.
    Status(status::StatusArgs),
    /// Reissue the service certificates that expire within 60 days (or --all) from the site CA.
    RotateCerts(rotate::RotateArgs),
    /// Collect logs, status, preflight and the site config into one archive for support, with
    /// every secret removed.
    SupportBundle(support::SupportArgs),
    /// Run Kiorex on this machine alone (single-node mode) with a local PostgreSQL, demo data and
    /// a demo administrator. Stops everything on Ctrl-C; data stays in the data directory.
    Up(up::UpArgs),
    /// Write the nftables ruleset that keeps the zones apart on one host whose roles run under
    /// systemd as their own users: the edge may reach only core's internal port, and from outside
    /// only the edge's TLS port (and core's LAN port from --lan networks) is open. Load it with
    /// the kiorex-zones systemd unit or `nft -f`.
    Zones(zones_cmd::ZonesArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Command::Backup(args) = &cli.command {
        args.objects.trust_ca_bundle();
    }
    if let Command::Restore(args) = &cli.command {
        args.objects.trust_ca_bundle();
    }
    let result = match cli.command {
        Command::Preflight(args) => preflight::run(args),
        Command::Init(args) => init::run(args),
        Command::Render(args) => render::run(args),
        Command::Secrets(args) => secrets::run(args),
        Command::Bundle { command } => bundle::run(command),
        Command::Install(args) => plan::install(args),
        Command::Upgrade(args) => plan::upgrade(args),
        Command::Uninstall(args) => plan::uninstall(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Status(args) => status::run(args),
        Command::RotateCerts(args) => rotate::run(args),
        Command::SupportBundle(args) => support::run(args),
        Command::Up(args) => up::run(args),
        Command::Zones(args) => zones_cmd::run(args),
    };
    if let Err(e) = result {
        eprintln!("kiorexctl: {e:#}");
        std::process::exit(failure::exit_status(&e));
    }
}
