//! The decoder: Llama, Qwen2/Qwen2.5 and Qwen3 as Hugging Face `transformers` computes them
//! (RMS norm in float32, rotate-half RoPE, grouped-query attention, SwiGLU MLP), with a key/value
//! cache per sequence, a prefill of one prompt and a decode step over several sequences at once.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::config::{Arch, Config};

/// Attention as `--attn-implementation` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    /// softmax(q kᵀ / √d + mask) v, written out.
    Eager,
    /// libtorch's `scaled_dot_product_attention`.
    Sdpa,
}

struct Layer {
    input_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    q_bias: Option<Tensor>,
    k_bias: Option<Tensor>,
    v_bias: Option<Tensor>,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

/// One sequence's keys and values, per layer: `[1, kv_heads, len, head_dim]`.
pub struct Cache {
    layers: Vec<(Tensor, Tensor)>,
    /// Tokens in the cache.
    pub len: i64,
}

/// A loaded model.
pub struct Model {
    pub config: Config,
    pub device: Device,
    pub kind: Kind,
    attention: Attention,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
    inv_freq: Tensor,
}

/// `kind` for a `--dtype` / `torch_dtype` name.
pub fn kind_of(name: &str) -> Result<Kind, String> {
    match name {
        "float32" | "fp32" | "float" => Ok(Kind::Float),
        "bfloat16" | "bf16" => Ok(Kind::BFloat16),
        "float16" | "fp16" | "half" => Ok(Kind::Half),
        other => Err(format!(
            "dtype '{other}' is not one this backend runs: float32, bfloat16 or float16"
        )),
    }
}

/// Every tensor of the model's safetensors (one file, or shards listed in the index).
fn read_weights(dir: &Path) -> Result<HashMap<String, Tensor>, String> {
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<std::path::PathBuf> = if index.is_file() {
        let text =
            std::fs::read_to_string(&index).map_err(|e| format!("{}: {e}", index.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
        let shards: BTreeSet<String> = v["weight_map"]
            .as_object()
            .ok_or_else(|| format!("{}: no weight_map", index.display()))?
            .values()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        shards.into_iter().map(|f| dir.join(f)).collect()
    } else {
        vec![dir.join("model.safetensors")]
    };
    let mut all = HashMap::new();
    for file in files {
        if !file.is_file() {
            return Err(format!(
                "{} is missing (a model directory holds model.safetensors, or shards and model.safetensors.index.json)",
                file.display()
            ));
        }
        for (name, t) in
            Tensor::read_safetensors(&file).map_err(|e| format!("{}: {e}", file.display()))?
        {
            all.insert(name, t);
        }
    }
    Ok(all)
}

/// Llama 3's RoPE frequency scaling, as `transformers` applies it.
fn llama3_inv_freq(inv: Vec<f64>, s: crate::config::Llama3Scaling) -> Vec<f64> {
    let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
    let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
    inv.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            if wavelen > low_wavelen {
                f / s.factor
            } else if wavelen < high_wavelen {
                f
            } else {
                let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                    / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * f / s.factor + smooth * f
            }
        })
        .collect()
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size().last().copied().unwrap_or(0) / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    Tensor::cat(&[x2.neg(), x1], -1)
}

impl Model {
    /// Loads `dir` onto `device` in `kind`.
    pub fn load(
        dir: &Path,
        device: Device,
        kind: Kind,
        attention: Attention,
    ) -> Result<Self, String> {
        let config = Config::load(dir)?;
        let mut w = read_weights(dir)?;
        let mut take = |name: &str| -> Result<Tensor, String> {
            w.remove(name)
                .map(|t| t.to_kind(kind).to_device(device))
                .ok_or_else(|| format!("{}: the weights have no tensor {name}", dir.display()))
        };
        let mut layers = Vec::with_capacity(config.layers as usize);
        for i in 0..config.layers {
            let p = format!("model.layers.{i}");
            let bias = config.qkv_bias;
            let qk_norm = config.arch == Arch::Qwen3;
            layers.push(Layer {
                input_norm: take(&format!("{p}.input_layernorm.weight"))?,
                q: take(&format!("{p}.self_attn.q_proj.weight"))?,
                k: take(&format!("{p}.self_attn.k_proj.weight"))?,
                v: take(&format!("{p}.self_attn.v_proj.weight"))?,
                o: take(&format!("{p}.self_attn.o_proj.weight"))?,
                q_bias: bias
                    .then(|| take(&format!("{p}.self_attn.q_proj.bias")))
                    .transpose()?,
                k_bias: bias
                    .then(|| take(&format!("{p}.self_attn.k_proj.bias")))
                    .transpose()?,
                v_bias: bias
                    .then(|| take(&format!("{p}.self_attn.v_proj.bias")))
                    .transpose()?,
                q_norm: qk_norm
                    .then(|| take(&format!("{p}.self_attn.q_norm.weight")))
                    .transpose()?,
                k_norm: qk_norm
                    .then(|| take(&format!("{p}.self_attn.k_norm.weight")))
                    .transpose()?,
                post_norm: take(&format!("{p}.post_attention_layernorm.weight"))?,
                gate: take(&format!("{p}.mlp.gate_proj.weight"))?,
                up: take(&format!("{p}.mlp.up_proj.weight"))?,
                down: take(&format!("{p}.mlp.down_proj.weight"))?,
            });
        }
        let embed = take("model.embed_tokens.weight")?;
        let norm = take("model.norm.weight")?;
        let lm_head = if config.tie_word_embeddings {
            embed.shallow_clone()
        } else {
            take("lm_head.weight")?
        };
        let d = config.head_dim;
        let mut inv: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / config.rope_theta.powf((2 * i) as f64 / d as f64))
            .collect();
        if let Some(s) = config.rope_llama3 {
            inv = llama3_inv_freq(inv, s);
        }
        let inv_freq = Tensor::from_slice(&inv.iter().map(|&f| f as f32).collect::<Vec<f32>>())
            .to_device(device);
        Ok(Model {
            config,
            device,
            kind,
            attention,
            embed,
            layers,
            norm,
            lm_head,
            inv_freq,
        })
    }

    /// An empty cache.
    pub fn new_cache(&self) -> Cache {
        let empty = || {
            Tensor::zeros(
                [1, self.config.kv_heads, 0, self.config.head_dim],
                (self.kind, self.device),
            )
        };
        Cache {
            layers: (0..self.config.layers)
                .map(|_| (empty(), empty()))
                .collect(),
            len: 0,
        }
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = xf * (var + self.config.rms_norm_eps).rsqrt();
        w * normed.to_kind(self.kind)
    }

    /// cos and sin for `positions` (`[B, T]`): `[B, 1, T, head_dim]`, in the model's kind.
    fn rope(&self, positions: &Tensor) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(self.kind), emb.sin().to_kind(self.kind))
    }

    fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        x.linear(w, b)
    }

    /// Attention of `q` (`[B, heads, T, d]`) over `k`, `v` (`[B, kv_heads, L, d]`) with an
    /// additive `mask` broadcast to `[B, 1, T, L]`.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Tensor {
        let rep = self.config.heads / self.config.kv_heads;
        let (k, v) = if rep > 1 {
            (
                k.repeat_interleave_self_int(rep, 1, None::<i64>),
                v.repeat_interleave_self_int(rep, 1, None::<i64>),
            )
        } else {
            (k.shallow_clone(), v.shallow_clone())
        };
        let scale = 1.0 / (self.config.head_dim as f64).sqrt();
        match self.attention {
            Attention::Eager => {
                let scores = q.matmul(&k.transpose(-2, -1)) * scale + mask;
                let probs = scores.softmax(-1, Kind::Float).to_kind(self.kind);
                probs.matmul(&v)
            }
            Attention::Sdpa => Tensor::scaled_dot_product_attention(
                q,
                &k,
                &v,
                Some(mask),
                0.0,
                false,
                scale,
                false,
            ),
        }
    }

    /// One decoder pass over `tokens` (`[B, T]`) at `positions` (`[B, T]`). `caches[b]` holds
    /// sequence b's past and gets the new keys and values; `mask` is `[B, 1, T, past + T]`
    /// (0 or -inf) over each sequence's keys, padded to the longest. Returns the logits of the
    /// last position, `[B, vocab]`, in float32.
    fn forward(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        caches: &mut [&mut Cache],
        mask: &Tensor,
    ) -> Tensor {
        let c = &self.config;
        let (b, t) = (tokens.size()[0], tokens.size()[1]);
        let mut x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        let (cos, sin) = self.rope(positions);
        for (i, layer) in self.layers.iter().enumerate() {
            let h = self.rms_norm(&x, &layer.input_norm);
            let shape = |y: Tensor, heads: i64| y.view([b, t, heads, c.head_dim]).transpose(1, 2);
            let mut q = shape(Self::linear(&h, &layer.q, layer.q_bias.as_ref()), c.heads);
            let mut k = shape(
                Self::linear(&h, &layer.k, layer.k_bias.as_ref()),
                c.kv_heads,
            );
            let v = shape(
                Self::linear(&h, &layer.v, layer.v_bias.as_ref()),
                c.kv_heads,
            );
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                q = self.rms_norm(&q, qn);
                k = self.rms_norm(&k, kn);
            }
            let q = &q * &cos + rotate_half(&q) * &sin;
            let k = &k * &cos + rotate_half(&k) * &sin;
            // Append to each sequence's cache, then pad the batch to its longest.
            let mut keys = Vec::with_capacity(b as usize);
            let mut values = Vec::with_capacity(b as usize);
            for (j, cache) in caches.iter_mut().enumerate() {
                let j = j as i64;
                let (pk, pv) = &cache.layers[i];
                let nk = Tensor::cat(&[pk, &k.narrow(0, j, 1)], 2);
                let nv = Tensor::cat(&[pv, &v.narrow(0, j, 1)], 2);
                keys.push(nk.shallow_clone());
                values.push(nv.shallow_clone());
                cache.layers[i] = (nk, nv);
            }
            let longest = keys.iter().map(|k| k.size()[2]).max().unwrap_or(0);
            let pad = |x: Tensor| {
                let missing = longest - x.size()[2];
                if missing == 0 {
                    x
                } else {
                    x.constant_pad_nd([0, 0, 0, missing])
                }
            };
            let kb = Tensor::cat(&keys.into_iter().map(pad).collect::<Vec<_>>(), 0);
            let vb = Tensor::cat(&values.into_iter().map(pad).collect::<Vec<_>>(), 0);
            let a = self.attend(&q, &kb, &vb, mask);
            let a = a
                .transpose(1, 2)
                .contiguous()
                .view([b, t, c.heads * c.head_dim]);
            x += a.linear::<Tensor>(&layer.o, None);
            let h = self.rms_norm(&x, &layer.post_norm);
            let mlp = (h.linear::<Tensor>(&layer.gate, None).silu()
                * h.linear::<Tensor>(&layer.up, None))
            .linear::<Tensor>(&layer.down, None);
            x += mlp;
        }
        for cache in caches.iter_mut() {
            cache.len += t;
        }
        let last = x.narrow(1, t - 1, 1).squeeze_dim(1);
        let h = self.rms_norm(&last, &self.norm);
        h.linear::<Tensor>(&self.lm_head, None).to_kind(Kind::Float)
    }

    /// Runs a prompt into an empty `cache`: the logits after its last token, `[vocab]`.
    pub fn prefill(&self, prompt: &[u32], cache: &mut Cache) -> Tensor {
        let t = prompt.len() as i64;
        let ids: Vec<i64> = prompt.iter().map(|&i| i64::from(i)).collect();
        let tokens = Tensor::from_slice(&ids).view([1, t]).to_device(self.device);
        let start = cache.len;
        let positions =
            Tensor::arange_start(start, start + t, (Kind::Int64, self.device)).view([1, t]);
        // Causal over the new tokens, everything in the past visible.
        let total = start + t;
        let causal = Tensor::ones([t, total], (Kind::Bool, self.device)).triu(start + 1);
        let mask = Tensor::zeros([t, total], (self.kind, self.device))
            .masked_fill(&causal, f64::NEG_INFINITY)
            .view([1, 1, t, total]);
        self.forward(&tokens, &positions, &mut [cache], &mask)
            .squeeze_dim(0)
    }

    /// One token for each sequence: `tokens[b]` goes after `caches[b]`. The logits,
    /// `[B, vocab]`.
    pub fn decode(&self, tokens: &[u32], caches: &mut [&mut Cache]) -> Tensor {
        let b = tokens.len() as i64;
        let ids: Vec<i64> = tokens.iter().map(|&i| i64::from(i)).collect();
        let input = Tensor::from_slice(&ids).view([b, 1]).to_device(self.device);
        let lens: Vec<i64> = caches.iter().map(|c| c.len).collect();
        let positions = Tensor::from_slice(&lens)
            .view([b, 1])
            .to_device(self.device);
        let longest = lens.iter().max().copied().unwrap_or(0) + 1;
        // Sequence b sees its own len + 1 keys; the rest of the row is padding.
        let col = Tensor::arange(longest, (Kind::Int64, self.device)).view([1, longest]);
        let valid = positions.view([b, 1]) + 1;
        let padded = col.ge_tensor(&valid);
        let mask = Tensor::zeros([b, longest], (self.kind, self.device))
            .masked_fill(&padded, f64::NEG_INFINITY)
            .view([b, 1, 1, longest]);
        self.forward(&input, &positions, caches, &mask)
    }
}
