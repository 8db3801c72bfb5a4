//! `--multi-turn`: a dataset item read as a conversation, and what a conversation run needs.
//!
//! A conversation is the messages each turn adds (user or tool messages, perhaps a system
//! message first) with, per turn, an optional `max_tokens` and a wait before it is sent. The
//! dataset's assistant messages are never sent: each turn goes out with the server's live
//! replies to the turns before it. Items say where turns end with
//! [`perf_plugin_api::FieldId::TURN_ENDS`]; in an item without it (a plugin built before 0.2.2,
//! a chat transcript) the assistant messages separate the turns, as evalscope's
//! `custom_multi_turn` reads its lines.

use std::time::Duration;

use perf_plugin_api::{ChatMessage, DatasetItem, PromptItem};

/// One turn: what it adds to the context, and how it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The messages it appends (no assistant message).
    pub messages: Vec<ChatMessage>,
    /// Its own `max_tokens`, over the run's.
    pub max_tokens: Option<u32>,
    /// How long to wait before sending it (a recorded tool call).
    pub wait: Duration,
}

/// A conversation, turn by turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// Its turns, at least one.
    pub turns: Vec<Turn>,
}

/// How a run's conversations go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Talk {
    /// `--max-turns`: later turns are not sent.
    pub max_turns: Option<u32>,
    /// `--think-time`: the pause between a reply and the next turn.
    pub think_time: Duration,
}

impl Conversation {
    /// Reads `item` as a conversation of at most `max_turns` turns.
    pub fn from_item(item: &DatasetItem, max_turns: Option<u32>) -> Result<Self, String> {
        let messages: Vec<ChatMessage> = match item.prompt() {
            Ok(PromptItem::Messages(m)) => m.iter().cloned().collect(),
            Ok(PromptItem::Text(t)) => vec![ChatMessage::text("user", t)],
            Ok(PromptItem::Body(_)) => {
                return Err("the dataset yielded a complete request body, which cannot be a turn of a conversation (--multi-turn needs chat messages)".into())
            }
            Ok(PromptItem::TokenIds(_)) => {
                return Err("the dataset yielded token ids, which cannot be a turn of a conversation (--multi-turn sends chat messages; leave out --tokenize-prompt)".into())
            }
            Ok(_) | Err(_) => {
                return Err("the dataset yielded a prompt of a kind this perf does not know".into())
            }
        };
        let ends = match item.turn_ends() {
            Some(ends) => checked_ends(ends, messages.len())?,
            None => reply_turn_ends(&messages),
        };
        let budgets = item.turn_max_tokens().unwrap_or_default();
        let waits = item.turn_wait_s().unwrap_or_default();
        let mut turns = Vec::with_capacity(ends.len());
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            if max_turns.is_some_and(|m| turns.len() >= m as usize) {
                break;
            }
            let added: Vec<ChatMessage> = messages[start..end]
                .iter()
                .filter(|m| m.role != "assistant")
                .cloned()
                .collect();
            start = end;
            if added.is_empty() {
                continue;
            }
            let wait = waits.get(i).copied().unwrap_or(0.0);
            turns.push(Turn {
                messages: added,
                max_tokens: budgets
                    .get(i)
                    .filter(|&&b| b > 0)
                    .map(|&b| b.min(u64::from(u32::MAX)) as u32),
                wait: if wait.is_finite() && wait > 0.0 {
                    Duration::from_secs_f64(wait)
                } else {
                    Duration::ZERO
                },
            });
        }
        if turns.is_empty() {
            return Err("the dataset yielded a conversation without a user turn".into());
        }
        Ok(Conversation { turns })
    }
}

/// The dataset's turn ends, if they are increasing and within the messages.
fn checked_ends(ends: &[u64], len: usize) -> Result<Vec<usize>, String> {
    let mut last = 0;
    let mut out = Vec::with_capacity(ends.len());
    for &e in ends {
        let e = usize::try_from(e).unwrap_or(usize::MAX);
        if e <= last || e > len {
            return Err(format!(
                "the dataset's turn ends {ends:?} do not split its {len} messages (each end must be larger than the one before and at most {len})"
            ));
        }
        out.push(e);
        last = e;
    }
    Ok(out)
}

/// evalscope's `custom_multi_turn` rule: the assistant messages separate the turns, each turn
/// being the other messages between two of them (or after the last).
fn reply_turn_ends(messages: &[ChatMessage]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut open = false;
    for (i, m) in messages.iter().enumerate() {
        if m.role == "assistant" {
            if open {
                ends.push(i);
                open = false;
            }
        } else {
            open = true;
        }
    }
    if open {
        ends.push(messages.len());
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &ChatMessage) -> String {
        format!("{}:{}", m.role, m.texts().collect::<String>())
    }

    fn turns(c: &Conversation) -> Vec<Vec<String>> {
        c.turns
            .iter()
            .map(|t| t.messages.iter().map(text).collect())
            .collect()
    }

    #[test]
    fn without_turn_ends_the_replies_separate_the_turns_and_are_dropped() {
        let item = DatasetItem::new(PromptItem::Messages(
            vec![
                ChatMessage::text("system", "be brief"),
                ChatMessage::text("user", "a"),
                ChatMessage::text("assistant", "reference reply"),
                ChatMessage::text("user", "b"),
                ChatMessage::text("user", "b2"),
                ChatMessage::text("assistant", "trailing"),
            ]
            .into(),
        ));
        let c = Conversation::from_item(&item, None).expect("conversation");
        assert_eq!(
            turns(&c),
            [vec!["system:be brief", "user:a"], vec!["user:b", "user:b2"]]
        );
        let capped = Conversation::from_item(&item, Some(1)).expect("conversation");
        assert_eq!(capped.turns.len(), 1);
    }

    #[test]
    fn turn_ends_budgets_and_waits_come_from_the_item() {
        let mut item = DatasetItem::conversation([
            vec![ChatMessage::text("user", "a")],
            vec![
                ChatMessage::text("tool", "result"),
                ChatMessage::text("user", "b"),
            ],
        ]);
        item.set_turn_max_tokens(vec![0, 7]);
        item.set_turn_wait_s(vec![0.0, 0.25]);
        let c = Conversation::from_item(&item, None).expect("conversation");
        assert_eq!(turns(&c), [vec!["user:a"], vec!["tool:result", "user:b"]]);
        assert_eq!(c.turns[0].max_tokens, None);
        assert_eq!(c.turns[1].max_tokens, Some(7));
        assert_eq!(c.turns[1].wait, Duration::from_millis(250));
    }

    #[test]
    fn what_cannot_be_a_conversation_says_why() {
        let body = DatasetItem::new(PromptItem::Body("{}".into()));
        assert!(Conversation::from_item(&body, None)
            .expect_err("a body")
            .contains("complete request body"));
        let mut bad = DatasetItem::new(PromptItem::Messages(
            vec![ChatMessage::text("user", "a")].into(),
        ));
        bad.ext.set(
            perf_plugin_api::FieldId::TURN_ENDS,
            perf_plugin_api::FieldValue::U64List(vec![1, 1].into()),
        );
        assert!(Conversation::from_item(&bad, None)
            .expect_err("bad ends")
            .contains("do not split"));
        let replies_only = DatasetItem::new(PromptItem::Messages(
            vec![ChatMessage::text("assistant", "x")].into(),
        ));
        assert!(Conversation::from_item(&replies_only, None).is_err());
        let text = DatasetItem::new(PromptItem::Text("hi".into()));
        assert_eq!(
            turns(&Conversation::from_item(&text, None).expect("one turn")),
            [vec!["user:hi"]]
        );
    }
}
