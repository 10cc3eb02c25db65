//! Whom an outbound https call trusts: the host's CA certificates (or `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` when set, the operator's way to add a private CA, as for gate webhooks
//! today), plus an optional PEM bundle per Prometheus source or alert provider (from a
//! Secret or ConfigMap). All on rustls with the ring provider, which the Kubernetes client
//! already links: no aws-lc, no openssl, no process-wide provider to install.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::Error;

/// The certificates of a PEM bundle; an error when it holds none or one does not parse.
pub fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        // The PEM error's own text lists raw bytes; the section is all a reader needs.
        .map_err(|_| Error::CaBundle {
            reason: "unreadable PEM certificate section".to_string(),
        })?;
    if certificates.is_empty() {
        return Err(Error::CaBundle {
            reason: "no PEM certificate found".to_string(),
        });
    }
    Ok(certificates)
}

/// The host's CA certificates (`SSL_CERT_FILE`/`SSL_CERT_DIR` when set), read once per
/// process: reading and parsing them takes tens of milliseconds, and a client is built per
/// Prometheus source and per alert provider.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// The host's roots and `extra_ca_pem`.
fn root_store(extra_ca_pem: Option<&[u8]>) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    // Unparsable system certificates are skipped, as every TLS client does.
    let (added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(pem) = extra_ca_pem {
        for certificate in parse_ca_bundle(pem)? {
            roots.add(certificate).map_err(|e| Error::CaBundle {
                reason: format!("unusable CA certificate ({e})"),
            })?;
        }
    }
    if added == 0 && extra_ca_pem.is_none() {
        tracing::warn!("no CA certificates found on this host: https calls will fail");
    }
    Ok(roots)
}

/// The rustls client configuration for one outbound client.
pub fn client_config(
    extra_ca_pem: Option<&[u8]>,
    insecure_skip_verify: bool,
) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsSetup {
            reason: e.to_string(),
        })?;
    let config = if insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(root_store(extra_ca_pem)?)
            .with_no_client_auth()
    };
    Ok(config)
}

/// `insecureSkipVerify`: any certificate for any name is accepted (the handshake's
/// signatures are still checked, so the peer holds the key of the certificate it sent).
/// For test clusters only; the validation of a source or provider warns about it.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_refused_in_one_line() {
        let no_certificate = parse_ca_bundle(b"not a certificate").unwrap_err();
        assert_eq!(
            no_certificate.to_string(),
            "CA bundle: no PEM certificate found"
        );
        let broken = parse_ca_bundle(b"-----BEGIN CERTIFICATE-----\nzz\n").unwrap_err();
        assert_eq!(
            broken.to_string(),
            "CA bundle: unreadable PEM certificate section"
        );
    }
}
