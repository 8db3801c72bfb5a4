//! A wrapper around the OTLP exporters that retries a failed export (twice, with backoff, while
//! the run goes on), counts exports and failures, and hands the first failure to the sink so
//! perf reports it once. gRPC exports run inside the sink's tokio runtime (tonic needs one; the
//! SDK's export threads have none).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use perf_plugin_api::PluginError;

/// Waits before the second and third attempt of an export.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_millis(1500)];

/// What the exports did, shared by the exporters and the sink.
#[derive(Debug)]
pub struct ExportState {
    endpoint: String,
    exports: AtomicU64,
    failures: AtomicU64,
    first_error: Mutex<Option<String>>,
    reported: AtomicBool,
    closing: AtomicBool,
    runtime: Option<tokio::runtime::Handle>,
}

impl ExportState {
    pub fn new(endpoint: String, runtime: Option<tokio::runtime::Handle>) -> Self {
        ExportState {
            endpoint,
            exports: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            first_error: Mutex::new(None),
            reported: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            runtime,
        }
    }

    /// From now on a failed export is not retried (the end of the run waits for it).
    pub fn closing(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    fn failed(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(why);
        }
    }

    /// The first failure, once: the host logs it and goes on.
    pub fn new_failure(&self) -> Result<(), PluginError> {
        if self.failures.load(Ordering::Relaxed) == 0 || self.reported.swap(true, Ordering::Relaxed)
        {
            return Ok(());
        }
        let why = self
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        Err(PluginError::io(format!(
            "an export to {} failed: {why}; metrics are retried, counted and reported at the end",
            self.endpoint
        )))
    }

    /// The end of the run: an error naming how many exports failed, if any did.
    pub fn summary(&self, flushed: bool) -> Result<(), PluginError> {
        let failures = self.failures.load(Ordering::Relaxed);
        let exports = self.exports.load(Ordering::Relaxed);
        match (failures, flushed) {
            (0, true) => Ok(()),
            (0, false) => Err(PluginError::io(format!(
                "the last export to {} did not finish in time; the final values may be missing",
                self.endpoint
            ))),
            (n, _) => Err(PluginError::io(format!(
                "{n} of {exports} export(s) to {} failed after retries{}",
                self.endpoint,
                if flushed {
                    ""
                } else {
                    "; the last one did not finish in time"
                }
            ))),
        }
    }

    /// One attempt, inside the runtime when there is one.
    async fn attempt<F, Fut>(&self, attempt: &mut F) -> OTelSdkResult
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = OTelSdkResult>,
    {
        match &self.runtime {
            Some(rt) => rt.block_on(attempt()),
            None => attempt().await,
        }
    }

    /// Runs `attempt` up to three times while the run goes on.
    async fn run<F, Fut>(&self, mut attempt: F) -> OTelSdkResult
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = OTelSdkResult>,
    {
        self.exports.fetch_add(1, Ordering::Relaxed);
        let mut result = self.attempt(&mut attempt).await;
        for wait in BACKOFF {
            if result.is_ok() || self.closing.load(Ordering::Relaxed) {
                break;
            }
            // Exports run on the SDK's own thread, which may block.
            std::thread::sleep(wait);
            result = self.attempt(&mut attempt).await;
        }
        if let Err(e) = &result {
            self.failed(e.to_string());
        }
        result
    }
}

/// An exporter that retries and counts.
#[derive(Debug)]
pub struct Counted<E> {
    inner: E,
    state: Arc<ExportState>,
}

impl<E> Counted<E> {
    pub fn new(inner: E, state: Arc<ExportState>) -> Self {
        Counted { inner, state }
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Counted<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        self.state.run(|| self.inner.export(metrics)).await
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.state.run(|| self.inner.export(batch.clone())).await
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
