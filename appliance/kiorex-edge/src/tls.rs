//! TLS for the edge and for core's internal listener: certificates from PEM files, reloaded when
//! the files change (no restart, connections in flight keep the key they started with), AEAD
//! suites only, the client-certificate check of the internal listener, the edge's own client
//! certificate towards core (also reloaded), and OCSP stapling from a response file.

use anyhow::{Context, Result, bail};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{CryptoProvider, ring};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedCipherSuite,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// The suites the edge offers: TLS 1.3 suites, then TLS 1.2 ECDHE suites with AES-GCM or
/// ChaCha20-Poly1305. Every one is an AEAD; the ring provider has no CBC suite, and this list is
/// explicit so that a future provider cannot widen it silently.
fn aead_suites(allow_tls12: bool) -> Vec<SupportedCipherSuite> {
    use ring::cipher_suite::*;
    let mut suites = vec![
        TLS13_AES_256_GCM_SHA384,
        TLS13_AES_128_GCM_SHA256,
        TLS13_CHACHA20_POLY1305_SHA256,
    ];
    if allow_tls12 {
        suites.extend([
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ]);
    }
    suites
}

fn provider(allow_tls12: bool) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: aead_suites(allow_tls12),
        ..ring::default_provider()
    })
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
static TLS13_AND_12: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn versions(allow_tls12: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    if allow_tls12 {
        TLS13_AND_12
    } else {
        TLS13_ONLY
    }
}

/// Reads a PEM certificate chain (leaf first).
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", path.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("{} is not a PEM private key", path.display()))
}

/// The CA certificates in a PEM file, as a trust store.
pub fn read_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_chain(path)? {
        roots
            .add(cert)
            .with_context(|| format!("{} holds an unusable CA certificate", path.display()))?;
    }
    Ok(roots)
}

fn load_certified_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey> {
    CertifiedKey::from_der(read_chain(cert)?, read_key(key)?, provider).with_context(|| {
        format!(
            "the key in {} does not belong to the certificate in {}",
            key.display(),
            cert.display()
        )
    })
}

/// What identifies a version of a file without reading it.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

/// A certificate and key that follow their files. A new pair is taken only when it loads and
/// the key matches the certificate, so a rotation written in two steps (certificate, then key)
/// never serves a broken pair: the old one stays until both files agree.
///
/// With an OCSP response file, the response is stapled while it is fit (see [`crate::ocsp`]); a
/// new response file is picked up like a new certificate, and a stapled response that expires is
/// dropped at the next check.
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    ocsp_file: Option<PathBuf>,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
}

/// What is served now, and the file versions it came from.
struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: [Stamp; 3],
    /// Until when the stapled OCSP response is current.
    staple_until: Option<Duration>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.cert_file)
            .finish()
    }
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

impl ReloadingCert {
    pub fn load(cert_file: &Path, key_file: &Path, provider: Arc<CryptoProvider>) -> Result<Self> {
        Self::load_with_ocsp(cert_file, key_file, None, provider)
    }

    /// Like [`ReloadingCert::load`], stapling the DER OCSP response in `ocsp_file` when fit.
    pub fn load_with_ocsp(
        cert_file: &Path,
        key_file: &Path,
        ocsp_file: Option<&Path>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self> {
        Ok(ReloadingCert {
            current: RwLock::new(load_pair(cert_file, key_file, ocsp_file, &provider)?),
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            ocsp_file: ocsp_file.map(Path::to_owned),
            provider,
        })
    }

    fn read_files(&self) -> Result<Loaded> {
        load_pair(
            &self.cert_file,
            &self.key_file,
            self.ocsp_file.as_deref(),
            &self.provider,
        )
    }

    /// Reloads when a file changed or the stapled response expired; returns whether a new
    /// certificate (or staple) is now served.
    pub fn reload_if_changed(&self) -> Result<bool> {
        let stamps = stamps_of(&self.cert_file, &self.key_file, self.ocsp_file.as_deref());
        {
            let current = self.current.read().expect("certificate lock");
            let staple_expired = current.staple_until.is_some_and(|t| t <= since_epoch());
            if current.stamps == stamps && !staple_expired {
                return Ok(false);
            }
        }
        let loaded = self.read_files()?;
        *self.current.write().expect("certificate lock") = loaded;
        Ok(true)
    }

    fn served(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("certificate lock").key.clone()
    }

    /// Checks the files every `interval` for as long as the process runs.
    pub fn watch(self: &Arc<Self>, interval: Duration, what: &'static str) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = this.upgrade() else { return };
                match this.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(what, file = %this.cert_file.display(), "certificate reloaded")
                    }
                    Ok(false) => {}
                    // Typically a rotation caught half-written: keep serving the old pair.
                    Err(e) => {
                        tracing::warn!(what, error = %format!("{e:#}"), "certificate not reloaded; still serving the previous one")
                    }
                }
            }
        });
    }
}

fn stamps_of(cert: &Path, key: &Path, ocsp: Option<&Path>) -> [Stamp; 3] {
    [stamp(cert), stamp(key), ocsp.and_then(stamp)]
}

fn load_pair(
    cert: &Path,
    key: &Path,
    ocsp: Option<&Path>,
    provider: &CryptoProvider,
) -> Result<Loaded> {
    let stamps = stamps_of(cert, key, ocsp);
    let mut certified = load_certified_key(cert, key, provider)?;
    let staple_until = ocsp.and_then(|file| attach_staple(file, &mut certified));
    Ok(Loaded {
        key: Arc::new(certified),
        stamps,
        staple_until,
    })
}

/// Staples the OCSP response in `file` to `key` if it is fit; returns until when it is current.
fn attach_staple(file: &Path, key: &mut CertifiedKey) -> Option<Duration> {
    let response = match std::fs::read(file) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "no OCSP response stapled: cannot read the file");
            return None;
        }
    };
    let leaf = key.end_entity_cert().ok()?;
    match crate::ocsp::fit_to_staple(&response, leaf, since_epoch()) {
        Ok(until) => {
            key.ocsp = Some(response);
            Some(until)
        }
        Err(why) => {
            tracing::warn!(file = %file.display(), reason = %why, "no OCSP response stapled");
            None
        }
    }
}

/// The edge's client certificate towards core: renewed files are used for new connections.
impl ResolvesClientCert for ReloadingCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.served())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.served())
    }
}

/// The public listener's TLS: no client certificates, AEAD only, HTTP/1.1.
pub fn edge_server_config(cert: Arc<ReloadingCert>, allow_tls12: bool) -> Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider(allow_tls12))
        .with_protocol_versions(versions(allow_tls12))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The provider both listeners use.
pub fn server_provider(allow_tls12: bool) -> Arc<CryptoProvider> {
    provider(allow_tls12)
}

/// The edge's client side towards core: TLS 1.3, core's CA only, the edge's client certificate
/// (followed on disk by `client_cert`).
pub fn core_client_config(ca_file: &Path, client_cert: Arc<ReloadingCert>) -> Result<ClientConfig> {
    // No ALPN here: the HTTP client sets it (HTTP/1.1 only).
    let config = ClientConfig::builder_with_provider(provider(false))
        .with_protocol_versions(versions(false))?
        .with_root_certificates(read_roots(ca_file)?)
        .with_client_cert_resolver(client_cert);
    Ok(config)
}

/// The provider of the edge's client side (its client certificate is loaded with it).
pub fn client_provider() -> Arc<CryptoProvider> {
    provider(false)
}

/// Core's internal listener: TLS 1.3 and a client certificate from `client_ca` is required (an
/// expired one or one from another CA fails the handshake); when `names` is not empty the
/// certificate must also carry one of them as a DNS name.
pub fn internal_server_config(
    cert: Arc<ReloadingCert>,
    client_ca: &Path,
    names: &[String],
) -> Result<ServerConfig> {
    let provider = provider(false);
    let webpki = WebPkiClientVerifier::builder_with_provider(
        Arc::new(read_roots(client_ca)?),
        provider.clone(),
    )
    .build()
    .context("cannot build the client-certificate verifier")?;
    let names = names
        .iter()
        .map(|n| {
            ServerName::try_from(n.clone()).map_err(|_| anyhow::anyhow!("{n:?} is not a DNS name"))
        })
        .collect::<Result<Vec<_>>>()?;
    let verifier: Arc<dyn ClientCertVerifier> = if names.is_empty() {
        webpki
    } else {
        Arc::new(NamedClientVerifier {
            inner: webpki,
            names,
        })
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(false))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption: a resumed session skips the client certificate, so an expired or
    // replaced certificate would keep working until the ticket ran out. Every connection proves
    // itself; the edge keeps its connections pooled, so full handshakes are rare.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The web PKI check, then: the certificate names one of the allowed clients.
#[derive(Debug)]
struct NamedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ClientCertVerifier for NamedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if self
            .names
            .iter()
            .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_suite_is_aead_and_tls12_only_when_asked() {
        let strict = aead_suites(false);
        assert!(strict.iter().all(|s| s.tls13().is_some()));
        let wide = aead_suites(true);
        assert!(wide.len() > strict.len());
        for s in wide {
            let name = format!("{:?}", s.suite());
            assert!(
                name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
                "{name} is not an AEAD suite"
            );
        }
    }
}
