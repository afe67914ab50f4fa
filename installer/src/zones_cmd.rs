//! `kiorexctl zones`: the nftables ruleset for a host that runs the roles under systemd (see
//! `appliance/systemd/`), each as its own user. The same rules `kiorexctl up` loads.

use crate::up::zones::{self, HostPorts};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ZonesArgs {
    /// The system user the edge runs as (it must exist: the systemd units' sysusers file makes it).
    #[arg(long, default_value = "kiorex-edge")]
    edge_user: String,
    /// Port of the edge's public TLS listener.
    #[arg(long, default_value_t = 8443)]
    edge_port: u16,
    /// Port of core's internal mutual-TLS listener (the only port the edge may reach).
    #[arg(long, default_value_t = 9443)]
    internal_port: u16,
    /// Port of core's LAN listener (staff portal and API).
    #[arg(long, default_value_t = 8080)]
    core_port: u16,
    /// Port of the edge's metrics and health listener.
    #[arg(long, default_value_t = 9464)]
    edge_admin_port: u16,
    /// A network allowed to reach core's LAN port from outside this host (repeat for several,
    /// e.g. --lan 10.20.0.0/16). None: core's LAN port is reachable over loopback only.
    #[arg(long)]
    lan: Vec<String>,
    /// Write the ruleset here (e.g. /etc/kiorex/kiorex-zones.nft) instead of printing it.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: ZonesArgs) -> Result<()> {
    let Some(edge) = zones::lookup(&args.edge_user) else {
        bail!(
            "there is no system user {} (KX-UP-006): install the sysusers file first (systemd-sysusers)",
            args.edge_user
        );
    };
    let ruleset = zones::single_host_ruleset(
        &HostPorts {
            edge: args.edge_port,
            core_internal: args.internal_port,
            core_lan: args.core_port,
            edge_admin: args.edge_admin_port,
        },
        vec![(kiorex_zones::Zone::Dmz, edge.uid)],
        args.lan,
    );
    match args.out {
        Some(path) => std::fs::write(&path, ruleset)
            .with_context(|| format!("cannot write {}", path.display())),
        None => {
            print!("{ruleset}");
            Ok(())
        }
    }
}
