//! The timed transport for `http://` and `https://` endpoints: hyper's HTTP/1.1 connection
//! API over [`perf_timing::TimedStream`] (with rustls over it for https, and through a proxy
//! from the environment when one applies), with a lock-free pool of keep-alive connections.
//!
//! Why not reqwest here: reqwest's connector output is sealed, so nothing can see the socket.
//! Measured on one client core with 1,000 concurrent streams (bench/compare.py), stamping
//! chunks in the request task put the client's own queueing into TTFT (+30 to +45 ms at p99
//! against the server's timestamps). Here each request drives its own connection in its own
//! task (one task hop per chunk instead of two) and every read carries the kernel's receive
//! time. Over TLS the stamp is that of the socket read that completed the record holding the
//! bytes (rustls reads from the socket only when it has no plaintext left), so https is timed
//! as exactly as plain http. reqwest serves only `PERF_HTTP_CLIENT=reqwest` and URLs with
//! user info.
//!
//! HTTP/1.1 only, one stream per connection, as evalscope's aiohttp client: ALPN offers
//! `http/1.1` alone. (HTTP/2 multiplexes streams on one socket, so a read's time would not
//! belong to one request.)

pub mod proxy;
pub mod tls;

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
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use perf_timing::{ReadClock, TimedStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use proxy::Proxy;

/// A connection's bytes: plain, or TLS over the timed socket.
pub enum Io {
    /// `http://`.
    Plain(TimedStream),
    /// `https://`.
    Tls(Box<TlsIo>),
}

/// TLS over the timed socket, read one record at a time ([`RecordReads`]).
pub type TlsIo = TokioIo<tokio_rustls::client::TlsStream<RecordReads<TokioIo<TimedStream>>>>;

/// Reads of a TLS byte stream that never cross a record's end: a record's header (5 bytes),
/// then its body, each a read of its own.
///
/// Why: the kernel stamps a read with the arrival of the last data it returns. When perf is
/// late to a connection (a busy client), two records may wait in the socket; one read of both
/// would stamp the first record's plaintext (a first token) with the second's arrival, a
/// whole token gap late (measured: at 1,000 streams and 20 ms a token on one core, about 1%
/// of TTFTs 20 ms late). Read record by record, each record's plaintext carries the arrival
/// of its own last byte, however late perf reads it, for one more system call per record.
pub struct RecordReads<T> {
    inner: T,
    /// The header being read, and how much of it has arrived.
    header: [u8; 5],
    header_read: usize,
    /// Bytes of the current record's body still to read.
    body_left: usize,
}

impl<T> RecordReads<T> {
    /// Wraps `inner`, at a record boundary.
    pub fn new(inner: T) -> Self {
        RecordReads {
            inner,
            header: [0; 5],
            header_read: 0,
            body_left: 0,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for RecordReads<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let in_header = this.body_left == 0;
        let wanted = if in_header {
            5 - this.header_read
        } else {
            this.body_left
        };
        let limit = wanted.min(buf.remaining());
        let mut part = buf.take(limit);
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        if in_header {
            this.header[this.header_read..this.header_read + n].copy_from_slice(part.filled());
            this.header_read += n;
            if this.header_read == 5 {
                this.header_read = 0;
                this.body_left = usize::from(u16::from_be_bytes([this.header[3], this.header[4]]));
            }
        } else {
            this.body_left -= n;
        }
        // SAFETY: `part` is a view of `buf`'s unfilled part, and its first `n` bytes were
        // filled by the read above.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for RecordReads<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Read for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(io) => io.is_write_vectored(),
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_flush(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How long opening a connection took, for the request that opened it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Opened {
    /// TCP connect, and the proxy's `CONNECT` when there is one.
    pub connect: Duration,
    /// The TLS handshake, on https.
    pub tls: Option<Duration>,
}

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
    /// How it was opened; taken by the first request on it.
    pub opened: Option<Opened>,
}

/// The connection ended (closed or failed) before the awaited future finished.
#[derive(Debug)]
pub struct ConnectionEnded(pub String);

/// [`ConnectionEnded`]'s text when the server closed the connection cleanly.
pub const CLOSED_BY_SERVER: &str = "the server closed the connection";

/// The connection future of a [`Conn`], and why it ended once it has.
pub struct Driver(Pin<Box<Connection<Io, Full<Bytes>>>>, Option<String>);

impl Driver {
    /// Runs `fut` while doing this connection's I/O in the same task.
    pub async fn drive<F: Future>(&mut self, fut: F) -> Result<F::Output, ConnectionEnded> {
        let driver = &mut self.0;
        let mut fut = std::pin::pin!(fut);
        let ended = &mut self.1;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if ended.is_none() {
                if let Poll::Ready(result) = driver.as_mut().poll(cx) {
                    *ended = Some(match result {
                        Ok(()) => CLOSED_BY_SERVER.to_string(),
                        Err(e) => tls::failure_in(&e).unwrap_or_else(|| describe(&e)),
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

    /// Why the connection ended, if it has: what a request that failed with "channel closed"
    /// (the connection went away under it) should say instead.
    pub fn ended(&mut self) -> Option<&str> {
        if self.1.is_none() {
            let waker = futures_util::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            if let Poll::Ready(result) = self.0.as_mut().poll(&mut cx) {
                self.1 = Some(match result {
                    Ok(()) => CLOSED_BY_SERVER.to_string(),
                    Err(e) => tls::failure_in(&e).unwrap_or_else(|| describe(&e)),
                });
            }
        }
        self.1.as_deref()
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

/// Keep-alive connections to one `host:port`, over http or https, directly or through a
/// proxy.
pub struct TimedHttp {
    /// `host:port` of the server: the Host header, the CONNECT target.
    authority: String,
    /// `http` or `https`.
    scheme: &'static str,
    /// On https: the configuration and the name the certificate must carry.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// The proxy from the environment, when one applies.
    proxy: Option<Proxy>,
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

fn authority_of(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

impl TimedHttp {
    /// A transport for `url` (`http` or `https`; `tls` is the client configuration for
    /// https), through `proxy` when one applies; `None` sends the request through reqwest
    /// instead (a URL with user info, which reqwest turns into basic auth).
    ///
    /// `PERF_HTTP_CLIENT=reqwest` in the environment sends everything through reqwest (to rule
    /// the transport out when chasing a problem; the timestamps then include client queueing).
    pub fn for_url(
        url: &reqwest::Url,
        connect_timeout: Option<Duration>,
        tls: Option<Arc<rustls::ClientConfig>>,
        proxy: Option<Proxy>,
    ) -> Result<Option<Self>, String> {
        let forced = std::env::var("PERF_HTTP_CLIENT").is_ok_and(|v| v == "reqwest");
        if forced || !url.username().is_empty() {
            return Ok(None);
        }
        let scheme = match url.scheme() {
            "http" => "http",
            "https" => "https",
            _ => return Ok(None),
        };
        let Some(authority) = authority_of(url) else {
            return Ok(None);
        };
        let tls = match (scheme, tls) {
            ("https", Some(config)) => {
                let name = tls::server_name(url.host_str().unwrap_or_default())?;
                Some((tokio_rustls::TlsConnector::from(config), name))
            }
            ("https", None) => return Err("an https endpoint needs a TLS configuration".into()),
            _ => None,
        };
        Ok(Some(TimedHttp {
            authority,
            scheme,
            tls,
            proxy,
            idle: SegQueue::new(),
            connect_timeout,
            reuse: Reuse::default(),
        }))
    }

    /// Whether `url` goes to this transport's server.
    pub fn serves(&self, url: &reqwest::Url) -> bool {
        url.scheme() == self.scheme && authority_of(url).is_some_and(|a| a == self.authority)
    }

    /// `host:port`, for the Host header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The request target: the path (and query), or the whole URL when a proxy forwards
    /// plain http.
    pub fn target(&self, url: &reqwest::Url) -> String {
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        if self.proxy.is_some() && self.tls.is_none() {
            format!("http://{}{path}", self.authority)
        } else {
            path
        }
    }

    /// `Proxy-Authorization` for requests a proxy forwards (plain http through a proxy).
    pub fn forward_authorization(&self) -> Option<&str> {
        match (&self.proxy, &self.tls) {
            (Some(p), None) => p.authorization.as_deref(),
            _ => None,
        }
    }

    /// What carries the requests, for the summary's `Transport`.
    pub fn describe(&self) -> String {
        let base = if self.tls.is_some() {
            "HTTP/1.1 over TLS"
        } else {
            "HTTP/1.1"
        };
        match &self.proxy {
            Some(p) => format!("{base} through the proxy in {}", p.variable),
            None => base.to_string(),
        }
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

    /// A new connection: TCP (to the proxy, with a `CONNECT` tunnel for https), TLS on
    /// https, then HTTP/1.1; all within `--connect-timeout`.
    pub async fn connect(&self) -> Result<Conn, ConnectError> {
        match self.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, self.open())
                .await
                .map_err(|_| ConnectError::Timeout)?,
            None => self.open().await,
        }
    }

    async fn open(&self) -> Result<Conn, ConnectError> {
        let started = Instant::now();
        let dial = self
            .proxy
            .as_ref()
            .map_or(self.authority.as_str(), |p| p.authority.as_str());
        let mut stream = tokio::net::TcpStream::connect(dial).await.map_err(|e| {
            ConnectError::Failed(match &self.proxy {
                Some(p) => format!("cannot connect to the proxy {dial} ({}): {e}", p.variable),
                None => format!("cannot connect to {dial}: {e}"),
            })
        })?;
        let _ = stream.set_nodelay(true);
        if let (Some(p), Some(_)) = (&self.proxy, &self.tls) {
            tunnel(&mut stream, &self.authority, p)
                .await
                .map_err(ConnectError::Failed)?;
        }
        let connected = Instant::now();
        let timed = TimedStream::new(stream)
            .map_err(|e| ConnectError::Failed(format!("cannot use the connection: {e}")))?;
        let clock = timed.clock();
        let (io, tls) = match &self.tls {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), RecordReads::new(TokioIo::new(timed)))
                    .await
                    .map_err(|e| {
                        ConnectError::Failed(format!("{}: {}", self.authority, tls::explain(&e)))
                    })?;
                (
                    Io::Tls(Box::new(TokioIo::new(stream))),
                    Some(connected.elapsed()),
                )
            }
            None => (Io::Plain(timed), None),
        };
        let (sender, driver) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ConnectError::Failed(describe(&e)))?;
        Ok(Conn {
            sender,
            driver: Driver(Box::pin(driver), None),
            clock,
            returned: Instant::now(),
            opened: Some(Opened {
                connect: connected - started,
                tls,
            }),
        })
    }

    /// Returns a connection whose response was read to the end.
    pub fn checkin(&self, mut conn: Conn) {
        conn.returned = Instant::now();
        self.idle.push(conn);
    }
}

/// Longest proxy answer to `CONNECT` read.
const CONNECT_HEAD_BYTES: usize = 16 << 10;

/// Opens a tunnel to `target` through the proxy `stream` is connected to.
async fn tunnel(
    stream: &mut tokio::net::TcpStream,
    target: &str,
    proxy: &Proxy,
) -> Result<(), String> {
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.authorization {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    let who = format!("the proxy {} ({})", proxy.authority, proxy.variable);
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("{who} failed during CONNECT {target}: {e}"))?;
    let mut answer = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while memchr::memmem::find(&answer, b"\r\n\r\n").is_none() {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("{who} failed during CONNECT {target}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "{who} closed the connection instead of answering CONNECT {target}"
            ));
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.len() > CONNECT_HEAD_BYTES {
            return Err(format!(
                "{who} answered CONNECT {target} with more than {CONNECT_HEAD_BYTES} bytes of head"
            ));
        }
    }
    connect_answer(&answer).map_err(|e| format!("{who} refused CONNECT {target}: {e}"))
}

/// Whether a proxy's answer to `CONNECT` (its head, up to the blank line) opens the tunnel;
/// the error is the status line and, for 407, where credentials go.
pub fn connect_answer(head: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(head);
    let status_line: String = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .chars()
        .take(200)
        .collect();
    let mut words = status_line.split_whitespace();
    let version = words.next().unwrap_or_default();
    let status = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP answer: {status_line:?}"));
    }
    if status == "200" {
        return Ok(());
    }
    let hint = if status == "407" {
        ": the proxy wants credentials, which go in the proxy URL (http://USER:PASSWORD@HOST:PORT)"
    } else {
        ""
    };
    Err(format!("{status_line}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::{connect_answer, RecordReads};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn tls_reads_stop_at_every_record_end() {
        let (mut server, client) = tokio::io::duplex(1 << 16);
        // Two application-data records (type 23, TLS 1.2 on the wire) waiting together.
        let mut bytes = vec![23, 3, 3, 0, 3, b'a', b'b', b'c'];
        bytes.extend([23, 3, 3, 0, 2, b'd', b'e']);
        server.write_all(&bytes).await.expect("write");
        let mut reader = RecordReads::new(client);
        let mut reads = Vec::new();
        let mut buf = [0u8; 4096];
        while reads.iter().map(Vec::len).sum::<usize>() < bytes.len() {
            let n = reader.read(&mut buf).await.expect("read");
            reads.push(buf[..n].to_vec());
        }
        assert_eq!(
            reads,
            [
                vec![23, 3, 3, 0, 3],
                b"abc".to_vec(),
                vec![23, 3, 3, 0, 2],
                b"de".to_vec()
            ]
        );
    }

    #[test]
    fn proxy_answers_to_connect() {
        assert!(connect_answer(b"HTTP/1.1 200 Connection established\r\n\r\n").is_ok());
        assert!(connect_answer(b"HTTP/1.0 200 OK\r\nVia: x\r\n\r\n").is_ok());
        let e = connect_answer(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            .expect_err("refused");
        assert!(e.contains("407") && e.contains("USER:PASSWORD"), "{e}");
        assert!(connect_answer(b"HTTP/1.1 403 Forbidden\r\n\r\n").is_err());
        assert!(connect_answer(b"SSH-2.0-OpenSSH\r\n\r\n")
            .expect_err("refused")
            .contains("not an HTTP answer"));
    }
}
