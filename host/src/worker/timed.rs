//! Sending through the timed transport: the request drives its own connection, and reads
//! carry the kernel's arrival time (see `crate::transport`), over http and https alike.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use perf_plugin_api::FailureKind;
use reqwest::header::HeaderValue;

use super::exchange::{Head, NoResponse, Reuse, Transport};
use super::{content_type, Prepared, USER_AGENT};
use crate::transport::{Conn, ConnectError, TimedHttp};

type Incoming = hyper::body::Incoming;

/// The request for the timed transport: the path and query (the whole URL when a proxy
/// forwards it), plus Host, User-Agent and the proxy's credentials where it needs them.
fn request(
    t: &TimedHttp,
    p: &Prepared,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let mut request = hyper::Request::builder()
        .method(p.method.clone())
        .uri(t.target(&p.url));
    if let Some(h) = request.headers_mut() {
        *h = p.headers.clone();
        if let Ok(host) = HeaderValue::try_from(t.authority()) {
            h.insert(reqwest::header::HOST, host);
        }
        h.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        if let Some(auth) = t.forward_authorization() {
            if let Ok(mut value) = HeaderValue::try_from(auth) {
                value.set_sensitive(true);
                h.insert(reqwest::header::PROXY_AUTHORIZATION, value);
            }
        }
    }
    request
        .body(Full::new(body))
        .map_err(|e| format!("the adapter built an invalid request: {e}"))
}

impl Transport for TimedHttp {
    type Body = (Conn, Incoming);

    fn reuse(&self) -> &Reuse {
        self.reuse()
    }

    fn server(&self) -> String {
        self.authority().to_string()
    }

    async fn send(
        &self,
        p: &Prepared,
        body: Bytes,
        fresh: bool,
        head_timeout: Option<Duration>,
    ) -> Result<(Head, Self::Body), NoResponse> {
        // A pooled connection leaves out idle connections the server closed; `reused` says
        // whether this one served a request before.
        let connected = if fresh {
            self.connect().await.map(|c| (c, false))
        } else {
            self.checkout().await
        };
        let (mut conn, reused) = connected.map_err(|e| match e {
            ConnectError::Timeout => NoResponse {
                kind: FailureKind::Timeout,
                message: "connecting timed out (--connect-timeout)".into(),
                retry_fresh: false,
            },
            ConnectError::Failed(message) => NoResponse {
                kind: FailureKind::Connect,
                message,
                retry_fresh: false,
            },
        })?;
        let request = request(self, p, body).map_err(|message| NoResponse {
            kind: FailureKind::Plugin,
            message,
            retry_fresh: false,
        })?;
        let answered = match head_timeout {
            Some(limit) => match tokio::time::timeout(limit, send_on(&mut conn, request)).await {
                Ok(answered) => answered,
                Err(_) => {
                    return Err(NoResponse {
                        kind: FailureKind::Timeout,
                        message: format!("no response head for {limit:?} (--read-timeout)"),
                        retry_fresh: false,
                    })
                }
            },
            None => send_on(&mut conn, request).await,
        };
        match answered {
            Ok(response) => {
                let head = Head {
                    status: response.status().as_u16(),
                    content_type: content_type(response.headers()),
                    at: conn.clock.last(),
                    opened: conn.opened.take(),
                };
                Ok((head, (conn, response.into_body())))
            }
            Err(e) if e.tls => Err(NoResponse {
                kind: FailureKind::Connect,
                retry_fresh: false,
                message: e.text,
            }),
            Err(e) => Err(NoResponse {
                kind: FailureKind::Stream,
                retry_fresh: reused && e.closed_unanswered,
                message: format!("no response: {}", e.text),
            }),
        }
    }

    async fn next(
        (conn, incoming): &mut Self::Body,
    ) -> Result<Option<(Bytes, Instant)>, (FailureKind, String)> {
        loop {
            match conn.driver.drive(incoming.frame()).await {
                Ok(Some(Ok(frame))) => {
                    // Trailers carry no data; read on.
                    if let Some(data) = frame.data_ref() {
                        return Ok(Some((data.clone(), conn.clock.last())));
                    }
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Err((FailureKind::Stream, crate::transport::describe(&e)))
                }
                Err(ended) => return Err((FailureKind::Stream, ended.0)),
            }
        }
    }

    fn finish(&self, (conn, _): Self::Body, clean: bool) {
        if clean && !self.reuse().fresh_only() {
            self.checkin(conn);
        }
    }
}

/// Why no response came.
struct SendError {
    text: String,
    /// The connection closed (or was reset) before any byte of a response arrived.
    closed_unanswered: bool,
    /// TLS failed (the server rejected the client's certificate after the handshake).
    tls: bool,
}

impl SendError {
    fn hyper(e: &hyper::Error) -> Self {
        if let Some(text) = crate::transport::tls::failure_in(e) {
            return SendError {
                text,
                closed_unanswered: false,
                tls: true,
            };
        }
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
            tls: false,
        }
    }

    fn ended(e: crate::transport::ConnectionEnded) -> Self {
        SendError {
            closed_unanswered: e.0 == crate::transport::CLOSED_BY_SERVER,
            tls: e.0.starts_with(crate::transport::tls::HANDSHAKE_FAILED),
            text: e.0,
        }
    }
}

async fn send_on(
    conn: &mut Conn,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, SendError> {
    let failed = |conn: &mut Conn, e: &hyper::Error| {
        // The request's channel closed because the connection ended: its reason says more.
        match conn.driver.ended() {
            Some(reason) if e.is_canceled() || e.is_closed() => {
                SendError::ended(crate::transport::ConnectionEnded(reason.to_string()))
            }
            _ => SendError::hyper(e),
        }
    };
    match conn.driver.drive(conn.sender.ready()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(failed(conn, &e)),
        Err(ended) => return Err(SendError::ended(ended)),
    }
    let sending = conn.sender.send_request(request);
    match conn.driver.drive(sending).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(failed(conn, &e)),
        Err(ended) => Err(SendError::ended(ended)),
    }
}
