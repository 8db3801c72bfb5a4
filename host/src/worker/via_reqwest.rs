//! Sending through reqwest: any endpoint with `PERF_HTTP_CLIENT=reqwest`, and URLs with user
//! info. Reads are stamped when this task receives them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use perf_plugin_api::FailureKind;

use super::exchange::{Head, NoResponse, Reuse, Transport};
use super::{content_type, Prepared};

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

/// reqwest with a pool for the run, and one without, for sending again on a fresh connection
/// (reqwest does not say whether a connection was reused, so any connection that closed
/// without answering counts as one).
pub struct Reqwest {
    /// The client with the run's pool.
    pub pooled: reqwest::Client,
    /// A client that keeps no idle connections.
    pub fresh: reqwest::Client,
    /// Whether the server's connections are worth keeping.
    pub reuse: Reuse,
    /// The server, for messages.
    pub server: String,
}

impl Transport for Reqwest {
    type Body = reqwest::Response;

    fn reuse(&self) -> &Reuse {
        &self.reuse
    }

    fn server(&self) -> String {
        self.server.clone()
    }

    async fn send(
        &self,
        p: &Prepared,
        body: Bytes,
        fresh: bool,
        // reqwest's own read timeout (set from `--read-timeout`) covers the head.
        _head_timeout: Option<Duration>,
    ) -> Result<(Head, Self::Body), NoResponse> {
        let client = if fresh {
            &self.fresh
        } else {
            // reqwest does not say whether it reuses a connection; count every pooled send.
            self.reuse.reused();
            &self.pooled
        };
        let sent = client
            .request(p.method.clone(), p.url.clone())
            .headers(p.headers.clone())
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let head = Head {
                    status: response.status().as_u16(),
                    content_type: content_type(response.headers()),
                    at: Instant::now(),
                    // reqwest does not say whether it opened a connection.
                    opened: None,
                };
                Ok((head, response))
            }
            Err(e) => Err(NoResponse {
                kind: classify(&e),
                message: describe(&e),
                retry_fresh: closed_unanswered(&e),
            }),
        }
    }

    async fn next(
        body: &mut Self::Body,
    ) -> Result<Option<(Bytes, Instant)>, (FailureKind, String)> {
        match body.chunk().await {
            Ok(Some(bytes)) => Ok(Some((bytes, Instant::now()))),
            Ok(None) => Ok(None),
            // Once the head arrived, a broken connection is a broken stream, not a connect
            // error.
            Err(e) => Err((
                match classify(&e) {
                    FailureKind::Connect => FailureKind::Stream,
                    other => other,
                },
                describe(&e),
            )),
        }
    }

    fn finish(&self, _body: Self::Body, _clean: bool) {
        // reqwest returns the connection to its pool by itself.
    }
}
