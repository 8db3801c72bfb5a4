//! Choosing the next token: greedy at temperature 0, else temperature, top-k and top-p
//! (nucleus) sampling with a per-request seed; a repetition penalty over the tokens seen.

use perf_plugin_api::SamplingParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::Tensor;

/// One request's sampler.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        let rng = match params.seed.into_option() {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        Sampler {
            params: params.clone(),
            rng,
        }
    }

    /// The next token from `logits` (`[vocab]`, float32), after `seen`.
    pub fn pick(&mut self, logits: &Tensor, seen: &[u32]) -> u32 {
        let mut v: Vec<f32> =
            Vec::<f32>::try_from(logits.to_device(tch::Device::Cpu)).unwrap_or_default();
        if let Some(p) = self
            .params
            .repetition_penalty
            .into_option()
            .filter(|p| *p != 1.0)
        {
            for &t in seen {
                if let Some(x) = v.get_mut(t as usize) {
                    *x = if *x > 0.0 { *x / p } else { *x * p };
                }
            }
        }
        pick(&mut v, &self.params, &mut self.rng)
    }
}

/// The argmax (first of ties, as torch's argmax).
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn pick(v: &mut [f32], p: &SamplingParams, rng: &mut StdRng) -> u32 {
    if p.temperature <= 0.0 || v.is_empty() {
        return argmax(v);
    }
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    if let Some(k) = p.top_k.into_option().filter(|k| *k > 0) {
        order.truncate(k as usize);
    }
    let max = v[order[0]];
    let mut probs: Vec<f32> = order
        .iter()
        .map(|&i| ((v[i] - max) / p.temperature).exp())
        .collect();
    let total: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|x| *x /= total);
    if let Some(top_p) = p.top_p.into_option().filter(|t| *t < 1.0) {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, x) in probs.iter().enumerate() {
            acc += x;
            if acc >= top_p {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        order.truncate(keep);
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
    }
    let mut r: f32 = rng.gen();
    for (i, x) in probs.iter().enumerate() {
        if r < *x {
            return order[i] as u32;
        }
        r -= x;
    }
    order[probs.len() - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: Option<u32>, top_p: Option<f32>) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p: top_p.into(),
            top_k: top_k.into(),
            repetition_penalty: None.into(),
            frequency_penalty: None.into(),
            seed: Some(7).into(),
        }
    }

    #[test]
    fn greedy_takes_the_argmax_and_top_k_1_agrees() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut v = vec![0.1, 2.0, 1.9, -1.0];
        assert_eq!(pick(&mut v.clone(), &params(0.0, None, None), &mut rng), 1);
        for _ in 0..20 {
            assert_eq!(pick(&mut v, &params(1.0, Some(1), None), &mut rng), 1);
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus_only() {
        let mut rng = StdRng::seed_from_u64(2);
        // Token 0 holds almost all the mass: top_p 0.5 keeps only it.
        let v = vec![10.0, 0.0, 0.0, 0.0];
        for _ in 0..50 {
            assert_eq!(
                pick(&mut v.clone(), &params(1.0, None, Some(0.5)), &mut rng),
                0
            );
        }
        // At temperature 1 without limits every token shows up.
        let flat = vec![0.0; 4];
        let mut seen = [false; 4];
        for _ in 0..200 {
            seen[pick(&mut flat.clone(), &params(1.0, None, None), &mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
