//! A local OpenAI-compatible HTTP server: `/v1/chat/completions` and `/v1/completions`
//! (streamed as server-sent events or not, with usage), `/v1/models` and `/health`; also the
//! Responses API (`/v1/responses`, `responses.rs`) and DashScope's native generation endpoints
//! (`/api/v1/services/aigc/{text,multimodal}-generation/generation`, `dashscope.rs`), each a
//! [`protocol::Protocol`] over the same backends; embeddings and rerank (`embeddings.rs`); and
//! `/metrics`, the backend's own figures (the simulator's in vLLM's format, `metrics.rs`).
//!
//! The protocol lives here; what generates the tokens is a [`Backend`]. The simulator
//! (`mock.rs`, `--api mock` and `perf serve-mock`) is one backend; `--api local` plugs in a
//! model the same way. The server can log its own timestamps (request received, generation
//! started, every chunk handed to the connection) so a client's numbers can be checked
//! against the server's.
//!
//! A crate of its own: it depends on neither perf's command line nor its client, only on the
//! clocks it shares with the client (`perf-timing`).

mod cache;
mod dashscope;
mod embeddings;
pub mod metrics;
pub mod mock;
mod protocol;
mod responses;

pub use mock::{MockBackend, SimulatorConfig};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub use protocol::CompletionRequest;

use perf_timing::{EpochClock, ReadClock, TimedStream};

/// What a backend produces, in order, for one generation.
#[derive(Debug)]
pub enum Piece {
    /// Generated text holding `tokens` tokens: one streamed chunk.
    Text {
        /// The text.
        text: String,
        /// Tokens in it.
        tokens: u32,
    },
    /// Emit a chunk that is not valid JSON (fault injection).
    Malformed,
    /// Drop the connection now (fault injection).
    Drop,
    /// Generation finished.
    End {
        /// `stop` or `length`.
        finish_reason: &'static str,
    },
}

/// A started generation.
pub struct Generation {
    /// Prompt tokens, as the backend counts them.
    pub prompt_tokens: u64,
    /// Cached prompt tokens, when the backend has a prefix cache.
    pub cached_tokens: Option<u64>,
    /// The pieces, as they are produced.
    pub pieces: mpsc::Receiver<Piece>,
}

/// An error response: status and message.
#[derive(Debug)]
pub struct Rejection {
    /// HTTP status.
    pub status: StatusCode,
    /// The message, sent as an OpenAI error object.
    pub message: String,
}

/// Generates tokens for the server.
pub trait Backend: Send + Sync + 'static {
    /// The model name on `/v1/models`.
    fn model(&self) -> &str;
    /// Starts a generation; the pieces arrive on the returned channel.
    fn start(&self, request: &CompletionRequest) -> Result<Generation, Rejection>;
    /// The backend's own figures in the Prometheus text format, served on `/metrics` (None:
    /// no `/metrics`).
    fn metrics(&self) -> Option<String> {
        None
    }
}

pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub(crate) fn full(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

struct Shared {
    backend: Arc<dyn Backend>,
    log: Option<protocol::TimestampLog>,
    clock: EpochClock,
}

async fn route(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    clock: Arc<ReadClock>,
) -> Result<Response<Body>, Infallible> {
    // When the request's bytes reached the socket (the kernel's receive time where available),
    // so a busy server's own queueing counts in the time to first token it logs.
    let received = clock.last();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET, "/health") => full(StatusCode::OK, "application/json", r#"{"status":"ok"}"#),
        (&Method::GET, "/metrics") => match shared.backend.metrics() {
            Some(text) => full(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ),
            None => protocol::error_response(StatusCode::NOT_FOUND, "this backend has no /metrics"),
        },
        (&Method::GET, "/v1/models") => {
            let body = serde_json::json!({"object": "list", "data": [{"id": shared.backend.model(), "object": "model", "owned_by": "perf"}]});
            full(StatusCode::OK, "application/json", body.to_string())
        }
        (&Method::POST, "/v1/chat/completions") => {
            protocol::generate(req, &shared, &protocol::OpenAi { chat: true }, received).await
        }
        (&Method::POST, "/v1/completions") => {
            protocol::generate(req, &shared, &protocol::OpenAi { chat: false }, received).await
        }
        (&Method::POST, "/v1/embeddings") => embeddings::embeddings(req, &shared).await,
        (&Method::POST, "/v1/rerank" | "/v1/reranks" | "/rerank") => {
            embeddings::rerank(req, &shared).await
        }
        (&Method::POST, "/v1/responses") => {
            protocol::generate(req, &shared, &responses::Responses, received).await
        }
        (&Method::POST, "/api/v1/services/aigc/text-generation/generation") => {
            let protocol = dashscope::DashScope { multimodal: false };
            protocol::generate(req, &shared, &protocol, received).await
        }
        (&Method::POST, "/api/v1/services/aigc/multimodal-generation/generation") => {
            let protocol = dashscope::DashScope { multimodal: true };
            protocol::generate(req, &shared, &protocol, received).await
        }
        _ => protocol::error_response(StatusCode::NOT_FOUND, &format!("no route for {path}")),
    };
    Ok(resp)
}

/// A running server.
pub struct ServerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops accepting connections and waits for the server thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Serves `backend` on `listener` until `shutdown` resolves; over TLS when `tls` is given
/// (`perf serve-mock --tls-cert`: the handshake and the encryption run in the connection's
/// task, so the chunk times the log holds are when each chunk was handed to TLS).
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    log_path: Option<&std::path::Path>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let log = log_path.map(protocol::TimestampLog::create).transpose()?;
    let shared = Arc::new(Shared {
        backend,
        log,
        clock: EpochClock::new(),
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors or similar: keep serving the connections we have.
                Err(_) => { tokio::time::sleep(std::time::Duration::from_millis(5)).await; continue; }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Ok(io) = TimedStream::new(stream) else {
                return;
            };
            let clock = io.clock();
            let service = service_fn(move |req| route(req, shared.clone(), clock.clone()));
            match tls {
                // A client that fails the handshake (no certificate, an untrusted one) gets
                // the TLS alert and nothing else.
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(TokioIo::new(io)).await {
                        serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => serve_connection(io, service).await,
            }
        });
    }
    if let Some(log) = &shared.log {
        log.flush();
    }
    Ok(())
}

async fn serve_connection<I, S>(io: I, service: S)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
}

/// Starts a server on its own thread and runtime (so it does not share the client's
/// scheduler), bound to `host:port` (port 0 picks a free one).
pub fn spawn(
    host: &str,
    port: u16,
    backend: Arc<dyn Backend>,
    log_path: Option<std::path::PathBuf>,
    worker_threads: usize,
) -> std::io::Result<ServerHandle> {
    let std_listener = std::net::TcpListener::bind((host, port))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads.max(1))
        .thread_name("perf-server")
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("perf-server".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(std_listener) {
                    Ok(listener) => {
                        let stop = async {
                            let _ = rx.await;
                        };
                        if let Err(e) =
                            serve(listener, backend, log_path.as_deref(), None, stop).await
                        {
                            eprintln!("server error: {e}");
                        }
                    }
                    Err(e) => eprintln!("server error: {e}"),
                }
            });
            runtime.shutdown_background();
        })?;
    Ok(ServerHandle {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}
