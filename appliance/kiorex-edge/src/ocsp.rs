//! OCSP stapling: the edge staples the certificate authority's signed statement that its
//! certificate is not revoked, so that clients need not ask the CA themselves.
//!
//! The edge never fetches the statement: it opens no connection but to core (issue 7, the DMZ
//! rule). A management-zone job (`kiorexctl certs ocsp-fetch`, or the CA's own tooling) writes the
//! DER response next to the certificate; the edge re-reads it with the certificate and staples it
//! only while it is fit to staple (this module). A stale or foreign response is worse than none:
//! a client that requires stapling would reject the connection, so it is left out and logged.
//!
//! The response's signature is the client's to check (it trusts the CA, the edge need not);
//! here we check what the edge can get wrong: a response for another certificate, not "good",
//! or out of date.

use std::time::Duration;
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::oid::AssociatedOid;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus};

/// Why a response is not stapled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("the file is not a DER OCSP response")]
    Malformed,
    #[error("the responder answered {0:?}, not successful")]
    NotSuccessful(OcspResponseStatus),
    #[error("the response is not a basic OCSP response")]
    NotBasic,
    #[error("the response is not about this certificate (serial number differs)")]
    OtherCertificate,
    #[error("the response says the certificate is revoked")]
    Revoked,
    #[error("the responder does not know the certificate")]
    Unknown,
    #[error("the response is not valid yet")]
    NotYetValid,
    #[error("the response has expired (next update passed)")]
    Expired,
}

/// Checks that `response` (DER) is a successful, current "good" statement about `leaf` (DER) at
/// `now` (time since the Unix epoch), and returns until when it stays current. A response without
/// a next update is taken as current for a day after it was issued.
pub fn fit_to_staple(response: &[u8], leaf: &[u8], now: Duration) -> Result<Duration, Unfit> {
    let response = OcspResponse::from_der(response).map_err(|_| Unfit::Malformed)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(Unfit::NotSuccessful(response.response_status));
    }
    let bytes = response.response_bytes.ok_or(Unfit::NotBasic)?;
    if bytes.response_type != BasicOcspResponse::OID {
        return Err(Unfit::NotBasic);
    }
    let basic =
        BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(|_| Unfit::Malformed)?;
    let serial = Certificate::from_der(leaf)
        .map_err(|_| Unfit::Malformed)?
        .tbs_certificate
        .serial_number;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| r.cert_id.serial_number == serial)
        .ok_or(Unfit::OtherCertificate)?;
    match single.cert_status {
        CertStatus::Good(_) => {}
        CertStatus::Revoked(_) => return Err(Unfit::Revoked),
        CertStatus::Unknown(_) => return Err(Unfit::Unknown),
    }
    // Clocks differ a little between the CA and the edge.
    let skew = Duration::from_secs(300);
    let this_update = single.this_update.0.to_unix_duration();
    if this_update > now + skew {
        return Err(Unfit::NotYetValid);
    }
    let next_update = single
        .next_update
        .map(|t| t.0.to_unix_duration())
        .unwrap_or(this_update + Duration::from_secs(86_400));
    if next_update <= now {
        return Err(Unfit::Expired);
    }
    Ok(next_update)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_stapled() {
        assert_eq!(
            fit_to_staple(b"not der", b"", Duration::ZERO),
            Err(Unfit::Malformed)
        );
    }

    #[test]
    fn a_responder_error_is_not_stapled() {
        // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED tryLater(3) }
        let try_later = [0x30, 0x03, 0x0a, 0x01, 0x03];
        assert_eq!(
            fit_to_staple(&try_later, b"", Duration::ZERO),
            Err(Unfit::NotSuccessful(OcspResponseStatus::TryLater))
        );
    }
}
