//! Chat templates as Hugging Face's `apply_chat_template` renders them: Jinja with
//! `trim_blocks` and `lstrip_blocks`, loop controls, Python string methods (`strip`,
//! `startswith`, `split`, ...), `raise_exception`, `strftime_now`, and the tokenizer's special
//! tokens (`bos_token`, `eos_token`, ...) as variables.

use minijinja::{Environment, ErrorKind, Value};
use perf_plugin_api::{ChatMessage, ContentPart};
use serde_json::{json, Map};

/// A compiled chat template and the variables every rendering gets.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// `bos_token`, `eos_token`, `pad_token`, `unk_token` as the tokenizer config names them.
    tokens: Map<String, serde_json::Value>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; `tokens` are the special-token variables.
    pub fn new(source: String, tokens: Map<String, serde_json::Value>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<Value, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", |format: String| {
            // Templates use it for "today's date" lines; a fixed format of the current UTC date
            // keeps token counts stable within a run.
            strftime_utc(&format)
        });
        env.add_template_owned(NAME, source)
            .map_err(|e| format!("the chat template does not compile: {e:#}"))?;
        Ok(ChatTemplate { env, tokens })
    }

    /// Renders `messages`, with the assistant's turn opened when `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, String> {
        let messages: Vec<serde_json::Value> = messages.iter().map(message_json).collect();
        let mut ctx = self.tokens.clone();
        ctx.insert("messages".into(), json!(messages));
        ctx.insert("add_generation_prompt".into(), json!(add_generation_prompt));
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| format!("the chat template is missing: {e}"))?;
        template
            .render(Value::from_serialize(&ctx))
            .map_err(|e| format!("the chat template failed to render: {e:#}"))
    }
}

/// A message as templates expect it: `content` a string when it is all text, else the OpenAI
/// list of parts.
fn message_json(m: &ChatMessage) -> serde_json::Value {
    let all_text = m.parts().all(|p| matches!(p, Ok(ContentPart::Text(_))));
    let content = if all_text {
        json!(m.texts().collect::<String>())
    } else {
        let parts: Vec<serde_json::Value> = m
            .parts()
            .filter_map(|p| match p {
                Ok(ContentPart::Text(t)) => Some(json!({"type": "text", "text": t.as_str()})),
                Ok(ContentPart::ImageUrl(u)) => {
                    Some(json!({"type": "image_url", "image_url": {"url": u.as_str()}}))
                }
                // A part templates have no form for.
                _ => None,
            })
            .collect();
        json!(parts)
    };
    json!({"role": m.role.as_str(), "content": content})
}

/// The subset of `strftime` chat templates use (`%d %b %Y`, `%Y-%m-%d`, ...), for today in UTC.
fn strftime_utc(format: &str) -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let (y, m, d) = civil_from_days(days);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('-') if chars.clone().next() == Some('d') => {
                chars.next();
                out.push_str(&d.to_string());
            }
            Some('B') => out.push_str(month),
            Some('b') => out.push_str(&month[..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's civil-from-days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> ChatMessage {
        ChatMessage::text("user", text)
    }

    #[test]
    fn renders_with_python_string_methods_and_trimmed_blocks() {
        let source = "{%- for m in messages %}\n  {%- if m.content.startswith('hi') %}\n<{{ m.role }}>{{ m.content.strip() }}\n  {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}{{ bos_token }}{% endif %}";
        let mut tokens = Map::new();
        tokens.insert("bos_token".into(), json!("<s>"));
        let t = ChatTemplate::new(source.into(), tokens).expect("compiles");
        assert_eq!(
            t.render(&[user("hi there "), user("bye")], true)
                .expect("renders"),
            "<user>hi there<s>"
        );
    }

    #[test]
    fn raise_exception_is_an_error_with_the_templates_message() {
        let t = ChatTemplate::new(
            "{{ raise_exception('Conversation roles must alternate') }}".into(),
            Map::new(),
        )
        .expect("compiles");
        let err = t.render(&[user("x")], false).expect_err("raises");
        assert!(err.contains("Conversation roles must alternate"), "{err}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
