//! What the https tests need, made at test time: a private CA with a server certificate for
//! 127.0.0.1 and a client certificate (rcgen), an HTTP proxy on 127.0.0.1 that tunnels
//! `CONNECT` and forwards absolute-form requests, logging what it was asked, and a TLS
//! terminator to put in front of a plaintext server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM files under one directory.
pub struct Pki {
    /// The server CA's certificate (what a client must trust).
    pub ca: PathBuf,
    /// The server's certificate (for 127.0.0.1 and localhost) and key.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A second CA, which signs client certificates (what a mutual-TLS server trusts).
    pub client_ca: PathBuf,
    /// A client certificate signed by `client_ca`, and its key.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A server certificate for `localhost` only, from the same CA.
    pub localhost_cert: PathBuf,
    /// Its key.
    pub localhost_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
}

fn leaf(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).expect("leaf params");
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Makes everything in `dir`.
    pub fn create(dir: &Path) -> Self {
        let server_ca = ca("perf test server CA");
        let client_ca = ca("perf test client CA");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write pem");
            path
        };
        let (server_cert, server_key) = leaf(
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &server_ca,
        );
        let (localhost_cert, localhost_key) = leaf(
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &server_ca,
        );
        let (client_cert, client_key) = leaf(
            &["perf-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &client_ca,
        );
        Pki {
            ca: write("ca.pem", &server_ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_ca: write("client-ca.pem", &client_ca.pem()),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            localhost_cert: write("localhost.pem", &localhost_cert),
            localhost_key: write("localhost.key", &localhost_key),
        }
    }
}

/// What the proxy was asked: each request line and its `Proxy-Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// `CONNECT 127.0.0.1:P HTTP/1.1`, `POST http://127.0.0.1:P/v1/... HTTP/1.1`.
    pub line: String,
    /// The `Proxy-Authorization` header, if sent.
    pub authorization: Option<String>,
}

/// An HTTP proxy on 127.0.0.1: `CONNECT` opens a tunnel; an absolute-form request is passed on
/// to its host unchanged (an origin server accepts absolute-form), and the connection is piped
/// from then on. Runs until the test process ends.
pub struct Proxy {
    /// Its port.
    pub port: u16,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl Proxy {
    /// Starts one.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = handle(client, &log);
                });
            }
        });
        Proxy { port, asked }
    }

    /// `http://127.0.0.1:<port>` (with `user:password@` when given).
    pub fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(c) => format!("http://{c}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// Everything asked so far.
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().expect("lock").clone()
    }
}

fn handle(client: TcpStream, log: &Mutex<Vec<Asked>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut line = String::new();
    let mut authorization = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("proxy-authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
        head.push(line.clone());
        if line == "\r\n" {
            break;
        }
    }
    let request_line = head.first().cloned().unwrap_or_default();
    let request_line = request_line.trim_end().to_string();
    log.lock().expect("lock").push(Asked {
        line: request_line.clone(),
        authorization,
    });
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut client_w = client.try_clone()?;
    if method == "CONNECT" {
        let upstream = TcpStream::connect(target)?;
        client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        return pipe(reader, client_w, upstream);
    }
    let Some(authority) = target
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
    else {
        client_w.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")?;
        return Ok(());
    };
    let mut upstream = TcpStream::connect(authority)?;
    for l in &head {
        upstream.write_all(l.as_bytes())?;
    }
    pipe(reader, client_w, upstream)
}

/// Copies both ways until either side closes.
fn pipe(
    mut from_client: BufReader<TcpStream>,
    mut to_client: TcpStream,
    upstream: TcpStream,
) -> std::io::Result<()> {
    let mut up_w = upstream.try_clone()?;
    let mut up_r = upstream;
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    // What the reader buffered past the head goes first.
    let buffered = from_client.buffer().to_vec();
    up_w.write_all(&buffered)?;
    let consumed = buffered.len();
    from_client.consume(consumed);
    let mut rest = from_client.into_inner();
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = rest.read(&mut buf)?;
        if n == 0 {
            break;
        }
        up_w.write_all(&buf[..n])?;
    }
    let _ = up_w.shutdown(Shutdown::Write);
    let _ = back.join();
    Ok(())
}

/// A TLS terminator on 127.0.0.1, as a load balancer or an ingress stands in front of an OTLP
/// collector: it completes TLS with `cert` and `key` (and, with `client_ca`, requires a client
/// certificate signed by it), offers one application protocol (`h2` in front of gRPC,
/// `http/1.1` in front of HTTP), and pipes the plaintext to 127.0.0.1:`backend`. Counts the
/// handshakes it refused. Runs until the test process ends.
pub struct Terminator {
    /// Its port.
    pub port: u16,
    refused: Arc<std::sync::atomic::AtomicUsize>,
}

impl Terminator {
    /// Starts one.
    pub fn start(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        alpn: &[u8],
        backend: u16,
    ) -> Self {
        let base = perf_host::transport::tls::server_config(cert, key, client_ca)
            .expect("a server identity");
        let mut config = (*base).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = refused.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    let count = count.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            return;
                        };
                        if let Ok(mut up) =
                            tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                        }
                    });
                }
            });
        });
        Terminator { port, refused }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// How many TLS handshakes it refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}
