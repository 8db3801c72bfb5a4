//! A hostile HTTP server on 127.0.0.1: one [`Fault`] for every request, written with raw TCP
//! so it can do what a well-behaved server library never would (reset a connection, send
//! broken chunked encoding, stall forever, never end a line). It counts the requests it read,
//! so a test can check that perf recorded every one of them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the server does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 401 whose body echoes the request's head, credentials included.
    EchoCredentials,
    /// 500 with a JSON error body.
    ServerError,
    /// 500 whose promised body never comes.
    ErrorHeadThenStall,
    /// Closes the connection (FIN) before any byte of an answer.
    CloseBeforeHead,
    /// Resets the connection (RST) before any byte of an answer.
    ResetBeforeHead,
    /// Sends the head and one event, then closes without ending the body.
    CloseMidStream,
    /// Sends the head and one event, then resets the connection.
    ResetMidStream,
    /// Events whose data is not JSON.
    Malformed,
    /// Events whose data is not UTF-8.
    InvalidUtf8,
    /// Never answers.
    StallBeforeHead,
    /// Sends the head and one event, then nothing.
    StallMidStream,
    /// Sends the head one byte at a time, slowly.
    SlowHeaders,
    /// A non-streamed body far longer than any limit.
    HugeBody,
    /// A streamed event that never ends its line.
    HugeLine,
    /// Chunked encoding with a chunk size that is not hexadecimal.
    BadChunked,
    /// Answers the first few requests well, then stops listening.
    RefuseAfterFew,
    /// A good stream whose usage counts are absurd (2^64 - 1, negative).
    AbsurdUsage,
    /// A good stream with more output events after `[DONE]`.
    DataAfterDone,
    /// 200 with an HTML page instead of JSON.
    Html,
}

/// How many good requests [`Fault::RefuseAfterFew`] answers before it stops listening.
pub const ANSWERED_BEFORE_REFUSING: u64 = 3;

/// The server; it runs until the test process ends.
pub struct Hostile {
    /// Its port on 127.0.0.1.
    pub port: u16,
    seen: Arc<AtomicU64>,
}

const GOOD_EVENTS: &str = concat!(
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
    "data: [DONE]\n\n",
);

fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

/// Reads one request; its head as text, `None` when the connection ended first.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(head)
}

fn reset(stream: &TcpStream) {
    let _ = socket2_linger_zero(stream);
}

/// SO_LINGER with a zero timeout: closing sends RST instead of FIN.
fn socket2_linger_zero(stream: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn good(out: &mut TcpStream) {
    let _ = out.write_all(STREAM_HEAD.as_bytes());
    let _ = out.write_all(&chunk(GOOD_EVENTS.as_bytes()));
    let _ = out.write_all(b"0\r\n\r\n");
}

fn answer(fault: Fault, head: &str, out: &mut TcpStream) {
    let first = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    match fault {
        Fault::EchoCredentials => {
            let body = format!(
                "{{\"error\": \"unauthorized request: {}\"}}",
                head.escape_debug()
            );
            let _ = write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Fault::ServerError => {
            let body = r#"{"error": {"message": "the model crashed", "type": "server_error"}}"#;
            let _ = write!(
                out,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Fault::ErrorHeadThenStall => {
            let _ = out.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"error\"",
            );
            let _ = out.flush();
            std::thread::sleep(Duration::from_secs(60));
        }
        Fault::CloseBeforeHead => {}
        Fault::ResetBeforeHead => reset(out),
        Fault::CloseMidStream | Fault::ResetMidStream => {
            let _ = out.write_all(STREAM_HEAD.as_bytes());
            let _ = out.write_all(&chunk(first.as_bytes()));
            let _ = out.flush();
            std::thread::sleep(Duration::from_millis(50));
            if fault == Fault::ResetMidStream {
                reset(out);
            }
        }
        Fault::Malformed => {
            let _ = out.write_all(STREAM_HEAD.as_bytes());
            let _ = out.write_all(&chunk(b"data: {not json\n\ndata: <html>\n\n"));
            let _ = out.write_all(b"0\r\n\r\n");
        }
        Fault::InvalidUtf8 => {
            let _ = out.write_all(STREAM_HEAD.as_bytes());
            let _ = out.write_all(&chunk(
                b"data: \xff\xfe\xfd\n\ndata: {\"choices\": \"\xc3\x28\"}\n\n",
            ));
            let _ = out.write_all(b"0\r\n\r\n");
        }
        Fault::StallBeforeHead => std::thread::sleep(Duration::from_secs(60)),
        Fault::StallMidStream => {
            let _ = out.write_all(STREAM_HEAD.as_bytes());
            let _ = out.write_all(&chunk(first.as_bytes()));
            let _ = out.flush();
            std::thread::sleep(Duration::from_secs(60));
        }
        Fault::SlowHeaders => {
            for b in STREAM_HEAD.bytes() {
                if out.write_all(&[b]).is_err() {
                    return;
                }
                let _ = out.flush();
                std::thread::sleep(Duration::from_millis(40));
            }
        }
        Fault::HugeBody => {
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                1u64 << 32
            );
            let block = vec![b'a'; 1 << 16];
            for _ in 0..(1 << 16) {
                if out.write_all(&block).is_err() {
                    return;
                }
            }
        }
        Fault::HugeLine => {
            let _ = out.write_all(STREAM_HEAD.as_bytes());
            let mut started = chunk(b"data: {\"choices\":[{\"delta\":{\"content\":\"");
            let block = chunk(&vec![b'a'; 1 << 16]);
            started.extend_from_slice(&block);
            if out.write_all(&started).is_err() {
                return;
            }
            for _ in 0..(1 << 16) {
                if out.write_all(&block).is_err() {
                    return;
                }
            }
        }
        Fault::BadChunked => {
            let _ = out.write_all(STREAM_HEAD.as_bytes());
            let _ = out.write_all(b"zz\r\ndata: nope\r\n");
        }
        Fault::RefuseAfterFew => good(out),
        Fault::AbsurdUsage => {
            let events = concat!(
                "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":18446744073709551615,\"completion_tokens\":2}}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":-5}}\n\n",
                "data: [DONE]\n\n",
            );
            let _ = out.write_all(STREAM_HEAD.as_bytes());
            let _ = out.write_all(&chunk(events.as_bytes()));
            let _ = out.write_all(b"0\r\n\r\n");
        }
        Fault::DataAfterDone => {
            let mut events = GOOD_EVENTS.to_string();
            events.push_str("data: {\"choices\":[{\"delta\":{\"content\":\" late\"}}]}\n\n");
            let _ = out.write_all(STREAM_HEAD.as_bytes());
            let _ = out.write_all(&chunk(events.as_bytes()));
            let _ = out.write_all(b"0\r\n\r\n");
        }
        Fault::Html => {
            let body = "<html><body><h1>502 Bad Gateway</h1></body></html>";
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    }
}

impl Hostile {
    /// Starts a server that answers every request with `fault`.
    pub fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            // Polled, so the listener closes as soon as it is told to stop.
            let _ = listener.set_nonblocking(true);
            while !stop.load(Ordering::Relaxed) {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                let _ = stream.set_nonblocking(false);
                let (seen, stop) = (counter.clone(), stop.clone());
                std::thread::spawn(move || {
                    let Ok(clone) = stream.try_clone() else {
                        return;
                    };
                    let mut reader = BufReader::new(clone);
                    let mut out = stream;
                    if let Some(head) = read_request(&mut reader) {
                        // Past its last answer the server only closes (it is going away).
                        if fault == Fault::RefuseAfterFew && stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
                        if fault == Fault::RefuseAfterFew && n >= ANSWERED_BEFORE_REFUSING {
                            stop.store(true, Ordering::Relaxed);
                        }
                        answer(fault, &head, &mut out);
                    }
                    let _ = out.flush();
                    let _ = out.shutdown(Shutdown::Both);
                });
            }
        });
        Hostile { port, seen }
    }

    /// `http://127.0.0.1:<port>/v1/chat/completions`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/chat/completions", self.port)
    }

    /// Requests read so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}
