//! TLS for the timed transport (and for reqwest, which gets the same configuration): whom the
//! client trusts, the client certificate it presents, and the server side of `perf
//! serve-mock --tls-cert`.
//!
//! Trust is what the platform has plus what the user names, as curl and Python's `ssl` see it:
//! the compiled-in public roots (Mozilla's, from `webpki-roots`), the system store
//! (`rustls-native-certs`: the distribution's bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR` in
//! its place, as OpenSSL reads them), and every `--tls-ca-cert` file. `--tls-insecure` turns
//! verification of the server's identity off; the handshake's signatures are still checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What the user said about TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsPlan {
    /// `--tls-ca-cert`: extra CA bundles (PEM), trusted besides the platform's.
    pub ca_files: Vec<PathBuf>,
    /// `--tls-client-cert`: the client certificate chain (PEM), for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// `--tls-client-key`: its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
    /// `--tls-insecure`: do not verify the server's certificate.
    pub insecure: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates from a PEM file; an error names the file and what is wrong with it.
pub fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what}: {} holds no certificate (a PEM file with -----BEGIN CERTIFICATE----- blocks is expected)",
            path.display()
        ));
    }
    Ok(certs)
}

/// A private key from a PEM file.
pub fn private_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        format!(
            "{what}: {} holds no usable private key ({e}); a PEM PKCS#8, PKCS#1 or SEC1 key is expected",
            path.display()
        )
    })
}

/// Where trust came from, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrustCounts {
    /// Compiled-in public roots.
    pub builtin: usize,
    /// From the platform store or `SSL_CERT_FILE` / `SSL_CERT_DIR`.
    pub platform: usize,
    /// From `--tls-ca-cert`.
    pub extra: usize,
}

/// Every root the client trusts, and how many came from where.
pub fn roots(plan: &TlsPlan) -> Result<(RootCertStore, TrustCounts), String> {
    let mut store = RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut counts = TrustCounts {
        builtin: store.len(),
        ..TrustCounts::default()
    };
    let native = rustls_native_certs::load_native_certs();
    // An unreadable SSL_CERT_FILE or SSL_CERT_DIR is the user's mistake; a platform store that
    // is partly unreadable is not (the compiled-in roots remain).
    // (With either variable set, the platform store is not read: the errors are theirs.)
    let set: Vec<String> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .into_iter()
        .filter_map(|var| {
            let value = std::env::var_os(var).filter(|v| !v.is_empty())?;
            Some(format!("{var}={}", Path::new(&value).display()))
        })
        .collect();
    if let (false, Some(e)) = (set.is_empty(), native.errors.first()) {
        return Err(format!(
            "cannot read the certificates of {} ({e}): point it at PEM certificates, or unset it",
            set.join(" and ")
        ));
    }
    let (added, _unparsable) = store.add_parsable_certificates(native.certs);
    counts.platform = added;
    for path in &plan.ca_files {
        let before = store.len();
        for cert in certificates(path, "--tls-ca-cert")? {
            store.add(cert).map_err(|e| {
                format!(
                    "--tls-ca-cert: {} holds a certificate that cannot be a trust anchor: {e}",
                    path.display()
                )
            })?;
        }
        counts.extra += store.len() - before;
    }
    Ok((store, counts))
}

/// The client configuration every connection of the run uses (HTTP/1.1 by ALPN, as
/// evalscope's aiohttp client speaks), and where its trust came from (`None` with
/// `--tls-insecure`).
pub fn client_config(
    plan: &TlsPlan,
) -> Result<(Arc<rustls::ClientConfig>, Option<TrustCounts>), String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let (builder, counts) = if plan.insecure {
        let verifier = Arc::new(NoVerification(provider()));
        (
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier),
            None,
        )
    } else {
        let (store, counts) = roots(plan)?;
        (builder.with_root_certificates(store), Some(counts))
    };
    let mut config = match (&plan.client_cert, &plan.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                certificates(cert, "--tls-client-cert")?,
                private_key(key, "--tls-client-key")?,
            )
            .map_err(|e| {
                format!(
                    "--tls-client-cert {} and --tls-client-key {} do not make a client identity: {e}",
                    cert.display(),
                    key.display()
                )
            })?,
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err("--tls-client-cert needs --tls-client-key (the certificate's private key)".into())
        }
        (None, Some(_)) => {
            return Err("--tls-client-key needs --tls-client-cert (the certificate it belongs to)".into())
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), counts))
}

/// The server configuration of `perf serve-mock --tls-cert`: its certificate chain and key,
/// and, with `client_ca`, client certificates required and checked against it.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut store = RootCertStore::empty();
            for c in certificates(ca, "--tls-client-ca")? {
                store
                    .add(c)
                    .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                store.into(),
                provider(),
            )
            .build()
            .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(
            certificates(cert, "--tls-cert")?,
            private_key(key, "--tls-key")?,
        )
        .map_err(|e| {
            format!(
                "--tls-cert {} and --tls-key {} do not make a server identity: {e}",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `host` as the name the server's certificate must carry (an IP address or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|e| format!("'{host}' cannot be checked against a certificate: {e}"))
}

/// How every TLS handshake failure's message starts (a certificate problem does not go away
/// by trying again: the connection test does not retry it).
pub const HANDSHAKE_FAILED: &str = "TLS handshake failed";

/// The TLS failure among `e`'s causes, as [`explain`] puts it. In TLS 1.3 a server that
/// rejects the client's certificate says so after the client finished its handshake, so the
/// alert arrives with the first response instead of at connect time.
pub fn failure_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return Some(explain(io));
            }
        }
        source = s.source();
    }
    None
}

/// A TLS failure as a user can act on it.
pub fn explain(e: &std::io::Error) -> String {
    let inner = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let hint = match inner {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature => {
                "; the server's certificate is not signed by a CA perf trusts: pass its CA with --tls-ca-cert FILE (or SSL_CERT_FILE / SSL_CERT_DIR), or --tls-insecure on a test rig"
            }
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => {
                "; the certificate is for another name than the --url's host: use the host name the certificate names"
            }
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                "; the server's certificate has expired"
            }
            _ => "",
        },
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::HandshakeFailure
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA,
        )) => {
            "; the server may require a client certificate it trusts: pass --tls-client-cert and --tls-client-key"
        }
        _ => "",
    };
    format!("{HANDSHAKE_FAILED}: {e}{hint}")
}

/// `--tls-insecure`: any certificate is accepted; the handshake's signatures are still checked
/// with the provider's algorithms, so the session is encrypted, only not authenticated.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_identity_needs_both_files() {
        let plan = TlsPlan {
            client_cert: Some("c.pem".into()),
            ..TlsPlan::default()
        };
        assert!(client_config(&plan)
            .expect_err("refused")
            .contains("needs --tls-client-key"));
    }

    #[test]
    fn a_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let plan = TlsPlan {
            ca_files: vec![path.clone()],
            ..TlsPlan::default()
        };
        let e = client_config(&plan).expect_err("refused");
        assert!(
            e.contains("--tls-ca-cert") && e.contains("empty.pem"),
            "{e}"
        );
    }

    #[test]
    fn the_builtin_roots_are_always_there() {
        let (_, counts) = roots(&TlsPlan::default()).expect("roots");
        assert!(counts.builtin > 100, "{counts:?}");
    }

    #[test]
    fn names_for_ip_and_dns_hosts() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("api.example.com").is_ok());
    }
}
