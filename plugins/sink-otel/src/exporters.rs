//! Building the OTLP exporters: the gRPC (tonic) and HTTP settings every exporter shares, the
//! collector's CA certificate, the runtime gRPC needs, and the exponential-histogram view.

use std::time::Duration;

use opentelemetry_otlp::{Compression, Protocol, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::{Aggregation, Instrument, InstrumentKind, Stream};
use perf_plugin_api::PluginError;

use crate::settings::{Signal, Transport};

pub fn build_error(what: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::config(format!("otel: cannot set up the {what} exporter: {e}"))
}

/// The CA certificates of `signal`, read from its PEM file.
fn certificate(signal: &Signal) -> Result<Option<Vec<u8>>, PluginError> {
    let Some(path) = &signal.certificate else {
        return Ok(None);
    };
    std::fs::read(path).map(Some).map_err(|e| {
        PluginError::config(format!(
            "otel: cannot read the collector's CA certificate {} (OTEL_EXPORTER_OTLP_CERTIFICATE): {e}",
            path.display()
        ))
    })
}

/// An HTTP client trusting `pem` as well as the usual roots. Built on a thread of its own: a
/// blocking client must not be made or dropped where a runtime runs.
fn http_client(pem: Vec<u8>, timeout: Duration) -> Result<reqwest::blocking::Client, PluginError> {
    std::thread::spawn(move || {
        let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())? {
            builder = builder.add_root_certificate(cert);
        }
        builder.build().map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the client builder stopped".to_string())
    .and_then(|r| r)
    .map_err(|e| PluginError::config(format!("otel: the collector's CA certificate: {e}")))
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
        use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(pem) = certificate(signal)? {
            tls = tls.ca_certificate(Certificate::from_pem(pem));
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
    if let Some(pem) = certificate(signal)? {
        builder = builder.with_http_client(http_client(pem, signal.timeout)?);
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
