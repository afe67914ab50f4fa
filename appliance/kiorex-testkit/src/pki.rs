//! A test PKI made with rcgen: an internal CA, server certificates for 127.0.0.1, the edge's
//! client certificate, and the bad ones (another CA, expired). Files are written to a temporary
//! directory, keys with mode 0600, and removed when the `Pki` is dropped.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A certificate and its key, as PEM text and as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

/// One certificate authority and the directory its certificates are written to.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM file), the trust anchor to configure.
    pub ca_file: PathBuf,
    pub ca_pem: String,
    /// The CA's private key (PEM, mode 0600), e.g. to sign OCSP responses with `openssl ocsp`.
    pub ca_key_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    serial: AtomicUsize,
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "Kiorex tests");
        params.distinguished_name = dn;
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write CA");
        let ca_key_file = dir.path().join("ca-key.pem");
        write_private(&ca_key_file, &key.serialize_pem());
        Pki {
            dir,
            ca_file,
            ca_key_file,
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            serial: AtomicUsize::new(0),
        }
    }

    /// A server certificate for `names` (IP addresses or DNS names), e.g. `["127.0.0.1"]`.
    pub fn server(&self, file_stem: &str, names: &[&str]) -> CertFiles {
        self.issue(file_stem, names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A client certificate carrying `name` as a DNS name (e.g. `edge.kiorex.internal`).
    pub fn client(&self, file_stem: &str, name: &str) -> CertFiles {
        self.issue(
            file_stem,
            &[name],
            ExtendedKeyUsagePurpose::ClientAuth,
            false,
        )
    }

    /// A client certificate that expired in 2020.
    pub fn expired_client(&self, file_stem: &str, name: &str) -> CertFiles {
        self.issue(
            file_stem,
            &[name],
            ExtendedKeyUsagePurpose::ClientAuth,
            true,
        )
    }

    fn issue(
        &self,
        file_stem: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> CertFiles {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) as u64 + 2;
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        if expired {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2020, 1, 1);
        } else {
            params.not_before = date_time_ymd(2024, 1, 1);
            params.not_after = date_time_ymd(2099, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let files = CertFiles {
            cert: self.dir.path().join(format!("{file_stem}.pem")),
            key: self.dir.path().join(format!("{file_stem}-key.pem")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&files.cert, &files.cert_pem).expect("write certificate");
        write_private(&files.key, &files.key_pem);
        files
    }
}
