//! The client socket before and after TLS, with deadlines on every wait.
//!
//! Reads go straight to the socket (or to rustls, which only holds what it decrypted): no
//! read-ahead buffer of ours, so every plaintext byte read before STARTTLS reaches
//! `Session::receive`, where the session discards what was pipelined past the command.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use atacama_core::smtp::TlsInfo;
use futures_rustls::TlsAcceptor;
use futures_rustls::rustls::ServerConfig;
use futures_rustls::server::TlsStream;
use smol::Timer;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use smol::net::TcpStream;

/// The connection's byte stream.
pub enum Stream {
    /// Plaintext, before STARTTLS on the submission port.
    Plain(TcpStream),
    /// After the handshake.
    Tls(Box<TlsStream<TcpStream>>),
    /// Moved out for a handshake that failed.
    Gone,
}

/// Why the stream could not be used any more: becomes the `outcome=` of the close line.
#[derive(Debug)]
pub enum StreamError {
    /// The handshake failed or timed out.
    Tls(String),
    /// A read or write failed or timed out.
    Io(String),
}

impl Stream {
    /// Runs a TLS handshake as the server on the plaintext socket, within `deadline`.
    pub async fn upgrade(
        &mut self,
        config: Arc<ServerConfig>,
        deadline: Duration,
    ) -> Result<TlsInfo, StreamError> {
        let Stream::Plain(tcp) = std::mem::replace(self, Stream::Gone) else {
            return Err(StreamError::Tls("TLS is already active".into()));
        };
        let tls = handshake(config, tcp, deadline).await?;
        let info = atacama_server::tls::tls_info(tls.get_ref().1);
        *self = Stream::Tls(Box::new(tls));
        Ok(info)
    }

    /// Reads at most `buf.len()` bytes; 0 means the client closed its side.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf).await,
            Stream::Tls(tls) => tls.read(buf).await,
            Stream::Gone => Ok(0),
        }
    }

    /// Writes all of `bytes` (for TLS: into rustls, sent by [`Stream::flush`]).
    pub async fn write_all(&mut self, bytes: &[u8], deadline: Duration) -> Result<(), StreamError> {
        let write = async {
            match self {
                Stream::Plain(tcp) => tcp.write_all(bytes).await,
                Stream::Tls(tls) => tls.write_all(bytes).await,
                Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
            }
        };
        within(deadline, write).await
    }

    /// Sends everything written so far.
    pub async fn flush(&mut self, deadline: Duration) -> Result<(), StreamError> {
        let flush = async {
            match self {
                Stream::Plain(tcp) => tcp.flush().await,
                Stream::Tls(tls) => tls.flush().await,
                Stream::Gone => Ok(()),
            }
        };
        within(deadline, flush).await
    }

    /// Ends the connection politely: TLS close_notify, our FIN, then reads until the
    /// client's FIN (at most `linger`), so that unread client bytes never turn our close
    /// into a reset that could destroy the last reply on its way.
    pub async fn close(&mut self, linger: Duration) {
        let close = async {
            match self {
                Stream::Plain(tcp) => tcp.shutdown(Shutdown::Write),
                Stream::Tls(tls) => tls.close().await,
                Stream::Gone => Ok(()),
            }
        };
        if within(linger, close).await.is_err() {
            return;
        }
        let drain = async {
            let mut scrap = [0u8; 4096];
            // Bounded in bytes as well as in time: a client that keeps sending is dropped.
            for _ in 0..16 {
                match self.read(&mut scrap).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            Ok(())
        };
        let _ = within(linger, drain).await;
    }
}

/// The server side of a TLS handshake on `tcp`, within `deadline` (T11).
pub async fn handshake(
    config: Arc<ServerConfig>,
    tcp: TcpStream,
    deadline: Duration,
) -> Result<TlsStream<TcpStream>, StreamError> {
    let accept = TlsAcceptor::from(config).accept(tcp);
    match timeout(deadline, accept).await {
        Some(Ok(tls)) => Ok(tls),
        Some(Err(error)) => Err(StreamError::Tls(error.to_string())),
        None => Err(StreamError::Tls("handshake timed out".into())),
    }
}

/// `future`'s output, or `None` once `deadline` has passed.
pub async fn timeout<T>(deadline: Duration, future: impl Future<Output = T>) -> Option<T> {
    async { Some(future.await) }
        .or(async {
            Timer::after(deadline).await;
            None
        })
        .await
}

async fn within(
    deadline: Duration,
    io: impl Future<Output = io::Result<()>>,
) -> Result<(), StreamError> {
    match timeout(deadline, io).await {
        Some(Ok(())) => Ok(()),
        Some(Err(error)) => Err(StreamError::Io(error.to_string())),
        None => Err(StreamError::Io("write timed out".into())),
    }
}
