//! The zones on one host. When `kiorexctl up` runs as root, each role runs as its own system
//! user (the edge as `kiorex-edge`, core and the worker as `kiorex`, PostgreSQL as `postgres`),
//! every file is readable only by the role that needs it, and the generated nftables table tells
//! the roles apart by socket owner: the edge's user may open connections only to core's internal
//! port, and from outside the host nothing but the edge's TLS port (and core's LAN port, when core
//! listens beyond loopback) is reachable. PostgreSQL listens on a Unix socket in a directory only
//! core's group may enter.
//!
//! Core is not limited by port on one host: it must reach whatever the hospital configures
//! (directory, identity provider, RGW, clamd, SMTP), and those ports are the site's. The rule that
//! matters here is that the DMZ cannot reach anything but core's internal listener.
//!
//! Without root, every role runs as the invoking user and the ruleset is only written.

use anyhow::{Context, Result, bail};
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A system account a role runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Who runs each role; `None` when `kiorexctl` is not root (every role is then this user).
#[derive(Debug, Clone, Default)]
pub struct RoleAccounts {
    pub edge: Option<Account>,
    pub core: Option<Account>,
}

/// Whether to load the zone firewall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Firewall {
    /// Load it when running as root with `nft` available; otherwise only write it.
    Auto,
    /// Load it, or fail.
    Load,
    /// Only write the ruleset file (loading it is left to the administrator).
    Write,
}

pub fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// The account called `name`, if it exists.
pub fn lookup(name: &str) -> Option<Account> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: getpwnam returns static storage or null; it is read at once.
    let pw = unsafe { libc::getpwnam(c_name.as_ptr()) };
    // SAFETY: checked for null before reading.
    (!pw.is_null()).then(|| unsafe {
        Account {
            name: name.to_owned(),
            uid: (*pw).pw_uid,
            gid: (*pw).pw_gid,
        }
    })
}

/// The account called `name`, created as a system user without a home or shell if missing.
fn ensure(name: &str) -> Result<Account> {
    if let Some(account) = lookup(name) {
        return Ok(account);
    }
    let out = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "Kiorex role account",
            name,
        ])
        .output()
        .context("cannot run useradd")?;
    if !out.status.success() {
        bail!(
            "cannot create the system user {name} (KX-UP-006): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    lookup(name).with_context(|| format!("useradd made no user {name}"))
}

/// The accounts for the roles: created when missing, as root; none otherwise.
pub fn role_accounts(edge_user: &str, core_user: &str) -> Result<RoleAccounts> {
    if !is_root() {
        return Ok(RoleAccounts::default());
    }
    if edge_user == core_user {
        bail!("the edge and core must run as different users (KX-UP-006): both are {edge_user}");
    }
    Ok(RoleAccounts {
        edge: Some(ensure(edge_user)?),
        core: Some(ensure(core_user)?),
    })
}

/// Gives `path` to `account` with `mode` (no-op without an account).
pub fn hand_over(path: &Path, account: Option<&Account>, mode: u32) -> Result<()> {
    let Some(account) = account else {
        return Ok(());
    };
    std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))
        .with_context(|| format!("cannot give {} to {}", path.display(), account.name))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Checks that a role's user can reach `path`: every directory above it must let others pass
/// (`o+x`). A data directory under a private home is the usual mistake.
pub fn reachable_by_roles(path: &Path) -> Result<()> {
    let mut dir = path.parent();
    while let Some(d) = dir {
        let mode = std::fs::metadata(d)
            .with_context(|| format!("cannot read {}", d.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            bail!(
                "{} cannot be reached by the role users: {} is closed to others (mode {:o}) (KX-UP-007). \
                 Put the data directory and the kiorex binary under a directory others may enter, e.g. /srv/kiorex and /usr/local/bin",
                path.display(),
                d.display(),
                mode & 0o777
            );
        }
        dir = d.parent();
    }
    Ok(())
}

/// The ruleset's owners: the edge (DMZ), by its uid. PostgreSQL runs as the host's shared
/// `postgres` account, which a system PostgreSQL may also use, so it is not limited here; it
/// listens on a Unix socket only, which only core's group may enter.
pub fn owners(accounts: &RoleAccounts) -> Vec<(kiorex_zones::Zone, u32)> {
    accounts
        .edge
        .as_ref()
        .map(|edge| (kiorex_zones::Zone::Dmz, edge.uid))
        .into_iter()
        .collect()
}

fn nft(args: &[&str]) -> Result<std::process::Output> {
    Command::new("nft")
        .args(args)
        .output()
        .context("cannot run nft (install the nftables package)")
}

/// Loads the ruleset file per `mode`; returns whether it is loaded. The file replaces only its
/// own table, so the host's other rules are untouched.
pub fn apply(mode: Firewall, ruleset: &Path, accounts: &RoleAccounts) -> Result<bool> {
    let wanted = match mode {
        Firewall::Write => false,
        Firewall::Load => true,
        Firewall::Auto => is_root() && accounts.edge.is_some() && nft(&["--version"]).is_ok(),
    };
    if !wanted {
        return Ok(false);
    }
    if accounts.edge.is_none() {
        bail!(
            "the zone firewall needs the roles to run as their own users, which needs root (KX-UP-008)"
        );
    }
    let path = ruleset.to_str().context("ruleset path is not UTF-8")?;
    let out = nft(&["-f", path])?;
    if !out.status.success() {
        bail!(
            "nft could not load {} (KX-UP-008): {}",
            ruleset.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::write(loaded_marker(ruleset), "")?;
    Ok(true)
}

fn loaded_marker(ruleset: &Path) -> PathBuf {
    ruleset.with_extension("loaded")
}

/// Removes the table `apply` loaded, if it did.
pub fn unload(ruleset: &Path) {
    let marker = loaded_marker(ruleset);
    if marker.exists() {
        let _ = nft(&["delete", "table", "inet", kiorex_zones::TABLE]);
        let _ = std::fs::remove_file(marker);
    }
}

/// The ports of the roles on one host.
#[derive(Debug, Clone, Copy)]
pub struct HostPorts {
    pub edge: u16,
    pub core_internal: u16,
    pub core_lan: u16,
    pub edge_admin: u16,
}

/// The RFC 1918 networks: "the LAN" when core's LAN port is opened beyond loopback.
pub fn private_networks() -> Vec<String> {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .map(String::from)
        .to_vec()
}

/// The socket-owner ruleset for one host with these ports, limiting `owners`' connections and
/// opening core's LAN port to `lan` (none: loopback only). PostgreSQL has no TCP listener here.
pub fn single_host_ruleset(
    ports: &HostPorts,
    owners: Vec<(kiorex_zones::Zone, u32)>,
    lan: Vec<String>,
) -> String {
    use kiorex_zones::{Keying, Plan, Service};
    let mut listeners = Plan::standard_listeners();
    listeners.retain(|l| l.service != Service::Postgres);
    for l in &mut listeners {
        match l.service {
            Service::EdgeTls => l.port = ports.edge,
            Service::CoreInternal => l.port = ports.core_internal,
            Service::CoreLan => l.port = ports.core_lan,
            Service::Metrics => l.port = ports.edge_admin,
            _ => {}
        }
    }
    kiorex_zones::render(&Plan {
        listeners,
        keying: Keying::SocketOwner { owners, lan },
    })
}
