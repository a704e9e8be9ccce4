//! `atacama-mail-std`: the blocking build for small hosts. The command line is shared
//! (`atacama_server::cli`); only `serve` is ours: listeners, TLS, and one thread per admitted
//! connection driving a core `Session`, and one thread per web connection (under
//! `http.max_connections`) driving a core `HttpConn`, plaintext (a reverse proxy terminates
//! TLS). No async runtime.

mod connection;
mod server;
mod sockets;
mod stream;
mod web;

use atacama_server::cli::{self, ServeContext};

fn main() -> std::process::ExitCode {
    cli::main("atacama-mail-std", serve)
}

/// Runs the thread-per-connection server until SIGTERM or SIGINT.
fn serve(context: &ServeContext) -> Result<(), Box<dyn std::error::Error>> {
    atacama_server::logger::init(context.log_level)?;
    server::Server::bind(&context.config)?.run()
}
