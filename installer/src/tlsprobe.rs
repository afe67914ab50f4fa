//! A TLS handshake to a site service, reporting the certificate it presents. Preflight runs before
//! the site's CA is known to this host, so the chain is not judged here (the services check it
//! against the trust bundle); the handshake, the host name and the expiry are.

use anyhow::{Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Accepts any chain but still checks the handshake signatures, so the peer proves it holds the
/// key of the certificate it shows.
#[derive(Debug)]
struct RecordOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for RecordOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Completes a handshake on `stream` and describes the server certificate.
pub fn handshake(mut stream: TcpStream, host: &str, timeout: Duration) -> Result<String> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordOnly(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned())?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream)?;
    }
    // Flush anything pending so the peer sees a clean close.
    let _ = conn.writer().flush();
    let _ = stream.read(&mut [0u8; 0]);
    let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
        bail!("the server sent no certificate");
    };
    let info = crate::pki::describe(cert.as_ref())?;
    let names_host = info.names.iter().any(|n| n.eq_ignore_ascii_case(host));
    if !names_host {
        bail!(
            "the certificate names {} but not {host}",
            info.names.join(", ")
        );
    }
    if info.days_left < 0 {
        bail!("the certificate expired {} days ago", -info.days_left);
    }
    Ok(format!(
        "certificate for {host}, expires {} ({} days)",
        info.not_after, info.days_left
    ))
}
