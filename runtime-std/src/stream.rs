//! The client socket before and after TLS, blocking, with a deadline on every wait.
//!
//! Reads go straight to the socket (or to rustls, which only holds what it decrypted): no
//! read-ahead buffer of ours, so every plaintext byte read before STARTTLS reaches
//! `Session::receive`, where the session discards what was pipelined past the command.
//!
//! rustls' `ServerConnection` is driven by hand rather than through `StreamOwned`: its
//! `write` swallows socket errors and, when the socket will not take more, goes on to a read
//! that can block for the whole read timeout. Here a write that cannot finish within the
//! write deadline fails (P4), and a read waits for the read deadline only.
//!
//! No wait here looks at the clock or the stop flags now and then: a read blocks until bytes
//! come, its deadline passes, or the stop or the abort shuts the socket's read side
//! (`crate::sockets`), which ends it as the client's close would. The socket is shared
//! (`Arc`) with that registry for this.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use atacama_core::smtp::TlsInfo;
use rustls::{ServerConfig, ServerConnection};

/// The connection's byte stream: plaintext, then TLS once [`Stream::upgrade`] succeeded.
pub struct Stream {
    tcp: Arc<TcpStream>,
    tls: Option<Box<ServerConnection>>,
    write_timeout: Duration,
}

/// Why the stream could not be used any more: becomes the `outcome=` of the close line.
#[derive(Debug)]
pub enum StreamError {
    /// The handshake failed or timed out.
    Tls(String),
    /// A read or write failed or timed out.
    Io(String),
    /// The server stopped while we waited.
    Aborted,
}

impl Stream {
    /// A plaintext stream; every write must finish within `write_timeout`.
    pub fn new(tcp: Arc<TcpStream>, write_timeout: Duration) -> Stream {
        Stream {
            tcp,
            tls: None,
            write_timeout,
        }
    }

    /// Runs a TLS handshake as the server on the plaintext socket, within `timeout` (T11);
    /// gives up early when `abort` is set and the socket's read side shut.
    pub fn upgrade(
        &mut self,
        config: Arc<ServerConfig>,
        timeout: Duration,
        abort: &AtomicBool,
    ) -> Result<TlsInfo, StreamError> {
        if self.tls.is_some() {
            return Err(StreamError::Tls("TLS is already active".into()));
        }
        let conn = handshake(config, &self.tcp, timeout, abort)?;
        let info = atacama_server::tls::tls_info(&conn);
        self.tls = Some(Box::new(conn));
        Ok(info)
    }

    /// Reads at most `buf.len()` bytes, waiting at most `timeout` (`None`: until something
    /// happens); 0 means the client closed its side (or the socket's read side was shut),
    /// `WouldBlock` or `TimedOut` that the time ran out, `UnexpectedEof` that a TLS client
    /// closed without close_notify.
    pub fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut tcp: &TcpStream = &self.tcp;
        let Some(tls) = self.tls.as_deref_mut() else {
            set_read_deadline(tcp, deadline)?;
            return tcp.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // One deadline for the whole read: a client trickling a record byte by byte
            // must not hold us here past it (R2).
            set_read_deadline(tcp, deadline)?;
            // 0 bytes records the EOF in rustls; the reader above then reports it.
            tls.read_tls(&mut tcp)?;
            if let Err(error) = tls.process_new_packets() {
                // Best effort: tell the client why, as rustls queued an alert for it.
                let _ = send_tls(tls, tcp, self.write_timeout);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            // A TLS 1.3 KeyUpdate asks for one back.
            send_tls(tls, tcp, self.write_timeout)?;
        }
    }

    /// Sends all of `bytes`, within the write timeout (P4).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        let deadline = Instant::now() + self.write_timeout;
        let Some(tls) = self.tls.as_deref_mut() else {
            return write_by(&self.tcp, bytes, deadline).map_err(io_error);
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            // rustls takes as much as its buffer limit allows; send that, then the rest.
            let taken = tls.writer().write(rest).map_err(io_error)?;
            if taken == 0 && !tls.wants_write() {
                return Err(StreamError::Io("TLS refused more data".into()));
            }
            rest = rest.get(taken..).unwrap_or_default();
            send_tls_by(tls, &self.tcp, deadline).map_err(io_error)?;
        }
        Ok(())
    }

    /// Ends the connection politely: TLS close_notify, our FIN, then reads until the
    /// client's FIN (at most `linger`), so that unread client bytes never turn our close
    /// into a reset that could destroy the last reply on its way.
    pub fn close(&mut self, linger: Duration) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            if send_tls(tls, &self.tcp, self.write_timeout).is_err() {
                return;
            }
        }
        let mut tcp: &TcpStream = &self.tcp;
        if tcp.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + linger;
        let mut scrap = [0u8; 4096];
        // Bounded in bytes as well as in time: a client that keeps sending is dropped.
        for _ in 0..16 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match tcp.read(&mut scrap) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// The server side of a TLS handshake on `tcp`, within `timeout` (T11); gives up early
/// when `abort` is set and the socket's read side shut (which ends the blocked read).
fn handshake(
    config: Arc<ServerConfig>,
    mut tcp: &TcpStream,
    timeout: Duration,
    abort: &AtomicBool,
) -> Result<ServerConnection, StreamError> {
    let deadline = Instant::now() + timeout;
    let tls_error = |e: io::Error| StreamError::Tls(e.to_string());
    let mut conn = ServerConnection::new(config).map_err(|e| StreamError::Tls(e.to_string()))?;
    loop {
        send_tls_by(&mut conn, tcp, deadline).map_err(tls_error)?;
        if !conn.is_handshaking() {
            return Ok(conn);
        }
        if abort.load(Ordering::SeqCst) {
            return Err(StreamError::Aborted);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StreamError::Tls("handshake timed out".into()));
        }
        tcp.set_read_timeout(Some(left))
            .map_err(|e| StreamError::Tls(e.to_string()))?;
        match conn.read_tls(&mut tcp) {
            // The abort ends the read as the client's close would: the flag tells them apart.
            _ if abort.load(Ordering::SeqCst) => return Err(StreamError::Aborted),
            Ok(0) => {
                return Err(StreamError::Tls(
                    "the client closed during the handshake".into(),
                ));
            }
            Ok(_) => {
                if let Err(error) = conn.process_new_packets() {
                    // Best effort: the alert rustls queued tells the client why.
                    let _ = send_tls_by(&mut conn, tcp, deadline);
                    return Err(StreamError::Tls(error.to_string()));
                }
            }
            Err(e) if timed_out(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StreamError::Tls(e.to_string())),
        }
    }
}

/// Makes the next blocking read on `tcp` give up at `deadline` (`WouldBlock`), or at once
/// if it has passed; with no deadline, it waits for as long as it takes.
fn set_read_deadline(tcp: &TcpStream, deadline: Option<Instant>) -> io::Result<()> {
    let Some(deadline) = deadline else {
        return tcp.set_read_timeout(None);
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    // Never `Some(0)`: the socket would refuse it; and `None` would mean forever.
    tcp.set_read_timeout(Some(left.max(Duration::from_millis(1))))
}

/// Whether a socket error means only that the timeout passed.
pub fn timed_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sends every TLS record rustls has queued, within `timeout`.
fn send_tls(conn: &mut ServerConnection, tcp: &TcpStream, timeout: Duration) -> io::Result<()> {
    send_tls_by(conn, tcp, Instant::now() + timeout)
}

fn send_tls_by(conn: &mut ServerConnection, tcp: &TcpStream, deadline: Instant) -> io::Result<()> {
    while conn.wants_write() {
        let mut out = Deadline { tcp, deadline };
        match conn.write_tls(&mut out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `bytes` unless `deadline` passes first.
fn write_by(tcp: &TcpStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let mut out = Deadline { tcp, deadline };
    out.write_all(bytes)
}

/// A socket whose every write must end by `deadline`: the socket's own timeout applies to
/// one `send` at a time, so a client reading a byte now and then could stretch it forever.
struct Deadline<'a> {
    tcp: &'a TcpStream,
    deadline: Instant,
}

impl Write for Deadline<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out"));
        }
        let mut tcp = self.tcp;
        tcp.set_write_timeout(Some(left))?;
        tcp.write(bytes).map_err(|e| {
            if timed_out(&e) {
                io::Error::new(io::ErrorKind::TimedOut, "write timed out")
            } else {
                e
            }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn io_error(error: io::Error) -> StreamError {
    StreamError::Io(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::net::TcpListener;

    /// A connected pair on loopback: (server side, client side).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    /// A server config and a client config that trusts it.
    fn configs(dir: &std::path::Path) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let source = atacama_server::tls::TlsSource::SelfSigned {
            dir: dir.to_path_buf(),
            hostname: "mx.test".into(),
        };
        let server = source.load().unwrap();
        let pem = std::fs::read(source.cert_path()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(&pem).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (server, Arc::new(client))
    }

    #[test]
    fn t11_a_silent_client_fails_the_handshake_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = configs(dir.path());
        let (server, _client) = pair();
        let mut stream = Stream::new(Arc::new(server), Duration::from_secs(1));
        let started = Instant::now();
        let result = stream.upgrade(config, Duration::from_millis(300), &AtomicBool::new(false));
        let elapsed = started.elapsed();
        assert!(matches!(result, Err(StreamError::Tls(ref why)) if why == "handshake timed out"));
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[test]
    fn a_handshake_gives_up_when_the_abort_shuts_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = configs(dir.path());
        let (server, _client) = pair();
        let server = Arc::new(server);
        let mut stream = Stream::new(Arc::clone(&server), Duration::from_secs(1));
        let abort = AtomicBool::new(false);
        let started = Instant::now();
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                // As `Shared::abort` does: the flag, then the socket.
                abort.store(true, Ordering::SeqCst);
                server.shutdown(Shutdown::Read).unwrap();
            });
            stream.upgrade(config, Duration::from_secs(20), &abort)
        });
        assert!(matches!(result, Err(StreamError::Aborted)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn t5_plaintext_after_starttls_fails_the_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = configs(dir.path());
        let (server, mut client) = pair();
        client.write_all(b"EHLO x\r\n").unwrap();
        let mut stream = Stream::new(Arc::new(server), Duration::from_secs(1));
        let result = stream.upgrade(config, Duration::from_secs(5), &AtomicBool::new(false));
        assert!(matches!(result, Err(StreamError::Tls(_))), "{result:?}");
    }

    #[test]
    fn tls_carries_bytes_both_ways_and_close_notify_reads_as_end() {
        let dir = tempfile::tempdir().unwrap();
        let (server_config, client_config) = configs(dir.path());
        let (server, client) = pair();
        std::thread::scope(|scope| {
            let peer = scope.spawn(move || {
                let name = ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(client_config, name).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, client);
                tls.write_all(b"EHLO c.test\r\n").unwrap();
                let mut reply = [0u8; 8];
                tls.read_exact(&mut reply).unwrap();
                tls.conn.send_close_notify();
                tls.flush().unwrap();
                reply
            });
            let mut stream = Stream::new(Arc::new(server), Duration::from_secs(5));
            let info = stream
                .upgrade(
                    server_config,
                    Duration::from_secs(5),
                    &AtomicBool::new(false),
                )
                .unwrap();
            assert_eq!(info.version, "TLSv1.3");
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            while got.len() < 13 {
                let n = stream.read(&mut buf, Some(Duration::from_secs(5))).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, b"EHLO c.test\r\n");
            stream.write_all(b"250 ok\r\n").unwrap();
            assert_eq!(&peer.join().unwrap(), b"250 ok\r\n");
            assert_eq!(
                stream.read(&mut buf, Some(Duration::from_secs(5))).unwrap(),
                0
            );
        });
    }

    #[test]
    fn r2_a_trickled_tls_record_cannot_hold_a_read_past_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (server_config, client_config) = configs(dir.path());
        let (server, client) = pair();
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let done = &done;
            scope.spawn(move || {
                let name = ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(client_config, name).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, client);
                tls.conn.complete_io(&mut tls.sock).unwrap();
                // The header of an application-data record, then its body a byte at a time.
                tls.sock.write_all(&[0x17, 0x03, 0x03, 0x00, 0x40]).unwrap();
                for _ in 0..60 {
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    let _ = tls.sock.write_all(&[0]);
                }
            });
            let mut stream = Stream::new(Arc::new(server), Duration::from_secs(5));
            stream
                .upgrade(
                    server_config,
                    Duration::from_secs(5),
                    &AtomicBool::new(false),
                )
                .unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 64];
            let error = stream
                .read(&mut buf, Some(Duration::from_millis(300)))
                .unwrap_err();
            let took = started.elapsed();
            done.store(true, Ordering::Release);
            assert!(timed_out(&error), "{error:?}");
            assert!(took < Duration::from_millis(900), "{took:?}");
        });
    }

    #[test]
    fn a_read_with_nothing_to_read_times_out() {
        let (server, _client) = pair();
        let mut stream = Stream::new(Arc::new(server), Duration::from_secs(1));
        let mut buf = [0u8; 16];
        let error = stream
            .read(&mut buf, Some(Duration::from_millis(50)))
            .unwrap_err();
        assert!(timed_out(&error), "{error:?}");
    }

    #[test]
    fn p4_a_client_that_never_reads_fails_the_write_at_its_deadline() {
        let (server, _client) = pair();
        let timeout = Duration::from_millis(200);
        let mut stream = Stream::new(Arc::new(server), timeout);
        let chunk = vec![b'x'; 1 << 20];
        // Loopback buffers hold a few MiB at most; bounded in case they hold more.
        for _ in 0..256 {
            let started = Instant::now();
            if let Err(error) = stream.write_all(&chunk) {
                assert!(matches!(error, StreamError::Io(ref why) if why == "write timed out"));
                assert!(started.elapsed() < timeout + Duration::from_secs(2));
                return;
            }
        }
        panic!("256 MiB went to a client that reads nothing");
    }
}
