//! One web connection as a task on the web side's own executor: moves bytes for an
//! `atacama_server` [`WebConnection`] and runs each request's store reads and render inline.
//! Plaintext HTTP only: a reverse proxy in front terminates TLS. No protocol decision is
//! taken here.

use std::sync::Arc;
use std::time::Instant;

use atacama_core::http::HttpEvent;
use atacama_core::logging::CloseOutcome;
use atacama_server::server::WebConnection;
use smol::future::FutureExt as _;
use smol::net::TcpStream;

use crate::connection::{Io, aborted, outcome_of};
use crate::server::Shared;
use crate::stream::Stream;

/// Serves one web connection (a `503` over the cap too) to its end and logs it.
pub async fn serve(shared: Arc<Shared>, tcp: TcpStream, mut web: WebConnection) {
    let mut io = Io {
        shared: Arc::clone(&shared),
        stream: Stream::Plain(tcp),
        peer: web.peer(),
        deadlines: web.deadlines,
    };
    // Past the grace period the connection's work is dropped wherever it waits.
    let outcome = run(&mut io, &mut web).or(aborted(&shared)).await;
    web.close(outcome, Instant::now());
}

async fn run(io: &mut Io, web: &mut WebConnection) -> CloseOutcome {
    let write_timeout = io.deadlines.write;
    loop {
        while let Some(event) = web.poll_event() {
            match event {
                HttpEvent::Transmit(bytes) => {
                    if let Err(error) = io.stream.write_all(&bytes, write_timeout).await {
                        return outcome_of(error);
                    }
                }
                HttpEvent::Request(request) => {
                    // Inline, as `check_mail` is: a read on a warm page cache and the render
                    // cost about 30 µs, the hop to the blocking pool and back as much again.
                    // The web executor is the web side's own: a slow read holds up only it.
                    // A store across the network (a round trip, perhaps a wait for a pooled
                    // connection) goes to the blocking pool, as `check_mail` does then.
                    // While mail arrives, this request's turn (`priority::MailPressure`).
                    if let Some(turn) = io.shared.state.web_turn(Instant::now()) {
                        smol::Timer::at(turn).await;
                    }
                    let response = if io.shared.state.services.store().reads_wait_on_network() {
                        let shared = Arc::clone(&io.shared);
                        smol::unblock(move || shared.state.serve_http(&request)).await
                    } else {
                        io.shared.state.serve_http(&request)
                    };
                    if let Err(outcome) = web.respond(Instant::now(), response) {
                        return outcome;
                    }
                }
                HttpEvent::Close => {
                    if let Err(error) = io.stream.flush(write_timeout).await {
                        return outcome_of(error);
                    }
                    io.stream.close(io.deadlines.linger).await;
                    return web.close_outcome();
                }
            }
        }
        if let Err(error) = io.stream.flush(write_timeout).await {
            return outcome_of(error);
        }
        let wait = match web.wait() {
            Ok(wait) => wait,
            Err(outcome) => return outcome,
        };
        let wake = io.wait(wait).await;
        if let Err(outcome) = web.woke(Instant::now(), wake) {
            return outcome;
        }
    }
}
