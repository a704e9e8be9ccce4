//! One web connection on its own thread: moves bytes for an `atacama_server`
//! [`WebConnection`] and runs each request's store reads. Plaintext HTTP only: a reverse
//! proxy in front terminates TLS. No protocol decision is taken here. The thread is
//! registered in `crate::sockets` like a mail connection's, so the stop closes an idle
//! keep-alive connection at once and the abort ends any.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use atacama_core::connection::Wake;
use atacama_core::http::HttpEvent;
use atacama_core::logging::CloseOutcome;
use atacama_server::server::WebConnection;

use crate::connection::{Io, outcome_of};
use crate::server::Shared;
use crate::stream::Stream;

/// Serves one web connection (a `503` over the cap too) to its end and logs it.
pub fn serve(shared: &Shared, tcp: TcpStream, mut web: WebConnection) {
    let tcp = Arc::new(tcp);
    let mut io = Io {
        shared,
        registration: shared.sockets.register(&tcp),
        stream: Stream::new(tcp, web.deadlines.write),
        peer: web.peer(),
        deadlines: web.deadlines,
    };
    let outcome = run(&mut io, &mut web);
    web.close(outcome, Instant::now());
}

fn run(io: &mut Io<'_>, web: &mut WebConnection) -> CloseOutcome {
    loop {
        while let Some(event) = web.poll_event() {
            match event {
                // Written through at once: nothing is held back for a later flush.
                HttpEvent::Transmit(bytes) => {
                    if let Err(error) = io.stream.write_all(&bytes) {
                        return outcome_of(error);
                    }
                }
                HttpEvent::Request(request) => {
                    // While mail arrives, this request's turn (`priority::MailPressure`).
                    if let Some(turn) = io.shared.state.web_turn(Instant::now()) {
                        std::thread::sleep(turn.saturating_duration_since(Instant::now()));
                    }
                    let response = io.shared.state.serve_http(&request);
                    if let Err(outcome) = web.respond(Instant::now(), response) {
                        return outcome;
                    }
                }
                HttpEvent::Close => {
                    io.stream.close(io.deadlines.linger);
                    return web.close_outcome();
                }
            }
        }
        let wait = match web.wait() {
            Ok(wait) => wait,
            Err(outcome) => return outcome,
        };
        let stop_unseen = wait.shutdown;
        let wake = io.wait(wait);
        let stopped =
            !matches!(wake, Wake::Shutdown | Wake::Abort) && stop_unseen && io.shared.is_stopping();
        if stopped {
            // The stop came during the wait: the connection learns of it first (an idle one
            // closes, and ignores a request read meanwhile).
            if let Err(outcome) = web.woke(Instant::now(), Wake::Shutdown) {
                return outcome;
            }
        }
        if let Err(outcome) = web.woke(Instant::now(), wake) {
            return outcome;
        }
    }
}
