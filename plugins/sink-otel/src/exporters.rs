//! Building the OTLP exporters: the gRPC (tonic) and HTTP settings every exporter shares, the
//! collector's CA certificate and perf's client certificate, the runtime gRPC needs, and the
//! exponential-histogram view.

use std::time::Duration;

use opentelemetry_otlp::{Compression, Protocol, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::{Aggregation, Instrument, InstrumentKind, Stream};
use perf_plugin_api::PluginError;

use crate::settings::{Signal, Transport};

pub fn build_error(what: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::config(format!("otel: cannot set up the {what} exporter: {e}"))
}

/// What an https collector is checked with: the CA certificates to trust besides the usual
/// roots, and the client certificate chain and key to present (each PEM), read from the files
/// the environment names.
pub struct TlsFiles {
    pub ca: Option<Vec<u8>>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    pub fn read(signal: &Signal) -> Result<TlsFiles, PluginError> {
        let ca = match &signal.certificate {
            Some(pem) => Some(pem.read("the collector's CA certificate")?),
            None => None,
        };
        let identity = match &signal.identity {
            Some((cert, key)) => Some((
                cert.read("the client certificate")?,
                key.read("the client certificate's key")?,
            )),
            None => None,
        };
        Ok(TlsFiles { ca, identity })
    }
}

/// An HTTP client trusting `files.ca` as well as the usual roots and presenting
/// `files.identity`. Built on a thread of its own: a blocking client must not be made or dropped
/// where a runtime runs.
fn http_client(
    files: TlsFiles,
    timeout: Duration,
) -> Result<reqwest::blocking::Client, PluginError> {
    std::thread::spawn(move || {
        let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
        if let Some(pem) = &files.ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the collector's CA certificate: {e}"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &files.identity {
            let pem = [cert.as_slice(), b"\n", key.as_slice()].concat();
            builder = builder.identity(
                reqwest::Identity::from_pem(&pem)
                    .map_err(|e| format!("the client certificate and key: {e}"))?,
            );
        }
        builder.build().map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the client builder stopped".to_string())
    .and_then(|r| r)
    .map_err(|e| PluginError::config(format!("otel: {e}")))
}

/// The gRPC settings every exporter builder shares.
pub fn tonic_config<B: WithTonicConfig>(
    mut builder: B,
    signal: &Signal,
    headers: &std::collections::HashMap<String, String>,
) -> Result<B, PluginError> {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| PluginError::config(format!("otel: header name {k:?} is not valid")))?;
        let value = http::HeaderValue::from_str(v).map_err(|_| {
            PluginError::config(format!("otel: the value of header {k:?} is not valid"))
        })?;
        map.insert(name, value);
    }
    builder = builder
        .with_metadata(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map));
    if signal.gzip {
        builder = builder.with_compression(Compression::Gzip);
    }
    if signal.url.starts_with("https://") {
        use opentelemetry_otlp::tonic_types::transport::Identity;
        use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
        let files = TlsFiles::read(signal)?;
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(pem) = files.ca {
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some((cert, key)) = files.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        builder = builder.with_tls_config(tls);
    }
    Ok(builder)
}

/// The HTTP settings every exporter builder shares.
pub fn http_config<B: WithHttpConfig>(
    mut builder: B,
    signal: &Signal,
    headers: &std::collections::HashMap<String, String>,
) -> Result<B, PluginError> {
    builder = builder.with_headers(headers.clone());
    if signal.gzip {
        builder = builder.with_compression(Compression::Gzip);
    }
    if signal.certificate.is_some() || signal.identity.is_some() {
        let files = TlsFiles::read(signal)?;
        builder = builder.with_http_client(http_client(files, signal.timeout)?);
    }
    Ok(builder)
}

pub fn protocol(t: Transport) -> Protocol {
    match t {
        Transport::HttpJson => Protocol::HttpJson,
        Transport::HttpProtobuf | Transport::Grpc => Protocol::HttpBinary,
    }
}

/// The runtime gRPC's channels need (the SDK exports from threads of its own, which have none).
pub fn grpc_runtime() -> Result<tokio::runtime::Runtime, PluginError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("perf-otel-grpc")
        .enable_all()
        .build()
        .map_err(|e| build_error("gRPC", e))
}

/// The view that turns every histogram into a base-2 exponential one.
pub fn exponential(i: &Instrument) -> Option<Stream> {
    (i.kind() == InstrumentKind::Histogram)
        .then(|| {
            Stream::builder()
                .with_aggregation(Aggregation::Base2ExponentialHistogram {
                    max_size: 160,
                    max_scale: 20,
                    record_min_max: true,
                })
                .build()
                .ok()
        })
        .flatten()
}
