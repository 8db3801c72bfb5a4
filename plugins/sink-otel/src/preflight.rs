//! The check, before any traffic, that a collector can be talked to. An `http://` collector
//! must accept a TCP connection. An `https://` one gets a TLS handshake with the trust and the
//! client certificate the exporters use, then a first exchange (an HTTP `HEAD` of the export
//! path, or HTTP/2's connection preface for gRPC), so that a certificate perf does not trust, a
//! name the certificate does not carry, or a client certificate the collector wants and did not
//! get is named before the run with the variable that fixes it, instead of surfacing as failed
//! exports once the benchmark is under way.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError};

use crate::exporters::TlsFiles;
use crate::settings::{Signal, Transport};

/// How long connecting and the first exchange may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// HTTP/2's client connection preface and an empty SETTINGS frame: a gRPC server answers with
/// its own SETTINGS.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// The parts of an http(s) URL the check needs.
#[derive(Debug, PartialEq)]
struct Target {
    tls: bool,
    /// The host as the certificate must name it (no brackets around an IPv6 address).
    host: String,
    /// `host:port`, for connecting and the `Host` header.
    authority: String,
    path: String,
}

fn target(url: &str) -> Option<Target> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit('@').next()?;
    let tls = scheme == "https";
    let (host, authority) = if authority.contains(':') && !authority.ends_with(']') {
        let (host, _) = authority.rsplit_once(':')?;
        (host, authority.to_string())
    } else {
        let port = if tls { 443 } else { 80 };
        (authority, format!("{authority}:{port}"))
    };
    Some(Target {
        tls,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        authority,
        path: path.to_string(),
    })
}

/// `host:port` of `url` (the URL itself when it is not one perf can parse): which collector.
pub fn authority(url: &str) -> String {
    target(url).map_or_else(|| url.to_string(), |t| t.authority)
}

/// Whether the collector of `signal` can be talked to with `files`; the error is a phrase that
/// follows "the collector at URL" and says what to do.
pub fn check(signal: &Signal, files: &TlsFiles) -> Result<(), String> {
    let t = target(&signal.url).ok_or_else(|| "is not an http(s) URL".to_string())?;
    let mut tcp = connect(&t.authority)?;
    if !t.tls {
        return Ok(());
    }
    let grpc = signal.transport == Transport::Grpc;
    let config = client_config(files, grpc)?;
    let name = ServerName::try_from(t.host.clone()).map_err(|e| {
        format!("has a host name that cannot be checked against a certificate ({e})")
    })?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| format!("cannot be checked: {e}"))?;
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let probe = if grpc {
        H2_PREFACE.to_vec()
    } else {
        format!(
            "HEAD {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            t.path, t.authority
        )
        .into_bytes()
    };
    let mut answer = [0u8; 64];
    let exchanged = tls
        .write_all(&probe)
        .and_then(|()| tls.flush())
        .and_then(|()| tls.read(&mut answer));
    match exchanged {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err("closed the connection after the TLS handshake without answering".into()),
        // Trusted and accepted, just slow to answer: the exports will tell.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(explain(&e, signal, &t)),
    }
}

fn connect(authority: &str) -> Result<TcpStream, String> {
    let addrs: Vec<_> = authority
        .to_socket_addrs()
        .map_err(|e| {
            format!(
                "cannot be reached ({authority}: {e}); start it or set OTEL_EXPORTER_OTLP_ENDPOINT"
            )
        })?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(tcp) => {
                let _ = tcp.set_read_timeout(Some(CONNECT_TIMEOUT));
                let _ = tcp.set_write_timeout(Some(CONNECT_TIMEOUT));
                return Ok(tcp);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(format!(
        "cannot be reached ({last}); start it or set OTEL_EXPORTER_OTLP_ENDPOINT"
    ))
}

/// The client side the exporters use: the usual roots and `files.ca`, `files.identity` when
/// given, and the protocol the transport speaks.
fn client_config(files: &TlsFiles, grpc: bool) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = &files.ca {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert =
                cert.map_err(|e| format!("cannot be checked: the CA certificate file: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("cannot be checked: the CA certificate file: {e}"))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("cannot be checked: {e}"))?
    .with_root_certificates(roots);
    let mut config = match &files.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot be checked: the client certificate file: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| format!("cannot be checked: the client key file: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("cannot be checked: the client certificate and key: {e}"))?
        }
    };
    config.alpn_protocols = vec![if grpc {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(config)
}

/// What went wrong with the TLS exchange, and what to set.
fn explain(e: &std::io::Error, signal: &Signal, t: &Target) -> String {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return format!("failed the TLS handshake ({e})");
    };
    match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "presented a certificate that is not for {} ({tls}); use a host name the certificate names in the endpoint",
            t.host
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => match &signal.certificate {
            None => format!(
                "presented a certificate that perf does not trust ({tls}); set OTEL_EXPORTER_OTLP_CERTIFICATE to the PEM file of the CA that signed it"
            ),
            Some(ca) => format!(
                "presented a certificate signed by none of the CAs in {} ({}) nor the usual roots ({tls}); point {} at the CA that signed it",
                ca.path.display(),
                ca.var,
                ca.var
            ),
        },
        rustls::Error::AlertReceived(alert) => match (&signal.identity, alert) {
            (
                None,
                AlertDescription::CertificateRequired
                | AlertDescription::HandshakeFailure
                | AlertDescription::BadCertificate,
            ) => format!(
                "asks for a client certificate ({tls}); set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY to the PEM files of one it accepts"
            ),
            (Some((cert, _)), _) => format!(
                "refused the client certificate {} from {} ({tls}); use one signed by a CA the collector trusts",
                cert.path.display(),
                cert.var
            ),
            (None, _) => format!("ended the TLS handshake ({tls})"),
        },
        other => format!("failed the TLS handshake ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_host_port_and_path_of_the_url() {
        let t = target("https://user:pw@collector:4318/v1/metrics").expect("url");
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "collector".into(),
                authority: "collector:4318".into(),
                path: "/v1/metrics".into(),
            }
        );
        let t = target("https://[::1]/v1/traces").expect("ipv6");
        assert_eq!(
            (t.host.as_str(), t.authority.as_str()),
            ("::1", "[::1]:443")
        );
        let t = target("http://c").expect("bare");
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("c:80", "/"));
        assert_eq!(target("c:4317"), None);
        assert_eq!(
            authority("https://c:4318/v1/metrics"),
            authority("https://c:4318/v1/traces"),
            "one collector at two paths"
        );
    }
}
