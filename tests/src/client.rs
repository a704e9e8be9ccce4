//! A raw SMTP client over TCP or TLS, for the cases a client library will not produce:
//! pipelined STARTTLS injection, smuggling probes, held-open idle connections.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// How long a read waits by default.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// A line-oriented SMTP client.
pub struct Client {
    stream: Option<Stream>,
    input: Vec<u8>,
}

/// One reply: its code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text after `NNN-` / `NNN ` of each line.
    pub lines: Vec<String>,
}

impl Client {
    /// Connects in plaintext (the submission port).
    pub fn connect(address: SocketAddr) -> io::Result<Client> {
        let tcp = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        Ok(Client {
            stream: Some(Stream::Plain(tcp)),
            input: Vec::new(),
        })
    }

    /// Connects in plaintext from `source`, a loopback address other than 127.0.0.1, so that
    /// the server sees another client (its per-address limits count it apart).
    pub fn connect_from(address: SocketAddr, source: std::net::IpAddr) -> io::Result<Client> {
        let domain = socket2::Domain::for_address(address);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(source, 0).into())?;
        socket.connect_timeout(&address.into(), Duration::from_secs(5))?;
        let tcp: TcpStream = socket.into();
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        Ok(Client {
            stream: Some(Stream::Plain(tcp)),
            input: Vec::new(),
        })
    }

    /// Connects with TLS from the first byte (the submissions port), trusting `cert_pem`.
    pub fn connect_tls(address: SocketAddr, cert_pem: &[u8]) -> io::Result<Client> {
        let mut client = Client::connect(address)?;
        client.start_tls(cert_pem)?;
        Ok(client)
    }

    /// Runs the TLS handshake on the current plaintext stream (after `220` to STARTTLS, or
    /// at once on 465), trusting only `cert_pem` for the name `localhost`.
    pub fn start_tls(&mut self, cert_pem: &[u8]) -> io::Result<()> {
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(io::Error::other("not a plaintext stream"));
        };
        let connection = ClientConnection::new(client_config(cert_pem)?, localhost())
            .map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(connection, tcp);
        // Drive the handshake now, so that errors show here and not at the first read.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    /// The negotiated protocol version, once TLS is up.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.stream {
            Some(Stream::Tls(tls)) => tls.conn.protocol_version(),
            _ => None,
        }
    }

    /// The server's certificate, once TLS is up.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match &self.stream {
            Some(Stream::Tls(tls)) => tls
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec()),
            _ => None,
        }
    }

    /// Sends `bytes` in one write.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> io::Result<()> {
        let bytes = bytes.as_ref();
        match &mut self.stream {
            Some(Stream::Plain(tcp)) => tcp.write_all(bytes),
            Some(Stream::Tls(tls)) => {
                tls.write_all(bytes)?;
                tls.flush()
            }
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Reads one whole reply (waiting at most [`READ_TIMEOUT`]).
    pub fn reply(&mut self) -> io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.line()?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| io::Error::other(format!("not a reply line: {line:?}")))?;
            lines.push(line.get(4..).unwrap_or_default().to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply { code, lines });
            }
        }
    }

    /// Reads one reply and checks its code; returns the text of its first line.
    pub fn expect(&mut self, code: u16) -> String {
        match self.reply() {
            Ok(reply) if reply.code == code => reply.lines.into_iter().next().unwrap_or_default(),
            other => panic!("expected a {code} reply, got {other:?}"),
        }
    }

    /// Sends `line` plus CR LF and checks the reply's code.
    pub fn command(&mut self, line: &str, code: u16) -> String {
        if let Err(e) = self.send(format!("{line}\r\n")) {
            panic!("sending {line:?} failed: {e}");
        }
        self.expect(code)
    }

    /// Reads whatever arrives within `wait`: empty if nothing did. Stops at EOF.
    pub fn read_for(&mut self, wait: Duration) -> io::Result<Vec<u8>> {
        self.set_timeout(Some(Duration::from_millis(100)))?;
        let started = Instant::now();
        let mut got = std::mem::take(&mut self.input);
        let mut buf = [0u8; 4096];
        while started.elapsed() < wait {
            match self.read_some(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => {
                    self.set_timeout(Some(READ_TIMEOUT))?;
                    return if got.is_empty() { Err(e) } else { Ok(got) };
                }
            }
        }
        self.set_timeout(Some(READ_TIMEOUT))?;
        Ok(got)
    }

    /// Whether the server closed the connection (EOF or reset) within `wait`, reading and
    /// discarding anything before it.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let _ = self.set_timeout(Some(wait));
        let mut buf = [0u8; 4096];
        let started = Instant::now();
        loop {
            match self.read_some(&mut buf) {
                Ok(0) => return true,
                Ok(_) if started.elapsed() < wait => {}
                Ok(_) => return false,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    );
                }
            }
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.input.drain(..end + 2).collect();
                let text = line.get(..end).unwrap_or_default();
                return Ok(String::from_utf8_lossy(text).into_owned());
            }
            let n = self.read_some(&mut buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed; unterminated input {:?}",
                        String::from_utf8_lossy(&self.input)
                    ),
                ));
            }
            self.input
                .extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.stream {
            Some(Stream::Plain(tcp)) => tcp.read(buf),
            Some(Stream::Tls(tls)) => match tls.read(buf) {
                // A peer that closes without close_notify still closed.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
            None => Ok(0),
        }
    }

    fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match &self.stream {
            Some(Stream::Plain(tcp)) => tcp.set_read_timeout(timeout),
            Some(Stream::Tls(tls)) => tls.sock.set_read_timeout(timeout),
            None => Ok(()),
        }
    }
}

/// A rustls client config (ring) trusting only the certificates in `cert_pem`.
pub fn client_config(cert_pem: &[u8]) -> io::Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem) {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn localhost() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from("localhost")
            .expect("a valid name")
            .to_owned(),
    )
}

/// The base64 AUTH PLAIN initial response for `user` and `password`.
pub fn plain(user: &str, password: &str) -> String {
    atacama_core::sasl::encode(format!("\0{user}\0{password}").as_bytes())
}
