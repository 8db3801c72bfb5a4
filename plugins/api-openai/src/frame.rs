//! The parts of an OpenAI-compatible response object the decoder reads. Two readers fill them
//! (the decoder tries the first, then the second): the scanner of `scan.rs` for the common
//! shapes, serde's derived `Deserialize` for everything else.
//!
//! Unknown members are ignored (servers add their own); a member of the wrong type, a
//! duplicate member, or anything that is not JSON makes the whole object unreadable, exactly as
//! serde's derived `Deserialize` decides.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// One streamed chunk or one whole response body.
#[derive(Deserialize, Debug, PartialEq, Default)]
pub(crate) struct Frame<'a> {
    #[serde(borrow, default)]
    pub object: Option<Cow<'a, str>>,
    #[serde(default)]
    pub error: Option<IgnoredAny>,
    #[serde(borrow, default)]
    pub choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    pub usage: Option<UsageJson>,
    /// Some servers put the error text in `message` next to `object: "error"`.
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Debug, PartialEq, Default)]
pub(crate) struct Choice<'a> {
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub delta: Option<Message<'a>>,
    #[serde(borrow, default)]
    pub message: Option<Message<'a>>,
}

#[derive(Deserialize, Debug, PartialEq, Default)]
pub(crate) struct Message<'a> {
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow, default)]
    pub reasoning_details: Option<Vec<ReasoningDetail<'a>>>,
}

#[derive(Deserialize, Debug, PartialEq, Default)]
pub(crate) struct ToolCall<'a> {
    #[serde(borrow, default)]
    pub function: Option<Function<'a>>,
}

#[derive(Deserialize, Debug, PartialEq, Default)]
pub(crate) struct Function<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Debug, PartialEq, Default)]
pub(crate) struct ReasoningDetail<'a> {
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub summary: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Debug, PartialEq, Default)]
pub(crate) struct UsageJson {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Debug, PartialEq, Default)]
pub(crate) struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}
