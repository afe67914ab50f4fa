//! `kiorexctl rotate-certs`: reissues the service certificates from the site's CA before they
//! expire (a year after issue). Clients keep trusting them because the CA stays the same.

use crate::Output;
use crate::pki::Pki;
use crate::site::SiteConfig;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct RotateArgs {
    /// The site directory from `kiorexctl init`.
    #[arg(long, default_value = ".")]
    site_dir: PathBuf,
    /// Reissue only certificates expiring within this many days (default: the 60 days
    /// `status` warns about). Use --all to reissue every certificate.
    #[arg(long, default_value_t = crate::pki::WARN_DAYS)]
    within_days: i64,
    /// Reissue every service certificate now (for example after a key may have leaked).
    #[arg(long)]
    all: bool,
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

pub fn run(args: RotateArgs) -> Result<()> {
    let site = SiteConfig::load(&args.site_dir.join(crate::site::FILE_NAME))?;
    let pki = Pki::new(&args.site_dir.join("pki"));
    let now = time::OffsetDateTime::now_utc();
    let within = (!args.all).then_some(args.within_days);
    let issued = pki.rotate(&site, now, within)?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"reissued": issued}))?
        ),
        Output::Text => {
            if issued.is_empty() {
                println!(
                    "no certificate expires within {} days; nothing to do",
                    args.within_days
                );
            }
            for c in &issued {
                println!("reissued {:<16} valid until {}", c.name, c.not_after);
            }
            if !issued.is_empty() {
                println!(
                    "Then: kiorexctl install --site ... (updates the TLS Secrets and restarts the pods that use them)"
                );
            }
        }
    }
    Ok(())
}
