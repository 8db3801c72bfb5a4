//! The plugin host with real libraries: the SDK examples through the host's handles, every
//! load failure through the binary, and panics inside plugin calls.

use std::path::PathBuf;

use perf_host::framing::{Event, Framer};
use perf_host::plugin_host::{InstantiateError, PluginRegistry};
use perf_plugin_api::sdk::{ApiConfig, DatasetConfig, SinkConfig};
use perf_plugin_api::{
    ErrorKind, FailureKind, Framing, OutputKind, PromptItem, PromptItem_NE, ROption, RVec,
    RequestContext, RequestRecord, RequestTimes, ResponseEvent, RunInfo, RunSummary, SessionInfo,
};
use perf_tests::{cdylib, perf, text};
use serde_json::{json, Value};

fn registry(crates: &[&str]) -> PluginRegistry {
    let paths: Vec<PathBuf> = crates.iter().map(|c| cdylib(c)).collect();
    match PluginRegistry::load(&paths) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

fn ctx() -> RequestContext {
    RequestContext::new(0, Some(64))
}

fn prompt(p: PromptItem) -> PromptItem_NE {
    PromptItem_NE::new(p)
}

#[test]
fn perf_plugins_lists_builtins_and_loaded_libraries() {
    let acme = cdylib("acme-ndjson-api");
    let csv = cdylib("csv-dataset");
    let jsonl = cdylib("jsonl-sink");
    let out = perf(&[
        "plugins",
        "--plugin",
        acme.to_str().expect("utf-8 path"),
        "--plugin",
        csv.to_str().expect("utf-8 path"),
        "--plugin",
        jsonl.to_str().expect("utf-8 path"),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let row = |kind: &str, id: &str| {
        stdout
            .lines()
            .find(|l| {
                l.split_whitespace().nth(1) == Some(kind) && l.split_whitespace().nth(2) == Some(id)
            })
            .unwrap_or_else(|| panic!("no {kind} {id} row in:\n{stdout}"))
            .to_string()
    };
    assert!(row("api", "openai").contains("built-in"));
    assert!(row("api", "acme").contains("0.3.0"));
    assert!(row("api", "acme").contains(acme.to_str().expect("utf-8")));
    assert!(row("dataset", "csv").contains("CSV"));
    assert!(row("sink", "jsonl").contains(jsonl.to_str().expect("utf-8")));
}

#[test]
fn acme_adapter_builds_its_own_request_format() {
    let reg = registry(&["acme-ndjson-api"]);
    let config = ApiConfig {
        model: "acme-large".into(),
        stream: true,
        temperature: Some(0.2),
        options: json!({"priority": "high"}),
        ..ApiConfig::default()
    };
    let adapter = reg.api_adapter("acme", &config).expect("adapter");
    let req = adapter
        .build_request(&prompt(PromptItem::Text("Say hello".into())), &ctx())
        .expect("request");
    assert_eq!(req.framing, Framing::NdJson);
    let body: Value = serde_json::from_slice(&req.body).expect("json body");
    assert_eq!(
        body,
        json!({"engine": "acme-large", "input": {"text": "Say hello"},
               "generation": {"max_new_tokens": 64, "temperature": 0.2},
               "priority": "high", "stream": true})
    );
    let err = adapter
        .build_request(&prompt(PromptItem::TokenIds(vec![1, 2].into())), &ctx())
        .expect_err("token ids are not supported by this API");
    assert_eq!(err.kind, ErrorKind::Invalid);
}

#[test]
fn acme_adapter_decodes_a_recorded_ndjson_stream_through_the_host_framer() {
    let reg = registry(&["acme-ndjson-api"]);
    let adapter = reg
        .api_adapter(
            "acme",
            &ApiConfig {
                model: "m".into(),
                stream: true,
                ..ApiConfig::default()
            },
        )
        .expect("adapter");
    let recorded = include_bytes!("data/acme_stream.ndjson");
    let mut decoder = adapter.decoder(b"{}").expect("a decoder");
    let mut framer = Framer::new(Framing::NdJson, 1 << 20);
    let mut events = RVec::new();
    let mut frames = 0;
    // Reads of 7 bytes cut lines and the two-byte "à" apart, as a network would.
    for read in recorded.chunks(7) {
        framer.push(read, &mut |e| {
            if let Event::Data(d) = e {
                frames += 1;
                decoder.decode(d, &mut events).expect("decodes");
            }
        });
    }
    framer.finish(&mut |e| {
        if let Event::Data(d) = e {
            frames += 1;
            decoder.decode(d, &mut events).expect("decodes");
        }
    });
    assert_eq!(frames, 5, "the blank line is not an event");
    let events: Vec<ResponseEvent> = events
        .iter()
        .map(|e| e.as_enum().expect("a known event").clone())
        .collect();
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            ResponseEvent::Output {
                text,
                kind: OutputKind::Content,
                ..
            } => Some(text.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Bonjour à vous");
    assert!(events.iter().any(|e| matches!(e,
        ResponseEvent::Usage(u) if u.prompt_tokens == ROption::RSome(11)
            && u.completion_tokens == ROption::RSome(4)
            && u.cached_tokens == ROption::RSome(3))));
    assert_eq!(events.last(), Some(&ResponseEvent::Done));
}

#[test]
fn csv_dataset_reads_the_configured_column_lazily_and_filters_by_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("prompts.csv");
    std::fs::write(
        &path,
        "id,question,answer\n1,\"What is 2+2, really?\",4\n2,,none\n3,Hi,short\n4,\"A question\nover two lines\",x\n",
    )
    .expect("write csv");
    let reg = registry(&["csv-dataset"]);
    let config = DatasetConfig {
        dataset_path: Some(path.to_string_lossy().into_owned()),
        min_prompt_length: 3,
        options: json!({"column": "question"}),
        ..DatasetConfig::default()
    };
    let mut source = reg.dataset_source("csv", &config, None).expect("dataset");
    let mut prompts = Vec::new();
    while let Some(item) = source.next_item().expect("item") {
        match item.prompt().expect("a known prompt") {
            PromptItem::Text(t) => prompts.push(t.to_string()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        prompts,
        vec!["What is 2+2, really?", "A question\nover two lines"]
    );
}

#[test]
fn a_rejected_plugin_configuration_names_the_plugin_and_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.csv");
    std::fs::write(&path, "prompt\nhello\n").expect("write");
    let reg = registry(&["csv-dataset"]);
    let config = DatasetConfig {
        dataset_path: Some(path.to_string_lossy().into_owned()),
        options: json!({"column": "question"}),
        ..DatasetConfig::default()
    };
    match reg.dataset_source("csv", &config, None) {
        Err(e @ InstantiateError::Rejected { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("dataset plugin 'csv'"), "{msg}");
            assert!(msg.contains("no column 'question'"), "{msg}");
            assert!(msg.contains("its columns are: prompt"), "{msg}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("an unknown column must be rejected"),
    }
    match reg.dataset_source("nope", &config, None) {
        Err(e @ InstantiateError::Unknown { .. }) => assert!(e.to_string().contains("csv")),
        _ => panic!("unknown ids are reported with the available ones"),
    }
}

fn record(i: u64) -> RequestRecord {
    RequestRecord {
        run_index: 0,
        request_index: i,
        success: i != 1,
        is_stream: true,
        http_status: if i == 1 { 503 } else { 200 },
        failure: if i == 1 {
            FailureKind::HttpStatus
        } else {
            FailureKind::None
        },
        error: if i == 1 {
            "overloaded".into()
        } else {
            "".into()
        },
        times: RequestTimes {
            intended_send: 1_764_000_000.0 + i as f64,
            sent: 1_764_000_000.001 + i as f64,
            first_byte: ROption::RSome(1_764_000_000.05 + i as f64),
            first_output: ROption::RSome(1_764_000_000.06 + i as f64),
            completed: 1_764_000_000.5 + i as f64,
        },
        latency_s: ROption::RSome(0.499),
        ttft_s: ROption::RSome(0.059),
        tpot_s: ROption::RSome(0.01),
        itl_s: vec![0.01, 0.012].into(),
        prompt_tokens: ROption::RSome(20),
        completion_tokens: ROption::RSome(3),
        cached_tokens: ROption::RNone,
        tokens_estimated: false,
        ext: Default::default(),
    }
}

#[test]
fn jsonl_sink_writes_one_line_per_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("records.jsonl");
    let reg = registry(&["jsonl-sink"]);
    let config = SinkConfig {
        options: json!({"path": path.to_string_lossy()}),
    };
    let mut sink = reg.result_sink("jsonl", &config).expect("sink");
    sink.begin(&SessionInfo {
        name: "t".into(),
        args_json: "{}".into(),
        output_dir: dir.path().to_string_lossy().as_ref().into(),
        started_unix_s: 0.0,
        ext: Default::default(),
    })
    .expect("begin");
    sink.run_start(&RunInfo {
        run_index: 0,
        label: "parallel_1_number_3".into(),
        parallel: 1,
        number: 3,
        rate: -1.0,
        ext: Default::default(),
    })
    .expect("run_start");
    for i in 0..3 {
        sink.record(&record(i)).expect("record");
    }
    sink.run_end(&RunSummary {
        run_index: 0,
        summary: RVec::new(),
        percentiles: RVec::new(),
        ext: Default::default(),
    })
    .expect("run_end");
    sink.close().expect("close");
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .expect("file written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["failure"], "http_status");
    assert_eq!(lines[1]["http_status"], 503);
    assert_eq!(lines[2]["request"], 2);
    assert_eq!(lines[0]["itl_s"], json!([0.01, 0.012]));

    let missing = reg.result_sink("jsonl", &SinkConfig::default());
    assert!(matches!(missing, Err(InstantiateError::Rejected { .. })));
}

fn load_failure(args: &[&str]) -> String {
    let mut full = vec!["plugins"];
    full.extend_from_slice(args);
    let out = perf(&full);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.is_empty(),
        "nothing is listed when a plugin fails: {stdout}"
    );
    stderr
}

#[test]
fn a_missing_file_is_named_with_a_hint() {
    let err = load_failure(&["--plugin", "./no/such/libplugin.so"]);
    assert!(
        err.contains("plugin ./no/such/libplugin.so: no such file"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_library_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, "this is text, not ELF").expect("write");
    let err = load_failure(&["--plugin", fake.to_str().expect("utf-8")]);
    assert!(
        err.contains(&format!(
            "plugin {}: not a loadable dynamic library",
            fake.display()
        )),
        "{err}"
    );
}

#[test]
fn a_library_that_is_not_a_perf_plugin_is_named() {
    let lib = cdylib("not-a-plugin");
    let err = load_failure(&["--plugin", lib.to_str().expect("utf-8")]);
    assert!(
        err.contains(&format!("plugin {}: not a perf plugin", lib.display())),
        "{err}"
    );
}

#[test]
fn an_incompatible_interface_version_says_what_to_rebuild_against() {
    let lib = cdylib("old-interface-plugin");
    let err = load_failure(&["--plugin", lib.to_str().expect("utf-8")]);
    assert!(
        err.contains(&format!(
            "plugin {}: built against perf-plugin-api 0.0.7",
            lib.display()
        )),
        "{err}"
    );
    let minor: Vec<&str> = perf_plugin_api::INTERFACE_VERSION
        .split('.')
        .take(2)
        .collect();
    assert!(
        err.contains(&format!(
            "rebuild the plugin against perf-plugin-api {}",
            minor.join(".")
        )),
        "{err}"
    );
}

#[test]
fn a_duplicate_plugin_id_names_both_libraries() {
    let lib = cdylib("csv-dataset");
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("libcsv_copy.so");
    std::fs::copy(&lib, &copy).expect("copy");
    let err = load_failure(&[
        "--plugin",
        lib.to_str().expect("utf-8"),
        "--plugin",
        copy.to_str().expect("utf-8"),
    ]);
    assert!(
        err.contains(&format!(
            "plugin {}: dataset plugin 'csv' is already provided by {}",
            copy.display(),
            lib.display()
        )),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let old = cdylib("old-interface-plugin");
    let not = cdylib("not-a-plugin");
    let err = load_failure(&[
        "--plugin",
        "missing.so",
        "--plugin",
        old.to_str().expect("utf-8"),
        "--plugin",
        not.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("3 plugin problems"), "{err}");
    assert!(err.contains("plugin missing.so"), "{err}");
    assert!(err.contains(&format!("plugin {}", old.display())), "{err}");
    assert!(err.contains(&format!("plugin {}", not.display())), "{err}");
}

#[test]
fn a_panic_inside_a_plugin_call_becomes_an_error_and_the_host_keeps_going() {
    let reg = registry(&["panicking-plugin"]);
    let adapter = reg
        .api_adapter(
            "panicky",
            &ApiConfig {
                model: "m".into(),
                ..ApiConfig::default()
            },
        )
        .expect("adapter");

    let err = adapter
        .build_request(&prompt(PromptItem::Text("panic".into())), &ctx())
        .expect_err("a panic is an error");
    assert_eq!(err.kind, ErrorKind::Panic);
    assert!(
        err.message.contains("build_request panic requested"),
        "{}",
        err.message
    );
    // The adapter is stateless and keeps serving.
    assert!(adapter
        .build_request(&prompt(PromptItem::Text("fine".into())), &ctx())
        .is_ok());

    let mut decoder = adapter.decoder(b"{}").expect("a decoder");
    let mut out = RVec::new();
    assert!(decoder.decode(b"ok", &mut out).is_ok());
    assert_eq!(
        decoder.decode(b"boom", &mut out).expect_err("panics").kind,
        ErrorKind::Panic
    );
    let after = decoder
        .decode(b"ok", &mut out)
        .expect_err("a panicked decoder refuses");
    assert!(
        after.message.contains("panicked earlier"),
        "{}",
        after.message
    );
    assert!(
        adapter
            .decoder(b"{}")
            .expect("a decoder")
            .decode(b"ok", &mut out)
            .is_ok(),
        "a new decoder works"
    );

    let mut dataset = reg
        .dataset_source("panicky", &DatasetConfig::default(), None)
        .expect("ds");
    assert!(dataset.next_item().expect("first item").is_some());
    assert_eq!(
        dataset.next_item().expect_err("panics").kind,
        ErrorKind::Panic
    );

    let mut sink = reg
        .result_sink("panicky", &SinkConfig::default())
        .expect("sink");
    assert!(sink.record(&record(0)).is_ok());
    assert_eq!(
        sink.record(&record(1)).expect_err("panics").kind,
        ErrorKind::Panic
    );
    assert!(sink.record(&record(2)).is_err());
    assert!(sink.close().is_err());

    let ctor = reg.api_adapter(
        "panicky",
        &ApiConfig {
            model: "m".into(),
            options: json!({"panic_in_new": true}),
            ..ApiConfig::default()
        },
    );
    match ctor {
        Err(InstantiateError::Rejected { error, .. }) => {
            assert_eq!(error.kind, ErrorKind::Panic);
            assert!(error.message.contains("constructor panic requested"));
        }
        _ => panic!("a panicking constructor is a rejected plugin"),
    }
}
