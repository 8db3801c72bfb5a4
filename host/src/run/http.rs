//! The HTTP client of a run and the connection test before it.

use std::sync::Arc;
use std::time::Duration;

use perf_plugin_api::{DatasetItem, FailureKind};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use tokio_util::sync::CancellationToken;

use crate::error::usage;
use crate::plan::RunPlan;
use crate::transport::{proxy, tls};
use crate::worker::{execute, Exchange, Job};

/// The TLS client configuration of the run: `Some` for an https endpoint (or when a TLS flag
/// was given, so a bad file is reported before any traffic).
pub fn tls_config(
    plan: &RunPlan,
    url: &reqwest::Url,
) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    let t = &plan.http.tls;
    let flags = !t.ca_files.is_empty() || t.client_cert.is_some() || t.client_key.is_some();
    if url.scheme() != "https" && !flags && !t.insecure {
        return Ok(None);
    }
    let (config, trust) = tls::client_config(t).map_err(usage)?;
    if url.scheme() != "https" {
        crate::output::log::warn(format!(
            "the --tls-* flags apply to https endpoints only; {} is {}://",
            crate::plan::redacted_url(url.as_str()),
            url.scheme()
        ));
        return Ok(None);
    }
    if t.insecure {
        crate::output::log::warn(
            "--tls-insecure: the server's certificate is NOT verified; anyone between perf and the server can read and change the traffic (API keys included). Use it on test rigs only.",
        );
    } else if let Some(counts) = trust {
        crate::output::log::file_only(format!(
            "trusting {} compiled-in root certificates, {} from the system store or SSL_CERT_FILE / SSL_CERT_DIR, {} from --tls-ca-cert",
            counts.builtin, counts.platform, counts.extra
        ));
    }
    Ok(Some(config))
}

/// Whether perf started the server itself (the simulator, a local model, vLLM): never through
/// a proxy.
pub fn own_server(plan: &RunPlan) -> bool {
    plan.mock.is_some() || plan.local.is_some() || plan.local_vllm.is_some()
}

/// The proxy the run's requests go through, from the environment (not with `--no-proxy`, nor
/// to a server perf started itself).
pub fn proxy(plan: &RunPlan, url: &reqwest::Url) -> anyhow::Result<Option<proxy::Proxy>> {
    if !plan.http.env_proxy || own_server(plan) {
        return Ok(None);
    }
    let found = proxy::for_target(url).map_err(usage)?;
    if let Some(p) = &found {
        crate::output::log::info(format!(
            "sending through the proxy {} (from {}; --no-proxy connects directly)",
            p.authority, p.variable
        ));
    }
    Ok(found)
}

/// One connection pool for the whole sweep, sized to the largest concurrency, keep-alive on,
/// HTTP/1.1 (as evalscope's aiohttp client; one stream per connection), the run's TLS
/// configuration, proxies from the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`) unless
/// `--no-proxy`. It serves only what the timed transport does not (see `crate::transport`).
pub fn client(
    plan: &RunPlan,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<reqwest::Client> {
    let pool = plan
        .runs
        .iter()
        .map(|r| r.parallel.unwrap_or(usize::MAX))
        .max()
        .unwrap_or(1);
    client_with_pool(plan, tls, pool)
}

/// A client that keeps no idle connections: every request gets a fresh one (for sending again
/// after a pooled connection closed without answering).
pub fn fresh_client(
    plan: &RunPlan,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<reqwest::Client> {
    client_with_pool(plan, tls, 0)
}

fn client_with_pool(
    plan: &RunPlan,
    tls: Option<&Arc<rustls::ClientConfig>>,
    pool: usize,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(crate::worker::USER_AGENT)
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .http1_only();
    if let Some(config) = tls {
        builder = builder.use_preconfigured_tls((**config).clone());
    }
    if !plan.http.env_proxy || own_server(plan) {
        builder = builder.no_proxy();
    }
    if let Some(t) = plan.http.connect_timeout {
        builder = builder.connect_timeout(t);
    }
    // Each read, the wait for the response head included.
    if let Some(t) = plan.http.read_timeout {
        builder = builder.read_timeout(t);
    }
    builder
        .build()
        .map_err(|e| usage(format!("cannot set up the HTTP client: {e}")))
}

/// `--headers` and `Authorization: Bearer <--api-key>`.
pub fn headers(plan: &RunPlan) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (k, v) in &plan.http.headers {
        let name = HeaderName::try_from(k.as_str())
            .map_err(|_| usage(format!("--headers: '{k}' is not a valid header name")))?;
        let value = HeaderValue::try_from(v.as_str()).map_err(|_| {
            usage(format!(
                "--headers: the value of '{k}' is not a valid header value"
            ))
        })?;
        map.insert(name, value);
    }
    if let Some(key) = &plan.http.api_key {
        let mut value = HeaderValue::try_from(format!("Bearer {key}"))
            .map_err(|_| usage("--api-key contains characters that cannot go in an HTTP header"))?;
        value.set_sensitive(true);
        map.insert(AUTHORIZATION, value);
    }
    Ok(map)
}

const ATTEMPTS: u32 = 3;

/// Sends one small request ("hello", at most a few tokens) and checks the answer. Retries a
/// connection failure or a 5xx twice (1 s, then 2 s later, within `--total-timeout`); a 4xx
/// or a garbled answer fails at once.
pub async fn test_connection(
    ex: &Exchange,
    plan: &RunPlan,
    item: DatasetItem,
) -> anyhow::Result<()> {
    let max_tokens = plan.api.min_tokens.unwrap_or(1).max(1);
    let hint = "(skip this check with --no-test-connection)";
    let deadline = std::time::Instant::now() + plan.http.total_timeout;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let job = Job {
            index: 0,
            warmup: true,
            item: item.clone(),
            intended: std::time::Instant::now(),
            max_tokens: Some(max_tokens),
            connection_test: true,
            rid: None,
        };
        let rec = execute(ex, job, &CancellationToken::new()).await;
        let retry = match rec.failure {
            FailureKind::None => return Ok(()),
            _ if rec.error.contains(tls::HANDSHAKE_FAILED) => false,
            FailureKind::Connect | FailureKind::Timeout | FailureKind::Stream => true,
            FailureKind::HttpStatus => rec.status >= 500,
            _ => false,
        };
        last = rec.error.clone();
        if !retry {
            let what = if rec.failure == FailureKind::HttpStatus {
                "the server rejected the test request; check --url, --model, --api-key and --headers"
            } else if rec.failure == FailureKind::Connect {
                "perf and the server could not agree on a TLS session"
            } else {
                "the server's answer to the test request is not usable with this --api"
            };
            return Err(usage(format!(
                "connection test to {} failed: {last}\n{what} {hint}",
                plan.http.url
            )));
        }
        let wait = Duration::from_secs(u64::from(attempt));
        if attempt == ATTEMPTS || std::time::Instant::now() + wait > deadline {
            break;
        }
        crate::output::log::warn(format!(
            "connection test attempt {attempt} failed ({last}); retrying in {wait:?}"
        ));
        tokio::time::sleep(wait).await;
    }
    Err(usage(format!(
        "cannot reach {} after {ATTEMPTS} attempts: {last}\nis the server running and the URL right? {hint}",
        plan.http.url
    )))
}
