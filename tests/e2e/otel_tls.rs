//! OTLP over TLS as collectors are deployed: a TLS terminator (the load balancer or ingress in
//! front of a collector, `perf_tests::tls::Terminator`) with a private CA, with and without
//! client certificates, in front of VictoriaMetrics' OTLP/HTTP receiver and in front of rotel's
//! OTLP/gRPC receiver. perf must export through each when told the CA
//! (`OTEL_EXPORTER_OTLP_CERTIFICATE`) and, where the collector requires one, its client
//! certificate (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `..._CLIENT_KEY`); told less, it
//! must stop before traffic with exit code 2, naming the variable to set.

use std::path::Path;

use perf_tests::tls::{Pki, Terminator};

use crate::sinks::{perf_env, Receiver, Rotel};

/// Eight requests against the simulator, exported every 200 ms, under run name `name`.
fn run(name: &str, env: &[(&str, String)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tmp");
    perf_env(
        dir.path(),
        &[
            "--api",
            "mock",
            "--port",
            "0",
            "-n",
            "8",
            "--parallel",
            "2",
            "--max-tokens",
            "4",
            "--prompt",
            "hello",
            "--name",
            name,
            "--outputs-dir",
            "outputs",
            "--sink",
            r#"otel={"interval_ms": 200}"#,
        ],
        env,
    )
}

fn path(p: &Path) -> String {
    p.to_str().expect("utf-8").to_string()
}

/// The requests VictoriaMetrics holds for run `name`, once it has all 8.
fn exported(receiver: &Receiver, name: &str) -> f64 {
    receiver.wait_for(
        &format!(r#"sum(perf_requests_total{{perf_run_name="{name}"}})"#),
        8.0,
    )
}

#[test]
fn otlp_http_over_tls_needs_the_collectors_ca_and_a_client_certificate_where_one_is_required() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tmp");
    let pki = Pki::create(dir.path());
    let tls = Terminator::start(
        &pki.server_cert,
        &pki.server_key,
        None,
        b"http/1.1",
        receiver.port,
    );
    let mutual = Terminator::start(
        &pki.server_cert,
        &pki.server_key,
        Some(&pki.client_ca),
        b"http/1.1",
        receiver.port,
    );
    let other_name = Terminator::start(
        &pki.localhost_cert,
        &pki.localhost_key,
        None,
        b"http/1.1",
        receiver.port,
    );
    let endpoint = |t: &Terminator| {
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{}/opentelemetry", t.url()),
        )
    };
    let ca = ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca));
    let client = [
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            path(&pki.client_cert),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&pki.client_key)),
    ];

    // A private CA perf was not told of.
    let (code, out) = run("untrusted", &[endpoint(&tls)]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("does not trust") && out.contains("set OTEL_EXPORTER_OTLP_CERTIFICATE"),
        "{out}"
    );
    let (code, out) = run("trusted", &[endpoint(&tls), ca.clone()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("sink 'otel'"), "no export failed: {out}");
    assert_eq!(
        exported(&receiver, "trusted"),
        8.0,
        "every request, over https"
    );

    // A certificate for another name.
    let (code, out) = run("misnamed", &[endpoint(&other_name), ca.clone()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not for 127.0.0.1"), "{out}");

    // A collector that requires a client certificate.
    let (code, out) = run("anonymous", &[endpoint(&mutual), ca.clone()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("asks for a client certificate")
            && out.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
        "{out}"
    );
    assert!(
        mutual.refused() >= 1,
        "the terminator refused the handshake"
    );
    // A certificate from a CA the collector does not trust for clients.
    let (code, out) = run(
        "stranger",
        &[
            endpoint(&mutual),
            ca.clone(),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                path(&pki.localhost_cert),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&pki.localhost_key)),
        ],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("refused the client certificate"), "{out}");
    let mut env = vec![endpoint(&mutual), ca];
    env.extend(client);
    let (code, out) = run("mutual", &env);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("sink 'otel'"), "no export failed: {out}");
    assert_eq!(
        exported(&receiver, "mutual"),
        8.0,
        "every request, over mutual TLS"
    );
    for name in ["untrusted", "misnamed", "anonymous", "stranger"] {
        assert!(
            receiver
                .query(&format!(r#"perf_requests_total{{perf_run_name="{name}"}}"#))
                .is_empty(),
            "{name}: refused runs send nothing"
        );
    }
}

#[test]
fn otlp_grpc_over_mutual_tls_reaches_a_real_grpc_collector() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(&receiver.otlp());
    let dir = tempfile::tempdir().expect("tmp");
    let pki = Pki::create(dir.path());
    let mutual = Terminator::start(
        &pki.server_cert,
        &pki.server_key,
        Some(&pki.client_ca),
        b"h2",
        rotel.port,
    );
    let base = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_string()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", mutual.url()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca)),
    ];
    let (code, out) = run("grpc-anonymous", &base);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("asks for a client certificate"), "{out}");
    // The metrics signal's own variables, as a collector only for metrics would need.
    let mut env = base.to_vec();
    env.push((
        "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
        path(&pki.client_cert),
    ));
    env.push((
        "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
        path(&pki.client_key),
    ));
    let (code, out) = run("grpc-mutual", &env);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("sink 'otel'"), "no export failed: {out}");
    assert_eq!(
        exported(&receiver, "grpc-mutual"),
        8.0,
        "every request, over gRPC with mutual TLS"
    );
}
