//! Local models (`--api local`).

use abi_stable::{
    std_types::{ROption, RVec},
    StableAbi,
};

use super::Extensions;

/// Sampling parameters of one generation.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling threshold.
    pub top_p: ROption<f32>,
    /// Top-k sampling.
    pub top_k: ROption<u32>,
    /// Repetition penalty (1.0 = none).
    pub repetition_penalty: ROption<f32>,
    /// Frequency penalty.
    pub frequency_penalty: ROption<f32>,
    /// Seed of this generation's sampler.
    pub seed: ROption<u64>,
}

/// One generation request for a local model.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The prompt, already tokenized (chat template applied by the host).
    pub prompt_tokens: RVec<u32>,
    /// Stop after this many new tokens.
    pub max_new_tokens: u32,
    /// Do not stop on end-of-sequence or stop tokens before this many tokens.
    pub min_new_tokens: u32,
    /// Extra token ids that end the generation.
    pub stop_token_ids: RVec<u32>,
    /// Sampling.
    pub sampling: SamplingParams,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

open_enum! {
    /// Why a generation ended. A host reads a reason it does not know as `Stop`.
    pub struct FinishReason;
    /// `max_new_tokens` reached.
    Length = 0 => "length",
    /// End of sequence or a stop token.
    Stop = 1 => "stop",
    /// The token sink asked to stop (the client went away).
    Cancelled = 2 => "cancelled",
}

/// The result of one generation.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct GenerateOutcome {
    /// Prompt tokens processed.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Why it ended.
    pub finish: FinishReason,
    /// The accelerator memory this generation's batch held at its peak, in bytes, when the
    /// backend measures it (evalscope's `max_gpu_memory_cost`).
    pub peak_memory_bytes: ROption<u64>,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

impl GenerateOutcome {
    /// An outcome without a memory figure.
    pub fn new(prompt_tokens: u64, completion_tokens: u64, finish: FinishReason) -> Self {
        GenerateOutcome {
            prompt_tokens,
            completion_tokens,
            finish,
            peak_memory_bytes: ROption::RNone,
            ext: Extensions::new(),
        }
    }
}
