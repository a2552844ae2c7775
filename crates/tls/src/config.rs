//! rustls configurations: TLS 1.2 and 1.3 only, with ring's primitives.
//!
//! ring is the provider because it is the mature one with the least C (a few files
//! beside its assembly, compiled by the system's gcc even for the musl target);
//! aws-lc-rs would bring a whole C library and cmake, and the pure-Rust providers are
//! not yet released as stable.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("unable to read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

/// The server's configuration from a certificate chain and a key (PKCS#8, SEC1 or
/// PKCS#1 PEM); both may be the same file, as qmail-tls's servercert.pem.
pub fn server(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = certs(cert)?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("unable to read the key from {}: {e}", key.display()))?;
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map(Arc::new)
        .map_err(|e| format!("unusable certificate or key: {e}"))
}

/// A client configuration that verifies the server against the roots in `ca_file`,
/// or, with `ca_file` None, accepts any certificate (opportunistic TLS; the handshake
/// signatures are still checked).
pub fn client(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?;
    let config = match ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs(path)?);
            if added == 0 {
                return Err(format!("no usable CA certificate in {}", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts every certificate, but still checks that the server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What the application learns about the session: mod_ssl's names, as UCSPI-TLS asks,
/// as `NAME=value` pairs.
pub fn session_info(conn: &rustls::Connection) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    if let Some(v) = conn.protocol_version() {
        let v = match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            other => format!("{other:?}"),
        };
        vars.push(("SSL_PROTOCOL".into(), v));
    }
    if let Some(s) = conn.negotiated_cipher_suite() {
        vars.push(("SSL_CIPHER".into(), s.suite().as_str().unwrap_or("unknown").to_string()));
    }
    if let rustls::Connection::Server(s) = conn {
        if let Some(sni) = s.server_name() {
            vars.push(("SSL_TLS_SNI".into(), sni.to_string()));
        }
    }
    vars
}

/// The UCSPI-TLS reply to `Y` (and implicit mode's info pipe).
pub fn info_string(vars: &[(String, String)]) -> Vec<u8> {
    let pairs: Vec<(&[u8], &[u8])> = vars.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
    qmail::ucspitls::encode(&pairs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn info_strings() {
        assert_eq!(super::info_string(&[]), b"\0\0");
        let v = [
            ("SSL_PROTOCOL".to_string(), "TLSv1.3".to_string()),
            ("A".to_string(), "b".to_string()),
        ];
        assert_eq!(super::info_string(&v), b"SSL_PROTOCOL=TLSv1.3\0A=b\0\0");
    }
}
