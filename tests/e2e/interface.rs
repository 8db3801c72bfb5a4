//! The plugin interface as vendors meet it: a library built against the frozen 0.2.0 copy runs
//! in today's perf; one built against an incompatibly altered copy is refused with the type
//! named; a host of a pretend next version still loads the 0.2.0 library; plugin failures
//! inside a run are failures; an SDK example builds when copied out of the repository; and
//! `--plugin` works the way the docs say.

use std::path::Path;
use std::process::Command;

use perf_tests::{cdylib, fixture_artifact, perf, perf_in, repo_root, text, Simulator};
use rusqlite::Connection;
use serde_json::Value;

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn db(dir: &Path, label: &str) -> Connection {
    Connection::open(dir.join(label).join("benchmark_data.db")).expect("the run's database")
}

fn count(conn: &Connection, filter: &str) -> i64 {
    conn.query_row(
        &format!("SELECT COUNT(*) FROM result WHERE {filter}"),
        [],
        |r| r.get(0),
    )
    .expect("count")
}

#[test]
fn the_frozen_0_2_0_library_runs_end_to_end_in_this_perf() {
    let sim = Simulator::start(&["--mock-output-tokens", "6"]);
    let lib = fixture_artifact("libvendor_plugin.so");
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = dir.path().join("sink.jsonl");
    let sink_arg = format!(r#"vendor_jsonl={{"path": "{}"}}"#, utf8(&sink));
    let url = sim.url("/v1");
    let out = perf_in(
        dir.path(),
        &[
            "--plugin",
            utf8(&lib),
            "--api",
            "vendor",
            "--url",
            &url,
            "--model",
            "m",
            "--dataset",
            "vendor_words",
            "--dataset-args",
            r#"{"count": 3}"#,
            "--sink",
            &sink_arg,
            "-n",
            "12",
            "--parallel",
            "4",
            "--max-tokens",
            "6",
            "--outputs-dir",
            "out",
            "--no-timestamp",
            "--name",
            "vendor",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let run = dir.path().join("out/vendor");
    let conn = db(&run, "parallel_4_number_12");
    assert_eq!(count(&conn, "1"), 12);
    assert_eq!(
        count(&conn, "success = 1 AND completion_tokens = 6"),
        12,
        "usage decoded by the 0.2.0 decoder"
    );
    let lines: Vec<Value> = std::fs::read_to_string(&sink)
        .expect("the 0.2.0 sink wrote")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let records = lines.iter().filter(|l| l["event"] == "record").count();
    assert_eq!(records, 12, "{lines:?}");
    let end = lines
        .iter()
        .find(|l| l["event"] == "run_end")
        .expect("run_end");
    assert_eq!(end["succeeded"], 12.0);

    let listed = perf(&["plugins", "--verbose", "--plugin", utf8(&lib)]);
    let (stdout, _) = text(&listed);
    assert!(
        stdout.contains(&format!(
            "api vendor_chat ({}, interface 0.2.0)",
            lib.display()
        )),
        "{stdout}"
    );
}

#[test]
fn a_library_of_an_incompatible_layout_is_refused_naming_the_type_and_both_versions() {
    let lib = fixture_artifact("libvendor_plugin_altered.so");
    let out = perf(&["--plugin", utf8(&lib), "plugins"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let host = perf_plugin_api::INTERFACE_VERSION;
    assert!(
        stderr.contains(&format!(
            "plugin {}: the library says perf-plugin-api 0.2.0 and this perf implements {host}, but their types differ",
            lib.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("type `HttpRequest` (reached through new_api_adapter() > build_request())"),
        "{stderr}"
    );
    assert!(
        stderr.contains("field `priority` in the library where this perf has `headers`"),
        "{stderr}"
    );
}

#[test]
fn a_pretend_next_interface_still_loads_and_runs_the_0_2_0_library() {
    let host = fixture_artifact("next-interface-host");
    let lib = fixture_artifact("libvendor_plugin.so");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(host)
        .args([utf8(&lib), utf8(dir.path())])
        .output()
        .expect("runs");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["library_interface"], "0.2.0");
    assert_eq!(
        report["next_root_entry"],
        Value::Null,
        "a root-module entry the library predates reads as missing"
    );
    assert_eq!(report["request_built"], true);
    for refused in ["newer_prompt_refused", "newer_part_refused"] {
        let message = report[refused].as_str().unwrap_or_default();
        assert!(
            message.contains("of a newer interface than this plugin's perf-plugin-api 0.2.0"),
            "{refused}: {report}"
        );
    }
    assert_eq!(
        report["decoded"],
        serde_json::json!(["output:Hi", "usage:4/1"])
    );
    assert_eq!(
        report["prompts"],
        serde_json::json!(["vendor prompt 1", "vendor prompt 2"])
    );
    assert_eq!(report["sink_errors"], serde_json::json!([]));
    assert_eq!(report["sink_method"], "not called: the library predates it");
    let record = report["sink_lines"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["event"] == "record"))
        .expect("the record reached the 0.2.0 sink");
    assert_eq!(record["request_index"], 3);
    assert_eq!(record["ttft_s"], 0.2);
    assert_eq!(
        record["extension_fields"], 1,
        "the newer extension field travels, unread"
    );
}

#[test]
fn decode_and_new_decoder_panics_fail_their_requests_as_plugin_and_the_rest_succeed() {
    let sim = Simulator::start(&[]);
    let lib = cdylib("panicking-plugin");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sim.url("/v1");
    let out = perf_in(
        dir.path(),
        &[
            "--plugin",
            utf8(&lib),
            "--api",
            "panicky",
            "--api-args",
            r#"{"decode_panic_every": 5, "new_decoder_panic_every": 7}"#,
            "--url",
            &url,
            "--model",
            "m",
            "--prompt",
            "hi",
            "-n",
            "35",
            "--parallel",
            "3",
            "--no-test-connection",
            "--outputs-dir",
            "out",
            "--no-timestamp",
            "--name",
            "p",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let conn = db(&dir.path().join("out/p"), "parallel_3_number_35");
    // Decoders 5, 10, ..., 35 panic in decode; new_decoder panics on calls 7, 14, ..., 35.
    let decode = count(
        &conn,
        "success = 0 AND error_kind = 'plugin' AND error LIKE '%failed in decode: plugin panicked in decode: decode panic requested (at %'",
    );
    let new_decoder = count(
        &conn,
        "success = 0 AND error_kind = 'plugin' AND error LIKE '%failed in new_decoder: plugin panicked in new_decoder: new_decoder panic requested (decoder %'",
    );
    assert_eq!(new_decoder, 5, "{stderr}");
    assert_eq!(decode, 6, "decoder 35 panicked in new_decoder first");
    assert_eq!(count(&conn, "success = 1"), 35 - 11);
    assert_eq!(count(&conn, "success = 0"), 11);
    // Each distinct message once on stderr, and nothing of the plugin's own panic hook.
    assert_eq!(
        stderr
            .matches("failed in decode: plugin panicked in decode")
            .count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("panicked at"), "{stderr}");
}

#[test]
fn an_sdk_example_builds_when_copied_out_of_the_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("jsonl-sink");
    let source = repo_root().join("sdk-examples/jsonl-sink");
    std::fs::create_dir_all(copy.join("src")).expect("mkdir");
    std::fs::copy(source.join("src/lib.rs"), copy.join("src/lib.rs")).expect("copy lib.rs");
    // As a vendor does before the interface is published: point the dependency at it by path.
    let manifest = std::fs::read_to_string(source.join("Cargo.toml")).expect("manifest");
    let api = repo_root().join("plugin-api");
    let manifest = manifest.replace("path = \"../../plugin-api\"", &format!("path = {:?}", api));
    assert!(manifest.contains(utf8(&api)), "{manifest}");
    std::fs::write(copy.join("Cargo.toml"), manifest).expect("write manifest");
    let build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--offline", "--quiet"])
        .current_dir(&copy)
        .env("CARGO_TARGET_DIR", repo_root().join("target/fixtures"))
        .output()
        .expect("cargo runs");
    let (stdout, stderr) = text(&build);
    assert!(build.status.success(), "{stdout}\n{stderr}");
    let lib = repo_root().join(format!(
        "target/fixtures/debug/{}jsonl_sink{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let listed = perf(&["plugins", "--plugin", utf8(&lib)]);
    let (stdout, stderr) = text(&listed);
    assert_eq!(listed.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("jsonl"), "{stdout}");
}

#[test]
fn plugin_paths_work_as_documented() {
    let lib = cdylib("csv-dataset");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&lib, dir.path().join("libcsv.so")).expect("copy");
    std::fs::write(dir.path().join("fake.so"), "not a library\n").expect("write");
    for args in [
        ["--plugin", "libcsv.so", "plugins"],
        ["plugins", "--plugin", "libcsv.so"],
    ] {
        let out = perf_in(dir.path(), &args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            stdout.contains("libcsv.so"),
            "a bare name is a file in the current directory ({args:?}): {stdout}"
        );
    }
    let out = perf_in(dir.path(), &["--plugin", "fake.so", "plugins"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("plugin fake.so: not a loadable dynamic library (the file is not a compiled library at all"),
        "{stderr}"
    );
    let out = perf_in(dir.path(), &["--model", "m", "plugins"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--model is a benchmark flag; `perf plugins` does not take it"),
        "{stderr}"
    );
}

#[test]
fn the_frozen_copy_is_the_interface_as_released() {
    // While perf-plugin-api is at 0.2.0 the frozen copy must be exactly it; once the interface
    // moves on, the copy stays as it was (and the tests above keep loading its library).
    let ours = perf_plugin_api::INTERFACE_VERSION;
    let frozen = repo_root().join("tests/fixtures/interface-0.2.0/plugin-api");
    let manifest = std::fs::read_to_string(frozen.join("Cargo.toml")).expect("frozen manifest");
    assert!(manifest.contains("\nversion = \"0.2.0\"\n"), "{manifest}");
    let (major, minor) = (ours.split('.').next(), ours.split('.').nth(1));
    assert_eq!((major, minor), (Some("0"), Some("2")), "{ours}");
    if ours != "0.2.0" {
        return;
    }
    let mut differing = Vec::new();
    let current = repo_root().join("plugin-api/src");
    let mut stack = vec![current.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(&current).expect("inside");
            let theirs = std::fs::read(frozen.join("src").join(rel)).unwrap_or_default();
            if std::fs::read(&path).expect("read") != theirs {
                differing.push(rel.display().to_string());
            }
        }
    }
    assert!(
        differing.is_empty(),
        "plugin-api/src differs from the frozen 0.2.0 copy in {differing:?}: a change to the released interface bumps its version (see plugin-api/CHANGELOG.md)"
    );
}

/// Answers every request on 127.0.0.1 with `body` (status 200, `content_type`) and closes.
fn serve_garbage(content_type: &'static str, body: &'static str) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut request = vec![0; length];
            let _ = reader.read_exact(&mut request);
            let mut writer = stream;
            let _ = write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn a_response_the_adapter_cannot_decode_at_all_fails_as_decode() {
    for (stream, content_type, body, message) in [
        (
            "--stream",
            "text/event-stream",
            "data: <html>\n\ndata: not json either\n\n",
            "none of the response's 2 event(s) could be decoded; the first:",
        ),
        (
            "--no-stream",
            "text/html",
            "<html><body>Bad gateway</body></html>",
            "the response could not be decoded:",
        ),
    ] {
        let port = serve_garbage(content_type, body);
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
        let out = perf_in(
            dir.path(),
            &[
                "--url",
                &url,
                "--model",
                "m",
                "--prompt",
                "hi",
                stream,
                "-n",
                "3",
                "--no-test-connection",
                "--outputs-dir",
                "out",
                "--no-timestamp",
                "--name",
                "d",
            ],
        );
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "every request failed: {stderr}");
        let conn = db(&dir.path().join("out/d"), "parallel_1_number_3");
        let pattern = message.replace('\'', "''");
        let filter = format!("error_kind = 'decode' AND error LIKE '{pattern}%'");
        assert_eq!(count(&conn, &filter), 3, "{stream}: {stderr}");
    }
}
