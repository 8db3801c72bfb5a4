//! The sink's settings: its options, then the standard `OTEL_*` environment of the
//! OpenTelemetry SDKs, read once and checked, so that a value perf cannot honour stops the run
//! with its name instead of being ignored.
//!
//! Read here: `OTEL_SDK_DISABLED`, `OTEL_METRICS_EXPORTER` and `OTEL_TRACES_EXPORTER` (`otlp`,
//! `none`), `OTEL_EXPORTER_OTLP_[METRICS_|TRACES_]PROTOCOL` (`http/protobuf`, `http/json`,
//! `grpc`), `..._ENDPOINT`, `..._COMPRESSION` (`gzip`, `none`), `..._TIMEOUT`,
//! `..._CERTIFICATE`, `..._CLIENT_CERTIFICATE` with `..._CLIENT_KEY` (mutual TLS),
//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (`cumulative`,
//! `delta`, `lowmemory`), `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`
//! (`explicit_bucket_histogram`, `base2_exponential_bucket_histogram`) and
//! `OTEL_METRIC_EXPORT_INTERVAL`. The SDK itself reads `..._HEADERS`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER[_ARG]` and `OTEL_BSP_*`.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_sdk::metrics::Temporality;
use perf_plugin_api::PluginError;
use serde::Deserialize;

/// The HTTP timeout of one export unless the environment says otherwise.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The sink's JSON options (`--sink 'otel={...}'`); each overrides its environment variable.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    pub endpoint: Option<String>,
    pub protocol: Option<String>,
    pub compression: Option<String>,
    pub headers: std::collections::HashMap<String, String>,
    pub interval_ms: Option<u64>,
    pub temporality: Option<String>,
    pub histogram: Option<String>,
    pub traces: Option<bool>,
    pub trace_ratio: Option<f64>,
    pub required: Option<bool>,
}

/// How one signal travels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transport {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

/// Where and how one signal (metrics or traces) is exported.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub transport: Transport,
    /// The full URL: `/v1/metrics` or `/v1/traces` appended to a base for HTTP, as is for gRPC.
    pub url: String,
    pub gzip: bool,
    pub timeout: Duration,
    /// A PEM file of CA certificates to trust for an https collector, besides the usual roots.
    pub certificate: Option<Pem>,
    /// The certificate chain and private key perf presents to a collector that asks for one
    /// (mutual TLS): both or neither.
    pub identity: Option<(Pem, Pem)>,
}

/// A PEM file the environment named, with the variable that named it (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Pem {
    pub path: PathBuf,
    pub var: String,
}

impl Pem {
    /// The file's bytes, or an error naming the file and the variable.
    pub fn read(&self, what: &str) -> Result<Vec<u8>, PluginError> {
        std::fs::read(&self.path).map_err(|e| {
            PluginError::config(format!(
                "otel: cannot read {what} {} ({}): {e}",
                self.path.display(),
                self.var
            ))
        })
    }
}

/// Everything the sink was told.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `OTEL_SDK_DISABLED=true`: the sink exports nothing.
    pub disabled: bool,
    /// Metrics, unless `OTEL_METRICS_EXPORTER=none`.
    pub metrics: Option<Signal>,
    /// Spans, when `traces` is set or `OTEL_TRACES_EXPORTER=otlp`.
    pub traces: Option<Signal>,
    pub temporality: Temporality,
    /// Base-2 exponential histograms instead of perf's explicit bounds.
    pub exponential: bool,
    pub interval: Duration,
    pub trace_ratio: Option<f64>,
    pub required: bool,
}

/// A lookup of one environment variable (the process's, or a test's map).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process's environment, empty values read as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn bad(name: &str, value: &str, accepted: &str) -> PluginError {
    PluginError::config(format!(
        "otel: {name}={value} is not supported: use {accepted}"
    ))
}

/// The option's value, else the signal's variable, else the general one: (where, value).
fn pick(
    option: Option<&String>,
    env: Env,
    signal_var: &str,
    var: &str,
) -> Option<(String, String)> {
    if let Some(v) = option {
        return Some((format!("option {}", var_key(var)), v.clone()));
    }
    if let Some(v) = env(signal_var) {
        return Some((signal_var.to_string(), v));
    }
    env(var).map(|v| (var.to_string(), v))
}

/// The option key that overrides a variable, for messages.
fn var_key(var: &str) -> &'static str {
    if var.ends_with("PROTOCOL") {
        "protocol"
    } else if var.ends_with("COMPRESSION") {
        "compression"
    } else {
        "endpoint"
    }
}

/// Whether an `OTEL_*_EXPORTER` list turns the signal on: `Some(true)` for `otlp`,
/// `Some(false)` for `none`, `None` when unset.
fn exporter(env: Env, var: &str) -> Result<Option<bool>, PluginError> {
    let Some(value) = env(var) else {
        return Ok(None);
    };
    let mut on = false;
    for item in value.split(',').map(|s| s.trim().to_ascii_lowercase()) {
        match item.as_str() {
            "otlp" => on = true,
            "none" => return Ok(Some(false)),
            "" => {}
            _ => return Err(bad(var, &value, "otlp or none (perf exports OTLP only)")),
        }
    }
    Ok(Some(on))
}

fn signal(
    options: &Options,
    env: Env,
    kind: &str, // METRICS or TRACES
    path: &str,
) -> Result<Signal, PluginError> {
    let var = |what: &str| format!("OTEL_EXPORTER_OTLP_{kind}_{what}");
    let transport = match pick(
        options.protocol.as_ref(),
        env,
        &var("PROTOCOL"),
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ) {
        None => Transport::HttpProtobuf,
        Some((from, v)) => match v.trim().to_ascii_lowercase().as_str() {
            "http/protobuf" => Transport::HttpProtobuf,
            "http/json" => Transport::HttpJson,
            "grpc" => Transport::Grpc,
            _ => return Err(bad(&from, &v, "http/protobuf, http/json or grpc")),
        },
    };
    let grpc = transport == Transport::Grpc;
    let join = |base: &str| {
        if grpc {
            base.to_string()
        } else {
            format!("{}{path}", base.trim_end_matches('/'))
        }
    };
    let url = if let Some(base) = &options.endpoint {
        join(base)
    } else if let Some(url) = env(&var("ENDPOINT")) {
        url
    } else if let Some(base) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
        join(&base)
    } else if grpc {
        "http://localhost:4317".into()
    } else {
        join("http://localhost:4318")
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(PluginError::config(format!(
            "otel: the collector address {url} is not an http:// or https:// URL"
        )));
    }
    let gzip = match pick(
        options.compression.as_ref(),
        env,
        &var("COMPRESSION"),
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ) {
        None => false,
        Some((from, v)) => match v.trim().to_ascii_lowercase().as_str() {
            "gzip" => true,
            "none" => false,
            _ => return Err(bad(&from, &v, "gzip or none")),
        },
    };
    // The signal's variable, else the general one: (name, value).
    let either = |what: &str| {
        let general = format!("OTEL_EXPORTER_OTLP_{what}");
        env(&var(what))
            .map(|v| (var(what), v))
            .or_else(|| env(&general).map(|v| (general, v)))
    };
    let timeout = match either("TIMEOUT") {
        None => EXPORT_TIMEOUT,
        Some((from, v)) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => return Err(bad(&from, &v, "a whole number of milliseconds above 0")),
        },
    };
    let pem = |what: &str| {
        either(what).map(|(var, path)| Pem {
            path: PathBuf::from(path.trim()),
            var,
        })
    };
    let certificate = pem("CERTIFICATE");
    let identity = match (pem("CLIENT_CERTIFICATE"), pem("CLIENT_KEY")) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(PluginError::config(format!(
                "otel: {} is set but not the client certificate's private key: set {} too",
                cert.var,
                cert.var.replace("CLIENT_CERTIFICATE", "CLIENT_KEY")
            )))
        }
        (None, Some(key)) => {
            return Err(PluginError::config(format!(
                "otel: {} is set but not the client certificate it belongs to: set {} too",
                key.var,
                key.var.replace("CLIENT_KEY", "CLIENT_CERTIFICATE")
            )))
        }
    };
    Ok(Signal {
        transport,
        url,
        gzip,
        timeout,
        certificate,
        identity,
    })
}

impl Settings {
    /// Reads `options` and the environment `env`.
    pub fn read(options: &Options, env: Env) -> Result<Settings, PluginError> {
        if let Some(r) = options.trace_ratio {
            if !(0.0..=1.0).contains(&r) {
                return Err(PluginError::config(format!(
                    "otel: trace_ratio {r} is not a fraction between 0 and 1"
                )));
            }
        }
        let disabled =
            env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let metrics_on = exporter(env, "OTEL_METRICS_EXPORTER")?.unwrap_or(true);
        let traces_on = options
            .traces
            .unwrap_or(exporter(env, "OTEL_TRACES_EXPORTER")?.unwrap_or(false));
        let metrics = if metrics_on {
            Some(signal(options, env, "METRICS", "/v1/metrics")?)
        } else {
            None
        };
        let traces = if traces_on {
            Some(signal(options, env, "TRACES", "/v1/traces")?)
        } else {
            None
        };
        let temporality = match options
            .temporality
            .clone()
            .map(|v| ("option temporality".to_string(), v))
            .or_else(|| {
                let var = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
                env(var).map(|v| (var.to_string(), v))
            }) {
            None => Temporality::Cumulative,
            Some((from, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "cumulative" => Temporality::Cumulative,
                "delta" => Temporality::Delta,
                "lowmemory" => Temporality::LowMemory,
                _ => return Err(bad(&from, &v, "cumulative, delta or lowmemory")),
            },
        };
        let exponential = match options
            .histogram
            .clone()
            .map(|v| ("option histogram".to_string(), v))
            .or_else(|| {
                let var = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION";
                env(var).map(|v| (var.to_string(), v))
            }) {
            None => false,
            Some((from, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "explicit_bucket_histogram" | "explicit" => false,
                "base2_exponential_bucket_histogram" | "exponential" => true,
                _ => {
                    return Err(bad(
                        &from,
                        &v,
                        "explicit_bucket_histogram or base2_exponential_bucket_histogram",
                    ))
                }
            },
        };
        let interval = match options.interval_ms {
            Some(ms) => ms,
            None => match env("OTEL_METRIC_EXPORT_INTERVAL") {
                None => 5000,
                Some(v) => v.trim().parse().map_err(|_| {
                    bad(
                        "OTEL_METRIC_EXPORT_INTERVAL",
                        &v,
                        "a whole number of milliseconds",
                    )
                })?,
            },
        };
        Ok(Settings {
            disabled,
            metrics,
            traces,
            temporality,
            exponential,
            interval: Duration::from_millis(interval.max(100)),
            trace_ratio: options.trace_ratio,
            required: options.required.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(options: serde_json::Value, vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |name: &str| vars.get(name).cloned();
        let options: Options = serde_json::from_value(options).map_err(|e| e.to_string())?;
        Settings::read(&options, &env).map_err(|e| e.message.to_string())
    }

    #[test]
    fn defaults_are_http_protobuf_to_localhost_cumulative_and_explicit() {
        let s = read(serde_json::json!({}), &[]).expect("defaults");
        let m = s.metrics.expect("metrics on");
        assert_eq!(m.transport, Transport::HttpProtobuf);
        assert_eq!(m.url, "http://localhost:4318/v1/metrics");
        assert!(!m.gzip);
        assert_eq!(m.timeout, EXPORT_TIMEOUT);
        assert!(s.traces.is_none());
        assert_eq!(s.temporality, Temporality::Cumulative);
        assert!(!s.exponential && !s.disabled && s.required);
        assert_eq!(s.interval, Duration::from_millis(5000));
    }

    #[test]
    fn grpc_takes_the_endpoint_as_is_and_defaults_to_port_4317() {
        let s = read(
            serde_json::json!({}),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        )
        .expect("grpc");
        assert_eq!(s.metrics.expect("on").url, "http://localhost:4317");
        let s = read(
            serde_json::json!({"traces": true}),
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ],
        )
        .expect("mixed");
        let m = s.metrics.expect("metrics");
        assert_eq!(
            (m.transport, m.url.as_str()),
            (Transport::Grpc, "http://c:4317")
        );
        let t = s.traces.expect("traces");
        assert_eq!(
            (t.transport, t.url.as_str()),
            (Transport::HttpJson, "http://c:4317/v1/traces")
        );
    }

    #[test]
    fn signal_variables_win_over_general_ones_and_options_over_both() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318/"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://metrics:9/custom",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "250"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
        ];
        let s = read(serde_json::json!({}), &vars).expect("env");
        let m = s.metrics.expect("metrics");
        assert_eq!(m.url, "http://metrics:9/custom");
        assert!(!m.gzip, "the signal's own compression wins");
        assert_eq!(m.timeout, Duration::from_millis(250));
        assert_eq!(
            m.certificate,
            Some(Pem {
                path: PathBuf::from("/ca.pem"),
                var: "OTEL_EXPORTER_OTLP_CERTIFICATE".into()
            })
        );
        let t = s.traces.expect("OTEL_TRACES_EXPORTER=otlp turns spans on");
        assert_eq!(t.url, "http://general:4318/v1/traces");
        assert!(t.gzip);
        let s = read(
            serde_json::json!({"endpoint": "http://opt:1", "compression": "gzip", "traces": false}),
            &vars,
        )
        .expect("options");
        let m = s.metrics.expect("metrics");
        assert_eq!(m.url, "http://opt:1/v1/metrics");
        assert!(m.gzip);
        assert!(
            s.traces.is_none(),
            "the option wins over OTEL_TRACES_EXPORTER"
        );
    }

    #[test]
    fn a_client_certificate_and_key_are_read_per_signal_or_in_general() {
        let s = read(
            serde_json::json!({"traces": true}),
            &[
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/all.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/all.key"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                    "/traces.pem",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/traces.key"),
            ],
        )
        .expect("identities");
        let paths = |s: Option<Signal>| {
            let (c, k) = s.expect("signal").identity.expect("identity");
            (c.path, k.path)
        };
        assert_eq!(
            paths(s.metrics),
            (PathBuf::from("/all.pem"), PathBuf::from("/all.key"))
        );
        assert_eq!(
            paths(s.traces),
            (PathBuf::from("/traces.pem"), PathBuf::from("/traces.key"))
        );
    }

    #[test]
    fn the_sdk_switches_and_preferences_are_honoured() {
        let s = read(serde_json::json!({}), &[("OTEL_SDK_DISABLED", "TRUE")]).expect("disabled");
        assert!(s.disabled);
        let s = read(serde_json::json!({}), &[("OTEL_SDK_DISABLED", "false")]).expect("on");
        assert!(!s.disabled);
        let s = read(serde_json::json!({}), &[("OTEL_METRICS_EXPORTER", "none")]).expect("none");
        assert!(s.metrics.is_none());
        for (value, want) in [
            ("delta", Temporality::Delta),
            ("LowMemory", Temporality::LowMemory),
            ("cumulative", Temporality::Cumulative),
        ] {
            let s = read(
                serde_json::json!({}),
                &[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", value)],
            )
            .expect("temporality");
            assert_eq!(s.temporality, want, "{value}");
        }
        let s = read(
            serde_json::json!({}),
            &[(
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                "base2_exponential_bucket_histogram",
            )],
        )
        .expect("exponential");
        assert!(s.exponential);
        let s = read(
            serde_json::json!({}),
            &[("OTEL_METRIC_EXPORT_INTERVAL", "20")],
        )
        .expect("interval");
        assert_eq!(s.interval, Duration::from_millis(100), "at least 100 ms");
    }

    #[test]
    fn values_perf_cannot_honour_are_refused_by_name() {
        for (var, value, names) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift", "grpc"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "gzip or none"),
            ("OTEL_METRICS_EXPORTER", "console", "otlp or none"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "sometimes",
                "delta",
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                "fancy",
                "base2",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5s", "milliseconds"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "http://"),
        ] {
            let err = read(serde_json::json!({}), &[(var, value)]).expect_err(var);
            assert!(err.contains(value) && err.contains(names), "{var}: {err}");
        }
        let err = read(
            serde_json::json!({}),
            &[("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/c.pem")],
        )
        .expect_err("a certificate without its key");
        assert!(
            err.contains("set OTEL_EXPORTER_OTLP_CLIENT_KEY too"),
            "{err}"
        );
        let err = read(
            serde_json::json!({}),
            &[("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", "/k.pem")],
        )
        .expect_err("a key without its certificate");
        assert!(
            err.contains("set OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE too"),
            "{err}"
        );
        let err = read(serde_json::json!({"trace_ratio": 2.0}), &[]).expect_err("ratio");
        assert!(err.contains("trace_ratio"), "{err}");
    }
}
