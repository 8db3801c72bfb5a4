//! `speed_benchmark` and `speed_benchmark_long`: evalscope's generation-speed table. The prompt
//! is the character "熵" repeated L times, twice for each L (1, 6,144, 14,336 and 30,720; 63,488
//! and 129,024 for the long one), sent to `/v1/completions`; the run writes
//! `speed_benchmark.json` (output tokens per second and accelerator memory per prompt length).

use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{DatasetItem, PluginError, PromptItem, TokenizerRef};

const CHARACTER: &str = "熵";
const REPEAT: usize = 2;

/// The prompts of one table, in order.
struct Lengths {
    lengths: &'static [usize],
    next: usize,
}

impl Lengths {
    fn next_item(&mut self) -> Option<DatasetItem> {
        let length = *self.lengths.get(self.next / REPEAT)?;
        self.next += 1;
        Some(DatasetItem::new(PromptItem::Text(
            CHARACTER.repeat(length).into(),
        )))
    }
}

/// `speed_benchmark`.
pub struct SpeedBenchmark(Lengths);

impl DatasetSourcePlugin for SpeedBenchmark {
    const ID: &'static str = "speed_benchmark";
    const DESCRIPTION: &'static str =
        "generation speed by prompt length: \"熵\" x 1, 6144, 14336, 30720, twice each, to /v1/completions; writes speed_benchmark.json";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);
    const SPEED_BENCHMARK: bool = true;

    fn new(_config: &DatasetConfig, _tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        Ok(SpeedBenchmark(Lengths {
            lengths: &[1, 6144, 14336, 30720],
            next: 0,
        }))
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        Ok(self.0.next_item())
    }
}

/// `speed_benchmark_long`.
pub struct SpeedBenchmarkLong(Lengths);

impl DatasetSourcePlugin for SpeedBenchmarkLong {
    const ID: &'static str = "speed_benchmark_long";
    const DESCRIPTION: &'static str =
        "generation speed at long prompts: \"熵\" x 63488, 129024, twice each, to /v1/completions; writes speed_benchmark.json";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);
    const SPEED_BENCHMARK: bool = true;

    fn new(_config: &DatasetConfig, _tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        Ok(SpeedBenchmarkLong(Lengths {
            lengths: &[63488, 129024],
            next: 0,
        }))
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        Ok(self.0.next_item())
    }
}
