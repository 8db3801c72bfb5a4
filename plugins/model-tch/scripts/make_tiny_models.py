"""Small random-weight decoders, one per architecture the tch backend runs, written as Hugging
Face model directories (config.json, model.safetensors, tokenizer files) with numpy and
safetensors only:

    python make_tiny_models.py OUT_DIR QWEN3_TOKENIZER_DIR LLAMA3_TOKENIZER_DIR

- qwen2: Qwen2ForCausalLM (q/k/v biases), tied embeddings, Qwen3's tokenizer;
- qwen3: Qwen3ForCausalLM (q/k norms, explicit head_dim), Qwen3's tokenizer;
- llama: LlamaForCausalLM with llama3 RoPE scaling, weights sharded in two files with an index,
  Llama 3's tokenizer.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

out, qwen_tok, llama_tok = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
rng = np.random.default_rng(1234)


def vocab_of(tok_dir):
    tok = json.loads((tok_dir / "tokenizer.json").read_text())
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
    return max(ids) + 1


def weights(cfg, arch):
    h, i, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    nh, kv, v = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
    w = lambda *shape: (rng.standard_normal(shape) * 0.05).astype(np.float32)
    norm = lambda n: (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32)
    t = {"model.embed_tokens.weight": w(v, h), "model.norm.weight": norm(h)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}"
        t[f"{p}.input_layernorm.weight"] = norm(h)
        t[f"{p}.post_attention_layernorm.weight"] = norm(h)
        t[f"{p}.self_attn.q_proj.weight"] = w(nh * d, h)
        t[f"{p}.self_attn.k_proj.weight"] = w(kv * d, h)
        t[f"{p}.self_attn.v_proj.weight"] = w(kv * d, h)
        t[f"{p}.self_attn.o_proj.weight"] = w(h, nh * d)
        if arch == "qwen2":
            t[f"{p}.self_attn.q_proj.bias"] = w(nh * d)
            t[f"{p}.self_attn.k_proj.bias"] = w(kv * d)
            t[f"{p}.self_attn.v_proj.bias"] = w(kv * d)
        if arch == "qwen3":
            t[f"{p}.self_attn.q_norm.weight"] = norm(d)
            t[f"{p}.self_attn.k_norm.weight"] = norm(d)
        t[f"{p}.mlp.gate_proj.weight"] = w(i, h)
        t[f"{p}.mlp.up_proj.weight"] = w(i, h)
        t[f"{p}.mlp.down_proj.weight"] = w(h, i)
    if not cfg.get("tie_word_embeddings"):
        t["lm_head.weight"] = w(v, h)
    return t


def write(name, arch, tok_dir, extra, shards=1):
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
           "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 4096,
           "vocab_size": vocab_of(tok_dir), "torch_dtype": "float32", "hidden_act": "silu"}
    cfg.update(extra)
    tensors = weights(cfg, arch)
    if shards == 1:
        save_file(tensors, str(d / "model.safetensors"))
    else:
        names = sorted(tensors)
        weight_map = {}
        for s in range(shards):
            part = names[s::shards]
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            save_file({n: tensors[n] for n in part}, str(d / file))
            weight_map.update({n: file for n in part})
        (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / f, d / f)


write("qwen2", "qwen2", qwen_tok, {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
      "tie_word_embeddings": True, "eos_token_id": 151645, "use_sliding_window": False})
write("qwen3", "qwen3", qwen_tok, {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"],
      "head_dim": 32, "tie_word_embeddings": False, "eos_token_id": 151645, "attention_bias": False})
write("llama", "llama", llama_tok, {"model_type": "llama", "architectures": ["LlamaForCausalLM"],
      "tie_word_embeddings": False, "eos_token_id": [128001, 128009], "attention_bias": False,
      "mlp_bias": False, "rope_theta": 500000.0,
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}, shards=2)
print("wrote", ", ".join(sorted(p.name for p in out.iterdir())))
