//! The tch backend against Hugging Face `transformers` on the same weights: tiny random-weight
//! Qwen2, Qwen3 and Llama models (`scripts/make_tiny_models.py`) and transformers' float32
//! answers for them (`scripts/reference.py`), made by `scripts/check` before this runs
//! (`PERF_TCH_MODELS` names their directory). Logits after each prompt agree within 1e-4, and so
//! does a greedy continuation of 8 tokens (the same tokens, the top-5 logits of every step);
//! several sequences decoded in one batch give what each gives alone.

use std::path::PathBuf;

use perf_model_tch::{Attention, Model};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn models() -> Option<PathBuf> {
    std::env::var_os("PERF_TCH_MODELS").map(PathBuf::from)
}

fn load(dir: &std::path::Path, attention: Attention) -> Model {
    Model::load(dir, Device::Cpu, Kind::Float, attention).expect("the model loads")
}

fn max_diff(a: &Tensor, b: &[f64]) -> f64 {
    let b = Tensor::from_slice(b).to_kind(Kind::Float);
    f64::try_from((a - b).abs().max()).expect("a number")
}

#[test]
fn logits_and_greedy_tokens_match_transformers() {
    let Some(dir) = models() else {
        panic!("PERF_TCH_MODELS is not set: run plugins/model-tch/scripts/check");
    };
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("reference.json")).expect("reference.json"),
    )
    .expect("JSON");
    let _guard = tch::no_grad_guard();
    let mut worst = 0.0f64;
    for (name, runs) in reference.as_object().expect("models") {
        for attention in [Attention::Eager, Attention::Sdpa] {
            let model = load(&dir.join(name), attention);
            for run in runs.as_array().expect("runs") {
                let prompt: Vec<u32> = run["prompt"]
                    .as_array()
                    .expect("prompt")
                    .iter()
                    .map(|v| v.as_u64().expect("id") as u32)
                    .collect();
                let want: Vec<f64> = run["logits"]
                    .as_array()
                    .expect("logits")
                    .iter()
                    .map(|v| v.as_f64().expect("f"))
                    .collect();
                let mut cache = model.new_cache();
                let mut logits = model.prefill(&prompt, &mut cache);
                let d = max_diff(&logits, &want);
                worst = worst.max(d);
                assert!(
                    d < 1e-4,
                    "{name} {attention:?}: prefill logits differ by {d}"
                );
                for (step, expected) in run["steps"].as_array().expect("steps").iter().enumerate() {
                    let next = i64::try_from(logits.argmax(0, false)).expect("id") as u32;
                    assert_eq!(
                        next,
                        run["greedy"][step].as_u64().expect("token") as u32,
                        "{name} {attention:?}: greedy token {step}"
                    );
                    logits = model.decode(&[next], &mut [&mut cache]).get(0);
                    for (id, value) in expected["ids"]
                        .as_array()
                        .expect("ids")
                        .iter()
                        .zip(expected["values"].as_array().expect("values"))
                    {
                        let got = f64::try_from(logits.get(id.as_i64().expect("id"))).expect("f");
                        let d = (got - value.as_f64().expect("f")).abs();
                        worst = worst.max(d);
                        assert!(
                            d < 1e-4,
                            "{name} {attention:?}: step {step} logit of {id} differs by {d}"
                        );
                    }
                }
            }
        }
    }
    println!("largest difference from transformers: {worst:.2e}");
}

#[test]
fn a_batch_of_sequences_decodes_as_each_does_alone() {
    let Some(dir) = models() else {
        panic!("PERF_TCH_MODELS is not set: run plugins/model-tch/scripts/check");
    };
    let _guard = tch::no_grad_guard();
    for name in ["qwen2", "qwen3", "llama"] {
        let model = load(&dir.join(name), Attention::Sdpa);
        let prompts: [&[u32]; 3] = [
            &[5, 6, 7, 8, 9],
            &[100],
            &[42, 43, 44, 45, 46, 47, 48, 49, 50],
        ];
        // Alone.
        let mut alone = Vec::new();
        for p in prompts {
            let mut cache = model.new_cache();
            let first = model.prefill(p, &mut cache);
            let t = i64::try_from(first.argmax(0, false)).expect("id") as u32;
            alone.push((t, model.decode(&[t], &mut [&mut cache]).get(0)));
        }
        // Together, from caches of different lengths.
        let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache()).collect();
        let mut firsts = Vec::new();
        for (p, c) in prompts.iter().zip(caches.iter_mut()) {
            let first = model.prefill(p, c);
            firsts.push(i64::try_from(first.argmax(0, false)).expect("id") as u32);
        }
        let mut refs: Vec<&mut _> = caches.iter_mut().collect();
        let together = model.decode(&firsts, &mut refs);
        for (i, (t, logits)) in alone.iter().enumerate() {
            assert_eq!(*t, firsts[i]);
            let d = f64::try_from((together.get(i as i64) - logits).abs().max()).expect("f");
            assert!(d < 1e-4, "{name}: sequence {i} differs by {d} in a batch");
        }
    }
}
