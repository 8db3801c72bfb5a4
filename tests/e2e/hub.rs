//! Downloads from the hub, against a local server that answers the way ModelScope and Hugging
//! Face do (their file URLs; 404 for what they do not have): datasets and tokenizers by model id
//! are fetched once into the cache named by `PERF_CACHE_DIR`, and a missing file or an
//! unreachable hub is a clear error naming the URL and the `--dataset-path` alternative.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use perf_tests::{perf_bin, text, tokenizer_dir};

/// A hub on 127.0.0.1: serves `files` (request target -> body), 404 otherwise, and records
/// every request target.
struct LocalHub {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl LocalHub {
    fn start(files: HashMap<String, Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // Skip the headers.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok() && header.trim() != "" {
                    header.clear();
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().expect("lock").push(target.clone());
                let (status, body) = match files.get(&target) {
                    Some(b) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"{\"error\":\"not found\"}".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        LocalHub { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

/// The environment of a run against `hub` as ModelScope, caching under `dir/cache`.
fn modelscope_env(hub: &LocalHub, dir: &Path) -> [(&'static str, String); 2] {
    [
        ("MODELSCOPE_ENDPOINT", hub.url()),
        (
            "PERF_CACHE_DIR",
            dir.join("cache").to_string_lossy().into_owned(),
        ),
    ]
}

fn perf_with_env(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let out = Command::new(perf_bin())
        .args(args)
        .env_remove("MODELSCOPE_ENDPOINT")
        .env_remove("HF_ENDPOINT")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .output()
        .expect("perf runs");
    let (stdout, stderr) = text(&out);
    (out.status.code(), format!("{stdout}\n{stderr}"))
}

const RUN: &[&str] = &[
    "--api",
    "mock",
    "--port",
    "0",
    "--max-tokens",
    "4",
    "--outputs-dir",
    "outputs",
    "--no-timestamp",
    "--name",
    "t",
];

#[test]
fn openqa_and_a_tokenizer_come_from_the_hub_once_and_then_from_the_cache() {
    let qwen = tokenizer_dir("qwen3");
    let read = |f: &str| std::fs::read(qwen.join(f)).expect("tokenizer file");
    let questions = "{\"question\": \"什么是机器学习？\", \"human_answers\": []}\n{\"question\": \"How do tides work?\"}\n";
    let ms = "/api/v1";
    let files = HashMap::from([
        (
            format!("{ms}/datasets/AI-ModelScope/HC3-Chinese/repo?Revision=master&FilePath=open_qa.jsonl"),
            questions.as_bytes().to_vec(),
        ),
        (
            format!("{ms}/models/Qwen/Qwen3-0.6B/repo?Revision=master&FilePath=tokenizer.json"),
            read("tokenizer.json"),
        ),
        (
            format!("{ms}/models/Qwen/Qwen3-0.6B/repo?Revision=master&FilePath=tokenizer_config.json"),
            read("tokenizer_config.json"),
        ),
    ]);
    let hub = LocalHub::start(files);
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("cache");
    let env = [
        ("MODELSCOPE_ENDPOINT", hub.url()),
        ("PERF_CACHE_DIR", cache.to_string_lossy().into_owned()),
    ];
    let mut args = RUN.to_vec();
    args.extend([
        "-n",
        "3",
        "--dataset",
        "openqa",
        "--tokenizer-path",
        "Qwen/Qwen3-0.6B",
    ]);
    let (code, out) = perf_with_env(dir.path(), &args, &env);
    assert_eq!(code, Some(0), "{out}");
    let cached = cache.join("modelscope/datasets/AI-ModelScope/HC3-Chinese/open_qa.jsonl");
    assert_eq!(std::fs::read_to_string(&cached).expect("cached"), questions);
    assert!(cache
        .join("modelscope/models/Qwen/Qwen3-0.6B/tokenizer.json")
        .is_file());
    let first = hub.requests();
    assert!(
        first
            .iter()
            .any(|r| r.ends_with("FilePath=chat_template.jinja")),
        "the optional template file was asked for: {first:?}"
    );

    // A second run reads the cache: no request reaches the hub.
    let tmp = tempfile::tempdir().expect("tmp");
    let (code, out) = perf_with_env(tmp.path(), &args, &env);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(hub.requests().len(), first.len(), "served from the cache");
}

#[test]
fn hugging_face_paths_with_data_source_huggingface() {
    let body = "[{\"instruction\": \"Summarise this long text.\", \"output\": \"x\"}]";
    let files = HashMap::from([(
        "/datasets/Yukang/LongAlpaca-12k/resolve/main/LongAlpaca-12k.json".to_string(),
        body.as_bytes().to_vec(),
    )]);
    let hub = LocalHub::start(files);
    let dir = tempfile::tempdir().expect("tmp");
    let env = [
        ("HF_ENDPOINT", hub.url()),
        (
            "PERF_CACHE_DIR",
            dir.path().join("cache").to_string_lossy().into_owned(),
        ),
    ];
    let mut args = RUN.to_vec();
    args.extend([
        "-n",
        "3",
        "--dataset",
        "longalpaca",
        "--data-source",
        "huggingface",
    ]);
    let (code, out) = perf_with_env(dir.path(), &args, &env);
    assert_eq!(code, Some(0), "{out}");
    assert!(dir
        .path()
        .join("cache/huggingface/datasets/Yukang/LongAlpaca-12k/LongAlpaca-12k.json")
        .is_file());
}

#[test]
fn a_missing_dataset_or_an_unreachable_hub_names_the_url_and_the_alternative() {
    let hub = LocalHub::start(HashMap::new());
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("cache").to_string_lossy().into_owned();
    let mut args = RUN.to_vec();
    args.extend(["-n", "3", "--dataset", "openqa"]);
    let (code, out) = perf_with_env(
        dir.path(),
        &args,
        &[
            ("MODELSCOPE_ENDPOINT", hub.url()),
            ("PERF_CACHE_DIR", cache.clone()),
        ],
    );
    assert_eq!(code, Some(2), "{out}");
    let url = format!(
        "{}/api/v1/datasets/AI-ModelScope/HC3-Chinese/repo?Revision=master&FilePath=open_qa.jsonl",
        hub.url()
    );
    assert!(
        out.contains(&format!("{url}: not found on the hub (HTTP 404)")),
        "{out}"
    );
    assert!(out.contains("or pass --dataset-path"), "{out}");

    let (code, out) = perf_with_env(
        dir.path(),
        &args,
        &[
            ("MODELSCOPE_ENDPOINT", "http://127.0.0.1:9".into()),
            ("PERF_CACHE_DIR", cache),
        ],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("http://127.0.0.1:9/api/v1/datasets/AI-ModelScope/HC3-Chinese"),
        "{out}"
    );
    assert!(out.contains("the hub cannot be reached"), "{out}");
    assert!(out.contains("or pass --dataset-path"), "{out}");

    let mut args = RUN.to_vec();
    args.extend(["-n", "3", "--tokenizer-path", "nobody/no-such-model"]);
    let (code, out) = perf_with_env(dir.path(), &args, &[("MODELSCOPE_ENDPOINT", hub.url())]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            "nobody/no-such-model/repo?Revision=master&FilePath=tokenizer.json: not found"
        ),
        "{out}"
    );
    assert!(out.contains("pass a local tokenizer.json"), "{out}");
}

/// A WebDataset shard: `<key>.jpg` + `<key>.txt` per sample.
fn shard(samples: &[(&str, &[u8], &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (key, image, caption) in samples {
        for (name, data) in [
            (format!("{key}.jpg"), *image),
            (format!("{key}.txt"), caption.as_bytes()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, data)
                .expect("append");
        }
    }
    builder.into_inner().expect("tar bytes")
}

#[test]
fn flickr8k_shards_come_from_the_hub_as_the_run_reaches_them() {
    let base = "/api/v1/datasets/clip-benchmark/wds_flickr8k/repo?Revision=master&FilePath=test%2F";
    let files = HashMap::from([
        (format!("{base}nshards.txt"), b"2\n".to_vec()),
        (
            format!("{base}0.tar"),
            shard(&[
                ("s0", b"\xff\xd8\xff0", "A dog."),
                ("s1", b"\xff\xd8\xff1", "A cat."),
            ]),
        ),
        (
            format!("{base}1.tar"),
            shard(&[("s2", b"\xff\xd8\xff2", "A bird.")]),
        ),
    ]);
    let hub = LocalHub::start(files);
    let dir = tempfile::tempdir().expect("tmp");
    let env = modelscope_env(&hub, dir.path());
    let mut args = RUN.to_vec();
    args.extend(["--dataset", "flickr8k", "-n", "5"]);
    let (code, out) = perf_with_env(dir.path(), &args, &env);
    assert_eq!(code, Some(0), "{out}");
    let captions: Vec<String> = image_prompts(dir.path())
        .into_iter()
        .map(|(text, image)| {
            assert!(image.starts_with("data:image/jpeg;base64,/9j/"), "{image}");
            text
        })
        .collect();
    assert_eq!(
        captions,
        ["A dog.", "A cat.", "A bird.", "A dog.", "A cat."],
        "cycled in order"
    );
}

/// The request bodies the run `t` under `dir` sent, in order.
fn request_bodies_under(dir: &Path) -> Vec<String> {
    let db_path = std::fs::read_dir(dir.join("outputs/t"))
        .expect("outputs")
        .filter_map(Result::ok)
        .map(|e| e.path().join("benchmark_data.db"))
        .find(|p| p.is_file())
        .expect("a database");
    let db = rusqlite::Connection::open(db_path).expect("db");
    let bodies: Vec<String> = db
        .prepare("SELECT request FROM result ORDER BY request_index")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    bodies
}

/// The (text, image URL) of every request the run `t` under `dir` sent, in order.
fn image_prompts(dir: &Path) -> Vec<(String, String)> {
    request_bodies_under(dir)
        .iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_str(b).expect("JSON");
            let content = &v["messages"][0]["content"];
            (
                content[0]["text"]
                    .as_str()
                    .expect("a text part")
                    .to_string(),
                content[1]["image_url"]["url"]
                    .as_str()
                    .expect("an image part")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn kontext_bench_metadata_and_images_come_from_the_hub_and_then_the_cache() {
    let base =
        "/api/v1/datasets/black-forest-labs/kontext-bench/repo?Revision=master&FilePath=test%2F";
    let metadata = concat!(
        r#"{"file_name": "images/0000.jpg", "key": "0000_00", "instruction": "Give the cat a hat", "category": "Local Editing"}"#,
        "\n",
        r#"{"file_name": "images/0000.jpg", "key": "0000_01", "instruction": "Turn it to night", "category": "Global Editing"}"#,
        "\n",
        r#"{"file_name": "images/0001.jpg", "key": "0001_00", "instruction": "Remove the car", "category": "Local Editing"}"#,
        "\n",
    );
    let files = HashMap::from([
        (
            format!("{base}metadata.jsonl"),
            metadata.as_bytes().to_vec(),
        ),
        (
            format!("{base}images%2F0000.jpg"),
            b"\xff\xd8\xff\xe0zero".to_vec(),
        ),
        (
            format!("{base}images%2F0001.jpg"),
            b"\xff\xd8\xff\xe0one".to_vec(),
        ),
    ]);
    let hub = LocalHub::start(files);
    let dir = tempfile::tempdir().expect("tmp");
    let env = modelscope_env(&hub, dir.path());
    let mut args = RUN.to_vec();
    args.extend(["--dataset", "kontext_bench", "-n", "4"]);
    for round in 0..2 {
        let (code, out) = perf_with_env(dir.path(), &args, &env);
        assert_eq!(code, Some(0), "round {round}: {out}");
        let b64 = |b: &[u8]| {
            use base64::Engine;
            format!(
                "data:image/jpeg;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            )
        };
        let zero = b64(b"\xff\xd8\xff\xe0zero");
        let one = b64(b"\xff\xd8\xff\xe0one");
        assert_eq!(
            image_prompts(dir.path()),
            [
                ("Give the cat a hat".to_string(), zero.clone()),
                ("Turn it to night".to_string(), zero.clone()),
                ("Remove the car".to_string(), one),
                ("Give the cat a hat".to_string(), zero),
            ],
            "round {round}: each line with its image, cycled"
        );
        std::fs::remove_dir_all(dir.path().join("outputs")).expect("clean outputs");
    }
    // Each file once: the shared image and the second run come from the cache.
    let mut fetched = hub.requests();
    fetched.sort();
    assert_eq!(
        fetched,
        [
            format!("{base}images%2F0000.jpg"),
            format!("{base}images%2F0001.jpg"),
            format!("{base}metadata.jsonl"),
        ]
    );
}

#[test]
fn kontext_bench_without_the_hub_names_the_url_and_dataset_path() {
    let hub = LocalHub::start(HashMap::new());
    let dir = tempfile::tempdir().expect("tmp");
    let env = modelscope_env(&hub, dir.path());
    let mut args = RUN.to_vec();
    args.extend(["--dataset", "kontext_bench", "-n", "2"]);
    let (code, out) = perf_with_env(dir.path(), &args, &env);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("black-forest-labs/kontext-bench/repo?Revision=master&FilePath=test%2Fmetadata.jsonl: not found"),
        "{out}"
    );
    assert!(out.contains("--dataset-path"), "{out}");
}

/// swift/sharegpt lines: two conversations of three exchanges, one in Chinese.
const SHAREGPT: &str = concat!(
    r#"{"conversation_id": "1", "conversation": [{"human": "What is Rust?", "assistant": "REF A1"}, {"human": "Why is it fast?", "assistant": "REF A2"}, {"human": "Show an example.", "assistant": "REF A3"}]}"#,
    "\n",
    r#"{"conversation_id": "2", "conversation": [{"human": "你好", "assistant": "REF B1"}, {"human": "  ", "assistant": ""}, {"human": "再见", "assistant": "REF B2"}]}"#,
    "\n"
);

#[test]
fn share_gpt_conversations_come_from_either_hub_turn_by_turn_or_as_one_request() {
    use crate::conversations::{assert_live_history, conversations};
    use crate::engine::Run;
    let ms = "/api/v1/datasets/swift/sharegpt/repo?Revision=master&FilePath=common_en_70k.jsonl";
    let hf = "/datasets/shareAI/ShareGPT-Chinese-English-90k/resolve/main/sharegpt_jsonl/common_zh_70k.jsonl";
    let hub = LocalHub::start(HashMap::from([
        (ms.to_string(), SHAREGPT.as_bytes().to_vec()),
        (hf.to_string(), SHAREGPT.as_bytes().to_vec()),
    ]));
    let run = |extra: &[&str], env: (&str, String)| {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = dir.path().join("cache").to_string_lossy().into_owned();
        let mut args = RUN.to_vec();
        args.extend(["--response-messages", "text"]);
        args.extend_from_slice(extra);
        let (code, out) = perf_with_env(dir.path(), &args, &[env, ("PERF_CACHE_DIR", cache)]);
        Run {
            dir,
            code,
            stdout: out.clone(),
            stderr: out,
        }
    };

    // Turn by turn, from ModelScope: user turns only, at most --max-turns, the live replies.
    let r = run(
        &[
            "--dataset",
            "share_gpt_en_multi_turn",
            "--multi-turn",
            "--max-turns",
            "2",
            "-n",
            "2",
        ],
        ("MODELSCOPE_ENDPOINT", hub.url()),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let convs = conversations(&r, "parallel_1_number_2");
    let turns: Vec<usize> = convs.values().map(Vec::len).collect();
    assert_eq!(
        turns,
        [2, 2],
        "three exchanges capped at two; the blank one skipped"
    );
    assert_live_history(&convs);
    let first = &convs.values().next().expect("conversation")[1];
    assert_eq!(first.messages[0].1, "What is Rust?");
    assert_eq!(first.messages[2].1, "Why is it fast?");
    let all: String = convs
        .values()
        .flatten()
        .flat_map(|t| t.messages.iter().map(|m| m.1.clone()))
        .collect();
    assert!(!all.contains("REF"), "the reference replies are never sent");

    // One request each, from Hugging Face: the history with the reference replies, ending on
    // the last user message.
    let r = run(
        &[
            "--dataset",
            "share_gpt_zh",
            "--data-source",
            "huggingface",
            "-n",
            "2",
        ],
        ("HF_ENDPOINT", hub.url()),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let bodies = crate::conversations::request_bodies(&r, "parallel_1_number_2");
    let roles = crate::conversations::chat_messages;
    let first = roles(&bodies[0]);
    assert_eq!(first.len(), 5, "three questions, two replies: {first:?}");
    assert_eq!(first[1], ("assistant".into(), "REF A1".into()));
    assert_eq!(first[4], ("user".into(), "Show an example.".into()));
    let second = roles(&bodies[1]);
    assert_eq!(
        second,
        [
            ("user".to_string(), "你好".to_string()),
            ("assistant".to_string(), "REF B1".to_string()),
            ("user".to_string(), "再见".to_string())
        ]
    );
}

#[test]
fn trie_traces_replay_their_lengths_budgets_and_tool_latencies() {
    use crate::conversations::{assert_live_history, conversations};
    use crate::engine::Run;
    use perf_plugin_api::sdk::TokenizerPlugin;
    let traces = concat!(
        r#"{"input_prompt_length": 40, "num_turns": 2, "assistant_response_length": [3, 4], "tool_call_output_length": [12, 20], "tool_call_latency": [0.2, 0.1], "final_assistant_response_length": 6}"#,
        "\n",
        r#"{"input_prompt_length": 25, "num_turns": 0, "assistant_response_length": [], "tool_call_output_length": [], "tool_call_latency": [], "final_assistant_response_length": 5}"#,
        "\n"
    );
    let file = "/api/v1/datasets/evalscope/trie-workloads/repo?Revision=master&FilePath=agentic_coding_8k.jsonl";
    let hub = LocalHub::start(HashMap::from([(
        file.to_string(),
        traces.as_bytes().to_vec(),
    )]));
    let dir = tempfile::tempdir().expect("tmp");
    let tok_dir = tokenizer_dir("qwen3");
    let cache = dir.path().join("cache").to_string_lossy().into_owned();
    let mut args = RUN.to_vec();
    args.extend([
        "--response-messages",
        "text",
        "--dataset",
        "trie_agentic_coding",
        "--multi-turn",
        "--tokenizer-path",
        tok_dir.to_str().expect("path"),
        "-n",
        "2",
        "--max-tokens",
        "100",
    ]);
    let (code, out) = perf_with_env(
        dir.path(),
        &args,
        &[
            ("MODELSCOPE_ENDPOINT", hub.url()),
            ("PERF_CACHE_DIR", cache),
        ],
    );
    let r = Run {
        dir,
        code,
        stdout: out.clone(),
        stderr: out,
    };
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let convs = conversations(&r, "parallel_1_number_2");
    let turns: Vec<&Vec<crate::conversations::TurnRow>> = convs.values().collect();
    assert_eq!(turns[0].len(), 3, "the prompt, then one turn per tool call");
    assert_eq!(turns[1].len(), 1);
    assert_live_history(&convs);
    let budgets: Vec<i64> = turns[0].iter().map(|t| t.completion_tokens).collect();
    assert_eq!(budgets, [3, 4, 6], "each turn's recorded reply length");
    assert_eq!(turns[1][0].completion_tokens, 5);
    // Each tool turn waits the tool's recorded latency after the reply before it.
    assert!(turns[0][1].sent - turns[0][0].completed >= 0.199);
    assert!(turns[0][2].sent - turns[0][1].completed >= 0.099);
    // Turns are synthesized to the recorded lengths.
    let tok = perf_host::tokenizer::HostTokenizer::load(&tok_dir).expect("tokenizer");
    let len = |t: &crate::conversations::TurnRow| {
        let last = &t.messages.last().expect("message").1;
        tok.encode(last, false).expect("encode").len()
    };
    for (turn, want) in turns[0].iter().zip([40usize, 12, 20]) {
        assert!(
            len(turn).abs_diff(want) <= 1,
            "{} tokens, want {want}",
            len(turn)
        );
    }
}

/// Hub datasets in their parquet layout, written by pyarrow (`tests/py/hub_parquet.py`): the
/// files under the returned directory, by path inside the repository.
fn parquet_dataset(kind: &str) -> (tempfile::TempDir, Vec<(String, Vec<u8>)>) {
    let dir = tempfile::tempdir().expect("tmp");
    let script = perf_tests::repo_root().join("tests/py/hub_parquet.py");
    let out = Command::new(perf_tests::py_clients_python())
        .arg(script)
        .arg(kind)
        .arg(dir.path())
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{:?}", text(&out));
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)
            .expect("read_dir")
            .filter_map(Result::ok)
        {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir.path()).expect("under");
                let rel = rel.to_string_lossy().replace('\\', "/");
                files.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    files.sort();
    (dir, files)
}

/// `"data:<mime>;base64,..."` -> the bytes.
fn data_url_bytes(url: &str) -> Vec<u8> {
    use base64::Engine;
    let (_, b64) = url.split_once(";base64,").expect("a base64 data URL");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
}

/// A request's text parts, and the (red, green) pixel of each of its images.
type Parts = (Vec<String>, Vec<(u8, u8)>);

#[test]
fn mmmu_multi_image_takes_every_subject_in_turn_with_its_images_in_place() {
    let (_data, files) = parquet_dataset("mmmu");
    let repo = "/api/v1/datasets/AI-ModelScope/MMMU";
    let mut served = HashMap::new();
    let subjects: Vec<String> = files
        .iter()
        .map(|(path, _)| path.split('/').next().expect("subject").to_string())
        .collect();
    assert_eq!(subjects.len(), 30);
    for (path, bytes) in &files {
        let subject = path.split('/').next().expect("subject");
        served.insert(
            format!(
                "{repo}/repo?Revision=master&FilePath={}",
                path.replace('/', "%2F")
            ),
            bytes.clone(),
        );
        // Each subject's listing: its splits, and a folder entry that is not a file.
        let listing = serde_json::json!({"Code": 200, "Success": true, "Data": {"Files": [
            {"Path": format!("{subject}/dev-00000-of-00001.parquet"), "Type": "blob"},
            {"Path": path, "Type": "blob"},
            {"Path": format!("{subject}/extra"), "Type": "tree"},
        ]}});
        served.insert(
            format!("{repo}/repo/tree?Revision=master&Recursive=True&PageNumber=1&PageSize=200&Root={subject}"),
            listing.to_string().into_bytes(),
        );
    }
    let hub = LocalHub::start(served);
    let dir = tempfile::tempdir().expect("tmp");
    let env = modelscope_env(&hub, dir.path());
    let mut args = RUN.to_vec();
    args.extend(["--dataset", "mmmu_multi_image", "-n", "31"]);
    for round in 0..2 {
        let (code, out) = perf_with_env(dir.path(), &args, &env);
        assert_eq!(code, Some(0), "round {round}: {out}");
        let bodies = request_bodies_under(dir.path());
        assert_eq!(bodies.len(), 31);
        // Each request: (texts, the (red, green) pixel of each image), in content order.
        let requests: Vec<Parts> = bodies
            .iter()
            .map(|b| {
                let v: serde_json::Value = serde_json::from_str(b).expect("JSON");
                let content = v["messages"][0]["content"].as_array().expect("parts");
                let mut texts = Vec::new();
                let mut pixels = Vec::new();
                for part in content {
                    match part["type"].as_str() {
                        Some("text") => texts.push(part["text"].as_str().expect("text").into()),
                        Some("image_url") => {
                            let url = part["image_url"]["url"].as_str().expect("url");
                            assert!(url.starts_with("data:image/png;base64,"), "{url:.40}");
                            let bytes = data_url_bytes(url);
                            let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
                            let mut reader = decoder.read_info().expect("a PNG");
                            let mut buf = vec![0; reader.output_buffer_size().expect("size")];
                            reader.next_frame(&mut buf).expect("a frame");
                            pixels.push((buf[0], buf[1]));
                        }
                        other => panic!("part {other:?}"),
                    }
                }
                (texts, pixels)
            })
            .collect();
        // One eligible question of each subject in turn (the one-image questions are skipped),
        // then the second round of Accounting's.
        for (k, (texts, pixels)) in requests[..30].iter().enumerate() {
            let subject = &subjects[k];
            assert_eq!(
                texts,
                &[
                    format!("{subject} q0: is "),
                    " larger than ".to_string(),
                    "?\nOptions: ['A', 'B']".to_string()
                ],
                "round {round}: request {k}"
            );
            assert_eq!(
                pixels,
                &[(k as u8, 1), (k as u8, 2)],
                "{subject}: its own images"
            );
        }
        let (texts, pixels) = &requests[30];
        assert_eq!(
            texts,
            &["Accounting q2: which of these is a balance sheet?"]
        );
        assert_eq!(
            pixels,
            &[(0, 1), (0, 2), (0, 3)],
            "no placeholders: text, then images"
        );
        std::fs::remove_dir_all(dir.path().join("outputs")).expect("clean outputs");
    }
    // One listing and one file per subject, the second run all from the cache.
    assert_eq!(hub.requests().len(), 60, "{:?}", hub.requests());
    let mut args = RUN.to_vec();
    let tokenizer = tokenizer_dir("qwen3");
    args.extend([
        "--dataset",
        "mmmu_multi_image",
        "--tokenize-prompt",
        "--tokenizer-path",
        tokenizer.to_str().expect("path"),
    ]);
    let (code, out) = perf_with_env(dir.path(), &args, &env);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("drop --tokenize-prompt"), "{out}");
}

#[test]
fn swe_smith_is_built_live_from_the_trajectories_of_the_hub() {
    let (_data, files) = parquet_dataset("swe_smith");
    let repo = "SWE-bench/SWE-smith-trajectories";
    let mut served = HashMap::new();
    for (path, bytes) in &files {
        served.insert(
            format!("/datasets/{repo}/resolve/main/{path}"),
            bytes.clone(),
        );
    }
    // Hugging Face's tree listing, folders included.
    let mut listing: Vec<serde_json::Value> = files
        .iter()
        .map(|(p, _)| serde_json::json!({"type": "file", "path": p, "size": 1}))
        .collect();
    listing.push(serde_json::json!({"type": "directory", "path": "data"}));
    served.insert(
        format!("/api/datasets/{repo}/tree/main?recursive=true"),
        serde_json::Value::Array(listing).to_string().into_bytes(),
    );
    let hub = LocalHub::start(served);
    let cache = tempfile::tempdir().expect("tmp");
    let tokenizer = tokenizer_dir("qwen3");
    let r = crate::engine::perf_run_from(
        crate::conversations::SIMULATOR,
        &[
            "--dataset",
            "swe_smith",
            "--data-source",
            "huggingface",
            "--tokenizer-path",
            tokenizer.to_str().expect("path"),
            "--multi-turn",
            "--min-turns",
            "2",
            "--max-turns",
            "3",
            "--dataset-args",
            r#"{"first_turn_length": [20, 30], "subsequent_turn_length": 25}"#,
            "--max-tokens",
            "4",
            "-n",
            "4",
        ],
        |cmd| {
            cmd.env_remove("MODELSCOPE_ENDPOINT")
                .env("HF_ENDPOINT", hub.url())
                .env("PERF_CACHE_DIR", cache.path());
        },
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("6 of 7 trajectories are candidates (1 shorter than 240 characters"),
        "the tool split's rows only (not the xml split's), the short one dropped: {}",
        r.stderr
    );
    let convs = crate::conversations::conversations(&r, "parallel_1_number_4");
    assert_eq!(convs.len(), 4);
    crate::conversations::assert_live_history(&convs);
    let tok = tokenizers::Tokenizer::from_file(tokenizer.join("tokenizer.json")).expect("tok");
    let count = |t: &str| tok.encode(t, false).expect("encode").len();
    for (id, turns) in &convs {
        assert!(
            (2..=3).contains(&turns.len()),
            "conversation {id}: {} turns",
            turns.len()
        );
        // Only user messages, no system prompt, no recorded replies; every text from one
        // trajectory of the tool split.
        let first = &turns[0].messages;
        assert_eq!(first.len(), 1, "conversation {id}: {first:?}");
        assert_eq!(first[0].0, "user");
        let n = first[0].1.split_whitespace().next().expect("words")[..3].to_string();
        assert!(!first[0].1.contains("t99"), "the xml split is not read");
        let tokens = count(&first[0].1);
        assert!(
            (20..=30).contains(&tokens),
            "conversation {id}: turn 1 has {tokens} tokens"
        );
        for t in &turns[1..] {
            let added = t.messages.last().expect("a message");
            assert_eq!(added.0, "user");
            assert!(
                added.1.starts_with(&n),
                "conversation {id}: {added:?} from trajectory {n}"
            );
            assert!(count(&added.1) <= 25, "{added:?}");
        }
    }
    // Without a tokenizer the live build says what it needs.
    let r = crate::engine::perf_run_from(
        &["--api", "mock", "--port", "0"],
        &[
            "--dataset",
            "swe_smith",
            "--multi-turn",
            "--data-source",
            "huggingface",
        ],
        |cmd| {
            cmd.env("HF_ENDPOINT", hub.url())
                .env("PERF_CACHE_DIR", cache.path());
        },
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("needs --tokenizer-path"), "{}", r.stderr);
}

/// A decision service on 127.0.0.1: System One at `.../systemone`, AutoTrust at `.../decide`.
/// It answers each question with a valid distribution (all mass on the first option; noul 0.25;
/// a uniform score), except a question whose instructions say `WRONG`, whose probabilities sum
/// to 0.5, and one that says `OTHER`, answered with options it did not offer;
/// `usage.input_tokens` is the instructions' length in bytes. Keeps every body.
struct DecisionService {
    port: u16,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl DecisionService {
    fn start() -> Self {
        use serde_json::json;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut length = 0;
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok() && header.trim() != "" {
                    if let Some((k, v)) = header.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    header.clear();
                }
                let mut body = vec![0; length];
                if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                    continue;
                }
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                kept.lock().expect("lock").push(body.clone());
                let answer = if path.ends_with("/systemone") {
                    let q = &body["questions"]["answer"];
                    let wrong = q["instructions"].as_str().unwrap_or("").contains("WRONG");
                    let tokens = q["instructions"].as_str().unwrap_or("").len();
                    let mut a = match q["type"].as_str() {
                        Some("choice") => {
                            let labels: Vec<&String> =
                                q["criteria"].as_object().expect("options").keys().collect();
                            let p: serde_json::Map<String, serde_json::Value> = labels
                                .iter()
                                .enumerate()
                                .map(|(i, l)| ((*l).clone(), json!(if i == 0 { 1.0 } else { 0.0 })))
                                .collect();
                            json!({"type": "choice", "probabilities": p, "choice": labels[0]})
                        }
                        Some("noul") => json!({"type": "noul", "noul": 0.25}),
                        _ => {
                            let levels = q["criteria"].as_array().expect("levels");
                            let n = levels.len();
                            let p: serde_json::Map<String, serde_json::Value> = (0..n)
                                .map(|i| (i.to_string(), json!(1.0 / n as f64)))
                                .collect();
                            let legend: serde_json::Map<String, serde_json::Value> = levels
                                .iter()
                                .enumerate()
                                .map(|(i, l)| (i.to_string(), l.clone()))
                                .collect();
                            let score = (0..n).map(|i| i as f64 / n as f64).sum::<f64>();
                            json!({"type": "score", "probabilities": p, "score": score, "legend": legend})
                        }
                    };
                    if q["instructions"].as_str().unwrap_or("").contains("OTHER") {
                        a = json!({"type": "choice", "probabilities": {"x": 1.0, "y": 0.0}, "choice": "x"});
                    }
                    if wrong {
                        // Half of each probability: the distribution sums to 0.5.
                        if let Some(p) = a["probabilities"].as_object_mut() {
                            for v in p.values_mut() {
                                *v = json!(v.as_f64().unwrap_or(0.0) / 2.0);
                            }
                        }
                    }
                    json!({"model": body["model"], "answers": {"answer": a}, "usage": {"input_tokens": tokens, "output_tokens": 1}})
                } else {
                    let options = body["options"].as_array().cloned().unwrap_or_default();
                    let n = options.len().max(2);
                    let mut p = vec![0.0; n];
                    p[0] = 1.0;
                    json!({"model": "at-1", "kind": body["kind"], "options": options, "probabilities": p, "choice_index": 0, "choice": options.first()})
                };
                let answer = answer.to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        DecisionService { port, bodies }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().expect("lock").clone()
    }
}

/// success, first_chunk_latency, time_per_output_token, error.
type DecisionRow = (bool, Option<f64>, Option<f64>, Option<String>);

#[test]
fn open_decisions_go_to_a_decision_service_and_only_valid_distributions_succeed() {
    use serde_json::json;
    let records = [
        json!({"id": "c1", "state": {"text": "The sky is blue."}, "question": {"type": "choice", "instructions": "What colour is the sky?", "criteria": {"a": "blue", "b": "green"}, "answer_prefix": null}, "gold": "a"}),
        json!({"id": "n1", "state": "It rains.", "question": {"type": "noul", "instructions": "Is it raining?", "criteria": null}, "gold": 1}),
        json!({"id": "s1", "state": {"review": "fine"}, "question": {"type": "score", "instructions": "Rate it WRONG", "criteria": ["bad", "ok", "good"]}, "gold": 2}),
        json!({"id": "c2", "state": "x", "question": {"type": "choice", "instructions": "Pick OTHER", "criteria": {"a": "one", "b": "two"}}, "gold": "a"}),
    ];
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    let repo = "/api/v1/datasets/evalscope/OpenDecisions";
    let listing = json!({"Code": 200, "Data": {"Files": [
        {"Path": "README.md", "Type": "blob"},
        {"Path": "data", "Type": "tree"},
        {"Path": "data/test.jsonl", "Type": "blob"},
        {"Path": "data/train.jsonl", "Type": "blob"},
    ]}});
    let hub = LocalHub::start(HashMap::from([
        (
            format!("{repo}/repo/tree?Revision=master&Recursive=True&PageNumber=1&PageSize=200"),
            listing.to_string().into_bytes(),
        ),
        (
            format!("{repo}/repo?Revision=master&FilePath=data%2Ftest.jsonl"),
            lines.into_bytes(),
        ),
    ]));
    let service = DecisionService::start();
    let dir = tempfile::tempdir().expect("tmp");
    let env = modelscope_env(&hub, dir.path());
    let url = service.url("/v1");
    let args = [
        "--api",
        "systemone",
        "--url",
        url.as_str(),
        "--model",
        "so-1",
        "--dataset",
        "open_decisions",
        "-n",
        "4",
        "--outputs-dir",
        "outputs",
        "--no-timestamp",
        "--name",
        "t",
    ];
    let (code, out) = perf_with_env(dir.path(), &args, &env);
    assert_eq!(code, Some(0), "{out}");
    // Each record as System One's body, in order, the run's model added; no test request.
    let sent = service.bodies();
    assert_eq!(
        sent,
        [
            json!({"state": {"text": "The sky is blue."}, "questions": {"answer": {"type": "choice", "instructions": "What colour is the sky?", "criteria": {"a": "blue", "b": "green"}}}, "model": "so-1"}),
            json!({"state": "It rains.", "questions": {"answer": {"type": "noul", "instructions": "Is it raining?"}}, "model": "so-1"}),
            json!({"state": {"review": "fine"}, "questions": {"answer": {"type": "score", "instructions": "Rate it WRONG", "criteria": ["bad", "ok", "good"]}}, "model": "so-1"}),
            json!({"state": "x", "questions": {"answer": {"type": "choice", "instructions": "Pick OTHER", "criteria": {"a": "one", "b": "two"}}}, "model": "so-1"}),
        ]
    );
    let run = dir.path().join("outputs/t/parallel_1_number_4");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("benchmark_summary.json")).expect("summary"),
    )
    .expect("JSON");
    assert_eq!(summary["Success Requests"], 2, "{summary}");
    assert_eq!(
        summary["Failed Requests"], 2,
        "the WRONG answer sums to 0.5, the OTHER one has options it was not asked"
    );
    assert_eq!(
        summary["Not Applicable Metrics"],
        json!(["Avg TTFT (ms)", "Avg TPOT (ms)", "Avg ITL (ms)"])
    );
    let keys: Vec<&str> = summary
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let at = |k: &str| keys.iter().position(|x| *x == k).expect(k);
    assert_eq!(
        at("Not Applicable Metrics"),
        at("Avg Input Tokens") + 1,
        "{keys:?}"
    );
    // usage.input_tokens: the instructions' bytes (23 and 14), averaged; the input
    // throughput is that mean times the request throughput, as evalscope computes it.
    assert_eq!(summary["Avg Input Tokens"], 18.5);
    let expected = 18.5 * summary["Req Throughput (req/s)"].as_f64().expect("rps");
    let input = summary["Input Throughput (tok/s)"].as_f64().expect("input");
    assert!(
        (input - expected).abs() <= expected * 1e-3 + 0.01,
        "{input} vs {expected}"
    );
    let db = rusqlite::Connection::open(run.join("benchmark_data.db")).expect("db");
    let rows: Vec<DecisionRow> = db
        .prepare("SELECT success, first_chunk_latency, time_per_output_token, error FROM result ORDER BY request_index")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(rows[0].0);
    assert_eq!(
        (rows[0].1, rows[0].2),
        (Some(0.0), Some(0.0)),
        "TTFT and TPOT 0, as evalscope writes them"
    );
    assert!(!rows[2].0);
    assert!(
        rows[2]
            .3
            .as_deref()
            .is_some_and(|e| e.contains("invalid decision response") && e.contains("sum to 0.5")),
        "{rows:?}"
    );

    assert!(
        rows[3]
            .3
            .as_deref()
            .is_some_and(|e| e.contains("are not the question's")),
        "{rows:?}"
    );

    // AutoTrust from JSON bodies; a body with generation controls fails with the reason.
    let bodies = dir.path().join("bodies.jsonl");
    std::fs::write(
        &bodies,
        concat!(
            r#"{"kind": "choice", "state": "s", "question": "Pick one", "options": ["x", "y"], "thinking": "off"}"#,
            "\n",
            r#"{"kind": "noul", "state": "s", "question": "Yes?", "max_tokens": 5}"#,
            "\n"
        ),
    )
    .expect("write");
    let url = service.url("/decide");
    let args = [
        "--api",
        "autotrust",
        "--url",
        url.as_str(),
        "--model",
        "at-1",
        "--dataset",
        "line_by_line",
        "--dataset-path",
        bodies.to_str().expect("path"),
        "-n",
        "2",
        "--outputs-dir",
        "outputs",
        "--no-timestamp",
        "--name",
        "at",
    ];
    let (code, out) = perf_with_env(dir.path(), &args, &env);
    assert_eq!(code, Some(0), "{out}");
    let db = rusqlite::Connection::open(
        dir.path()
            .join("outputs/at/parallel_1_number_2/benchmark_data.db"),
    )
    .expect("db");
    let rows: Vec<(bool, Option<String>)> = db
        .prepare("SELECT success, error FROM result ORDER BY request_index")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(rows[0].0, "{rows:?}");
    assert!(
        rows[1]
            .1
            .as_deref()
            .is_some_and(|e| e.contains("generation controls") && e.contains("max_tokens")),
        "{rows:?}"
    );
    assert_eq!(service.bodies().len(), 5, "the refused body is never sent");

    // The parquet form of the split, from --dataset-path.
    let (data, _) = parquet_dataset("open_decisions");
    let url = service.url("/v1/systemone");
    let args = [
        "--api",
        "systemone",
        "--url",
        url.as_str(),
        "--model",
        "so-1",
        "--dataset",
        "open_decisions",
        "--dataset-path",
        data.path().to_str().expect("path"),
        "-n",
        "2",
        "--outputs-dir",
        "outputs",
        "--no-timestamp",
        "--name",
        "pq",
    ];
    let (code, out) = perf_with_env(dir.path(), &args, &env);
    assert_eq!(code, Some(0), "{out}");
    let sent = service.bodies();
    assert_eq!(
        sent[5]["questions"]["answer"],
        json!({"type": "choice", "instructions": "Parquet question 0", "criteria": {"a": "yes", "b": "no"}}),
        "the struct's null field left out, the map an object"
    );
    assert_eq!(sent[5]["state"], "parquet state 0");
    assert!(sent[5].get("gold").is_none());
}
