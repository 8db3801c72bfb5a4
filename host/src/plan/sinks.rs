//! The result sinks a run enables: `--sink`, `--otel`, and evalscope's visualizer flags.

use perf_plugin_api::sdk::SinkConfig;
use serde_json::{json, Map, Value};

use super::json_object;
use crate::cli::RunArgs;
use crate::error::usage;

/// The sinks to enable: `--sink ID[=JSON]`, then `--otel`, then evalscope's visualizer flags
/// (`--visualizer`, implied by `--wandb-api-key` / `--swanlab-api-key`), whose keys and host
/// become the sink's options. An id given twice is enabled once, with the first options.
pub(crate) fn sinks(a: &RunArgs) -> anyhow::Result<Vec<(String, SinkConfig)>> {
    let mut out: Vec<(String, SinkConfig)> = Vec::new();
    let mut add = |id: &str, options: Value| {
        if !out.iter().any(|(have, _)| have == id) {
            out.push((id.to_string(), SinkConfig { options }));
        }
    };
    for s in &a.sinks {
        match s.split_once('=') {
            Some((id, json)) => add(
                id,
                Value::Object(json_object(json, &format!("--sink {id}"))?),
            ),
            None => add(s, Value::Null),
        }
    }
    if a.otel {
        add("otel", Value::Null);
    }
    let visualizer = match (&a.visualizer, &a.wandb_api_key, &a.swanlab_api_key) {
        (Some(v), _, _) => Some(v.as_str()),
        (None, Some(_), _) => Some("wandb"),
        (None, None, Some(_)) => Some("swanlab"),
        (None, None, None) => None,
    };
    match visualizer {
        None => {}
        Some("wandb") => {
            let mut options = Map::new();
            if let Some(key) = &a.wandb_api_key {
                options.insert("api_key".into(), json!(key));
            }
            add("wandb", Value::Object(options));
        }
        Some("swanlab") => {
            let mut options = Map::new();
            if let Some(key) = &a.swanlab_api_key {
                options.insert("api_key".into(), json!(key));
            }
            if let Some(host) = &a.swanlab_host {
                options.insert("host".into(), json!(host));
            }
            add("swanlab", Value::Object(options));
        }
        // ClearML's keys and host come from its own environment (CLEARML_API_*).
        Some("clearml") => add("clearml", Value::Null),
        Some(other) => {
            return Err(usage(format!(
                "--visualizer {other}: not a visualizer; use wandb, swanlab or clearml (or --otel for OpenTelemetry)"
            )))
        }
    }
    Ok(out)
}
