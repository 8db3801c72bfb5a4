//! A server that keeps connections alive in its headers but closes a connection when the next
//! request arrives on it, without answering (llama.cpp's server does this after every streamed
//! response). Such a request was never processed: perf sends it again once on a fresh
//! connection, counts it, and every request succeeds, on both transports; after a few such
//! closes perf stops reusing this server's connections, so the retries stay few.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

use perf_tests::{perf_bin, text};
use serde_json::Value;

const SSE: &str = concat!(
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
    "data: [DONE]\n\n",
);

/// Reads one request; `false` at the end of the stream.
fn read_request(reader: &mut BufReader<TcpStream>) -> bool {
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).is_ok()
}

fn serve(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    // The first request on a connection is answered; the second is met with a close.
    if !read_request(&mut reader) {
        return;
    }
    let chunk = format!("{:x}\r\n{SSE}\r\n0\r\n\r\n", SSE.len());
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nKeep-Alive: timeout=5, max=100\r\nTransfer-Encoding: chunked\r\n\r\n";
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(chunk.as_bytes());
    let _ = writer.flush();
    let _ = read_request(&mut reader);
}

fn start() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

fn run(client: Option<&str>) {
    let port = start();
    let dir = tempfile::tempdir().expect("tmp");
    let mut cmd = Command::new(perf_bin());
    cmd.args([
        "--url",
        &format!("http://127.0.0.1:{port}/v1/chat/completions"),
        "--model",
        "m",
        "--prompt",
        "hello",
        "-n",
        "60",
        "--parallel",
        "3",
        "--outputs-dir",
        "outputs",
        "--no-timestamp",
        "--name",
        "t",
    ])
    .current_dir(dir.path());
    if let Some(c) = client {
        cmd.env("PERF_HTTP_CLIENT", c);
    }
    let out = cmd.output().expect("perf runs");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let summary = dir
        .path()
        .join("outputs/t/parallel_3_number_60/benchmark_summary.json");
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(summary).expect("summary")).expect("JSON");
    assert_eq!(s["Success Requests"], 60, "{s}");
    let retries = s["Reused-Connection Retries"].as_u64().expect("retries");
    assert!(retries >= 1, "the closes were met and retried: {s}");
    // The evidence (3 closed reuses) plus what was already in flight on reused connections.
    assert!(retries <= 3 + 3, "perf stopped reusing: {s}");
    let fresh = s["Fresh-Connection Requests"].as_u64().expect("fresh");
    assert!(fresh >= 60 - 12, "the rest went on fresh connections: {s}");
    assert!(
        stderr.contains("closes its connections after its responses"),
        "{stderr}"
    );
}

#[test]
fn unanswered_closes_of_reused_connections_are_retried_once_and_counted() {
    run(None);
}

#[test]
fn unanswered_closes_are_retried_through_reqwest_too() {
    run(Some("reqwest"));
}
