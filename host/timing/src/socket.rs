//! A TCP stream that remembers when its last read's data arrived.
//!
//! On Linux it asks the kernel for receive timestamps (`SO_TIMESTAMPNS`) and reads with
//! `recvmsg`, so the time of a read is when the data reached the socket, not when this process
//! got round to reading it: a client busy with a thousand other streams does not add its own
//! queueing to the latencies it reports. Elsewhere, or when the kernel gives no timestamp, the
//! time of the read call is used.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use hyper::rt::{Read, ReadBufCursor, Write};
#[cfg(unix)]
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

/// When the data of the latest read arrived, shared between the stream and the request.
#[derive(Debug)]
pub struct ReadClock {
    anchor: Instant,
    /// Nanoseconds after `anchor`; 0 = no read yet.
    last_ns: AtomicU64,
    /// Reads that carried a kernel timestamp.
    kernel_stamped: AtomicU64,
}

impl ReadClock {
    fn new() -> Self {
        ReadClock {
            anchor: Instant::now(),
            last_ns: AtomicU64::new(0),
            kernel_stamped: AtomicU64::new(0),
        }
    }

    fn set(&self, at: Instant) {
        let ns = at.saturating_duration_since(self.anchor).as_nanos().max(1) as u64;
        self.last_ns.store(ns, Ordering::Relaxed);
    }

    /// Arrival time of the latest read's data, or now if nothing was read yet.
    pub fn last(&self) -> Instant {
        match self.last_ns.load(Ordering::Relaxed) {
            0 => Instant::now(),
            ns => self.anchor + Duration::from_nanos(ns),
        }
    }

    /// Whether the kernel has been stamping reads.
    pub fn kernel_timestamps(&self) -> bool {
        self.kernel_stamped.load(Ordering::Relaxed) > 0
    }
}

/// A TCP stream for hyper that records when read data arrived.
///
/// It does its own non-blocking I/O on an `AsyncFd` rather than through tokio's `TcpStream`,
/// because it reads with `recvmsg`, and so that a read that returns less than the buffer can
/// clear the socket's readiness (as tokio's own stream does): otherwise every read is followed
/// by one more system call that only says "nothing more yet".
#[cfg(unix)]
pub struct TimedStream {
    io: AsyncFd<std::net::TcpStream>,
    clock: Arc<ReadClock>,
    kernel: bool,
}

/// Elsewhere: tokio's stream, stamped with the time of each read.
#[cfg(not(unix))]
pub struct TimedStream {
    io: hyper_util::rt::TokioIo<TcpStream>,
    clock: Arc<ReadClock>,
}

#[cfg(not(unix))]
impl TimedStream {
    /// Wraps `io`.
    pub fn new(io: TcpStream) -> io::Result<Self> {
        Ok(TimedStream {
            io: hyper_util::rt::TokioIo::new(io),
            clock: Arc::new(ReadClock::new()),
        })
    }

    /// The clock of this connection.
    pub fn clock(&self) -> Arc<ReadClock> {
        self.clock.clone()
    }
}

#[cfg(not(unix))]
impl Read for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = ready!(Pin::new(&mut this.io).poll_read(cx, buf));
        this.clock.set(Instant::now());
        Poll::Ready(result)
    }
}

#[cfg(not(unix))]
impl Write for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(unix)]
impl TimedStream {
    /// Wraps `io`, asking the kernel for receive timestamps where it can.
    pub fn new(io: TcpStream) -> io::Result<Self> {
        let io = io.into_std()?;
        io.set_nonblocking(true)?;
        let kernel = enable_kernel_timestamps(&io);
        // SAFETY: the std stream owns its descriptor, which stays open, and is the same one, for
        // as long as the AsyncFd owns the stream.
        let io = unsafe { AsyncFd::register(io) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(TimedStream {
            io,
            clock: Arc::new(ReadClock::new()),
            kernel,
        })
    }

    /// The clock of this connection.
    pub fn clock(&self) -> Arc<ReadClock> {
        self.clock.clone()
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod kernel {
    use std::io;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use std::net::TcpStream;

    // asm-generic/socket.h: SO_TIMESTAMPNS_OLD, which SCM_TIMESTAMPNS equals on 64-bit.
    const SO_TIMESTAMPNS: libc::c_int = 35;

    pub fn enable(io: &TcpStream) -> bool {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a pointer to a c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                io.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        rc == 0
    }

    /// One `recvmsg` into `dst`: bytes read and the kernel's receive time of that data.
    pub fn recv(
        io: &TcpStream,
        dst: &mut [std::mem::MaybeUninit<u8>],
    ) -> io::Result<(usize, Option<SystemTime>)> {
        let mut iov = libc::iovec {
            iov_base: dst.as_mut_ptr().cast(),
            iov_len: dst.len(),
        };
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; every pointer set below outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: the descriptor is a connected socket; the buffers are valid for their lengths.
        let n = unsafe { libc::recvmsg(io.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut stamp = None;
        // SAFETY: walking the control messages the kernel wrote into `control`, with the
        // kernel's own CMSG macros.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == SO_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    stamp = Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok((n as usize, stamp))
    }
}

/// Other Unix systems: plain reads, stamped with the time of the read.
#[cfg(all(
    unix,
    not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))
))]
mod kernel {
    use std::io::{self, Read};
    use std::net::TcpStream;
    use std::time::SystemTime;

    pub fn enable(_io: &TcpStream) -> bool {
        false
    }

    pub fn recv(
        mut io: &TcpStream,
        dst: &mut [std::mem::MaybeUninit<u8>],
    ) -> io::Result<(usize, Option<SystemTime>)> {
        // SAFETY: read only writes initialised bytes into the prefix it reports.
        let buf = unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        io.read(buf).map(|n| (n, None))
    }
}

#[cfg(unix)]
fn enable_kernel_timestamps(io: &std::net::TcpStream) -> bool {
    kernel::enable(io)
}

/// The monotonic instant of a wall-clock time in the recent past.
#[cfg(unix)]
fn instant_of(at: SystemTime) -> Instant {
    let now_wall = SystemTime::now();
    let now = Instant::now();
    match now_wall.duration_since(at) {
        Ok(age) if age < Duration::from_secs(60) => now.checked_sub(age).unwrap_or(now),
        _ => now,
    }
}

#[cfg(unix)]
impl Read for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.io.poll_read_ready(cx))?;
            // SAFETY: `recv` writes at most `dst.len()` bytes and we advance by what it wrote.
            let dst = unsafe { buf.as_mut() };
            let len = dst.len();
            match guard.try_io(|fd| kernel::recv(fd.get_ref(), dst)) {
                Ok(Ok((n, stamp))) => {
                    if n > 0 && n < len {
                        // A short read drained the socket: wait for the next readiness event
                        // instead of asking again.
                        guard.clear_ready();
                    }
                    let at = match stamp.filter(|_| this.kernel) {
                        Some(wall) => {
                            this.clock.kernel_stamped.fetch_add(1, Ordering::Relaxed);
                            instant_of(wall)
                        }
                        None => Instant::now(),
                    };
                    this.clock.set(at);
                    // SAFETY: `n` bytes were initialised by recvmsg.
                    unsafe { buf.advance(n) };
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(unix)]
impl TimedStream {
    /// Waits until the socket is writable and runs `write` on it, again after a spurious wake-up.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&std::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.io.poll_write_ready(cx))?;
            if let Ok(result) = guard.try_io(|fd| write(fd.get_ref())) {
                return Poll::Ready(result);
            }
        }
    }
}

#[cfg(unix)]
impl Write for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut fd| std::io::Write::write(&mut fd, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut fd| std::io::Write::write_vectored(&mut fd, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_some(stream: &mut TimedStream) -> usize {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
        std::future::poll_fn(|cx| {
            let mut read_buf = hyper::rt::ReadBuf::uninit(&mut buf);
            match Pin::new(&mut *stream).poll_read(cx, read_buf.unfilled()) {
                Poll::Ready(Ok(())) => Poll::Ready(read_buf.filled().len()),
                Poll::Ready(Err(e)) => panic!("read failed: {e}"),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    #[tokio::test]
    async fn a_read_is_stamped_with_when_the_data_arrived_not_when_it_was_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let mut stream = TimedStream::new(client).expect("wrap");
        let clock = stream.clock();

        // Linux turns receive timestamping on for the whole stack through a deferred switch
        // when the first socket asks for it, so the first packets may arrive unstamped (the
        // read time is used for those). Exchange messages until the kernel stamps one.
        for _ in 0..50 {
            std::io::Write::write_all(&mut server, b"warm").expect("write");
            read_some(&mut stream).await;
            if clock.kernel_timestamps() || !cfg!(target_os = "linux") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        std::io::Write::write_all(&mut server, b"hello").expect("write");
        let written = Instant::now();
        // The data waits in the socket while this "busy client" does something else.
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(read_some(&mut stream).await, 5);
        let stamped = clock.last();
        if cfg!(target_os = "linux") {
            assert!(
                clock.kernel_timestamps(),
                "Linux stamps TCP reads in the kernel"
            );
            let waited = Instant::now().saturating_duration_since(stamped);
            assert!(
                waited >= Duration::from_millis(50),
                "stamped {waited:?} before the read, expected the 60 ms wait"
            );
            assert!(stamped.saturating_duration_since(written) < Duration::from_millis(20));
        } else {
            assert!(stamped >= written);
        }
    }
}
