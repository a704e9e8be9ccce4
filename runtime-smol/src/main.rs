//! `atacama-mail`: the smol daemon. The command line is shared (`atacama_server::cli`); only
//! `serve` is ours: listeners, TLS, and one task per connection driving a core `Session`.
//! Password checks run on the blocking pool, never on the executor; deliveries go to the
//! core's committer (one durable commit for the messages of many connections), or, with
//! group commit off, to the blocking pool too. The web read side: one task per connection
//! driving a core `HttpConn` (plaintext; a reverse proxy terminates TLS), on an executor of
//! its own (four threads a core), its store reads inline.

mod connection;
mod server;
mod stream;
mod web;

use atacama_server::cli::{self, ServeContext};

fn main() -> std::process::ExitCode {
    cli::main("atacama-mail", serve)
}

/// Runs the smol server until SIGTERM or SIGINT.
fn serve(context: &ServeContext) -> Result<(), Box<dyn std::error::Error>> {
    atacama_server::logger::init(context.log_level)?;
    server::Server::bind(&context.config)?.run()
}
