//! The host's tokenizer with `Result`s instead of the interface's `RResult`s.

use perf_plugin_api::{ChatMessage, PluginError, TokenizerRef};

/// A tokenizer handle.
pub struct Tok(pub TokenizerRef);

impl Tok {
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, PluginError> {
        self.0
            .encode(text.into(), add_special_tokens)
            .into_result()
            .map(|ids| ids.into_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, PluginError> {
        self.0
            .decode(ids.into(), false)
            .into_result()
            .map(|s| s.into_string())
    }

    pub fn vocab_size(&self) -> u32 {
        self.0.vocab_size()
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.0
            .id_to_token(id)
            .into_option()
            .map(|s| s.into_string())
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.0.is_special(id)
    }

    /// The chat template applied to one user message with the generation prompt, or `None`
    /// when the tokenizer has no template.
    pub fn template_user(&self, text: &str) -> Result<Option<String>, PluginError> {
        let messages = [ChatMessage::text("user", text)];
        self.0
            .apply_chat_template(messages.as_slice().into(), true)
            .into_result()
            .map(|s| s.into_option().map(|s| s.into_string()))
    }

    /// Tokens the server counts for a prompt: the chat template applied to it as the one user
    /// message when `chat` and the tokenizer has a template, else the text with the
    /// tokenizer's special tokens.
    pub fn prompt_tokens(&self, text: &str, chat: bool) -> Result<usize, PluginError> {
        if chat {
            if let Some(rendered) = self.template_user(text)? {
                return Ok(self.encode(&rendered, false)?.len());
            }
        }
        Ok(self.encode(text, true)?.len())
    }
}
