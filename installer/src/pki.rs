//! The site's internal PKI: one CA and a certificate per service, each naming exactly the host
//! names its clients use. rcgen (rustls project, widely used) builds the certificates; x509-parser
//! reads them back for `status` and `rotate-certs`.
//!
//! Leaf certificates live 365 days, like k3s's own; `status` warns 60 days ahead and
//! `rotate-certs` reissues them from the same CA, so clients keep trusting them.

use crate::files::write_secret;
use crate::site::SiteConfig;
use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

pub const LEAF_DAYS: i64 = 365;
pub const CA_DAYS: i64 = 3650;
/// `status` warns when a certificate expires within this many days.
pub const WARN_DAYS: i64 = 60;

/// One certificate the site needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// File stem under `pki/`, e.g. `core-internal`.
    pub name: &'static str,
    pub names: Vec<String>,
    pub client: bool,
}

/// Every certificate of the site, with the names in the manifests' Services and Ingresses.
pub fn services(site: &SiteConfig) -> Vec<Service> {
    let svc = |name: &str, ns: &str| {
        vec![
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}.svc.cluster.local"),
        ]
    };
    let mut rgw = vec!["ceph-rgw.kiorex-data.svc.cluster.local".to_owned()];
    if let Some((_, host, _)) = site
        .ceph
        .as_ref()
        .and_then(|c| crate::site::endpoint(&c.endpoint, &["https", "http"]))
    {
        rgw.push(host);
    }
    let mut postgres = Vec::new();
    for s in ["kiorex-pg-rw", "kiorex-pg-ro", "kiorex-pg-r"] {
        postgres.extend(svc(s, "kiorex-data"));
    }
    vec![
        Service {
            name: "staff-portal",
            names: vec![site.portals.lan.clone()],
            client: false,
        },
        Service {
            name: "patient-portal",
            names: vec![site.portals.dmz.clone()],
            client: false,
        },
        Service {
            name: "edge-public",
            names: vec![site.portals.dmz.clone()],
            client: false,
        },
        Service {
            name: "edge-upstream",
            names: svc("kiorex-edge", "kiorex-dmz"),
            client: true,
        },
        Service {
            name: "core-internal",
            names: svc("kiorex-core-internal", "kiorex-clinical"),
            client: false,
        },
        Service {
            name: "postgres",
            names: postgres,
            client: false,
        },
        Service {
            name: "meilisearch",
            names: svc("meilisearch", "kiorex-data"),
            client: false,
        },
        Service {
            name: "ceph-rgw",
            names: rgw,
            client: false,
        },
    ]
}

pub struct Pki {
    pub dir: PathBuf,
}

/// What happened to one certificate in `ensure`/`rotate`.
#[derive(Debug, Serialize)]
pub struct Issued {
    pub name: String,
    pub action: &'static str,
    pub not_after: String,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        Pki {
            dir: dir.to_owned(),
        }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }
    fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// Creates the CA if missing, then every certificate that is missing or names other hosts
    /// than the site config now asks for. Existing, matching certificates are kept.
    pub fn ensure(&self, site: &SiteConfig, now: OffsetDateTime) -> Result<Vec<Issued>> {
        let mut out = Vec::new();
        if !self.ca_cert().exists() {
            self.create_ca(&site.site.name, now)?;
            out.push(self.issued("ca", "created")?);
        }
        for service in services(site) {
            let current = std::fs::read(self.cert(service.name))
                .ok()
                .and_then(|pem| describe_pem(&pem).ok());
            let action = match current {
                None => "created",
                Some(info) if !same_names(&info.names, &service.names) => {
                    "reissued (names changed)"
                }
                Some(_) => continue,
            };
            self.issue(&service, now)?;
            out.push(self.issued(service.name, action)?);
        }
        Ok(out)
    }

    /// Reissues every leaf certificate that expires within `within_days` (all with `None`).
    pub fn rotate(
        &self,
        site: &SiteConfig,
        now: OffsetDateTime,
        within_days: Option<i64>,
    ) -> Result<Vec<Issued>> {
        let mut out = Vec::new();
        for service in services(site) {
            let due = match (within_days, self.describe(service.name)) {
                (None, _) | (_, Err(_)) => true,
                (Some(days), Ok(info)) => info.days_left_at(now) <= days,
            };
            if due {
                self.issue(&service, now)?;
                out.push(self.issued(service.name, "reissued")?);
            }
        }
        Ok(out)
    }

    fn issued(&self, name: &str, action: &'static str) -> Result<Issued> {
        Ok(Issued {
            name: name.to_owned(),
            action,
            not_after: self.describe(name)?.not_after,
        })
    }

    pub fn describe(&self, name: &str) -> Result<CertInfo> {
        let path = self.cert(name);
        let pem =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        describe_pem(&pem)
    }

    fn create_ca(&self, site: &str, now: OffsetDateTime) -> Result<()> {
        let key = KeyPair::generate()?;
        let cert = ca_params(site, now).self_signed(&key)?;
        write_secret(&self.ca_key(), key.serialize_pem().as_bytes())?;
        std::fs::write(self.ca_cert(), cert.pem())?;
        Ok(())
    }

    fn issue(&self, service: &Service, now: OffsetDateTime) -> Result<()> {
        let ca_key = KeyPair::from_pem(&std::fs::read_to_string(self.ca_key())?)
            .context("cannot read the CA key")?;
        let issuer = Issuer::from_ca_cert_pem(&std::fs::read_to_string(self.ca_cert())?, ca_key)?;
        let mut params = CertificateParams::new(service.names.clone())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, service.names[0].clone());
        dn.push(DnType::OrganizationName, "Kiorex");
        params.distinguished_name = dn;
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(LEAF_DAYS);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = if service.client {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        };
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write_secret(&self.key(service.name), key.serialize_pem().as_bytes())?;
        std::fs::write(self.cert(service.name), cert.pem())?;
        Ok(())
    }
}

fn ca_params(site: &str, now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Kiorex internal CA ({site})"));
    dn.push(DnType::OrganizationName, "Kiorex");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(CA_DAYS);
    params
}

fn same_names(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub names: Vec<String>,
    pub not_after: String,
    pub not_after_unix: i64,
    pub days_left: i64,
    pub is_ca: bool,
}

impl CertInfo {
    pub fn days_left_at(&self, now: OffsetDateTime) -> i64 {
        (self.not_after_unix - now.unix_timestamp()).div_euclid(86_400)
    }
}

pub fn describe_pem(pem: &[u8]) -> Result<CertInfo> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    describe(&parsed.contents)
}

pub fn describe(der: &[u8]) -> Result<CertInfo> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push((*d).to_owned()),
                GeneralName::IPAddress(ip) if ip.len() == 4 => {
                    names.push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string())
                }
                _ => {}
            }
        }
    }
    let not_after = cert.validity().not_after.to_datetime();
    let now = OffsetDateTime::now_utc();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        names,
        not_after: not_after
            .format(&::time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        not_after_unix: not_after.unix_timestamp(),
        days_left: (not_after.unix_timestamp() - now.unix_timestamp()).div_euclid(86_400),
        is_ca: cert.is_ca(),
    })
}
