//! `atacama-mail`: the smol daemon. The command line is shared; only `serve` is ours.

use atacama_core::cli::{self, ServeContext};

fn main() -> std::process::ExitCode {
    cli::main("atacama-mail", serve)
}

/// Runs the smol server.
fn serve(_context: &ServeContext) -> Result<(), Box<dyn std::error::Error>> {
    Err("serve is not implemented in this build yet".into())
}
