//! Tokenizers and dataset sources with real tokenizers (Qwen3 and Llama 3, as their npm packages
//! ship them): chat templates rendered as Hugging Face renders them, `random` prompts of exact
//! token lengths, and both through the real binary against the simulator.

use std::path::Path;

use perf_host::plugin_host::PluginRegistry;
use perf_host::tokenizer::HostTokenizer;
use perf_plugin_api::sdk::{DatasetConfig, TokenizerPlugin};
use perf_plugin_api::{ChatMessage, ContentPart, ContentPart_NE, DatasetItem, PromptItem};
use perf_tests::{perf_in, text, tokenizer_dir};

use crate::conversations::{chat_messages, request_bodies};
use rusqlite::Connection;
use serde_json::Value;

fn load(name: &str) -> HostTokenizer {
    HostTokenizer::load(&tokenizer_dir(name)).expect("the tokenizer loads")
}

fn user(text: &str) -> ChatMessage {
    ChatMessage::text("user", text)
}

fn render(tok: &HostTokenizer, messages: &[ChatMessage]) -> String {
    tok.apply_chat_template(messages, true)
        .expect("renders")
        .expect("has a template")
}

/// Renderings and counts checked against Python `transformers` 5.x
/// (`apply_chat_template(..., add_generation_prompt=True)`, then encoding without special
/// tokens) on the same files.
#[test]
fn chat_templates_render_as_transformers_does() {
    let qwen = load("qwen3");
    let conversation = [
        ChatMessage::text("system", "Be brief."),
        user("Hi"),
        ChatMessage::text("assistant", "Hello"),
        user("Bye"),
    ];
    let cases: [(&HostTokenizer, Vec<ChatMessage>, &str, usize); 3] = [
        (
            &qwen,
            vec![user("Hello, wörld!")],
            "<|im_start|>user\nHello, wörld!<|im_end|>\n<|im_start|>assistant\n",
            14,
        ),
        (
            &qwen,
            conversation.to_vec(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
            30,
        ),
        (
            &qwen,
            vec![user("")],
            "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n",
            8,
        ),
    ];
    for (tok, messages, want, tokens) in cases {
        let rendered = render(tok, &messages);
        assert_eq!(rendered, want);
        assert_eq!(tok.encode(&rendered, false).expect("encodes").len(), tokens);
    }
    let llama = load("llama3");
    let rendered = render(&llama, &conversation);
    assert_eq!(
        rendered,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(llama.encode(&rendered, false).expect("encodes").len(), 32);
    assert_eq!(qwen.vocab_size(), 151_669);
    assert_eq!(llama.vocab_size(), 128_256);
    assert!(qwen.is_special(151_645), "<|im_end|> is special");
    assert!(!qwen.is_special(9707));
    assert_eq!(
        qwen.encode("Hello world", true).expect("encodes"),
        vec![9707, 1879]
    );
}

fn random_config(min: u64, max: u64, chat: bool) -> DatasetConfig {
    DatasetConfig {
        min_prompt_length: min,
        max_prompt_length: max,
        apply_chat_template: chat,
        seed: Some(42),
        ..DatasetConfig::default()
    }
}

fn items(tok: &HostTokenizer, config: &DatasetConfig, n: usize) -> Vec<DatasetItem> {
    let registry = PluginRegistry::builtins();
    let mut source = registry
        .dataset_source("random", config, Some(tok.handle()))
        .expect("the random source starts");
    (0..n)
        .map(|_| {
            source
                .next_item()
                .expect("an item")
                .expect("random never ends")
        })
        .collect()
}

fn user_text(item: &DatasetItem) -> String {
    match item.prompt().expect("a known prompt") {
        PromptItem::Messages(m) => match m[0].content.first().map(|p| p.as_enum()) {
            Some(Ok(ContentPart::Text(t))) => t.to_string(),
            other => panic!("not a text message: {other:?}"),
        },
        PromptItem::Text(t) => t.to_string(),
        other => panic!("not text: {other:?}"),
    }
}

/// The server's count: the template applied to the one user message, encoded without
/// special tokens.
fn templated_tokens(tok: &HostTokenizer, text: &str) -> usize {
    let rendered = render(tok, &[user(text)]);
    tok.encode(&rendered, false).expect("encodes").len()
}

#[test]
fn random_prompts_land_exactly_on_their_length_with_the_qwen3_chat_template() {
    let tok = load("qwen3");
    let (min, max) = (20, 400);
    let items = items(&tok, &random_config(min, max, true), 1000);
    let mut exact = 0;
    let mut lengths = std::collections::BTreeSet::new();
    for item in &items {
        let target = item.prompt_tokens.into_option().expect("target length") as usize;
        assert!((min as usize..=max as usize).contains(&target), "{target}");
        let n = templated_tokens(&tok, &user_text(item));
        exact += usize::from(n == target);
        lengths.insert(target);
    }
    assert_eq!(
        exact, 1000,
        "prompts whose templated length is their target"
    );
    assert!(
        lengths.len() > 300,
        "lengths spread over the range: {}",
        lengths.len()
    );
}

#[test]
fn random_prompts_with_shared_prefixes_are_exact_with_the_llama3_template() {
    let tok = load("llama3");
    let mut config = random_config(30, 120, true);
    config.prefix_length = 16;
    config.prefix_count = 3;
    let items = items(&tok, &config, 120);
    let texts: Vec<String> = items.iter().map(user_text).collect();
    for (i, (item, text)) in items.iter().zip(&texts).enumerate() {
        let target = item.prompt_tokens.into_option().expect("target") as usize;
        assert!(
            (30 + 16..=120 + 16).contains(&target),
            "prefix on top: {target}"
        );
        assert_eq!(templated_tokens(&tok, text), target, "item {i}");
    }
    // Requests i and i + 3 share a prefix; i and i + 1 do not.
    let common = |a: &str, b: &str| a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    assert!(common(&texts[0], &texts[3]) >= 16, "shared prefix text");
    assert!(common(&texts[0], &texts[1]) < common(&texts[0], &texts[3]));
}

#[test]
fn random_without_template_counts_text_and_token_ids_are_exact_by_construction() {
    let tok = load("qwen3");
    for item in items(&tok, &random_config(10, 300, false), 200) {
        let target = item.prompt_tokens.into_option().expect("target") as usize;
        let Ok(PromptItem::Text(text)) = item.prompt() else {
            panic!("a completions prompt is text: {:?}", item.prompt);
        };
        assert_eq!(tok.encode(text, true).expect("encodes").len(), target);
    }
    let mut config = random_config(10, 300, true);
    config.tokenize_prompt = true;
    for item in items(&tok, &config, 50) {
        let Ok(PromptItem::TokenIds(ids)) = item.prompt() else {
            panic!("token ids: {:?}", item.prompt);
        };
        assert_eq!(Some(ids.len() as u64), item.prompt_tokens.into_option());
        assert!((10..=300).contains(&ids.len()));
        assert!(ids.iter().all(|&id| !tok.is_special(id)));
    }
}

fn run_dir(root: &Path) -> std::path::PathBuf {
    std::fs::read_dir(root.join("outputs").join("t"))
        .expect("outputs")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a run directory")
}

#[test]
fn random_runs_end_to_end_against_the_simulator() {
    let tokenizer = tokenizer_dir("qwen3");
    let tokenizer = tokenizer.to_str().expect("utf-8 path");
    let dir = tempfile::tempdir().expect("tmp");
    let common = [
        "--api",
        "mock",
        "--port",
        "0",
        "--dataset",
        "random",
        "--tokenizer-path",
        tokenizer,
        "-n",
        "24",
        "--parallel",
        "4",
        "--max-tokens",
        "8",
        "--outputs-dir",
        "outputs",
        "--no-timestamp",
        "--name",
        "t",
        "--min-prompt-length",
        "40",
        "--max-prompt-length",
        "90",
    ];
    let out = perf_in(dir.path(), &common);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let db = Connection::open(run_dir(dir.path()).join("benchmark_data.db")).expect("db");
    let bodies: Vec<String> = db
        .prepare("SELECT request FROM result WHERE success = 1")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(bodies.len(), 24);
    let tok = load("qwen3");
    for body in &bodies {
        let body: Value = serde_json::from_str(body).expect("JSON body");
        let text = body["messages"][0]["content"]
            .as_str()
            .expect("a user message");
        let n = templated_tokens(&tok, text);
        assert!((40..=90).contains(&n), "{n}");
    }

    // Token ids go to the completions endpoint as a list of integers.
    let dir = tempfile::tempdir().expect("tmp");
    let mut args = common.to_vec();
    args.push("--tokenize-prompt");
    let out = perf_in(dir.path(), &args);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let db = Connection::open(run_dir(dir.path()).join("benchmark_data.db")).expect("db");
    let body: String = db
        .query_row("SELECT request FROM result LIMIT 1", [], |r| r.get(0))
        .expect("a row");
    let body: Value = serde_json::from_str(&body).expect("JSON body");
    let ids = body["prompt"].as_array().expect("prompt is a list of ids");
    assert!((40..=90).contains(&ids.len()) && ids.iter().all(Value::is_u64));
}

#[test]
fn tokenizer_and_random_mistakes_exit_2_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = |extra: &[&str]| {
        let mut args = vec!["--api", "mock", "--port", "0", "-n", "1"];
        args.extend_from_slice(extra);
        let out = perf_in(dir.path(), &args);
        (out.status.code(), text(&out).1)
    };
    let (code, err) = run(&["--dataset", "random"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("random dataset needs --tokenizer-path"),
        "{err}"
    );

    let (code, err) = run(&["--dataset", "custom"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("the custom dataset needs --dataset-path")
            && err.contains("write a DatasetSource plugin (sdk-examples/csv-dataset"),
        "{err}"
    );

    let (code, err) = run(&["--tokenizer-path", "/nonexistent/tok"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("/nonexistent/tok: no such file or directory"),
        "{err}"
    );

    let empty = tempfile::tempdir().expect("tmp");
    let (code, err) = run(&["--tokenizer-path", empty.path().to_str().expect("utf-8")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("has no tokenizer.json"), "{err}");

    let garbage = empty.path().join("tokenizer.json");
    std::fs::write(&garbage, b"\x00\x01 not json").expect("write");
    let (code, err) = run(&["--tokenizer-path", garbage.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not a tokenizer.json"), "{err}");

    let qwen = tokenizer_dir("qwen3");
    let (code, err) = run(&[
        "--dataset",
        "random",
        "--tokenizer-path",
        qwen.to_str().expect("utf-8"),
        "--max-prompt-length",
        "5",
        "--min-prompt-length",
        "1",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("chat template alone takes 8 tokens"), "{err}");

    let out = perf_in(
        dir.path(),
        &[
            "--url",
            "http://127.0.0.1:9/v1/chat/completions",
            "--model",
            "m",
            "--tokenize-prompt",
        ],
    );
    let (code, err) = (out.status.code(), text(&out).1);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--tokenize-prompt needs --tokenizer-path"),
        "{err}"
    );
}

#[test]
fn file_datasets_filter_by_tokens_with_a_tokenizer_and_by_characters_without() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("open_qa.jsonl");
    let questions = [
        "Hi?",
        "What is the capital of France?",
        "为什么天空是蓝色的？",
        "Explain, in a few careful sentences, why the sky looks blue during the day.",
        "ok",
    ];
    let lines: Vec<String> = questions
        .iter()
        .map(|q| serde_json::json!({ "question": q }).to_string())
        .collect();
    std::fs::write(&path, lines.join("\n")).expect("write");
    let tok = load("qwen3");
    let config = DatasetConfig {
        dataset_path: Some(path.to_str().expect("utf-8").to_string()),
        min_prompt_length: 12,
        max_prompt_length: 20,
        apply_chat_template: true,
        ..DatasetConfig::default()
    };
    let registry = PluginRegistry::builtins();
    let drain = |tokenizer: Option<&HostTokenizer>| -> Vec<String> {
        let mut source = registry
            .dataset_source("openqa", &config, tokenizer.map(HostTokenizer::handle))
            .expect("openqa opens");
        std::iter::from_fn(|| source.next_item().expect("item"))
            .map(|i| user_text(&i))
            .collect()
    };
    let want: Vec<String> = questions
        .iter()
        .filter(|q| (12..=20).contains(&templated_tokens(&tok, q)))
        .map(|q| q.to_string())
        .collect();
    assert!(!want.is_empty() && want.len() < questions.len());
    assert_eq!(drain(Some(&tok)), want, "token lengths, template included");
    let by_chars: Vec<String> = questions
        .iter()
        .filter(|q| (12..=20).contains(&q.chars().count()))
        .map(|q| q.to_string())
        .collect();
    assert_eq!(
        drain(None),
        by_chars,
        "character lengths without a tokenizer"
    );
}

#[test]
fn without_usage_a_tokenizer_counts_the_output_exactly() {
    let tokenizer = tokenizer_dir("qwen3");
    let dir = tempfile::tempdir().expect("tmp");
    let out = perf_in(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "--prompt",
            "Say something",
            "-n",
            "4",
            "--parallel",
            "2",
            "--mock-output-tokens",
            "6",
            "--outputs-dir",
            "outputs",
            "--no-timestamp",
            "--name",
            "t",
            "--tokenizer-path",
            tokenizer.to_str().expect("utf-8"),
            "--extra-args",
            r#"{"stream_options": {"include_usage": false}}"#,
            "--response-messages",
            "text",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let db = Connection::open(run_dir(dir.path()).join("benchmark_data.db")).expect("db");
    let rows: Vec<(String, i64, i64, i64, String)> = db
        .prepare("SELECT response_messages, completion_tokens, tokens_estimated, prompt_tokens, token_counts FROM result")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 4);
    let tok = load("qwen3");
    for (response, completion, estimated, prompt, source) in rows {
        let response: Value = serde_json::from_str(&response).expect("JSON");
        let content = response["content"].as_str().expect("content");
        let want = tok.encode(content, false).expect("encodes").len() as i64;
        assert_eq!(completion, want, "{content:?}");
        assert_eq!(
            prompt,
            templated_tokens(&tok, "Say something") as i64,
            "the prompt through the chat template"
        );
        assert_eq!(estimated, 0, "counted, not estimated");
        assert_eq!(source, "client");
    }
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir(dir.path()).join("benchmark_summary.json"))
            .expect("summary"),
    )
    .expect("JSON");
    assert_eq!(summary["Client-Counted Token Counts"], 4, "{summary}");
    assert_eq!(summary["Estimated Token Counts"], 0, "{summary}");
}

/// The first bytes of a PNG of `width` x `height`: the signature and the IHDR chunk, all an
/// image-size reader needs.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend(width.to_be_bytes());
    png.extend(height.to_be_bytes());
    png.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
    png
}

#[test]
fn without_usage_image_prompts_count_the_template_and_image_patches() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("kontext");
    std::fs::create_dir_all(data.join("images")).expect("mkdir");
    std::fs::write(data.join("images/a.png"), png_header(100, 56)).expect("write");
    std::fs::write(
        data.join("metadata.jsonl"),
        concat!(
            r#"{"file_name": "images/a.png", "instruction": "Make the sky green"}"#,
            "\n"
        ),
    )
    .expect("write");
    let tokenizer = tokenizer_dir("qwen3");
    let run = |server_usage: bool| {
        let _ = std::fs::remove_dir_all(dir.path().join("outputs"));
        let mut args = vec![
            "--api",
            "mock",
            "--port",
            "0",
            "--dataset",
            "kontext_bench",
            "--dataset-path",
            data.to_str().expect("utf-8"),
            "-n",
            "3",
            "--max-tokens",
            "4",
            "--image-patch-size",
            "14",
            "--outputs-dir",
            "outputs",
            "--no-timestamp",
            "--name",
            "t",
            "--tokenizer-path",
            tokenizer.to_str().expect("utf-8"),
        ];
        if !server_usage {
            args.extend([
                "--extra-args",
                r#"{"stream_options": {"include_usage": false}}"#,
            ]);
        }
        let out = perf_in(dir.path(), &args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        let db = Connection::open(run_dir(dir.path()).join("benchmark_data.db")).expect("db");
        let rows: Vec<(i64, String)> = db
            .prepare("SELECT prompt_tokens, token_counts FROM result")
            .expect("query")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(rows.len(), 3);
        rows
    };
    let tok = load("qwen3");
    let url = format!(
        "data:image/png;base64,{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            png_header(100, 56)
        )
    );
    let message = ChatMessage::new(
        "user",
        [
            ContentPart::Text("Make the sky green".into()),
            ContentPart::ImageUrl(url.as_str().into()),
        ],
    );
    let item = DatasetItem::new(PromptItem::Messages(vec![message].into()));
    // The text through the template, and 100 x 56 pixels in 14-pixel patches: 8 x 4.
    let want = (templated_tokens(&tok, "Make the sky green") + 8 * 4) as i64;
    assert_eq!(
        tok.item_tokens(&item, true, 14).expect("counts"),
        Some(want as usize)
    );
    let mut remote = item.clone();
    if let Ok(PromptItem::Messages(m)) = remote.prompt.as_enum_mut() {
        m[0].content[1] =
            ContentPart_NE::new(ContentPart::ImageUrl("https://example.com/a.png".into()));
    }
    assert_eq!(
        tok.item_tokens(&remote, true, 14).expect("counts"),
        None,
        "an image behind a URL cannot be counted here"
    );
    for (prompt, source) in run(false) {
        assert_eq!(prompt, want);
        assert_eq!(source, "client");
    }
    // The server's usage wins where it sends one.
    for (prompt, source) in run(true) {
        assert_ne!(prompt, want);
        assert_eq!(source, "server");
    }
}

#[test]
fn random_vl_puts_text_of_exact_length_before_generated_images() {
    let tok = load("qwen3");
    let mut config = random_config(20, 60, true);
    config.image_num = 2;
    config.image_width = 40;
    config.image_height = 30;
    config.image_format = "RGB".into();
    let registry = PluginRegistry::builtins();
    let mut source = registry
        .dataset_source("random_vl", &config, Some(tok.handle()))
        .expect("random_vl starts");
    let mut urls = std::collections::HashSet::new();
    for _ in 0..20 {
        let item = source.next_item().expect("item").expect("an item");
        let Ok(PromptItem::Messages(messages)) = item.prompt() else {
            panic!("chat messages: {:?}", item.prompt);
        };
        let parts = &messages[0].content;
        assert_eq!(
            parts.len(),
            3,
            "the text, then two images (evalscope's order)"
        );
        for part in &parts[1..] {
            let Ok(ContentPart::ImageUrl(url)) = part.as_enum() else {
                panic!("images after the text: {part:?}");
            };
            assert!(
                url.starts_with("data:image/png;base64,iVBORw0KGgo"),
                "a PNG"
            );
            urls.insert(url.to_string());
        }
        let Ok(ContentPart::Text(text)) = parts[0].as_enum() else {
            panic!("text first");
        };
        // The text is exact; each 40 x 30 image adds 2 x 2 patches of 28 pixels.
        let target = item.prompt_tokens.into_option().expect("target") as usize;
        assert_eq!(templated_tokens(&tok, text) + 2 * 4, target);
    }
    assert_eq!(urls.len(), 40, "every image differs");

    config.image_format = "CMYK".into();
    let err = registry
        .dataset_source("random_vl", &config, Some(tok.handle()))
        .err()
        .expect("an unsupported mode");
    assert!(err.to_string().contains("RGB, RGBA, L or LA"), "{err}");

    let dir = tempfile::tempdir().expect("tmp");
    let tokenizer = tokenizer_dir("qwen3");
    let out = perf_in(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "--dataset",
            "random_vl",
            "--tokenizer-path",
            tokenizer.to_str().expect("utf-8"),
            "--image-num",
            "1",
            "-n",
            "6",
            "--max-tokens",
            "4",
            "--min-prompt-length",
            "20",
            "--max-prompt-length",
            "40",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
}

/// The request bodies of a run, in order.
fn bodies(root: &Path) -> Vec<Value> {
    let db = Connection::open(run_dir(root).join("benchmark_data.db")).expect("db");
    let rows: Vec<String> = db
        .prepare("SELECT request FROM result ORDER BY request_index")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    rows.iter()
        .map(|b| serde_json::from_str(b).expect("JSON body"))
        .collect()
}

fn args_file(root: &Path) -> Value {
    let text = std::fs::read_to_string(run_dir(root).join("benchmark_args.json")).expect("args");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn tokenize_prompt_sends_token_ids_from_every_text_source_to_completions() {
    let tokenizer = tokenizer_dir("qwen3");
    let tokenizer = tokenizer.to_str().expect("utf-8 path");
    let tok = load("qwen3");
    let lines = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(lines.path(), "first line of text\nsecond line\n").expect("write");
    let lines = lines.path().to_str().expect("utf-8").to_string();
    let fixed = ["--prompt", "Say something"];
    let by_line = [
        "--dataset",
        "line_by_line",
        "--dataset-path",
        lines.as_str(),
    ];
    for (source, flags, texts) in [
        ("--prompt", &fixed[..], vec!["Say something"]),
        (
            "line_by_line",
            &by_line[..],
            vec!["first line of text", "second line"],
        ),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let mut args = vec![
            "--api",
            "mock",
            "--port",
            "0",
            "-n",
            "2",
            "--max-tokens",
            "4",
            "--outputs-dir",
            "outputs",
            "--no-timestamp",
            "--name",
            "t",
            "--tokenizer-path",
            tokenizer,
            "--tokenize-prompt",
        ];
        args.extend_from_slice(flags);
        let out = perf_in(dir.path(), &args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{source}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("requests go to /v1/completions instead"),
            "{source}: the chat URL moved to completions, and said so: {stderr}"
        );
        let a = args_file(dir.path());
        assert!(
            a["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/v1/completions")),
            "{a}"
        );
        assert_eq!(
            a["apply_chat_template"], true,
            "resolved from the URL as given, as evalscope resolves it"
        );
        for (body, text) in bodies(dir.path()).iter().zip(&texts) {
            let ids: Vec<u32> = body["prompt"]
                .as_array()
                .unwrap_or_else(|| panic!("{source}: a list of ids in {body}"))
                .iter()
                .map(|v| v.as_u64().expect("an id") as u32)
                .collect();
            // Through the chat template, as the one user message (evalscope's path for a
            // chat URL).
            let want = tok.chat_ids(&[user(text)]).expect("ids");
            assert_eq!(ids, want, "{source}");
            assert!(body.get("messages").is_none(), "{body}");
        }
    }
    // Without a tokenizer there is nothing to tokenize with.
    let dir = tempfile::tempdir().expect("tmp");
    let out = perf_in(
        dir.path(),
        &["--api", "mock", "--prompt", "x", "--tokenize-prompt"],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--tokenize-prompt needs --tokenizer-path"),
        "{stderr}"
    );
}

#[test]
fn random_prompts_are_new_each_invocation_unless_seeded_and_the_seed_is_written() {
    let tokenizer = tokenizer_dir("qwen3");
    let tokenizer = tokenizer.to_str().expect("utf-8 path");
    let run = |extra: &[&str]| {
        let dir = tempfile::tempdir().expect("tmp");
        let mut args = vec![
            "--api",
            "mock",
            "--port",
            "0",
            "--dataset",
            "random",
            "--tokenizer-path",
            tokenizer,
            "-n",
            "4",
            "--max-tokens",
            "2",
            "--min-prompt-length",
            "20",
            "--max-prompt-length",
            "30",
            "--outputs-dir",
            "outputs",
            "--no-timestamp",
            "--name",
            "t",
        ];
        args.extend_from_slice(extra);
        let out = perf_in(dir.path(), &args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        let prompts: Vec<String> = bodies(dir.path())
            .iter()
            .map(|b| {
                b["messages"][0]["content"]
                    .as_str()
                    .expect("text")
                    .to_string()
            })
            .collect();
        (prompts, args_file(dir.path()))
    };
    let (first, args1) = run(&[]);
    let (second, args2) = run(&[]);
    assert_ne!(first, second, "a new invocation draws new prompts");
    assert_eq!(args1["seed"], Value::Null, "evalscope's seed: as given");
    let seed = args1["dataset_seed"].as_u64().expect("the seed drawn");
    assert_ne!(Some(seed), args2["dataset_seed"].as_u64());
    // The seed written repeats the run's prompts, without sending `seed`.
    let seed_text = seed.to_string();
    let (again, args3) = run(&["--dataset-seed", &seed_text]);
    assert_eq!(again, first);
    assert_eq!(args3["dataset_seed"], args1["dataset_seed"]);
    // --seed fixes them too (and is sent).
    let (a, _) = run(&["--seed", "7"]);
    let (b, args7) = run(&["--seed", "7"]);
    assert_eq!(a, b);
    assert_eq!(args7["seed"], 7);
    assert_eq!(args7["dataset_seed"], 7);
}

/// evalscope's speed benchmark: "熵" repeated 1, 6144, 14336 and 30720 times, twice each, sent
/// to /v1/completions whatever the URL, and speed_benchmark.json grouping the runs by prompt
/// length with evalscope's query.
#[test]
fn the_speed_benchmark_goes_to_completions_and_writes_its_table() {
    let r = crate::conversations::perf_dataset_run(&[
        "--dataset",
        "speed_benchmark",
        "-n",
        "8",
        "--max-tokens",
        "8",
        "--mock-ttft-ms",
        "1",
        "--mock-tpot-ms",
        "1",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("measures /v1/completions"),
        "{}",
        r.stderr
    );
    let label = "parallel_1_number_8";
    let prompts: Vec<String> = request_bodies(&r, label)
        .iter()
        .map(|body| {
            body["prompt"]
                .as_str()
                .expect("a completions prompt")
                .to_string()
        })
        .collect();
    let lengths: Vec<usize> = prompts.iter().map(|p| p.chars().count()).collect();
    assert_eq!(lengths, [1, 1, 6144, 6144, 14336, 14336, 30720, 30720]);
    assert!(prompts.iter().all(|p| p.chars().all(|c| c == '熵')));
    let table = r.json(label, "speed_benchmark.json");
    let rows = table.as_array().expect("list");
    assert_eq!(rows.len(), 4, "one row per prompt length: {table}");
    let mut last = -1;
    for row in rows {
        let keys: Vec<&String> = row.as_object().expect("row").keys().collect();
        assert_eq!(keys, ["Prompt Tokens", "Speed(tokens/s)", "GPU Memory(GB)"]);
        let tokens = row["Prompt Tokens"].as_i64().expect("tokens");
        assert!(tokens > last, "ascending: {table}");
        last = tokens;
        assert!(row["Speed(tokens/s)"].as_f64().expect("speed") > 0.0);
        assert_eq!(row["GPU Memory(GB)"], 0.0);
    }
    assert!(r.stdout.contains("Speed Benchmark Results"));
}

/// evalscope's text-length options: `target_input_len` cuts long prompts to the target and
/// keeps (`cap`) or skips (`drop`) short ones; `prefix_file` fills each prompt up to the target
/// with real text, as a system message or in front of the prompt, exact to the token.
#[test]
fn text_datasets_fit_prompts_to_a_target_length_and_fill_it_with_a_prefix() {
    let dir = tempfile::tempdir().expect("tmp");
    let questions = dir.path().join("qa.jsonl");
    std::fs::write(
        &questions,
        concat!(
            r#"{"question": "Why is the sky blue on a clear day, and why does it turn red at sunset over the sea?"}"#,
            "\n",
            r#"{"question": "Why?"}"#,
            "\n"
        ),
    )
    .expect("write");
    let prefix = dir.path().join("prefix.txt");
    std::fs::write(&prefix, "Once upon a time there was a lighthouse keeper. ").expect("write");
    let tok_dir = tokenizer_dir("qwen3");
    let tok = HostTokenizer::load(&tok_dir).expect("tokenizer");
    let count = |t: &str| tok.encode(t, false).expect("encode").len();
    let run = |args: &str| {
        let mut full = vec![
            "--dataset",
            "openqa",
            "--dataset-path",
            questions.to_str().expect("path"),
            "--tokenizer-path",
            tok_dir.to_str().expect("path"),
            "--dataset-args",
            args,
            "-n",
            "2",
        ];
        full.extend(["--max-tokens", "2"]);
        crate::conversations::perf_dataset_run(&full)
    };
    let messages = |r: &crate::engine::Run| -> Vec<Vec<(String, String)>> {
        request_bodies(r, "parallel_1_number_2")
            .iter()
            .map(chat_messages)
            .collect()
    };

    let r = run(r#"{"target_input_len": 8}"#);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let sent = messages(&r);
    assert_eq!(count(&sent[0][0].1), 8, "cut to the target: {:?}", sent[0]);
    assert_eq!(sent[1][0].1, "Why?", "cap keeps a short prompt as it is");

    let r = run(r#"{"target_input_len": 8, "input_len_mode": "drop"}"#);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let sent = messages(&r);
    assert!(
        sent.iter().all(|m| count(&m[0].1) == 8),
        "drop skips the short one (the long one repeats): {sent:?}"
    );

    let prefix_args = format!(
        r#"{{"target_input_len": 300, "prefix_file": "{}"}}"#,
        prefix.display()
    );
    let r = run(&prefix_args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for m in messages(&r) {
        assert_eq!(m[0].0, "system", "the prefix is a system message: {m:?}");
        assert!(m[0].1.starts_with("Once upon a time"));
        assert_eq!(
            count(&m[0].1) + count(&m[1].1),
            300,
            "exact to the token: {m:?}"
        );
    }
    let user_args = format!(
        r#"{{"target_input_len": 300, "prefix_file": "{}", "prefix_role": "user"}}"#,
        prefix.display()
    );
    let r = run(&user_args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for m in messages(&r) {
        assert_eq!(m.len(), 1);
        assert!(m[0].1.starts_with("Once upon a time") && m[0].1.ends_with('?'));
        assert!(
            count(&m[0].1).abs_diff(300) <= 1,
            "prefix and prompt counted apart: {m:?}"
        );
    }

    for (args, says) in [
        (r#"{"prefix_file": "x"}"#, "needs target_input_len"),
        (
            r#"{"target_input_len": 8, "input_len_mode": "trim"}"#,
            "unknown variant",
        ),
        (
            r#"{"target_input_len": 8, "prefix_file": "x", "input_len_mode": "drop"}"#,
            "cannot go with input_len_mode 'drop'",
        ),
    ] {
        let r = run(args);
        assert_eq!(r.code, Some(2), "{args}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args}: {}", r.stderr);
    }
}

/// evalscope's `custom`: every line a plain-text prompt (a JSON-looking line too), filtered by
/// length in characters without a tokenizer.
#[test]
fn the_custom_dataset_sends_every_line_as_text_within_the_length_bounds() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("prompts.txt");
    std::fs::write(&path, "Tell me a story\n{\"not\": \"a body\"}\nhi\n\n").expect("write");
    let r = crate::conversations::perf_dataset_run(&[
        "--dataset",
        "custom",
        "--dataset-path",
        path.to_str().expect("path"),
        "--min-prompt-length",
        "5",
        "-n",
        "2",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let sent: Vec<String> = request_bodies(&r, "parallel_1_number_2")
        .iter()
        .map(|body| chat_messages(body)[0].1.clone())
        .collect();
    assert_eq!(
        sent,
        ["Tell me a story", "{\"not\": \"a body\"}"],
        "\"hi\" is under 5 characters"
    );
}
