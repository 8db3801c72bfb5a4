//! Sending through reqwest: https and proxied endpoints (and any endpoint with
//! `PERF_HTTP_CLIENT=reqwest`). Reads are stamped when this task receives them.

use std::time::{Duration, Instant};

use perf_plugin_api::FailureKind;

use super::{content_type, error_text, BodyReader, Exchange, Prepared, RawRecord};

fn classify(e: &reqwest::Error) -> FailureKind {
    if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_connect() {
        FailureKind::Connect
    } else if e.is_body() || e.is_decode() {
        FailureKind::Stream
    } else {
        FailureKind::Connect
    }
}

/// A reqwest error and its causes, without the URL (which may carry credentials or keys in
/// its query string).
fn describe(e: &reqwest::Error) -> String {
    let mut text = String::from(if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() {
        "the response body broke off"
    } else if e.is_request() {
        "sending the request failed"
    } else {
        "HTTP error"
    });
    text.push_str(&crate::transport::causes(e));
    text
}

/// The connection closed before any byte of a response arrived (hyper's "connection closed
/// before message completed", or the request was never written).
fn closed_unanswered(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message() || h.is_canceled();
        }
        source = s.source();
    }
    false
}

pub(super) async fn exchange_reqwest(ex: &Exchange, p: Prepared, record: &mut RawRecord) {
    let send = |client: &reqwest::Client| {
        client
            .request(p.method.clone(), p.url.clone())
            .headers(p.headers.clone())
            .timeout(ex.total_timeout)
            .body(record.request_body.clone())
            .send()
    };
    // As on the timed transport (see `timed.rs`): a connection closed without any answer is
    // sent once more, on a fresh connection (a client without a pool), and counted. reqwest
    // does not say whether the connection was reused.
    let mut response = match send(&ex.client).await {
        Ok(r) => r,
        Err(e) if closed_unanswered(&e) => {
            record.retries += 1;
            record.sent = Instant::now();
            match send(&ex.fresh_client).await {
                Ok(r) => r,
                Err(e) => return record.fail(classify(&e), describe(&e)),
            }
        }
        Err(e) => return record.fail(classify(&e), describe(&e)),
    };
    record.first_byte = Some(Instant::now());
    record.status = response.status().as_u16();
    if !response.status().is_success() {
        let body = read_error_body(&mut response, ex.read_timeout).await;
        return record.fail(
            FailureKind::HttpStatus,
            format!("HTTP {}: {body}", record.status),
        );
    }
    let Some(mut body) = BodyReader::new(ex, p.framing, &content_type(response.headers()), record)
    else {
        return;
    };
    loop {
        let chunk = match ex.read_timeout {
            Some(limit) => match tokio::time::timeout(limit, response.chunk()).await {
                Ok(c) => c,
                Err(_) => {
                    body.fail(
                        FailureKind::Timeout,
                        format!("no data for {limit:?} (--read-timeout)"),
                    );
                    break;
                }
            },
            None => response.chunk().await,
        };
        match chunk {
            Ok(Some(bytes)) => body.push(&bytes, Instant::now()),
            Ok(None) => break,
            Err(e) => {
                body.fail(classify(&e).max_stream(), describe(&e));
                break;
            }
        }
    }
    body.finish();
}

trait StreamKind {
    fn max_stream(self) -> FailureKind;
}

impl StreamKind for FailureKind {
    /// Once the headers arrived, a broken connection is a broken stream, not a connect error.
    fn max_stream(self) -> FailureKind {
        match self {
            FailureKind::Connect => FailureKind::Stream,
            other => other,
        }
    }
}

async fn read_error_body(
    response: &mut reqwest::Response,
    read_timeout: Option<Duration>,
) -> String {
    let mut body = Vec::new();
    let limit = read_timeout
        .unwrap_or(Duration::from_secs(10))
        .min(Duration::from_secs(10));
    while body.len() < 2048 {
        match tokio::time::timeout(limit, response.chunk()).await {
            Ok(Ok(Some(b))) => body.extend_from_slice(&b),
            _ => break,
        }
    }
    error_text(&body)
}
