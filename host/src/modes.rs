//! The `--api` values with which perf starts the server it benchmarks: the simulator
//! (`mock`), a model served in process by a LocalModel plugin (`local`), and vLLM's OpenAI
//! server (`local_vllm`). They are modes of the host, not plugins: each serves an
//! OpenAI-compatible endpoint on 127.0.0.1 and is benchmarked through the adapter below.

/// A server perf starts for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    /// `--api mock`: the built-in simulator.
    Simulator,
    /// `--api local`: a LocalModel plugin behind perf's own OpenAI-compatible server.
    LocalModel,
    /// `--api local_vllm`: vLLM's OpenAI server, started and stopped by perf.
    Vllm,
}

impl ServerMode {
    /// The adapter that speaks to every server perf starts (their OpenAI-compatible API).
    pub const ADAPTER: &'static str = "openai";

    /// The mode `--api` selects, if it selects one.
    pub fn from_api(api: &str) -> Option<Self> {
        match api {
            "mock" => Some(ServerMode::Simulator),
            "local" => Some(ServerMode::LocalModel),
            "local_vllm" => Some(ServerMode::Vllm),
            _ => None,
        }
    }
}
