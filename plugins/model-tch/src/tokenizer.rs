//! The model's `tokenizer.json`, for `LocalModel::tokenizer`. The host tokenizes requests and
//! renders chat templates with its own tokenizer code; this one serves other callers of the
//! interface (encode, decode, vocabulary) and reports no template.

use std::path::Path;
use std::sync::Arc;

use perf_plugin_api::sdk::{tokenizer_ref, TokenizerPlugin};
use perf_plugin_api::{ChatMessage, PluginError, TokenizerRef};

/// A loaded `tokenizer.json`; clones share it.
#[derive(Clone)]
pub struct FileTokenizer(Arc<tokenizers::Tokenizer>);

impl FileTokenizer {
    /// A handle for the plugin interface.
    pub fn handle(&self) -> TokenizerRef {
        tokenizer_ref(self.clone())
    }
}

fn err(e: impl std::fmt::Display) -> PluginError {
    PluginError::invalid(e.to_string())
}

impl TokenizerPlugin for FileTokenizer {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, PluginError> {
        self.0
            .encode_fast(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(err)
    }

    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, PluginError> {
        self.0.decode(ids, skip_special_tokens).map_err(err)
    }

    fn vocab_size(&self) -> u32 {
        self.0.get_vocab_size(true) as u32
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.0.id_to_token(id)
    }

    fn is_special(&self, id: u32) -> bool {
        self.0
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special)
    }

    fn apply_chat_template(
        &self,
        _messages: &[ChatMessage],
        _add_generation_prompt: bool,
    ) -> Result<Option<String>, PluginError> {
        Ok(None)
    }
}

/// `dir/tokenizer.json`.
pub fn load(dir: &Path) -> Result<FileTokenizer, String> {
    let path = dir.join("tokenizer.json");
    let t = tokenizers::Tokenizer::from_file(&path).map_err(|e| {
        format!(
            "{}: {e} (the model directory needs its tokenizer.json)",
            path.display()
        )
    })?;
    Ok(FileTokenizer(Arc::new(t)))
}
