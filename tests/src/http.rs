//! A small HTTP/1.1 client over a plain `TcpStream`, for what curl hides: several requests
//! on one connection, exact headers, and the close. Loopback only; every read has a timeout
//! and every body a bound.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one read may wait.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response head or body accepted.
const MAX_RESPONSE: usize = 4 << 20;

/// One response as it came over the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header fields, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body (none after a HEAD or a `304`).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// A `/messages/{id}/chain` JSON body as (id, is_target) pairs, in order.
    pub fn chain_links(&self) -> Vec<(u64, bool)> {
        self.json()["chain"]
            .as_array()
            .expect("a chain")
            .iter()
            .map(|m| (m["id"].as_u64().unwrap_or(0), m["is_target"] == true))
            .collect()
    }
}

/// One keep-alive connection.
pub struct HttpClient {
    tcp: TcpStream,
    host: String,
    /// Bytes read past the last response.
    pending: Vec<u8>,
}

impl HttpClient {
    /// Connects to `address`.
    pub fn connect(address: SocketAddr) -> io::Result<HttpClient> {
        let tcp = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        tcp.set_write_timeout(Some(READ_TIMEOUT))?;
        Ok(HttpClient {
            tcp,
            host: address.to_string(),
            pending: Vec::new(),
        })
    }

    /// Sends `method path` with `Host` and `headers`, and reads the response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<HttpResponse> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.tcp.write_all(head.as_bytes())?;
        self.response(method == "HEAD")
    }

    /// A GET with `headers`.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> io::Result<HttpResponse> {
        self.request("GET", path, headers)
    }

    /// Reads one response (a HEAD's has no body).
    pub fn response(&mut self, head_only: bool) -> io::Result<HttpResponse> {
        let end = loop {
            if let Some(at) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter(|line| !line.is_empty())
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        self.pending.drain(..end);
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let length = if head_only || status == 304 {
            0
        } else {
            length
        };
        if length > MAX_RESPONSE {
            return Err(invalid(format!("a body of {length} bytes")));
        }
        while self.pending.len() < length {
            self.fill()?;
        }
        let body = self.pending.drain(..length).collect();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// Whether the server closes the connection within `wait`, with nothing more sent.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        let _ = self.tcp.set_read_timeout(Some(wait));
        let mut buf = [0u8; 1024];
        match self.tcp.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }

    /// The raw socket, to send what a client library would not.
    pub fn tcp(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.pending.len() > MAX_RESPONSE {
            return Err(invalid("a response past the bound".into()));
        }
        let mut buf = [0u8; 16 * 1024];
        let n = self.tcp.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pending.extend_from_slice(&buf[..n]);
        Ok(())
    }
}

/// One GET on a connection of its own.
pub fn get(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    HttpClient::connect(address)
        .and_then(|mut client| client.get(path, headers))
        .unwrap_or_else(|e| panic!("GET {path} from {address}: {e}"))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
