//! Prompts: what a dataset yields and an API adapter turns into a request.

// The non-exhaustive enums' `StableAbi` derive (abi_stable 0.11) puts impls inside a `const`
// block, which rustc now flags; the generated code is fine.
#![allow(non_local_definitions)]

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

use super::{Extensions, PluginError};

/// One part of a chat message's content. Crosses the boundary as [`ContentPart_NE`]; a part of
/// a kind this interface version does not know reads as an error from `as_enum()`.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 8], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum ContentPart {
    /// Text.
    Text(RString),
    /// An image, as a URL or a `data:image/...;base64,` URL.
    ImageUrl(RString),
    /// Test only (`next-interface-check`): a part that no released interface has.
    #[cfg(feature = "next-interface-check")]
    NextInterfaceCheck(RString),
}

/// One chat message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: RString,
    /// The content parts, in order. A plain text message has one `Text` part.
    pub content: RVec<ContentPart_NE>,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

impl ChatMessage {
    /// A message with `parts`.
    pub fn new(role: &str, parts: impl IntoIterator<Item = ContentPart>) -> Self {
        ChatMessage {
            role: role.into(),
            content: parts.into_iter().map(ContentPart_NE::new).collect(),
            ext: Extensions::new(),
        }
    }

    /// A message with one text part.
    pub fn text(role: &str, text: &str) -> Self {
        Self::new(role, [ContentPart::Text(text.into())])
    }

    /// The text parts, in order; other parts (images, kinds this version does not know) are
    /// left out.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.content.iter().filter_map(|p| match p.as_enum() {
            Ok(ContentPart::Text(t)) => Some(t.as_str()),
            _ => None,
        })
    }

    /// The content parts; a part of a kind this interface version does not know is an error
    /// (send nothing rather than a message with a part left out).
    pub fn parts(&self) -> impl Iterator<Item = Result<&ContentPart, PluginError>> {
        self.content.iter().map(|p| {
            p.as_enum()
                .map_err(|_| PluginError::unknown_value("a chat message part"))
        })
    }
}

/// What a dataset yields and an API adapter turns into a request. Crosses the boundary as
/// [`PromptItem_NE`]; an adapter that does not know a kind refuses it (the SDK does so).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 8], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum PromptItem {
    /// A plain prompt (completions style, or wrapped into one user message by chat adapters).
    Text(RString),
    /// A chat conversation, sent as is.
    Messages(RVec<ChatMessage>),
    /// A complete JSON request body; adapters fill in only the parameters it lacks.
    Body(RString),
    /// Token ids, for servers that accept them (`/v1/completions` with a token-id prompt).
    TokenIds(RVec<u32>),
    /// Test only (`next-interface-check`): a prompt kind that no released interface has.
    #[cfg(feature = "next-interface-check")]
    NextInterfaceCheck(RString),
}

/// A prompt plus what the dataset knows about it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct DatasetItem {
    /// The prompt.
    pub prompt: PromptItem_NE,
    /// The exact prompt length in tokens when the dataset knows it (e.g. `random`), so the host
    /// need not count it again.
    pub prompt_tokens: ROption<u64>,
    /// Fields added by later interface versions.
    pub ext: Extensions,
}

impl DatasetItem {
    /// An item of unknown token length.
    pub fn new(prompt: PromptItem) -> Self {
        DatasetItem {
            prompt: PromptItem_NE::new(prompt),
            prompt_tokens: ROption::RNone,
            ext: Extensions::new(),
        }
    }

    /// An item whose prompt is exactly `tokens` tokens long.
    pub fn with_tokens(prompt: PromptItem, tokens: u64) -> Self {
        DatasetItem {
            prompt_tokens: ROption::RSome(tokens),
            ..Self::new(prompt)
        }
    }

    /// The prompt, or an error when it is of a kind this interface version does not know.
    pub fn into_prompt(self) -> Result<PromptItem, PluginError> {
        self.prompt
            .into_enum()
            .map_err(|_| PluginError::unknown_value("a prompt"))
    }

    /// The prompt, or an error when it is of a kind this interface version does not know.
    pub fn prompt(&self) -> Result<&PromptItem, PluginError> {
        self.prompt
            .as_enum()
            .map_err(|_| PluginError::unknown_value("a prompt"))
    }
}
