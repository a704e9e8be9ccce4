//! `atacama-mail-std`: the blocking build for small hosts. The command line is shared; only
//! `serve` is ours.

use atacama_core::cli::{self, ServeContext};

fn main() -> std::process::ExitCode {
    cli::main("atacama-mail-std", serve)
}

/// Runs the thread-per-connection server.
fn serve(_context: &ServeContext) -> Result<(), Box<dyn std::error::Error>> {
    Err("serve is not implemented in this build yet".into())
}
