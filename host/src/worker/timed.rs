//! Sending through the timed transport: the request drives its own connection, and reads
//! carry the kernel's arrival time (see `crate::transport`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use perf_plugin_api::FailureKind;
use reqwest::header::HeaderValue;

use super::{content_type, error_text, BodyReader, Exchange, Prepared, RawRecord, USER_AGENT};
use crate::transport::{Conn, TimedHttp};

type Incoming = hyper::body::Incoming;

/// The request for the timed transport: path and query only, plus Host and User-Agent.
fn request(
    t: &TimedHttp,
    p: &Prepared,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let mut path = p.url.path().to_string();
    if let Some(q) = p.url.query() {
        path.push('?');
        path.push_str(q);
    }
    let mut request = hyper::Request::builder().method(p.method.clone()).uri(path);
    if let Some(h) = request.headers_mut() {
        *h = p.headers.clone();
        if let Ok(host) = HeaderValue::try_from(t.authority()) {
            h.insert(reqwest::header::HOST, host);
        }
        h.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
    }
    request
        .body(Full::new(body))
        .map_err(|e| format!("the adapter built an invalid request: {e}"))
}

/// Sends on a pooled connection (idle connections the server closed are left out by the
/// pool). A failure after that is not retried, with one exception: a *reused* connection that
/// the server closed without sending a single byte of response. Some servers close a
/// keep-alive connection when the next request arrives instead of saying `Connection: close`
/// (llama.cpp's server does so after every streamed response); such a request was never
/// processed, so it is sent once more on a fresh connection, as curl and browsers do, and
/// counted (`Reused-Connection Retries`). Anything else may have reached the server, and
/// sending it again would hide a failure and double the load.
async fn send(
    t: &TimedHttp,
    p: &Prepared,
    record: &mut RawRecord,
) -> Option<(Conn, hyper::Response<Incoming>)> {
    let (mut conn, reused) = match t.checkout().await {
        Ok(c) => c,
        Err(e) => {
            record.fail_to_connect(e);
            return None;
        }
    };
    let first = match request(t, p, record.request_body.clone()) {
        Ok(r) => r,
        Err(e) => {
            record.fail(FailureKind::Plugin, e);
            return None;
        }
    };
    let error = match send_on(&mut conn, first).await {
        Ok(response) => return Some((conn, response)),
        Err(e) if reused && e.closed_unanswered => e.text,
        Err(e) => {
            record.fail(FailureKind::Stream, format!("no response: {}", e.text));
            return None;
        }
    };
    record.retries += 1;
    let mut fresh = match t.connect().await {
        Ok(c) => c,
        Err(e) => {
            record.fail_to_connect(e);
            return None;
        }
    };
    let again = match request(t, p, record.request_body.clone()) {
        Ok(r) => r,
        Err(e) => {
            record.fail(FailureKind::Plugin, e);
            return None;
        }
    };
    record.sent = std::time::Instant::now();
    match send_on(&mut fresh, again).await {
        Ok(response) => Some((fresh, response)),
        Err(e) => {
            record.fail(
                FailureKind::Stream,
                format!(
                    "no response: {} (after a reused connection closed unanswered: {error})",
                    e.text
                ),
            );
            None
        }
    }
}

pub(super) async fn exchange_timed(
    ex: &Exchange,
    t: &TimedHttp,
    p: Prepared,
    record: &mut RawRecord,
) {
    let framing = p.framing;
    let Some((mut conn, response)) = send(t, &p, record).await else {
        return;
    };
    record.first_byte = Some(conn.clock.last());
    record.status = response.status().as_u16();
    let ctype = content_type(response.headers());
    let mut incoming = response.into_body();
    if !(200..300).contains(&record.status) {
        let body = error_body(&mut conn, &mut incoming).await;
        return record.fail(
            FailureKind::HttpStatus,
            format!("HTTP {}: {}", record.status, error_text(&body)),
        );
    }
    let Some(mut body) = BodyReader::new(ex, framing, &ctype, record) else {
        return;
    };
    let complete = read_body(ex, &mut conn, &mut incoming, &mut body).await;
    body.finish();
    if complete {
        t.checkin(conn);
    }
}

/// The start of an error response's body (2 KB at most, 10 s at most per read).
async fn error_body(conn: &mut Conn, incoming: &mut Incoming) -> Vec<u8> {
    let mut bytes = Vec::new();
    while bytes.len() < 2048 {
        let next = conn
            .driver
            .drive(tokio::time::timeout(
                Duration::from_secs(10),
                incoming.frame(),
            ))
            .await;
        match next {
            Ok(Ok(Some(Ok(frame)))) => {
                if let Some(d) = frame.data_ref() {
                    bytes.extend_from_slice(d);
                }
            }
            _ => break,
        }
    }
    bytes
}

/// Reads the body to its end; each piece carries its read's arrival time. Returns whether the
/// body ended cleanly (the connection can serve another request).
async fn read_body(
    ex: &Exchange,
    conn: &mut Conn,
    incoming: &mut Incoming,
    body: &mut BodyReader<'_>,
) -> bool {
    loop {
        let next = match ex.read_timeout {
            Some(limit) => match conn
                .driver
                .drive(tokio::time::timeout(limit, incoming.frame()))
                .await
            {
                Ok(Ok(frame)) => Ok(frame),
                Ok(Err(_)) => {
                    body.fail(
                        FailureKind::Timeout,
                        format!("no data for {limit:?} (--read-timeout)"),
                    );
                    return false;
                }
                Err(ended) => Err(ended),
            },
            None => conn.driver.drive(incoming.frame()).await,
        };
        match next {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    body.push(data, conn.clock.last());
                }
            }
            Ok(None) => return true,
            Ok(Some(Err(e))) => {
                body.fail(FailureKind::Stream, crate::transport::describe(&e));
                return false;
            }
            Err(ended) => {
                body.fail(FailureKind::Stream, ended.0);
                return false;
            }
        }
    }
}

/// Why no response came.
struct SendError {
    text: String,
    /// The connection closed (or was reset) before any byte of a response arrived.
    closed_unanswered: bool,
}

impl SendError {
    fn hyper(e: &hyper::Error) -> Self {
        let reset = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                )
            });
        SendError {
            text: crate::transport::describe(e),
            closed_unanswered: e.is_incomplete_message() || e.is_canceled() || reset,
        }
    }

    fn ended(e: crate::transport::ConnectionEnded) -> Self {
        SendError {
            closed_unanswered: e.0 == crate::transport::CLOSED_BY_SERVER,
            text: e.0,
        }
    }
}

async fn send_on(
    conn: &mut Conn,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, SendError> {
    match conn.driver.drive(conn.sender.ready()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(SendError::hyper(&e)),
        Err(ended) => return Err(SendError::ended(ended)),
    }
    let sending = conn.sender.send_request(request);
    match conn.driver.drive(sending).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(SendError::hyper(&e)),
        Err(ended) => Err(SendError::ended(ended)),
    }
}
