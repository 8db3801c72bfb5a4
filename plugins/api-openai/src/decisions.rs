//! Decision services, as evalscope 1.14.1 benchmarks them: `systemone` (System One's
//! `/v1/systemone`) and `autotrust` (AutoTrust's native `/decide`). A request is one complete
//! JSON body from the dataset (`open_decisions`, or `line_by_line` with one object per line),
//! sent as it is, never streamed: the body may not carry generation controls (`stream`,
//! `temperature`, `top_p`, `top_k`, `max_tokens`, `n`), `systemone` adds the run's `model`
//! where the body has none, and the body must be a well-formed question (checked before it is
//! sent). A request counts as a success only when its answer is one valid decision distribution:
//!
//! - System One asks `{"model", "state", "questions": {"answer": {"type": "choice" | "noul" |
//!   "score", "instructions", "criteria"?}}}` (choice: 2-255 named options; score: 2-10 ordered
//!   levels; noul: at most `true` / `false` descriptions) and answers `{"model", "answers":
//!   {"answer": {"type", "probabilities", "choice" | "noul" | "score" + "legend", "confidence"?}}}`
//!   (a noul answer may give only `noul`, the probability of yes);
//! - AutoTrust asks `{"kind", "state", "question", "options"? (choice), "thinking": "off"}` and
//!   answers `{"model", "kind", "options", "probabilities": [...], "choice_index", "choice"}`.
//!
//! The probabilities must sum to 1 (within 0.02, or within what two-decimal rounding allows),
//! the chosen option must be a most probable one, a noul answer's yes must match its `noul`, a
//! score must be the expectation of its levels, and the answer must be to the question asked:
//! its kind, and its options or levels (a score's legend their descriptions; AutoTrust's option
//! list the request's) those of the request, which the decoder reads from the request body
//! (`new_decoder_for`, interface 0.2.3). Without the body (a question it cannot read) the
//! answer is held to the question it itself describes.
//! Tokens come from `usage` (`input_tokens` / `prompt_tokens`, `output_tokens` /
//! `completion_tokens`, non-negative integers) when the service reports them. There is no
//! output text: the run reports latency, input tokens and throughput, and lists TTFT, TPOT and
//! ITL as not applicable.

use perf_plugin_api::sdk::{ApiAdapterPlugin, ApiConfig, ResponseDecoderPlugin};
use perf_plugin_api::{
    Framing, HttpRequest, OutputKind, PluginError, PromptForm, PromptItem, RequestContext,
    ResponseEvent, ResultKind, Usage,
};
use serde_json::{json, Map, Value};

/// The body keys a decision request may not carry.
const GENERATION_CONTROLS: [&str; 6] =
    ["max_tokens", "n", "stream", "temperature", "top_k", "top_p"];
/// How far a distribution's sum may be from 1.
const PROBABILITY_TOLERANCE: f64 = 0.02;
/// How far a chosen option's probability may be below the highest.
const ANSWER_TOLERANCE: f64 = 1e-6;

/// Which decision protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// System One.
    SystemOne,
    /// AutoTrust's native `/decide`.
    AutoTrust,
}

/// A question's kind and its labels, in the order the answer gives probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    kind: Kind,
    /// Choice: option names; noul: `no`, `yes`; score: `0`, `1`, ...
    labels: Vec<String>,
    /// Score: the level descriptions.
    levels: Vec<String>,
    /// AutoTrust: the options as the wire lists them.
    wire_options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Choice,
    Noul,
    Score,
}

impl Kind {
    fn parse(v: Option<&Value>, key: &str) -> Result<Self, String> {
        match v.and_then(Value::as_str) {
            Some("choice") => Ok(Kind::Choice),
            Some("noul") => Ok(Kind::Noul),
            Some("score") => Ok(Kind::Score),
            Some(other) => Err(format!(
                "\"{key}\" is \"{other}\", not choice, noul or score"
            )),
            None => Err(format!("no \"{key}\" (choice, noul or score)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Choice => "choice",
            Kind::Noul => "noul",
            Kind::Score => "score",
        }
    }
}

fn nonempty(s: &str) -> bool {
    !s.trim().is_empty()
}

/// The question of a System One body.
fn systemone_question(body: &Map<String, Value>) -> Result<Question, String> {
    let questions = body
        .get("questions")
        .and_then(Value::as_object)
        .ok_or("no \"questions\" object")?;
    if questions.len() != 1 || !questions.contains_key("answer") {
        return Err("\"questions\" must hold exactly one question named \"answer\"".into());
    }
    let q = questions
        .get("answer")
        .and_then(Value::as_object)
        .ok_or("questions.answer is not an object")?;
    if !body.contains_key("state") {
        return Err("no \"state\"".into());
    }
    for key in q.keys() {
        if !matches!(
            key.as_str(),
            "type" | "instructions" | "criteria" | "answer_prefix"
        ) {
            return Err(format!("questions.answer has an unknown field \"{key}\""));
        }
    }
    let kind = Kind::parse(q.get("type"), "type")?;
    match q.get("instructions").and_then(Value::as_str) {
        Some(s) if nonempty(s) => {}
        _ => return Err("questions.answer.instructions must be a non-empty string".into()),
    }
    let criteria = q.get("criteria").filter(|c| !c.is_null());
    match kind {
        Kind::Choice => {
            let options = criteria
                .and_then(Value::as_object)
                .ok_or("a choice needs \"criteria\": an object of named options")?;
            if !(2..=255).contains(&options.len()) {
                return Err("a choice needs 2-255 named options".into());
            }
            let mut labels = Vec::new();
            let mut wire = Vec::new();
            for (name, text) in options {
                match text.as_str() {
                    Some(t) if nonempty(name) && nonempty(t) => {
                        labels.push(name.clone());
                        wire.push(t.to_string());
                    }
                    _ => return Err("choice options must not be empty".into()),
                }
            }
            Ok(Question {
                kind,
                labels,
                levels: Vec::new(),
                wire_options: wire,
            })
        }
        Kind::Score => {
            let levels = criteria
                .and_then(Value::as_array)
                .ok_or("a score needs \"criteria\": a list of level descriptions")?;
            if !(2..=10).contains(&levels.len()) {
                return Err("a score needs 2-10 ordered levels".into());
            }
            let levels: Vec<String> = levels
                .iter()
                .map(|l| match l.as_str() {
                    Some(t) if nonempty(t) => Ok(t.to_string()),
                    _ => Err("score level descriptions must not be empty".to_string()),
                })
                .collect::<Result<_, _>>()?;
            Ok(Question {
                kind,
                labels: (0..levels.len()).map(|i| i.to_string()).collect(),
                levels,
                wire_options: Vec::new(),
            })
        }
        Kind::Noul => {
            if let Some(c) = criteria {
                let ok = c
                    .as_object()
                    .is_some_and(|o| o.keys().all(|k| k == "true" || k == "false"));
                if !ok {
                    return Err("noul criteria may describe \"true\" and \"false\" only".into());
                }
            }
            Ok(Question {
                kind,
                labels: vec!["no".into(), "yes".into()],
                levels: Vec::new(),
                wire_options: vec!["false".into(), "true".into()],
            })
        }
    }
}

/// The question of an AutoTrust body.
fn autotrust_question(body: &Map<String, Value>) -> Result<Question, String> {
    match body.get("thinking") {
        None => {}
        Some(Value::String(s)) if s == "off" => {}
        Some(_) => return Err("decisions are benchmarked with \"thinking\": \"off\"".into()),
    }
    let kind = Kind::parse(body.get("kind"), "kind")?;
    if !body.contains_key("state") {
        return Err("no \"state\"".into());
    }
    match body.get("question").and_then(Value::as_str) {
        Some(s) if nonempty(s) => {}
        _ => return Err("\"question\" must be a non-empty string".into()),
    }
    match kind {
        Kind::Choice => {
            let options: Vec<String> = body
                .get("options")
                .and_then(Value::as_array)
                .ok_or("a choice needs \"options\": a list")?
                .iter()
                .map(|o| {
                    o.as_str()
                        .map(str::to_string)
                        .ok_or("options must be strings")
                })
                .collect::<Result<_, _>>()?;
            if !(2..=255).contains(&options.len()) || !options.iter().all(|o| nonempty(o)) {
                return Err("a choice needs 2-255 non-empty options".into());
            }
            Ok(Question {
                kind,
                labels: (0..options.len()).map(|i| i.to_string()).collect(),
                levels: Vec::new(),
                wire_options: options,
            })
        }
        Kind::Score => Ok(Question {
            kind,
            labels: (0..6).map(|i| i.to_string()).collect(),
            levels: (0..6).map(|i| i.to_string()).collect(),
            wire_options: (0..6).map(|i| i.to_string()).collect(),
        }),
        Kind::Noul => Ok(Question {
            kind,
            labels: vec!["no".into(), "yes".into()],
            levels: Vec::new(),
            wire_options: vec!["false".into(), "true".into()],
        }),
    }
}

/// The question a request body asks, checked.
pub fn request_question(protocol: Protocol, body: &Map<String, Value>) -> Result<Question, String> {
    match protocol {
        Protocol::SystemOne => systemone_question(body),
        Protocol::AutoTrust => autotrust_question(body),
    }
}

/// A probability: a number (not a boolean) in [0, 1].
fn probability(v: &Value, what: &str) -> Result<f64, String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or_else(|| format!("{what} is {n}, outside [0, 1]")),
        other => Err(format!("{what} is {other}, not a number")),
    }
}

/// How far from 1 a distribution may sum: 0.02, or more where every value has two decimals
/// and a unit-mass distribution rounded to two decimals could give them.
fn sum_tolerance(values: &[f64]) -> f64 {
    let two_decimals = values
        .iter()
        .all(|v| ((v * 100.0).round() / 100.0 - v).abs() < 1e-12);
    if !two_decimals {
        return PROBABILITY_TOLERANCE;
    }
    let half = 0.005;
    let lower: f64 = values.iter().map(|v| (v - half).max(0.0)).sum();
    let upper: f64 = values.iter().map(|v| (v + half).min(1.0)).sum();
    if lower <= 1.0 + 1e-12 && upper >= 1.0 - 1e-12 {
        PROBABILITY_TOLERANCE.max(values.len() as f64 * half)
    } else {
        PROBABILITY_TOLERANCE
    }
}

/// Checks a canonical answer (labels -> probabilities, and the kind's own fields) against
/// the question.
fn check_answer(
    q: &Question,
    probabilities: &[(String, f64)],
    answer: &Map<String, Value>,
) -> Result<(), String> {
    if !(2..=255).contains(&probabilities.len()) {
        return Err("an answer has 2-255 probabilities".into());
    }
    let values: Vec<f64> = probabilities.iter().map(|(_, p)| *p).collect();
    let sum: f64 = values.iter().sum();
    let tolerance = sum_tolerance(&values);
    if (sum - 1.0).abs() > tolerance + 1e-12 || sum <= 0.0 {
        return Err(format!(
            "the probabilities sum to {sum}, not 1 within {tolerance}"
        ));
    }
    let mut labels: Vec<&str> = probabilities.iter().map(|(l, _)| l.as_str()).collect();
    labels.sort_unstable();
    let mut asked: Vec<&str> = q.labels.iter().map(String::as_str).collect();
    asked.sort_unstable();
    if labels != asked {
        return Err(format!(
            "the answer's options {labels:?} are not the question's {asked:?}"
        ));
    }
    let prob = |label: &str| {
        probabilities
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, p)| *p)
    };
    let max = values.iter().cloned().fold(f64::MIN, f64::max);
    match q.kind {
        Kind::Choice => {
            let choice = answer
                .get("choice")
                .and_then(Value::as_str)
                .ok_or("a choice answer names its \"choice\"")?;
            let p = prob(choice).ok_or("the chosen option is not among the probabilities")?;
            if p < max - ANSWER_TOLERANCE {
                return Err("the chosen option is not a most probable one".into());
            }
        }
        Kind::Noul => {
            let noul = probability(
                answer.get("noul").ok_or("a noul answer gives \"noul\"")?,
                "noul",
            )?;
            let yes = prob("yes").unwrap_or(f64::NAN);
            if (noul - yes).abs() > ANSWER_TOLERANCE {
                return Err("noul and the probability of yes disagree".into());
            }
        }
        Kind::Score => {
            let legend = answer
                .get("legend")
                .and_then(Value::as_object)
                .ok_or("a score answer gives its \"legend\"")?;
            let matches = legend.len() == q.levels.len()
                && q.levels
                    .iter()
                    .enumerate()
                    .all(|(i, l)| legend.get(&i.to_string()).and_then(Value::as_str) == Some(l));
            if !matches {
                return Err("the score's legend is not the question's levels".into());
            }
            let score = match answer.get("score") {
                Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
                _ => return Err("a score answer gives its \"score\" as a number".into()),
            };
            let top = (q.levels.len() - 1) as f64;
            if !(0.0..=top).contains(&score) {
                return Err(format!("the score {score} is outside 0..{top}"));
            }
            let expected: f64 = probabilities
                .iter()
                .map(|(l, p)| l.parse::<f64>().unwrap_or(0.0) * p)
                .sum();
            if (score - expected).abs() > tolerance * top + ANSWER_TOLERANCE {
                return Err(format!(
                    "the score {score} is not its levels' expectation {expected}"
                ));
            }
        }
    }
    if let Some(c) = answer.get("confidence").filter(|c| !c.is_null()) {
        probability(c, "confidence")?;
    }
    Ok(())
}

fn systemone_answer(q: &Question, raw: &Map<String, Value>) -> Result<(), String> {
    let answers = raw
        .get("answers")
        .and_then(Value::as_object)
        .ok_or("no \"answers\" object")?;
    if answers.len() != 1 || !answers.contains_key("answer") {
        return Err("System One must answer exactly the question named \"answer\"".into());
    }
    let answer = answers
        .get("answer")
        .and_then(Value::as_object)
        .ok_or("answers.answer is not an object")?;
    for key in answer.keys() {
        if !matches!(
            key.as_str(),
            "type" | "probabilities" | "choice" | "noul" | "score" | "legend" | "confidence"
        ) {
            return Err(format!("answers.answer has an unknown field \"{key}\""));
        }
    }
    let kind = Kind::parse(answer.get("type"), "type")?;
    if kind != q.kind {
        return Err(format!(
            "a {} answer to a {} question",
            kind.name(),
            q.kind.name()
        ));
    }
    let probabilities: Vec<(String, f64)> = match answer.get("probabilities") {
        Some(Value::Object(p)) => p
            .iter()
            .map(|(k, v)| probability(v, &format!("probability of {k}")).map(|p| (k.clone(), p)))
            .collect::<Result<_, _>>()?,
        None | Some(Value::Null) if kind == Kind::Noul => {
            let yes = probability(
                answer.get("noul").ok_or("a noul answer gives \"noul\"")?,
                "noul",
            )?;
            vec![("no".into(), 1.0 - yes), ("yes".into(), yes)]
        }
        _ => return Err("no \"probabilities\" object".into()),
    };
    check_answer(q, &probabilities, answer)
}

fn autotrust_answer(q: &Question, raw: &Map<String, Value>) -> Result<(), String> {
    let kind = Kind::parse(raw.get("kind"), "kind")?;
    let effective = match raw.get("effective_kind") {
        None | Some(Value::Null) => kind,
        other => Kind::parse(other, "effective_kind")?,
    };
    if kind != q.kind || effective != q.kind {
        return Err("AutoTrust answered a different kind of decision".into());
    }
    let options: Vec<&str> = raw
        .get("options")
        .and_then(Value::as_array)
        .ok_or("no \"options\" list")?
        .iter()
        .map(|o| o.as_str().ok_or("options must be strings"))
        .collect::<Result<_, _>>()?;
    let probabilities: Vec<f64> = raw
        .get("probabilities")
        .and_then(Value::as_array)
        .ok_or("no \"probabilities\" list")?
        .iter()
        .enumerate()
        .map(|(i, p)| probability(p, &format!("probability {i}")))
        .collect::<Result<_, _>>()?;
    if !(2..=255).contains(&probabilities.len()) {
        return Err("an answer has 2-255 probabilities".into());
    }
    if options != q.wire_options || probabilities.len() != q.labels.len() {
        return Err("AutoTrust's options do not match the request".into());
    }
    let index = match raw.get("choice_index") {
        Some(Value::Number(n)) => n.as_u64().ok_or("choice_index is not an index")? as usize,
        _ => return Err("no \"choice_index\" integer".into()),
    };
    if index >= options.len() {
        return Err("AutoTrust returned an invalid choice index".into());
    }
    if raw.get("choice").and_then(Value::as_str) != Some(options[index]) {
        return Err("AutoTrust's choice and choice_index disagree".into());
    }
    let max = probabilities.iter().cloned().fold(f64::MIN, f64::max);
    if probabilities[index] < max - ANSWER_TOLERANCE {
        return Err("choice_index must name a most probable option".into());
    }
    // The canonical answer, as for System One.
    let labelled: Vec<(String, f64)> = q
        .labels
        .iter()
        .cloned()
        .zip(probabilities.iter().cloned())
        .collect();
    let mut answer = Map::new();
    match q.kind {
        Kind::Choice => {
            answer.insert("choice".into(), json!(q.labels[index]));
        }
        Kind::Noul => {
            answer.insert("noul".into(), json!(probabilities[1]));
        }
        Kind::Score => {
            let score: f64 = probabilities
                .iter()
                .enumerate()
                .map(|(i, p)| i as f64 * p)
                .sum();
            answer.insert("score".into(), json!(score));
            let legend: Map<String, Value> = q
                .labels
                .iter()
                .zip(&q.levels)
                .map(|(l, d)| (l.clone(), json!(d)))
                .collect();
            answer.insert("legend".into(), Value::Object(legend));
        }
    }
    check_answer(q, &labelled, &answer)
}

/// The question an answer answers, as far as the answer itself tells: its kind, and its
/// options or levels.
fn answered_question(protocol: Protocol, raw: &Map<String, Value>) -> Result<Question, String> {
    match protocol {
        Protocol::SystemOne => {
            let answer = raw
                .get("answers")
                .and_then(Value::as_object)
                .and_then(|a| a.get("answer"))
                .and_then(Value::as_object)
                .ok_or("no \"answers\": {\"answer\": {...}} object")?;
            let kind = Kind::parse(answer.get("type"), "type")?;
            let labels: Vec<String> = match (kind, answer.get("probabilities")) {
                (Kind::Noul, _) => vec!["no".into(), "yes".into()],
                (_, Some(Value::Object(p))) => p.keys().cloned().collect(),
                _ => return Err("no \"probabilities\" object".into()),
            };
            let levels = if kind == Kind::Score {
                let n = labels.len();
                let consecutive = (0..n).all(|i| labels.contains(&i.to_string()));
                if !consecutive {
                    return Err("score probability keys must be the levels 0, 1, ...".into());
                }
                let legend = answer.get("legend").and_then(Value::as_object);
                (0..n)
                    .map(|i| {
                        legend
                            .and_then(|l| l.get(&i.to_string()))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| "the score's legend must name every level".to_string())
                    })
                    .collect::<Result<_, _>>()?
            } else {
                Vec::new()
            };
            Ok(Question {
                kind,
                labels,
                levels,
                wire_options: Vec::new(),
            })
        }
        Protocol::AutoTrust => {
            let kind = Kind::parse(raw.get("kind"), "kind")?;
            let fixed = |options: Vec<String>, levels: Vec<String>| Question {
                kind,
                labels: match kind {
                    Kind::Noul => vec!["no".into(), "yes".into()],
                    _ => (0..options.len()).map(|i| i.to_string()).collect(),
                },
                levels,
                wire_options: options,
            };
            Ok(match kind {
                Kind::Choice => {
                    let options = raw
                        .get("options")
                        .and_then(Value::as_array)
                        .map(|o| {
                            o.iter()
                                .map(|v| v.as_str().unwrap_or_default().to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    fixed(options, Vec::new())
                }
                Kind::Noul => fixed(vec!["false".into(), "true".into()], Vec::new()),
                Kind::Score => {
                    let six: Vec<String> = (0..6).map(|i| i.to_string()).collect();
                    fixed(six.clone(), six)
                }
            })
        }
    }
}

/// Checks a decision service's answer: one valid decision distribution, answering `asked`
/// (or, without it, the question the answer describes).
pub fn check_response(
    protocol: Protocol,
    asked: Option<&Question>,
    raw: &Value,
) -> Result<(), String> {
    let raw = raw.as_object().ok_or("the answer is not a JSON object")?;
    match raw.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => {}
        _ => return Err("the answer does not name its resolved \"model\"".into()),
    }
    let derived;
    let q = match asked {
        Some(q) => q,
        None => {
            derived = answered_question(protocol, raw)?;
            &derived
        }
    };
    match protocol {
        Protocol::SystemOne => systemone_answer(q, raw),
        Protocol::AutoTrust => autotrust_answer(q, raw),
    }
}

/// `usage`'s token counts: (input, output), each absent when not reported.
fn usage(raw: &Value) -> Result<(Option<u64>, Option<u64>), String> {
    let usage = match raw.get("usage") {
        None | Some(Value::Null) => return Ok((None, None)),
        Some(Value::Object(u)) => u,
        Some(_) => return Err("usage must be a JSON object".into()),
    };
    let count = |keys: [&str; 2]| -> Result<Option<u64>, String> {
        match keys.iter().find_map(|k| usage.get(*k)) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(_) => Err("token counts must be non-negative integers".into()),
        }
    };
    Ok((
        count(["input_tokens", "prompt_tokens"])?,
        count(["output_tokens", "completion_tokens"])?,
    ))
}

/// The body a decision request sends, and its question.
fn decision_body(
    protocol: Protocol,
    item: &PromptItem,
    model: &str,
) -> Result<(Map<String, Value>, Question), PluginError> {
    let PromptItem::Body(text) = item else {
        return Err(PluginError::config(
            "decision services take complete JSON bodies: use --dataset open_decisions, or line_by_line with one JSON object per line",
        ));
    };
    let mut body: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return Err(PluginError::invalid(
                "a decision body must be a JSON object",
            ))
        }
        Err(e) => {
            return Err(PluginError::invalid(format!(
                "the decision body is not JSON: {e}"
            )))
        }
    };
    let controls: Vec<&str> = GENERATION_CONTROLS
        .iter()
        .copied()
        .filter(|k| body.contains_key(*k))
        .collect();
    if !controls.is_empty() {
        return Err(PluginError::config(format!(
            "decisions do not accept generation controls: {controls:?}; remove them from the dataset's bodies"
        )));
    }
    if protocol == Protocol::SystemOne && !body.contains_key("model") {
        body.insert("model".into(), json!(model));
    }
    let question = request_question(protocol, &body)
        .map_err(|e| PluginError::invalid(format!("not a decision request: {e}")))?;
    Ok((body, question))
}

macro_rules! decision_adapter {
    ($name:ident, $protocol:expr, $id:literal, $endpoint:literal, $what:literal) => {
        #[doc = concat!("`", $id, "`: ", $what, ".")]
        pub struct $name {
            model: String,
        }

        impl ApiAdapterPlugin for $name {
            const ID: &'static str = $id;
            const DESCRIPTION: &'static str = $what;
            const ENDPOINTS: &'static [&'static str] = &[$endpoint];
            const PROMPT_FORM: PromptForm = PromptForm::Text;
            const RESULTS: ResultKind = ResultKind::Decision;
            const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);
            type Decoder = DecisionDecoder;

            fn new(config: &ApiConfig) -> Result<Self, PluginError> {
                Ok($name {
                    model: config.model.clone(),
                })
            }

            fn build_request(
                &self,
                item: &PromptItem,
                _ctx: &RequestContext,
            ) -> Result<HttpRequest, PluginError> {
                let (body, _) = decision_body($protocol, item, &self.model)?;
                Ok(HttpRequest::json_post(
                    Value::Object(body).to_string().into_bytes(),
                    Framing::None,
                ))
            }

            fn new_decoder(&self) -> DecisionDecoder {
                DecisionDecoder {
                    protocol: $protocol,
                    asked: None,
                }
            }

            fn new_decoder_for(&self, request_body: &[u8]) -> DecisionDecoder {
                let asked = match serde_json::from_slice(request_body) {
                    Ok(Value::Object(body)) => request_question($protocol, &body).ok(),
                    _ => None,
                };
                DecisionDecoder {
                    protocol: $protocol,
                    asked,
                }
            }
        }
    };
}

decision_adapter!(
    SystemOneAdapter,
    Protocol::SystemOne,
    "systemone",
    "systemone",
    "System One decision service (/v1/systemone): complete JSON bodies, answers checked as decision distributions"
);
decision_adapter!(
    AutoTrustAdapter,
    Protocol::AutoTrust,
    "autotrust",
    "decide",
    "AutoTrust's native /decide: complete JSON bodies, answers checked as decision distributions"
);

/// Decodes one decision answer.
pub struct DecisionDecoder {
    protocol: Protocol,
    /// The question of the request it answers, when the host handed over the body.
    asked: Option<Question>,
}

impl ResponseDecoderPlugin for DecisionDecoder {
    fn decode(&mut self, event: &[u8], out: &mut Vec<ResponseEvent>) -> Result<(), PluginError> {
        let raw: Value = serde_json::from_slice(event)
            .map_err(|e| PluginError::invalid(format!("not a JSON answer: {e}")))?;
        if let Some(message) = crate::embeddings::error_message(&raw) {
            out.push(ResponseEvent::Error(message.into()));
            return Ok(());
        }
        let checked =
            check_response(self.protocol, self.asked.as_ref(), &raw).and_then(|()| usage(&raw));
        let (input, output) = match checked {
            Ok(counts) => counts,
            Err(why) => {
                out.push(ResponseEvent::Error(
                    format!("invalid decision response: {why}").into(),
                ));
                return Ok(());
            }
        };
        out.push(ResponseEvent::Output {
            text: "".into(),
            tokens: Some(0).into(),
            kind: OutputKind::Content,
        });
        out.push(ResponseEvent::Usage(Usage {
            prompt_tokens: input.into(),
            completion_tokens: Some(output.unwrap_or(0)).into(),
            cached_tokens: None.into(),
            ..Usage::default()
        }));
        out.push(ResponseEvent::Done);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn requests_are_checked_and_get_the_model() {
        let item = PromptItem::Body(
            json!({"state": {"t": 1}, "questions": {"answer": {"type": "choice", "instructions": "Pick", "criteria": {"a": "x", "b": "y"}}}})
                .to_string()
                .into(),
        );
        let (sent, q) = decision_body(Protocol::SystemOne, &item, "m").expect("valid");
        assert_eq!(sent["model"], "m");
        assert_eq!(q.labels, ["a", "b"]);
        let controls = PromptItem::Body(
            json!({"state": 1, "max_tokens": 3, "stream": true})
                .to_string()
                .into(),
        );
        let e = decision_body(Protocol::SystemOne, &controls, "m").expect_err("controls");
        assert!(
            e.message.contains("[\"max_tokens\", \"stream\"]"),
            "{}",
            e.message
        );
        for bad in [
            json!({"state": 1, "questions": {"a": {}, "b": {}}}),
            json!({"state": 1, "questions": {"answer": {"type": "choice", "instructions": "x", "criteria": {"a": "only"}}}}),
            json!({"state": 1, "questions": {"answer": {"type": "score", "instructions": "x", "criteria": ["one"]}}}),
            json!({"state": 1, "questions": {"answer": {"type": "noul", "instructions": " "}}}),
            json!({"questions": {"answer": {"type": "noul", "instructions": "x"}}}),
        ] {
            assert!(
                request_question(Protocol::SystemOne, &body(bad.clone())).is_err(),
                "{bad}"
            );
        }
        let at = json!({"kind": "choice", "state": "s", "question": "q", "options": ["x", "y"], "thinking": "off"});
        assert_eq!(
            request_question(Protocol::AutoTrust, &body(at))
                .expect("valid")
                .labels,
            ["0", "1"]
        );
        let thinking = json!({"kind": "noul", "state": "s", "question": "q", "thinking": "on"});
        assert!(request_question(Protocol::AutoTrust, &body(thinking)).is_err());
        assert!(decision_body(Protocol::SystemOne, &PromptItem::Text("hi".into()), "m").is_err());
    }

    #[test]
    fn answers_must_be_valid_distributions() {
        let ok = |v: Value| check_response(Protocol::SystemOne, None, &v);
        let one = |answer: Value| json!({"model": "m", "answers": {"answer": answer}});
        ok(one(
            json!({"type": "choice", "probabilities": {"a": 0.7, "b": 0.3}, "choice": "a"}),
        ))
        .expect("choice");
        ok(one(json!({"type": "noul", "noul": 0.25}))).expect("noul from its yes");
        ok(one(json!({"type": "score", "probabilities": {"0": 0.5, "1": 0.5}, "score": 0.5, "legend": {"0": "bad", "1": "good"}}))).expect("score");
        // Two-decimal rounding: 0.33 x 3 sums to 0.99, inside what rounding allows.
        ok(one(json!({"type": "choice", "probabilities": {"a": 0.34, "b": 0.33, "c": 0.33}, "choice": "a"}))).expect("rounded");
        for (why, bad) in [
            (
                "not the most probable",
                one(
                    json!({"type": "choice", "probabilities": {"a": 0.3, "b": 0.7}, "choice": "a"}),
                ),
            ),
            (
                "does not sum to 1",
                one(
                    json!({"type": "choice", "probabilities": {"a": 0.5, "b": 0.3}, "choice": "a"}),
                ),
            ),
            (
                "noul disagrees",
                one(json!({"type": "noul", "probabilities": {"no": 0.5, "yes": 0.5}, "noul": 0.9})),
            ),
            (
                "score off its expectation",
                one(
                    json!({"type": "score", "probabilities": {"0": 0.5, "1": 0.5}, "score": 0.9, "legend": {"0": "a", "1": "b"}}),
                ),
            ),
            (
                "legend missing a level",
                one(
                    json!({"type": "score", "probabilities": {"0": 0.5, "1": 0.5}, "score": 0.5, "legend": {"0": "a"}}),
                ),
            ),
            (
                "an unknown field",
                one(json!({"type": "noul", "noul": 0.5, "why": "x"})),
            ),
            (
                "a boolean probability",
                one(json!({"type": "choice", "probabilities": {"a": true, "b": 0}, "choice": "a"})),
            ),
            (
                "no model",
                json!({"answers": {"answer": {"type": "noul", "noul": 0.5}}}),
            ),
        ] {
            assert!(ok(bad.clone()).is_err(), "{why}: {bad}");
        }
        let at = |v: Value| check_response(Protocol::AutoTrust, None, &v);
        at(json!({"model": "m", "kind": "choice", "options": ["x", "y"], "probabilities": [0.2, 0.8], "choice_index": 1, "choice": "y"})).expect("autotrust choice");
        at(json!({"model": "m", "kind": "noul", "options": ["false", "true"], "probabilities": [0.6, 0.4], "choice_index": 0, "choice": "false"})).expect("autotrust noul");
        assert!(at(json!({"model": "m", "kind": "choice", "options": ["x", "y"], "probabilities": [0.2, 0.8], "choice_index": 0, "choice": "x"})).is_err(), "not the most probable");
        assert!(
            at(json!({"model": "m", "kind": "choice", "probabilities": [0.2, 0.8], "choice_index": 1, "choice": "y"})).is_err(),
            "no options: an error, not a panic"
        );
        assert!(at(json!({"model": "m", "kind": "noul", "options": ["no", "yes"], "probabilities": [0.6, 0.4], "choice_index": 0, "choice": "no"})).is_err(), "noul options are false, true");
    }

    #[test]
    fn an_answer_must_be_to_the_question_asked() {
        let adapter = SystemOneAdapter { model: "m".into() };
        let request = json!({"model": "m", "state": 1, "questions": {"answer": {"type": "score", "instructions": "Rate", "criteria": ["bad", "ok", "good"]}}});
        let mut d = adapter.new_decoder_for(request.to_string().as_bytes());
        assert!(d.asked.is_some());
        let answer = |legend: Value, p: Value, score: f64| {
            json!({"model": "m", "answers": {"answer": {"type": "score", "probabilities": p, "score": score, "legend": legend}}}).to_string()
        };
        let mut out = Vec::new();
        let right = answer(
            json!({"0": "bad", "1": "ok", "2": "good"}),
            json!({"0": 0.0, "1": 1.0, "2": 0.0}),
            1.0,
        );
        d.decode(right.as_bytes(), &mut out).expect("decodes");
        assert!(matches!(out.last(), Some(ResponseEvent::Done)), "{out:?}");
        for (why, wrong) in [
            (
                "two levels for three",
                answer(
                    json!({"0": "bad", "1": "good"}),
                    json!({"0": 0.0, "1": 1.0}),
                    1.0,
                ),
            ),
            (
                "another legend",
                answer(
                    json!({"0": "bad", "1": "fine", "2": "good"}),
                    json!({"0": 0.0, "1": 1.0, "2": 0.0}),
                    1.0,
                ),
            ),
        ] {
            let mut out = Vec::new();
            let mut d = adapter.new_decoder_for(request.to_string().as_bytes());
            d.decode(wrong.as_bytes(), &mut out).expect("decodes");
            assert!(
                matches!(out.first(), Some(ResponseEvent::Error(_))),
                "{why}: {out:?}"
            );
        }
        // A choice answered with another kind.
        let choice = json!({"model": "m", "state": 1, "questions": {"answer": {"type": "choice", "instructions": "Pick", "criteria": {"a": "x", "b": "y"}}}});
        let mut d = adapter.new_decoder_for(choice.to_string().as_bytes());
        let mut out = Vec::new();
        d.decode(
            br#"{"model": "m", "answers": {"answer": {"type": "noul", "noul": 0.5}}}"#,
            &mut out,
        )
        .expect("decodes");
        assert!(
            matches!(out.first(), Some(ResponseEvent::Error(e)) if e.contains("noul answer to a choice")),
            "{out:?}"
        );
    }

    #[test]
    fn the_decoder_reports_usage_or_an_invalid_answer() {
        let mut d = DecisionDecoder {
            protocol: Protocol::SystemOne,
            asked: None,
        };
        let mut out = Vec::new();
        d.decode(br#"{"model": "m", "answers": {"answer": {"type": "noul", "noul": 0.5}}, "usage": {"input_tokens": 12, "output_tokens": 1}}"#, &mut out).expect("decodes");
        assert!(matches!(out.last(), Some(ResponseEvent::Done)));
        assert!(out.iter().any(
            |e| matches!(e, ResponseEvent::Usage(u) if u.prompt_tokens.into_option() == Some(12))
        ));
        let mut out = Vec::new();
        d.decode(br#"{"model": "m", "answers": {"answer": {"type": "noul", "noul": 0.5}}, "usage": {"input_tokens": -1}}"#, &mut out).expect("decodes");
        assert!(
            matches!(out.first(), Some(ResponseEvent::Error(e)) if e.contains("non-negative")),
            "{out:?}"
        );
    }
}
