//! One HTTP exchange, whatever carries it: the rules every transport shares, written once.
//!
//! A [`Transport`] only sends a request and hands back the response head and a body that
//! yields pieces with their arrival times (`timed.rs`: kernel receive times on perf's own
//! HTTP/1.1 client; `via_reqwest.rs`: the time the task received them). Everything else is
//! here: sending once more after a reused connection closed unanswered, the error body of a
//! non-2xx answer, the read loop with `--read-timeout`, and framing and decoding through the
//! worker's body reader.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use perf_plugin_api::FailureKind;

use super::{error_text, BodyReader, Exchange, Prepared, RawRecord};

/// Longest wait for each read of an error body, and how much of it is kept.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(10);
const ERROR_BODY_BYTES: usize = 2048;

/// Why no response came.
pub(super) struct NoResponse {
    /// How the request fails if it is not sent again.
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
    /// The connection closed (or was reset) before any byte of an answer, on a connection
    /// that may have served a request before: the server never processed this request, so
    /// sending it once more on a fresh connection is safe.
    pub retry_fresh: bool,
}

/// The head of a response.
pub(super) struct Head {
    /// HTTP status.
    pub status: u16,
    /// Its `content-type`.
    pub content_type: String,
    /// When it arrived.
    pub at: Instant,
    /// How the connection it came on was opened, when this request opened it.
    pub opened: Option<crate::transport::Opened>,
}

/// Whether connections to the server are worth keeping. Some servers close a keep-alive
/// connection after every response without saying `Connection: close` (llama.cpp's server
/// does after every streamed one); reusing such connections makes every other request race
/// the close and be sent again. Once at least [`Reuse::EVIDENCE`] reused connections turned
/// out closed, and they are at least a quarter of all reuses (a server that keeps its
/// connections closes next to none), every request gets a fresh connection (counted as
/// `Fresh-Connection Requests`), and perf says so once.
#[derive(Default)]
pub struct Reuse {
    reused: AtomicU64,
    closed: AtomicU64,
    fresh_only: AtomicBool,
}

impl Reuse {
    /// Closed reuses needed before perf stops reusing.
    pub const EVIDENCE: u64 = 3;

    /// A request goes out on a reused connection.
    pub fn reused(&self) {
        self.reused.fetch_add(1, Ordering::Relaxed);
    }

    /// A reused connection turned out closed by the server: unanswered, or dead moments after
    /// its last response. `server` names it for the message.
    pub fn closed(&self, server: &str) {
        let closed = self.closed.fetch_add(1, Ordering::Relaxed) + 1;
        let reused = self.reused.load(Ordering::Relaxed);
        if closed >= Self::EVIDENCE
            && closed * 4 >= reused
            && !self.fresh_only.swap(true, Ordering::Relaxed)
        {
            crate::output::log::warn(format!(
                "{server} closes its connections after its responses ({closed} of {reused} reused connections were closed): every further request gets a fresh connection (Fresh-Connection Requests in the summary)"
            ));
        }
    }

    /// Whether every request gets a fresh connection.
    pub fn fresh_only(&self) -> bool {
        self.fresh_only.load(Ordering::Relaxed)
    }
}

/// What carries requests: one request at a time on some connection.
pub(super) trait Transport: Sync {
    /// A response body being read.
    type Body: Send;

    /// Whether its server's connections are worth keeping.
    fn reuse(&self) -> &Reuse;

    /// The server, for messages.
    fn server(&self) -> String;

    /// Sends `p` with `body`, on a fresh connection when `fresh`, and waits for the head, at
    /// most `head_timeout` once the request is written (`--read-timeout`).
    fn send(
        &self,
        p: &Prepared,
        body: Bytes,
        fresh: bool,
        head_timeout: Option<Duration>,
    ) -> impl Future<Output = Result<(Head, Self::Body), NoResponse>> + Send;

    /// The next piece of the body and when it arrived; `None` at its clean end. An error is
    /// the kind and message the request fails with.
    fn next(
        body: &mut Self::Body,
    ) -> impl Future<Output = Result<Option<(Bytes, Instant)>, (FailureKind, String)>> + Send;

    /// The body is done with; `clean` when it was read to its end, so the connection may serve
    /// another request.
    fn finish(&self, body: Self::Body, clean: bool);
}

/// Sends `p` on `t` and reads the answer into `record`.
pub(super) async fn exchange<T: Transport>(
    ex: &Exchange,
    t: &T,
    p: Prepared,
    record: &mut RawRecord,
) {
    let Some((head, mut body)) = send(t, &p, record, ex.read_timeout).await else {
        return;
    };
    record.first_byte = Some(head.at);
    record.status = head.status;
    record.opened = head.opened;
    if !(200..300).contains(&head.status) {
        let text = error_body::<T>(ex, &mut body).await;
        t.finish(body, false);
        return record.fail(
            FailureKind::HttpStatus,
            format!("HTTP {}: {}", head.status, error_text(&text)),
        );
    }
    let Some(mut reader) = BodyReader::new(ex, p.framing, &head.content_type, record) else {
        t.finish(body, false);
        return;
    };
    let clean = read::<T>(ex, &mut body, &mut reader).await;
    reader.finish();
    t.finish(body, clean);
}

/// Sends once, and once more on a fresh connection when the transport says the first try
/// never reached the server (counted as `Reused-Connection Retries`). Some servers close a
/// keep-alive connection when the next request arrives instead of saying `Connection: close`
/// (llama.cpp's server does so after every streamed response); curl and browsers resend the
/// same way. Anything else may have reached the server, and sending it again would hide a
/// failure and double the load.
async fn send<T: Transport>(
    t: &T,
    p: &Prepared,
    record: &mut RawRecord,
    head_timeout: Option<Duration>,
) -> Option<(Head, T::Body)> {
    let body = record.request_body.clone();
    let fresh = t.reuse().fresh_only();
    record.fresh_connection = fresh;
    let first = match t.send(p, body, fresh, head_timeout).await {
        Ok(answer) => return Some(answer),
        Err(e) if e.retry_fresh => {
            t.reuse().closed(&t.server());
            e
        }
        Err(e) => {
            record.fail(e.kind, e.message);
            return None;
        }
    };
    record.retries += 1;
    record.sent = Instant::now();
    match t
        .send(p, record.request_body.clone(), true, head_timeout)
        .await
    {
        Ok(answer) => Some(answer),
        Err(e) => {
            record.fail(
                e.kind,
                format!(
                    "{} (after a reused connection closed unanswered: {})",
                    e.message, first.message
                ),
            );
            None
        }
    }
}

/// The start of an error response's body: 2 KB at most, each read waiting at most 10 s (less
/// with a shorter `--read-timeout`).
async fn error_body<T: Transport>(ex: &Exchange, body: &mut T::Body) -> Vec<u8> {
    let wait = ex
        .read_timeout
        .map_or(ERROR_BODY_WAIT, |r| r.min(ERROR_BODY_WAIT));
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_BODY_BYTES {
        match tokio::time::timeout(wait, T::next(body)).await {
            Ok(Ok(Some((piece, _)))) => bytes.extend_from_slice(&piece),
            _ => break,
        }
    }
    bytes
}

/// Reads the body to its end; each piece carries its arrival time. Returns whether it ended
/// cleanly.
async fn read<T: Transport>(
    ex: &Exchange,
    body: &mut T::Body,
    reader: &mut BodyReader<'_>,
) -> bool {
    loop {
        let next = match ex.read_timeout {
            Some(limit) => match tokio::time::timeout(limit, T::next(body)).await {
                Ok(next) => next,
                Err(_) => {
                    reader.fail(
                        FailureKind::Timeout,
                        format!("no data for {limit:?} (--read-timeout)"),
                    );
                    return false;
                }
            },
            None => T::next(body).await,
        };
        match next {
            Ok(Some((piece, at))) => {
                if !reader.push(&piece, at) {
                    return false;
                }
            }
            Ok(None) => return true,
            Err((kind, message)) => {
                reader.fail(kind, message);
                return false;
            }
        }
    }
}
