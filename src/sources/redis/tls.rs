//! TLS to a Redis server, as redis-rs sets it up with rustls: the server
//! is verified against the trigger's CA bundle if it names one, else
//! against the public web roots; `insecureSkipVerify` accepts any
//! certificate (and says so in the trigger, not here).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A trigger's TLS settings.
#[derive(Clone)]
pub(super) struct TlsSettings {
    /// PEM bundle of the CAs to trust instead of the web's.
    pub(super) ca: Option<Vec<u8>>,
    pub(super) insecure: bool,
}

/// TLS over `tcp` to the server named `host`.
pub(super) async fn connect_tls(
    tcp: TcpStream,
    host: &str,
    tls: &TlsSettings,
) -> std::io::Result<TlsStream<TcpStream>> {
    let config = client_config(tls)?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| invalid(format!("{host} is not a TLS server name ({e})")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

fn invalid(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
}

fn client_config(tls: &TlsSettings) -> std::io::Result<ClientConfig> {
    let builder = ClientConfig::builder();
    if tls.insecure {
        let provider = builder.crypto_provider().clone();
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    match &tls.ca {
        Some(pem) => {
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots
                    .add(cert?)
                    .map_err(|e| invalid(format!("the CA bundle holds a bad certificate ({e})")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `insecureSkipVerify`: any certificate, for any name. The handshake's
/// signatures are still checked, so the session is with whoever holds the
/// key of the certificate shown.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
