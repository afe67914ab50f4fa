//! The single node's certificates, made once in `<data-dir>/pki` with rcgen and reused:
//! an internal CA with core's internal certificate (127.0.0.1) and the edge's client
//! certificate, and a local public CA with the edge's certificate for `localhost`, 127.0.0.1
//! and this host's name. A hospital replaces the public one with its own (see docs/ops/edge.md);
//! the edge reloads it without a restart.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

pub const EDGE_CLIENT_NAME: &str = "edge.kiorex.internal";

/// The files the edge and core's internal listener are configured with.
pub struct Files {
    pub internal_ca: PathBuf,
    pub core_cert: PathBuf,
    pub core_key: PathBuf,
    pub edge_client_cert: PathBuf,
    pub edge_client_key: PathBuf,
    pub public_ca: PathBuf,
    pub edge_cert: PathBuf,
    pub edge_key: PathBuf,
}

fn private(path: &Path, text: &str) -> Result<()> {
    super::secret_file(path, text)
}

fn ca(name: &str) -> Result<(CertificateParams, KeyPair, String)> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let key = KeyPair::generate()?;
    let pem = params.self_signed(&key)?.pem();
    Ok((params, key, pem))
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: &[String],
    usage: ExtendedKeyUsagePurpose,
    cert: &Path,
    key_file: &Path,
) -> Result<()> {
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    params.distinguished_name = dn;
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = rcgen::date_time_ymd(2024, 1, 1);
    params.not_before = now;
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let key = KeyPair::generate()?;
    std::fs::write(cert, params.signed_by(&key, issuer)?.pem())?;
    private(key_file, &key.serialize_pem())
}

/// Makes what is missing; keeps what exists.
pub fn ensure(dir: &Path) -> Result<Files> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = Files {
        internal_ca: dir.join("internal-ca.pem"),
        core_cert: dir.join("core-internal.pem"),
        core_key: dir.join("core-internal-key.pem"),
        edge_client_cert: dir.join("edge-client.pem"),
        edge_client_key: dir.join("edge-client-key.pem"),
        public_ca: dir.join("public-ca.pem"),
        edge_cert: dir.join("edge.pem"),
        edge_key: dir.join("edge-key.pem"),
    };
    if !files.edge_client_key.exists() {
        let (params, key, pem) = ca("Kiorex single-node internal CA")?;
        std::fs::write(&files.internal_ca, pem)?;
        let issuer = Issuer::new(params, key);
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        leaf(
            &issuer,
            &["127.0.0.1".into()],
            server,
            &files.core_cert,
            &files.core_key,
        )?;
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let names = [EDGE_CLIENT_NAME.to_owned()];
        leaf(
            &issuer,
            &names,
            client,
            &files.edge_client_cert,
            &files.edge_client_key,
        )?;
    }
    if !files.edge_key.exists() {
        let (params, key, pem) = ca("Kiorex single-node public CA")?;
        std::fs::write(&files.public_ca, pem)?;
        let issuer = Issuer::new(params, key);
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
            let host = host.trim();
            if !host.is_empty() && host != "localhost" {
                names.push(host.to_owned());
            }
        }
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        leaf(&issuer, &names, server, &files.edge_cert, &files.edge_key)?;
    }
    Ok(files)
}
