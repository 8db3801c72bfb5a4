//! `benchmark_args.json` as evalscope 1.14.1 dumps its `Arguments`: its keys in its order,
//! with its types and the values it resolved (the URL with its endpoint, `stream` and
//! `apply_chat_template` as used, `headers` as a dict, this run's `number`, `parallel`, `rate`,
//! `dataset_offset` and directory, `model_id`), secrets as `**********`; then perf's own
//! arguments after them, never in place of one of evalscope's.

use serde_json::{json, Map, Value};

use super::secrets::{is_secret_key, masked_args, masked_url, MASK};
use super::RunSpec;
use crate::cli::RunArgs;

/// evalscope's keys, in its order.
pub const EVALSCOPE_KEYS: [&str; 81] = [
    "model",
    "model_id",
    "attn_implementation",
    "api",
    "tokenizer_path",
    "port",
    "url",
    "headers",
    "connect_timeout",
    "read_timeout",
    "total_timeout",
    "api_key",
    "no_test_connection",
    "scenario",
    "number",
    "parallel",
    "rate",
    "warmup_num",
    "enable_pd_metrics",
    "open_loop",
    "sleep_interval",
    "duration",
    "sla_auto_tune",
    "sla_variable",
    "sla_params",
    "sla_num_runs",
    "sla_upper_bound",
    "sla_lower_bound",
    "sla_fixed_parallel",
    "sla_number_multiplier",
    "db_commit_interval",
    "queue_size_multiplier",
    "in_flight_task_multiplier",
    "num_workers",
    "log_every_n_query",
    "debug",
    "enable_progress_tracker",
    "visualizer",
    "wandb_api_key",
    "swanlab_api_key",
    "swanlab_host",
    "name",
    "alias",
    "outputs_dir",
    "no_timestamp",
    "max_prompt_length",
    "min_prompt_length",
    "prefix_length",
    "prefix_count",
    "prompt",
    "query_template",
    "apply_chat_template",
    "image_width",
    "image_height",
    "image_format",
    "image_num",
    "image_patch_size",
    "dataset",
    "dataset_path",
    "data_source",
    "dataset_offset",
    "dataset_args",
    "frequency_penalty",
    "repetition_penalty",
    "logprobs",
    "max_tokens",
    "min_tokens",
    "n_choices",
    "seed",
    "stop",
    "stop_token_ids",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "extra_args",
    "tokenize_prompt",
    "multi_turn",
    "min_turns",
    "max_turns",
    "multi_turn_args",
];

/// perf's flags that are another spelling of one of evalscope's keys (written through it).
const SPELLINGS: [&str; 2] = ["no_stream", "no_apply_chat_template"];

/// What planning resolved that the dump shows.
pub(crate) struct Resolved<'a> {
    /// The model sent.
    pub model: &'a str,
    /// The endpoint, with its endpoint path.
    pub url: &'a str,
    /// Whether bodies ask for a stream.
    pub stream: bool,
    /// Whether prompts go out as chat messages.
    pub apply_chat_template: bool,
    /// The seed the dataset draws prompts with.
    pub dataset_seed: u64,
}

/// A whole number of seconds as an int (evalscope's int flags), other values as floats.
fn seconds(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn json_or_text(text: &Option<String>) -> Value {
    match text {
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| json!(t)),
        None => Value::Null,
    }
}

/// The dump for the first run; [`for_run`] sets a run's own values.
pub(crate) fn args_json(a: &RunArgs, r: &Resolved<'_>, first: &RunSpec) -> Value {
    let secret = |v: &Option<String>| v.as_ref().map(|_| json!(MASK)).unwrap_or(Value::Null);
    let mut headers = Map::new();
    for h in &a.headers {
        if let Some((k, v)) = h.split_once('=') {
            let (k, v) = (k.trim(), v.trim());
            let v = if is_secret_key(k) { MASK } else { v };
            headers.insert(k.to_string(), json!(v));
        }
    }
    if a.api_key.is_some() {
        headers.insert("Authorization".into(), json!(MASK));
    }
    let model_id = r
        .model
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(r.model);
    let max_tokens = match a.max_tokens.as_slice() {
        [n] => json!(n),
        other => json!(other),
    };
    let evalscope: Vec<(&str, Value)> = vec![
        ("model", json!(r.model)),
        ("model_id", json!(model_id)),
        ("attn_implementation", json!(a.attn_implementation)),
        ("api", json!(a.api)),
        ("tokenizer_path", json!(a.tokenizer_path)),
        ("port", json!(a.port)),
        ("url", json!(masked_url(r.url))),
        ("headers", json!(headers)),
        ("connect_timeout", json!(a.connect_timeout.map(seconds))),
        ("read_timeout", json!(a.read_timeout.map(seconds))),
        ("total_timeout", json!(seconds(a.total_timeout))),
        ("api_key", json!(secret(&a.api_key))),
        ("no_test_connection", json!(a.no_test_connection)),
        ("scenario", json!(json_or_text(&a.scenario))),
        ("number", json!(first.number)),
        ("parallel", json!(first.parallel.map_or(-1, |p| p as i64))),
        ("rate", json!(first.rate.unwrap_or(-1.0))),
        // evalscope's default is the int 0; a value given on the command line is a float.
        (
            "warmup_num",
            json!(if a.warmup_num == 0.0 {
                json!(0)
            } else {
                json!(a.warmup_num)
            }),
        ),
        ("enable_pd_metrics", json!(a.enable_pd_metrics)),
        ("open_loop", json!(a.open_loop)),
        ("sleep_interval", json!(seconds(a.sleep_interval))),
        ("duration", json!(a.duration)),
        ("sla_auto_tune", json!(a.sla_auto_tune)),
        ("sla_variable", json!(a.sla_variable)),
        ("sla_params", json!(json_or_text(&a.sla_params))),
        ("sla_num_runs", json!(a.sla_num_runs)),
        ("sla_upper_bound", json!(a.sla_upper_bound)),
        ("sla_lower_bound", json!(a.sla_lower_bound)),
        ("sla_fixed_parallel", json!(a.sla_fixed_parallel)),
        ("sla_number_multiplier", json!(a.sla_number_multiplier)),
        ("db_commit_interval", json!(a.db_commit_interval.max(1))),
        (
            "queue_size_multiplier",
            json!(a.queue_size_multiplier.max(1)),
        ),
        (
            "in_flight_task_multiplier",
            json!(a.in_flight_task_multiplier.max(1)),
        ),
        ("num_workers", json!(a.num_workers)),
        ("log_every_n_query", json!(a.log_every_n_query.max(1))),
        ("debug", json!(a.debug)),
        ("enable_progress_tracker", json!(a.enable_progress_tracker)),
        ("visualizer", json!(a.visualizer)),
        ("wandb_api_key", json!(secret(&a.wandb_api_key))),
        ("swanlab_api_key", json!(secret(&a.swanlab_api_key))),
        ("swanlab_host", json!(a.swanlab_host)),
        ("name", json!(a.name)),
        ("alias", json!(a.alias)),
        ("outputs_dir", json!(Value::Null)),
        ("no_timestamp", json!(a.no_timestamp)),
        ("max_prompt_length", json!(a.max_prompt_length)),
        ("min_prompt_length", json!(a.min_prompt_length)),
        ("prefix_length", json!(a.prefix_length)),
        ("prefix_count", json!(a.prefix_count)),
        ("prompt", json!(a.prompt)),
        ("query_template", json!(a.query_template)),
        ("apply_chat_template", json!(r.apply_chat_template)),
        ("image_width", json!(a.image_width)),
        ("image_height", json!(a.image_height)),
        ("image_format", json!(a.image_format)),
        ("image_num", json!(a.image_num)),
        ("image_patch_size", json!(a.image_patch_size)),
        ("dataset", json!(a.dataset)),
        ("dataset_path", json!(a.dataset_path)),
        ("data_source", json!(a.data_source)),
        ("dataset_offset", json!(a.dataset_offset)),
        ("dataset_args", json!(json_or_text(&a.dataset_args))),
        ("frequency_penalty", json!(a.frequency_penalty)),
        ("repetition_penalty", json!(a.repetition_penalty)),
        // evalscope's flag has no default: null unless given.
        ("logprobs", json!(a.logprobs.then_some(true))),
        ("max_tokens", json!(max_tokens)),
        ("min_tokens", json!(a.min_tokens)),
        ("n_choices", json!(a.n_choices)),
        ("seed", json!(a.seed)),
        ("stop", json!(a.stop)),
        // evalscope keeps them as the strings it was given (perf sends integers).
        (
            "stop_token_ids",
            json!(a
                .stop_token_ids
                .as_ref()
                .map(|ids| ids.iter().map(|i| i.to_string()).collect::<Vec<_>>())),
        ),
        ("stream", json!(r.stream)),
        ("temperature", json!(a.temperature)),
        ("top_p", json!(a.top_p)),
        ("top_k", json!(a.top_k)),
        (
            "extra_args",
            json!(match json_or_text(&a.extra_args) {
                Value::Null => json!({}),
                v => v,
            }),
        ),
        ("tokenize_prompt", json!(a.tokenize_prompt)),
        ("multi_turn", json!(a.multi_turn)),
        ("min_turns", json!(a.min_turns)),
        ("max_turns", json!(a.max_turns)),
        ("multi_turn_args", json!(json_or_text(&a.multi_turn_args))),
    ];
    let mut out: Map<String, Value> = evalscope
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    // Credentials inside the JSON arguments (a key in --extra-args, a header of a sink).
    for key in [
        "extra_args",
        "dataset_args",
        "sla_params",
        "multi_turn_args",
    ] {
        if let Some(v) = out.get_mut(key) {
            super::secrets::mask_secrets(v);
        }
    }
    // perf's own arguments, after evalscope's.
    if let Value::Object(perf) = masked_args(a) {
        for (k, v) in perf {
            if !out.contains_key(&k) && !SPELLINGS.contains(&k.as_str()) {
                out.insert(k, v);
            }
        }
    }
    out.insert("dataset_seed".into(), json!(r.dataset_seed));
    if a.tls_insecure {
        out.insert(
            "tls_warning".into(),
            json!("--tls-insecure: the server's certificate was NOT verified; these results came from whoever answered"),
        );
    }
    Value::Object(out)
}

/// The dump of one run: `spec`'s `number`, `parallel` and `rate`, the dataset offset it
/// starts at, and its directory.
pub fn for_run(args: &Value, spec: &RunSpec, dir: &std::path::Path, dataset_offset: u64) -> Value {
    let mut v = args.clone();
    if let Some(map) = v.as_object_mut() {
        map.insert("number".into(), json!(spec.number));
        map.insert(
            "parallel".into(),
            json!(spec.parallel.map_or(-1, |p| p as i64)),
        );
        if let Some(rate) = spec.rate {
            map.insert("rate".into(), json!(rate));
        }
        map.insert("outputs_dir".into(), json!(dir.to_string_lossy()));
        map.insert("dataset_offset".into(), json!(dataset_offset));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_list_has_every_evalscope_key_once() {
        let keys = EVALSCOPE_KEYS.to_vec();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
    }
}
