//! What perf's HTTP result sinks share: a blocking client that retries transient failures with
//! backoff and never puts credentials in its errors, and the running summary as a JSON object.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use perf_plugin_api::{NamedValue, PluginError};
use serde_json::{Map, Value};

/// Waits before the second and third attempt of a request.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_millis(1500)];

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub struct Unreachable(pub String);

/// A blocking HTTP client for one service. Requests run on the sink's own thread.
pub struct Http {
    agent: ureq::Agent,
    /// The service's name in messages (`wandb`, `swanlab`).
    pub service: &'static str,
    user_agent: String,
}

fn transient(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

impl Http {
    pub fn new(service: &'static str) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(30)))
            .proxy(ureq::Proxy::try_from_env())
            .http_status_as_error(false)
            .build();
        Http {
            agent: config.into(),
            service,
            user_agent: format!("perf/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    fn once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Answer, Unreachable> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("user-agent", &self.user_agent);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(body.map(<[u8]>::to_vec).unwrap_or_default())
            .map_err(|e| Unreachable(format!("{url} is not a valid request: {e}")))?;
        match self.agent.run(request) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let body = response.body_mut().read_to_string().unwrap_or_default();
                Ok(Answer { status, body })
            }
            Err(e) => Err(Unreachable(e.to_string())),
        }
    }

    /// Sends a request, once more after 0.5 s and after 1.5 s when there is no answer or a
    /// transient status (408, 429, 5xx).
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Answer, Unreachable> {
        let mut result = self.once(method, url, headers, body);
        for wait in BACKOFF {
            match &result {
                Ok(a) if !transient(a.status) => break,
                _ => {}
            }
            std::thread::sleep(wait);
            result = self.once(method, url, headers, body);
        }
        result
    }

    /// The first request to a service, sent before any traffic so that a wrong key or host
    /// stops the run: no answer, 401/403 or any other failure becomes a configuration error
    /// that says what to check (`key_hint`, `host_hint`).
    pub fn check_access(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        key_hint: &str,
        host_hint: &str,
    ) -> Result<Answer, PluginError> {
        let service = self.service;
        let answer = self.send("POST", url, headers, body).map_err(|e| {
            PluginError::config(format!(
                "{service}: {url} cannot be reached ({}); check {host_hint}",
                e.0
            ))
        })?;
        match answer.status {
            401 | 403 => Err(PluginError::config(format!(
                "{service}: {url} rejected the API key (HTTP {}); check {key_hint}",
                answer.status
            ))),
            _ if !answer.ok() => Err(PluginError::config(format!(
                "{service}: {url} answered HTTP {}: {}",
                answer.status,
                snippet(&answer.body)
            ))),
            _ => Ok(answer),
        }
    }

    /// POSTs JSON; an error names the service, the URL and the status, never a credential.
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<Answer, PluginError> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.expect_ok("POST", url, &all, Some(&bytes))
    }

    /// Sends a request and turns anything but a 2xx answer into an error.
    pub fn expect_ok(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Answer, PluginError> {
        match self.send(method, url, headers, body) {
            Ok(a) if a.ok() => Ok(a),
            Ok(a) => Err(PluginError::io(format!(
                "{}: {method} {url} answered HTTP {}: {}",
                self.service,
                a.status,
                snippet(&a.body)
            ))),
            Err(Unreachable(why)) => Err(PluginError::io(format!(
                "{}: {method} {url} got no answer: {why}",
                self.service
            ))),
        }
    }
}

/// The start of a body, for messages.
pub fn snippet(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}

/// Seconds since the Unix epoch.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Numbers as a JSON object, in order. Whole numbers stay integers.
pub fn metrics_object(values: &[NamedValue]) -> Map<String, Value> {
    values
        .iter()
        .map(|v| (v.name.to_string(), number(v.value)))
        .collect()
}

/// What a run's end logs: its final summary, then the 50th, 90th and 99th percentile of every
/// metric of `benchmark_percentile.json` as `P50 <metric>`, `P90 <metric>`, `P99 <metric>`.
pub fn final_metrics(summary: &perf_plugin_api::RunSummary) -> Map<String, Value> {
    let mut m = metrics_object(&summary.summary);
    for row in summary.percentiles.iter() {
        let prefix = match row.label.as_str() {
            "50%" => "P50",
            "90%" => "P90",
            "99%" => "P99",
            _ => continue,
        };
        for v in row.values.iter() {
            m.insert(format!("{prefix} {}", v.name), number(v.value));
        }
    }
    m
}

/// A JSON number; whole values as integers, non-finite ones as null.
pub fn number(v: f64) -> Value {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

/// At most one event per `every`.
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Throttle { every, last: None }
    }

    /// Whether enough time has passed since the last `true`.
    pub fn ready(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// An environment variable, when set and not blank.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// This machine's name (`HOSTNAME`, else /etc/hostname), for the run's record.
pub fn host_name() -> String {
    env("HOSTNAME")
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default()
}

/// The arguments of the invocation (secrets already masked by the host).
pub fn args(args_json: &str) -> Map<String, Value> {
    match serde_json::from_str(args_json) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_integers_whole() {
        assert_eq!(number(3.0), Value::from(3));
        assert_eq!(number(0.25), serde_json::json!(0.25));
        assert_eq!(number(f64::NAN), Value::Null);
    }

    #[test]
    fn final_metrics_add_the_p50_p90_p99_rows() {
        use perf_plugin_api::{PercentileRow, RunSummary};
        let nv = |name: &str, value: f64| NamedValue {
            name: name.into(),
            value,
        };
        let row = |label: &str, v: f64| PercentileRow {
            label: label.into(),
            values: vec![nv("TTFT (ms)", v)].into(),
        };
        let summary = RunSummary {
            run_index: 0,
            summary: vec![nv("Total Requests", 10.0)].into(),
            percentiles: vec![row("10%", 1.0), row("50%", 2.0), row("99%", 3.5)].into(),
            ext: Default::default(),
        };
        let m = final_metrics(&summary);
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"Total Requests": 10, "P50 TTFT (ms)": 2, "P99 TTFT (ms)": 3.5})
        );
    }

    #[test]
    fn a_throttle_lets_one_through_per_interval() {
        let mut t = Throttle::new(Duration::from_secs(60));
        assert!(t.ready());
        assert!(!t.ready());
    }

    #[test]
    fn transient_failures_are_retried_and_then_reported_without_credentials() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok() && line != "\r\n" {
                    line.clear();
                }
                let status = if i < 2 { "503 Busy" } else { "200 OK" };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                );
            }
        });
        let http = Http::new("test");
        let url = format!("http://127.0.0.1:{port}/x");
        let a = http
            .send("GET", &url, &[("authorization", "Bearer SECRET")], None)
            .expect("answered");
        assert_eq!(a.status, 200, "third attempt");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = format!(
            "http://127.0.0.1:{}/x",
            closed.local_addr().expect("a").port()
        );
        drop(closed);
        let err = http
            .expect_ok("GET", &dead, &[("authorization", "Bearer SECRET")], None)
            .expect_err("refused");
        assert!(err.message.contains("got no answer"), "{}", err.message);
        assert!(!err.message.contains("SECRET"), "{}", err.message);
    }
}
