//! The timed transport for plain `http://` endpoints: hyper's HTTP/1.1 connection API over
//! [`perf_timing::TimedStream`], with a lock-free pool of keep-alive connections.
//!
//! Why not reqwest here: reqwest's connector output is sealed, so nothing can see the socket.
//! Measured on one client core with 1,000 concurrent streams (bench/compare.py), stamping
//! chunks in the request task put the client's own queueing into TTFT (+30 to +45 ms at p99
//! against the server's timestamps). Here each request drives its own connection in its own
//! task (one task hop per chunk instead of two) and every read carries the kernel's receive
//! time. reqwest still serves https and proxied endpoints.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::SegQueue;

use crate::worker::Reuse;
use http_body_util::Full;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use perf_timing::{ReadClock, TimedStream};

/// A connection: the request handle, the connection future that does its I/O, and its clock.
pub struct Conn {
    /// Sends requests.
    pub sender: SendRequest<Full<Bytes>>,
    /// Does the connection's I/O.
    pub driver: Driver,
    /// When the latest read's data arrived.
    pub clock: Arc<ReadClock>,
    /// When it was last returned to the pool.
    returned: Instant,
}

/// The connection ended (closed or failed) before the awaited future finished.
#[derive(Debug)]
pub struct ConnectionEnded(pub String);

/// [`ConnectionEnded`]'s text when the server closed the connection cleanly.
pub const CLOSED_BY_SERVER: &str = "the server closed the connection";

/// The connection future of a [`Conn`].
pub struct Driver(Pin<Box<Connection<TimedStream, Full<Bytes>>>>);

impl Driver {
    /// Runs `fut` while doing this connection's I/O in the same task.
    pub async fn drive<F: Future>(&mut self, fut: F) -> Result<F::Output, ConnectionEnded> {
        let driver = &mut self.0;
        let mut fut = std::pin::pin!(fut);
        let mut ended: Option<String> = None;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if ended.is_none() {
                if let Poll::Ready(result) = driver.as_mut().poll(cx) {
                    ended = Some(match result {
                        Ok(()) => CLOSED_BY_SERVER.to_string(),
                        Err(e) => describe(&e),
                    });
                    // The connection's last act may have completed `fut`.
                    if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                        return Poll::Ready(Ok(out));
                    }
                }
            }
            match &ended {
                Some(reason) => Poll::Ready(Err(ConnectionEnded(reason.clone()))),
                None => Poll::Pending,
            }
        })
        .await
    }
}

impl Conn {
    fn alive(&mut self) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        matches!(self.driver.0.as_mut().poll(&mut cx), Poll::Pending)
    }
}

/// A hyper error and its causes.
pub fn describe(e: &hyper::Error) -> String {
    format!("{e}{}", causes(e))
}

/// The causes of an error, each after ": ".
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Keep-alive connections to one `host:port`.
pub struct TimedHttp {
    authority: String,
    idle: SegQueue<Conn>,
    connect_timeout: Option<Duration>,
    reuse: Reuse,
}

/// A connection the server closes within this time of returning it to the pool closed it
/// after the response, not for idling.
const CLOSED_AFTER_RESPONSE: Duration = Duration::from_secs(1);

/// Why no connection could be made.
#[derive(Debug)]
pub enum ConnectError {
    /// The connect timeout expired.
    Timeout,
    /// Anything else.
    Failed(String),
}

fn proxy_configured() -> bool {
    ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

impl TimedHttp {
    /// A transport for `url` when it is plain http and no proxy is configured; `None` sends the
    /// request through reqwest instead.
    ///
    /// `PERF_HTTP_CLIENT=reqwest` in the environment sends everything through reqwest (to rule
    /// the transport out when chasing a problem; the timestamps then include client queueing).
    pub fn for_url(url: &reqwest::Url, connect_timeout: Option<Duration>) -> Option<Self> {
        let forced = std::env::var("PERF_HTTP_CLIENT").is_ok_and(|v| v == "reqwest");
        if forced || url.scheme() != "http" || proxy_configured() || !url.username().is_empty() {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Some(TimedHttp {
            authority,
            idle: SegQueue::new(),
            connect_timeout,
            reuse: Reuse::default(),
        })
    }

    /// Whether `url` goes to this transport's server.
    pub fn serves(&self, url: &reqwest::Url) -> bool {
        url.scheme() == "http"
            && match (url.host_str(), url.port_or_known_default()) {
                (Some(h), Some(p)) => {
                    let a = if h.contains(':') {
                        format!("[{h}]:{p}")
                    } else {
                        format!("{h}:{p}")
                    };
                    a == self.authority
                }
                _ => false,
            }
    }

    /// `host:port`, for the Host header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Whether this server's connections are worth keeping.
    pub fn reuse(&self) -> &Reuse {
        &self.reuse
    }

    /// An idle connection (`true`: reused), or a new one.
    pub async fn checkout(&self) -> Result<(Conn, bool), ConnectError> {
        while let Some(mut conn) = self.idle.pop() {
            self.reuse.reused();
            if conn.alive() {
                return Ok((conn, true));
            }
            if conn.returned.elapsed() < CLOSED_AFTER_RESPONSE {
                self.reuse.closed(&self.authority);
            }
        }
        self.connect().await.map(|c| (c, false))
    }

    /// A new connection.
    pub async fn connect(&self) -> Result<Conn, ConnectError> {
        let connect = tokio::net::TcpStream::connect(self.authority.as_str());
        let stream = match self.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, connect)
                .await
                .map_err(|_| ConnectError::Timeout)?,
            None => connect.await,
        }
        .map_err(|e| ConnectError::Failed(format!("cannot connect to {}: {e}", self.authority)))?;
        let _ = stream.set_nodelay(true);
        let io = TimedStream::new(stream)
            .map_err(|e| ConnectError::Failed(format!("cannot use the connection: {e}")))?;
        let clock = io.clock();
        let (sender, driver) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ConnectError::Failed(describe(&e)))?;
        Ok(Conn {
            sender,
            driver: Driver(Box::pin(driver)),
            clock,
            returned: Instant::now(),
        })
    }

    /// Returns a connection whose response was read to the end.
    pub fn checkin(&self, mut conn: Conn) {
        conn.returned = Instant::now();
        self.idle.push(conn);
    }
}
