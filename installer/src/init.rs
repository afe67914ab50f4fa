//! `kiorexctl init`: the site config from flags (or questions on a terminal), validated, then
//! the internal PKI and the secrets. Running it again keeps what exists: the same CA, the same
//! passwords; only certificates whose host names changed are reissued.

use crate::Output;
use crate::failure::{exit, fail};
use crate::files::{private_dir, random_secret, write_secret_once};
use crate::pki::Pki;
use crate::site::{
    self, Backup, Ceph, Directory, Facility, Nodes, Portals, Site, SiteConfig, Smtp,
};
use anyhow::Result;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct InitArgs {
    /// Directory for kiorex-site.toml, pki/ and secrets/ (created; keep it on the management host
    /// and back it up: it holds the CA key).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Short site name, lower case, e.g. `example-general`.
    #[arg(long)]
    site_name: Option<String>,
    /// A facility as CODE=Name, e.g. `EGH=Example General Hospital`; repeat for several.
    #[arg(long = "facility", value_name = "CODE=NAME")]
    facilities: Vec<String>,
    /// Host name of the staff portal on the LAN, e.g. kiorex.hospital.lan.
    #[arg(long)]
    lan_portal: Option<String>,
    /// Host name of the patient portal in the DMZ, e.g. patients.hospital.org.
    #[arg(long)]
    dmz_portal: Option<String>,
    /// k3s server node names (repeat).
    #[arg(long = "server-node")]
    server_nodes: Vec<String>,
    /// DMZ node names (repeat); they are labelled and tainted for the DMZ zone.
    #[arg(long = "dmz-node")]
    dmz_nodes: Vec<String>,
    /// Directory URL, e.g. ldaps://dc1.hospital.lan:636.
    #[arg(long)]
    directory_url: Option<String>,
    /// Directory base DN, e.g. dc=hospital,dc=lan.
    #[arg(long)]
    directory_base_dn: Option<String>,
    /// Ceph RGW S3 endpoint, e.g. https://rgw.storage.hospital.lan.
    #[arg(long)]
    ceph_endpoint: Option<String>,
    /// SMTP relay as host:port.
    #[arg(long)]
    smtp_relay: Option<String>,
    /// Backup target: a directory, or s3://bucket/prefix on Ceph.
    #[arg(long)]
    backup_target: Option<String>,
    /// Never ask questions; fail naming the missing flags instead (for scripts and Ansible).
    #[arg(long)]
    non_interactive: bool,
    /// Replace an existing kiorex-site.toml that differs (the PKI and secrets are kept).
    #[arg(long)]
    force: bool,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

pub fn run(args: InitArgs) -> Result<()> {
    let interactive = !args.non_interactive && std::io::stdin().is_terminal();
    let config = build_config(&args, interactive)?;
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(fail(
            "KX-CTL-010",
            exit::FAILED,
            format!(
                "the site config is not valid:\n  - {}",
                problems.join("\n  - ")
            ),
        ));
    }
    private_dir(&args.dir)?;
    let path = args.dir.join(site::FILE_NAME);
    let site_action = write_site(&path, &config, args.force)?;
    let now = time::OffsetDateTime::now_utc();
    let issued = Pki::new(&args.dir.join("pki")).ensure(&config, now)?;
    let secrets = ensure_secrets(&args.dir.join("secrets"))?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "site_config": path, "site_config_action": site_action,
                "certificates": issued, "secrets_created": secrets,
            }))?
        ),
        Output::Text => {
            println!("{} {}", site_action, path.display());
            for c in &issued {
                println!(
                    "certificate {:<16} {} (valid until {})",
                    c.name, c.action, c.not_after
                );
            }
            for s in &secrets {
                println!("secret      {s:<16} created (mode 0600)");
            }
            println!("\nNext: kiorexctl preflight --site {}", path.display());
        }
    }
    Ok(())
}

/// Writes the site config unless an identical one exists; a different one needs --force.
fn write_site(path: &Path, config: &SiteConfig, force: bool) -> Result<&'static str> {
    let text = format!(
        "# Kiorex site configuration, written by `kiorexctl init`. Check it with\n\
         # `kiorexctl preflight --site {}`.\n{}",
        site::FILE_NAME,
        config.to_toml()?
    );
    match std::fs::read_to_string(path) {
        Ok(existing) if existing == text => return Ok("unchanged"),
        Ok(_) if !force => {
            return Err(fail(
                "KX-CTL-011",
                exit::REFUSED,
                format!(
                    "{} exists with other values; pass --force to replace it",
                    path.display()
                ),
            ));
        }
        _ => {}
    }
    std::fs::write(path, text)?;
    Ok("wrote")
}

/// The secrets the site's Kubernetes Secrets are made from; created once, never overwritten.
pub const SECRETS: &[&str] = &[
    "database-password",
    "meilisearch-master-key",
    "admin-password",
    "token-signing-key.pem",
];

fn ensure_secrets(dir: &Path) -> Result<Vec<&'static str>> {
    private_dir(dir)?;
    let mut created = Vec::new();
    for name in SECRETS {
        let made = write_secret_once(&dir.join(name), || {
            if name.ends_with(".pem") {
                token_signing_key()
            } else {
                Ok(random_secret(32).into_bytes())
            }
        })?;
        if made {
            created.push(*name);
        }
    }
    Ok(created)
}

/// The same format `kiorex keygen` writes: an Ed25519 private key in PKCS#8 PEM.
fn token_signing_key() -> Result<Vec<u8>> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode the signing key: {e}"))?;
    Ok(pem.as_bytes().to_vec())
}

fn build_config(args: &InitArgs, interactive: bool) -> Result<SiteConfig> {
    let mut missing = Vec::new();
    let mut need = |flag: &str, question: &str, value: &Option<String>| -> Result<String> {
        if let Some(v) = value {
            return Ok(v.clone());
        }
        if interactive {
            return ask(question);
        }
        missing.push(flag.to_owned());
        Ok(String::new())
    };
    let name = need(
        "--site-name",
        "Short site name (e.g. example-general)",
        &args.site_name,
    )?;
    let lan = need(
        "--lan-portal",
        "Staff portal host name on the LAN",
        &args.lan_portal,
    )?;
    let dmz = need(
        "--dmz-portal",
        "Patient portal host name in the DMZ",
        &args.dmz_portal,
    )?;
    let mut facility_args = args.facilities.clone();
    if facility_args.is_empty() {
        facility_args.push(need("--facility", "First facility as CODE=Name", &None)?);
    }
    if !missing.is_empty() {
        return Err(fail(
            "KX-CTL-012",
            exit::FAILED,
            format!(
                "missing {} (or run init on a terminal to be asked)",
                missing.join(", ")
            ),
        ));
    }
    let facilities = facility_args
        .iter()
        .map(|f| match f.split_once('=') {
            Some((code, name)) => Ok(Facility {
                code: code.trim().into(),
                name: name.trim().into(),
            }),
            None => Err(fail(
                "KX-CTL-010",
                exit::FAILED,
                format!("--facility {f:?}: expected CODE=Name"),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SiteConfig {
        site: Site {
            name,
            overlay: "overlays/single-site".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        facilities,
        portals: Portals { lan, dmz },
        nodes: Nodes {
            servers: args.server_nodes.clone(),
            dmz: args.dmz_nodes.clone(),
        },
        directory: args.directory_url.as_ref().map(|url| Directory {
            url: url.clone(),
            base_dn: args.directory_base_dn.clone().unwrap_or_default(),
            ca_file: None,
        }),
        idp: None,
        ceph: args.ceph_endpoint.as_ref().map(|endpoint| Ceph {
            endpoint: endpoint.clone(),
            documents_bucket: "kiorex-documents".into(),
            quarantine_bucket: "kiorex-quarantine".into(),
            backup_bucket: "kiorex-backup".into(),
        }),
        smtp: args.smtp_relay.as_ref().map(|relay| Smtp {
            relay: relay.clone(),
        }),
        backup: Backup {
            target: args
                .backup_target
                .clone()
                .unwrap_or_else(|| Backup::default().target),
            ..Backup::default()
        },
    })
}

fn ask(question: &str) -> Result<String> {
    eprint!("{question}: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}
