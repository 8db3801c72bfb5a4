//! https as it is deployed: a private CA and certificates made at test time, the simulator
//! serving TLS (`perf serve-mock --tls-cert`), and perf trusting it by each route a user has
//! (SSL_CERT_FILE as evalscope's command line takes it, SSL_CERT_DIR, --tls-ca-cert,
//! --tls-insecure), presenting a client certificate to a server that requires one, and going
//! through a proxy from the environment. Every run is timed by perf's own transport (the
//! summary says so) and its first request on each connection carries the TLS handshake time.

use std::path::Path;
use std::process::{Command, Output};

use perf_tests::tls::{Pki, Proxy};
use perf_tests::{all_text_under, perf_bin, text, Simulator};
use serde_json::Value;

/// `perf` with `args` in `dir`, with no proxy or trust variables but those in `env`.
fn perf_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(perf_bin());
    cmd.args(args).current_dir(dir);
    for var in perf_host::transport::proxy::VARIABLES
        .iter()
        .chain(&["SSL_CERT_FILE", "SSL_CERT_DIR"])
    {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("perf runs")
}

/// The simulator over https with `cert` and `key` (and `extra` flags).
fn tls_simulator(cert: &Path, key: &Path, extra: &[&str]) -> Simulator {
    let mut args = vec![
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ];
    args.extend(extra);
    Simulator::start(&args)
}

/// A benchmark as evalscope's command line writes it, four requests two at a time.
fn bench_args<'a>(url: &'a str, name: &'a str) -> Vec<&'a str> {
    vec![
        "--url",
        url,
        "--api",
        "openai",
        "--model",
        "m",
        "--parallel",
        "2",
        "--number",
        "4",
        "--prompt",
        "hello",
        "--max-tokens",
        "8",
        "--outputs-dir",
        "out",
        "--no-timestamp",
        "--name",
        name,
    ]
}

fn summary(dir: &Path, name: &str) -> Value {
    let run = dir.join("out").join(name).join("parallel_2_number_4");
    serde_json::from_slice(&std::fs::read(run.join("benchmark_summary.json")).expect("summary"))
        .expect("json")
}

fn tls_handshakes_in_db(dir: &Path, name: &str) -> (i64, i64) {
    let db = dir
        .join("out")
        .join(name)
        .join("parallel_2_number_4")
        .join("benchmark_data.db");
    let conn = rusqlite::Connection::open(db).expect("db");
    conn.query_row(
        "SELECT COUNT(*), SUM(tls_handshake_time > 0 AND connect_time > 0) FROM result",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("query")
}

/// The run succeeded over perf's timed TLS transport, and the requests that opened a
/// connection carry its handshake time.
fn assert_timed_tls_run(dir: &Path, name: &str, out: &Output) {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let s = summary(dir, name);
    assert_eq!(s["Success Requests"], 4, "{s}");
    assert!(
        s["Transport"]
            .as_str()
            .is_some_and(|t| t.starts_with("HTTP/1.1 over TLS")),
        "{s}"
    );
    assert_eq!(s["Timestamps"], "kernel receive time", "{s}");
    let new = s["New Connections"].as_u64().expect("New Connections");
    assert!((1..=2).contains(&new), "{s}");
    assert!(
        s["Avg TLS Handshake (ms)"].as_f64().expect("avg") > 0.0,
        "{s}"
    );
    let (rows, with_handshake) = tls_handshakes_in_db(dir, name);
    assert_eq!(rows, 4);
    assert_eq!(
        with_handshake as u64, new,
        "one handshake per new connection"
    );
}

#[test]
fn https_with_a_private_ca_fails_untrusted_and_works_by_every_trust_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::create(dir.path());
    let sim = tls_simulator(&pki.server_cert, &pki.server_key, &[]);
    let url = sim.https_url("/v1/chat/completions");

    // Not trusted: refused at once (a certificate does not get better by trying again), exit
    // 2, with the ways to trust it named.
    let out = perf_with(dir.path(), &bench_args(&url, "untrusted"), &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(
        stderr.contains("--tls-ca-cert") && stderr.contains("SSL_CERT_FILE"),
        "{stderr}"
    );
    assert!(!stderr.contains("retrying"), "{stderr}");

    // evalscope's command line with SSL_CERT_FILE.
    let ca = pki.ca.to_str().expect("utf-8");
    let out = perf_with(
        dir.path(),
        &bench_args(&url, "cert-file"),
        &[("SSL_CERT_FILE", ca)],
    );
    assert_timed_tls_run(dir.path(), "cert-file", &out);

    // SSL_CERT_DIR: a directory of PEM files.
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("mkdir");
    std::fs::copy(&pki.ca, certs.join("perf-test-ca.pem")).expect("copy");
    let out = perf_with(
        dir.path(),
        &bench_args(&url, "cert-dir"),
        &[("SSL_CERT_DIR", certs.to_str().expect("utf-8"))],
    );
    assert_timed_tls_run(dir.path(), "cert-dir", &out);

    // --tls-ca-cert, the system store still in place.
    let mut args = bench_args(&url, "ca-flag");
    args.extend(["--tls-ca-cert", ca]);
    let out = perf_with(dir.path(), &args, &[]);
    assert_timed_tls_run(dir.path(), "ca-flag", &out);

    // --tls-insecure: works, and says so loudly in the console and the args file.
    let mut args = bench_args(&url, "insecure");
    args.push("--tls-insecure");
    let out = perf_with(dir.path(), &args, &[]);
    assert_timed_tls_run(dir.path(), "insecure", &out);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("NOT verified"), "{stderr}");
    let args_file = dir
        .path()
        .join("out/insecure/parallel_2_number_4/benchmark_args.json");
    let dumped: Value =
        serde_json::from_slice(&std::fs::read(args_file).expect("args")).expect("json");
    assert_eq!(dumped["tls_insecure"], true);
    assert!(dumped["tls_warning"]
        .as_str()
        .is_some_and(|w| w.contains("NOT verified")));
}

#[test]
fn a_certificate_for_another_name_and_a_bad_ca_file_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::create(dir.path());
    let sim = tls_simulator(&pki.localhost_cert, &pki.localhost_key, &[]);
    let url = sim.https_url("/v1/chat/completions");
    let mut args = bench_args(&url, "wrong-name");
    args.extend(["--tls-ca-cert", pki.ca.to_str().expect("utf-8")]);
    let out = perf_with(dir.path(), &args, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("another name"), "{stderr}");

    let missing = dir.path().join("missing.pem");
    let mut args = bench_args(&url, "missing-ca");
    args.extend(["--tls-ca-cert", missing.to_str().expect("utf-8")]);
    let out = perf_with(dir.path(), &args, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--tls-ca-cert") && stderr.contains("missing.pem"),
        "{stderr}"
    );
}

#[test]
fn mutual_tls_needs_the_client_certificate_and_works_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::create(dir.path());
    let client_ca = pki.client_ca.to_str().expect("utf-8");
    let sim = tls_simulator(
        &pki.server_cert,
        &pki.server_key,
        &["--tls-client-ca", client_ca],
    );
    let url = sim.https_url("/v1/chat/completions");
    let ca = pki.ca.to_str().expect("utf-8");

    let mut args = bench_args(&url, "no-client-cert");
    args.extend(["--tls-ca-cert", ca]);
    let out = perf_with(dir.path(), &args, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--tls-client-cert"), "{stderr}");

    let mut args = bench_args(&url, "client-cert");
    args.extend([
        "--tls-ca-cert",
        ca,
        "--tls-client-cert",
        pki.client_cert.to_str().expect("utf-8"),
        "--tls-client-key",
        pki.client_key.to_str().expect("utf-8"),
    ]);
    let out = perf_with(dir.path(), &args, &[]);
    assert_timed_tls_run(dir.path(), "client-cert", &out);
}

#[test]
fn proxies_from_the_environment_as_curl_reads_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::create(dir.path());
    let sim = tls_simulator(&pki.server_cert, &pki.server_key, &[]);
    let url = sim.https_url("/v1/chat/completions");
    let ca = pki.ca.to_str().expect("utf-8");
    let proxy = Proxy::start();
    let password = "pr0xy-s3cret-pw";
    let proxy_url = proxy.url(Some(&format!("bench:{password}")));
    let target = format!("127.0.0.1:{}", sim.port);

    // https through HTTPS_PROXY: a CONNECT tunnel with the proxy's credentials, TLS end to end
    // (still timed by perf's transport).
    let mut args = bench_args(&url, "via-proxy");
    args.extend(["--tls-ca-cert", ca]);
    let out = perf_with(dir.path(), &args, &[("HTTPS_PROXY", &proxy_url)]);
    assert_timed_tls_run(dir.path(), "via-proxy", &out);
    let s = summary(dir.path(), "via-proxy");
    assert_eq!(
        s["Transport"], "HTTP/1.1 over TLS through the proxy in HTTPS_PROXY",
        "{s}"
    );
    let asked = proxy.asked();
    let tunnels: Vec<_> = asked
        .iter()
        .filter(|a| a.line == format!("CONNECT {target} HTTP/1.1"))
        .collect();
    // The connection test's connection and at most one more for two concurrent requests.
    assert!((1..=3).contains(&tunnels.len()), "{asked:?}");
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("bench:{password}"))
    );
    assert!(
        tunnels
            .iter()
            .all(|a| a.authorization.as_deref() == Some(basic.as_str())),
        "{asked:?}"
    );
    // The proxy's credentials are secrets of the run.
    for (path, content) in all_text_under(&dir.path().join("out/via-proxy")) {
        assert!(
            !content.contains(password) && !content.contains(&basic[6..]),
            "{} holds the proxy's credentials",
            path.display()
        );
    }

    // NO_PROXY exempts the host; --no-proxy ignores the variables.
    let before = proxy.asked().len();
    let mut args = bench_args(&url, "no-proxy-var");
    args.extend(["--tls-ca-cert", ca]);
    let out = perf_with(
        dir.path(),
        &args,
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    assert_timed_tls_run(dir.path(), "no-proxy-var", &out);
    let mut args = bench_args(&url, "no-proxy-flag");
    args.extend(["--tls-ca-cert", ca, "--no-proxy"]);
    let out = perf_with(dir.path(), &args, &[("https_proxy", &proxy_url)]);
    assert_timed_tls_run(dir.path(), "no-proxy-flag", &out);
    assert_eq!(proxy.asked().len(), before, "{:?}", proxy.asked());

    // Plain http through http_proxy: absolute-form requests to the proxy.
    let plain = Simulator::start(&[]);
    let plain_url = plain.url("/v1/chat/completions");
    let out = perf_with(
        dir.path(),
        &bench_args(&plain_url, "http-via-proxy"),
        &[("http_proxy", &proxy.url(None))],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let s = summary(dir.path(), "http-via-proxy");
    assert_eq!(s["Success Requests"], 4, "{s}");
    assert_eq!(
        s["Transport"], "HTTP/1.1 through the proxy in http_proxy",
        "{s}"
    );
    let forwarded = format!(
        "POST http://127.0.0.1:{}/v1/chat/completions HTTP/1.1",
        plain.port
    );
    assert!(
        proxy.asked().iter().any(|a| a.line == forwarded),
        "{:?}",
        proxy.asked()
    );

    // A proxy perf cannot speak to is named with the way out.
    let out = perf_with(
        dir.path(),
        &bench_args(&url, "socks"),
        &[("ALL_PROXY", "socks5://127.0.0.1:1")],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ALL_PROXY") && stderr.contains("--no-proxy"),
        "{stderr}"
    );
}
