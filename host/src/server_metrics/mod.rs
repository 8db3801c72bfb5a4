//! `--server-metrics`: the server's own Prometheus metrics, scraped during each run on a task
//! of their own (never on the threads that time requests), stored per run as
//! `server_metrics.jsonl` (one line per scrape, on the same Unix clock as the requests' epoch
//! columns) and summarised beside the client's figures (`summary.rs`).
//!
//! A scrape is parsed with `openmetrics-parser` (the Prometheus text format, metric names
//! with colons as vLLM and SGLang write them). Every family is kept raw; the summary knows the
//! families of vLLM, SGLang, TGI and llama.cpp. A scrape that fails (refused, timed out, not
//! the text format) is counted and written as a failed line, never fatal: the first failure is
//! logged once per run. Parsing and writing run on blocking threads, never on the runtime's.

pub mod summary;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openmetrics_parser::{PrometheusType, PrometheusValue};
use serde::Serialize;

use crate::output::log;

/// One series of a family at one scrape.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// A counter's, gauge's or untyped value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// A histogram's cumulative buckets (upper bound, count), with its count and sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
}

/// A histogram series.
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    /// Observations.
    pub count: f64,
    /// Their sum.
    pub sum: f64,
    /// Cumulative counts by upper bound, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
}

/// A family at one scrape.
#[derive(Debug, Clone, Serialize)]
pub struct Family {
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its series.
    pub series: Vec<Series>,
}

/// One scrape.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// When it was taken, Unix seconds.
    pub t: f64,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The families, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub families: BTreeMap<String, Family>,
}

impl Snapshot {
    /// The family `name`, also when the parser keeps a counter's `_total` or drops it.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families
            .get(name)
            .or_else(|| match name.strip_suffix("_total") {
                Some(base) => self.families.get(base),
                None => self.families.get(&format!("{name}_total")),
            })
    }
}

/// Parses a Prometheus text exposition.
pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let exposition =
        openmetrics_parser::prometheus::parse_prometheus(text).map_err(|e| format!("{e:?}"))?;
    let mut out = BTreeMap::new();
    for (name, family) in exposition.families {
        let kind = match family.family_type {
            PrometheusType::Counter => "counter",
            PrometheusType::Gauge => "gauge",
            PrometheusType::Histogram => "histogram",
            PrometheusType::Summary => "summary",
            PrometheusType::Unknown => "untyped",
        };
        let series = family
            .iter_samples()
            .map(|s| {
                let labels = s
                    .get_labelset()
                    .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                let (value, histogram) = match &s.value {
                    PrometheusValue::Counter(c) => (Some(c.value.as_f64()), None),
                    PrometheusValue::Gauge(v) | PrometheusValue::Unknown(v) => {
                        (Some(v.as_f64()), None)
                    }
                    PrometheusValue::Histogram(h) => {
                        let buckets: Vec<(f64, f64)> = h
                            .buckets
                            .iter()
                            .map(|b| (b.upper_bound, b.count.as_f64()))
                            .collect();
                        let count = h
                            .count
                            .map(|c| c as f64)
                            .or_else(|| buckets.last().map(|b| b.1))
                            .unwrap_or(0.0);
                        let sum = h.sum.map_or(0.0, |s| s.as_f64());
                        (
                            None,
                            Some(Histogram {
                                count,
                                sum,
                                buckets,
                            }),
                        )
                    }
                    PrometheusValue::Summary(s) => (s.sum.map(|v| v.as_f64()), None),
                };
                Series {
                    labels,
                    value,
                    histogram,
                }
            })
            .collect();
        out.insert(name, Family { kind, series });
    }
    Ok(out)
}

/// What a run's scraper gathered.
#[derive(Debug, Default)]
pub struct Scraped {
    /// Where it scraped.
    pub url: String,
    /// Its interval.
    pub interval: Duration,
    /// Every scrape, failed ones included, in order.
    pub snapshots: Vec<Snapshot>,
}

impl Scraped {
    /// The failed scrapes.
    pub fn failures(&self) -> usize {
        self.snapshots.iter().filter(|s| !s.ok).count()
    }
}

/// The server's latest gauges (running, waiting, KV cache), which the collector adds to the
/// sinks' snapshots; empty until a scrape has them.
pub type Live = std::sync::Arc<std::sync::Mutex<Vec<(&'static str, f64)>>>;

/// A scraper running for one run.
pub struct Scraper {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Scraped>,
}

/// `/metrics` on the host of `url` (scheme, host and port kept; path, query and credentials
/// dropped).
pub fn default_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}/metrics")
}

impl Scraper {
    /// Scrapes `url` once now, before the run sends anything (its baseline: a slow server
    /// delays the run's start by at most the scrape's timeout), then every `interval` on `rt`
    /// until [`Scraper::finish`]; every scrape is appended to `file`, and the gauges of the
    /// latest that has them are in `live`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        url: String,
        interval: Duration,
        file: PathBuf,
        live: Live,
    ) -> Scraper {
        let client = reqwest::Client::builder()
            .timeout(interval.max(Duration::from_secs(2)))
            .build()
            .unwrap_or_default();
        let mut scraped = Scraped {
            url: url.clone(),
            interval,
            snapshots: Vec::new(),
        };
        let mut out = std::fs::File::create(&file).ok();
        if out.is_none() {
            log::warn(format!(
                "cannot create {}: the scrapes are kept for the summary only",
                file.display()
            ));
        }
        let baseline = rt.block_on(scrape(&client, &url));
        keep(&mut scraped, &mut out, &live, baseline);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(async move {
            let first = tokio::time::Instant::now() + interval;
            let mut tick = tokio::time::interval_at(first, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                let snap = scrape(&client, &url).await;
                // Writing the line (a /metrics answer can be large) is blocking work: off
                // the runtime's threads, which time the requests' bytes.
                let live = live.clone();
                let kept = tokio::task::spawn_blocking(move || {
                    keep(&mut scraped, &mut out, &live, snap);
                    (scraped, out)
                })
                .await;
                match kept {
                    Ok(k) => (scraped, out) = k,
                    Err(_) => return Scraped::default(),
                }
                if last {
                    return scraped;
                }
            }
        });
        Scraper { stop, task }
    }

    /// Takes the final scrape and returns everything gathered.
    pub fn finish(self, rt: &tokio::runtime::Runtime) -> Scraped {
        let _ = self.stop.send(());
        rt.block_on(self.task).unwrap_or_default()
    }
}

/// Adds `snap` to what was gathered, to the file and to `live`; the first failure is logged.
fn keep(scraped: &mut Scraped, out: &mut Option<std::fs::File>, live: &Live, snap: Snapshot) {
    if !snap.ok && scraped.failures() == 0 {
        log::warn(format!(
            "scraping --server-metrics {} failed: {}; counted, the run goes on",
            scraped.url,
            snap.error.as_deref().unwrap_or("")
        ));
    }
    if let Some(f) = out.as_mut() {
        if let Ok(line) = serde_json::to_string(&snap) {
            let _ = writeln!(f, "{line}");
        }
    }
    if snap.ok {
        let now = summary::live(&snap);
        if !now.is_empty() {
            if let Ok(mut l) = live.lock() {
                *l = now;
            }
        }
    }
    scraped.snapshots.push(snap);
}

async fn scrape(client: &reqwest::Client, url: &str) -> Snapshot {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let failed = |error: String| Snapshot {
        t,
        ok: false,
        error: Some(crate::output::redact::redact(&error).into_owned()),
        families: BTreeMap::new(),
    };
    let resp = match client.get(url).send().await {
        Ok(r) => r,
        Err(e) => return failed(format!("{e}")),
    };
    if !resp.status().is_success() {
        return failed(format!("HTTP {}", resp.status()));
    }
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => return failed(format!("{e}")),
    };
    // Parsing is CPU work: off the runtime's threads too.
    let parsed = tokio::task::spawn_blocking(move || parse(&text))
        .await
        .unwrap_or_else(|e| Err(format!("the parser stopped: {e}")));
    match parsed {
        Ok(families) => Snapshot {
            t,
            ok: true,
            error: None,
            families,
        },
        Err(e) => failed(format!("not the Prometheus text format: {e}")),
    }
}

/// Where a run's scrapes go.
pub fn file_in(dir: &Path) -> PathBuf {
    dir.join("server_metrics.jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_is_metrics_on_the_servers_host() {
        assert_eq!(
            default_url("https://u:k@gw.example:8443/v1/chat/completions?x=1"),
            "https://gw.example:8443/metrics"
        );
        assert_eq!(
            default_url("http://127.0.0.1:8000"),
            "http://127.0.0.1:8000/metrics"
        );
    }

    #[test]
    fn vllm_names_with_colons_parse_with_their_histograms() {
        let text = "# HELP vllm:num_requests_running r\n# TYPE vllm:num_requests_running gauge\n\
            vllm:num_requests_running{model_name=\"m\"} 3.0\n\
            # TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{model_name=\"m\"} 42.0\n\
            # TYPE vllm:e2e_request_latency_seconds histogram\n\
            vllm:e2e_request_latency_seconds_bucket{le=\"0.5\",model_name=\"m\"} 1.0\n\
            vllm:e2e_request_latency_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 2.0\n\
            vllm:e2e_request_latency_seconds_count{model_name=\"m\"} 2.0\n\
            vllm:e2e_request_latency_seconds_sum{model_name=\"m\"} 1.25\n";
        let f = parse(text).expect("parses");
        let snap = Snapshot {
            t: 0.0,
            ok: true,
            error: None,
            families: f,
        };
        let running = snap.family("vllm:num_requests_running").expect("gauge");
        assert_eq!(running.series[0].value, Some(3.0));
        assert_eq!(running.series[0].labels["model_name"], "m");
        let prompt = snap.family("vllm:prompt_tokens_total").expect("counter");
        assert_eq!(prompt.series[0].value, Some(42.0));
        let h = snap
            .family("vllm:e2e_request_latency_seconds")
            .expect("histogram");
        let h = h.series[0].histogram.as_ref().expect("buckets");
        assert_eq!((h.count, h.sum), (2.0, 1.25));
        assert_eq!(h.buckets.len(), 2);
        assert!(parse("this is { not metrics").is_err());
    }
}
