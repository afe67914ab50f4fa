//! The site configuration, `kiorex-site.toml`: what `init` writes and every other command reads.
//! Parsed with `deny_unknown_fields` so a typo is an error, then validated as a whole so the admin
//! sees every problem at once.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const FILE_NAME: &str = "kiorex-site.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub site: Site,
    #[serde(default, rename = "facility")]
    pub facilities: Vec<Facility>,
    pub portals: Portals,
    #[serde(default)]
    pub nodes: Nodes,
    #[serde(default)]
    pub directory: Option<Directory>,
    #[serde(default)]
    pub idp: Option<Idp>,
    #[serde(default)]
    pub ceph: Option<Ceph>,
    #[serde(default)]
    pub smtp: Option<Smtp>,
    #[serde(default)]
    pub backup: Backup,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Short name used in file names and labels, e.g. `example-general`.
    pub name: String,
    /// The kustomize overlay this site is rendered from (relative to the manifests directory).
    #[serde(default = "default_overlay")]
    pub overlay: String,
    /// The Kiorex release the site runs; `render` pins the image to it.
    #[serde(default = "default_version")]
    pub version: String,
}

fn default_overlay() -> String {
    "overlays/single-site".into()
}

fn default_version() -> String {
    env!("CARGO_PKG_VERSION").into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Facility {
    /// The facility code users see (`administrator@EGH`): capitals and digits.
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Portals {
    /// Host name of the staff portal on the hospital LAN.
    pub lan: String,
    /// Host name of the patient portal published in the DMZ.
    pub dmz: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Nodes {
    /// k3s nodes that run the clinical and data zones.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Nodes in the DMZ VLAN; they get the label `kiorex.io/zone=dmz` and a taint.
    #[serde(default)]
    pub dmz: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// `ldaps://dc1.example.lan:636`
    pub url: String,
    pub base_dn: String,
    /// PEM file of the CA that signed the directory's certificate.
    #[serde(default)]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Idp {
    /// OpenID Connect issuer URL, `https://idp.example.lan/realms/hospital`.
    pub issuer: String,
    pub client_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ceph {
    /// S3 endpoint of Ceph RGW, `https://rgw.storage.example.lan`.
    pub endpoint: String,
    #[serde(default = "default_documents_bucket")]
    pub documents_bucket: String,
    #[serde(default = "default_quarantine_bucket")]
    pub quarantine_bucket: String,
    #[serde(default = "default_backup_bucket")]
    pub backup_bucket: String,
}

fn default_documents_bucket() -> String {
    "kiorex-documents".into()
}
fn default_quarantine_bucket() -> String {
    "kiorex-quarantine".into()
}
fn default_backup_bucket() -> String {
    "kiorex-backup".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    /// `smtp.example.lan:587`
    pub relay: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Where backups go: a local directory (single node) or `s3://bucket/prefix` (Ceph).
    #[serde(default = "default_backup_target")]
    pub target: String,
    /// Base backups older than this are deleted once a newer one exists.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
}

impl Default for Backup {
    fn default() -> Backup {
        Backup {
            target: default_backup_target(),
            retention_days: default_retention(),
        }
    }
}

fn default_backup_target() -> String {
    "backups".into()
}
fn default_retention() -> u32 {
    30
}

impl SiteConfig {
    pub fn load(path: &Path) -> Result<SiteConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the site config {}", path.display()))?;
        let config: SiteConfig = toml::from_str(&text).map_err(|e| {
            crate::failure::fail(
                "KX-CTL-010",
                crate::failure::exit::FAILED,
                format!("{} is not a valid site config: {e}", path.display()),
            )
        })?;
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(crate::failure::fail(
                "KX-CTL-010",
                crate::failure::exit::FAILED,
                format!(
                    "{} is not valid:\n  - {}",
                    path.display(),
                    problems.join("\n  - ")
                ),
            ));
        }
        Ok(config)
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Every problem in the config, one sentence each naming the key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !is_label(&self.site.name) {
            out.push(format!(
                "site.name {:?}: use lower-case letters, digits and '-' (at most 40)",
                self.site.name
            ));
        }
        if parse_version(&self.site.version).is_none() {
            out.push(format!(
                "site.version {:?}: expected MAJOR.MINOR.PATCH",
                self.site.version
            ));
        }
        if self.facilities.is_empty() {
            out.push("[[facility]]: at least one facility is needed".into());
        }
        let mut codes = std::collections::BTreeSet::new();
        for f in &self.facilities {
            if f.code.is_empty()
                || f.code.len() > 16
                || !f
                    .code
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                out.push(format!(
                    "facility.code {:?}: use capitals and digits (at most 16)",
                    f.code
                ));
            }
            if f.name.trim().is_empty() {
                out.push(format!("facility {:?}: the name is empty", f.code));
            }
            if !codes.insert(&f.code) {
                out.push(format!("facility.code {:?} appears twice", f.code));
            }
        }
        for (key, host) in [
            ("portals.lan", &self.portals.lan),
            ("portals.dmz", &self.portals.dmz),
        ] {
            if !is_dns_name(host) {
                out.push(format!(
                    "{key} {host:?}: expected a fully qualified host name like kiorex.hospital.lan"
                ));
            }
        }
        if self.portals.lan == self.portals.dmz {
            out.push(
                "portals.lan and portals.dmz must differ: the DMZ portal is a separate ingress"
                    .into(),
            );
        }
        for node in self.nodes.servers.iter().chain(&self.nodes.dmz) {
            if !is_label(node) && !is_dns_name(node) {
                out.push(format!("nodes: {node:?} is not a valid node name"));
            }
        }
        if let Some(n) = self
            .nodes
            .dmz
            .iter()
            .find(|n| self.nodes.servers.contains(n))
        {
            out.push(format!(
                "nodes: {n:?} is both a server and a DMZ node; DMZ nodes must run nothing else"
            ));
        }
        if let Some(d) = &self.directory {
            if endpoint(&d.url, &["ldap", "ldaps"]).is_none() {
                out.push(format!(
                    "directory.url {:?}: expected ldaps://host:port (or ldap:// inside a trusted VLAN)",
                    d.url
                ));
            }
            if !d.base_dn.contains('=') {
                out.push(format!(
                    "directory.base_dn {:?}: expected e.g. dc=hospital,dc=lan",
                    d.base_dn
                ));
            }
        }
        if let Some(i) = &self.idp
            && endpoint(&i.issuer, &["https"]).is_none()
        {
            out.push(format!(
                "idp.issuer {:?}: expected an https:// URL",
                i.issuer
            ));
        }
        if let Some(c) = &self.ceph {
            if endpoint(&c.endpoint, &["https", "http"]).is_none() {
                out.push(format!(
                    "ceph.endpoint {:?}: expected https://host[:port]",
                    c.endpoint
                ));
            }
            for (key, b) in [
                ("ceph.documents_bucket", &c.documents_bucket),
                ("ceph.quarantine_bucket", &c.quarantine_bucket),
                ("ceph.backup_bucket", &c.backup_bucket),
            ] {
                if !is_bucket(b) {
                    out.push(format!("{key} {b:?}: 3-63 lower-case letters, digits, '-'"));
                }
            }
        }
        if let Some(s) = &self.smtp
            && host_port(&s.relay).is_none()
        {
            out.push(format!("smtp.relay {:?}: expected host:port", s.relay));
        }
        if self.backup.target.starts_with("s3://") && self.ceph.is_none() {
            out.push("backup.target is s3:// but there is no [ceph] section".into());
        }
        out
    }

    /// Every network service the site depends on, as (what, host, port, speaks TLS from the start).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut out = Vec::new();
        if let Some(d) = &self.directory
            && let Some((scheme, host, port)) = endpoint(&d.url, &["ldap", "ldaps"])
        {
            out.push(Endpoint::new("directory", host, port, scheme == "ldaps"));
        }
        if let Some(i) = &self.idp
            && let Some((_, host, port)) = endpoint(&i.issuer, &["https"])
        {
            out.push(Endpoint::new("idp", host, port, true));
        }
        if let Some(c) = &self.ceph
            && let Some((scheme, host, port)) = endpoint(&c.endpoint, &["https", "http"])
        {
            out.push(Endpoint::new("ceph-rgw", host, port, scheme == "https"));
        }
        if let Some(s) = &self.smtp
            && let Some((host, port)) = host_port(&s.relay)
        {
            // Port 465 is TLS from the first byte; 25/587 start in clear and STARTTLS.
            out.push(Endpoint::new("smtp", host, port, port == 465));
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub what: &'static str,
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Endpoint {
    fn new(what: &'static str, host: String, port: u16, tls: bool) -> Endpoint {
        Endpoint {
            what,
            host,
            port,
            tls,
        }
    }
}

/// `scheme://host[:port][/path]` → (scheme, host, port with the scheme's default).
pub fn endpoint(url: &str, schemes: &[&str]) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    if !schemes.contains(&scheme) {
        return None;
    }
    let authority = rest.split('/').next()?;
    let default = match scheme {
        "ldap" => 389,
        "ldaps" => 636,
        "http" => 80,
        _ => 443,
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, default),
    };
    (is_dns_name(host) || host.parse::<std::net::IpAddr>().is_ok())
        .then(|| (scheme.to_owned(), host.to_owned(), port))
}

fn host_port(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let port = p.parse().ok()?;
    (is_dns_name(h) || h.parse::<std::net::IpAddr>().is_ok()).then(|| (h.to_owned(), port))
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A host name with at least two labels (a bare name would depend on the resolver's search path).
pub fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

fn is_bucket(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `1.2.3` → (1, 2, 3); a pre-release suffix (`-rc1`) is ignored for ordering.
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn example() -> SiteConfig {
        toml::from_str(
            r#"
            [site]
            name = "example-general"
            [[facility]]
            code = "EGH"
            name = "Example General Hospital"
            [portals]
            lan = "kiorex.example-general.lan"
            dmz = "patients.example-general.org"
            [directory]
            url = "ldaps://dc1.example-general.lan"
            base_dn = "dc=example-general,dc=lan"
            [smtp]
            relay = "smtp.example-general.lan:587"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn the_example_is_valid_and_names_its_endpoints() {
        let site = example();
        assert_eq!(site.problems(), Vec::<String>::new());
        let endpoints = site.endpoints();
        assert_eq!(endpoints[0].port, 636);
        assert!(endpoints[0].tls);
        assert_eq!(endpoints[1].what, "smtp");
        assert!(!endpoints[1].tls);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut site = example();
        site.site.name = "Example General".into();
        site.portals.dmz = "patients".into();
        site.facilities[0].code = "egh".into();
        site.backup.target = "s3://kiorex-backup".into();
        let problems = site.problems().join("\n");
        for key in ["site.name", "portals.dmz", "facility.code", "backup.target"] {
            assert!(problems.contains(key), "{key} missing in {problems}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = format!("{}\n[portals2]\nx = 1\n", example().to_toml().unwrap());
        assert!(toml::from_str::<SiteConfig>(&text).is_err());
    }

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(parse_version("1.2.3"), Some((1, 2, 3)));
        assert_eq!(parse_version("2.0.0-rc1"), Some((2, 0, 0)));
        assert_eq!(parse_version("1.2"), None);
        assert_eq!(parse_version("1.2.3.4"), None);
    }
}
