//! Interruptions and kills against the simulator's own log of the responses it completed:
//! Ctrl-C and SIGTERM write every measured request and the summary files; a second Ctrl-C
//! cancels what is in flight and still writes everything; SIGKILL loses at most about a
//! second of completed requests (rows are committed on a time bound).

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use perf_tests::{perf_bin, Simulator};
use rusqlite::Connection;
use serde_json::Value;

fn start_perf(dir: &Path, url: &str, n: &str, max_tokens: &str) -> Child {
    Command::new(perf_bin())
        .args([
            "--url",
            url,
            "--model",
            "m",
            "--prompt",
            "hi",
            "-n",
            n,
            "--parallel",
            "4",
            "--max-tokens",
            max_tokens,
            "--outputs-dir",
            "out",
            "--no-timestamp",
            "--name",
            "s",
            "--no-test-connection",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("perf starts")
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signals our own child process.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// The simulator's log: request id -> epoch time of its last chunk, for completed responses.
fn server_log(path: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(path)
        .expect("the simulator's log")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let id = v["id"].as_str()?.to_string();
            let last = v["chunks"].as_array()?.last()?.as_f64()?;
            Some((id, last))
        })
        .collect()
}

/// (request id, success, error kind) of every row.
fn rows(db: &Path) -> Vec<(String, i64, Option<String>)> {
    let conn = Connection::open(db).expect("the run's database");
    let mut query = conn
        .prepare("SELECT request_id, success, error_kind FROM result")
        .expect("query");
    let rows = query
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    rows
}

fn run_dir(dir: &Path, n: &str) -> std::path::PathBuf {
    dir.join(format!("out/s/parallel_4_number_{n}"))
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("perf did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_and_sigterm_write_every_measured_request_and_the_summary() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("server.jsonl");
        let sim = Simulator::start(&[
            "--mock-output-tokens",
            "20",
            "--mock-log",
            log.to_str().expect("utf-8"),
        ]);
        let mut perf = start_perf(dir.path(), &sim.url("/v1/chat/completions"), "100000", "20");
        std::thread::sleep(Duration::from_secs(2));
        signal(&perf, sig);
        let code = wait_with_timeout(&mut perf, Duration::from_secs(20));
        assert_eq!(code, Some(130), "signal {sig}");
        sim.stop();
        let completed: HashSet<String> = server_log(&log).into_iter().map(|(id, _)| id).collect();
        let run = run_dir(dir.path(), "100000");
        let rows = rows(&run.join("benchmark_data.db"));
        let ok: HashSet<String> = rows
            .iter()
            .filter(|r| r.1 == 1)
            .map(|r| r.0.clone())
            .collect();
        assert!(!ok.is_empty(), "signal {sig}");
        assert_eq!(
            ok, completed,
            "signal {sig}: every response the server completed is a row"
        );
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(run.join("benchmark_summary.json")).expect("summary"),
        )
        .expect("json");
        assert_eq!(summary["Success Requests"].as_u64(), Some(ok.len() as u64));
        assert!(run.join("benchmark_percentile.json").is_file());
        let report = std::fs::read_to_string(dir.path().join("out/s/perf_report.html"))
            .expect("an interrupted run still writes its report");
        assert!(
            report.contains("id=\"run-0\""),
            "signal {sig}: the run is in it"
        );
    }
}

#[test]
fn a_second_ctrl_c_cancels_in_flight_requests_and_still_writes_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Simulator::start(&["--mock-output-tokens", "2000"]);
    let mut perf = start_perf(dir.path(), &sim.url("/v1/chat/completions"), "100", "2000");
    std::thread::sleep(Duration::from_millis(1500));
    signal(&perf, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let second = Instant::now();
    signal(&perf, libc::SIGINT);
    let code = wait_with_timeout(&mut perf, Duration::from_secs(10));
    assert_eq!(code, Some(130));
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "the second interrupt does not wait the grace period"
    );
    let run = run_dir(dir.path(), "100");
    let rows = rows(&run.join("benchmark_data.db"));
    // Four requests were in flight (20 s each): each is a row, cancelled.
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.2.as_deref() == Some("cancelled")),
        "{rows:?}"
    );
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("benchmark_summary.json")).expect("summary"),
    )
    .expect("json");
    assert_eq!(summary["Interrupted Requests"], 4);
}

#[test]
fn sigkill_loses_at_most_about_a_second_of_completed_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.jsonl");
    let sim = Simulator::start(&[
        "--mock-output-tokens",
        "4",
        "--mock-log",
        log.to_str().expect("utf-8"),
    ]);
    let mut perf = start_perf(dir.path(), &sim.url("/v1/chat/completions"), "1000000", "4");
    std::thread::sleep(Duration::from_secs(3));
    signal(&perf, libc::SIGKILL);
    let killed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let _ = perf.wait();
    sim.stop();
    let completed = server_log(&log);
    let recorded: HashSet<String> = rows(&run_dir(dir.path(), "1000000").join("benchmark_data.db"))
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert!(!recorded.is_empty());
    // Completed more than 1.5 s before the kill: committed (rows are committed at least every
    // second).
    let due: Vec<&String> = completed
        .iter()
        .filter(|(_, at)| *at < killed - 1.5)
        .map(|(id, _)| id)
        .collect();
    assert!(
        due.len() > 20,
        "enough requests completed to judge: {}",
        due.len()
    );
    let lost: Vec<&&String> = due.iter().filter(|id| !recorded.contains(**id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} lost: {:?}",
        lost.len(),
        due.len(),
        &lost[..lost.len().min(5)]
    );
}

#[test]
fn the_connection_test_has_a_request_id_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.jsonl");
    let sim = Simulator::start(&["--mock-log", log.to_str().expect("utf-8")]);
    let out = Command::new(perf_bin())
        .args([
            "--url",
            &sim.url("/v1/chat/completions"),
            "--model",
            "m",
            "--prompt",
            "hi",
            "-n",
            "2",
            "--max-tokens",
            "4",
            "--outputs-dir",
            "out",
            "--no-timestamp",
            "--name",
            "t",
        ])
        .current_dir(dir.path())
        .output()
        .expect("perf runs");
    assert_eq!(out.status.code(), Some(0));
    sim.stop();
    let ids: Vec<String> = server_log(&log).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids.len(),
        3,
        "the test request and two measured ones: {ids:?}"
    );
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 3, "{ids:?}");
    assert!(ids.iter().any(|id| id.ends_with("-test")), "{ids:?}");
}
