//! `--multi-turn` against the simulator: conversations turn by turn with the live replies,
//! per-turn rows in the database, evalscope's multi-turn keys and `trace_summary.json`, the
//! conversation datasets, per-turn budgets, think time and Poisson conversation arrivals.
//! The ShareGPT datasets from the hub are in `hub.rs` (they need its local hub).

use std::collections::BTreeMap;

use perf_tests::tokenizer_dir;
use serde_json::Value;

use crate::engine::{f, perf_run_from, Run};

/// The simulator, without a pause between runs, the replies kept as text in
/// `response_messages`.
pub(crate) const SIMULATOR: &[&str] = &[
    "--api",
    "mock",
    "--port",
    "0",
    "--sleep-interval",
    "0",
    "--response-messages",
    "text",
];

/// perf against the simulator with a dataset (no `--prompt`), in a fresh directory.
pub(crate) fn perf_dataset_run(args: &[&str]) -> Run {
    perf_run_from(SIMULATOR, args, |_| {})
}

/// The request bodies a run sent, in request order.
pub(crate) fn request_bodies(r: &Run, label: &str) -> Vec<Value> {
    let db = r.db(label);
    let mut stmt = db
        .prepare("SELECT request FROM result ORDER BY request_index")
        .expect("prepare");
    let bodies = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .expect("query")
        .map(|b| serde_json::from_str(&b.expect("row")).expect("request JSON"))
        .collect();
    bodies
}

/// A chat body's messages as (role, text content) pairs.
pub(crate) fn chat_messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().expect("role").to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// One turn as the database holds it.
#[derive(Debug, Clone)]
pub(crate) struct TurnRow {
    pub(crate) turn: i64,
    pub(crate) messages: Vec<(String, String)>,
    pub(crate) reply: String,
    pub(crate) success: bool,
    pub(crate) prompt_tokens: i64,
    pub(crate) completion_tokens: i64,
    pub(crate) cached_tokens: i64,
    pub(crate) ttft: f64,
    pub(crate) sent: f64,
    pub(crate) completed: f64,
}

/// The run's rows grouped by conversation, turns in order.
pub(crate) fn conversations(r: &Run, label: &str) -> BTreeMap<i64, Vec<TurnRow>> {
    let db = r.db(label);
    let mut stmt = db
        .prepare(
            "SELECT conversation_id, turn_index, request, response_messages, success, \
             COALESCE(prompt_tokens, 0), COALESCE(completion_tokens, 0), COALESCE(cached_tokens, 0), \
             COALESCE(first_chunk_latency, 0), sent_epoch, completed_epoch \
             FROM result ORDER BY conversation_id, turn_index",
        )
        .expect("prepare");
    let mut out: BTreeMap<i64, Vec<TurnRow>> = BTreeMap::new();
    let rows = stmt
        .query_map([], |row| {
            let request: String = row.get(2)?;
            let response: String = row.get(3)?;
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                request,
                response,
                row.get::<_, bool>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, i64>(7)?,
                row.get::<_, f64>(8)?,
                row.get::<_, f64>(9)?,
                row.get::<_, f64>(10)?,
            ))
        })
        .expect("query");
    for row in rows {
        let (
            conv,
            turn,
            request,
            response,
            success,
            prompt,
            completion,
            cached,
            ttft,
            sent,
            completed,
        ) = row.expect("row");
        let body: Value = serde_json::from_str(&request).expect("request JSON");
        let messages = chat_messages(&body);
        let reply: Value = serde_json::from_str(&response).unwrap_or(Value::Null);
        out.entry(conv).or_default().push(TurnRow {
            turn,
            messages,
            reply: reply["content"].as_str().unwrap_or_default().to_string(),
            success,
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: cached,
            ttft,
            sent,
            completed,
        });
    }
    out
}

/// Each turn after the first carries the turn before it with the live reply appended.
pub(crate) fn assert_live_history(convs: &BTreeMap<i64, Vec<TurnRow>>) {
    for (id, turns) in convs {
        for (i, t) in turns.iter().enumerate() {
            assert_eq!(t.turn, i as i64 + 1, "conversation {id}: turns 1, 2, ...");
        }
        for pair in turns.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            let n = before.messages.len();
            assert_eq!(
                &after.messages[..n],
                &before.messages[..],
                "conversation {id} turn {}: the history is resent as it was",
                after.turn
            );
            assert_eq!(
                after.messages[n],
                ("assistant".to_string(), before.reply.clone()),
                "conversation {id} turn {}: the live reply of the turn before follows it",
                after.turn
            );
            assert!(!before.reply.is_empty());
        }
    }
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn random_multi_turn_sends_each_turn_with_the_live_replies_and_reports_evalscopes_keys() {
    let tok = tokenizer_dir("qwen3");
    let r = perf_dataset_run(&[
        "--dataset",
        "random_multi_turn",
        "--multi-turn",
        "--min-turns",
        "2",
        "--max-turns",
        "4",
        "--tokenizer-path",
        tok.to_str().expect("path"),
        "--dataset-args",
        r#"{"first_turn_length": 300, "subsequent_turn_length": [8, 12]}"#,
        "-n",
        "6",
        "--parallel",
        "2",
        "--max-tokens",
        "6",
        "--mock-prefix-cache-tokens",
        "100000",
        "--mock-cache-block-tokens",
        "4",
        "--mock-prefill-ms-per-token",
        "1",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "parallel_2_number_6";
    let convs = conversations(&r, label);
    assert_eq!(convs.len(), 6, "--number counts conversations");
    for (id, turns) in &convs {
        assert!(
            (2..=4).contains(&turns.len()),
            "conversation {id}: {} turns",
            turns.len()
        );
        for t in turns {
            let users = t.messages.iter().filter(|(role, _)| role == "user").count();
            assert_eq!(users as i64, t.turn, "turn k carries k user messages");
            assert!(t.success);
        }
    }
    assert_live_history(&convs);
    let all: Vec<&TurnRow> = convs.values().flatten().collect();
    let s = r.json(label, "benchmark_summary.json");
    assert_eq!(
        f(&s, "Total Requests"),
        all.len() as f64,
        "one row per turn"
    );
    // evalscope's keys, in its places: after the LLM keys, Turns before the cache rate before
    // the TTFT split.
    let k = keys(&s);
    let at = |key: &str| {
        k.iter()
            .position(|x| *x == key)
            .unwrap_or_else(|| panic!("{key}: {s}"))
    };
    assert!(at("Avg Output Tokens") < at("Avg Turns/Request"));
    assert!(at("Avg Turns/Request") < at("KV Cache Hit Rate (%)"));
    assert_eq!(
        at("Avg First-Turn TTFT (ms)"),
        at("KV Cache Hit Rate (%)") + 1
    );
    assert_eq!(
        at("Avg Subsequent-Turn TTFT (ms)"),
        at("KV Cache Hit Rate (%)") + 2
    );
    let turn_sum: i64 = all.iter().map(|t| t.turn).sum();
    let expected = (turn_sum as f64 / all.len() as f64 * 1e4).round() / 1e4;
    assert_eq!(f(&s, "Avg Turns/Request"), expected);
    let cached: i64 = all.iter().map(|t| t.cached_tokens).sum();
    let prompt: i64 = all.iter().map(|t| t.prompt_tokens).sum();
    let rate = (100.0 * cached as f64 / prompt as f64 * 1e4).round() / 1e4;
    assert_eq!(f(&s, "KV Cache Hit Rate (%)"), rate);
    assert!(cached > 0, "later turns find their history cached");
    for turns in convs.values() {
        assert_eq!(turns[0].cached_tokens, 0, "a first turn shares nothing");
        assert!(turns[1..].iter().all(|t| t.cached_tokens > 0));
    }
    let first: Vec<f64> = all.iter().filter(|t| t.turn == 1).map(|t| t.ttft).collect();
    let mean_ms =
        |v: &[f64]| (v.iter().sum::<f64>() / v.len() as f64 * 1000.0 * 100.0).round() / 100.0;
    assert_eq!(f(&s, "Avg First-Turn TTFT (ms)"), mean_ms(&first));
    // A 300-token first turn prefills at 1 ms per uncached pseudo-token; later turns add a
    // dozen tokens and a short reply to a cached history.
    assert!(
        f(&s, "Avg Subsequent-Turn TTFT (ms)") + 40.0 < f(&s, "Avg First-Turn TTFT (ms)"),
        "{s}"
    );
    let traces = r.json(label, "trace_summary.json");
    assert_eq!(traces["n_traces"], 6);
    let metrics: Vec<&str> = traces["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row["metric"].as_str().expect("metric"))
        .collect();
    assert_eq!(
        metrics,
        [
            "Latency (s)",
            "First-Turn TTFT (s)",
            "TTFAT (s)",
            "Decode TPS",
            "Cache Hit Rate (%)",
            "Eligible Cache Hit Rate (%)"
        ]
    );
    // The longest conversation's latency is the largest first send to last end.
    let longest = convs
        .values()
        .map(|t| t.last().expect("turn").completed - t[0].sent)
        .fold(0.0, f64::max);
    let max_latency = traces["rows"][0]["max"].as_f64().expect("max");
    assert!(
        (max_latency - longest).abs() < 0.01,
        "{max_latency} vs {longest}"
    );
    assert!(r
        .stdout
        .contains("Per-conversation metrics (6 conversations)"));
}

#[test]
fn custom_multi_turn_splits_at_the_replies_caps_turns_and_honours_turn_budgets() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("conversations.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"[{"role": "system", "content": "You are terse.", "rid": "conv-a"}, {"role": "user", "content": "First question", "max_tokens": 3}, {"role": "assistant", "content": "REFERENCE ONE"}, {"role": "user", "content": "Second question", "max_tokens": 7}, {"role": "assistant", "content": "REFERENCE TWO"}, {"role": "user", "content": "Third question"}]"#,
            "\n\n",
            r#"[{"role": "user", "content": "Only question", "max_tokens": 5}]"#,
            "\n"
        ),
    )
    .expect("write");
    let r = perf_dataset_run(&[
        "--dataset",
        "custom_multi_turn",
        "--dataset-path",
        path.to_str().expect("path"),
        "--multi-turn",
        "--max-turns",
        "2",
        "-n",
        "2",
        "--max-tokens",
        "20",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let convs = conversations(&r, "parallel_1_number_2");
    let turns: Vec<&Vec<TurnRow>> = convs.values().collect();
    assert_eq!(turns.len(), 2);
    let long = turns[0];
    assert_eq!(long.len(), 2, "--max-turns 2 leaves out the third question");
    assert_eq!(
        long[0].messages,
        [
            ("system".to_string(), "You are terse.".to_string()),
            ("user".to_string(), "First question".to_string())
        ]
    );
    assert_eq!(long[1].messages.len(), 4);
    assert_eq!(long[1].messages[3].1, "Second question");
    assert_live_history(&convs);
    let sent: String = long
        .iter()
        .flat_map(|t| t.messages.iter().map(|m| m.1.clone()))
        .collect();
    assert!(
        !sent.contains("REFERENCE"),
        "the dataset's replies are never sent"
    );
    // Each turn's own budget, over --max-tokens.
    assert_eq!(long[0].completion_tokens, 3);
    assert_eq!(long[1].completion_tokens, 7);
    assert_eq!(turns[1][0].completion_tokens, 5);
    // The line's routing key goes out with every turn, numbered; the other line has none.
    let rids: Vec<Option<String>> = {
        let db = r.db("parallel_1_number_2");
        let mut stmt = db
            .prepare("SELECT request FROM result ORDER BY conversation_id, turn_index")
            .expect("prepare");
        let rids = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .expect("query")
            .map(|b| {
                let v: Value = serde_json::from_str(&b.expect("row")).expect("json");
                v["rid"].as_str().map(str::to_string)
            })
            .collect();
        rids
    };
    assert_eq!(
        rids,
        [
            Some("conv-a_t1".to_string()),
            Some("conv-a_t2".to_string()),
            None
        ]
    );
}

#[test]
fn conversations_arrive_as_a_poisson_process_and_think_between_turns() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("c.jsonl");
    let line = r#"[{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "y"}, {"role": "user", "content": "c"}]"#;
    std::fs::write(&path, format!("{line}\n")).expect("write");
    let r = perf_dataset_run(&[
        "--dataset",
        "custom_multi_turn",
        "--dataset-path",
        path.to_str().expect("path"),
        "--multi-turn",
        "--rate",
        "50",
        "--open-loop",
        "-n",
        "8",
        "--think-time",
        "0.15",
        "--max-tokens",
        "4",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let convs = conversations(&r, "rate_50.0_number_8");
    assert_eq!(convs.len(), 8, "the one conversation of the file, cycled");
    let mut overlapping = false;
    for turns in convs.values() {
        assert_eq!(turns.len(), 3);
        for pair in turns.windows(2) {
            // The next turn leaves a think time after the reply, never sooner.
            assert!(
                pair[1].sent - pair[0].completed >= 0.149,
                "{:?}",
                (pair[0].completed, pair[1].sent)
            );
        }
    }
    // Open loop: conversations start on the schedule, not after each other (8 conversations
    // of three turns, 0.3 s of thinking each, start within well under their total length).
    let starts: Vec<f64> = convs.values().map(|t| t[0].sent).collect();
    let ends: Vec<f64> = convs.values().map(|t| t[2].completed).collect();
    for (i, s) in starts.iter().enumerate() {
        if ends
            .iter()
            .enumerate()
            .any(|(j, e)| j != i && *e > *s && starts[j] < *s)
        {
            overlapping = true;
        }
    }
    assert!(overlapping, "conversations overlap: {starts:?} {ends:?}");
}

#[test]
fn multi_turn_mistakes_exit_2_and_say_what_to_do() {
    let tok = tokenizer_dir("qwen3");
    let tok = tok.to_str().expect("path");
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--dataset",
                "random_multi_turn",
                "--multi-turn",
                "--tokenizer-path",
                tok,
            ],
            "needs --max-turns",
        ),
        (
            &[
                "--dataset",
                "random_multi_turn",
                "--max-turns",
                "3",
                "--tokenizer-path",
                tok,
            ],
            "add --multi-turn",
        ),
        (
            &[
                "--dataset",
                "random_multi_turn",
                "--multi-turn",
                "--min-turns",
                "4",
                "--max-turns",
                "2",
                "--tokenizer-path",
                tok,
            ],
            "--max-turns (2) must be at least --min-turns (4)",
        ),
        (
            &["--prompt", "hi", "--think-time", "1"],
            "needs --multi-turn",
        ),
        (
            &["--dataset", "custom_multi_turn", "--multi-turn"],
            "needs --dataset-path",
        ),
    ];
    for (args, says) in cases {
        let r = perf_dataset_run(args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
}

/// perf's agent shape for any conversation dataset: one system prompt of an exact token count
/// before every conversation, and output budgets by turn (the last repeating).
#[test]
fn a_system_prompt_of_n_tokens_and_budgets_by_turn_shape_every_conversation() {
    let tok_dir = tokenizer_dir("qwen3");
    let r = perf_dataset_run(&[
        "--dataset",
        "random_multi_turn",
        "--multi-turn",
        "--min-turns",
        "3",
        "--max-turns",
        "3",
        "--tokenizer-path",
        tok_dir.to_str().expect("path"),
        "--min-prompt-length",
        "10",
        "--max-prompt-length",
        "20",
        "--dataset-args",
        r#"{"system_prompt_tokens": 120, "turn_max_tokens": [9, 2]}"#,
        "-n",
        "3",
        "--max-tokens",
        "50",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let convs = conversations(&r, "parallel_1_number_3");
    let tok = perf_host::tokenizer::HostTokenizer::load(&tok_dir).expect("tokenizer");
    use perf_plugin_api::sdk::TokenizerPlugin;
    let mut systems = std::collections::HashSet::new();
    for turns in convs.values() {
        assert_eq!(turns.len(), 3);
        for t in turns {
            assert_eq!(t.messages[0].0, "system", "{:?}", t.messages);
        }
        let system = &turns[0].messages[0].1;
        assert_eq!(tok.encode(system, false).expect("encode").len(), 120);
        systems.insert(system.clone());
        let budgets: Vec<i64> = turns.iter().map(|t| t.completion_tokens).collect();
        assert_eq!(budgets, [9, 2, 2], "the last budget repeats");
    }
    assert_eq!(systems.len(), 1, "one system prompt for every conversation");
    assert_live_history(&convs);
}

/// `swe_smith` from evalscope's pre-built agentic_dataset.json: each turn's delta messages,
/// the first turn's rid as the routing key, --dataset-offset rotating the conversations.
#[test]
fn swe_smith_replays_evalscopes_prebuilt_agent_conversations() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("agentic_dataset.json");
    let file = serde_json::json!({"conversations": [
        [
            {"messages": [{"role": "system", "content": "You fix bugs."}, {"role": "user", "content": "Fix issue 1"}], "prompt_tokens": 10, "rid": "swe-1"},
            {"messages": [{"role": "user", "content": "tool output A"}], "prompt_tokens": 20}
        ],
        [
            {"messages": [{"role": "user", "content": "Fix issue 2"}], "prompt_tokens": 5}
        ]
    ]});
    std::fs::write(&path, file.to_string()).expect("write");
    let r = perf_dataset_run(&[
        "--dataset",
        "swe_smith",
        "--dataset-path",
        path.to_str().expect("path"),
        "--multi-turn",
        "--dataset-offset",
        "1",
        "-n",
        "2",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let convs = conversations(&r, "parallel_1_number_2");
    let turns: Vec<&Vec<TurnRow>> = convs.values().collect();
    // The offset puts the second conversation first.
    assert_eq!(turns[0].len(), 1);
    assert_eq!(turns[0][0].messages[0].1, "Fix issue 2");
    assert_eq!(turns[1].len(), 2);
    assert_eq!(
        turns[1][0].messages.len(),
        2,
        "system and user in the first turn"
    );
    assert_eq!(turns[1][1].messages[3].1, "tool output A");
    assert_live_history(&convs);
    let rids: Vec<Option<String>> = request_bodies(&r, "parallel_1_number_2")
        .iter()
        .map(|b| b["rid"].as_str().map(str::to_string))
        .collect();
    assert!(rids.contains(&Some("swe-1_t2".to_string())), "{rids:?}");
    let r = perf_dataset_run(&["--dataset", "swe_smith", "--multi-turn"]);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("pre-built agentic_dataset.json"),
        "{}",
        r.stderr
    );
}

#[test]
fn without_usage_every_turn_is_counted_with_the_tokenizer_not_estimated() {
    let tok = tokenizer_dir("qwen3");
    let r = perf_dataset_run(&[
        "--dataset",
        "random_multi_turn",
        "--multi-turn",
        "--min-turns",
        "3",
        "--max-turns",
        "3",
        "--tokenizer-path",
        tok.to_str().expect("path"),
        "--min-prompt-length",
        "20",
        "--max-prompt-length",
        "30",
        "-n",
        "2",
        "--max-tokens",
        "5",
        "--extra-args",
        r#"{"stream_options": {"include_usage": false}}"#,
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let label = "parallel_1_number_2";
    assert_eq!(r.count(label, "token_counts = 'estimated'"), 0);
    assert_eq!(r.count(label, "token_counts = 'client'"), 6);
    // Each turn's count is its messages as sent (history and live replies) through the chat
    // template.
    let counter = perf_host::tokenizer::HostTokenizer::load(&tok).expect("tokenizer");
    let db = r.db(label);
    let mut stmt = db
        .prepare("SELECT request, prompt_tokens, turn_index FROM result ORDER BY request_index")
        .expect("prepare");
    let rows: Vec<(String, i64, i64)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for (request, counted, turn) in rows {
        let body: Value = serde_json::from_str(&request).expect("JSON");
        let messages: Vec<perf_plugin_api::ChatMessage> = body["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                perf_plugin_api::ChatMessage::text(
                    m["role"].as_str().expect("role"),
                    m["content"].as_str().expect("text"),
                )
            })
            .collect();
        let expected = counter.chat_ids(&messages).expect("ids").len() as i64;
        assert_eq!(counted, expected, "turn {turn}");
    }
}
