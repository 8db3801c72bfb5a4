//! `config.json` of a Hugging Face decoder: what this backend can run, and clear errors for
//! what it cannot.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// The decoder families this backend implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM`.
    Llama,
    /// `Qwen2ForCausalLM` (Qwen2 and Qwen2.5): biases on q/k/v.
    Qwen2,
    /// `Qwen3ForCausalLM`: RMS norms on q and k per head.
    Qwen3,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    #[serde(default)]
    num_key_value_heads: Option<i64>,
    #[serde(default)]
    head_dim: Option<i64>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    vocab_size: i64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    torch_dtype: Option<String>,
    #[serde(default)]
    eos_token_id: Value,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
    #[serde(default)]
    hidden_act: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_theta() -> f64 {
    10_000.0
}

/// Llama 3's frequency scaling of RoPE (`rope_scaling.rope_type == "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// A model's shape and settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub layers: i64,
    pub heads: i64,
    pub kv_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_llama3: Option<Llama3Scaling>,
    pub vocab_size: i64,
    pub tie_word_embeddings: bool,
    /// `torch_dtype`, e.g. `bfloat16`.
    pub dtype: String,
    pub qkv_bias: bool,
    pub eos_token_ids: Vec<u32>,
}

impl Config {
    /// Reads `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (a model directory holds config.json and safetensors weights)",
                path.display()
            )
        })?;
        let raw: Raw = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a config this backend understands: {e}",
                path.display()
            )
        })?;
        Config::from_raw(raw).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn from_raw(raw: Raw) -> Result<Self, String> {
        let kind = raw
            .model_type
            .clone()
            .or_else(|| raw.architectures.first().cloned())
            .unwrap_or_default();
        let arch = match kind.as_str() {
            "llama" | "LlamaForCausalLM" => Arch::Llama,
            "qwen2" | "Qwen2ForCausalLM" => Arch::Qwen2,
            "qwen3" | "Qwen3ForCausalLM" => Arch::Qwen3,
            other => {
                return Err(format!(
                    "model_type '{other}' is not supported: this backend runs llama, qwen2 (Qwen2/Qwen2.5) and qwen3; use --api local_vllm for others"
                ))
            }
        };
        if raw.use_sliding_window == Some(true) {
            return Err(
                "use_sliding_window is true: sliding-window attention is not implemented".into(),
            );
        }
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(format!("hidden_act '{act}' is not supported (silu only)"));
            }
        }
        let rope_llama3 = match &raw.rope_scaling {
            None | Some(Value::Null) => None,
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let f = |k: &str| s.get(k).and_then(Value::as_f64);
                match kind {
                    "default" => None,
                    "llama3" => Some(Llama3Scaling {
                        factor: f("factor").ok_or("rope_scaling.factor is missing")?,
                        low_freq_factor: f("low_freq_factor").unwrap_or(1.0),
                        high_freq_factor: f("high_freq_factor").unwrap_or(4.0),
                        original_max_position_embeddings: f("original_max_position_embeddings")
                            .unwrap_or(8192.0),
                    }),
                    other => {
                        return Err(format!(
                            "rope_scaling type '{other}' is not supported (default and llama3 are)"
                        ))
                    }
                }
            }
        };
        if raw.num_attention_heads <= 0
            || raw.hidden_size % raw.num_attention_heads != 0 && raw.head_dim.is_none()
        {
            return Err(
                "hidden_size is not a multiple of num_attention_heads and head_dim is not given"
                    .into(),
            );
        }
        let kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if kv_heads <= 0 || raw.num_attention_heads % kv_heads != 0 {
            return Err("num_attention_heads is not a multiple of num_key_value_heads".into());
        }
        let eos_token_ids = match &raw.eos_token_id {
            Value::Number(n) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_u64)
                .map(|v| v as u32)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Config {
            arch,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            layers: raw.num_hidden_layers,
            heads: raw.num_attention_heads,
            kv_heads,
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads),
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta: raw.rope_theta,
            rope_llama3,
            vocab_size: raw.vocab_size,
            tie_word_embeddings: raw.tie_word_embeddings,
            dtype: raw.torch_dtype.unwrap_or_else(|| "float32".into()),
            qkv_bias: raw.attention_bias.unwrap_or(arch == Arch::Qwen2),
            eos_token_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        Config::from_raw(serde_json::from_str(json).map_err(|e| e.to_string())?)
    }

    const BASE: &str = r#""hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000"#;

    #[test]
    fn the_three_families_and_their_differences() {
        let q2 = parse(&format!(
            r#"{{"model_type": "qwen2", {BASE}, "eos_token_id": 7}}"#
        ))
        .expect("qwen2");
        assert_eq!(
            (q2.arch, q2.qkv_bias, q2.head_dim, q2.eos_token_ids.clone()),
            (Arch::Qwen2, true, 16, vec![7])
        );
        let q3 = parse(&format!(
            r#"{{"model_type": "qwen3", {BASE}, "head_dim": 32, "eos_token_id": [1, 2]}}"#
        ))
        .expect("qwen3");
        assert_eq!(
            (q3.arch, q3.qkv_bias, q3.head_dim, q3.eos_token_ids),
            (Arch::Qwen3, false, 32, vec![1, 2])
        );
        let l = parse(&format!(
            r#"{{"model_type": "llama", {BASE}, "rope_scaling": {{"rope_type": "llama3", "factor": 8.0}}}}"#
        ))
        .expect("llama");
        assert_eq!(l.arch, Arch::Llama);
        assert_eq!(l.rope_llama3.map(|s| s.factor), Some(8.0));
    }

    #[test]
    fn what_it_cannot_run_is_refused_with_the_reason() {
        let err = parse(&format!(r#"{{"model_type": "mistral", {BASE}}}"#)).expect_err("mistral");
        assert!(err.contains("local_vllm"), "{err}");
        let err = parse(&format!(
            r#"{{"model_type": "qwen2", {BASE}, "use_sliding_window": true}}"#
        ))
        .expect_err("swa");
        assert!(err.contains("sliding-window"), "{err}");
        let err = parse(&format!(
            r#"{{"model_type": "llama", {BASE}, "rope_scaling": {{"type": "yarn", "factor": 4.0}}}}"#
        ))
        .expect_err("yarn");
        assert!(err.contains("yarn"), "{err}");
    }
}
