//! Prompts: what a dataset yields and an API adapter turns into a request.

// The non-exhaustive enums' `StableAbi` derive (abi_stable 0.11) puts impls inside a `const`
// block, which rustc now flags; the generated code is fine.
#![allow(non_local_definitions)]

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

use super::{Extensions, FieldId, FieldValue, PluginError};

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

    /// A conversation for `--multi-turn`: `turns` are the messages each turn adds (user or
    /// tool messages; the live replies go in between), sent as one `Messages` prompt with
    /// [`FieldId::TURN_ENDS`].
    pub fn conversation(turns: impl IntoIterator<Item = Vec<ChatMessage>>) -> Self {
        let mut messages = Vec::new();
        let mut ends = Vec::new();
        for turn in turns {
            messages.extend(turn);
            ends.push(messages.len() as u64);
        }
        let mut item = Self::new(PromptItem::Messages(messages.into()));
        item.ext
            .set(FieldId::TURN_ENDS, FieldValue::U64List(ends.into()));
        item
    }

    /// Where each turn ends ([`FieldId::TURN_ENDS`]).
    pub fn turn_ends(&self) -> Option<&[u64]> {
        self.ext.u64_list(FieldId::TURN_ENDS)
    }

    /// Each turn's `max_tokens`, 0 for the run's ([`FieldId::TURN_MAX_TOKENS`]).
    pub fn turn_max_tokens(&self) -> Option<&[u64]> {
        self.ext.u64_list(FieldId::TURN_MAX_TOKENS)
    }

    /// Sets each turn's `max_tokens` (0: the run's).
    pub fn set_turn_max_tokens(&mut self, max_tokens: Vec<u64>) {
        self.ext.set(
            FieldId::TURN_MAX_TOKENS,
            FieldValue::U64List(max_tokens.into()),
        );
    }

    /// Seconds to wait before each turn ([`FieldId::TURN_WAIT_S`]).
    pub fn turn_wait_s(&self) -> Option<&[f64]> {
        self.ext.f64_list(FieldId::TURN_WAIT_S)
    }

    /// Sets the seconds to wait before each turn.
    pub fn set_turn_wait_s(&mut self, waits: Vec<f64>) {
        self.ext
            .set(FieldId::TURN_WAIT_S, FieldValue::F64List(waits.into()));
    }

    /// The conversation's routing key ([`FieldId::CONVERSATION_KEY`]).
    pub fn conversation_key(&self) -> Option<&str> {
        self.ext.str(FieldId::CONVERSATION_KEY)
    }

    /// Sets the conversation's routing key.
    pub fn set_conversation_key(&mut self, key: &str) {
        self.ext
            .set(FieldId::CONVERSATION_KEY, FieldValue::Str(key.into()));
    }

    /// When to send it, in seconds after the run's start ([`FieldId::ARRIVAL_S`]).
    pub fn arrival_s(&self) -> Option<f64> {
        self.ext.f64(FieldId::ARRIVAL_S)
    }

    /// Sets when to send it.
    pub fn set_arrival_s(&mut self, seconds: f64) {
        self.ext.set(FieldId::ARRIVAL_S, FieldValue::F64(seconds));
    }

    /// This request's own `max_tokens` ([`FieldId::MAX_TOKENS`]).
    pub fn max_tokens(&self) -> Option<u64> {
        self.ext.u64(FieldId::MAX_TOKENS)
    }

    /// Sets this request's own `max_tokens`.
    pub fn set_max_tokens(&mut self, max_tokens: u64) {
        self.ext
            .set(FieldId::MAX_TOKENS, FieldValue::U64(max_tokens));
    }

    /// The request's own id ([`FieldId::REQUEST_ID`]).
    pub fn request_id(&self) -> Option<&str> {
        self.ext.str(FieldId::REQUEST_ID)
    }

    /// Sets the request's own id.
    pub fn set_request_id(&mut self, id: &str) {
        self.ext
            .set(FieldId::REQUEST_ID, FieldValue::Str(id.into()));
    }

    /// Its own HTTP headers, as a JSON object's text ([`FieldId::HEADERS`]).
    pub fn headers_json(&self) -> Option<&str> {
        match self.ext.get(FieldId::HEADERS) {
            Some(FieldValue::Json(j)) => Some(j.as_str()),
            _ => None,
        }
    }

    /// Sets its own HTTP headers (a JSON object's text).
    pub fn set_headers_json(&mut self, json: &str) {
        self.ext
            .set(FieldId::HEADERS, FieldValue::Json(json.into()));
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
